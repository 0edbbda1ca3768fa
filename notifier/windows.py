"""A rule's shaping specs, each a time window: group wait, throttle period, active hours.

Pure: instants in, instants out. An active window is a half-open interval of instants [open, close)
starting on each chosen day at the wall time `start` in the rule's zone and ending at the next wall
time `end`. A wall time that does not exist (the spring-forward gap: Europe/London has no 01:30 on
that day) resolves to the first instant the clock reads later than it, i.e. the end of the gap; an
ambiguous one (the fall-back hour happens twice) to its first occurrence, so a window opens and
closes once a day. The day filter applies to the day the window starts, so a Friday 22:00-06:00
window runs into Saturday morning.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from notifier.durations import parse_duration
from notifier.render import FILL_FIELDS

Outside = Literal["hold", "drop"]
BY_FIELDS = tuple(f for f in FILL_FIELDS if f != "rule")  # `by` may name any fill field

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_ACTIVE_KEYS = ("days", "hours", "tz", "outside")
_SEARCH_DAYS = 16  # more than a week, so a window lost to a DST gap cannot hide the next one
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
    """Digest matches sharing the `by` fields within `wait`; `line` renders each fill in `lines`."""

    by: tuple[str, ...]
    wait: timedelta
    line: str | None = None


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


@dataclass(frozen=True, slots=True)
class ActiveSpec:
    """When a rule may send: on `days` (0 = Monday), from `start` to `end` wall time in `tz`.

    `end` <= `start` means the window runs past midnight; `end == start` is a whole day (written
    `00:00-24:00`). `outside` says what happens to alerts outside it: held until the next opening,
    or dropped.
    """

    days: frozenset[int]
    start: time
    end: time
    tz: ZoneInfo
    outside: Outside = "hold"

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError(f"days must be a non-empty set of 0..6, got {sorted(self.days)}")
        if self.outside not in ("hold", "drop"):
            raise ValueError(f"outside must be 'hold' or 'drop', got {self.outside!r}")

    def is_active(self, at: datetime) -> bool:
        """Whether the instant `at` (timezone-aware) lies inside one of the windows."""
        local_day = aware(at).astimezone(self.tz).date()
        return any(o <= at < c for o, c in self._windows(local_day - timedelta(days=1), count=2))

    def next_open(self, at: datetime) -> datetime:
        """`at` itself if the window is open then, else the instant it next opens."""
        local_day = aware(at).astimezone(self.tz).date()
        for opens, closes in self._windows(local_day - timedelta(days=1), count=_SEARCH_DAYS):
            if opens <= at < closes:
                return at
            if opens > at:
                return opens
        raise AssertionError("an active window with days never opens")  # parse forbids it

    def _windows(self, first: date, *, count: int) -> Iterable[tuple[datetime, datetime]]:
        """The non-empty windows starting on `count` days from `first`, as UTC instants."""
        for offset in range(count):
            day = first + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            end_day = day if self.end > self.start else day + timedelta(days=1)
            opens = resolve_wall_time(day, self.start, self.tz)
            closes = resolve_wall_time(end_day, self.end, self.tz)
            if opens < closes:  # empty only when both ends fall into one DST gap
                yield opens, closes


def resolve_wall_time(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the clock in `tz` on `day` reads `wall` or later."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first  # exists; fold=0 is the earlier of two occurrences
    # In a gap: fold=1 maps before the jump, fold=0 after it; bisect for the jump itself.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    step = timedelta(microseconds=1)
    while high - low > step:
        mid = low + (high - low) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= naive:
            high = mid
        else:
            low = mid
    return high


def parse_active(raw: object) -> ActiveSpec:
    """An `active:` mapping (`days`, `hours`, `tz`, `outside`) as an ActiveSpec, or SpecError.

    Each key is checked on its own, so a spec with several problems raises SpecErrors with all.
    """
    errors: list[SpecError] = []
    spec = check_mapping(raw, _ACTIVE_KEYS, what="active", errors=errors)
    if "hours" not in spec:
        errors.append(SpecError("hours", 'is required, e.g. "08:00-22:00"'))
        hours = None
    else:
        hours = attempt(errors, _parse_hours, spec["hours"])
    days = attempt(errors, _parse_days, spec.get("days", list(DAY_NAMES)))
    tz = attempt(errors, _parse_zone, spec.get("tz", "UTC"))
    outside = attempt(errors, _parse_outside, spec.get("outside", "hold"))
    raise_all(errors, spec)  # so each value below is set
    assert hours is not None
    assert days is not None
    assert tz is not None
    assert outside is not None
    start, end = hours
    return ActiveSpec(days=days, start=start, end=end, tz=tz, outside=outside)


def _parse_outside(raw: object) -> Outside:
    if raw == "hold" or raw == "drop":
        return "hold" if raw == "hold" else "drop"
    raise SpecError("outside", f"must be 'hold' or 'drop', got {raw!r}")


def _parse_hours(raw: object) -> tuple[time, time]:
    match = _HOURS.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise SpecError("hours", f'must look like "08:00-22:00", got {raw!r}')
    sh, sm, eh, em = (int(g) for g in match.groups())
    if (eh, em) == (24, 0):
        eh = 0  # 24:00 is the midnight that ends the day
    elif sh == 24 or eh == 24:
        raise SpecError("hours", f"24:00 may only end a window, got {raw!r}")
    if sh > 23 or eh > 23 or sm > 59 or em > 59:
        raise SpecError("hours", f"not a time of day in {raw!r}")
    start, end = time(sh, sm), time(eh, em)
    if start == end and match.group(3) != "24":
        raise SpecError("hours", f"{raw!r} is empty; write 00:00-24:00 for the whole day")
    return start, end


def _parse_days(raw: object) -> frozenset[int]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise SpecError("days", f"must be a non-empty list of days like [mon, fri], got {raw!r}")
    days: set[int] = set()
    errors: list[SpecError] = []
    for index, item in enumerate(items):
        path = f"days[{index}]" if not isinstance(raw, str) else "days"
        if not isinstance(item, str):
            errors.append(SpecError(path, f"must be a day name like 'mon', got {item!r}"))
            continue
        first, sep, last = item.partition("-")
        a = attempt(errors, _day, first, path)
        b = attempt(errors, _day, last, path) if sep else None
        if a is None or (sep and b is None):
            continue
        days.update(range(a, a + 1) if b is None else ((a + i) % 7 for i in range((b - a) % 7 + 1)))
    raise_all(errors)
    return frozenset(days)


def _day(name: str, path: str) -> int:
    word = name.strip().lower()
    if word in DAY_NAMES:
        return DAY_NAMES.index(word)
    if word in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(word)
    raise SpecError(path, f"unknown day{suggest(word, DAY_NAMES)}")


def _parse_zone(raw: object) -> ZoneInfo:
    if not isinstance(raw, str) or not raw:
        raise SpecError("tz", f"must be an IANA time zone name like 'Europe/London', got {raw!r}")
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        close = difflib.get_close_matches(raw, sorted(available_timezones()), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError("tz", f"unknown time zone {raw!r}{hint}") from exc


def parse_group(raw: object) -> GroupSpec:
    """A `group:` mapping (`by`, `wait`, optional `line`) as a GroupSpec, or SpecError.

    Each key is checked on its own, so a spec with several problems raises SpecErrors with all.
    """
    errors: list[SpecError] = []
    spec = check_mapping(raw, ("by", "wait", "line"), what="group", errors=errors)
    line = spec.get("line")
    if line is not None and not isinstance(line, str):
        errors.append(SpecError("line", f"must be a template string, got {type(line).__name__}"))
    by = attempt(errors, _parse_by, spec.get("by", []))
    wait = attempt(errors, _positive, spec, "wait")
    raise_all(errors, spec)  # so each value below is set
    assert by is not None
    assert wait is not None
    assert line is None or isinstance(line, str)
    return GroupSpec(by=by, wait=wait, line=line)


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


def _positive(spec: Mapping[str, object], name: str) -> timedelta:
    if name not in spec:
        raise SpecError(name, 'is required, e.g. "30s"')
    try:
        value = parse_duration(spec[name])
    except ValueError as exc:
        raise SpecError(name, str(exc)) from exc
    if value <= timedelta(0):
        raise SpecError(name, "must be longer than zero")
    return value


def aware(at: datetime) -> datetime:
    """`at`, checked to carry a zone: naive and aware instants compare with a late TypeError."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("shaping needs timezone-aware datetimes")
    return at
