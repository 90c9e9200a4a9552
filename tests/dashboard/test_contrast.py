"""WCAG 2.1 AA contrast of the dashboard's colours, read from ``static/dashboard.css`` (pure, no server).

Text needs 4.5:1 against what it is drawn on (1.4.3; the dashboard has no large-text exception to lean on:
badges and table headings are small), and the visual parts that identify a control or its state need 3:1
against the surface around them (1.4.11: the keyboard focus ring, form field borders). The pairs are the
ones the stylesheet sets up: body and muted text on the page and on cards, links, badges on each state
colour, the breach and error colours, the top bar, buttons.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import edgefleet.server.dashboard as dashboard_package

CSS_PATH = Path(dashboard_package.__file__).parent / "static" / "dashboard.css"
TEXT_MIN = 4.5
UI_MIN = 3.0

Rule = tuple[str, dict[str, str]]


# --- a small CSS reader: rules (also inside @media), declarations, custom properties ---------------------


def parse_rules(css: str) -> list[Rule]:
    """Every ``selector { declarations }`` in order; at-rule blocks (``@media``) are read through."""
    text = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    rules: list[Rule] = []

    def read(block: str) -> None:
        pos = 0
        while (brace := block.find("{", pos)) >= 0:
            depth, end = 1, brace + 1
            while depth:
                depth += {"{": 1, "}": -1}.get(block[end], 0)
                end += 1
            selector, body = block[pos:brace].strip(), block[brace + 1 : end - 1]
            if selector.startswith("@"):
                read(body)
            else:
                declarations = {}
                for part in body.split(";"):
                    name, sep, value = part.partition(":")
                    if sep:
                        declarations[name.strip()] = value.strip()
                rules.append((selector, declarations))
            pos = end

    read(text)
    return rules


def selectors_of(rule: Rule) -> list[str]:
    return [s.strip() for s in rule[0].split(",")]


RULES = parse_rules(CSS_PATH.read_text())
VARIABLES = {name: value for selector, decls in RULES if selector == ":root" for name, value in decls.items()}
_HEX = re.compile(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")
_VAR = re.compile(r"var\((--[a-z0-9-]+)\)")


def colour_in(value: str) -> str | None:
    """The first colour a declaration value names (``#abc``, ``#aabbcc``, ``var(--x)``), as ``#rrggbb``."""
    value = _VAR.sub(lambda m: VARIABLES[m.group(1)], value)
    match = _HEX.search(value)
    if match is None:
        return None
    digits = match.group(0)[1:].lower()
    return "#" + ("".join(c * 2 for c in digits) if len(digits) == 3 else digits)


def declared(selector: str, *properties: str) -> str:
    """The colour the last rule listing ``selector`` sets in the first of ``properties`` it declares."""
    found = None
    for rule in RULES:
        if selector in selectors_of(rule):
            for prop in properties:
                if prop in rule[1] and colour_in(rule[1][prop]) is not None:
                    found = colour_in(rule[1][prop])
                    break
    assert found is not None, f"dashboard.css sets no {'/'.join(properties)} colour for {selector!r}"
    return found


def fg(selector: str) -> str:
    return declared(selector, "color")


def bg(selector: str) -> str:
    return declared(selector, "background", "background-color")


def relative_luminance(colour: str) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# --- the reader and the formula themselves ---------------------------------------------------------------


def test_contrast_formula_matches_the_wcag_reference_values() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the classic AA grey
    assert contrast("#777777", "#ffffff") < TEXT_MIN


def test_the_reader_finds_variables_rules_and_media_blocks() -> None:
    sample = parse_rules(
        ":root { --a: #123456; }\n/* c { color: #fff } */ p, .x { color: var(--a); background: #fff }"
        "@media (max-width: 1px) { .y { color: #000 } }"
    )
    assert sample == [
        (":root", {"--a": "#123456"}),
        ("p, .x", {"color": "var(--a)", "background": "#fff"}),
        (".y", {"color": "#000"}),
    ]
    assert colour_in("1px solid #AbC") == "#aabbcc"
    assert colour_in("none") is None
    expected = {
        "--fg",
        "--muted",
        "--bg",
        "--card",
        "--accent",
        "--ok",
        "--warn",
        "--bad",
        "--off",
        "--focus",
    }
    assert expected <= set(VARIABLES)


# --- text: 4.5:1 -------------------------------------------------------------------------------------------

PAGE, CARD = bg("body"), bg(".card")
TEXT_PAIRS: list[tuple[str, str, str]] = [
    ("body text on the page", fg("body"), PAGE),
    ("body text on a card", fg("body"), CARD),
    ("stat figures on a card", fg(".stat"), CARD),
    ("muted text on the page", fg(".muted"), PAGE),
    ("muted text on a card", fg(".muted"), CARD),
    ("muted text on the current stage row", fg(".muted"), bg('tr[aria-current="step"]')),
    ("table headings on a card", fg("thead th"), CARD),
    ("key names on a card", fg(".kv dt"), CARD),
    ("links on the page", fg("a"), PAGE),
    ("links on a card", fg("a"), CARD),
    ("links on the current stage row", fg("a"), bg('tr[aria-current="step"]')),
    ("links in a notice", fg("a"), bg(".notice")),
    ("links in a halt box", fg("a"), bg(".halt")),
    ("the skip link", fg("a"), bg(".skip")),
    ("text in a notice", fg("body"), bg(".notice")),
    ("text in a halt box", fg("body"), bg(".halt")),
    ("the halt heading", fg(".halt h3"), bg(".halt")),
    ("labels", fg("body"), bg(".label")),
    ("a breached gate's row text", fg("tr.gate-breach td"), bg("tr.gate-breach")),
    ("a breached gate's badge", fg("tr.gate-breach .badge"), bg(".badge.g-breach")),
    ("error text on the page", fg(".error"), PAGE),
    ("error text on a card", fg(".error"), CARD),
    ("top bar text", fg(".top"), bg(".top")),
    ("top bar links", fg(".top a"), bg(".top")),
    ("the sign-out button", fg(".who button.link"), bg(".top")),
    ("the viewer role tag", fg(".top"), bg(".role")),
    ("the operator role tag", fg(".top"), bg(".role-operator")),
    ("buttons", fg("button"), bg("button")),
    ("secondary buttons", fg(".button"), bg(".button")),
    ("danger buttons", fg("button"), bg("button.danger")),
]
# Every state colour a badge can take, with the badge's own text colour.
BADGE_PAIRS = [
    (f"badge {selector}", fg(".badge"), bg(selector))
    for rule in RULES
    for selector in selectors_of(rule)
    if selector.startswith(".badge") and any(p in rule[1] for p in ("background", "background-color"))
]


@pytest.mark.parametrize(
    ("what", "text", "surface"), TEXT_PAIRS + BADGE_PAIRS, ids=[p[0] for p in TEXT_PAIRS + BADGE_PAIRS]
)
def test_text_meets_aa_contrast(what: str, text: str, surface: str) -> None:
    ratio = contrast(text, surface)
    assert ratio >= TEXT_MIN, f"{what}: {text} on {surface} is {ratio:.2f}:1, expected >= {TEXT_MIN}:1"


def test_every_badge_state_colour_is_checked() -> None:
    checked = {what for what, _, _ in BADGE_PAIRS}
    states = (
        ".badge",
        ".badge.g-ok",
        ".badge.g-waiting",
        ".badge.g-breach",
        ".badge.g-off",
        ".badge.s-stale",
    )
    for state in states:
        assert f"badge {state}" in checked, sorted(checked)


def test_every_rule_with_its_own_text_and_background_meets_aa() -> None:
    """Whatever pair a rule sets itself (badges, buttons, the top bar, the skip link...) passes, so a new rule
    with a low-contrast pair fails here even before it is added to the list above."""
    checked = 0
    for rule in RULES:
        text = colour_in(rule[1].get("color", ""))
        surface = colour_in(rule[1].get("background", rule[1].get("background-color", "")))
        if text is None or surface is None:
            continue
        checked += 1
        ratio = contrast(text, surface)
        assert ratio >= TEXT_MIN, f"{rule[0]}: {text} on {surface} is {ratio:.2f}:1"
    assert checked >= 5


# --- controls and their state: 3:1 --------------------------------------------------------------------------


def _focus_colour(selector: str, inherits_from: str | None = None) -> str:
    """The focus ring's colour for ``selector``; a more specific rule that sets none keeps the colour of
    the general one (``inherits_from``)."""
    try:
        return declared(selector, "outline-color", "outline")
    except AssertionError:
        if inherits_from is None:
            raise
        return declared(inherits_from, "outline-color", "outline")


UI_PAIRS = [
    ("focus ring on the page", _focus_colour("a:focus-visible"), PAGE),
    ("focus ring on a card", _focus_colour("a:focus-visible"), CARD),
    ("focus ring on a control's focus", _focus_colour("input:focus-visible"), CARD),
    ("focus ring in the top bar", _focus_colour(".top a:focus-visible", "a:focus-visible"), bg(".top")),
    (
        "focus ring on the top bar's button",
        _focus_colour(".top button:focus-visible", "button:focus-visible"),
        bg(".top"),
    ),
    (
        "focus ring of the skip link (drawn over the top bar)",
        _focus_colour(".skip:focus-visible"),
        bg(".top"),
    ),
    ("form field borders on a card", declared("input", "border"), CARD),
    ("form field borders on the page", declared("input", "border"), PAGE),
    ("button borders on a card", declared("button", "border"), CARD),
    ("the sign-out button's border", declared(".who button.link", "border"), bg(".top")),
]


@pytest.mark.parametrize(("what", "part", "surface"), UI_PAIRS, ids=[p[0] for p in UI_PAIRS])
def test_controls_and_focus_meet_non_text_contrast(what: str, part: str, surface: str) -> None:
    ratio = contrast(part, surface)
    assert ratio >= UI_MIN, f"{what}: {part} against {surface} is {ratio:.2f}:1, expected >= {UI_MIN}:1"


# --- server-drawn charts (svg_chart.py): lines and markers are graphics (3:1), labels text (4.5:1) ---

CHART_SERIES = sorted(
    {s for rule in RULES for s in selectors_of(rule) if re.fullmatch(r"\.chart \.s\d+", s)},
    key=lambda s: int(s.rsplit("s", 1)[1]),
)


def test_every_chart_series_style_is_checked() -> None:
    from edgefleet.server.dashboard.svg_chart import SERIES_STYLES

    assert [f".chart .s{i}" for i in range(SERIES_STYLES)] == CHART_SERIES


@pytest.mark.parametrize(
    "selector",
    [*CHART_SERIES, ".chart .threshold", ".chart .marker", ".chart .marker.m-halt", ".chart .axis"],
)
def test_chart_lines_meet_non_text_contrast_on_the_card(selector: str) -> None:
    ratio = contrast(declared(selector, "stroke"), CARD)
    assert ratio >= UI_MIN, f"{selector} on a card is {ratio:.2f}:1, expected >= {UI_MIN}:1"


@pytest.mark.parametrize(
    "selector", [".chart .tick, .chart .legend", ".chart .marker-label", ".chart .marker-label.m-halt"]
)
def test_chart_labels_meet_text_contrast_on_the_card(selector: str) -> None:
    first = selector.split(",")[0].strip()
    ratio = contrast(declared(first, "fill"), CARD)
    assert ratio >= TEXT_MIN, f"{first} on a card is {ratio:.2f}:1, expected >= {TEXT_MIN}:1"
