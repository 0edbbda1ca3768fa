"""Metrics exposition and the health endpoint, over a real loopback socket."""

from __future__ import annotations

import asyncio
import errno
import re
import socket
from pathlib import Path

import pytest
from daemon import http_get

from notifier import metrics as metrics_module
from notifier.config import parse
from notifier.errors import StateError, os_reason
from notifier.metrics import Metrics, MetricsServer, Snapshot
from notifier.service import Service
from notifier.settings import Settings, split_listen
from notifier.simulator import DEFAULT_API_KEY


def _snapshot() -> Snapshot:
    return Snapshot(
        fills_received={"live": 7, "backfill": 2},
        rejected={"not_json": 1},
        duplicates=3,
        matched={"large-buys": 4},
        sent={"desk": 4},
        failed={"desk": 2},
        dead={"phone": 1},
        outbox_pending=5,
        oldest_pending={"phone": 720.5},
        feed_connected=True,
        last_frame_unix=1765000000.25,
        reconnects={"close_4001": 1},
        backfilled=2,
        backfill_failures=3,
        backfill_gap_open=True,
        order_list_requests=5,
        order_list_failures=1,
        shaping={"btc-digest": {"dropped": 1, "grouped": 3, "throttled": 0, "held": 0}},
        shaping_lost={"old-rule": 2},
        retargeted=3,
        awaiting_title=4,
        judged_untitled=1,
        reloads={"ok": 2, "refused": 1},
        last_reload_ok=False,
    )


async def test_metrics_endpoint_exposes_every_counter() -> None:
    """/metrics renders each snapshot value with its labels, plus the latency histogram."""
    metrics = Metrics(_snapshot)
    metrics.latency.observe(0.2)
    server = MetricsServer(metrics, lambda: (True, "ok"), listen="127.0.0.1:0")
    await server.start()
    try:
        status, body = await http_get(server.port, "/metrics")
    finally:
        await server.stop()
    assert status == 200
    for line in (
        'notifier_fills_received_total{source="live"} 7.0',
        'notifier_fills_received_total{source="backfill"} 2.0',
        'notifier_frames_rejected_total{reason="not_json"} 1.0',
        "notifier_fills_duplicate_total 3.0",
        'notifier_fills_matched_total{rule="large-buys"} 4.0',
        'notifier_alerts_sent_total{channel="desk"} 4.0',
        'notifier_alerts_failed_total{channel="desk"} 2.0',
        'notifier_alerts_dead_total{channel="phone"} 1.0',
        "notifier_outbox_pending 5.0",
        'notifier_outbox_oldest_pending_seconds{channel="phone"} 720.5',
        "notifier_feed_connected 1.0",
        "notifier_feed_last_frame_timestamp_seconds 1.76500000025e+09",
        'notifier_feed_reconnects_total{cause="close_4001"} 1.0',
        "notifier_fills_backfilled_total 2.0",
        "notifier_backfill_failures_total 3.0",
        "notifier_backfill_gap_open 1.0",
        "notifier_order_list_requests_total 5.0",
        "notifier_order_list_failures_total 1.0",
        'notifier_fills_dropped_total{rule="btc-digest"} 1.0',
        'notifier_fills_waiting{rule="btc-digest",stage="grouped"} 3.0',
        'notifier_fills_lost_total{rule="old-rule"} 2.0',
        "notifier_alerts_retargeted_total 3.0",
        "notifier_fills_awaiting_title 4.0",
        "notifier_fills_judged_untitled_total 1.0",
        'notifier_config_reloads_total{result="ok"} 2.0',
        'notifier_config_reloads_total{result="refused"} 1.0',
        "notifier_config_last_reload_successful 0.0",
        "notifier_fill_to_delivery_seconds_count 1.0",
    ):
        assert line in body.splitlines(), line
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for name in set(re.findall(r"notifier_[a-z_]+", readme)):  # what the README tells users
        assert name in body, name
    for name in re.findall(r"^# TYPE (notifier_[a-z_]+) ", body, re.MULTILINE):
        if not name.endswith("_created"):  # the client library's creation times
            assert f"`{name}`" in readme, f"{name} is not in the README's table"


def _config(tmp_path: Path, text: str) -> Settings:
    return parse(
        text,
        source=tmp_path / "config.yaml",
        env={"POLYSIM_API_KEY": DEFAULT_API_KEY},
        check_url=lambda url: None,
    )


async def test_each_channel_and_rule_has_its_series_at_zero_from_the_first_scrape(
    tmp_path: Path,
) -> None:
    """A series born with its first count hides it from increase(): a first dead letter, say."""
    channels = "channels:\n  desk: json://127.0.0.1:9/d\n  phone: json://127.0.0.1:9/p\n"
    rules = "rules:\n  - {name: big, notify: [desk]}\n"
    rules += "  - {name: off, notify: [phone], enabled: false}\n"
    later = channels + "  mail: json://127.0.0.1:9/m\n" + rules
    service = Service(
        _config(tmp_path, channels + rules),
        reload=lambda: _config(tmp_path, later),
        install_signals=False,
    )
    first = service.snapshot()
    zero = {"desk": 0, "phone": 0}
    assert (first.sent, first.failed, first.dead) == (zero, zero, zero)
    assert (first.matched, first.fills_received) == ({"big": 0}, {"live": 0, "backfill": 0})
    assert await service.reload() is True
    assert service.snapshot().dead == {**zero, "mail": 0}


async def test_a_rule_that_drops_has_its_dropped_series_at_zero_from_the_first_scrape(
    tmp_path: Path,
) -> None:
    """A rule with `outside: drop` shows notifier_fills_dropped_total at 0 before its first drop."""
    channels = "channels:\n  desk: json://127.0.0.1:9/d\n"
    rules = "rules:\n  - name: calm\n    notify: [desk]\n"
    rules += "    active: {hours: '08:00-09:00', outside: drop}\n"
    service = Service(_config(tmp_path, channels + rules), install_signals=False)
    metrics = Metrics(service.snapshot)
    body = metrics.exposition().decode()
    assert 'notifier_fills_dropped_total{rule="calm"} 0.0' in body.splitlines()
    assert "notifier_fills_waiting{" not in body  # a gauge of what is held: nothing is
    samples = [line.split()[0] for line in body.splitlines() if not line.startswith("#")]
    assert "notifier_feed_last_frame_timestamp_seconds" not in samples  # no frame read yet


async def test_healthz_reports_the_health_check() -> None:
    """/healthz is 200 with the reason when healthy and 503 when not; other paths are 404/405."""
    verdict = [(True, "ok")]
    server = MetricsServer(Metrics(Snapshot), lambda: verdict[0], listen="127.0.0.1:0")
    await server.start()
    try:
        assert await http_get(server.port, "/healthz") == (200, "ok\n")
        verdict[0] = (False, "feed not connected")
        assert await http_get(server.port, "/healthz") == (503, "feed not connected\n")
        assert await http_get(server.port, "/healthz", method="HEAD") == (503, "")  # a probe
        assert (await http_get(server.port, "/nope"))[0] == 404
        assert (await http_get(server.port, "/metrics", method="POST"))[0] == 405
    finally:
        await server.stop()


async def test_a_failing_state_read_is_answered_not_left_hanging() -> None:
    """A figure that cannot be read (the state file failing as the daemon stops) gets a 503
    saying why; a bug in one gets a 500: the scraper always has its answer."""

    def broken() -> tuple[bool, str]:
        raise StateError("state file s.db: cannot read outbox: disk I/O error")

    reads = [0]

    def buggy() -> Snapshot:
        reads[0] += 1
        if reads[0] > 1:  # the registry reads once, when the collector is registered
            raise ZeroDivisionError
        return Snapshot()

    server = MetricsServer(Metrics(buggy), broken, listen="127.0.0.1:0")
    await server.start()
    try:
        status, body = await asyncio.wait_for(http_get(server.port, "/healthz"), 5)
        assert (status, body) == (503, "state file s.db: cannot read outbox: disk I/O error\n")
        status, body = await asyncio.wait_for(http_get(server.port, "/metrics"), 5)
        assert (status, body) == (500, "internal error\n")
    finally:
        await server.stop()


async def test_a_client_that_never_finishes_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scraper that connects and stalls is disconnected after the handler's bound."""
    monkeypatch.setattr(metrics_module, "HANDLER_TIMEOUT", 0.05)
    server = MetricsServer(Metrics(Snapshot), lambda: (True, "ok"), listen="127.0.0.1:0")
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # and never the end of the headers
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        writer.close()
        await writer.wait_closed()
    finally:
        await asyncio.wait_for(server.stop(), timeout=5)


async def test_an_oversized_request_line_is_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A request line over the stream limit closes the connection without a logged traceback."""
    server = MetricsServer(Metrics(Snapshot), lambda: (True, "ok"), listen="127.0.0.1:0")
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        writer.close()
        await writer.wait_closed()
    finally:
        await server.stop()
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        (" localhost:0 ", ("localhost", 0)),
        ("9464", None),
        (":9464", None),
        ("[]:9464", None),
        ("127.0.0.1:65536", None),
        ("127.0.0.1:\uff19\uff14", None),  # fullwidth digits: int() takes them
        ("http://127.0.0.1:9464", None),  # passed check-config, then run exited 70 each restart
        ("local host:9464", None),
    ],
)
def test_listen_addresses(listen: str, address: tuple[str, int] | None) -> None:
    """host:port, an IPv6 host in brackets as URLs write it; the one parser config and server
    share, so check-config accepts exactly what run can bind."""
    assert split_listen(listen) == address


async def test_an_ipv6_listen_address_in_brackets_binds() -> None:
    """`[::1]:port` passed check-config before, then failed in getaddrinfo at run."""
    server = MetricsServer(Metrics(Snapshot), lambda: (True, "ok"), listen="[::1]:0")
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("::1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), timeout=5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert answer.endswith(b"ok\n")
    finally:
        await server.stop()


async def test_answers_say_their_charset() -> None:
    """Both answers are UTF-8 (a channel's name in a 503, a rule's in a label): said, not
    left for a client to guess as Latin-1."""
    server = MetricsServer(
        Metrics(Snapshot), lambda: (False, "channel b\u00fcro stuck"), listen="127.0.0.1:0"
    )
    await server.start()
    heads = {}
    try:
        for path in ("/metrics", "/healthz", "/nowhere"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(f"GET {path} HTTP/1.1\r\n\r\n".encode())
            answer = await asyncio.wait_for(reader.read(), timeout=5)
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            heads[path] = [h for h in head.decode().split("\r\n") if h.startswith("Content-Type")]
            if path == "/healthz":
                assert body.decode("utf-8") == "channel b\u00fcro stuck\n"
    finally:
        await server.stop()
    assert heads == {
        "/metrics": ["Content-Type: text/plain; version=0.0.4; charset=utf-8"],
        "/healthz": ["Content-Type: text/plain; charset=utf-8"],
        "/nowhere": ["Content-Type: text/plain; charset=utf-8"],
    }


async def test_connections_past_the_cap_are_closed_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Idle clients can hold at most MAX_CLIENTS connections (not every file descriptor of the
    daemon); the endpoint answers again as soon as they go."""
    monkeypatch.setattr(metrics_module, "MAX_CLIENTS", 3)
    server = MetricsServer(Metrics(Snapshot), lambda: (True, "ok"), listen="127.0.0.1:0")
    await server.start()
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
        try:
            answer = await asyncio.wait_for(reader.read(), timeout=5)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # turned away, not queued behind the idle ones
        writer.close()
        for _, idle_writer in idle:
            idle_writer.close()
            await idle_writer.wait_closed()
        async with asyncio.timeout(5):  # the server sees those closes a few loop turns later
            while True:
                try:
                    answer_now = await http_get(server.port, "/healthz")
                except (ConnectionError, IndexError):  # turned away: an empty answer
                    await asyncio.sleep(0.01)
                    continue
                break
        assert answer_now == (200, "ok\n")
    finally:
        await asyncio.wait_for(server.stop(), timeout=5)


def test_a_listen_failure_is_in_the_os_s_words_or_the_resolver_s() -> None:
    """asyncio rewords a bind error around the address; the OS's words are plainer. A name
    look-up's number is the resolver's, not an errno: its own words stay."""
    bind = OSError(errno.EADDRINUSE, "error while attempting to bind on address x: in use")
    assert os_reason(bind) == "Address already in use"
    lookup = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert os_reason(lookup) == "Name or service not known"
    assert os_reason(TimeoutError("a named pipe nothing was written to")) == (
        "a named pipe nothing was written to"
    )
