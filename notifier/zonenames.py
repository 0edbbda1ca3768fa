"""A rule's `tz:` name as a ZoneInfo, or the message that says which zone to write instead.

Apart from `windows.py` (the window arithmetic) because what people write for a zone is a
vocabulary of its own. Three kinds of name would otherwise shift a window by hours without a
word, or be "corrected" into one that does:

- Abbreviations (BST, PST, IST, CEST) are not zone names; the nearest spelling in tzdata is
  another abbreviation (BST -> MST), so each is answered with the zone a trader most likely
  means, or with every candidate where the abbreviation names several (IST: India, Ireland,
  Israel). No suggestion is ever another abbreviation or an offset.
- Offsets (GMT+1, UTC-5, +05:30) are not zone names either. The fixed zone for one is Etc/GMT
  with POSIX's inverted sign (Etc/GMT-1 is UTC+1), which the message spells out beside a city
  zone, which follows daylight saving.
- EST and MST are valid but fixed all year (tzdata: EST is UTC-5 in July too), so a rule
  written for New York would be an hour off from March to November: refused, naming the city
  zone and the fixed one. EST5EDT and its like do follow US daylight saving, and CET, EET,
  WET and MET the European one: accepted, as are UTC, GMT and the Etc zones.
"""

from __future__ import annotations

import difflib
import functools
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

_CITIES = "such as Europe/London or America/New_York"

# abbreviation -> ((whose time, zone), ...); several entries when it names several zones.
_ABBREVIATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "Z": (("UTC", "UTC"),),
    "BST": (("UK time", "Europe/London"),),
    "IST": (
        ("India time", "Asia/Kolkata"),
        ("Irish time", "Europe/Dublin"),
        ("Israel time", "Asia/Jerusalem"),
    ),
    "IDT": (("Israel time", "Asia/Jerusalem"),),
    "WEST": (("Western European time", "Europe/Lisbon"),),
    "CEST": (("Central European time", "Europe/Berlin"),),
    "MEZ": (("Central European time", "Europe/Berlin"),),
    "MESZ": (("Central European time", "Europe/Berlin"),),
    "EEST": (("Eastern European time", "Europe/Athens"),),
    "MSK": (("Moscow time", "Europe/Moscow"),),
    "TRT": (("Turkey time", "Europe/Istanbul"),),
    "ET": (("US Eastern time", "America/New_York"),),
    "EDT": (("US Eastern time", "America/New_York"),),
    "CT": (("US Central time", "America/Chicago"),),
    "CDT": (("US Central time", "America/Chicago"),),
    "CST": (("US Central time", "America/Chicago"), ("China time", "Asia/Shanghai")),
    "MT": (("US Mountain time", "America/Denver"),),
    "MDT": (("US Mountain time", "America/Denver"),),
    "PT": (("US Pacific time", "America/Los_Angeles"),),
    "PST": (("US Pacific time", "America/Los_Angeles"),),
    "PDT": (("US Pacific time", "America/Los_Angeles"),),
    "AKST": (("Alaska time", "America/Anchorage"),),
    "AKDT": (("Alaska time", "America/Anchorage"),),
    "AST": (("Atlantic time", "America/Halifax"), ("Arabia time", "Asia/Riyadh")),
    "ADT": (("Atlantic time", "America/Halifax"),),
    "NST": (("Newfoundland time", "America/St_Johns"),),
    "NDT": (("Newfoundland time", "America/St_Johns"),),
    "BRT": (("Brasília time", "America/Sao_Paulo"),),
    "BRST": (("Brasília time", "America/Sao_Paulo"),),
    "ART": (("Argentina time", "America/Argentina/Buenos_Aires"),),
    "CLT": (("Chile time", "America/Santiago"),),
    "CLST": (("Chile time", "America/Santiago"),),
    "GST": (("Gulf time", "Asia/Dubai"),),
    "PKT": (("Pakistan time", "Asia/Karachi"),),
    "ICT": (("Indochina time", "Asia/Bangkok"),),
    "WIB": (("Jakarta time", "Asia/Jakarta"),),
    "PHT": (("Philippine time", "Asia/Manila"),),
    "HKT": (("Hong Kong time", "Asia/Hong_Kong"),),
    "SGT": (("Singapore time", "Asia/Singapore"),),
    "JST": (("Japan time", "Asia/Tokyo"),),
    "KST": (("Korea time", "Asia/Seoul"),),
    "AEST": (
        ("Sydney or Melbourne time", "Australia/Sydney"),
        ("Brisbane time (no daylight saving)", "Australia/Brisbane"),
    ),
    "AEDT": (("Sydney or Melbourne time", "Australia/Sydney"),),
    "ACST": (
        ("Adelaide time", "Australia/Adelaide"),
        ("Darwin time (no daylight saving)", "Australia/Darwin"),
    ),
    "ACDT": (("Adelaide time", "Australia/Adelaide"),),
    "AWST": (("Perth time", "Australia/Perth"),),
    "NZST": (("New Zealand time", "Pacific/Auckland"),),
    "NZDT": (("New Zealand time", "Pacific/Auckland"),),
    "SAST": (("South Africa time", "Africa/Johannesburg"),),
    "WAT": (("West Africa time", "Africa/Lagos"),),
    "EAT": (("East Africa time", "Africa/Nairobi"),),
}

# One zone stands for a region whose cities share its rules: name another for a local reader.
_REGION_EXAMPLE = {"Europe/Berlin": "Europe/Paris", "Europe/Athens": "Europe/Helsinki"}

# tzdata zones fixed all year whose names read as a region's time: what to write instead.
_FIXED_LEGACY = {
    "EST": "for New York time write America/New_York; for a fixed UTC-5 write Etc/GMT+5",
    "MST": (
        "for US Mountain time write America/Denver; for Arizona, which keeps UTC-7 all year, "
        "write America/Phoenix"
    ),
}
# pinned against tzdata. HST is not refused: Hawaii keeps UTC-10 all year, as HST does.
_FIXED_OFFSETS = {"EST": "UTC-5", "MST": "UTC-7"}

_OFFSET = re.compile(r"^(?:UTC|GMT|UT)?\s*([+\-\u2212])\s*(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)
_ETC_OFFSET = re.compile(r"^Etc/(?:GMT|UTC|UCT)\s*[+\-\u2212]", re.IGNORECASE)
_AREAS = frozenset(
    {
        *("Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia"),
        *("Europe", "Indian", "Pacific"),
    }
)
_ABBREVIATION_LIKE = re.compile(r"^[A-Z]{2,5}$")


def zone(name: str) -> ZoneInfo:
    """The zone `name` stands for, or a ValueError whose message says what to write."""
    try:
        found = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(_unknown(name)) from exc
    if name in _FIXED_LEGACY:
        raise ValueError(_fixed_legacy(name, name))
    if name.upper() in ("LOCALTIME", "POSIXRULES", "FACTORY"):
        # Files beside the zones, not places: the machine's zone (moving with the machine),
        # the rules for POSIX TZ strings, and "Factory" (no offset, shown "-00").
        raise ValueError(f"{name!r} is no place's zone: name the zone itself, {_CITIES}")
    folder, _, rest = name.partition("/")
    if folder in ("posix", "right") and rest:
        # right/ counts leap seconds into the clock: its times run 27 s apart from UTC's.
        raise ValueError(f"{name!r} is a copy of tzdata's {rest!r}: write {rest!r}")
    return found


def _fixed_legacy(written: str, name: str) -> str:
    return (
        f"{written!r} is {_FIXED_OFFSETS[name]} all year, without daylight saving: "
        f"{_FIXED_LEGACY[name]}"
    )


def _unknown(name: str) -> str:
    """Why `name` (no zone in tzdata) is not one, and which zone to write instead."""
    word = name.strip()
    upper = word.upper()
    if upper in ("LOCAL", "LOCALTIME", "SYSTEM"):
        # The machine's zone would move with the machine (a server's is often UTC).
        return f"unknown time zone {name!r}: name the zone itself, {_CITIES}"
    if upper in _FIXED_LEGACY:  # `est`: the zone EST in another case, refused as EST is
        return _fixed_legacy(name, upper)
    if upper in _ABBREVIATIONS:
        return _abbreviation(name, _ABBREVIATIONS[upper])
    offset = _OFFSET.match(word)
    if offset is not None:
        sign, hours, minutes = offset.groups()
        return _offset(name, -1 if sign != "+" else 1, int(hours), int(minutes or 0))
    same = _by_folded_name().get(_folded(word)) or _by_city().get(_folded(word))
    if same is not None:  # before the Etc/GMT range: `ETC/GMT+5` and `Etc/GMT+5 ` are in it
        return f"unknown time zone {name!r} (did you mean {same!r}?)"
    if _ETC_OFFSET.match(word):
        return (
            f"unknown time zone {name!r}: Etc/GMT zones run from Etc/GMT-14 (UTC+14) to "
            "Etc/GMT+12 (UTC-12), POSIX's inverted sign"
        )
    close = difflib.get_close_matches(name, _suggestible(), n=1)
    if close:
        return f"unknown time zone {name!r} (did you mean {close[0]!r}?)"
    if _ABBREVIATION_LIKE.match(word):
        return (
            f"unknown time zone {name!r}: if that is an abbreviation, write the place's zone "
            f"instead, {_CITIES}"
        )
    return f"unknown time zone {name!r}"


def _abbreviation(name: str, places: tuple[tuple[str, str], ...]) -> str:
    advice = "; ".join(f"for {whose} write {zone}" for whose, zone in places)
    if len(places) > 1:
        return f"{name!r} is not a time zone name, and stands for several: {advice}"
    other = _REGION_EXAMPLE.get(places[0][1])
    if other is not None:
        advice += f" (or your own city's zone, such as {other})"
    return f"{name!r} is not a time zone name: {advice}"


def _offset(name: str, sign: int, hours: int, minutes: int) -> str:
    shown = f"UTC{'+' if sign > 0 else '-'}{hours}" + (f":{minutes:02d}" if minutes else "")
    if not hours and not minutes:
        return f"{name!r} is not a time zone name: write UTC"
    total = sign * (hours * 60 + minutes)
    if minutes >= 60 or not -12 * 60 <= total <= 14 * 60:
        return (
            f"{name!r} is not a time zone name, and no place is on {shown}: offsets run from "
            "UTC-12 to UTC+14"
        )
    if minutes:
        return (
            f"{name!r} is not a time zone name, and no fixed zone has a {shown} offset: write "
            "the zone of the place whose clock you mean, such as Asia/Kolkata or "
            "Australia/Adelaide"
        )
    fixed = f"Etc/GMT{'-' if sign > 0 else '+'}{hours}"
    return (
        f"{name!r} is not a time zone name: for {shown} all year write {fixed} (POSIX inverts "
        f"the sign: {fixed} is {shown}); to follow a place's daylight saving write its zone, "
        f"{_CITIES}"
    )


def _folded(name: str) -> str:
    return name.casefold().replace(" ", "_")


@functools.cache
def _by_folded_name() -> dict[str, str]:
    """Every zone, by its name casefolded with spaces as underscores: `america/new york`."""
    return {_folded(name): name for name in sorted(available_timezones())}


@functools.cache
def _by_city() -> dict[str, str]:
    """Each region's zones by their city alone, casefolded: `new york`, `paris`."""
    cities: dict[str, str] = {}
    for name in sorted(available_timezones(), reverse=True):  # the first in order wins
        area, _, city = name.rpartition("/")
        if area.split("/")[0] in _AREAS:
            cities[_folded(city)] = name
    return cities


@functools.cache
def _suggestible() -> tuple[str, ...]:
    """The zones a misspelling may be pointed to: never an abbreviation (BST is not a typo of
    MST), a fixed legacy zone or an offset (GMT+1 is not a typo of GMT+0); UTC is kept."""
    return tuple(
        name
        for name in sorted(available_timezones())
        if name == "UTC"
        or (
            not name.startswith("Etc/")
            and name not in ("Factory", "localtime")
            and not re.fullmatch(r"[A-Z0-9+\-]+", name)
        )
    )
