"""`notifier simulator`: what it prints is enough to point the real daemon at it over loopback."""

from __future__ import annotations

import asyncio
import io
import re
import socket
from pathlib import Path

import pytest
from receivers import WebhookReceiver

from notifier import cli
from notifier.config import parse
from notifier.service import Service
from notifier.simulator_command import run_simulator


class Lines(io.StringIO):
    """What the command prints, readable while it runs."""

    def text(self) -> str:
        return self.getvalue()


async def _printed(out: Lines, pattern: str, timeout: float = 10) -> re.Match[str]:
    async with asyncio.timeout(timeout):
        while (found := re.search(pattern, out.text())) is None:
            await asyncio.sleep(0.01)
    return found


async def test_the_daemon_runs_against_it_as_its_words_say(
    webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """The exported variables it prints take `run` to it; its fills, printed, are alerted."""
    out = Lines()
    venue = asyncio.create_task(
        run_simulator(port=0, every=0.05, fills=None, out=out, err=io.StringIO())
    )
    try:
        export = await _printed(out, r"export POLYSIM_BASE_URL=(\S+) POLYSIM_API_KEY=(\S+)")
        env = {"POLYSIM_BASE_URL": export[1], "POLYSIM_API_KEY": export[2]}
        text = (
            "feed:\n  base_url: ${POLYSIM_BASE_URL}\n"
            f"state:\n  path: {tmp_path / 'state.db'}\n"
            f"channels:\n  hook: {webhook.json_url}\n"
            "rules:\n  - {name: every, notify: [hook], title: '{order_id}'}\n"
        )
        service = Service(parse(text, source=tmp_path / "c.yaml", env=env), install_signals=False)
        daemon = asyncio.create_task(service.run())
        try:
            requests = await webhook.wait_for(3, timeout=20)
        finally:
            service.request_stop()
            await asyncio.wait_for(daemon, timeout=15)
    finally:
        venue.cancel()
        with pytest.raises(asyncio.CancelledError):
            await venue
    printed = re.findall(r" order (\d+): (?:BUY|SELL) \S+ \S+ @ \S+ on .+ \(\w+\)", out.text())
    # Each alert is of a fill it printed (the flat shape carries no status: the order only).
    assert {str(request.json["title"]) for request in requests} <= set(printed)


async def test_it_stops_after_the_fills_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    """`--fills 3`: three fill lines after the instructions, then exit 0."""
    code = await asyncio.to_thread(
        cli.main, ["simulator", "--fills", "3", "--every", "0.01", "--port", "0"]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("simulated PolySimulator on http://127.0.0.1:")
    assert lines[2] == "  notifier run --config config.yaml"
    assert len(lines) == 6
    assert all(re.search(r" order \d+: (BUY|SELL) ", line) for line in lines[3:])


async def test_a_port_in_use_is_said_plainly() -> None:
    """The port taken: one line saying so, exit 1, nothing left listening."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out, err = Lines(), Lines()
        assert await run_simulator(port=port, every=1, fills=1, out=out, err=err) == 1
    assert out.text() == ""
    assert err.text() == (
        f"notifier simulator: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )
