"""Why a fill does not match a rule's `when`, in words: what `notifier test` says of each rule
a fill matched none of, so "no alerts arrive" can be answered from the config alone.

Pure: the first reason found, following the condition as `matches` does (an `all`'s first
failing part, each part of an `any`).
"""

from __future__ import annotations

from decimal import Decimal

from notifier.conditions import AllOf, AnyOf, Bounds, Condition, FieldMatch, Not, tests_field
from notifier.events import Fill
from notifier.format_specs import money_shown

_SHOWN_PATTERNS = 3  # an `any of` list longer than this is counted, not listed
_SHOWN_PARTS = 3  # the reasons of an `any`'s parts said at most

_ABSENT = {
    "market_title": "unknown here (the fill gives none; `run` looks it up)",
    "status": "absent (the feed's flat `fill` shape sends none)",
    "client_order_id": "absent (history items carry none; live frames may)",
}


def why_not(condition: Condition, fill: Fill) -> str:
    """Why `fill` fails `condition` (call it only when `condition.matches(fill)` is false)."""
    if isinstance(condition, FieldMatch):
        return _field(condition, fill)
    if isinstance(condition, Bounds):
        return _bounds(condition, fill)
    if isinstance(condition, AllOf):
        # A part failing on a value the fill has decides; one failing only for want of a
        # market title might hold once `run` looks the title up, so it comes last.
        failing = [c for c in condition.conditions if not c.matches(fill)]
        decisive = [c for c in failing if not _untitled(c, fill)]
        return why_not((decisive or failing)[0], fill)
    if isinstance(condition, AnyOf):
        reasons = [why_not(c, fill) for c in condition.conditions[:_SHOWN_PARTS]]
        more = len(condition.conditions) - _SHOWN_PARTS
        tail = f"; and {more} more" if more > 0 else ""
        return f"no part of its `any` holds: {'; '.join(reasons)}{tail}"
    if isinstance(condition, Not):
        return f"its `not` excludes it: {_holds(condition.condition, fill)}"
    return "its condition does not hold"


def _untitled(condition: Condition, fill: Fill) -> bool:
    """Whether `condition` tests (at any depth) the market title a fill without one lacks."""
    return fill.market_title is None and tests_field(condition, "market_title")


def _field(condition: FieldMatch, fill: Fill) -> str:
    name = condition.field
    value = fill.market_id if name == "market" else getattr(fill, name)
    if value is None:
        return f"{name} is {_ABSENT.get(name, 'absent')}"
    patterns = condition.patterns
    if len(patterns) == 1:
        wanted = repr(patterns[0])
    elif len(patterns) <= _SHOWN_PATTERNS:
        wanted = f"any of {', '.join(map(repr, patterns))}"
    else:
        wanted = f"any of its {len(patterns)} values"
    return f"{name} is {value!r}, not {wanted}"


def _bounds(condition: Bounds, fill: Fill) -> str:
    name = condition.field
    number: Decimal = getattr(fill, name)
    value = _plain(_shown(name, number))
    if condition.min is not None and number < condition.min:
        return f"{name} {value} is below its min {_plain(condition.min)}"
    if condition.max is not None and number > condition.max:
        return f"{name} {value} is over its max {_plain(condition.max)}"
    if condition.above is not None and number <= condition.above:
        return f"{name} {value} is not above {_plain(condition.above)}"
    return f"{name} {value} is not below {_plain(condition.below)}"


def _holds(condition: Condition, fill: Fill) -> str:
    """What holds of `fill` that `condition` tests (for a `not`)."""
    if isinstance(condition, FieldMatch):
        value = fill.market_id if condition.field == "market" else getattr(fill, condition.field)
        return f"{condition.field} is {value!r}"
    if isinstance(condition, Bounds):
        name = condition.field
        return f"{name} is {_plain(_shown(name, getattr(fill, name)))}"
    return "the condition under it holds"


def _shown(name: str, number: Decimal) -> Decimal:
    """A fill's number `name` as templates show it: a computed notional 13.50, not price x
    quantity's 13.5000."""
    return money_shown(number) if name == "notional" else number


def _plain(value: Decimal | None) -> str:
    """A decimal in plain digits ("63.00", never "6.3E+1")."""
    return "-" if value is None else format(value, "f")
