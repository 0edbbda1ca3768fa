"""Logging set-up for the CLI: text in a terminal, JSON lines on request, noisy libraries quiet.

Only the CLI calls `configure`; modules just use `logging.getLogger(__name__)`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import IO, Literal

LogFormat = Literal["text", "json"]

# Loggers that would print secrets at low levels, and the floor each is held at whatever
# --log-level says: httpx logs request URLs at INFO; apprise's Slack and Telegram plugins log
# full token URLs at DEBUG (and say "Notifying 1 service(s)" at INFO for every alert, which the
# deliverer's own lines already cover); websockets logs the handshake request (token in the
# query) at DEBUG.
FLOORS = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    # requests/urllib3 carry apprise's sends: urllib3 logs each request line (a Slack
    # webhook's token, Telegram's /bot<token>/ path) at DEBUG, and warns with the whole URL
    # ("Failed to parse headers (url=...)", "Retrying ... /bot<token>/..."): what matters of
    # those reaches us as the send's result.
    "urllib3": logging.ERROR,
    "requests": logging.ERROR,
    "apprise": logging.WARNING,
    "websockets": logging.INFO,
    "asyncio": logging.WARNING,
}

_RESERVED = frozenset(vars(logging.makeLogRecord({})))
# (secret as a line may spell it, what the line shows instead): replaced whole, never mutated,
# since other threads (apprise's sends, the WAL checkpoint) format lines while a reload adds.
_HIDDEN: tuple[tuple[str, str], ...] = ()
MIN_HIDDEN = 8  # shorter values are too likely to be ordinary words to replace


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in entry and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _text_formatter() -> logging.Formatter:
    """Date and time in UTC, as the JSON lines and `notifier outbox` give them: a daemon's
    log spans days, and a time alone could be any of them."""
    text = logging.Formatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%SZ"
    )
    text.converter = time.gmtime
    return text


class _Hiding(logging.Formatter):
    """Another formatter's lines, with every hidden secret replaced (see `hide`)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for secret, shown in _HIDDEN:
            if secret in text:
                text = text.replace(secret, shown)
        return text


def _apprise_errors_only(record: logging.LogRecord) -> bool:
    """apprise's own warnings about a send are in the deliverer's line about it (which names
    the channel and rule): printed apart as well, each failure would read as two."""
    return record.levelno >= logging.ERROR or not record.name.startswith("apprise")


def hide(secret: str, shown: str) -> None:
    """From now on, write `shown` wherever a log line would carry `secret`.

    A safety net, not the means: no message of ours carries a secret, but the text of an
    unforeseen exception (logged as the CLI's last word, traceback included) may quote one.
    """
    global _HIDDEN
    if len(secret) < MIN_HIDDEN:
        return
    # As a line may spell it: raw or inside a repr (`\` doubled), each also inside a JSON
    # string (`"` and `\` escaped again).
    plain = {secret, repr(secret)[1:-1]}
    spellings = plain | {json.dumps(each, ensure_ascii=False)[1:-1] for each in plain}
    known = {s for s, _ in _HIDDEN}
    added = tuple((s, shown) for s in spellings if s not in known)
    _HIDDEN = tuple(sorted((*_HIDDEN, *added), key=lambda pair: -len(pair[0])))


def parse_level(text: str) -> int:
    """A level name (debug, info, warning, error) as a logging level; ValueError if unknown."""
    level = logging.getLevelName(text.strip().upper())
    if not isinstance(level, int):
        # Echoed only when it could be a level's name: NOTIFIER_LOG_LEVEL may hold anything.
        shown = f" {text!r}" if text.isalpha() and len(text) <= 10 else ""
        raise ValueError(f"unknown log level{shown} (use debug, info, warning or error)")
    return level


def configure(*, level: int, fmt: LogFormat = "text", stream: IO[str] | None = None) -> None:
    """Route all logging to `stream` (stderr by default) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    inner = JsonFormatter() if fmt == "json" else _text_formatter()
    handler.setFormatter(_Hiding(inner))
    handler.addFilter(_apprise_errors_only)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    hold_floors()


def json_active() -> bool:
    """Whether logging writes JSON lines (a message meant for the log must then be one)."""
    return any(
        isinstance(getattr(h.formatter, "inner", h.formatter), JsonFormatter)
        for h in logging.getLogger().handlers
    )


def hold_floors() -> None:
    """Keep libraries that log secrets or noise at or above their floor level."""
    for name, floor in FLOORS.items():
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < floor or logger.level < floor:
            logger.setLevel(floor)
