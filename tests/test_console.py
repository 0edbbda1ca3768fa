"""console:// prints alerts to stdout, for `notifier demo`."""

from __future__ import annotations

import io
import os
import sys

import pytest

from notifier import closedpipe
from notifier.channels import ChannelSet, check_url
from notifier.console import print_alert
from notifier.settings import ChannelSettings, DeliverySettings


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


async def test_console_channel_prints_title_and_body(capsys: pytest.CaptureFixture[str]) -> None:
    """A console:// channel prints the title line, then the body, intact in text mode."""
    settings = {"demo": ChannelSettings(name="demo", urls=("console://",))}
    channels = ChannelSet.build(settings, delivery=DeliverySettings())
    (target,) = channels.targets("demo")
    result = await channels.send(target.key, "Will <b>&*_ win?", "BUY 10 YES @ 0.45\nline 2")
    assert result.ok
    assert capsys.readouterr().out == "== Will <b>&*_ win? ==\nBUY 10 YES @ 0.45\nline 2\n\n"


async def test_a_named_console_channel_prints_its_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`console://desk` (what the demo makes of a config's channel) names the channel before
    the title, so an alert to two channels shows which is which."""
    settings = {"desk": ChannelSettings(name="desk", urls=("console://desk",))}
    channels = ChannelSet.build(settings, delivery=DeliverySettings())
    (target,) = channels.targets("desk")
    assert (await channels.send(target.key, "Large buy", "BUY 100")).ok
    assert (await channels.send(target.key, "", "no title")).ok
    assert capsys.readouterr().out == "[desk] == Large buy ==\nBUY 100\n\n[desk]\nno title\n\n"


def test_console_url_is_registered() -> None:
    """Importing notifier.channels registers console:// with apprise."""
    assert check_url("console://") is None


def test_title_is_bold_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a terminal the title is printed bold (ANSI) instead of framed."""
    terminal = _Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    assert print_alert("body", "Title")
    assert terminal.getvalue() == "\033[1mTitle\033[0m\nbody\n\n"


def test_no_title_prints_only_the_body(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a title only the body is printed."""
    assert print_alert("just the body", "")
    assert capsys.readouterr().out == "just the body\n\n"


def test_a_closed_pipe_is_not_a_failed_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """`notifier demo | head`: once the reader is gone, alerts are dropped quietly. A failed
    send would be retried with back-off and stall the demo for its whole settle time."""
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w", encoding="utf-8") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        assert print_alert("body", "title") is True
        assert print_alert("later", "alert") is True  # stdout now leads to /dev/null
        assert os.path.samestat(os.fstat(write), os.stat(os.devnull))


def test_a_closed_pipe_tells_whoever_runs_for_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo asks to be told when its stdout's reader goes: only the print that finds the
    pipe closed tells it (later ones reach /dev/null), and not once it stopped asking."""
    told: list[str] = []
    read, write = os.pipe()
    with os.fdopen(write, "w", encoding="utf-8") as out:
        monkeypatch.setattr(sys, "stdout", out)
        with closedpipe.when_dropped(lambda: told.append("gone")):
            assert print_alert("read", "title") is True
            assert told == []
            os.close(read)
            assert print_alert("unread", "title") is True
            assert print_alert("later", "alert") is True
        assert told == ["gone"]
        closedpipe.drop_stdout()
        assert told == ["gone"]


class _Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_an_alert_is_one_write_so_two_channels_never_interleave(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Channels send on threads of their own: heading and body go out in one write (under
    a lock), so one channel's body can never land under another's heading."""
    stream = _Writes()
    monkeypatch.setattr(sys, "stdout", stream)
    assert print_alert("BUY 10\nline 2", "Title", meta={"host": "desk"})
    assert stream.writes == ["[desk] == Title ==\nBUY 10\nline 2\n\n"]
