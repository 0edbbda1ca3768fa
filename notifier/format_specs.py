"""Format specs in templates: which are refused, which fit a field, how a decimal is written.

A spec is the user's text, applied to every alert: it is checked once, when the config loads
(`oversized`, `formats`), so that rendering never raises nor builds a gigabyte string; and a
decimal is written in plain digits whatever the spec, never as 1E+3 (`plain_digits`).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal

MAX_SPEC_NUMBER = 1000  # the widest width or precision a format spec may ask for

# A Decimal spec's presentation types: its last character, if it names one (a fill character
# is always followed by an alignment, so it is never last).
DECIMAL_TYPES = tuple("eEfFgGn%")
_PRECISION = re.compile(r"\.(\d+)$")


AVERAGE_DIGITS = 6  # significant digits an average is written with when no spec says
_AVERAGE = Context(prec=AVERAGE_DIGITS, rounding=ROUND_HALF_UP)


class Average(Decimal):
    """An exact quotient that rarely ends (a VWAP): a spec's precision rounds the exact value,
    and without one it is written to AVERAGE_DIGITS significant digits, not Decimal's 28."""

    __slots__ = ()

    def rounded(self) -> Decimal:
        """The value as written when no precision is asked for."""
        return _AVERAGE.plus(self)

    def __str__(self) -> str:  # `{vwap!s}`, as a bare `{vwap}` shows it
        return format(self.rounded(), "f")


def plain_digits(value: Decimal, spec: str) -> tuple[Decimal, str]:
    """A spec without a type, for plain digits: str() and such a spec ("," or ".3") write
    0.0000001 as 1E-7 and 1e3 as 1E+3. Its precision still counts significant digits, as
    Decimal's general format does (`.2` shows 0.004 as 0.004, and 1234.5 as 1200)."""
    precision = _PRECISION.search(spec)
    if precision is not None:
        value = Context(prec=max(int(precision.group(1)), 1), rounding=ROUND_HALF_UP).plus(value)
        spec = spec[: precision.start()]
    elif isinstance(value, Average):
        value = value.rounded()
    return value, spec + "f"


def average_shown(value: Decimal, spec: str) -> Decimal:
    """An `Average` under a spec that gives no precision (none, `f`, `%`, `>12g`): rounded
    to AVERAGE_DIGITS significant digits; any other value, or a spec with one, as it is."""
    if not isinstance(value, Average):
        return value
    standard = _STANDARD_SPEC.fullmatch(spec)
    return value if standard is not None and standard.group(2) else value.rounded()


MONEY_PLACES = 2  # decimal places a computed amount keeps however many zeros follow


def money_shown(value: Decimal) -> Decimal:
    """A computed amount (price x quantity, a sum of them) for display: the trailing zeros
    past MONEY_PLACES places dropped, as no one writes them: "0.4200" x "1000.000000" is
    420.00, not 420.0000000000. Significant digits stay, however many: 10.125 is 10.125.
    The exact value is what rules compare; only the text changes."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= -MONEY_PLACES or digits[-1]:
        return value  # not finite, few places, or no zero to drop: most amounts
    if not any(digits):  # a zero: its places, at most MONEY_PLACES
        return Decimal((sign, (0,), max(exponent, -MONEY_PLACES)))
    drop = 0  # from the digits themselves: normalize() would round to the context's 28
    while drop < len(digits) - 1 and digits[-1 - drop] == 0 and exponent + drop < -MONEY_PLACES:
        drop += 1
    return Decimal((sign, digits[: len(digits) - drop], exponent + drop)) if drop else value


# A standard format spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type].
_STANDARD_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[,_]?(?:\.(\d*))?[a-zA-Z%]?", re.DOTALL)
# A strftime directive's width, as glibc takes it: `%10Y`, `%_8d`, `%-3j`.
_STRFTIME_WIDTH = re.compile(r"%[-_0^#]*(\d+)")


def oversized(spec: str) -> bool:
    """Whether `spec` asks for a width or precision over MAX_SPEC_NUMBER.

    Only real widths count: the digits of literal text in a strftime spec
    (`{filled_at:Week %W of 2026}`) are not a width.
    """
    standard = _STANDARD_SPEC.fullmatch(spec)  # `{price:>12.2%}` is one too
    numbers = [n for n in standard.groups() if n] if standard else []
    if "%" in spec:
        numbers += _STRFTIME_WIDTH.findall(spec)
    elif not standard:
        numbers = re.findall(r"\d+", spec)  # not a spec any field takes; refused later anyway
    # By length first: int() of a 5,000-digit run is itself a ValueError (Python's limit).
    return any(len(n) > 6 or int(n) > MAX_SPEC_NUMBER for n in numbers)


# strftime's directives (C99, POSIX and glibc's, which Python passes through), with glibc's
# flags and width: one outside them is echoed as typed ("{filled_at:%Y %Q}" showed "%Q").
_STRFTIME_DIRECTIVE = re.compile(r"%[-_0^#]*\d*([EO]?.|$)", re.DOTALL)
_STRFTIME_LETTERS = frozenset("aAbBcCdDeFgGhHIjklmMnpPrRsStTuUVwWxXyYzZ%f")


def unknown_directive(spec: str) -> str | None:
    """The first directive in `spec` strftime does not know (`%Q`), if one is there."""
    for found in _STRFTIME_DIRECTIVE.finditer(spec):
        if not found.group(1) or found.group(1)[-1] not in _STRFTIME_LETTERS:
            return found.group(0)  # a "%" that ends the spec is shown as typed too
    return None


def formats(value: object, spec: str) -> bool:
    """Whether `spec` applies to `value` (a datetime only with a strftime directive, each
    one strftime knows)."""
    if isinstance(value, datetime) and (
        not _STRFTIME_DIRECTIVE.search(spec) or unknown_directive(spec) is not None
    ):
        return False  # strftime echoes any text, an unknown directive too
    try:
        format(value, spec)
    except (ValueError, TypeError):
        return False
    return True
