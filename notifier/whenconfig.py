"""A rule's `when:`: located YAML into one `Condition`, every problem recorded.

Apart from `ruleconfig.py` (the rule around it: name, notify, templates, shaping) because
conditions are a grammar of their own: string fields, side, number bounds, and any/all/not
nested to any depth. Of the rule they need only its keys, to tell one indented under `when:`
where it belongs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from decimal import Decimal

from notifier.conditions import (
    DECIMAL_FIELDS,
    STRING_FIELDS,
    AllOf,
    AnyOf,
    Bounds,
    Condition,
    FieldMatch,
    Not,
    fold,
)
from notifier.config_problems import Problems
from notifier.configvalues import as_decimal, as_str_list, mapping, suggest
from notifier.globs import is_glob
from notifier.yamltree import Node, Scalar, YMap, YSeq, describe

WHEN_KEYS = (*STRING_FIELDS, *DECIMAL_FIELDS, "any", "all", "not")
SIDES = ("BUY", "SELL")
FILL_STATUSES = ("FILLED", "PARTIALLY_FILLED")  # what the feed sends (its AsyncAPI enum)


def _misplaced(key: str) -> str:
    """The advice for a rule key found among a rule's conditions."""
    if key == "title":  # `when: {title: "*bitcoin*"}` means the market's title, not the alert's
        return (
            "'title' is the alert's title template, a key of the rule: to match the market's "
            "title, write `market_title:`"
        )
    return f"{key!r} belongs to the rule, not to its conditions: indent it as `when:` is"


def parse_condition(
    node: Node, path: str, problems: Problems, rule_keys: Collection[str]
) -> Condition | None:
    """A `when` mapping (or one nested under any/all/not); null or {} matches every fill.

    One of `rule_keys` (the keys of the rule around it) found among the conditions is told
    where it belongs, rather than called unknown.
    """
    misplaced = [key for key in rule_keys if key not in WHEN_KEYS]
    when = mapping(node, path, problems, WHEN_KEYS, skip=misplaced)
    if when is None:
        return None
    for key in when:
        if key in misplaced:  # `notify:` indented under `when:`: the YAML nests it there
            problems.add(when.key_lines[key], f"{path}.{key}", _misplaced(key))
    parts: list[Condition] = []
    ok = all(key in WHEN_KEYS for key in when)
    for key, value in when.items():
        child = f"{path}.{key}"
        part: Condition | None = None
        if key == "side":
            part = _side(value, child, problems)
        elif key in STRING_FIELDS:
            values = _strings(key, value, child, problems)
            part = None if values is None else FieldMatch(key, values)
        elif key in DECIMAL_FIELDS:
            part = _bounds(key, value, child, problems)
        elif key in ("any", "all"):
            part = _group(key, value, child, problems, rule_keys)
        elif key == "not":
            if not value or _is_null(value):
                # `not` of nothing matches no fill: the rule could never alert. Most often
                # the next key was meant to be indented under it.
                message = "needs at least one condition (indent the ones it negates under it)"
                problems.add(when.key_lines[key], child, message)
                ok = False
                continue
            inner = parse_condition(value, child, problems, rule_keys)
            part = None if inner is None else Not(inner)
        else:
            continue
        if part is None:
            ok = False
        else:
            parts.append(part)
    if not ok:
        return None
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


# Fields whose values never hold a comma: `market: 0xabc, 0xdef` meant a list, and as one
# string it would silently match nothing.
_NO_COMMA = frozenset({"market", "order_id", "status"})


def _strings(key: str, node: Node, path: str, problems: Problems) -> tuple[str, ...] | None:
    values = as_str_list(node, path, problems)
    if values is None:
        return None
    ok = True
    for text, item, item_path in values:
        if key in _NO_COMMA and "," in text:
            first = text.split(",")[0].strip()
            problems.add(
                item.line,
                item_path,
                f"holds a comma: to match any of several, write a list: [{first}, ...]",
            )
            ok = False
        elif key == "market" and _words(text):
            # "Bitcoin", "*election*": words, where the venue sends 0x… hex; never matches.
            problems.add(
                item.line,
                item_path,
                f"{text!r} is not a market id (the venue's are 0x… hex): to match the "
                f"market's question, write market_title: {_title_glob(text)!r}",
            )
            ok = False
        elif key == "market" and _UPPER_HEX_ID.fullmatch(text):
            # The venue's ids are lower-case hex ("0x1a2b…"), compared exactly: this never matches.
            problems.add(
                item.line,
                item_path,
                f"market ids are lower-case hex, as the venue sends them: write {text.lower()!r}",
            )
            ok = False
        elif key == "market" and text != text.strip() and _ID_START.match(text.strip()):
            # A space copied with the id: the venue's ids have none, so this never matches.
            problems.add(item.line, item_path, f"{text!r} has a space around the id: remove it")
            ok = False
        elif key == "market" and (hexid := _PLAIN_HEX_ID.fullmatch(text)) is not None:
            digits = len(hexid.group(1))
            if digits != MARKET_ID_DIGITS:
                size = "shorter" if digits < MARKET_ID_DIGITS else "longer"
                problems.note(
                    item.line,
                    item_path,
                    f"{text!r} is {size} than a market id (0x and {MARKET_ID_DIGITS} hex "
                    "digits), and compared whole it matches no fill of the venue's: to match "
                    f"the ids that start with it, write {text + '*'!r}",
                )
        elif key == "market_title" and _a_word(text):
            word = text.strip()
            problems.note(
                item.line,
                item_path,
                f"{word!r} has no * or ?, so it matches only a title that is {word!r} and "
                f'nothing more (titles are whole questions, such as "{_TITLE_EXAMPLE}"): to '
                f"match the titles that contain it, write {_title_glob(word)!r}",
            )
        elif key == "status" and (meant := _status_meant(text)) is not None:
            statuses = " and ".join(FILL_STATUSES)
            problems.add(
                item.line,
                item_path,
                f"unknown status {text!r} (did you mean {meant!r}?); fill statuses are {statuses}",
            )
            ok = False
    return tuple(v for v, _, _ in values) if ok else None


# What a market id can be, globs included: hex digits and the 0x before them; or anything
# written after a 0x, which reads as an id whatever follows.
_ID_TEXT = re.compile(r"[0-9a-fA-FxX*?\[\]!-]*")
_ID_START = re.compile(r"[*?]*0[xX]")


def _words(text: str) -> bool:
    """Whether a `market` value reads as words, not an id: neither starting with 0x nor
    holding only what an id (or a glob of one) holds; hex letters alone ("Fed", "cafe")
    with no digit are words too."""
    if _ID_START.match(text) or not text.strip("*?"):
        return False
    return not _ID_TEXT.fullmatch(text) or not any(c.isdigit() for c in text)


# A market title as the venue writes it: a whole question.
_TITLE_EXAMPLE = "Will Bitcoin close above $100k in 2026?"
# One word, or words shorter than this, with no glob: a market_title meant to be found in the
# title, not all of it (a question such as the one above is twice as long).
_WORD_LENGTH = 20


def _a_word(text: str) -> bool:
    """Whether a `market_title` pattern with no glob reads as words to find in a title, not a
    whole title: compared whole, it matches almost no market."""
    words = text.strip()
    return bool(words) and not is_glob(words) and (" " not in words or len(words) < _WORD_LENGTH)


def _title_glob(text: str) -> str:
    """Words meant for the title, as a market_title glob that finds them anywhere in it."""
    return text if "*" in text or "?" in text else f"*{text}*"


# The venue's market ids: 0x and 64 lower-case hex digits (a condition id).
MARKET_ID_DIGITS = 64
_PLAIN_HEX_ID = re.compile(r"0x([0-9a-f]+)")
# A hex market id (globs allowed) with an upper-case digit: "0xABC1", "0xAbC*".
_UPPER_HEX_ID = re.compile(r"0[xX](?=[0-9a-fA-F*?]*[A-F])[0-9a-fA-F*?]+|0X[0-9a-f*?]+")
_STATUS_SEPARATORS = re.compile(r"[\s_\-]+")
# Order statuses venues do send, a letter or two from a fill status (KILLED is one from
# FILLED): a rule naming one may be waiting for the venue to send it, so it is not corrected.
_OTHER_STATUS_WORDS = frozenset(
    {"KILLED", "FAILED", "UNFILLED", "CANCELLED", "CANCELED", "EXPIRED", "REJECTED"}
)
# One slip in FILLED (FIILED) scores 0.83, two in PARTIALLY_FILLED (PARTIAL_FILLED) 0.93;
# CANCELLED scores 0.53 and EXPIRED 0.46.
_STATUS_CUTOFF = 0.8


def _status_meant(text: str) -> str | None:
    """The fill status a plain `status` pattern that matches none was meant to be, if it is
    close to one: spelt with spaces or hyphens, cut short, or a slip. A glob, or a status far
    from both (one the venue may add), is the user's to aim: None."""
    if is_glob(text) or fold(text) in {fold(status) for status in FILL_STATUSES}:
        return None
    shape = _STATUS_SEPARATORS.sub("_", text.strip()).strip("_").upper()
    if not shape or _OTHER_STATUS_WORDS.intersection(shape.split("_")):
        return None
    for status in FILL_STATUSES:
        if shape.replace("_", "") == status.replace("_", ""):
            return status
        if len(shape) >= 4 and status.startswith(shape):
            return status
    close = difflib.get_close_matches(shape, FILL_STATUSES, n=1, cutoff=_STATUS_CUTOFF)
    return close[0] if close else None


_SIDE_SEPARATORS = re.compile(r"[\s,;/|&+]+")


def _side(node: Node, path: str, problems: Problems) -> Condition | None:
    values = as_str_list(node, path, problems)
    if values is None:
        return None
    sides: list[str] = []
    for text, item, item_path in values:
        parts = [part.upper() for part in _SIDE_SEPARATORS.split(text.strip())]
        if text.upper() in SIDES:
            sides.append(text.upper())
        elif len(parts) > 1 and all(part in SIDES for part in parts):
            # "BUY, SELL" meant a list: "did you mean 'SELL'?" would mislead.
            either = set(parts) == set(SIDES)
            problems.add(
                item.line,
                item_path,
                f"names {len(parts)} sides in one string: "
                + (
                    "to match either side, leave side out (or write a list: [BUY, SELL])"
                    if either
                    else f"write one: {parts[0]}"
                ),
            )
        else:
            hint = suggest(text.upper(), SIDES)
            problems.add(item.line, item_path, f"must be BUY or SELL, got {text!r}{hint}")
    return FieldMatch("side", tuple(sides)) if len(sides) == len(values) else None


_PERCENT_OR_CENTS = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(%|c|¢)\s*")


def _price_as_cents(node: YMap, path: str, problems: Problems) -> bool:
    """Whether a price bound is written as a percentage or in cents (`50%`, `65c`): said
    with the price it means, as prices run 0 to 1 (the outcome's probability)."""
    found = False
    for end in _ENDS:
        value = node.get(end)
        if not isinstance(value, Scalar):
            continue
        written = _PERCENT_OR_CENTS.fullmatch(value.text)
        if written is not None:
            meant = Decimal(written.group(1)).scaleb(-2).normalize()
            problems.add(
                value.line,
                f"{path}.{end}",
                f"prices run 0 to 1, so {value.text.strip()!r} is {meant:f}: write {meant:f}",
            )
            found = True
    return found


_ENDS = ("min", "max", "above", "below")  # inclusive, inclusive, exclusive, exclusive


def _bounds(key: str, node: Node, path: str, problems: Problems) -> Condition | None:
    if not isinstance(node, YMap):
        got = describe(node)
        like = "{min: 0.4, max: 0.6}" if key == "price" else "{min: 1, max: 2}"
        problems.add(node.line, path, f"must be a mapping like {like}, got {got}")
        return None
    if mapping(node, path, problems, _ENDS) is None or set(node) - set(_ENDS):
        return None
    if not node:
        problems.add(node.line, path, "needs min, max, above or below")
        return None
    if key == "price" and _price_as_cents(node, path, problems):
        return None
    ends = {end: as_decimal(node[end], f"{path}.{end}", problems) for end in _ENDS if end in node}
    if any(value is None for value in ends.values()):
        return None
    bound = {end: value for end, value in ends.items() if value is not None}
    for inclusive, exclusive in (("min", "above"), ("max", "below")):
        if inclusive in bound and exclusive in bound:
            problems.add(
                node[exclusive].line,
                path,
                f"{inclusive} and {exclusive} both bound the same end: keep one",
            )
            return None
    low_end = "min" if "min" in bound else "above" if "above" in bound else None
    high_end = "max" if "max" in bound else "below" if "below" in bound else None
    said = any(problems.silenced(f"{path}.{end}") for end in bound)
    if low_end is not None and high_end is not None and not said:
        low, high = bound[low_end], bound[high_end]
        if low > high:
            problems.add(node.line, path, f"{low_end} {low} is greater than {high_end} {high}")
            return None
        if low == high and (low_end, high_end) != ("min", "max"):
            problems.add(node.line, path, f"{low_end} {low} and {high_end} {high} leave no value")
            return None
    wrong = False
    for end, value in bound.items():
        problem = _out_of_range(key, end, value)
        if problem is not None:
            problems.add(node[end].line, f"{path}.{end}", problem)
            wrong = True
    if wrong:
        return None
    return Bounds(
        key,
        bound.get("min"),
        bound.get("max"),
        above=bound.get("above"),
        below=bound.get("below"),
    )


def _out_of_range(key: str, end: str, value: Decimal) -> str | None:
    """A bound no fill can reach: a price is a probability, a quantity or notional is never
    negative, so such a rule would match nothing."""
    if key == "price" and not 0 <= value <= 1:
        return f"must be between 0 and 1 (a price of 65¢ is 0.65), got {value}"
    if value < 0:
        return f"must be 0 or more: no fill has a negative {key}, got {value}"
    if key == "quantity" and end in ("max", "below") and not value:
        return "must be above 0: every fill's quantity is, so this rule would match none"
    if end == "below" and not value:
        return f"must be above 0: no fill has a {key} below 0, so this rule would match none"
    if key == "price" and end == "above" and value == 1:
        return "must be below 1: no price is above 1, so this rule would match none"
    return None


def _is_null(node: Node) -> bool:
    return isinstance(node, Scalar) and node.kind == "null"


def _group(
    key: str, node: Node, path: str, problems: Problems, rule_keys: Collection[str]
) -> Condition | None:
    if not isinstance(node, YSeq) or not node:
        got = describe(node) if not isinstance(node, YSeq) else "an empty list"
        problems.add(node.line, path, f"must be a list of conditions, got {got}")
        return None
    empty = [i for i, item in enumerate(node) if not item or _is_null(item)]
    for i in empty:
        # An empty item matches every fill: a stray `-` made the whole `any` match every fill.
        message = "is an empty condition, which matches every fill (a stray `-`?)"
        problems.add(node[i].line, f"{path}[{i}]", message)
    parts = [
        parse_condition(item, f"{path}[{i}]", problems, rule_keys) for i, item in enumerate(node)
    ]
    if empty or any(p is None for p in parts):
        return None
    conditions = tuple(p for p in parts if p is not None)
    return AnyOf(conditions) if key == "any" else AllOf(conditions)
