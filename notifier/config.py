"""The config file: YAML in, validated `Settings` out, or a ConfigError listing every problem.

Pure but for `load` reading the file: the environment and the channel-URL check (apprise,
an edge) are injected, so `check-config`, `run` and the tests take the same path.
"""

from __future__ import annotations

import dataclasses
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from notifier.configvalues import (
    as_choice,
    as_duration,
    as_int,
    as_nonempty_str,
    as_seconds,
    as_str_list,
    key_line,
    line_of,
    mapping,
)
from notifier.durations import format_duration
from notifier.errors import ConfigError, ConfigProblem, os_reason
from notifier.events import Fill
from notifier.ruleconfig import RuleContext, parse_rules, template_placeholder, unknown_channel
from notifier.rules import RuleSet
from notifier.settings import (
    DEFAULT_BASE_URL,
    ChannelSettings,
    DeliverySettings,
    FeedSettings,
    LogSettings,
    MetricsSettings,
    Settings,
    StateSettings,
    split_listen,
)
from notifier.yamltree import Node, Problems, Scalar, YMap, describe, read

CheckUrl = Callable[[str], str | None]
API_KEY_ENV = "POLYSIM_API_KEY"
BASE_URL_ENV = "POLYSIM_BASE_URL"

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
_CHANNEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_RATE = re.compile(r"\s*(\d{1,9})\s*/\s*(\S+)\s*")  # a bounded count: int() of any length
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_RATE_UNITS |= {"h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}

T = TypeVar("T")
Parser = Callable[[Node, str, Problems], object | None]


def load(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    check_url: CheckUrl | None = None,
    require_api_key: bool = True,
) -> Settings:
    """Read and validate the config file at `path`; ConfigError lists every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = ConfigProblem(str(path), None, "", f"cannot read: {os_reason(exc)}")
        raise ConfigError([problem]) from exc
    return parse(
        text,
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
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = ConfigProblem(str(path), None, "", f"cannot read: {os_reason(exc)}")
        raise ConfigError([problem]) from exc
    problems = Problems(str(path))
    tree = read(
        text,
        problems,
        env=os.environ if env is None else env,
        lenient=lambda key: key != "state" and not key.startswith("state."),
        literal=template_placeholder,
        secret=_is_secret,
    )
    node = tree.get("state") if isinstance(tree, YMap) else None
    state = _section(node, "state", problems, StateSettings(), {"path": _path})
    problems.items = [
        p for p in problems.items if p.path in ("", "state") or p.path.startswith("state.")
    ]
    problems.raise_if_any()
    return _anchor_state(state, path)


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
    feed = _feed(root.get("feed"), problems, env, require_api_key=require_api_key)
    state = _section(root.get("state"), "state", problems, StateSettings(), {"path": _path})
    state = _anchor_state(state, source)
    delivery = _section(root.get("delivery"), "delivery", problems, DeliverySettings(), _DELIVERY)
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
    metrics = _section(root.get("metrics"), "metrics", problems, MetricsSettings(), _METRICS)
    log = _section(root.get("log"), "log", problems, LogSettings(), _LOG)
    channels = _channels(root.get("channels"), problems, check_url)
    # Rules may name a channel whose URL was refused: that is the channel's problem, not theirs.
    declared = [n for n in _keys(root.get("channels")) if _CHANNEL_NAME.fullmatch(n)]
    rules = parse_rules(root.get("rules"), "rules", RuleContext(problems, declared))
    problems.raise_if_any()
    return Settings(
        source=source,
        feed=feed,
        state=state,
        delivery=delivery,
        metrics=metrics,
        channels=channels,
        rules=RuleSet(rules),
        log=log,
    )


def _keys(node: Node | None) -> list[str]:
    return list(node) if isinstance(node, YMap) else []


def _section(
    node: Node | None, name: str, problems: Problems, default: T, table: Mapping[str, Parser]
) -> T:
    """A settings dataclass from `default` with each key in the mapping parsed by `table`."""
    if node is None:
        return default
    section = mapping(node, name, problems, table)
    if section is None:
        return default
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key in table:
            parsed = table[key](value, f"{name}.{key}", problems)
            if parsed is not None:
                values[key] = parsed
    return dataclasses.replace(default, **values)  # type: ignore[type-var]  # T is a dataclass


def _url_problem(text: str) -> str | None:
    """Why `text` cannot be the venue's base URL, or None; caught here, not at connect time
    (a port past 65535 was an OverflowError deep in the feed, exit 70, restarted in a loop)."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http:// or https:// URL"
    try:
        parts.port  # noqa: B018 -- reading it is the check: ValueError when out of range
    except ValueError:
        return "has a port that is not 1 to 65535"
    if parts.port == 0:
        return "has a port that is not 1 to 65535"
    if not parts.hostname:
        return "names no host"
    if parts.query or parts.fragment:
        return "must not have a ?query or #fragment (the paths are appended to it)"
    if parts.username is not None or parts.password is not None:
        return "must not hold a user name or password (the API key is what authenticates)"
    return None


def _shown_url(text: str) -> str:
    """The URL for an error message, any user:password@ in it masked."""
    scheme, sep, rest = text.partition("://")
    host, slash, path = rest.partition("/")
    if sep and "@" in host:
        return f"{scheme}://***@{host.rpartition('@')[2]}{slash}{path}"
    return text


def _url(node: Node, path: str, problems: Problems) -> str | None:
    text = as_nonempty_str(node, path, problems)
    if text is None:
        return None
    problem = _url_problem(text.strip())
    if problem is not None:
        problems.add(node.line, path, f"{problem}, got {_shown_url(text)!r}")
        return None
    return text.strip().rstrip("/")


def _secret(node: Node, path: str, problems: Problems) -> str | None:
    """A string that is never echoed back (describe() names only its type)."""
    if isinstance(node, Scalar) and node.kind in ("str", "number", "yaml11_bool", "null"):
        return node.text if node.kind != "null" else ""
    problems.add(node.line, path, f"must be a string, got {describe(node)}")
    return None


_FEED: dict[str, Parser] = {
    "base_url": _url,
    "api_key": _secret,
    "catch_up": as_duration,
    "backfill_overlap": as_duration,
    "backfill_horizon": as_duration,
    "ping_interval": as_seconds,
    "ping_timeout": as_seconds,
    "stable_after": lambda n, p, pr: as_seconds(n, p, pr, positive=False),
    "request_timeout": as_seconds,
    "max_frame_bytes": lambda n, p, pr: as_int(n, p, pr, minimum=1024),
}


def _feed(
    node: Node | None, problems: Problems, env: Mapping[str, str], *, require_api_key: bool
) -> FeedSettings:
    defaults = FeedSettings(
        base_url=env.get(BASE_URL_ENV, "").rstrip("/") or DEFAULT_BASE_URL,
        api_key=env.get(API_KEY_ENV, ""),
    )
    feed = _section(node, "feed", problems, defaults, _FEED)
    problem = _url_problem(feed.base_url)
    if feed.base_url == defaults.base_url and problem is not None:
        # From the environment, so `check-config` refuses it too, not `run` at connect time.
        message = f"{BASE_URL_ENV} {problem}, got {_shown_url(feed.base_url)!r}"
        problems.add(None, "feed.base_url", message)
    _check_look_back(node, feed, problems)
    reported = any(p.path == "feed.api_key" for p in problems.items)
    where = key_line(node, "api_key")
    if require_api_key and not feed.api_key.strip() and not reported:
        message = f"no API key: set {API_KEY_ENV} in the environment or feed.api_key"
        if where is not None and defaults.api_key.strip():
            message = (
                f"empty here, and a key in the file overrides {API_KEY_ENV}: "
                "remove feed.api_key to use the environment's, or fill it in"
            )
        problems.add(where, "feed.api_key", message)
    odd = next((i for i, c in enumerate(feed.api_key) if not "!" <= c <= "~"), None)
    if odd is not None and not reported and require_api_key:  # only a command that sends it
        # Refused here, not at connect: httpx would put the whole key in its encoding error.
        char = feed.api_key[odd]
        name = unicodedata.name(char, "a control character")
        problems.add(
            where,
            "feed.api_key",
            f"character {odd + 1} (U+{ord(char):04X}, {name}) cannot travel in an HTTP "
            f"header: copy the key again (from feed.api_key or {API_KEY_ENV})",
        )
    return feed


def _check_look_back(node: Node | None, feed: FeedSettings, problems: Problems) -> None:
    """Backfill's windows must fit each other, or fills missed while away are not recovered:
    a horizon within the overlap looks back at nothing past the watermark, and a catch-up
    past the horizon is cut to it."""
    horizon, overlap = feed.backfill_horizon, feed.backfill_overlap
    if horizon <= overlap:
        problems.add(
            key_line(node, "backfill_horizon") or key_line(node, "backfill_overlap"),
            "feed.backfill_horizon",
            f"must be longer than backfill_overlap ({format_duration(overlap)}), got "
            f"{format_duration(horizon)}: fills missed while the feed was down would not be "
            "recovered",
        )
    elif feed.catch_up > horizon:
        problems.add(
            key_line(node, "catch_up"),
            "feed.catch_up",
            f"{format_duration(feed.catch_up)} reaches back past backfill_horizon "
            f"({format_duration(horizon)}), which bounds every look back: raise "
            f"feed.backfill_horizon to at least {format_duration(feed.catch_up)}",
        )


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
        if not _CHANNEL_NAME.fullmatch(name):
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
