"""Human tables and ``--json`` output for the CLI."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click
import msgspec

__all__ = ["Column", "echo_json", "format_table", "to_jsonable"]

Column = tuple[str, str]
"""(header, key) where key may be dotted for nested values, e.g. ``budgets.max_model_mb``."""


def to_jsonable(value: Any) -> Any:
    """A pydantic model (recognized by its ``model_dump``: ``agent run`` goes through this module and must not
    import pydantic), a wire struct, or plain data, as JSON-able data."""
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    if isinstance(value, Mapping):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def echo_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), indent=2, sort_keys=True, ensure_ascii=False))


def _lookup(row: Mapping[str, Any], key: str) -> Any:
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """Left-aligned columns separated by two spaces, header first; no trailing spaces."""
    cells = [[header for header, _ in columns]]
    cells += [[_cell(_lookup(row, key)) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
    return "\n".join(lines)
