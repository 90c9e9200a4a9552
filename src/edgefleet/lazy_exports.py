"""A package's public names, each imported from its home module on first use (PEP 562).

A package ``__init__`` that imports its modules eagerly makes every ``import package.small_module`` pay for
all of them: the agent's children and its resident process import only what they use (issue 17, resident
memory is imported code). Type checkers still see the names through the package's ``TYPE_CHECKING`` block.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, homes: Mapping[str, tuple[str, ...]], namespace: dict[str, Any]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``: ``homes`` maps each submodule to the names it
    exports; a name is imported once, then kept in the package's ``namespace``."""
    module_of = {name: module for module, names in homes.items() for name in names}

    def getattr_(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *module_of})

    return sorted(module_of), getattr_, dir_
