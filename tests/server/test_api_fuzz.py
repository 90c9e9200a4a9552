"""Schemathesis against the running server's own ``/openapi.json`` (issue 14): as the admin, a viewer and
nobody, with bounded examples. It fails on any 5xx, any response that violates the declared schema, any
status or media type the contract does not declare, and any wrong answer to an undeclared method (405 with
the right ``Allow``).

Bounded for CI on 2 cores: the admin run takes the coverage phase (boundary values of every parameter,
undeclared methods) and the fuzzing phase; the viewer and anonymous runs fuzz. ``EDGEFLEET_FUZZ_EXAMPLES``
(default 5 per operation) and ``EDGEFLEET_FUZZ_SEED`` (default fixed, so a failure reproduces) tune it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("schemathesis")
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "response_schema_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "unsupported_method",
        "allow_header_conformance",
    ]
)


def _seed(server) -> str:
    """A class, a model with a version, and a viewer token; returns the viewer's secret."""
    from edgefleet.protocol import parse_classes_toml

    with httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=30) as c:
        classes = [k.to_dict() for k in parse_classes_toml(EXAMPLES.read_text())]
        assert c.post("/v1/classes/apply", json={"classes": classes}).status_code == 200
        assert c.post("/v1/models", json={"name": "detector"}).status_code == 201
        r = c.post("/v1/tokens", json={"name": "fuzz-viewer", "role": "viewer"})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])


def _run(url: str, token: str | None, phases: str, report: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
        "--checks", CHECKS,
        "--phases", phases,
        "--max-examples", os.environ.get("EDGEFLEET_FUZZ_EXAMPLES", "5"),
        "--seed", os.environ.get("EDGEFLEET_FUZZ_SEED", "20261204"),
        "--workers", "1",
        "--request-timeout", "60",
        "--warnings", "off",
        "--no-shrink",
        "--report", "junit", "--report-junit-path", str(report),
    ]  # fmt: skip
    if token is not None:
        command[5:5] = ["--header", f"Authorization: Bearer {token}"]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    return subprocess.run(  # in the report's folder: schemathesis keeps a cache in its working directory
        command, capture_output=True, text=True, timeout=900, env=env, check=False, cwd=report.parent
    )


# Every operation is exercised (about 100 now): on a loaded 2-core host the admin run passed pytest's default
# 300 s, so the test's own limit is the subprocess's (900 s), not the default.
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("who", "phases"), [("admin", "coverage,fuzzing"), ("viewer", "fuzzing"), ("anonymous", "fuzzing")]
)
def test_the_server_keeps_its_published_contract(live_server, tmp_path, who, phases) -> None:
    viewer = _seed(live_server)
    token = {"admin": live_server.admin_token, "viewer": viewer, "anonymous": None}[who]
    done = _run(live_server.url, token, phases, tmp_path / "junit.xml")
    report = f"schemathesis ({who}):\n{done.stdout[-12000:]}\n{done.stderr[-2000:]}"
    assert done.returncode == 0, report
    operations = sum(
        1
        for item in httpx.get(f"{live_server.url}/openapi.json").json()["paths"].values()
        for method in item
        if method in {"get", "put", "post", "patch", "delete", "head"}
    )
    assert f"Tested: {operations}" in done.stdout, report
