"""The daemon as users run it: a subprocess against the loopback fake venue and a webhook."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import signal
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from daemon import Daemon, child_env, free_port, http_get, metrics_once
from faults import until
from receivers import WebhookReceiver

from notifier.config import parse
from notifier.errors import FatalFeedError
from notifier.feed import FeedClient
from notifier.service import PIPELINE_GRACE, SHUTDOWN_GRACE, Service
from notifier.settings import Settings
from notifier.simulator import DEFAULT_API_KEY, DEFAULT_MARKETS, SimulatedPolySim

BTC = next(m for m, q in DEFAULT_MARKETS.items() if "Bitcoin" in q)

RULES = """\
rules:
  - name: big
    when: {quantity: {min: 100}}
    notify: [hook]
    title: "Big {side} on {market_title}"
    body: "{quantity} @ {price} #{order_id}"
"""

EXTRA_RULE = """\
  - name: small
    when: {quantity: {max: 99}}
    notify: [hook]
    title: "Small {side}"
"""

REFUSED_RULES = """\
  - name: every
    when: {quantity: {min: 0}}
    notify: [hook]
    title: "Every {side}"
  - name: typo
    when: {quantity: {min: 0}}
    notify: [hok]
"""


def write_config(path: Path, venue: SimulatedPolySim, hook: WebhookReceiver, **kw: str) -> Path:
    """A config for the daemon under test; `rules`/`extra` replace parts of it."""
    metrics = kw.get("metrics", "")
    path.write_text(
        f"""\
feed:
  base_url: {venue.base_url}
  api_key: ${{POLYSIM_API_KEY}}
state:
  path: {path.parent / "state.db"}
delivery:
  retry_base: 0.05s
  retry_cap: 0.2s
{metrics}
channels:
  hook: {hook.json_url}
{kw.get("rules", RULES)}""",
        encoding="utf-8",
    )
    return path


def _titles(hook: WebhookReceiver) -> list[str]:
    return [r.json["title"] for r in hook.requests]


async def test_run_delivers_reloads_and_stops_cleanly(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """run: alerts go out, /healthz and /metrics answer, SIGHUP swaps or refuses, SIGTERM ends."""
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml", venue, webhook, metrics=f"metrics: {{listen: 127.0.0.1:{port}}}"
    )
    async with await Daemon.start(
        "run", "--config", str(config), env=child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    ) as daemon:
        started = await daemon.wait_log("started")
        assert "1 rule, 1 channel," in started
        assert DEFAULT_API_KEY not in daemon.log
        await daemon.feed_ready(venue)
        await venue.fill(market_id=BTC, quantity="150", order_id=1)
        await venue.fill(market_id=BTC, quantity="5", order_id=2)
        await venue.fill(market_id=BTC, quantity="100", order_id=3, shape="nested")
        await webhook.wait_for(2, timeout=10)
        assert _titles(webhook) == ["Big BUY on Will Bitcoin close above $100k in 2026?"] * 2

        assert await http_get(port, "/healthz") == (200, "ok\n")
        metrics = await metrics_once(port, 'notifier_alerts_sent_total{channel="hook"} 2.0')
        assert 'notifier_fills_matched_total{rule="big"} 2.0' in metrics
        assert "notifier_feed_connected 1.0" in metrics

        write_config(config, venue, webhook, rules=RULES + EXTRA_RULE)  # and no metrics:
        daemon.signal(signal.SIGHUP)
        reloaded = await daemon.wait_log("reloaded: 2 rules")
        assert reloaded.endswith("reloaded: 2 rules, 1 channel (rules added: small)")
        assert "metrics settings changed: they take effect at the next restart" in daemon.log
        assert await http_get(port, "/healthz") == (200, "ok\n")  # still served, as it says
        await venue.fill(market_id=BTC, quantity="7", order_id=4)
        await webhook.wait_for(3, timeout=10)
        assert _titles(webhook)[2] == "Small BUY"

        write_config(config, venue, webhook, rules=RULES.replace("[hook]", "[hok]"))
        daemon.signal(signal.SIGHUP)
        await daemon.wait_log("reload refused")
        assert "did you mean 'hook'" in daemon.log
        await venue.fill(market_id=BTC, quantity="8", order_id=5)
        await webhook.wait_for(4, timeout=10)
        assert _titles(webhook)[3] == "Small BUY"  # the valid config stayed in force
        assert venue.connections == 1  # reloads never dropped the feed

        daemon.signal(signal.SIGTERM)
        code, _ = await daemon.wait(timeout=30)
        assert code == 0
        assert "still in flight" not in daemon.log  # nothing waited out the send grace
        assert "stopped before recording" not in daemon.log  # nor the pipeline's
        summary = daemon.lines[-1]
        assert "stopped: 5 new fills" in summary
        assert "4 alerts sent" in summary
        assert "0 pending" in summary
        assert len(webhook.requests) == 4
        assert "stopping (SIGTERM): feed closed" in daemon.log  # why, in the operator's words
        assert daemon.log.count("alert sent: channel hook, rule ") == 4  # one line an alert


async def test_json_log_lines_carry_their_figures_as_fields(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """Under --log-format json, the start, each alert sent and the stop are records with
    their figures as fields (`jq 'select(.event == "sent")'`), not only inside `msg`."""
    config = write_config(tmp_path / "c.yaml", venue, webhook)
    env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    async with await Daemon.start("run", str(config), "--log-format", "json", env=env) as daemon:
        await daemon.feed_ready(venue)
        await venue.fill(market_id=BTC, quantity="150", order_id=1)
        await webhook.wait_for(1, timeout=10)
        await daemon.wait_log('"event": "sent"')
        daemon.signal(signal.SIGTERM)
        code, _ = await daemon.wait()
        assert code == 0
    records = [json.loads(line) for line in daemon.lines]
    by_event = {r["event"]: r for r in records if "event" in r}
    assert by_event["started"]["rules"] == 1
    assert by_event["started"]["key_prefix"].startswith("ps_test_")
    assert by_event["started"]["state"] == str(tmp_path / "state.db")
    assert by_event["started"]["feed"] == venue.base_url
    assert (by_event["sent"]["channel"], by_event["sent"]["rule"]) == ("hook", "big")
    assert (by_event["stopped"]["sent"], by_event["stopped"]["pending"]) == (1, 0)


async def test_equal_partial_fills_are_two_alerts_and_a_restart_adds_none(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """Two partial fills of one order in one second, same size and price: two alerts. After a
    restart, history lists both again (the start-up backfill): no third alert."""
    config = write_config(tmp_path / "config.yaml", venue, webhook)
    env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    at = datetime.now(UTC).replace(microsecond=0)
    async with await Daemon.start("run", "--config", str(config), env=env) as daemon:
        await daemon.feed_ready(venue)
        for status in ("PARTIALLY_FILLED", "FILLED"):
            await venue.fill(market_id=BTC, quantity="150", order_id=5, filled_at=at,
                             status=status, shape="execution")  # fmt: skip
        await webhook.wait_for(2, timeout=10)
        daemon.signal(signal.SIGTERM)
        assert (await daemon.wait())[0] == 0
    async with await Daemon.start("run", "--config", str(config), env=env) as daemon:
        await daemon.feed_ready(venue)
        await venue.fill(market_id=BTC, quantity="300", order_id=6)
        await webhook.wait_for(3, timeout=10)
        daemon.signal(signal.SIGTERM)
        assert (await daemon.wait())[0] == 0
    assert [r.json["message"] for r in webhook.requests] == [
        "150 @ 0.65 #5",
        "150 @ 0.65 #5",
        "300 @ 0.65 #6",
    ]


async def test_a_fill_made_while_stopped_matches_a_rule_on_its_client_order_id(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """History lacks client_order_id: the start-up backfill takes it from the order list, so
    a rule on the bot's own order ids still alerts a fill made while the daemon was down."""
    rules = """\
rules:
  - name: arb
    when: {client_order_id: "arb-*"}
    notify: [hook]
    body: "{client_order_id} #{order_id}"
"""
    config = write_config(tmp_path / "config.yaml", venue, webhook, rules=rules)
    env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    async with await Daemon.start("run", "--config", str(config), env=env) as daemon:
        await daemon.feed_ready(venue)
        await venue.fill(market_id=BTC, order_id=7, client_order_id="arb-7")
        await webhook.wait_for(1, timeout=10)
        daemon.signal(signal.SIGTERM)
        assert (await daemon.wait())[0] == 0
    asked = len(venue.orders_requests)  # 1 if fill 7 came during the connect's history read
    venue.record_history(market_id=BTC, order_id=8, client_order_id="arb-8")
    venue.record_history(market_id=BTC, order_id=9, client_order_id="manual-9")
    async with await Daemon.start("run", "--config", str(config), env=env) as daemon:
        await daemon.feed_ready(venue)
        await webhook.wait_for(2, timeout=10)
        await venue.fill(market_id=BTC, order_id=10, client_order_id="arb-10")
        await webhook.wait_for(3, timeout=10)
        daemon.signal(signal.SIGTERM)
        assert (await daemon.wait())[0] == 0
    assert [r.json["message"] for r in webhook.requests] == ["arb-7 #7", "arb-8 #8", "arb-10 #10"]
    assert len(venue.orders_requests) == asked + 1  # one market, one page


async def test_alerts_pending_at_shutdown_are_sent_after_restart(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """An alert whose channel is down at SIGTERM stays in the outbox; it goes out on restart."""
    config = write_config(tmp_path / "config.yaml", venue, webhook)
    env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    webhook.respond(500, times=1000)
    async with await Daemon.start("run", "--config", str(config), env=env) as daemon:
        await daemon.feed_ready(venue)
        await venue.fill(market_id=BTC, quantity="150", order_id=1)
        await webhook.wait_for(2, timeout=10)  # first attempt and a retry, both refused
        daemon.signal(signal.SIGTERM)
        code, _ = await daemon.wait()
        assert code == 0
        assert "1 pending" in daemon.lines[-1]

    refused = len(webhook.requests)
    webhook._plan.clear()
    async with await Daemon.start("run", "--config", str(config), env=env) as daemon:
        await webhook.wait_for(refused + 1, timeout=10)
        backfill = await daemon.wait_log("backfill: ")
        assert "backfill: 1 fill(s) since " in backfill
        assert backfill.endswith("0 of them new")
        daemon.signal(signal.SIGTERM)
        code, _ = await daemon.wait()
        assert code == 0
    assert daemon.lines[-1].endswith(
        "stopped: 0 new fills (1 duplicates skipped), 0 matched, 1 alerts sent, "
        "0 failed attempts, 0 dead, 0 pending"
    )  # the backfilled copy of the fill was recorded as a duplicate before the stop
    assert len(webhook.requests) == refused + 1  # delivered once, and the fill not re-alerted


async def test_refused_key_is_fatal_with_only_its_prefix(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """A key the venue refuses ends the daemon with exit 1 and one line naming only its prefix."""
    config = write_config(tmp_path / "config.yaml", venue, webhook)
    secret = "ps_live_abcdefgh12345678SECRETPART"
    env = child_env(POLYSIM_API_KEY=secret)
    async with await Daemon.start("run", "--config", str(config), env=env) as daemon:
        code, _ = await daemon.wait()
    assert code == 1
    fatal = [line for line in daemon.lines if line.startswith("notifier: fatal")]
    assert len(fatal) == 1
    assert "ps_live_abcdefgh" in fatal[0]
    assert "SECRETPART" not in daemon.log
    assert "Traceback" not in daemon.log


async def test_demo_prints_each_alert() -> None:
    """`demo --fills 5` runs the real pipeline on loopback and prints five alerts, then exits 0."""
    async with await Daemon.start("demo", "--fills", "5", env=child_env()) as daemon:
        code, out = await daemon.wait(timeout=60)
    assert code == 0, daemon.log
    alerts = [line for line in out.splitlines() if line.startswith("== ")]
    assert len(alerts) == 5, out
    assert "stopped: 5 new fills" in daemon.log


async def test_demo_ends_when_its_terminal_hangs_up() -> None:
    """The demo has no config file to reload: SIGHUP (its terminal closing) stops it, or it
    would run on with no one to stop it."""
    async with await Daemon.start("demo", env=child_env()) as daemon:
        await daemon.wait_log("connected", timeout=30)
        daemon.signal(signal.SIGHUP)
        code, _ = await daemon.wait(timeout=30)
    assert code == 0, daemon.log
    assert "stopping (SIGHUP, and no config file to reload)" in daemon.log


async def test_unusable_state_file_is_fatal_in_one_line(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """A state file that is not a database stops the daemon with exit 1 and one clear line."""
    config = write_config(tmp_path / "config.yaml", venue, webhook)
    (tmp_path / "state.db").write_text("not a database", encoding="utf-8")
    env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    async with await Daemon.start("run", "--config", str(config), env=env) as daemon:
        code, _ = await daemon.wait()
    assert code == 1
    assert daemon.lines == [
        f"notifier: fatal: state file {tmp_path / 'state.db'}: cannot open: "
        "not a notifier state file or corrupt (file is not a database)"
    ]
    assert venue.connections == 0


async def test_watch_reloads_when_the_file_changes(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """run --watch picks up a saved config file without a signal, and refuses a broken one:
    the new rule alerts after the good edit; after the refused one the old rules still alert
    and none of the refused file's rules do."""
    config = write_config(tmp_path / "config.yaml", venue, webhook)
    env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    async with await Daemon.start("run", "--config", str(config), "--watch", env=env) as daemon:
        await daemon.feed_ready(venue)
        write_config(config, venue, webhook, rules=RULES + EXTRA_RULE)
        await daemon.wait_log("reloaded: 2 rules")
        await venue.fill(market_id=BTC, quantity="7", order_id=1)
        await webhook.wait_for(1, timeout=10)
        write_config(config, venue, webhook, rules=RULES + EXTRA_RULE + REFUSED_RULES)
        await daemon.wait_log("reload refused")
        await venue.fill(market_id=BTC, quantity="8", order_id=2)
        await webhook.wait_for(2, timeout=10)
        daemon.signal(signal.SIGTERM)
        code, _ = await daemon.wait()
        assert code == 0
    assert _titles(webhook) == ["Small BUY", "Small BUY"]
    assert daemon.log.count("reloaded: ") == 1
    assert daemon.lines[-1].endswith(
        "stopped: 2 new fills (0 duplicates skipped), 2 matched, 2 alerts sent, "
        "0 failed attempts, 0 dead, 0 pending"
    )


async def test_sigterm_with_a_send_hanging_exits_quickly(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """A channel that never answers does not hold the exit: the send is cut off after the
    grace (the log says so, rather than a wall-clock measure on a busy machine), exit 0, the
    alert pending."""
    config = write_config(tmp_path / "config.yaml", venue, webhook)
    env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    webhook.hang()
    async with await Daemon.start("run", "--config", str(config), env=env) as daemon:
        await daemon.feed_ready(venue)
        await venue.fill(market_id=BTC, quantity="150", order_id=1)
        await webhook.wait_for(1, timeout=10)  # the send is in flight, unanswered
        daemon.signal(signal.SIGTERM)
        code, _ = await daemon.wait(timeout=30)
        assert code == 0
        cut_off = f"1 send still in flight after {SHUTDOWN_GRACE:.1f}s: their alerts stay pending"
        assert daemon.log.count(cut_off) == 1
        assert "1 pending" in daemon.lines[-1]
    assert SHUTDOWN_GRACE + PIPELINE_GRACE < 10  # the stop's bounded waits fit the 10 s promise


async def test_outbox_can_be_listed_while_the_daemon_runs(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """`notifier outbox` reads the state file beside a running daemon; a second daemon may not."""
    config = write_config(tmp_path / "config.yaml", venue, webhook)
    env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    webhook.respond(500, times=1000)
    async with await Daemon.start("run", "--config", str(config), env=env) as daemon:
        await daemon.feed_ready(venue)
        await venue.fill(market_id=BTC, quantity="150", order_id=1)
        await webhook.wait_for(1, timeout=10)
        async with await Daemon.start("outbox", "--config", str(config), env=env) as listing:
            code, out = await listing.wait()
        assert code == 0, listing.log
        assert out.splitlines()[0] == "pending 1, dead 0"
        async with await Daemon.start("run", "--config", str(config), env=env) as second:
            code, _ = await second.wait()
        assert code == 1
        assert "locked by another process (is another notifier running?)" in second.log


async def _open_fifo(fifo: Path, *, timeout: float = 10) -> int:
    """A FIFO's write end, once a reader has it open (the daemon reading its config)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:  # ENXIO: nobody reads yet
                if exc.errno != errno.ENXIO:
                    raise
                await asyncio.sleep(0.01)


def _write_and_close(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


async def test_a_sighup_while_starting_is_kept_and_reloads_once_up(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """SIGHUP before the daemon's handlers are in neither ends it nor is lost.

    Its default action would end the process, which systemd counts as a clean exit and does
    not restart: a `systemctl reload` just after a start would stop the service for good. The
    config is a FIFO, so the daemon is held in its config read (start-up) until the test
    writes it; a reload reads the FIFO again.
    """
    text = write_config(tmp_path / "source.yaml", venue, webhook).read_text(encoding="utf-8")
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    async with await Daemon.start("run", "--config", str(fifo), env=env) as daemon:
        held = await _open_fifo(fifo)  # the daemon now waits in its config read
        daemon.signal(signal.SIGHUP)
        _write_and_close(held, text)
        await daemon.wait_log("SIGHUP during start-up: handling it now")
        _write_and_close(await _open_fifo(fifo), text)  # what the reload reads
        same = await daemon.wait_log("reloaded: 1 rule,")
        assert same.endswith("(no change in rules, channels or delivery)")
        await daemon.feed_ready(venue)
        await venue.fill(market_id=BTC, quantity="150", order_id=1)
        await webhook.wait_for(1, timeout=10)
        daemon.signal(signal.SIGTERM)
        code, _ = await daemon.wait()
    assert code == 0
    assert len(webhook.requests) == 1


async def test_systemd_hears_ready_reloads_their_outcome_the_watchdog_and_stopping(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """Type=notify: READY=1 once a reload can no longer kill the daemon (systemd holds a
    `systemctl reload` until then); each reload between RELOADING=1 and READY=1, its outcome
    in STATUS= (a refused one too); WATCHDOG=1 from the running loop when WatchdogSec= asks
    for it; STOPPING=1 when a graceful stop begins. Each state once, in that order."""
    config = write_config(tmp_path / "config.yaml", venue, webhook)
    with (
        tempfile.TemporaryDirectory(dir="/tmp") as short,  # a socket path has ~100 bytes
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd,
    ):
        address = f"{short}/notify"
        systemd.bind(address)
        systemd.setblocking(False)
        loop = asyncio.get_running_loop()
        pings = 0
        statuses: list[str] = []  # the running daemon's status lines, apart from the states

        async def told() -> list[str]:
            """The next message that is neither a watchdog ping nor a status line alone."""
            nonlocal pings
            while True:
                message = await asyncio.wait_for(loop.sock_recv(systemd, 1024), timeout=15)
                if message == b"WATCHDOG=1":
                    pings += 1
                elif message.startswith(b"STATUS="):
                    statuses.append(message.decode())
                else:
                    return message.decode().split("\n")

        env = child_env(
            POLYSIM_API_KEY=DEFAULT_API_KEY, NOTIFY_SOCKET=address, WATCHDOG_USEC="100000"
        )
        async with await Daemon.start("run", "--config", str(config), env=env) as daemon:
            assert await told() == ["READY=1", "STATUS=running: 1 rule, 1 channel"]
            before = time.monotonic()
            daemon.signal(signal.SIGHUP)  # what systemd would now let through
            state, stamp = await told()
            assert state == "RELOADING=1"
            assert stamp.startswith("MONOTONIC_USEC=")
            # CLOCK_MONOTONIC, in microseconds, as systemd matches it to its own reload.
            assert before <= int(stamp.removeprefix("MONOTONIC_USEC=")) / 1e6 <= time.monotonic()
            ready, outcome = await told()
            assert ready == "READY=1"
            assert re.fullmatch(
                r"STATUS=running: 1 rule, 1 channel; reloaded at \d{4}-\d\d-\d\d "
                r"\d\d:\d\d:\d\d UTC",
                outcome,
            )
            config.write_text(config.read_text() + "  - nonsense\n", encoding="utf-8")
            daemon.signal(signal.SIGHUP)
            assert (await told())[0] == "RELOADING=1"
            ready, outcome = await told()
            assert ready == "READY=1"
            assert re.fullmatch(
                r"STATUS=running the config before: reload refused at .* UTC \(1 problem\)",
                outcome,
            )
            while pings < 3:  # the watchdog keeps going through all of it
                ping = await asyncio.wait_for(loop.sock_recv(systemd, 1024), timeout=15)
                assert ping == b"WATCHDOG=1"
                pings += 1
            daemon.signal(signal.SIGTERM)
            stopping = await told()
            code, _ = await daemon.wait()
    assert stopping == ["STOPPING=1", "STATUS=stopping (SIGTERM)"]
    assert code == 0
    # The first at once, then every STATUS_EVERY: what `systemctl status` shows meanwhile.
    assert re.fullmatch(
        r"STATUS=running: 1 rule, 1 channel; feed (not )?connected; 0 alerts waiting",
        statuses[0],
    )


async def _reloads_done(service: Service, *, timeout: float = 10) -> None:
    """Wait until no reload is asked for or running; past `timeout`, fail saying so."""
    try:
        async with asyncio.timeout(timeout):
            while service._reloader.tasks:
                await asyncio.wait(set(service._reloader.tasks))
    except TimeoutError:
        left = len(service._reloader.tasks)
        raise AssertionError(f"{left} reload(s) still not done after {timeout}s") from None


async def test_a_burst_of_reload_requests_reads_the_config_once_per_wait(
    tmp_path: Path,
) -> None:
    """Ten SIGHUPs before a reload starts cost one reading of the file; one asked while a
    reading runs gets a reading of its own after it (an edit it follows is not missed)."""
    settings = parse(
        "channels:\n  hook: json://127.0.0.1:9/\n",
        source=tmp_path / "config.yaml",
        env={"POLYSIM_API_KEY": DEFAULT_API_KEY},
        check_url=lambda url: None,
    )
    readings: list[int] = []
    reading = threading.Event()
    go_on = threading.Event()

    def reread() -> Settings:
        readings.append(len(readings) + 1)
        if len(readings) == 2:
            reading.set()
            assert go_on.wait(timeout=10)
        return settings

    service = Service(settings, reload=reread, install_signals=False)
    for _ in range(10):
        service.request_reload()
    await _reloads_done(service)
    assert readings == [1]
    service.request_reload()
    await asyncio.wait_for(asyncio.to_thread(reading.wait, 10), timeout=15)
    for _ in range(5):  # during the second reading: one more, queued behind it
        service.request_reload()
    go_on.set()
    await _reloads_done(service)
    assert readings == [1, 2, 3]


class HeldReload:
    """A reload whose reading of the config file lasts until `go_on` is set; `reading` says it
    has begun. It reads the settings `config` held when it was made."""

    def __init__(self, config: Path) -> None:
        env = {"POLYSIM_API_KEY": DEFAULT_API_KEY}
        self.settings = parse(config.read_text(encoding="utf-8"), source=config, env=env)
        self.reading, self.go_on = threading.Event(), threading.Event()

    def __call__(self) -> Settings:
        self.reading.set()
        self.go_on.wait(timeout=10)
        return self.settings


async def test_a_reload_still_reading_at_a_stop_ends_with_the_service(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """A reload asked just before a stop and still reading its file when the service stops is
    cancelled with the rest: it never swaps rules into a pipeline whose state file is closed,
    nor fails later in a task no one awaits."""
    reread = HeldReload(write_config(tmp_path / "config.yaml", venue, webhook))
    service = Service(reread.settings, reload=reread, install_signals=False)
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: task.done() or bool(service.feed and service.feed.stats.reading))
        service.request_reload()
        assert await asyncio.to_thread(reread.reading.wait, 10)
        service.request_stop()
        await asyncio.wait_for(task, timeout=15)
        assert not service._reloader.tasks  # ended, before the state file closed
        service.request_reload()  # a SIGHUP after the stop: not done
        assert not service._reloader.tasks
    finally:
        reread.go_on.set()


async def test_a_reload_still_reading_when_the_run_fails_ends_with_it(
    venue: SimulatedPolySim,
    webhook: WebhookReceiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same when the run ends on a fatal error rather than a stop: the reload still
    reading is cancelled before the state file closes, and never reports a swap."""
    reread = HeldReload(write_config(tmp_path / "config.yaml", venue, webhook))

    async def fails_once_reloading(self: FeedClient) -> None:
        await asyncio.to_thread(reread.reading.wait, 10)
        raise FatalFeedError("the venue refused for good")

    monkeypatch.setattr(FeedClient, "run", fails_once_reloading)
    service = Service(reread.settings, reload=reread, install_signals=False)
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: service.pipeline is not None)
        service.request_reload()
        with pytest.raises(ExceptionGroup) as failed:
            await asyncio.wait_for(task, timeout=15)
        assert failed.value.subgroup(FatalFeedError) is not None
        assert not service._reloader.tasks  # ended, before the state file closed
    finally:
        reread.go_on.set()


async def test_a_reload_that_fails_unexpectedly_keeps_the_running_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A loader bug (not a ConfigError) during a reload is logged; the daemon keeps going."""

    def broken() -> Settings:
        raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")

    settings = parse(
        "channels:\n  hook: json://127.0.0.1:9/\n",
        source=tmp_path / "config.yaml",
        env={"POLYSIM_API_KEY": DEFAULT_API_KEY},
        check_url=lambda url: None,
    )
    service = Service(settings, reload=broken, install_signals=False)
    with caplog.at_level(logging.ERROR, logger="notifier.config_reload"):
        assert await service.reload() is False
    assert "reload failed unexpectedly, the running config stays in force" in caplog.text
    assert service.settings is settings
