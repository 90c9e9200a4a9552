"""Files named on the command line: bounded, and unreadable ones get a clear code."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.cli.local_file import read_local_file
from edgefleet.protocol.errors import InvalidDocumentError


def test_a_file_within_the_bound_is_read(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_bytes(b"{}")
    assert read_local_file(path, max_bytes=2, what="spec file") == b"{}"


def test_a_file_over_the_bound_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "classes.toml"
    path.write_bytes(b"x" * 11)
    with pytest.raises(InvalidDocumentError) as info:
        read_local_file(path, max_bytes=10, what="classes file")
    assert info.value.code == "document_too_large"
    assert info.value.message == "classes file too large"
    assert info.value.details == {"expected": "<= 10 bytes", "got": 11}


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.mkdir()])
def test_a_missing_or_unreadable_file_is_file_unreadable(tmp_path: Path, make) -> None:
    path = tmp_path / "metadata.json"
    make(path)
    with pytest.raises(InvalidDocumentError) as info:
        read_local_file(path, max_bytes=1_000_000, what="metadata file")
    assert info.value.code == "file_unreadable"
    assert info.value.details["got"] == str(path)
