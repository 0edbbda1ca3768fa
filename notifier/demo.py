"""`notifier demo`: the real daemon against a simulated PolySimulator on loopback.

Nothing is faked inside notifier: the feed client mints tokens and holds a real WebSocket, fills
go through the pipeline and the outbox, and alerts leave through apprise to a `console://`
channel that prints them (with `--config`, the user's channels print too, unless `--send`).
Only the venue is simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from notifier import closedpipe, config
from notifier.channels import check_url
from notifier.hangup_latch import HangupLatch
from notifier.service import Service
from notifier.settings import MetricsSettings, Settings, StateSettings
from notifier.simulator import DEFAULT_API_KEY, SimulatedPolySim
from notifier.simulator_data import live_fills

log = logging.getLogger(__name__)

FILL_INTERVAL = 0.3  # seconds between simulated fills: fast enough to watch, slow enough to read
SETTLE_TIMEOUT = 30.0  # seconds to wait for the last alerts once all fills are sent
# Seconds a group or throttle period may still run once the fills are all sent, and be waited
# for (a digest rule's `wait: 30s`): the demo is there to show what such a rule sends.
SHAPING_WAIT = 60.0
TERMINAL = "console://"  # where the demo's alerts go: printed here

DEMO_CONFIG = """\
# The demo's own rules (every fill alerts one way or another), printing to the terminal.
feed:
  api_key: ${POLYSIM_API_KEY}
channels:
  terminal: console://
rules:
  - name: large-orders
    when:
      quantity: {min: 100}
    notify: [terminal]
    title: "Large {side} on {market_title}"
    body: >-
      {side} {quantity} {outcome} @ {price} (notional {notional:.2f}),
      order #{order_id} at {filled_at:%H:%M:%S} {status}
    stop: true
  - name: cheap-no-sells
    when: {side: SELL, outcome: "No", price: {max: 0.3}}
    notify: [terminal]
    title: "Cheap No sold on {market_title}"
    stop: true
  - name: every-fill
    notify: [terminal]
    body: >-
      {side} {quantity} {outcome} @ {price}, order #{order_id} at {filled_at:%H:%M:%S} {status}
"""


def demo_settings(
    *, base_url: str, state_dir: Path, config_path: str | None, send: bool = False
) -> Settings:
    """The demo's settings: its own rules (or the user's), pointed at the simulator.

    A user's config keeps its rules, but its channels print here unless `send`: made-up fills
    must not reach a real Slack or phone by surprise. Metrics stay off either way, so the demo
    never takes the running daemon's port.
    """
    env = {**os.environ, "POLYSIM_API_KEY": DEFAULT_API_KEY}
    if config_path is None:
        settings = config.parse(DEMO_CONFIG, source=Path("<demo>"), env=env, check_url=check_url)
    else:
        # The demo brings its own key: the config's (`${MY_KEY}`, unset here) is not needed.
        # Nor, printing here, the channels' secrets: a URL whose variable is unset stands in.
        settings = config.load(
            Path(config_path),
            env=env,
            check_url=check_url,
            require_api_key=False,
            unset_urls=None if send else TERMINAL,
        )
    feed = dataclasses.replace(settings.feed, base_url=base_url, api_key=DEFAULT_API_KEY)
    state = StateSettings(path=state_dir / "demo.db")
    channels = settings.channels
    if not send:
        channels = {
            # Named when there are several: an alert to two of them prints twice.
            name: dataclasses.replace(
                channel, urls=(f"{TERMINAL}{name}" if len(channels) > 1 else TERMINAL,)
            )
            for name, channel in channels.items()
        }
    return dataclasses.replace(
        settings, feed=feed, state=state, channels=channels, metrics=MetricsSettings()
    )


async def run_demo(
    *,
    fills: int | None,
    config_path: str | None,
    send: bool = False,
    hangups: HangupLatch | None = None,
) -> int:
    """Run the demo until `fills` fills are alerted (or until interrupted, or SIGHUP: its
    terminal closed; `hangups` holds one that came while it started)."""
    rng = random.Random()
    async with SimulatedPolySim() as venue:
        with tempfile.TemporaryDirectory(prefix="notifier-demo-") as tmp:
            settings = demo_settings(
                base_url=venue.base_url, state_dir=Path(tmp), config_path=config_path, send=send
            )
            service = Service(settings, hangups=hangups)
            sent_lines = logging.getLogger("notifier.delivery_outcomes")
            level = sent_lines.level
            if not send:  # each alert prints here: a line saying it was sent is noise
                sent_lines.setLevel(logging.WARNING)
            stop_unread = _stopper(service, "stdout closed: no one reads the alerts")
            try:
                with closedpipe.when_dropped(stop_unread):
                    daemon = asyncio.create_task(service.run())
                    trader = asyncio.create_task(_trade(venue, service, fills, rng))
                    await asyncio.wait({daemon, trader}, return_when=asyncio.FIRST_COMPLETED)
                    # The demo is done, or the trader failed: stop either way.
                    service.request_stop("the demo is done")
                    trader.cancel()
                    await asyncio.wait({trader})
                    await daemon  # a fatal error in the daemon surfaces here
            finally:
                sent_lines.setLevel(level)
            _say_what_shaping_kept(service)
            if not trader.cancelled() and trader.exception() is not None:
                log.error("demo stopped early: %s", _why(trader.exception()))
                return 1
    return 0


def _stopper(service: Service, why: str) -> Callable[[], None]:
    """A graceful stop of `service`, callable from any thread (a send thread printing an
    alert finds stdout closed), as SIGTERM's: `notifier demo | head` ends once head has."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the demo has ended anyway
            loop.call_soon_threadsafe(service.request_stop, why)

    return stop


def _say_what_shaping_kept(service: Service) -> None:
    """The daemon's last line says held fills are kept for later; the demo's state is not."""
    if service.pipeline is None:
        return
    for rule, stages in service.pipeline.shaping.stats().items():
        waiting = [f"{n} fill(s) {_WAITING[s]}" for s, n in stages.items() if s in _WAITING and n]
        if waiting:
            log.warning(
                "rule %s still holds %s when the demo ends: discarded with the demo's state"
                " (a running daemon sends them once the group, throttle period or active"
                " hours allow)",
                rule,
                ", ".join(waiting),
            )


_WAITING = {
    "grouped": "in a group",
    "throttled": "in a throttle period",
    "held": "outside active hours",
}


def _why(error: BaseException | None) -> str:
    if isinstance(error, TimeoutError):
        return f"alerts were not all delivered within {SETTLE_TIMEOUT:.0f}s (see the log above)"
    return repr(error)


async def _trade(
    venue: SimulatedPolySim, service: Service, limit: int | None, rng: random.Random
) -> None:
    """Emit simulated fills once the feed is connected; return when all are alerted."""
    await venue.wait_connected(1, timeout=SETTLE_TIMEOUT)
    sent = 0
    for fill in live_fills(limit, rng):
        await venue.fill(**fill)  # type: ignore[arg-type]  # shape is one of the three
        sent += 1
        await asyncio.sleep(FILL_INTERVAL)
    async with asyncio.timeout(SETTLE_TIMEOUT):
        # Polling: "processed and delivered" spans pipeline and outbox; no one event says it.
        while not _settled(service, sent):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await _shaping_due_soon(service)


async def _shaping_due_soon(service: Service) -> None:
    """Wait for groups and throttle periods that end within SHAPING_WAIT, and their alerts;
    what waits longer (quiet hours, a `wait: 1h`) is said to be discarded at the end."""
    pipeline, deliverer = service.pipeline, service.deliverer
    if pipeline is None or deliverer is None:
        return
    said = False
    async with asyncio.timeout(SHAPING_WAIT + SETTLE_TIMEOUT):
        while True:
            due = pipeline.shaping.next_deadline()
            if due is None or (due - datetime.now(UTC)).total_seconds() > SHAPING_WAIT:
                break
            if not said:
                log.info(
                    "waiting for the groups and throttle periods that end by %s",
                    f"{due:%H:%M:%S} UTC",
                )
                said = True
            await asyncio.sleep(0.1)
        while deliverer.pending() or pipeline.backlog():  # noqa: ASYNC110  # as above
            await asyncio.sleep(0.05)


def _settled(service: Service, fills: int) -> bool:
    pipeline, deliverer = service.pipeline, service.deliverer
    if pipeline is None or deliverer is None:
        return False
    # New fills only: the connect's history read brings the first fills again, and counting
    # those repeats ended the demo before its last fill was read.
    return pipeline.stats.processed >= fills and pipeline.backlog() == 0 and not deliverer.pending()
