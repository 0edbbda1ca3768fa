"""The daemon: owns every task's lifetime, the signals, reloads and the start and summary lines.

Flow: feed client → pipeline (dedupe, rules, outbox) → deliverer. SIGTERM/SIGINT stop the feed,
record what was already received, give in-flight sends a short grace and leave the rest pending
in the outbox for the next start. SIGHUP validates the config file again and, only if it is valid,
swaps rules and channels without touching the feed connection (config_reload.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import httpx

from notifier import sdnotify
from notifier.channels import ChannelSet
from notifier.clock import utc_now
from notifier.config_reload import ConfigReloader, running
from notifier.deliver import Deliverer
from notifier.drain_watch import DrainWatch
from notifier.errors import FatalFeedError, StateError
from notifier.feed import FeedClient
from notifier.hangup import loop_signals
from notifier.hangup_latch import HangupLatch
from notifier.health import judge_health
from notifier.markets import MarketTitles
from notifier.metrics import Metrics, MetricsServer, Snapshot
from notifier.metrics_snapshot import take_snapshot
from notifier.pipeline import Pipeline
from notifier.proxies import proxy_problem
from notifier.prune import prune_forever
from notifier.run_summary import Summary, log_start, summarize
from notifier.send_results import service_paused
from notifier.settings import Settings
from notifier.state_file_watch import Identity, identity, watch_state_file
from notifier.store import OutboxItem, StateStore
from notifier.walcheckpoint import BACKSTOP_PAGES, WalCheckpointer, checkpoint_forever
from notifier.watch import WatchedFile, watch_file
from notifier.wording import counted

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0  # seconds in-flight sends get at shutdown; the exit must come within 10 s
PIPELINE_GRACE = 2.0  # seconds to record fills already received when a stop is asked


class Service:
    """One running notifier: built from validated settings, stopped by signal or `request_stop`."""

    def __init__(
        self,
        settings: Settings,
        *,
        reload: Callable[[], Settings] | None = None,
        watch: WatchedFile | None = None,
        install_signals: bool = True,
        hangups: HangupLatch | None = None,
        feed_sleep: Callable[[float], Awaitable[None]] | None = None,
        feed_clock: Callable[[], float] | None = None,
        clock: Callable[[], datetime] | None = None,
        delivery_rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        # Test hooks (fault suite): the feed's back-off sleep and clock, the wall clock (of the
        # state file, shaping, title waits, delivery and the prune), and the randomness of the
        # deliverer's back-off jitter.
        self._feed_sleep = feed_sleep
        self._feed_clock = feed_clock
        self._delivery_rng = delivery_rng
        self._watch = watch  # its signature was taken before the caller read the file
        self._install_signals = install_signals
        self._hangups = hangups
        self._stop = asyncio.Event()
        self._stop_why = ""
        self._broken: StateError | None = None  # a scheduled commit failed: run ends with it
        self._clock = clock or utc_now
        self._drain = DrainWatch(self._clock)
        self.store: StateStore | None = None
        self._state_file: Identity | None = None
        self.feed: FeedClient | None = None
        self.pipeline: Pipeline | None = None
        self.deliverer: Deliverer | None = None
        self.metrics: Metrics | None = None
        self.metrics_server: MetricsServer | None = None
        self._reloader = ConfigReloader(
            self, reload, on_broken=self._state_broken, clock=self._clock
        )

    def request_stop(self, why: str = "asked to stop") -> None:
        """Begin a graceful stop (what SIGTERM and SIGINT do); `why` goes in the log line."""
        if not self._stop.is_set():
            self._stop_why = why
        self._stop.set()

    def _state_broken(self, error: StateError) -> None:
        """A scheduled commit failed: stop, and end `run` with its error (exit 70 or 1), not
        on with a batch of alerts unrecorded until some later write trips over it."""
        self._broken = error
        self.request_stop("the state file failed")

    async def run(self) -> Summary:
        """Run until asked to stop; raises KeyRefused or StateError for fatal conditions."""
        settings = self.settings
        # Exclusive: two daemons on one state file would deliver every alert twice. Deferred
        # commits group a burst's records into one transaction (see StateStore).
        # Checkpoints run on a thread (walcheckpoint.py), not inside a commit on the loop; the
        # in-commit one stays as a backstop for a flood the thread cannot keep up with.
        loop = asyncio.get_running_loop()
        store = self.store = StateStore(
            settings.state.path,
            clock=self._clock,
            exclusive=True,
            defer_commit=loop.call_soon,
            on_broken=self._state_broken,
            autocheckpoint=BACKSTOP_PAGES,
        )
        self._state_file = identity(store.path)  # the file opened, to notice its deletion
        checkpointer = WalCheckpointer(store.path, same_as=self._state_file)
        try:
            channels = ChannelSet.build(settings.channels, delivery=settings.delivery)
            store.settle_formats({name: channels.body_format(name) for name in channels.names})
            retried = store.retry_waiting_now(unless=service_paused)
            if retried:
                log.info(
                    "%s waiting out a back-off from the last run: trying again now",
                    counted(retried, "alert"),
                    extra={"event": "retry_at_start", "alerts": retried},
                )
            timeout = httpx.Timeout(settings.feed.request_timeout)
            unusable = proxy_problem()
            if unusable is not None:
                raise FatalFeedError(f"cannot use the proxy the environment names: {unusable}")
            try:
                client = httpx.AsyncClient(timeout=timeout)
            except ImportError as exc:  # a SOCKS proxy in the environment, its package absent
                raise FatalFeedError(f"cannot use the proxy the environment names: {exc}") from None
            async with client as http:
                await self._run_with(store, channels, http, checkpointer)
            if self._broken is not None:
                raise self._broken
            return self.summary()
        finally:
            checkpointer.close()
            store.close()

    async def _run_with(
        self,
        store: StateStore,
        channels: ChannelSet,
        http: httpx.AsyncClient,
        checkpointer: WalCheckpointer,
    ) -> None:
        settings = self.settings
        deliverer = self.deliverer = Deliverer(
            store,
            channels,
            settings.delivery,
            on_sent=self._observe_sent,
            clock=self._clock,
            rng=self._delivery_rng,
            channels=settings.channels,
        )
        titles = MarketTitles(http, base_url=settings.feed.base_url, api_key=settings.feed.api_key)
        pipeline = self.pipeline = Pipeline(
            rules=settings.rules,
            targets=channels,
            store=store,
            titles=titles,
            on_recorded=deliverer.notify,
            clock=self._clock,
        )
        feed = self.feed = FeedClient(
            settings.feed,
            http=http,
            sink=pipeline.submit,
            watermark=store,
            sleep=self._feed_sleep or asyncio.sleep,
            monotonic=self._feed_clock or time.monotonic,
            wants_order_refs=lambda: pipeline.rules.uses_client_order_id,
            on_caught_up=pipeline.caught_up,
        )
        pipeline.hold_releases()  # until the catch-up is in: see Pipeline.hold_releases
        self.metrics = Metrics(self.snapshot)
        if settings.metrics.listen:
            self.metrics_server = MetricsServer(
                self.metrics, self.health, listen=settings.metrics.listen
            )
            await self.metrics_server.start()
        log_start(self.settings)
        try:
            with loop_signals(
                {
                    signal.SIGTERM: lambda: self.request_stop("SIGTERM"),
                    signal.SIGINT: lambda: self.request_stop("SIGINT"),
                    signal.SIGHUP: self._hung_up,
                },
                enabled=self._install_signals,
                hangups=self._hangups,
            ):
                # A reload from now on is handled, not fatal.
                sdnotify.notify(f"READY=1\n{sdnotify.status(running(settings))}")
                await self._supervise(store, checkpointer, feed, pipeline, deliverer)
        finally:
            # A failed run ends here too: no reload may swap rules in once the state file closes.
            await self._reloader.cancel()
            await titles.aclose()  # look-ups still running must not outlive the HTTP client
            if self.metrics_server is not None:
                await self.metrics_server.stop()
        summary = self.summary()
        log.info("%s", summary.line(), extra={"event": "stopped", **dataclasses.asdict(summary)})

    async def _supervise(
        self,
        store: StateStore,
        checkpointer: WalCheckpointer,
        feed: FeedClient,
        pipeline: Pipeline,
        deliverer: Deliverer,
    ) -> None:
        """Every task of the run until a stop; then each ended in the order that loses
        nothing: the feed, the fills it handed on, the sends in flight, the housekeeping."""
        async with asyncio.TaskGroup() as tasks:
            feed_task = tasks.create_task(feed.run(), name="feed")
            pipe_task = tasks.create_task(pipeline.run(), name="pipeline")
            send_task = tasks.create_task(deliverer.run(), name="deliver")
            prune_task = tasks.create_task(
                prune_forever(
                    store, horizon=self.settings.feed.backfill_horizon, clock=self._clock
                ),
                name="prune",
            )
            wal_task = tasks.create_task(checkpoint_forever(checkpointer), name="wal")
            file_task = tasks.create_task(
                watch_state_file(store.path, self._state_file), name="state-file"
            )
            # Told while the run lasts: the status line (under systemd), the watchdog's pings
            # (when WatchdogSec= asks for them).
            status_task = sdnotify.start_status(tasks, self.status_line)
            watchdog_task = sdnotify.start_watchdog(tasks)
            watch_task = (
                tasks.create_task(
                    watch_file(self._watch.path, self.request_reload, since=self._watch.since)
                )
                if self._watch is not None
                else None
            )
            await self._stop.wait()
            if status_task is not None:  # "running" must not follow the stop's own line
                await _cancel(status_task)
            sdnotify.notify(f"STOPPING=1\n{sdnotify.status(f'stopping ({self._stop_why})')}")
            log.info("stopping (%s): feed closed, finishing what was received", self._stop_why)
            await self._reloader.cancel()
            await _cancel(feed_task)
            await _finish(pipeline, pipe_task)
            await deliverer.drain(SHUTDOWN_GRACE)
            await _cancel(send_task)
            if deliverer.failure is not None:  # a lane's store error while draining
                raise deliverer.failure
            await _cancel(prune_task)
            await _cancel(wal_task)
            await _cancel(file_task)
            if watch_task is not None:
                await _cancel(watch_task)
            if watchdog_task is not None:  # the last: it vouched for the loop during the stop
                await _cancel(watchdog_task)

    def _observe_sent(self, item: OutboxItem) -> None:
        self._drain.sent(item.channel, item.target)
        if self.metrics is not None:
            latency = (self._clock() - item.filled_at) / timedelta(seconds=1)
            self.metrics.latency.observe(max(latency, 0.0))

    # -- reload -------------------------------------------------------------------------------

    def _hung_up(self) -> None:
        """SIGHUP: a reload, or, for a run with no config file (the demo), the terminal it
        belonged to closing: ignoring it would leave the process running with no one to stop it.
        """
        if not self._reloader.has_config_file:
            self.request_stop("SIGHUP, and no config file to reload")
        else:
            self._reloader.request()

    def request_reload(self) -> None:
        """Reload in the background (what SIGHUP does); see ConfigReloader.request."""
        self._reloader.request()

    async def reload(self) -> bool:
        """Validate the config file again and swap rules and channels if it is valid."""
        return await self._reloader.reload()

    # -- observability ------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Every counter now, for the metrics endpoint."""
        return take_snapshot(
            self.feed,
            self.pipeline,
            self.deliverer,
            self._drain,
            self._reloader,
            self.settings,
            now=self._clock(),
        )

    def status_line(self) -> str:
        """What `systemctl status` shows while the daemon runs (sdnotify.status_report); a
        state file that fails to answer stops the run as any failed write does."""
        try:
            waiting = self.deliverer.pending() if self.deliverer is not None else 0
        except StateError as exc:
            self._state_broken(exc)
            return f"stopping: {exc}"
        return sdnotify.status_report(
            running(self.settings),
            connected=bool(self.feed and self.feed.stats.connected),
            waiting=waiting,
            reload=self._reloader.refusal,
        )

    def health(self) -> tuple[bool, str]:
        """The /healthz verdict (health.py); unhealthy from the moment a stop is asked for, so
        a probe or balancer stops counting on a daemon that is only finishing what it has."""
        if self._stop.is_set():
            return False, f"stopping ({self._stop_why})"
        return judge_health(self.feed, self.deliverer, self._drain, self.settings.channels)

    def summary(self) -> Summary:
        """Totals so far."""
        return summarize(self.pipeline, self.deliverer)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel a task and wait until it is done (its error, if any, is the TaskGroup's to raise)."""
    task.cancel()
    await asyncio.wait([task])


async def _finish(pipeline: Pipeline, task: asyncio.Task[None]) -> None:
    """Record fills already received, within a bound; anything left is recovered by backfill."""
    pipeline.close()
    await asyncio.wait([task], timeout=PIPELINE_GRACE)
    if not task.done():
        log.warning("stopped before recording %d received fills", pipeline.backlog())
        await _cancel(task)
