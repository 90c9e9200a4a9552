#!/usr/bin/env python3
"""Collect every stable error code edgefleet raises and write the catalogue ``docs/errors.md``.

Codes are part of the API (clients, dashboards and telemetry key on them), so each one needs an entry that
says what it means and where it comes from. The catalogue is read from the source, not written by hand:

- ``code = "..."`` on an error class (a class whose name ends in ``Error``): the class's default code;
- ``code="..."`` passed to any call (``raise NotFoundError("...", code="device_not_found")``): a specific
  code, its meaning taken from the message given at that call;
- ``error_response(status, "code", "message")`` in the HTTP layer, and the values of a ``*_CODES`` table.

    python tools/error_catalogue.py            # rewrite docs/errors.md
    python tools/error_catalogue.py --check    # exit 1 when a code has no entry or an entry no code

``--check`` (run by tests/test_error_catalogue.py) compares the set of codes, not the text, so editing a
message does not fail the tests; re-run the tool to refresh meanings and places.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "edgefleet"
CATALOGUE = ROOT / "docs" / "errors.md"
CODE_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
ROW_RE = re.compile(r"^\| `([a-z0-9_]+)` \|", re.MULTILINE)
MAX_MEANINGS = 3
_CLASS_DOC = "\0class:"


@dataclass
class Entry:
    code: str
    meanings: list[str] = field(default_factory=list)
    error_classes: set[str] = field(default_factory=set)
    http_statuses: set[int] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)


@dataclass
class _ErrorClass:
    name: str
    bases: list[str]
    code: str | None
    http_status: int | None
    doc: str


def _text(node: ast.expr | None) -> str | None:
    """A message as written: a string constant, or an f-string with its fields shown as ``{...}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            else:
                parts.append("{...}")
        return "".join(parts)
    return None


def _callee(node: ast.Call) -> str:
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    if isinstance(node.func, ast.Name):
        return node.func.id
    return ""


def _class_attr(cls: ast.ClassDef, name: str) -> object:
    for stmt in cls.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
        if isinstance(stmt, ast.AnnAssign):
            target = stmt.target
        if isinstance(target, ast.Name) and target.id == name:
            value = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
            if isinstance(value, ast.Constant):
                return value.value
    return None


def _base_name(base: ast.expr) -> str:
    if isinstance(base, ast.Attribute):
        return base.attr
    return base.id if isinstance(base, ast.Name) else ""


class _Collector:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.classes: dict[str, _ErrorClass] = {}
        # (code, error class, message, HTTP status, module)
        self.uses: list[tuple[str, str, str | None, int | None, str]] = []

    def scan(self, source: Path) -> dict[str, Entry]:
        for path in sorted(source.rglob("*.py")):
            module = path.relative_to(source.parent).as_posix()
            self._scan_module(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), module)
        # a class's own description first, then the messages of the places that raise it
        uses = sorted(self.uses, key=lambda use: use[2] is None or not use[2].startswith(_CLASS_DOC))
        for code, cls, message, status, module in uses:
            message = message.removeprefix(_CLASS_DOC) if message else message
            entry = self.entries.setdefault(code, Entry(code))
            if message and message not in entry.meanings:
                entry.meanings.append(message)
            if cls:
                entry.error_classes.add(cls)
                resolved = status if status is not None else self._status_of(cls)
            else:
                resolved = status
            if resolved is not None:
                entry.http_statuses.add(resolved)
            entry.modules.add(module)
        return dict(sorted(self.entries.items()))

    def _status_of(self, name: str, depth: int = 0) -> int | None:
        """The HTTP status a class maps to; none for the root class (its 500 means "not mapped")."""
        cls = self.classes.get(name)
        if cls is None or depth > 20 or name == "EdgefleetError":
            return None
        if cls.http_status is not None:
            return cls.http_status
        for base in cls.bases:
            status = self._status_of(base, depth + 1)
            if status is not None:
                return status
        return None

    def _scan_module(self, tree: ast.Module, module: str) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                self._error_class(node, module)
            elif isinstance(node, ast.Call):
                self._call(node, module)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                if any(n.endswith("_CODES") for n in names):
                    for key, value in zip(node.value.keys, node.value.values, strict=True):
                        code = _text(value)
                        status = key.value if isinstance(key, ast.Constant) else None
                        if code and CODE_RE.match(code):
                            http = status if isinstance(status, int) else None
                            self.uses.append((code, "", f"HTTP {http}" if http else None, http, module))

    def _error_class(self, node: ast.ClassDef, module: str) -> None:
        code = _class_attr(node, "code")
        status = _class_attr(node, "http_status")
        doc = (ast.get_docstring(node) or "").strip().split("\n\n")[0].replace("\n", " ")
        self.classes[node.name] = _ErrorClass(
            node.name,
            [_base_name(b) for b in node.bases],
            code if isinstance(code, str) else None,
            status if isinstance(status, int) else None,
            doc,
        )
        if isinstance(code, str) and CODE_RE.match(code):
            meaning = _CLASS_DOC + (doc or f"any {node.name} without a more specific code")
            self.uses.append((code, node.name, meaning, status if isinstance(status, int) else None, module))

    def _call(self, node: ast.Call, module: str) -> None:
        name = _callee(node)
        message = _text(node.args[0]) if node.args else None
        for kw in node.keywords:
            if kw.arg == "message" and message is None:
                message = _text(kw.value)
        for kw in node.keywords:
            code = _text(kw.value) if kw.arg == "code" else None
            if code and CODE_RE.match(code):
                cls = name if name.endswith("Error") else ""
                self.uses.append((code, cls, message, None, module))
        if name == "error_response" and len(node.args) >= 3:
            status_node, code_node, message_node = node.args[:3]
            code = _text(code_node)
            status = status_node.value if isinstance(status_node, ast.Constant) else None
            if code and CODE_RE.match(code):
                http = status if isinstance(status, int) else None
                self.uses.append((code, "", _text(message_node), http, module))


def collect(source: Path = SOURCE) -> dict[str, Entry]:
    """Every stable error code under ``source``, with its meanings, classes, HTTP statuses and modules."""
    return _Collector().scan(source)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def render(entries: dict[str, Entry]) -> str:
    lines = [
        "# Error codes",
        "",
        "Every error edgefleet reports (over HTTP, in the CLI, in device events and telemetry) carries a",
        'stable snake_case `code` (`{"code", "message", "details"}` on the wire; `details` says what was',
        "expected and what arrived). Clients, dashboards and alerts may key on a code; a code is never",
        "renamed or reused for another meaning. A specific code refines its class's code: a client that",
        "knows only the class (for example by its HTTP status) still handles it correctly.",
        "",
        "This page is generated from the source by `tools/error_catalogue.py` (run it after adding a code);",
        "`tests/test_error_catalogue.py` fails when a code has no entry here.",
        "",
        f"{len(entries)} codes. *HTTP*: the status the control plane answers with, where the error crosses",
        "HTTP. *Raised as*: the error class. *Where*: the modules under `src/edgefleet/` that raise it.",
        "",
        "| code | HTTP | raised as | meaning | where |",
        "|---|---|---|---|---|",
    ]
    for entry in entries.values():
        meanings = entry.meanings[:MAX_MEANINGS]
        more = len(entry.meanings) - len(meanings)
        meaning = "; ".join(meanings) + (f" (+{more} more)" if more > 0 else "")
        lines.append(
            "| `{}` | {} | {} | {} | {} |".format(
                entry.code,
                ", ".join(str(s) for s in sorted(entry.http_statuses)) or "",
                ", ".join(f"`{c}`" for c in sorted(entry.error_classes)),
                _cell(meaning),
                ", ".join(f"`{m.removeprefix('edgefleet/')}`" for m in sorted(entry.modules)),
            )
        )
    return "\n".join(lines) + "\n"


def documented_codes(text: str) -> set[str]:
    return set(ROW_RE.findall(text))


def check(entries: dict[str, Entry], catalogue: Path = CATALOGUE) -> list[str]:
    """Problems that make the catalogue wrong: codes without an entry, entries without a code."""
    documented = documented_codes(catalogue.read_text(encoding="utf-8")) if catalogue.exists() else set()
    problems = []
    for code in sorted(set(entries) - documented):
        modules = ", ".join(sorted(entries[code].modules))
        problems.append(f"{code}: raised in {modules} but has no entry in {catalogue.name}")
    for code in sorted(documented - set(entries)):
        problems.append(f"{code}: listed in {catalogue.name} but raised nowhere any more")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that every code has an entry")
    args = parser.parse_args(argv)
    entries = collect()
    if args.check:
        problems = check(entries)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python tools/error_catalogue.py", file=sys.stderr)
        return 1 if problems else 0
    CATALOGUE.write_text(render(entries), encoding="utf-8")
    print(f"wrote {CATALOGUE.relative_to(ROOT)}: {len(entries)} codes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
