"""docs/errors.md lists every stable error code the source raises (tools/error_catalogue.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def catalogue() -> ModuleType:
    spec = importlib.util.spec_from_file_location("error_catalogue", ROOT / "tools" / "error_catalogue.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_every_code_in_the_source_has_an_entry_and_every_entry_a_code(catalogue: ModuleType) -> None:
    problems = catalogue.check(catalogue.collect())
    assert not problems, "docs/errors.md is out of date (run python tools/error_catalogue.py):\n" + "\n".join(
        problems
    )


def test_the_catalogue_knows_the_codes_clients_key_on(catalogue: ModuleType) -> None:
    entries = catalogue.collect()
    assert entries["not_found"].http_statuses == {404}
    assert entries["invalid_document"].http_statuses == {422}
    assert "NotFoundError" in entries["device_not_found"].error_classes
    assert entries["device_not_found"].meanings
    assert "server/services/devices.py" in {
        m.removeprefix("edgefleet/") for m in entries["device_not_found"].modules
    }
    # the HTTP layer's own codes (no error class) are in too
    assert entries["method_not_allowed"].http_statuses == {405}
    assert entries["internal_error"].http_statuses == {500}


def test_a_new_code_without_an_entry_fails_the_check(catalogue: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "edgefleet"
    source.mkdir()
    (source / "errors.py").write_text(
        "class NotFoundError(Exception):\n"
        "    code = 'not_found'\n"
        "    http_status = 404\n"
        "class WidgetError(NotFoundError):\n"
        "    '''A widget went missing.'''\n"
        "    code = 'widget_missing'\n"
    )
    (source / "service.py").write_text(
        "from edgefleet.errors import NotFoundError\n"
        "def find(name):\n"
        "    raise NotFoundError(f'no widget {name}', code='widget_not_found', got=name)\n"
    )
    entries = catalogue.collect(source)
    assert set(entries) == {"not_found", "widget_missing", "widget_not_found"}
    assert entries["widget_missing"].http_statuses == {404}  # inherited from its base class
    assert entries["widget_not_found"].meanings == ["no widget {...}"]

    doc = tmp_path / "errors.md"
    doc.write_text(catalogue.render({k: v for k, v in entries.items() if k != "widget_not_found"}))
    problems = catalogue.check(entries, doc)
    assert len(problems) == 1
    assert problems[0].startswith("widget_not_found: raised in edgefleet/service.py")

    doc.write_text(catalogue.render(entries) + "| `gone_code` | | | removed long ago | |\n")
    assert catalogue.check(entries, doc) == ["gone_code: listed in errors.md but raised nowhere any more"]

    doc.write_text(catalogue.render(entries))
    assert catalogue.check(entries, doc) == []
