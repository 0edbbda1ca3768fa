"""A rule's group and throttle specs and their parsers, plus the SpecError every spec parser raises.

Pure, plain values in: kept apart from the active-hours window arithmetic (`windows.py`), which
reuses this module's error collection (`attempt`, `raise_all`, `check_mapping`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

from notifier.durations import parse_duration
from notifier.render import FILL_FIELDS
from notifier.walltimes import next_wall_time, previous_wall_time
from notifier.zonenames import zone

if TYPE_CHECKING:  # only RuleShaping's annotation: windows.py imports this module at run time
    from notifier.windows import ActiveSpec

UTC_ZONE = ZoneInfo("UTC")  # a group's `at` times are UTC unless its `tz` or its rule's says
# `by` may name any fill field (price_cents is price, in other words).
BY_FIELDS = tuple(f for f in FILL_FIELDS if f not in ("rule", "price_cents"))
T = TypeVar("T")
P = ParamSpec("P")


class SpecError(ValueError):
    """A shaping spec is invalid; `path` is relative to the spec (`by[1]`, `hours`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message

    @property
    def errors(self) -> tuple[SpecError, ...]:
        """Every problem this error reports: just itself."""
        return (self,)


class SpecErrors(SpecError):
    """Several problems of one spec, raised together; `path` and `message` are the first's."""

    def __init__(self, errors: Sequence[SpecError]) -> None:
        flat = tuple(one for error in errors for one in error.errors)
        if not flat:
            raise ValueError("SpecErrors needs at least one SpecError")
        super().__init__(flat[0].path, flat[0].message)
        self.args = ("; ".join(str(one) for one in flat),)
        self._errors = flat

    @property
    def errors(self) -> tuple[SpecError, ...]:
        return self._errors


def raise_all(errors: Sequence[SpecError], order: Iterable[object] = ()) -> None:
    """Raise the collected `errors` (one as itself, several as SpecErrors); nothing if none.

    With `order` (a spec's keys as written), problems come in that key order, so a user reads
    them as the file has them; problems of a key that is absent (a missing `hours`) come last.
    """
    if not errors:
        return
    rank = {str(key): index for index, key in enumerate(order)}
    ranked = sorted(errors, key=lambda e: rank.get(_root(e.path), len(rank)))
    raise ranked[0] if len(ranked) == 1 else SpecErrors(ranked)


def _root(path: str) -> str:
    """The key a SpecError path starts with: `by` of `by[1]`, `days` of `days[0]`."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def attempt(
    errors: list[SpecError], parse: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T | None:
    """`parse(...)`, or None after adding its SpecError(s) to `errors`, so later keys still run."""
    try:
        return parse(*args, **kwargs)
    except SpecError as exc:
        errors.extend(exc.errors)
        return None


def check_mapping(
    raw: object, allowed: Iterable[str], *, what: str, errors: list[SpecError] | None = None
) -> Mapping[str, object]:
    """`raw` as a mapping with only `allowed` keys, or a SpecError suggesting the closest key.

    With `errors`, each unknown key is added there instead (every one, not only the first) and
    the mapping is returned so its known keys can still be checked. A non-mapping always raises.
    """
    if not isinstance(raw, Mapping):
        raise SpecError("", f"{what} must be a mapping, got {type(raw).__name__}")
    known = tuple(allowed)
    found = [
        SpecError(str(key), f"unknown key{suggest(str(key), known)}")
        for key in raw
        if not isinstance(key, str) or key not in known
    ]
    if errors is None:
        raise_all(found[:1])
    else:
        errors.extend(found)
    return raw


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or ' (expected one of …)' when none is close."""
    options = sorted(choices)
    close = difflib.get_close_matches(word, options, n=1)
    if close:
        return f" {word!r} (did you mean {close[0]!r}?)"
    return f" {word!r} (expected one of: {', '.join(options)})"


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """Digest matches sharing the `by` fields within `wait` of the first, or until the next of
    the `at` times of day in `tz` (a summary at 17:00); `line` renders each fill in `lines`."""

    by: tuple[str, ...]
    wait: timedelta | None = None
    line: str | None = None
    at: tuple[time, ...] = ()
    tz: ZoneInfo = UTC_ZONE

    def __post_init__(self) -> None:
        if (self.wait is None) == (not self.at):
            raise ValueError("a group closes after `wait` or at its `at` times: exactly one")

    def due(self, opened: datetime) -> datetime:
        """When a group opened at `opened` closes: `wait` later, or at the next `at` time after
        it (a match at that very instant opens the next group)."""
        if self.wait is not None:
            return opened + self.wait
        return next_wall_time(self.at, self.tz, opened)

    def period_start(self, due: datetime) -> datetime:
        """When the period a group due at `due` gathers began: `wait` before it, or the `at`
        time before it (fills made since belong to it)."""
        if self.wait is not None:
            return due - self.wait
        return previous_wall_time(self.at, self.tz, due)


@dataclass(frozen=True, slots=True)
class ThrottleSpec:
    """At most one message per key (the `by` fields) per `every`."""

    by: tuple[str, ...]
    every: timedelta


@dataclass(frozen=True, slots=True)
class RuleShaping:
    """One rule's shaping; a throttle over groups must key on group fields (one key a digest)."""

    group: GroupSpec | None = None
    throttle: ThrottleSpec | None = None
    active: ActiveSpec | None = None

    def __post_init__(self) -> None:
        if self.group is not None and self.throttle is not None:
            raise_all(
                [
                    SpecError(
                        f"throttle.by[{index}]",
                        f"{name!r} must also be in group.by so each digest has one throttle key",
                    )
                    for index, name in enumerate(self.throttle.by)
                    if name not in self.group.by
                ]
            )


def parse_group(raw: object) -> GroupSpec:
    """A `group:` mapping (`by`, `wait` or `at` with its `tz`, optional `line`) as a GroupSpec,
    or SpecError.

    Each key is checked on its own, so a spec with several problems raises SpecErrors with all.
    """
    errors: list[SpecError] = []
    spec = check_mapping(raw, ("by", "wait", "at", "tz", "line"), what="group", errors=errors)
    line = spec.get("line")
    if line is not None and not isinstance(line, str):
        errors.append(SpecError("line", f"must be a template string, got {type(line).__name__}"))
    by = attempt(errors, _parse_by, spec.get("by", []))
    wait = at = None
    if "at" in spec and "wait" in spec:
        message = "give wait or at, not both: a group closes a while after its first fill (wait)"
        errors.append(SpecError("at", f"{message} or at a time of day (at)"))
    if "at" in spec:
        at = attempt(errors, _parse_at, spec["at"])
    else:
        wait = attempt(errors, _positive, spec, "wait", ' (or at: "17:00", a time of day)')
    tz = None
    if "tz" in spec:
        if "at" not in spec:
            message = "is the zone of the at times, and this group has none (to show times in "
            errors.append(SpecError("tz", message + "a zone, set the rule's tz:)"))
        else:
            tz = attempt(errors, parse_zone, spec["tz"])
    raise_all(errors, spec)  # so each value below is set
    assert by is not None
    assert wait is not None or at is not None
    assert line is None or isinstance(line, str)
    return GroupSpec(by=by, wait=wait, line=line, at=at or (), tz=tz or UTC_ZONE)


_TIME_OF_DAY = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def _parse_at(raw: object) -> tuple[time, ...]:
    """`at`: a time of day ("17:00") or a list of them, in order, each once."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise SpecError("at", 'must be a time of day like "17:00" or a list of them, got []')
    errors: list[SpecError] = []
    times: list[time] = []
    for index, item in enumerate(items):
        path = f"at[{index}]" if isinstance(raw, list) else "at"
        match = _TIME_OF_DAY.match(item) if isinstance(item, str) else None
        hour, minute = (int(g) for g in match.groups()) if match else (99, 99)
        if (hour, minute) == (24, 0):
            errors.append(SpecError(path, 'must be a time of day: write "00:00" for midnight'))
        elif hour > 23 or minute > 59:
            message = f'must be a time of day like "17:00", got {item!r}{_clock_hint(item)}'
            errors.append(SpecError(path, message))
        elif time(hour, minute) in times:
            errors.append(SpecError(path, f"{item!r} is listed twice"))
        else:
            times.append(time(hour, minute))
    raise_all(errors)
    return tuple(sorted(times))


_TWELVE_HOUR = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*([ap])\.?m\.?\s*$", re.IGNORECASE)


def _clock_hint(item: object) -> str:
    """For "5pm" or "8:30 am": the 24-hour time meant; "" for anything else."""
    match = _TWELVE_HOUR.match(item) if isinstance(item, str) else None
    if match is None:
        return ""
    hour, minute, half = int(match.group(1)), int(match.group(2) or 0), match.group(3).lower()
    if not 1 <= hour <= 12 or minute > 59:
        return ""
    hour = hour % 12 + (12 if half == "p" else 0)
    return f' (write "{hour:02d}:{minute:02d}")'


def parse_zone(raw: object) -> ZoneInfo:
    """A `tz` value: an IANA zone named after a place (`zonenames.zone` says why not)."""
    if not isinstance(raw, str) or not raw:
        raise SpecError("tz", f"must be an IANA time zone name like 'Europe/London', got {raw!r}")
    try:
        return zone(raw)
    except ValueError as exc:
        raise SpecError("tz", str(exc)) from exc


def parse_throttle(raw: object) -> ThrottleSpec:
    """A `throttle:` mapping (`by`, `every`) as a ThrottleSpec, or SpecError (SpecErrors: all)."""
    errors: list[SpecError] = []
    spec = check_mapping(raw, ("by", "every"), what="throttle", errors=errors)
    by = attempt(errors, _parse_by, spec.get("by", []))
    every = attempt(errors, _positive, spec, "every")
    raise_all(errors, spec)  # so each value below is set
    assert by is not None
    assert every is not None
    return ThrottleSpec(by=by, every=every)


def _parse_by(raw: object) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise SpecError("by", f"must be a list of fill fields, got {type(raw).__name__}")
    errors: list[SpecError] = []
    names: list[str] = []
    for index, name in enumerate(items):
        if isinstance(name, str) and name in BY_FIELDS:
            names.append(name)
        else:
            path = "by" if isinstance(raw, str) else f"by[{index}]"
            errors.append(SpecError(path, f"unknown field{suggest(str(name), BY_FIELDS)}"))
    if len(set(names)) != len(names):
        errors.append(SpecError("by", "lists a field twice"))
    raise_all(errors)
    return tuple(names)


def _positive(spec: Mapping[str, object], name: str, other: str = "") -> timedelta:
    if name not in spec:
        raise SpecError(name, f'is required, e.g. "30s"{other}')
    try:
        value = parse_duration(spec[name])
    except ValueError as exc:
        raise SpecError(name, str(exc)) from exc
    if value <= timedelta(0):
        raise SpecError(name, "must be longer than zero")
    return value
