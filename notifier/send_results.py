"""What an apprise result says: delivered, or why not, with a 429's pause; secrets scrubbed.

apprise reports a send as a status and the log lines its plugin wrote while sending. The
deliverer needs three things from them: whether the alert went, an error text it may log and
store (never a URL's secret), and whether the service asked it to slow down. apprise words a
timed-out read as it words a refused connection: only the time a send took tells them apart
(`timeout_note`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from apprise import AppriseResult, NotifyLogEntry

from notifier.channel_limits import MAX_STATED_PAUSE
from notifier.channel_privacy import scrub
from notifier.events import SendResult

_SERIOUS = frozenset({"WARNING", "ERROR", "CRITICAL"})
RATE_LIMIT_PAUSE = 30.0  # seconds a channel rests after a 429 that names no wait
# apprise's words for a 429 ("error=429", "HTTP 429", "Too Many Requests"), not any "429" in a
# warning that also names the target (an ntfy topic "desk-429").
_RATE_LIMITED = re.compile(
    r"(?:error\s*=\s*|http\s+|status\s*[=:]?\s*|code\s*[=:]?\s*)429\b|too many requests",
    re.IGNORECASE,
)
_RETRY_AFTER = re.compile(r"retry[ _-]after\D{0,3}(\d{1,6}(?:\.\d{1,6})?)", re.IGNORECASE)


def to_send_result(result: AppriseResult, secrets: Iterable[str]) -> SendResult:
    """The one translation from apprise's result to ours; error text privacy-safe.

    The error names the service, the outcome and apprise's warnings, not the URL: callers
    already hold the target's display form. A result captured at DEBUG (`send-test`) adds the
    cause apprise logged only there ("535 5.7.8 Authentication credentials invalid").
    """
    if result:
        return SendResult(ok=True)
    secrets = tuple(secrets)
    parts: list[str] = []
    for service in result:
        entries = list(service.logs())
        messages = _warnings(entries)
        found = cause(entries, secrets)
        if found is not None:
            messages.append(f"cause: {found}")
        detail = f": {'; '.join(messages)}" if messages else ""
        parts.append(f"{service.name}: {service.status.name.lower()}{detail}")
    if not parts:  # nothing dispatched (call itself refused): say why from the call logs
        messages = _warnings(result.call_logs())
        detail = f": {'; '.join(messages)}" if messages else ""
        parts.append(f"{result.status.name.lower()}{detail}")
    error = " | ".join(parts)
    return SendResult(ok=False, error=scrub(error, secrets), retry_after=rate_limit_pause(error))


def rate_limit_pause(error: str) -> float | None:
    """Seconds to pause a channel that answered 429, from apprise's words; None if it did not.

    apprise keeps the response's headers to itself, so Retry-After is out of reach: a wait the
    service states in its body (Telegram's "retry after 35") is taken, else `RATE_LIMIT_PAUSE`.
    """
    if not _RATE_LIMITED.search(error):
        return None
    stated = _RETRY_AFTER.search(error)
    return min(float(stated.group(1)), MAX_STATED_PAUSE) if stated else RATE_LIMIT_PAUSE


def service_paused(error: str) -> bool:
    """Whether a failed send's error is the service's own 429: a pause it asked for, which a
    start keeps rather than cutting short."""
    return rate_limit_pause(error) is not None


# What apprise's plugins log, at DEBUG only, about the exception that failed a send.
_EXCEPTION = re.compile(r"^(?:Socket|I/O|Connection) Exception:\s*(.+)", re.DOTALL)
# The parts of it worth a line: an OS error (the end of requests' long chain) or an SMTP reply.
_OS_ERROR = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")
_SMTP_REPLY = re.compile(r"^\((\d{3}), b['\"](.*?)['\"]\)$", re.DOTALL)
_CAUSE_LIMIT = 160  # characters of a cause shown


def cause(entries: Iterable[NotifyLogEntry], secrets: Iterable[str] = ()) -> str | None:
    """The exception behind a failed send, as apprise logged it at DEBUG, made short: the
    OS error at the end of a connection's chain, or the SMTP server's reply; None if none.

    Scrubbed of `secrets` before it is cut short: a token cut in two (requests quotes the
    URL's path, `Max retries exceeded with url: /api/webhooks/<id>/<token>`) no longer reads
    as the token, and its first part would be shown.
    """
    for entry in entries:
        match = _EXCEPTION.match(entry.message.strip())
        if match is None:
            continue
        text = match.group(1).strip()
        reply = _SMTP_REPLY.match(text)
        if reply is not None:
            text = f"{reply.group(1)} {reply.group(2)}"
        else:
            errors = _OS_ERROR.findall(text)
            if errors:
                text = errors[-1].strip()
        text = scrub(text, secrets)
        return text if len(text) <= _CAUSE_LIMIT else text[: _CAUSE_LIMIT - 3] + "..."
    return None


def _warnings(entries: Iterable[NotifyLogEntry]) -> list[str]:
    """The distinct warning/error messages of a capture, last three, in order."""
    seen: list[str] = []
    for entry in entries:
        message = entry.message.strip()
        if entry.level in _SERIOUS and message and message not in seen:
            seen.append(message)
    return seen[-3:]


# A failed send that took this share of a timeout or more: it waited that timeout out.
TIMED_OUT_SHARE = 0.9
# apprise's words for a send that got no HTTP answer (a refused connection, a read timed out).
_CONNECTION_ERROR = re.compile(r"connection error", re.IGNORECASE)


def waited_out(error: str | None, took: float, timeout: float) -> bool:
    """Whether a failed send that took `took` seconds from its start waited out `timeout` for
    an answer: apprise words a read that timed out as it words a refused connection."""
    return took >= timeout * TIMED_OUT_SHARE and bool(_CONNECTION_ERROR.search(error or ""))


def timeout_note(error: str | None, took: float, connect: float, answer: float) -> str | None:
    """apprise's `error`, with the timeout the send waited out when it did one."""
    if waited_out(error, took, answer):
        return f"{error} (no answer within {answer:g}s)"
    if waited_out(error, took, connect):
        return f"{error} (no connection within {connect:g}s)"
    return error
