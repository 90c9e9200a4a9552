"""Enrollment that does not take the server's word for everything: the device says what hardware class it
is (a token of another class is refused before it is spent), and a TUF root provisioned out of band pins
the trust anchors, so a control plane compromised at enrollment time cannot hand the device its own."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from tuf.api.metadata import Metadata, Root

from edgefleet.agent.datadir import DataDir
from edgefleet.agent.enroll import enroll
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.trust.director import DIRECTOR_KEYS_FIELD
from edgefleet.trust.keys import generate_key, init_keys

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"


@pytest.fixture
def server(live_server):
    classes = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
    r = httpx.post(
        f"{live_server.url}/v1/classes/apply", json={"classes": classes}, headers=live_server.admin_headers
    )
    assert r.status_code == 200, r.text
    return live_server


def _token(server, hardware_class: str = "medical-cart-cpu") -> str:
    r = httpx.post(
        f"{server.url}/v1/enrollment-tokens",
        json={"hardware_class": hardware_class, "uses": 1},
        headers=server.admin_headers,
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def _server_root(server) -> bytes:
    return (server.data_dir / "keys" / "root.json").read_bytes()


def _code(exc: pytest.ExceptionInfo[EdgefleetError]) -> str:
    return exc.value.code


def test_a_token_of_another_class_is_refused_before_it_is_spent(server, tmp_path: Path) -> None:
    token = _token(server, "medical-cart-cpu")
    with pytest.raises(EdgefleetError) as refused:
        enroll(server_url=server.url, token=token, data_dir=tmp_path / "a", hardware_class="jetson-vision")
    assert _code(refused) == "enrollment_class_mismatch"
    assert refused.value.details["expected"] == "medical-cart-cpu"
    assert not DataDir(tmp_path / "a").is_enrolled()
    # The single-use token is still good for the device it was made for.
    identity = enroll(
        server_url=server.url, token=token, data_dir=tmp_path / "b", hardware_class="medical-cart-cpu"
    )
    assert identity.hardware_class == "medical-cart-cpu"


def test_a_provisioned_root_is_pinned_and_names_the_director_key(server, tmp_path: Path) -> None:
    provisioned = _server_root(server)
    token = _token(server)
    identity = enroll(server_url=server.url, token=token, data_dir=tmp_path / "d", tuf_root=provisioned)
    pinned = DataDir(tmp_path / "d").read_tuf_root()
    assert pinned == json.loads(provisioned)
    root = Metadata[Root].from_bytes(provisioned)
    assert identity.director_public_key_pem in root.signed.unrecognized_fields[DIRECTOR_KEYS_FIELD]


def test_a_server_whose_root_contradicts_the_provisioned_one_is_refused(server, tmp_path: Path) -> None:
    # The release team's real root (version 1, other keys): the server hands out its own version 1.
    real = init_keys(tmp_path / "release-keys", now=datetime.now(timezone.utc)).root_bytes
    with pytest.raises(EdgefleetError) as refused:
        enroll(server_url=server.url, token=_token(server), data_dir=tmp_path / "d", tuf_root=real)
    assert _code(refused) == "tuf_root_mismatch"
    assert not DataDir(tmp_path / "d").is_enrolled()


def test_bad_provisioned_roots_are_refused_before_the_token_is_spent(server, tmp_path: Path) -> None:
    token = _token(server)
    good = json.loads(_server_root(server))
    tampered = json.loads(json.dumps(good))
    tampered["signed"]["expires"] = "2099-01-01T00:00:00Z"  # the signatures no longer cover it
    signer = generate_key(tmp_path / "other", "root-1")
    nameless = Metadata(Root(expires=datetime(2099, 1, 1, tzinfo=timezone.utc)))
    nameless.signed.add_key(signer.public_key, "root")
    nameless.sign(signer)
    for raw, code in [
        (b"not json", "invalid_tuf_root"),
        (json.dumps(tampered).encode(), "invalid_tuf_root"),
        (b" " * (600 * 1024), "invalid_tuf_root"),
        (nameless.to_bytes(), "tuf_root_names_no_director_key"),
    ]:
        with pytest.raises(EdgefleetError) as refused:
            enroll(server_url=server.url, token=token, data_dir=tmp_path / "d", tuf_root=raw)
        assert _code(refused) == code
    assert not DataDir(tmp_path / "d").is_enrolled()
    enroll(server_url=server.url, token=token, data_dir=tmp_path / "d", tuf_root=_server_root(server))
    assert DataDir(tmp_path / "d").is_enrolled()


def test_the_console_enrolls_with_a_provisioned_root_and_refuses_another_class(server, tmp_path) -> None:
    from tests.e2e.fleet_cli import cli

    root_file = tmp_path / "root.json"
    root_file.write_bytes(_server_root(server))
    token = _token(server)
    base = ["agent", "enroll", "--server", server.url, "--token", token, "--tuf-root", str(root_file)]
    refused = cli(server, *base, "--data-dir", str(tmp_path / "x"), "--class", "jetson-vision", check=False)
    assert refused.returncode != 0
    assert "enrollment_class_mismatch" in refused.stderr
    done = cli(server, *base, "--data-dir", str(tmp_path / "y"), "--class", "medical-cart-cpu", "--json")
    assert json.loads(done.stdout)["hardware_class"] == "medical-cart-cpu"
    assert DataDir(tmp_path / "y").read_tuf_root() == json.loads(root_file.read_bytes())
