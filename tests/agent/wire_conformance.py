"""Compare an agent wire struct (``edgefleet.protocol.wire``) with the pydantic model it mirrors.

``constraint_profile`` flattens a JSON Schema into ``path -> {keyword: value}`` (``$ref`` followed, ``anyOf``
merged, ``[]`` for list items, ``{}`` for map values, ``{key}`` for map keys), keeping what decides
whether a document is accepted: JSON types, bounds, patterns, enums and which fields are required. A struct
may leave out fields the agent never reads, named in ``ignored``; every field it has must carry the model's
rules."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel

RULE_KEYWORDS = (
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "enum",
    "const",
)
"""What the comparison keeps. Not ``format``: msgspec names ``date-time`` only for an aware datetime; whether
a time must carry its zone is checked by documents both sides refuse (``test_wire_conformance``)."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _walk(node: dict[str, Any], path: str, defs: dict[str, Any], out: dict[str, dict[str, Any]]) -> None:
    node = _resolve(node, defs)
    entry = out.setdefault(path, {"types": set()})
    for key in RULE_KEYWORDS:
        if key in node:
            value = node[key]
            entry[key] = tuple(sorted(map(str, value))) if isinstance(value, list) else value
    kind = node.get("type")
    if isinstance(kind, list):
        entry["types"].update(kind)
    elif kind is not None:
        entry["types"].add(kind)
    elif "enum" in node or "const" in node:
        values = node.get("enum", [node.get("const")])
        entry["types"].update(
            {"string" if isinstance(v, str) else "null" if v is None else "other" for v in values}
        )
    for variant in node.get("anyOf", []) + node.get("oneOf", []):
        _walk(variant, path, defs, out)
    if "properties" in node:
        entry["required"] = tuple(sorted(node.get("required", [])))
        for name, sub in node["properties"].items():
            _walk(sub, f"{path}.{name}", defs, out)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}[]", defs, out)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}{{}}", defs, out)
    for pattern, sub in node.get("patternProperties", {}).items():  # pydantic's dict[Name, X]
        out.setdefault(f"{path}{{key}}", {"types": {"string"}})["pattern"] = pattern
        _walk(sub, f"{path}{{}}", defs, out)
    if isinstance(node.get("propertyNames"), dict):  # msgspec's dict[Name, X]: keys are strings
        out.setdefault(f"{path}{{key}}", {"types": {"string"}})
        _walk(node["propertyNames"], f"{path}{{key}}", defs, out)


def constraint_profile(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    _walk(schema, "$", schema.get("$defs", {}), out)
    for entry in out.values():
        entry["types"] = tuple(sorted(entry["types"]))
    return out


def model_profile(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    return constraint_profile(model.model_json_schema(mode="validation"))


def struct_profile(struct: type[msgspec.Struct]) -> dict[str, dict[str, Any]]:
    """A struct's pattern ends ``\\Z`` where the model's ends ``$`` (``protocol.wire.base.whole``): the same
    rule for each's regex engine."""
    out = constraint_profile(msgspec.json.schema(struct))
    for entry in out.values():
        if isinstance(entry.get("pattern"), str) and entry["pattern"].endswith("\\Z"):
            entry["pattern"] = entry["pattern"].removesuffix("\\Z") + "$"
    return out


def _under(path: str, ignored: Iterable[str]) -> bool:
    return any(
        path == f"$.{i}"
        or path.startswith(f"$.{i}.")
        or path.startswith(f"$.{i}[")
        or path.startswith(f"$.{i}{{")
        for i in ignored
    )


def assert_mirrors(
    struct: type[msgspec.Struct], model: type[BaseModel], *, ignored: Iterable[str] = ()
) -> None:
    """``struct`` accepts what ``model`` accepts, field for field, except the fields in ``ignored`` (dotted
    paths from the document's root, e.g. ``"metrics"`` or ``"runtime.min_version"``), which it leaves out."""
    ignored = tuple(ignored)
    want, got = model_profile(model), struct_profile(struct)
    problems = []
    for path, rules in sorted(want.items()):
        if _under(path, ignored):
            if path in got:
                problems.append(f"{path}: named in ignored but the struct has it")
            continue
        if path not in got:
            problems.append(f"{path}: in the model, not in the struct (add it, or name it in ignored)")
            continue
        mine = dict(got[path])
        theirs = dict(rules)
        if "required" in theirs:
            theirs["required"] = tuple(r for r in theirs["required"] if not _under(f"{path}.{r}", ignored))
        if mine != theirs:
            problems.append(f"{path}: model {theirs} != struct {mine}")
    problems += [f"{path}: in the struct, not in the model" for path in sorted(set(got) - set(want))]
    if problems:
        pytest.fail(f"{struct.__name__} does not mirror {model.__name__}:\n" + "\n".join(problems))


DELETE = object()
"""``with_value``'s value that removes the field."""


def with_value(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``doc`` with the dotted ``path`` (list indexes as numbers) set to ``value``, or removed
    (``DELETE``): the refused documents of the conformance tests are made from valid ones this way."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out
