"""The config file: YAML in, validated `Settings` out, or a ConfigError listing every problem.

Pure but for `load` reading the file: the environment and the channel-URL check (apprise,
an edge) are injected, so `check-config`, `run` and the tests take the same path.
"""

from __future__ import annotations

import dataclasses
import os
import re
import select
import stat
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from notifier.channelconfig import CheckUrl, note_mixed_formats, parse_channels
from notifier.config_problems import Problems
from notifier.configvalues import (
    CHANNEL_NAME,
    Parser,
    as_choice,
    as_duration,
    as_int,
    as_nonempty_str,
    as_seconds,
    key_line,
    line_of,
    mapping,
    section,
)
from notifier.durations import format_duration
from notifier.errors import ConfigError, ConfigProblem, os_reason
from notifier.events import Fill
from notifier.feedconfig import parse_feed
from notifier.ruleconfig import RuleContext, parse_rules, template_placeholder
from notifier.rules import RuleSet
from notifier.settings import (
    BODY_FORMATS,
    FORMAT_WORDS,
    DeliverySettings,
    LogSettings,
    MetricsSettings,
    Settings,
    StateSettings,
    split_listen,
)
from notifier.yamltree import Node, Scalar, YMap, read

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
# Said of a top-level key near no section: where settings shared through anchors go
# (`defaults: &defaults`, `X-desk` and `x_desk` are not passed over).
_EXTENSION_HINT = "; a key holding shared settings for anchors starts with x-, as x-defaults"


PIPE_WAIT = 10.0  # seconds a config that is a named pipe may take to be written to


def load(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    check_url: CheckUrl | None = None,
    require_api_key: bool = True,
    unset_urls: str | None = None,
) -> Settings:
    """Read and validate the config file at `path`; ConfigError lists every problem."""
    return parse(
        _read_text(path),
        source=path,
        env=os.environ if env is None else env,
        check_url=check_url,
        require_api_key=require_api_key,
        unset_urls=unset_urls,
    )


def load_state(path: Path, *, env: Mapping[str, str] | None = None) -> StateSettings:
    """Only the `state` section, for a command that needs nothing else (`notifier outbox`).

    Run by hand, without the daemon's environment file: an unset `${VAR}` elsewhere (a
    channel URL's secret) is no problem here. One in `state.path` still is, and a file that
    is not YAML too.
    """
    problems = Problems(str(path))
    tree = _read_by_hand(path, problems, env, lenient=lambda key: not _in_state(key))
    node = tree.get("state") if isinstance(tree, YMap) else None
    state = section(node, "state", problems, StateSettings(), _STATE)
    problems.items = [p for p in problems.items if p.path == "" or _in_state(p.path)]
    problems.raise_if_any()
    return _anchor_state(state, path)


def _read_text(path: Path) -> str:
    """The config file's text, or a ConfigError naming it and why it cannot be read."""
    try:
        return _read_file(path)
    except UnicodeDecodeError as exc:
        # An editor's UTF-16 (its byte-order mark is the first thing to fail) or Latin-1.
        where = f"byte {exc.start + 1}"
        message = f"cannot read: not UTF-8 text ({where} is not): save the file as UTF-8"
        raise ConfigError([ConfigProblem(str(path), None, "", message)]) from exc
    except OSError as exc:
        problem = ConfigProblem(str(path), None, "", f"cannot read: {os_reason(exc)}")
        raise ConfigError([problem]) from exc


def _read_file(path: Path) -> str:
    """The file's text as UTF-8. A named pipe is waited on for `PIPE_WAIT` at most: one no one
    writes to held `open` forever (a reload with it, and every reload after); a writer it has
    (`--config <(...)`, or one coming) is read to its end as a file is."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            waiting = select.poll()
            waiting.register(fd, select.POLLIN)
            if not waiting.poll(PIPE_WAIT * 1000):
                raise TimeoutError(f"a named pipe nothing was written to within {PIPE_WAIT:g}s")
        os.set_blocking(fd, True)
        file = open(fd, encoding="utf-8", closefd=True)  # noqa: SIM115 -- closed just below
    except BaseException:
        os.close(fd)
        raise
    with file:
        return file.read()


def channel_names(path: Path, *, env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The names under `channels:`, read as `load_state` reads (no variable need be set):
    for `notifier outbox --to`, which names one and needs none of its URLs."""
    tree = _read_by_hand(path, Problems(str(path)), env, lenient=lambda key: True)
    channels = tree.get("channels") if isinstance(tree, YMap) else None
    return frozenset(channels) if isinstance(channels, YMap) else frozenset()


def _read_by_hand(
    path: Path, problems: Problems, env: Mapping[str, str] | None, *, lenient: Callable[[str], bool]
) -> Node | None:
    """The file's tree as a command run by hand reads it: an unset `${VAR}` where `lenient`
    says is no problem (the daemon's environment file is not this shell's)."""
    return read(
        _read_text(path),
        problems,
        env=os.environ if env is None else env,
        lenient=lenient,
        literal=template_placeholder,
        secret=_is_secret,
    )


def _in_state(key_path: str) -> bool:
    return key_path == "state" or key_path.startswith("state.")


def parse(
    text: str,
    *,
    source: Path,
    env: Mapping[str, str],
    check_url: CheckUrl | None = None,
    require_api_key: bool = True,
    unset_urls: str | None = None,
) -> Settings:
    """Validate config `text` (from `source`, which anchors relative paths).

    `unset_urls`: a channel URL that holds an unset `${VAR}` is this URL instead of a problem
    (a dry run that sends nothing needs no channel's secret).
    """
    problems = Problems(str(source))
    lenient = () if require_api_key else ("feed.api_key",)
    tree = read(
        text,
        problems,
        env=env,
        lenient=lenient,
        literal=template_placeholder,
        secret=_is_secret,
        stand_in=lambda path: unset_urls if _CHANNEL_URL.fullmatch(path) else None,
    )
    if tree is None:
        if not problems.items:
            # A truncated file (`>`, a two-step save, a full disk) is empty YAML, and running
            # it, or reloading it, would silently drop every rule and channel.
            problems.add(None, "", "the file holds no settings (it is empty, or only comments)")
        problems.raise_if_any()  # unreadable YAML: the rest would be noise
    # `x-` keys hold what other keys refer to (`x-defaults: &defaults`), as in Compose files.
    extensions = [key for key in tree if key.startswith("x-")] if isinstance(tree, YMap) else []
    root = (
        mapping(tree, "", problems, _TOP_KEYS, skip=extensions, otherwise=_EXTENSION_HINT)
        if tree is not None
        else None
    )
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
    _check_max_age(root.get("delivery"), delivery, problems)
    metrics = section(root.get("metrics"), "metrics", problems, MetricsSettings(), _METRICS)
    log = section(root.get("log"), "log", problems, LogSettings(), _LOG)
    channels = parse_channels(root.get("channels"), problems, check_url)
    # Rules may name a channel whose URL was refused: that is the channel's problem, not theirs.
    declared = [n for n in _keys(root.get("channels")) if CHANNEL_NAME.fullmatch(n)]
    context = RuleContext(problems, declared)
    rules = parse_rules(root.get("rules"), "rules", context)
    problems.raise_if_any()
    note_mixed_formats(root.get("rules"), rules, channels, delivery.body_format, problems)
    return Settings(
        source=source,
        feed=feed,
        state=state,
        delivery=delivery,
        metrics=metrics,
        channels=channels,
        rules=RuleSet(rules),
        log=log,
        notes=tuple(problems.notes),
    )


def _check_max_age(node: Node | None, delivery: DeliverySettings, problems: Problems) -> None:
    """max_age gives an alert at least one whole attempt: a shorter one dead-letters alerts
    while their first send still runs (`max_age: 24`, meant as hours, is 24 seconds)."""
    if not isinstance(node, YMap) or ("max_age" not in node and "timeout" not in node):
        return
    deadline = timedelta(seconds=delivery.send_deadline)
    if delivery.max_age >= deadline:
        return
    bound, age = format_duration(deadline), format_duration(delivery.max_age)
    if "max_age" in node:
        problems.add(
            key_line(node, "max_age"),
            "delivery.max_age",
            f"must be at least one attempt's bound, {bound} (3 x delivery.timeout), got {age} "
            "(a bare number is seconds: write 24h for a day)",
        )
        return
    problems.add(
        key_line(node, "timeout"),
        "delivery.timeout",
        f"one attempt may take 3 x timeout, {bound}, more than delivery.max_age ({age}): "
        "alerts would be given up on during their first send; shorten it or raise max_age",
    )


def _keys(node: Node | None) -> list[str]:
    return list(node) if isinstance(node, YMap) else []


# Where a channel's URL is written: `NAME: url`, `NAME: [url, ...]`, `NAME: {url: ...}` or
# `NAME: {urls: [...]}` (either key takes one URL or a list).
_CHANNEL_URL = re.compile(r"channels\.[^.\[]+(?:\[\d+\]|\.urls?(?:\[\d+\])?)?")


def _is_secret(path: str) -> bool:
    """Key paths whose values are secrets: the API key, and channel URLs (their tokens)."""
    return path == "feed.api_key" or path == "channels" or path.startswith("channels.")


_SHELL_REFERENCE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def _path(node: Node, path: str, problems: Problems) -> Path | None:
    text = as_nonempty_str(node, path, problems)
    if text is None:
        return None
    if "\0" in text:
        problems.add(line_of(node), path, "must not contain a NUL character")
        return None
    shell = _SHELL_REFERENCE.search(text)
    if shell is not None:
        # `$HOME/notifier.db` or systemd's `$STATE_DIRECTORY/...` as a shell would read it: here
        # it is a directory named `$HOME` beside the config, made at the first start.
        name = shell.group(1)
        hint = " (or ~ for the home directory)" if name == "HOME" else ""
        problems.add(node.line, path, f"${name} is not expanded here: write ${{{name}}}{hint}")
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
    "body_format": lambda n, p, pr: as_choice(n, p, pr, BODY_FORMATS, FORMAT_WORDS),
    "overflow": lambda n, p, pr: as_choice(n, p, pr, ("split", "truncate", "upstream")),
}


def _listen(node: Node, path: str, problems: Problems) -> str | None:
    if isinstance(node, Scalar) and node.kind == "null":
        return None
    text = as_nonempty_str(node, path, problems)
    if text is None:
        return None
    if split_listen(text) is None:
        scheme = " (an address to listen on, not a URL: no scheme or path)" if "/" in text else ""
        port = text.strip()
        if port.isascii() and port.isdigit():
            meant = f"127.0.0.1:{port}"
            scheme = (
                f" (a port alone: write {meant} for this machine only)"
                if split_listen(meant) is not None
                else " (a port is at most 65535)"
            )
        problems.add(
            node.line,
            path,
            f'must be "host:port" such as 127.0.0.1:9464 or [::1]:9464, got {text!r}{scheme}',
        )
        return None
    return text.strip()


_METRICS: dict[str, Parser] = {"listen": _listen}
_LOG: dict[str, Parser] = {
    "level": lambda n, p, pr: as_choice(n, p, pr, ("debug", "info", "warning", "error")),
    "format": lambda n, p, pr: as_choice(n, p, pr, ("text", "json")),
}
