"""``edgefleet tuf export`` into a directory it cannot create: an error line with a code, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli


def test_export_into_a_directory_it_cannot_create_is_an_error_code(admin_cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bad = admin_cli.script("tuf", "export", str(blocker / "out"), "--json")
    assert bad.code == 5, bad.err
    assert "error [directory_unwritable]" in bad.err
    assert "Traceback" not in bad.err
    assert json.loads(bad.out)["error"]["details"]["expected"] == "a directory this user can create and write"
    good = admin_cli("tuf", "export", str(tmp_path / "out"), "--json")
    assert good.code == 0, good.err
    assert (tmp_path / "out" / "metadata" / "timestamp.json").is_file()
