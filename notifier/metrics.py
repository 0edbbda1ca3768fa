"""Prometheus metrics and a health check over a small asyncio HTTP endpoint.

Counters live where the work happens (feed, pipeline, deliverer stats); a custom collector reads
them at scrape time, so the hot path pays nothing for metrics. Only the latency histogram is
observed as alerts are sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from notifier.errors import ListenError, StateError, os_reason
from notifier.settings import split_listen

log = logging.getLogger(__name__)

HANDLER_TIMEOUT = 5.0  # seconds for one metrics or health request, start to finish
MAX_CLIENTS = 32  # connections served at once; more are closed at once (scrapers need one or two)
_TEXT = "text/plain; charset=utf-8"
# The text format generate_latest writes (the library's own constant names a newer version
# in recent releases): pinned, so a scraper reads the format it gets.
_EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every counter and gauge at one instant, read from the running components."""

    fills_received: Mapping[str, int] = field(default_factory=dict)  # by source
    rejected: Mapping[str, int] = field(default_factory=dict)  # by reason
    duplicates: int = 0
    matched: Mapping[str, int] = field(default_factory=dict)  # by rule
    sent: Mapping[str, int] = field(default_factory=dict)  # by channel
    failed: Mapping[str, int] = field(default_factory=dict)  # by channel
    dead: Mapping[str, int] = field(default_factory=dict)  # by channel
    outbox_pending: int = 0
    oldest_pending: Mapping[str, float] = field(default_factory=dict)  # seconds, by channel
    feed_connected: bool = False
    last_frame_unix: float | None = None  # when the last frame was read; None before one
    reconnects: Mapping[str, int] = field(default_factory=dict)  # by cause
    backfilled: int = 0
    backfill_failures: int = 0
    backfill_gap_open: bool = False
    order_list_requests: int = 0
    order_list_failures: int = 0
    shaping: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # rule -> stage -> n
    shaping_lost: Mapping[str, int] = field(default_factory=dict)  # by rule
    retargeted: int = 0
    awaiting_title: int = 0  # fills held until a market_title rule can judge them
    judged_untitled: int = 0  # fills judged without the title they waited for
    reloads: Mapping[str, int] = field(default_factory=dict)  # by result: ok, refused
    last_reload_ok: bool = True  # the start's config counts as a reload that took


def _counter(name: str, doc: str, label: str, values: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class _SnapshotCollector(Collector):
    """Turns a `Snapshot` into metric families at scrape time."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        s = self._read()
        yield _counter(
            "notifier_fills_received", "Fills received, by source.", "source", s.fills_received
        )
        yield _counter(
            "notifier_frames_rejected", "Frames or items dropped, by reason.", "reason", s.rejected
        )
        yield CounterMetricFamily(
            "notifier_fills_duplicate", "Fills seen before and skipped.", value=s.duplicates
        )
        yield _counter("notifier_fills_matched", "Fills matched, by rule.", "rule", s.matched)
        yield _counter("notifier_alerts_sent", "Alerts delivered, by channel.", "channel", s.sent)
        yield _counter(
            "notifier_alerts_failed", "Failed delivery attempts, by channel.", "channel", s.failed
        )
        yield _counter(
            "notifier_alerts_dead", "Alerts dead-lettered, by channel.", "channel", s.dead
        )
        yield GaugeMetricFamily(
            "notifier_outbox_pending", "Alerts waiting in the outbox.", value=s.outbox_pending
        )
        oldest = GaugeMetricFamily(
            "notifier_outbox_oldest_pending_seconds",
            "Age of the oldest alert waiting in the outbox, by channel (absent: none waiting).",
            labels=["channel"],
        )
        for channel, age in sorted(s.oldest_pending.items()):
            oldest.add_metric([channel], age)
        yield oldest
        yield GaugeMetricFamily(
            "notifier_feed_connected",
            "1 while the execution feed is connected.",
            value=int(s.feed_connected),
        )
        last_frame = GaugeMetricFamily(
            "notifier_feed_last_frame_timestamp_seconds",
            "Unix time of the last frame read from the feed (absent before the first).",
            labels=[],
        )
        if s.last_frame_unix is not None:
            last_frame.add_metric([], s.last_frame_unix)
        yield last_frame
        yield _counter(
            "notifier_feed_reconnects", "Feed reconnects, by cause.", "cause", s.reconnects
        )
        yield CounterMetricFamily(
            "notifier_fills_backfilled", "Fills recovered from history.", value=s.backfilled
        )
        yield CounterMetricFamily(
            "notifier_backfill_failures",
            "History reads that failed; the gap they were to recover is kept and read again.",
            value=s.backfill_failures,
        )
        yield GaugeMetricFamily(
            "notifier_backfill_gap_open",
            "1 while fills missed during a feed gap may still be owed by history.",
            value=int(s.backfill_gap_open),
        )
        yield CounterMetricFamily(
            "notifier_order_list_requests",
            "Order-list requests for recovered fills' client_order_id.",
            value=s.order_list_requests,
        )
        yield CounterMetricFamily(
            "notifier_order_list_failures",
            "Order-list requests that failed; those fills went on without client_order_id.",
            value=s.order_list_failures,
        )
        dropped = {rule: stages.get("dropped", 0) for rule, stages in s.shaping.items()}
        yield _counter(
            "notifier_fills_dropped",
            "Fills dropped outside active hours, by rule.",
            "rule",
            dropped,
        )
        yield _counter(
            "notifier_fills_lost",
            "Held fills whose rule and channels were both removed by a reload, by rule.",
            "rule",
            s.shaping_lost,
        )
        yield CounterMetricFamily(
            "notifier_alerts_retargeted",
            "Pending alerts moved to a channel's new URLs after a reload.",
            value=s.retargeted,
        )
        yield GaugeMetricFamily(
            "notifier_fills_awaiting_title",
            "Fills held until their market title is known (a market_title rule must judge them).",
            value=s.awaiting_title,
        )
        yield CounterMetricFamily(
            "notifier_fills_judged_untitled",
            "Fills judged without their market title: held too long, or too many held.",
            value=s.judged_untitled,
        )
        yield _counter(
            "notifier_config_reloads",
            "Config reloads (SIGHUP, --watch), by result: ok, refused.",
            "result",
            s.reloads,
        )
        yield GaugeMetricFamily(
            "notifier_config_last_reload_successful",
            "0 while the last reload was refused (the config before it stays in force).",
            value=int(s.last_reload_ok),
        )
        waiting = GaugeMetricFamily(
            "notifier_fills_waiting",
            "Fills held by alert shaping, by rule and stage (grouped, throttled, held).",
            labels=["rule", "stage"],
        )
        for rule, stages in sorted(s.shaping.items()):
            for stage, count in sorted(stages.items()):
                if stage != "dropped":
                    waiting.add_metric([rule, stage], count)
        yield waiting


class Metrics:
    """The registry, the latency histogram and the collector over the service's counters."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_SnapshotCollector(read))
        self.latency = Histogram(
            "notifier_fill_to_delivery_seconds",
            "Time from a fill on the venue to its alert accepted by the channel.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


HealthCheck = Callable[[], tuple[bool, str]]


class MetricsServer:
    """Serves `GET /metrics` and `GET /healthz` (HEAD too) on one address; nothing else."""

    def __init__(self, metrics: Metrics, health: HealthCheck, *, listen: str) -> None:
        address = split_listen(listen)
        if address is None:
            raise ListenError(f"metrics.listen {listen!r}: not host:port")
        self._listen = listen
        self._host, self._port = address
        self._metrics = metrics
        self._health = health
        self._server: asyncio.Server | None = None
        # Each connection may sit out HANDLER_TIMEOUT: without a cap, idle clients could hold
        # every file descriptor, and the feed, the state file and reloads would fail with them.
        self._clients = 0

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind and start answering."""
        try:
            self._server = await asyncio.start_server(self._handle, self._host, self._port)
        except OSError as exc:  # in use, or not an address of this machine
            why = os_reason(exc)
            raise ListenError(f"metrics.listen {self._listen}: cannot listen: {why}") from None
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)

    async def stop(self) -> None:
        """Stop answering and close the socket."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= MAX_CLIENTS:
            writer.transport.abort()
            return
        self._clients += 1
        try:
            await self._exchange(reader, writer)
        finally:
            self._clients -= 1

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The whole exchange is bounded: a scraper that stops reading must not pin this task
        # (nor, through it, the server's shutdown).
        try:
            async with asyncio.timeout(HANDLER_TIMEOUT):
                request = await reader.readline()
                while (await reader.readline()).strip():
                    pass  # headers: nothing here needs them
                line = request.decode("latin-1")
                try:
                    status, ctype, body = self._answer(line)
                except StateError as exc:  # the state file failed: the daemon is stopping
                    status, ctype, body = "503 Service Unavailable", _TEXT, f"{exc}\n".encode()
                except Exception:  # a bug in a figure: answer, never leave the scraper hanging
                    log.exception("cannot answer %s", line.split(" ", 2)[:2])
                    status, ctype, body = "500 Internal Server Error", _TEXT, b"internal error\n"
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                if line.startswith("HEAD "):  # a probe that asks for the status alone
                    body = b""
                writer.write(head.encode("latin-1") + body)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
        except (TimeoutError, ConnectionError, ValueError):  # ValueError: a line over 64 KiB
            writer.transport.abort()

    def _answer(self, request_line: str) -> tuple[str, str, bytes]:
        parts = request_line.split()
        if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", _TEXT, b"GET or HEAD only\n"
        path = parts[1].split("?", 1)[0]
        if path == "/metrics":
            return "200 OK", _EXPOSITION, self._metrics.exposition()
        if path == "/healthz":
            ok, reason = self._health()
            status = "200 OK" if ok else "503 Service Unavailable"
            return status, _TEXT, (reason + "\n").encode()
        return "404 Not Found", _TEXT, b"try /metrics or /healthz\n"
