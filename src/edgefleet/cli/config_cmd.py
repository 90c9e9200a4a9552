"""``edgefleet config list|set|unset|show``: remote agent configuration (docs/devices.md)."""

from __future__ import annotations

import json
from typing import Any

import click

from edgefleet.cli.output import Column, echo_json, format_table
from edgefleet.cli.pairs import parse_pairs
from edgefleet.cli.state import CliState, pass_state
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.selector import parse_selector

__all__ = ["config"]

_COLUMNS: list[Column] = [("SCOPE", "scope"), ("TARGET", "target"), ("SETTINGS", "settings_text")]


def _scope(class_name: str | None, selector: str | None, device_id: str | None) -> tuple[str, str]:
    named = (("class", class_name), ("selector", selector), ("device", device_id))
    given = [(s, t) for s, t in named if t is not None]
    if len(given) != 1:
        raise InvalidDocumentError(
            "name exactly one of --class, --selector, --device", code="invalid_scope",
            expected="one scope", got=[s for s, _ in given],
        )  # fmt: skip
    if selector is not None:
        parse_selector(selector)  # checked before sending: an empty one is empty_selector, not a scope error
    return given[0][0], str(given[0][1])


def _settings_text(layer: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(layer["settings"].items()))


def _value(text: str) -> Any:
    """``2`` -> 2, ``0.5`` -> 0.5, ``debug`` -> "debug" (JSON where it parses, else the text)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``NAME=VALUE`` arguments; one NAME given two different values is refused (``parse_pairs``' rule),
    never settled by keeping the last."""
    cleaned: list[str] = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InvalidDocumentError(
                "settings are NAME=VALUE", code="invalid_config_value", expected="e.g. poll_interval_s=60",
                got=pair,
            )  # fmt: skip
        cleaned.append(f"{name.strip()}={value.strip()}")
    texts = parse_pairs(cleaned, what="setting", code="invalid_config_value")
    return {name: _value(text) for name, text in texts.items()}


_SCOPE_OPTIONS = [
    click.option("--class", "class_name", default=None, help="Every device of this hardware class."),
    click.option("--selector", default=None, help="Devices whose labels match, e.g. 'site=plant-3,line!=2'."),
    click.option("--device", "device_id", default=None, help="One device."),
]


def _with_scope(fn: Any) -> Any:
    for option in reversed(_SCOPE_OPTIONS):
        fn = option(fn)
    return fn


@click.group("config")
def config() -> None:
    """Remote agent configuration: per class, label selector or device (device > selector > class)."""


@config.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def list_cmd(state: CliState, as_json: bool) -> None:
    """Every configuration layer, and the settings an operator may set (bounds; live or at restart)."""
    with state.client() as client:
        data = client.list_config()
    if as_json:
        echo_json(data)
        return
    rows = [{**item, "settings_text": _settings_text(item)} for item in data["items"]]
    click.echo(format_table(rows, _COLUMNS) if rows else "no configuration set: agents run their defaults")
    click.echo("\nsettings:")
    for name, s in sorted(data["settings"].items()):
        click.echo(f"  {name:<28} {s['expected']:<34} {'live' if s['live'] else 'at restart'}")


@config.command("set")
@_with_scope
@click.argument("pairs", nargs=-1, required=True, metavar="NAME=VALUE...")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def set_cmd(
    state: CliState,
    class_name: str | None,
    selector: str | None,
    device_id: str | None,
    pairs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Set settings in one layer, e.g. ``config set --class c poll_interval_s=60 log_level=debug``."""
    scope, target = _scope(class_name, selector, device_id)
    settings = parse_settings(pairs)
    with state.client() as client:
        layer = client.set_config(scope=scope, target=target, settings=settings)
    if as_json:
        echo_json(layer)
        return
    click.echo(
        f"{layer['scope']} {layer['target']}: " + ", ".join(f"{k}={v}" for k, v in layer["settings"].items())
    )


@config.command("unset")
@_with_scope
@click.argument("names", nargs=-1, metavar="[NAME...]")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def unset_cmd(
    state: CliState,
    class_name: str | None,
    selector: str | None,
    device_id: str | None,
    names: tuple[str, ...],
    as_json: bool,
) -> None:
    """Remove settings from one layer (every setting of it when no NAME is given)."""
    scope, target = _scope(class_name, selector, device_id)
    with state.client() as client:
        result = client.unset_config(scope=scope, target=target, settings=names)
    if as_json:
        echo_json(result)
        return
    layer = result["layer"]
    click.echo(
        f"{scope} {target}: "
        + (", ".join(f"{k}={v}" for k, v in layer["settings"].items()) if layer else "none")
    )


@config.command("show")
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def show_cmd(state: CliState, device_id: str, as_json: bool) -> None:
    """One device: desired configuration (and where each setting comes from) vs what it applied, and its
    update window now."""
    with state.client() as client:
        view = client.device_config(device_id)
    if as_json:
        echo_json(view)
        return
    cfg, window = view["config"], view["update_window"]
    applied = cfg.get("applied") or {}
    values = applied.get("applied") or {}
    click.echo(f"{'setting':<28} {'desired':<12} {'from':<28} applied")
    for name in sorted(set(cfg["desired"]) | set(values) | set(applied.get("restart_needed") or [])):
        state_text = str(values.get(name, "-"))
        if name in (applied.get("restart_needed") or []):
            state_text = "at next restart"
        if name in (applied.get("refused") or {}):
            state_text = f"refused ({applied['refused'][name]})"
        desired = cfg["desired"].get(name, "-")
        click.echo(f"{name:<28} {desired!s:<12} {cfg['sources'].get(name, '-'):<28} {state_text}")
    click.echo(f"in sync: {'yes' if cfg['in_sync'] else 'no'}")
    zone = window["timezone"] or "UTC (none reported)"
    status = "open" if window["open"] else f"closed, opens {window['next_open_at']}"
    click.echo(f"update window: {window['window']} in {zone}: {status}")
