"""Logging set-up: text or JSON lines, and floors that keep secret-logging libraries quiet."""

from __future__ import annotations

import io
import json
import logging

import pytest

from notifier import logs


def test_json_lines_carry_message_level_logger_and_extras() -> None:
    """--log-format json writes one JSON object per line with the extra fields."""
    out = io.StringIO()
    logs.configure(level=logging.INFO, fmt="json", stream=out)
    logging.getLogger("notifier.test").info("sent %d alerts", 3, extra={"channel": "desk"})
    entry = json.loads(out.getvalue())
    assert entry["msg"] == "sent 3 alerts"
    assert entry["level"] == "info"
    assert entry["logger"] == "notifier.test"
    assert entry["channel"] == "desk"
    assert entry["ts"].endswith("+00:00")


def test_debug_level_keeps_secret_logging_libraries_at_their_floor() -> None:
    """Even at debug, httpx, urllib3, apprise (token URLs) and websockets (handshake) stay quiet."""
    out = io.StringIO()
    logs.configure(level=logging.DEBUG, fmt="text", stream=out)
    logging.getLogger("httpx").info("HTTP Request: POST https://x/v1/keys/ws-token")
    logging.getLogger("apprise").debug("slack://T000/B000/XXXX")
    logging.getLogger("apprise").info("Notifying 1 service(s).")
    logging.getLogger("websockets.client").debug("> GET /v1/ws/executions?token=abc")
    logging.getLogger("urllib3.connectionpool").debug('"POST /services/T0/B0/XXXX HTTP/1.1"')
    logging.getLogger("notifier.feed").debug("our own debug line")
    assert out.getvalue().count("\n") == 1
    assert "our own debug line" in out.getvalue()


def test_parse_level_accepts_names_and_refuses_others() -> None:
    """Level names in any case are accepted; anything else is a clear ValueError."""
    assert logs.parse_level("DEBUG") == logging.DEBUG
    assert logs.parse_level(" warning ") == logging.WARNING
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.parse_level("loud")
    # NOTIFIER_LOG_LEVEL holding the API key (a line swapped in an env file): not echoed.
    with pytest.raises(ValueError, match=r"^unknown log level \(use debug") as info:
        logs.parse_level("ps_live_0123456789abcdef")
    assert "ps_live" not in str(info.value)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_hidden_secret_never_reaches_a_line_not_even_in_a_traceback(
    fmt: logs.LogFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once hidden, a secret in a message or an exception's text is written as its stand-in."""
    monkeypatch.setattr(logs, "_HIDDEN", ())
    secret = "ps_live_0123456789abcdefSECRET"
    logs.hide(secret, "ps_live_01234567…")
    logs.hide("short", "x")  # too short to hide safely: left alone
    stream = io.StringIO()
    logs.configure(level=logging.INFO, fmt=fmt, stream=stream)
    log = logging.getLogger("notifier.test")
    try:
        raise RuntimeError(f"header value {secret!r} cannot be encoded")
    except RuntimeError as exc:
        log.critical("unexpected error, exiting: %r", exc, exc_info=True)
    log.info("a short word stays")
    text = stream.getvalue()
    assert "SECRET" not in text
    assert text.count("ps_live_01234567…") >= 2  # the message and the traceback
    assert "a short word stays" in text
    assert logs.json_active() is (fmt == "json")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_key_with_quotes_or_backslashes_is_hidden_as_lines_spell_it(
    fmt: logs.LogFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON lines escape `"` and `\\`, a repr doubles `\\`: the key is hidden in those spellings."""
    monkeypatch.setattr(logs, "_HIDDEN", ())
    secret = 'ps_live_01234567"89\\abcdefSECRET'
    logs.hide(secret, "ps_live_01234567…")
    stream = io.StringIO()
    logs.configure(level=logging.INFO, fmt=fmt, stream=stream)
    log = logging.getLogger("notifier.test")
    log.error("raw %s", secret)
    log.error("repr %r", secret)
    assert "SECRET" not in stream.getvalue()
    assert stream.getvalue().count("ps_live_01234567…") == 2


def test_apprise_warnings_are_left_to_the_deliverer_s_own_line() -> None:
    """apprise's warning about a failed send is in the deliverer's line about it: not printed
    apart as well; apprise's errors still are."""
    out = io.StringIO()
    logs.configure(level=logging.DEBUG, fmt="text", stream=out)
    logging.getLogger("apprise").warning("Failed to send JSON POST notification")
    logging.getLogger("apprise").error("apprise itself broke")
    logging.getLogger("notifier.delivery_outcomes").warning("delivery failed: channel desk")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "apprise itself broke" in lines[0]
    assert "delivery failed: channel desk" in lines[1]


def test_a_text_line_starts_with_its_date_and_time_in_utc() -> None:
    """A daemon's text log spans days: each line carries the date, and the time in UTC, as
    the JSON lines and `notifier outbox` give theirs (a time alone could be any day)."""
    out = io.StringIO()
    logs.configure(level=logging.INFO, fmt="text", stream=out)
    record = logging.LogRecord("notifier", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 1_800_000_000.25  # 2027-01-15 08:00:00.25 UTC
    logging.getLogger("notifier").handle(record)
    assert out.getvalue() == "2027-01-15 08:00:00Z INFO    notifier: hello\n"
