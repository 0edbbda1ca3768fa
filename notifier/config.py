"""The config file: YAML in, validated `Settings` out, or a ConfigError listing every problem.

Pure but for `load` reading the file: the environment and the channel-URL check (apprise,
an edge) are injected, so `check-config`, `run` and the tests take the same path.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from notifier.configvalues import (
    CHANNEL_NAME,
    Parser,
    as_choice,
    as_duration,
    as_int,
    as_nonempty_str,
    as_seconds,
    as_str_list,
    key_line,
    line_of,
    mapping,
    section,
)
from notifier.errors import ConfigError, ConfigProblem, os_reason
from notifier.events import Fill
from notifier.feedconfig import parse_feed
from notifier.render import escape_for
from notifier.ruleconfig import RuleContext, parse_rules, template_placeholder, unknown_channel
from notifier.rules import RuleSet
from notifier.settings import (
    ChannelSettings,
    DeliverySettings,
    LogSettings,
    MetricsSettings,
    Settings,
    StateSettings,
    split_listen,
)
from notifier.yamltree import Node, Problems, Scalar, YMap, describe, read

CheckUrl = Callable[[str], str | None]

# The fill check-config renders every template against.
SAMPLE_FILL = Fill(
    order_id="42",
    market_id="0x1a2b3c4d5e6f",
    side="BUY",
    outcome="Yes",
    price=Decimal("0.65"),
    quantity=Decimal("150.0"),
    filled_at=datetime(2026, 2, 6, 12, 0, 45, tzinfo=UTC),
    status="FILLED",
    client_order_id="bot-0001",
    market_title="Will Bitcoin close above $100k in 2026?",
)

_TOP_KEYS = ("feed", "state", "delivery", "metrics", "log", "channels", "rules")
_RATE = re.compile(r"\s*(\d{1,9})\s*/\s*(\S+)\s*")  # a bounded count: int() of any length
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_RATE_UNITS |= {"h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}


def load(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    check_url: CheckUrl | None = None,
    require_api_key: bool = True,
) -> Settings:
    """Read and validate the config file at `path`; ConfigError lists every problem."""
    return parse(
        _read_text(path),
        source=path,
        env=os.environ if env is None else env,
        check_url=check_url,
        require_api_key=require_api_key,
    )


def load_state(path: Path, *, env: Mapping[str, str] | None = None) -> StateSettings:
    """Only the `state` section, for a command that needs nothing else (`notifier outbox`).

    Run by hand, without the daemon's environment file: an unset `${VAR}` elsewhere (a
    channel URL's secret) is no problem here. One in `state.path` still is, and a file that
    is not YAML too.
    """
    problems = Problems(str(path))
    tree = read(
        _read_text(path),
        problems,
        env=os.environ if env is None else env,
        lenient=lambda key: not _in_state(key),
        literal=template_placeholder,
        secret=_is_secret,
    )
    node = tree.get("state") if isinstance(tree, YMap) else None
    state = section(node, "state", problems, StateSettings(), _STATE)
    problems.items = [p for p in problems.items if p.path == "" or _in_state(p.path)]
    problems.raise_if_any()
    return _anchor_state(state, path)


def _read_text(path: Path) -> str:
    """The config file's text, or a ConfigError naming it and why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = ConfigProblem(str(path), None, "", f"cannot read: {os_reason(exc)}")
        raise ConfigError([problem]) from exc


def _in_state(key_path: str) -> bool:
    return key_path == "state" or key_path.startswith("state.")


def parse(
    text: str,
    *,
    source: Path,
    env: Mapping[str, str],
    check_url: CheckUrl | None = None,
    require_api_key: bool = True,
) -> Settings:
    """Validate config `text` (from `source`, which anchors relative paths)."""
    problems = Problems(str(source))
    lenient = () if require_api_key else ("feed.api_key",)
    tree = read(
        text, problems, env=env, lenient=lenient, literal=template_placeholder, secret=_is_secret
    )
    if tree is None:
        if not problems.items:
            # A truncated file (`>`, a two-step save, a full disk) is empty YAML, and running
            # it, or reloading it, would silently drop every rule and channel.
            problems.add(None, "", "the file holds no settings (it is empty, or only comments)")
        problems.raise_if_any()  # unreadable YAML: the rest would be noise
    root = mapping(tree, "", problems, _TOP_KEYS) if tree is not None else YMap(1)
    root = root if root is not None else YMap(1)
    feed = parse_feed(root.get("feed"), problems, env, require_api_key=require_api_key)
    state = section(root.get("state"), "state", problems, StateSettings(), _STATE)
    state = _anchor_state(state, source)
    delivery = section(root.get("delivery"), "delivery", problems, DeliverySettings(), _DELIVERY)
    if delivery.retry_base > delivery.retry_cap:
        node = root.get("delivery")
        # At the key written (a default on the other side is not where the mistake is).
        key = "retry_base" if isinstance(node, YMap) and "retry_base" in node else "retry_cap"
        where = key_line(node, key)
        base, cap = f"{delivery.retry_base:g}s", f"{delivery.retry_cap:g}s"
        message = (
            f"must not be more than retry_cap ({cap}), got {base}"
            if key == "retry_base"
            else f"must not be less than retry_base ({base}), got {cap}"
        )
        problems.add(where, f"delivery.{key}", message)
    metrics = section(root.get("metrics"), "metrics", problems, MetricsSettings(), _METRICS)
    log = section(root.get("log"), "log", problems, LogSettings(), _LOG)
    channels = _channels(root.get("channels"), problems, check_url)
    # Rules may name a channel whose URL was refused: that is the channel's problem, not theirs.
    declared = [n for n in _keys(root.get("channels")) if CHANNEL_NAME.fullmatch(n)]
    escape = escape_for(delivery.body_format)
    context = RuleContext(problems, declared, escape=escape)
    rules = parse_rules(root.get("rules"), "rules", context)
    problems.raise_if_any()
    return Settings(
        source=source,
        feed=feed,
        state=state,
        delivery=delivery,
        metrics=metrics,
        channels=channels,
        rules=RuleSet(rules, escape=escape),
        log=log,
    )


def _keys(node: Node | None) -> list[str]:
    return list(node) if isinstance(node, YMap) else []


def _is_secret(path: str) -> bool:
    """Key paths whose values are secrets: the API key, and channel URLs (their tokens)."""
    return path == "feed.api_key" or path == "channels" or path.startswith("channels.")


def _path(node: Node, path: str, problems: Problems) -> Path | None:
    text = as_nonempty_str(node, path, problems)
    if text is None:
        return None
    if "\0" in text:
        problems.add(line_of(node), path, "must not contain a NUL character")
        return None
    try:
        return Path(text).expanduser()  # ~/x, as in a shell
    except RuntimeError:  # ~user unknown, or no home directory (a container's arbitrary uid)
        problems.add(
            node.line, path, f"cannot expand {text.split('/')[0]!r} here: write the full path"
        )
        return None


def _anchor_state(state: StateSettings, source: Path) -> StateSettings:
    """Relative state paths (and the default) live beside the config file, not the cwd."""
    if state.path.is_absolute():
        return state
    return dataclasses.replace(state, path=source.parent / state.path)


def _max_age(node: Node, path: str, problems: Problems) -> timedelta | None:
    age = as_duration(node, path, problems)
    if age is not None and age <= timedelta(0):
        # Not "no limit": every alert would be dead-lettered before its first attempt.
        message = "must be more than 0 (alerts older than this are given up on, unsent)"
        problems.add(node.line, path, message)
        return None
    return age


_STATE: dict[str, Parser] = {"path": _path}
_DELIVERY: dict[str, Parser] = {
    "max_age": _max_age,
    "retry_base": as_seconds,
    "retry_cap": as_seconds,
    "concurrency": lambda n, p, pr: as_int(n, p, pr, minimum=1),
    "timeout": as_seconds,
    "body_format": lambda n, p, pr: as_choice(n, p, pr, ("text", "markdown", "html")),
    "overflow": lambda n, p, pr: as_choice(n, p, pr, ("split", "truncate", "upstream")),
}


def _listen(node: Node, path: str, problems: Problems) -> str | None:
    if isinstance(node, Scalar) and node.kind == "null":
        return None
    text = as_nonempty_str(node, path, problems)
    if text is None:
        return None
    if split_listen(text) is None:
        problems.add(
            node.line,
            path,
            f'must be "host:port" such as 127.0.0.1:9464 or [::1]:9464, got {text!r}',
        )
        return None
    return text.strip()


_METRICS: dict[str, Parser] = {"listen": _listen}
_LOG: dict[str, Parser] = {
    "level": lambda n, p, pr: as_choice(n, p, pr, ("debug", "info", "warning", "error")),
    "format": lambda n, p, pr: as_choice(n, p, pr, ("text", "json")),
}
_CHANNEL_KEYS = ("urls", "url", "rate", "fallback", "fallback_after")


def _channels(
    node: Node | None, problems: Problems, check_url: CheckUrl | None
) -> dict[str, ChannelSettings]:
    """Each channel's URLs (checked, never echoed), rate limit and fallback."""
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
        if "fallback_after" in node:
            after = as_duration(node["fallback_after"], f"{path}.fallback_after", problems)
            values["fallback_after"] = after
    urls = as_str_list(urls_node, urls_path, problems)
    if urls is None:
        return None
    ok = all(v is not None for v in values.values())  # URLs are still checked: all at once
    for url, item, item_path in urls:
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
    if seconds is None or count < 1:
        problems.add(node.line, path, f'must look like "20/min" or "5/2s", got {text!r}')
        return None
    return (count, seconds)
