"""Remote agent configuration on the control plane: layers per class, label selector and device, merged
device > selector > class (> the agent's own defaults), delivered inside each device's signed desired state.

Every value is checked against ``protocol.agent_config`` when set (the agent checks it again). Two selector
layers that could both match one device (no label on which they differ) and that set the same setting would
make the answer depend on an order nobody chose: the second is refused (``config_selector_overlap``). Every
change is audited and moves the director epoch, so devices receive it at their next poll.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.agent_config import check_agent_config, merge_layers
from edgefleet.protocol.errors import ConflictError, InvalidDocumentError, NotFoundError
from edgefleet.server.services.audit import record
from edgefleet.server.services.director_epoch import bump_director_epoch
from edgefleet.server.store.agent_config import AgentConfigRow
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.registry import HardwareClassRow

__all__ = [
    "SCOPES",
    "ConfigLayer",
    "Scope",
    "canonical_selector",
    "effective_config",
    "layer_to_wire",
    "layers_for",
    "list_layers",
    "parse_selector",
    "selectors_overlap",
    "set_config",
    "unset_config",
]

Scope = Literal["class", "selector", "device"]
SCOPES: tuple[Scope, ...] = ("class", "selector", "device")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
MAX_SELECTOR_TERMS = 16


@dataclass(frozen=True)
class ConfigLayer:
    scope: Scope
    target: str
    selector: dict[str, str]
    settings: dict[str, Any]


def parse_selector(text: str) -> dict[str, str]:
    """``site=plant-7,line=2`` -> ``{"site": "plant-7", "line": "2"}``. Empty (it would match every
    device: use the class scope) is ``empty_selector``; a malformed term is ``invalid_selector``."""
    terms = [t.strip() for t in text.split(",") if t.strip()] if isinstance(text, str) else []
    if not terms:
        raise InvalidDocumentError(
            "a label selector needs at least one label=value", code="empty_selector",
            expected="key=value[,key=value]", got=str(text)[:80],
        )  # fmt: skip
    if len(terms) > MAX_SELECTOR_TERMS:
        raise InvalidDocumentError(
            "too many selector terms", code="invalid_selector", expected=f"<= {MAX_SELECTOR_TERMS}",
            got=len(terms),
        )  # fmt: skip
    out: dict[str, str] = {}
    for term in terms:
        key, sep, value = term.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _LABEL.fullmatch(key) or not value or len(value) > 63:
            raise InvalidDocumentError(
                f"selector term {term!r} is not key=value", code="invalid_selector",
                expected="key=value (key: letters, digits, . _ / -)", got=term[:80],
            )  # fmt: skip
        if key in out and out[key] != value:
            raise InvalidDocumentError(
                f"selector names {key!r} twice", code="invalid_selector", expected="each key once", got=term
            )
        out[key] = value
    return out


def canonical_selector(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def selectors_overlap(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Pure: some device could match both (no label on which they ask for different values)."""
    return all(b[k] == v for k, v in a.items() if k in b)


def _target_for(session: Session, scope: str, target: str) -> tuple[Scope, str, dict[str, str]]:
    if scope == "class":
        if session.get(HardwareClassRow, target[:63]) is None:
            raise NotFoundError("no such hardware class", code="class_not_found", got=target[:80])
        return "class", target, {}
    if scope == "device":
        if session.get(DeviceRow, target[:32]) is None:
            raise NotFoundError("no such device", code="device_not_found", got=target[:80])
        return "device", target, {}
    if scope == "selector":
        selector = parse_selector(target)
        return "selector", canonical_selector(selector), selector
    raise InvalidDocumentError(
        "scope must be class, selector or device", code="invalid_scope", got=scope[:32]
    )


def set_config(
    session: Session, scope: str, target: str, settings: Any, *, actor: str, now: datetime
) -> ConfigLayer:
    """Set (add or change) settings in one layer. Checked first: nothing is written when any value, the
    scope or the target is refused."""
    checked = check_agent_config(settings)
    if not checked:
        raise InvalidDocumentError(
            "no settings to set", code="invalid_config_value", expected=">= 1 setting", got={}
        )
    with session.begin():
        kind, key, selector = _target_for(session, scope, target)
        row = session.get(AgentConfigRow, (kind, key))
        merged = {**(row.settings if row is not None else {}), **checked}
        if kind == "selector":
            _refuse_overlap(session, key, selector, merged)
        if row is None:
            row = AgentConfigRow(scope=kind, target=key, selector=selector, settings={}, updated_by=actor)
            session.add(row)
        row.settings, row.updated_at, row.updated_by = dict(sorted(merged.items())), now, actor
        bump_director_epoch(session)
        record(
            session, actor=actor, action="config.set", target=f"{kind}:{key}", now=now,
            details={"settings": checked},
        )  # fmt: skip
        return _layer(row)


def unset_config(
    session: Session, scope: str, target: str, names: Iterable[str], *, actor: str, now: datetime
) -> ConfigLayer | None:
    """Remove settings from a layer (all of them when ``names`` is empty); the layer goes when empty.
    Returns what is left, or ``None``."""
    wanted = sorted(set(names))
    with session.begin():
        kind, key, _selector = _target_for(session, scope, target)
        row = session.get(AgentConfigRow, (kind, key))
        if row is None:
            raise NotFoundError(
                "no configuration at that scope", code="config_not_found", got=f"{kind}:{key}"
            )
        unknown = [n for n in wanted if n not in row.settings]
        if unknown:
            raise NotFoundError(
                "settings not set at that scope", code="config_not_found", expected=sorted(row.settings),
                got=unknown,
            )  # fmt: skip
        left = {k: v for k, v in row.settings.items() if wanted and k not in wanted}
        bump_director_epoch(session)
        record(
            session, actor=actor, action="config.unset", target=f"{kind}:{key}", now=now,
            details={"settings": wanted or sorted(row.settings)},
        )  # fmt: skip
        if not left:
            session.delete(row)
            return None
        row.settings, row.updated_at, row.updated_by = left, now, actor
        return _layer(row)


def _refuse_overlap(
    session: Session, key: str, selector: dict[str, str], settings: Mapping[str, Any]
) -> None:
    others = session.execute(
        select(AgentConfigRow).where(AgentConfigRow.scope == "selector", AgentConfigRow.target != key)
    ).scalars()
    for other in others:
        shared = sorted(set(other.settings) & set(settings))
        if shared and selectors_overlap(selector, other.selector):
            raise ConflictError(
                f"selector {key!r} overlaps {other.target!r}, which sets {', '.join(shared)} too",
                code="config_selector_overlap",
                expected="selectors that differ on some label, or different settings",
                got={"selector": key, "overlaps": other.target, "settings": shared},
            )


def _layer(row: AgentConfigRow) -> ConfigLayer:
    return ConfigLayer(row.scope, row.target, dict(row.selector), dict(row.settings))  # type: ignore[arg-type]


def list_layers(session: Session) -> list[ConfigLayer]:
    with session.begin():
        rows = session.execute(
            select(AgentConfigRow).order_by(AgentConfigRow.scope, AgentConfigRow.target)
        ).scalars()
        return [_layer(r) for r in rows]


def layers_for(session: Session, device: DeviceRow) -> list[ConfigLayer]:
    """The layers that apply to ``device``, in increasing precedence: class, selectors, device (inside the
    caller's transaction)."""
    rows = session.execute(
        select(AgentConfigRow).where(
            ((AgentConfigRow.scope == "class") & (AgentConfigRow.target == device.hardware_class))
            | (AgentConfigRow.scope == "selector")
            | ((AgentConfigRow.scope == "device") & (AgentConfigRow.target == device.id))
        )
    ).scalars()
    order = {"class": 0, "selector": 1, "device": 2}
    labels = device.labels or {}
    applying = [
        r for r in rows if r.scope != "selector" or all(labels.get(k) == v for k, v in r.selector.items())
    ]
    return [_layer(r) for r in sorted(applying, key=lambda r: (order[r.scope], r.target))]


def effective_config(layers: list[ConfigLayer]) -> tuple[dict[str, Any], dict[str, str]]:
    """Pure: the merged settings and, per setting, the layer it comes from (``scope:target``)."""
    merged = merge_layers(*(layer.settings for layer in layers))
    sources: dict[str, str] = {}
    for layer in layers:
        for name in layer.settings:
            sources[name] = f"{layer.scope}:{layer.target}"
    return merged, dict(sorted(sources.items()))


def layer_to_wire(layer: ConfigLayer) -> dict[str, Any]:
    return {
        "scope": layer.scope,
        "target": layer.target,
        "selector": layer.selector or None,
        "settings": layer.settings,
    }
