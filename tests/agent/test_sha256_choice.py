"""The resident agent's SHA-256: the interpreter's built-in one below 64 MiB of installed versions (no OpenSSL
in the process), OpenSSL's from there, the environment's choice first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.agent.sha256_choice import (
    ENV,
    OPENSSL_FROM_BYTES,
    choose_sha256,
    installed_bytes,
    use_openssl,
)
from edgefleet.protocol.errors import InvalidDocumentError


@pytest.mark.parametrize(
    ("installed", "forced", "openssl"),
    [
        (0, None, False),
        (OPENSSL_FROM_BYTES - 1, None, False),
        (OPENSSL_FROM_BYTES, None, True),
        (10 * OPENSSL_FROM_BYTES, "builtin", False),
        (0, "openssl", True),
    ],
)
def test_the_rule(installed: int, forced: str | None, openssl: bool) -> None:
    assert use_openssl(installed, forced) is openssl


def test_an_unknown_choice_is_refused_with_what_is_expected() -> None:
    with pytest.raises(InvalidDocumentError) as info:
        use_openssl(0, "fast")
    assert info.value.code == "invalid_sha256_choice"
    assert info.value.details["got"] == "fast"
    assert "openssl, builtin" in info.value.details["expected"]


def test_installed_bytes_counts_the_slots_files_and_stops_at_the_line(tmp_path: Path) -> None:
    version = tmp_path / "slots" / "default" / "versions" / "k1" / "files"
    version.mkdir(parents=True)
    (version / "model.onnx").write_bytes(b"x" * 1000)
    (version / "weights.bin").write_bytes(b"x" * 1000)
    (version.parent / "manifest.json").write_bytes(b"{}")
    assert installed_bytes(tmp_path / "slots") == 2002
    assert 500 <= installed_bytes(tmp_path / "slots", stop_at=500) <= 1002  # stopped once over the line
    assert installed_bytes(tmp_path / "nothing-here") == 0


def test_choose_marks_openssl_absent_only_when_it_is_not_wanted(tmp_path: Path) -> None:
    modules: dict[str, object] = {}
    assert choose_sha256(tmp_path, {}, modules) == "sha256: built-in (installed versions < 64 MiB)"
    assert modules == {"_hashlib": None}
    modules = {}
    assert choose_sha256(tmp_path, {ENV: "openssl"}, modules) == f"sha256: openssl ({ENV}=openssl)"
    assert modules == {}
    loaded: dict[str, object] = {"hashlib": object()}
    assert "already loaded" in choose_sha256(tmp_path, {}, loaded)
    assert set(loaded) == {"hashlib"}


_CHILD = """
import json, os, sys
from pathlib import Path
from edgefleet.agent.sha256_choice import choose_sha256
line = choose_sha256(Path(sys.argv[1]), os.environ, sys.modules)
import hashlib, hmac
from edgefleet.agent.install.slots import version_key  # what the agent hashes with
print(json.dumps({
    "line": line,
    "sha256": hashlib.sha256(b"edgefleet").hexdigest(),
    "hmac": hmac.new(b"k", b"m", "sha256").hexdigest(),
    "libcrypto": "libcrypto" in Path("/proc/self/maps").read_text(),
}))
"""


def _child(data_dir: Path, code: str, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != ENV} | env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_small_install_computes_the_same_digests_without_openssl_in_the_process(tmp_path: Path) -> None:
    """The built-in SHA-256 gives the same digests (and HMACs) as OpenSSL's; libcrypto is not even mapped."""
    got = _child(tmp_path, _CHILD)
    assert got["line"].startswith("sha256: built-in")
    assert got["libcrypto"] is False
    import hashlib
    import hmac

    assert got["sha256"] == hashlib.sha256(b"edgefleet").hexdigest()
    assert got["hmac"] == hmac.new(b"k", b"m", "sha256").hexdigest()
    forced = _child(tmp_path, _CHILD, **{ENV: "openssl"})
    assert forced["libcrypto"] is True
    assert forced["sha256"] == got["sha256"]


def test_tls_still_works_with_the_built_in_sha256(tmp_path: Path) -> None:
    """An https control plane: ssl loads libcrypto for TLS; hashlib keeps the built-in SHA-256."""
    tls = "ctx = __import__('ssl').create_default_context()\n"
    tls += "print(json.dumps({'tls': ctx.verify_mode == 2, 'openssl_hashes': '_hashlib' in sys.modules and "
    tls += "sys.modules['_hashlib'] is not None}))\n"
    assert _child(tmp_path, _CHILD + tls) == {"tls": True, "openssl_hashes": False}
