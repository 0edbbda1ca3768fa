"""The daemon: owns every task's lifetime, the signals, reloads and the start and summary lines.

Flow: feed client → pipeline (dedupe, rules, outbox) → deliverer. SIGTERM/SIGINT stop the feed,
record what was already received, give in-flight sends a short grace and leave the rest pending
in the outbox for the next start. SIGHUP validates the config file again and, only if it is valid,
swaps rules and channels without touching the feed connection.
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

from notifier import __version__, sdnotify
from notifier.channels import ChannelSet
from notifier.clock import utc_now
from notifier.deliver import Deliverer
from notifier.drain_watch import DrainWatch
from notifier.errors import ConfigError, FatalFeedError, StateError, key_prefix
from notifier.feed import FeedClient
from notifier.hangup import loop_signals
from notifier.hangup_latch import HangupLatch
from notifier.health import judge_health
from notifier.markets import MarketTitles
from notifier.metrics import Metrics, MetricsServer, Snapshot
from notifier.pipeline import Pipeline
from notifier.reload_diff import described_changes, kept_runtime, waiting_for_restart
from notifier.run_summary import Summary, summarize
from notifier.settings import Settings
from notifier.state_file_watch import Identity, identity, watch_state_file
from notifier.store import PRUNE_STEP, OutboxItem, StateStore
from notifier.walcheckpoint import BACKSTOP_PAGES, WalCheckpointer, checkpoint_forever
from notifier.watch import WatchedFile, watch_file

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0  # seconds in-flight sends get at shutdown; the exit must come within 10 s
PIPELINE_GRACE = 2.0  # seconds to record fills already received when a stop is asked
PRUNE_EVERY = 3600.0  # seconds between prunes of old fill identities and sent alerts


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
        delivery_clock: Callable[[], datetime] | None = None,
        delivery_rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        # Test hooks (fault suite): the feed's back-off sleep and clock, the wall clock of the
        # outbox and deliverer, and the randomness of the deliverer's back-off jitter.
        self._feed_sleep = feed_sleep
        self._feed_clock = feed_clock
        self._delivery_rng = delivery_rng
        self._reload_config = reload
        self._watch = watch  # its signature was taken before the caller read the file
        self._install_signals = install_signals
        self._hangups = hangups
        self._stop = asyncio.Event()
        self._stop_why = ""
        self._broken: StateError | None = None  # a scheduled commit failed: run ends with it
        self._clock = delivery_clock or utc_now
        self._drain = DrainWatch(self._clock)
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Task[bool]] = set()
        self._reload_queued = False  # a reload asked for has not read the file yet
        self.store: StateStore | None = None
        self._state_file: Identity | None = None
        self.feed: FeedClient | None = None
        self.pipeline: Pipeline | None = None
        self.deliverer: Deliverer | None = None
        self.metrics: Metrics | None = None
        self.metrics_server: MetricsServer | None = None

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
            timeout = httpx.Timeout(settings.feed.request_timeout)
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
        )
        feed = self.feed = FeedClient(
            settings.feed,
            http=http,
            sink=pipeline.submit,
            watermark=store,
            sleep=self._feed_sleep or asyncio.sleep,
            monotonic=self._feed_clock or time.monotonic,
            wants_order_refs=lambda: pipeline.rules.uses_client_order_id,
        )
        self.metrics = Metrics(self.snapshot)
        if settings.metrics.listen:
            self.metrics_server = MetricsServer(
                self.metrics, self.health, listen=settings.metrics.listen
            )
            await self.metrics_server.start()
        self._log_start()
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
                sdnotify.notify("READY=1")  # a reload from now on is handled, not fatal
                async with asyncio.TaskGroup() as tasks:
                    feed_task = tasks.create_task(feed.run(), name="feed")
                    pipe_task = tasks.create_task(pipeline.run(), name="pipeline")
                    send_task = tasks.create_task(deliverer.run(), name="deliver")
                    prune_task = tasks.create_task(self._prune_forever(store), name="prune")
                    wal_task = tasks.create_task(checkpoint_forever(checkpointer), name="wal")
                    file_task = tasks.create_task(
                        watch_state_file(store.path, self._state_file), name="state-file"
                    )
                    watch_task = (
                        tasks.create_task(
                            watch_file(
                                self._watch.path, self.request_reload, since=self._watch.since
                            )
                        )
                        if self._watch is not None
                        else None
                    )
                    await self._stop.wait()
                    sdnotify.notify("STOPPING=1")
                    log.info(
                        "stopping (%s): feed closed, finishing what was received", self._stop_why
                    )
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
        finally:
            await titles.aclose()  # look-ups still running must not outlive the HTTP client
            if self.metrics_server is not None:
                await self.metrics_server.stop()
        summary = self.summary()
        log.info("%s", summary.line(), extra={"event": "stopped", **dataclasses.asdict(summary)})

    async def _prune_forever(self, store: StateStore) -> None:
        horizon = self.settings.feed.backfill_horizon
        while True:
            cutoff = utc_now() - horizon
            removed = 0
            while True:  # a few ms a step; the feed and delivery run in between
                step = store.prune(fills_before=cutoff, sent_before=cutoff, limit=PRUNE_STEP)
                removed += step
                if step < PRUNE_STEP:
                    break
                await asyncio.sleep(0)
            if removed:
                log.info("pruned %d old entries from the state file", removed)
            await asyncio.sleep(PRUNE_EVERY)

    def _observe_sent(self, item: OutboxItem) -> None:
        self._drain.sent(item.channel)
        if self.metrics is not None:
            latency = (utc_now() - item.filled_at) / timedelta(seconds=1)
            self.metrics.latency.observe(max(latency, 0.0))

    # -- reload -------------------------------------------------------------------------------

    def _hung_up(self) -> None:
        """SIGHUP: a reload, or, for a run with no config file (the demo), the terminal it
        belonged to closing: ignoring it would leave the process running with no one to stop it.
        """
        if self._reload_config is None:
            self.request_stop("SIGHUP, and no config file to reload")
        else:
            self.request_reload()

    def request_reload(self) -> None:
        """Reload in the background (what SIGHUP does); reloads run one at a time.

        A request while another waits to read the file joins it: that reading sees every
        edit made before it, so a burst of signals costs one reload, not one each.
        """
        if self._reload_queued:
            log.debug("reload already queued: this request joins it")
            return
        self._reload_queued = True
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> bool:
        """Validate the config file again and swap rules and channels if it is valid.

        Reading and building run in a thread: a config with thousands of rules takes a
        second or more to parse, and the feed must not wait for it.
        """
        if self._reload_config is None:
            self._reload_queued = False
            log.warning("reload asked, but this run has no config file to reload")
            return False
        async with self._reload_lock:
            self._reload_queued = False  # from here on, an edit needs a reload of its own
            try:
                new, channels = await asyncio.to_thread(self._build_reloaded)
            except ConfigError as exc:
                log.error("reload refused, the running config stays in force:\n%s", exc)
                return False
            except Exception:  # a loader bug must not end the daemon, nor pass unseen
                log.exception("reload failed unexpectedly, the running config stays in force")
                return False
            try:
                if self.pipeline is not None:  # writes the shaping state: the file may fail
                    self.pipeline.swap(rules=new.rules, targets=channels)
            except StateError as exc:
                log.error("reload stopped halfway: %s", exc)
                self._state_broken(exc)  # the service stops with it, as at any write
                return False
            if self.deliverer is not None:
                if isinstance(self.deliverer.sender, ChannelSet):
                    channels.take_locks(self.deliverer.sender)
                self.deliverer.swap_sender(channels, new.channels, new.delivery)
            old = self.settings
            later = waiting_for_restart(old, new)
            if later:
                log.warning(
                    "%s settings changed: they take effect at the next restart", ", ".join(later)
                )
            self.settings = kept_runtime(self.settings, new)
            log.info(
                "reloaded: %d rules, %d channels (%s)",
                len(new.rules.rules),
                len(channels.names),
                described_changes(old, new),
            )
            return True

    def _build_reloaded(self) -> tuple[Settings, ChannelSet]:
        assert self._reload_config is not None
        new = self._reload_config()
        return new, ChannelSet.build(new.channels, delivery=new.delivery)

    # -- observability ------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Every counter now, for the metrics endpoint."""
        feed, pipe, dlv = self.feed, self.pipeline, self.deliverer
        lookups = feed.order_lookups if feed else (0, 0)  # order-list requests, failed
        return Snapshot(
            fills_received=dict(pipe.stats.received) if pipe else {},
            rejected=dict(feed.stats.rejected) if feed else {},
            duplicates=pipe.stats.duplicates if pipe else 0,
            matched=dict(pipe.stats.matched) if pipe else {},
            sent=dict(dlv.stats.sent_by_channel) if dlv else {},
            failed=dict(dlv.stats.failed_by_channel) if dlv else {},
            dead=dict(dlv.stats.dead_by_channel) if dlv else {},
            outbox_pending=dlv.pending() if dlv else 0,
            oldest_pending=self._drain.oldest(dlv.pending_by_channel()) if dlv else {},
            feed_connected=bool(feed and feed.stats.connected),
            reconnects=dict(feed.stats.reconnects) if feed else {},
            backfilled=feed.stats.backfilled if feed else 0,
            backfill_failures=feed.stats.backfill_failures if feed else 0,
            backfill_gap_open=bool(feed and feed.gap_open),
            order_list_requests=lookups[0],
            order_list_failures=lookups[1],
            shaping=pipe.shaping.stats() if pipe else {},
            shaping_lost=dict(pipe.shaping.lost) if pipe else {},
            retargeted=dlv.stats.retargeted if dlv else 0,
            awaiting_title=len(pipe.waits) if pipe else 0,
            judged_untitled=pipe.waits.gave_up if pipe else 0,
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

    def _log_start(self) -> None:
        s = self.settings
        log.info(
            "notifier %s started: %d rules, %d channels, key %s, state %s, feed %s",
            __version__,
            len(s.rules.rules),
            len(s.channels),
            key_prefix(s.feed.api_key),
            s.state.path,
            s.feed.base_url,
            extra={
                "event": "started",
                "version": __version__,
                "rules": len(s.rules.rules),
                "channels": len(s.channels),
                "key_prefix": key_prefix(s.feed.api_key),
            },
        )


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
