"""The style rule "a module holds one concept; ~450 lines is a smell": a module of ``src/edgefleet`` longer
than 450 lines says why at the top of its docstring, in a sentence starting ``Over 450 lines:``."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "edgefleet"
MAX_LINES = 450
REASON = "Over 450 lines:"


def long_modules_without_a_reason(root: Path) -> list[str]:
    missing = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        # The reason may follow the docstring's first sentence, wrapped over lines.
        if REASON not in " ".join(doc.split()):
            missing.append(f"{path.relative_to(root.parent)} ({text.count(chr(10))} lines)")
    return missing


def test_every_long_module_says_why_it_is_long() -> None:
    missing = long_modules_without_a_reason(SRC)
    assert missing == [], f"split these or give the reason ({REASON!r} in the module docstring): {missing}"


def test_the_rule_finds_a_long_module_without_a_reason(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "long.py").write_text('"""A module."""\n' + "x = 1\n" * 460)
    (pkg / "reasoned.py").write_text('"""A module.\n\nOver 450 lines: one table.\n"""\n' + "x = 1\n" * 460)
    (pkg / "short.py").write_text('"""A module."""\n' + "x = 1\n" * 10)
    assert long_modules_without_a_reason(pkg) == ["pkg/long.py (461 lines)"]
