"""Alert templates: Python format placeholders over a fixed set of fill fields.

A template is user input, so parsing refuses anything beyond `{name}` / `{name:spec}` /
`{name!s}` (no attribute or index access, no positional fields), and rendering never raises:
every problem is caught when the config loads, never at 3 a.m. on the hot path.
"""

from __future__ import annotations

import calendar
import difflib
import html
import re
import string
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, localcontext

from notifier.events import Fill
from notifier.format_specs import (
    DECIMAL_TYPES,
    MAX_SPEC_NUMBER,
    average_shown,
    formats,
    money_shown,
    oversized,
    plain_digits,
    unknown_directive,
)
from notifier.mentions import NO_MENTION, defused, joins
from notifier.normalize import BIDI_CONTROLS

FILL_FIELDS = (
    "order_id",
    "client_order_id",
    "market_id",
    "market_title",
    "side",
    "outcome",
    "price",
    "price_cents",
    "quantity",
    "notional",
    "status",
    "filled_at",
    "rule",
)

DEFAULT_TITLE = "{side} {outcome} on {market_title}"
DEFAULT_BODY = "{side} {quantity} {outcome} @ {price} on {market_title} (order #{order_id})"


class TemplateError(ValueError):
    """A template that cannot be used; the message names the bad placeholder."""


class Markup(str):
    """Text already in the message's format (a digest's rendered lines): not escaped again."""

    __slots__ = ()


Escape = Callable[[str], str]


def escape_for(body_format: str) -> Escape | None:
    """How field values are escaped for a message format: `html` takes `&`, `<` and `>` as
    markup, so a market title reading "< $100k" would be cut or refused by the service.
    Markdown dialects differ by service (apprise converts them), so nothing is guessed there.
    """
    return _escape_html if body_format == "html" else None


def _escape_html(text: str) -> str:
    # Quotes too: a template may put a value in an attribute (`<a href="...{market_id}">`),
    # which a venue's `"` would otherwise close. apprise reads the entities back for services
    # it converts the HTML for.
    return html.escape(text, quote=True)


def line_break(escape: Escape | None) -> str:
    """How the notifier itself ends a line (a digest's lines, its notes, a fold's alerts) in
    the format `escape` is for. In HTML a newline is a space: apprise's conversion for Slack,
    ntfy or Discord, and an HTML mail, would run every line into one. Bare `<br>`, not
    `<br>\n`: converted to text, the newline after it becomes a space opening the next line.
    """
    return "<br>" if escape is _escape_html else "\n"


# glibc's %s, with its flags and width (`%-s`, `%_12s`); a literal "%" is passed over, so "%%s"
# stays the text "%s".
_EPOCH = re.compile(r"%%|%([-_0^#]*)(\d*)s")


class Timestamp(datetime):
    """A datetime that prints as "2026-02-06 12:00:45 UTC" but still takes strftime specs."""

    __slots__ = ()

    def __str__(self) -> str:
        return self.strftime("%Y-%m-%d %H:%M:%S %Z")  # "UTC", or a rule's zone: "EST"

    def __format__(self, spec: str) -> str:
        # glibc's %s reads the fields as the machine's local time, whatever the zone: under
        # a rule's `tz:`, or on a host not on UTC, it was hours off. Seconds since the epoch
        # (Discord's <t:...:R>) are the same in every zone.
        if "%" in spec and "s" in spec:
            epoch = str(calendar.timegm(self.utctimetuple()))
            spec = _EPOCH.sub(lambda found: _epoch_text(found, epoch), spec)
        return super().__format__(spec)


def _epoch_text(found: re.Match[str], epoch: str) -> str:
    """A %s directive's epoch seconds, padded to its width as glibc pads a number (zeros, or
    spaces with `_`, none with `-`); "%%" as it was."""
    if found.group() == "%%":
        return "%%"
    flags, width = found.group(1), int(found.group(2) or 0)
    if "-" in flags:
        return epoch
    return epoch.rjust(width, " " if "_" in flags else "0")


# A placeholder, pre-split: (field name, format spec, apply str() first).
_Placeholder = tuple[str, str, bool]
_Part = str | _Placeholder

_ONE = Decimal(1)
_SAMPLE_TIME = Timestamp(2026, 2, 6, 12, 0, 45, tzinfo=UTC)
# Values a format spec is tried against when the field's type is not known in advance.
_ANY_TYPE_SAMPLES: tuple[object, ...] = ("text", Decimal("1.5"), 3, _SAMPLE_TIME)
_FILL_SAMPLES: dict[str, object] = {
    **dict.fromkeys(FILL_FIELDS, "text"),
    "price": Decimal("0.65"),
    "price_cents": Decimal("65"),
    "quantity": Decimal("10.0"),
    "notional": Decimal("6.50"),
    "filled_at": _SAMPLE_TIME,
}


def _split(text: str) -> tuple[_Part, ...]:
    """Cut a template into literal text and placeholders; TemplateError on bad brace syntax."""
    parts: list[_Part] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"bad template syntax: {exc} (write {{{{ or }}}} for a brace)") from exc
    for literal, name, spec, conversion in parsed:
        if literal:
            if parts and isinstance(parts[-1], str):
                parts[-1] += literal
            else:
                parts.append(literal)
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        shown += "}"
        if name == "" or name.isdigit():
            raise TemplateError(f"positional placeholder {shown} is not allowed: name a field")
        if "." in name or "[" in name:
            raise TemplateError(
                f"placeholder {shown} uses attribute or index access, which is not allowed"
            )
        if conversion not in (None, "s"):
            raise TemplateError(f"placeholder {shown}: only the !s conversion is allowed")
        if spec and ("{" in spec or "}" in spec):
            raise TemplateError(f"placeholder {shown}: nested placeholders in a format spec")
        if spec and oversized(spec):
            # `{order_id:>2000000000}` would build a 2 GB string for every alert.
            raise TemplateError(
                f"placeholder {shown}: a width or precision over {MAX_SPEC_NUMBER} is not allowed"
            )
        parts.append((name, spec or "", conversion == "s"))
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template; `render` walks the pre-split parts, so it is cheap per alert."""

    text: str
    _parts: tuple[_Part, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_parts", _split(self.text))

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        fields: Collection[str] = FILL_FIELDS,
        samples: Mapping[str, object] | None = None,
    ) -> Template:
        """Parse and validate `text` against `fields`; raise TemplateError naming the problem.

        A format spec is tried on the field's sample value (from `samples`, or the fill
        samples); for a field without one, on any of a string, decimal, int and datetime.
        """
        template = cls(text)
        known = _FILL_SAMPLES if samples is None else {**_FILL_SAMPLES, **samples}
        before = ""  # the literal text just before a placeholder
        problems: dict[str, None] = {}  # every one, once, in order: not only the first
        for part in template._parts:
            if isinstance(part, str):
                before = part
                continue
            name, spec, to_str = part
            if name not in fields:
                problems[_unknown(name, fields, after_dollar=before.endswith("$"))] = None
                before = ""
                continue
            before = ""
            if spec:
                tries = ("text",) if to_str else _candidates(name, known)
                directive = unknown_directive(spec)
                if directive is not None and any(isinstance(v, datetime) for v in tries):
                    problems[
                        f"placeholder {{{name}:{spec}}}: {directive} is not a strftime "
                        "directive (it would be shown as typed)"
                    ] = None
                elif not any(formats(value, spec) for value in tries):
                    problems[
                        f"placeholder {{{name}:{spec}}}: format spec {spec!r} does not apply "
                        f"to {name}"
                    ] = None
        if problems:
            raise TemplateError("; ".join(problems))
        return template

    @property
    def fields(self) -> frozenset[str]:
        """The field names this template uses."""
        return frozenset(p[0] for p in self._parts if not isinstance(p, str))

    def render(self, values: Mapping[str, object], *, escape: Escape | None = None) -> str:
        """The text with each placeholder filled; never raises (a missing field renders "").

        `escape` is applied to each value's text (not the template's own, nor `Markup`).
        """
        out: list[str] = []
        tail = ""  # the last character written, as before escaping
        after_value = False  # a placeholder (even an empty one) since the template's last text
        for part in self._parts:
            if isinstance(part, str):
                if after_value and joins(tail, part):
                    out.append(NO_MENTION)
                out.append(part)
                tail, after_value = part[-1], False
                continue
            name, spec, to_str = part
            value = values.get(name, "")
            shown = value
            try:
                if to_str:
                    shown = str(value)
                elif isinstance(value, Decimal) and not spec.endswith(DECIMAL_TYPES):
                    shown, spec = plain_digits(value, spec)
                elif isinstance(value, Decimal):
                    shown = average_shown(value, spec)
                if isinstance(shown, Decimal) and spec:
                    # Money rounds half up, as a trader reads it: 10.125 is 10.13, not the
                    # context's half-even 10.12.
                    with localcontext(rounding=ROUND_HALF_UP):
                        text = format(shown, spec)
                else:
                    text = format(shown, spec)
            except Exception:  # broad on purpose: a spec that does not fit, shown plain
                text = _plain(shown)
            markup = isinstance(value, Markup)
            if not markup:
                if not text.isprintable():  # bidi controls would reorder the line after them
                    text = BIDI_CONTROLS.sub("", text)
                if "@" in text or "<!" in text or "](" in text:
                    text = defused(text)
            # Markup too: a digest's lines begin and end with what the venue wrote.
            if text and joins(tail, text):
                text = NO_MENTION + text
            after_value = True
            if text:
                tail = text[-1]
                if escape is not None and not markup:
                    text = escape(text)
            out.append(text)
        return "".join(out)


def _plain(value: object) -> str:
    """str(value), or "" if even that fails: render must not raise."""
    try:
        return str(value)
    except Exception:  # broad on purpose: a value's own __str__ may be broken
        return ""


def _candidates(name: str, known: Mapping[str, object]) -> tuple[object, ...]:
    return (known[name],) if name in known else _ANY_TYPE_SAMPLES


def _unknown(name: str, fields: Collection[str], *, after_dollar: bool = False) -> str:
    if after_dollar:  # `$${HOME}` in the file is `${HOME}` here: a dollar, then a field
        return (
            f"unknown field {{{name}}} (a literal ${{{name}}} in a template is written "
            f"$${{{{{name}}}}})"
        )
    meant = _SAID_OTHERWISE.get(name.lower())
    close = [meant] if meant in fields else difflib.get_close_matches(name, list(fields), n=1)
    if close:
        return f"unknown field {{{name}}} (did you mean {{{close[0]}}}?)"
    return f"unknown field {{{name}}}; fields are: {', '.join(fields)}"


# What traders call a field, where no spelling is near its name (difflib finds those).
_SAID_OTHERWISE = {
    "qty": "quantity",
    "size": "quantity",
    "shares": "quantity",
    "px": "price",
    "cents": "price_cents",
    "title": "market_title",
    "question": "market_title",
    "market": "market_title",
    "time": "filled_at",
    "timestamp": "filled_at",
    "order": "order_id",
    "id": "order_id",
    "value": "notional",
    "amount": "notional",
}


def shown_in(values: dict[str, object], tz: tzinfo | None) -> dict[str, object]:
    """`values` with each time in `tz` (a rule's `tz:`), as they are without one."""
    if tz is None:
        return values
    return {k: v.astimezone(tz) if isinstance(v, Timestamp) else v for k, v in values.items()}


def cents(price: Decimal) -> Decimal:
    """A price as the venue shows it, in cents: 0.42 is 42, 0.425 is 42.5, 0.005 is 0.5
    (exact; no zeros the wire's padding made: 0.4200 is 42)."""
    value = price.scaleb(2)
    return value.quantize(_ONE) if value == value.to_integral_value() else value.normalize()


def fill_values(fill: Fill, *, rule: str, tz: tzinfo | None = None) -> dict[str, object]:
    """The template fields of one fill: decimals stay Decimal (exact specs), None becomes ""
    (a missing market title, the market id); `filled_at` in `tz` (a rule's `tz:`), else UTC."""
    at = fill.filled_at
    filled_at = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    stamp = Timestamp(
        filled_at.year,
        filled_at.month,
        filled_at.day,
        filled_at.hour,
        filled_at.minute,
        filled_at.second,
        filled_at.microsecond,
        tzinfo=UTC,
    )
    return {
        "order_id": fill.order_id,
        "client_order_id": fill.client_order_id or "",
        "market_id": fill.market_id,
        "market_title": fill.market_title or fill.market_id,
        "side": fill.side,
        "outcome": fill.outcome,
        "price": fill.price,
        "price_cents": cents(fill.price),
        "quantity": fill.quantity,
        "notional": money_shown(fill.notional),
        "status": fill.status or "",
        "filled_at": stamp if tz is None else stamp.astimezone(tz),
        "rule": rule,
    }
