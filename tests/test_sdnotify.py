"""What systemd is told, over a real datagram socket, and when the watchdog wants pings."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import uuid

import pytest

from notifier import sdnotify


def test_state_lines_reach_a_socket_in_the_abstract_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """systemd may name its socket "@name" (the abstract namespace): the lines arrive whole."""
    name = f"notifier-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name)
        systemd.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", f"@{name}")
        sdnotify.notify("READY=1\nSTATUS=running: 1 rule, 1 channel")
        assert systemd.recv(256) == b"READY=1\nSTATUS=running: 1 rule, 1 channel"


def test_outside_systemd_nothing_is_sent_and_a_dead_socket_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No $NOTIFY_SOCKET: silence. A socket that is gone: one warning naming the state, not
    the STATUS text after it, and the daemon goes on."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    with caplog.at_level(logging.WARNING, logger="notifier.sdnotify"):
        sdnotify.notify("READY=1")
        assert caplog.records == []
        with tempfile.TemporaryDirectory(dir="/tmp") as short:
            monkeypatch.setenv("NOTIFY_SOCKET", f"{short}/gone")
            sdnotify.notify("READY=1\nSTATUS=running: 1 rule, 1 channel")
    (warning,) = caplog.records
    assert warning.getMessage().startswith("could not tell systemd READY=1: ")
    assert "STATUS" not in warning.getMessage()


def test_reloading_carries_the_monotonic_time_in_microseconds() -> None:
    """systemd 253+ matches RELOADING=1 to its reload by CLOCK_MONOTONIC in microseconds."""
    assert sdnotify.reloading(lambda: 12.5) == "RELOADING=1\nMONOTONIC_USEC=12500000"


def test_a_status_is_one_line_of_at_most_200_characters() -> None:
    """A newline in the text would start a state line of its own: never."""
    flat = "STATUS=reload refused READY=1 twice"
    assert sdnotify.status("reload refused\nREADY=1  twice") == flat
    assert sdnotify.status("x" * 500) == "STATUS=" + "x" * 200


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({}, None),  # WatchdogSec= not set
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),  # half of WatchdogSec=30s
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),  # this process
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),  # another one
        ({"WATCHDOG_USEC": "1000"}, sdnotify.MIN_WATCHDOG_PING),  # 1 ms: not a busy loop
    ],
)
def test_the_watchdog_interval_is_half_what_systemd_asks_for_this_process(
    environ: dict[str, str], interval: float | None
) -> None:
    """Pings every half WatchdogSec=, only when systemd watches this very process."""
    assert sdnotify.watchdog_interval(environ, pid=4242) == interval


def test_the_watchdog_interval_defaults_to_this_process_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read from the daemon's own environment and PID when not given."""
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 1.0


async def test_the_watchdog_is_pinged_at_once_and_then_every_interval() -> None:
    """A ping as the run starts (the watchdog counts from READY=1), then one per interval."""
    sent: list[str] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await sdnotify.tell_every(lambda: "WATCHDOG=1", 15.0, send=sent.append, sleep=sleep)
    assert sent == ["WATCHDOG=1"] * 3
    assert slept == [15.0] * 3


def test_the_status_line_says_what_runs_the_feed_what_waits_and_a_refused_reload() -> None:
    """`systemctl status` shows the daemon's state: its feed and its backlog, and a reload
    that did not take until one does."""
    running = "running: 3 rules, 2 channels"
    assert sdnotify.status_report(running, connected=True, waiting=0, reload=None) == (
        "running: 3 rules, 2 channels; feed connected; 0 alerts waiting"
    )
    refused = "reload refused at 2026-12-07 05:40:12 UTC (2 problems)"
    assert sdnotify.status_report(running, connected=False, waiting=1, reload=refused) == (
        f"running: 3 rules, 2 channels; feed not connected; 1 alert waiting; {refused}"
    )


async def test_the_status_is_sent_at_once_and_then_every_interval() -> None:
    """Fresh from the start, then every STATUS_EVERY seconds, each line as it is then."""
    sent: list[str] = []
    slept: list[float] = []
    lines = iter(["first", "second", "third"])

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            raise asyncio.CancelledError

    def line() -> str:  # as start_status sends it
        return sdnotify.status(next(lines))

    with pytest.raises(asyncio.CancelledError):
        await sdnotify.tell_every(line, sdnotify.STATUS_EVERY, send=sent.append, sleep=sleep)
    assert sent == ["STATUS=first", "STATUS=second", "STATUS=third"]
    assert slept == [sdnotify.STATUS_EVERY] * 3


def test_a_status_is_made_only_under_systemd() -> None:
    """Without $NOTIFY_SOCKET nobody reads it: no task, no snapshot every interval."""
    assert sdnotify.under_systemd({"NOTIFY_SOCKET": "/run/systemd/notify"})
    assert not sdnotify.under_systemd({})
    assert not sdnotify.under_systemd({"NOTIFY_SOCKET": ""})
