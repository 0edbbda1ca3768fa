"""The config's `channels:` section: each channel's URLs, rate limit, fallback and format, checked.

Apart from config.py, which reads the file's other sections and checks the rules against the
channels found here. A channel URL carries its credentials, so a problem names the channel
and the key path, never the URL (apprise's own check is injected as `check_url`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from notifier.config_problems import Problems
from notifier.configvalues import (
    CHANNEL_NAME,
    QUOTED,
    as_choice,
    as_duration,
    as_nonempty_str,
    as_str_list,
    mapping,
    quoted,
)
from notifier.errors import URL_SCHEME
from notifier.ruleconfig import unknown_channel
from notifier.rules import Rule
from notifier.settings import BODY_FORMATS, FORMAT_WORDS, ChannelSettings
from notifier.yamltree import Node, Scalar, YMap, YSeq, describe

CheckUrl = Callable[[str], str | None]
# apprise takes several URLs in one string, split at commas or spaces; a channel's `url` is one.
_URL_SEPARATORS = re.compile(r"[\s,]+")
_URL_START = re.compile(rf"{URL_SCHEME}://")

_RATE = re.compile(r"\s*(\d{1,9})\s*/\s*(\S+)\s*")  # a bounded count: int() of any length
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_RATE_UNITS |= {"h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}
_CHANNEL_KEYS = ("urls", "url", "rate", "fallback", "fallback_after", "body_format")


def parse_channels(
    node: Node | None, problems: Problems, check_url: CheckUrl | None
) -> dict[str, ChannelSettings]:
    """Each channel's URLs (checked, never echoed), rate limit, fallback and format."""
    if not isinstance(node, YMap):
        if node is not None and not (isinstance(node, Scalar) and node.kind == "null"):
            problems.add(node.line, "channels", f"must be a mapping, got {describe(node)}")
        return {}
    channels: dict[str, ChannelSettings] = {}
    fallbacks: dict[str, tuple[str, Node]] = {}
    declared = set(node)
    for name, value in node.items():
        path = f"channels.{name}"
        if not CHANNEL_NAME.fullmatch(name):
            problems.add(
                node.key_lines[name],
                path,
                "a channel name must start with a letter and use only letters, digits, _ and -",
            )
            continue
        channel = _channel(name, value, path, problems, check_url)
        if channel is None:
            continue
        channels[name] = channel
        if channel.fallback is not None:
            assert isinstance(value, YMap)
            fallbacks[name] = (channel.fallback, value["fallback"])
    for name, (target, target_node) in fallbacks.items():
        path = f"channels.{name}.fallback"
        if target == name:
            problems.add(target_node.line, path, "a channel cannot fall back to itself")
        elif target in declared and target not in channels:
            continue  # the target channel's own problem is reported; this one is not
        elif target not in channels:
            problems.add(target_node.line, path, unknown_channel(target, channels))
        elif (loop := _cycle(name, channels)) and name == min(loop):
            problems.add(target_node.line, path, f"fallback loop: {' -> '.join(loop)}")
    return channels


def _cycle(start: str, channels: Mapping[str, ChannelSettings]) -> list[str]:
    """The fallback chain from `start` if it comes back to `start`, else []."""
    chain = [start]
    current = channels[start].fallback
    while current is not None and current in channels and current not in chain:
        chain.append(current)
        current = channels[current].fallback
    return [*chain, start] if current == start and len(chain) > 1 else []


def _channel(
    name: str, node: Node, path: str, problems: Problems, check_url: CheckUrl | None
) -> ChannelSettings | None:
    values: dict[str, Any] = {}
    urls_node, urls_path = node, path
    if isinstance(node, YMap):
        if mapping(node, path, problems, _CHANNEL_KEYS) is None or set(node) - set(_CHANNEL_KEYS):
            return None
        if ("urls" in node) == ("url" in node):
            problems.add(node.line, path, "needs exactly one of urls (a list) or url")
            return None
        key = "urls" if "urls" in node else "url"
        urls_node, urls_path = node[key], f"{path}.{key}"
        if "rate" in node:
            values["rate"] = _rate(node["rate"], f"{path}.rate", problems)
        if "fallback" in node:
            values["fallback"] = as_nonempty_str(node["fallback"], f"{path}.fallback", problems)
        if "body_format" in node:
            where = f"{path}.body_format"
            values["body_format"] = as_choice(
                node["body_format"], where, problems, BODY_FORMATS, FORMAT_WORDS
            )
        if "fallback_after" in node:
            after = as_duration(node["fallback_after"], f"{path}.fallback_after", problems)
            if after is not None and "fallback" not in node:
                # Loaded, it set a delay for nothing: the channel's failures went nowhere else.
                problems.add(
                    node["fallback_after"].line,
                    f"{path}.fallback_after",
                    "has no effect without fallback: name the channel to fall back to",
                )
                after = None
            values["fallback_after"] = after
    urls = as_str_list(urls_node, urls_path, problems)
    if urls is None:
        return None
    ok = all(v is not None for v in values.values())  # URLs are still checked: all at once
    for url, item, item_path in urls:
        several = sum(1 for part in _URL_SEPARATORS.split(url) if _URL_START.match(part))
        if several > 1:  # apprise's "a, b" form: as one URL, the second is its path
            problems.add(
                item.line,
                item_path,
                f"channel {name!r}: {several} URLs in one string: write each as an item of a "
                "list: urls: [first, second]",
            )
            ok = False
            continue
        if quoted(url.strip()):  # `SLACK_URL="https://..."` read by docker's --env-file
            problems.add(item.line, item_path, f"channel {name!r}: the URL {QUOTED}")
            ok = False
            continue
        reason = check_url(url.strip()) if check_url is not None else None
        if reason is not None:
            problems.add(item.line, item_path, f"channel {name!r}: URL not accepted: {reason}")
            ok = False
    if not ok:
        return None
    return ChannelSettings(name=name, urls=tuple(u.strip() for u, _, _ in urls), **values)


def _rate(node: Node, path: str, problems: Problems) -> tuple[int, float] | None:
    text = as_nonempty_str(node, path, problems)
    if text is None:
        return None
    match = _RATE.fullmatch(text)
    count = int(match.group(1)) if match else 0
    unit = match.group(2).lower() if match else ""
    seconds = _RATE_UNITS.get(unit)
    if seconds is None and match:
        scratch = Problems(problems.file)
        after = as_duration(Scalar(unit, node.line, plain=True), path, scratch)
        seconds = after.total_seconds() if after is not None and after.total_seconds() else None
    if match and count < 1 and seconds is not None:
        # No message at all is no rate: leave the channel out of the rules instead.
        problems.add(node.line, path, f"must allow at least 1 message, got {text!r}")
        return None
    if seconds is None or count < 1:
        problems.add(node.line, path, f'must look like "20/min" or "5/2s", got {text!r}')
        return None
    return (count, seconds)


def note_mixed_formats(
    node: Node | None,
    rules: Sequence[Rule],
    channels: Mapping[str, ChannelSettings],
    default_format: str,
    problems: Problems,
) -> None:
    """A note for each rule whose templates hold markup and whose channels write different
    formats: its templates go to each as written (only the fill's values are escaped per
    format), so the markup suits one of the formats; a rule per format sends each its own."""
    if not isinstance(node, YSeq):
        return
    by_name = {rule.name: rule for rule in rules}
    for index, item in enumerate(node):
        name = item.get("name") if isinstance(item, YMap) else None
        rule = by_name.get(name.text) if isinstance(name, Scalar) else None
        if rule is None or not isinstance(item, YMap) or not _has_markup(rule):
            continue
        formats = {
            channel: channels[channel].body_format or default_format
            for channel in rule.notify
            if channel in channels
        }
        if len(set(formats.values())) > 1:
            written = ", ".join(f"{channel} {fmt}" for channel, fmt in formats.items())
            problems.note(
                item.key_lines.get("notify", item.line),
                f"rules[{index}].notify",
                f"channels of different formats ({written}): the templates go to each as "
                "written, only the values escaped for it, so markup in them suits one format "
                "(a rule per format sends each its own)",
            )


# What HTML or Markdown markup starts with, in a template's own text: a tag or an entity,
# emphasis, code, a link, strike-through.
_MARKUP = re.compile(r"<[A-Za-z/!]|&#?\w+;|[*_`~]|\[[^\]]*\]\(")


def _has_markup(rule: Rule) -> bool:
    """Whether the rule's own template text (placeholders aside) holds markup."""
    templates = (rule.title, rule.body, rule.line, *(rule.single or ()))
    return any(
        _MARKUP.search("".join(text for text, *_ in string.Formatter().parse(t.text)))
        for t in templates
        if t is not None
    )
