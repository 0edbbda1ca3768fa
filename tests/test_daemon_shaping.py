"""Shaping in the real daemon: a subprocess against the loopback venue and a webhook."""

from __future__ import annotations

import signal
from pathlib import Path

from daemon import Daemon, child_env, free_port, metrics_once
from receivers import WebhookReceiver

from notifier.simulator import DEFAULT_API_KEY, DEFAULT_MARKETS, SimulatedPolySim

BTC = next(m for m, q in DEFAULT_MARKETS.items() if "Bitcoin" in q)


def write_config(
    path: Path, venue: SimulatedPolySim, hook: WebhookReceiver, *, wait: str, metrics: int
) -> Path:
    path.write_text(
        f"""\
feed:
  base_url: {venue.base_url}
  api_key: ${{POLYSIM_API_KEY}}
state:
  path: {path.parent / "state.db"}
metrics: {{listen: 127.0.0.1:{metrics}}}
channels:
  hook: {hook.json_url}
rules:
  - name: digest
    notify: [hook]
    group: {{by: [market_id], wait: {wait}}}
    title: "{{count}} fills on {{market_title}}"
    body: "{{total_quantity}} @ avg {{vwap:.4f}}"
""",
        encoding="utf-8",
    )
    return path


async def _start(config: Path, venue: SimulatedPolySim) -> Daemon:
    daemon = await Daemon.start(
        "run", "--config", str(config), env=child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
    )
    try:
        await daemon.feed_ready(venue)
    except BaseException:
        await daemon.kill()
        raise
    return daemon


async def _fills(venue: SimulatedPolySim) -> None:
    await venue.fill(market_id=BTC, price="0.60", quantity="10", order_id=1)
    await venue.fill(market_id=BTC, price="0.70", quantity="30", order_id=2)
    await venue.fill(market_id=BTC, price="0.65", quantity="100", order_id=3, shape="nested")


async def test_three_fills_in_the_wait_arrive_as_one_digest(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """3 fills of one market within the wait: one webhook message with count 3 and the VWAP."""
    port = free_port()
    config = write_config(tmp_path / "c.yaml", venue, webhook, wait="1s", metrics=port)
    async with await _start(config, venue) as daemon:
        await _fills(venue)
        (request,) = await webhook.wait_for(1, timeout=10)
        assert request.json["title"] == "3 fills on Will Bitcoin close above $100k in 2026?"
        assert request.json["message"] == "140 @ avg 0.6571"  # (6 + 21 + 65) / 140
        await metrics_once(port, 'notifier_alerts_sent_total{channel="hook"} 1.0')
        daemon.signal(signal.SIGTERM)
        code, _ = await daemon.wait()
        assert code == 0
        assert "3 matched, 1 alerts sent" in daemon.lines[-1]
        assert len(webhook.requests) == 1


async def test_held_digest_survives_kill_9_and_goes_out_once(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """Fills held in a group when the daemon is killed -9 go out after restart, once, all there."""
    port = free_port()
    config = write_config(tmp_path / "c.yaml", venue, webhook, wait="3s", metrics=port)
    daemon = await _start(config, venue)
    try:
        await _fills(venue)
        await metrics_once(port, 'notifier_fills_matched_total{rule="digest"} 3.0')
        await daemon.kill()
        assert webhook.requests == []
        daemon = await _start(config, venue)  # backfill brings the same three fills again
        (request,) = await webhook.wait_for(1, timeout=10)
        assert request.json["title"] == "3 fills on Will Bitcoin close above $100k in 2026?"
        assert request.json["message"] == "140 @ avg 0.6571"
        await metrics_once(port, 'notifier_alerts_sent_total{channel="hook"} 1.0')
        daemon.signal(signal.SIGTERM)
        code, _ = await daemon.wait()
        assert code == 0
        assert "0 matched" in daemon.lines[-1]  # the backfilled copies were duplicates
        assert len(webhook.requests) == 1
    finally:
        if daemon.proc.returncode is None:
            await daemon.kill()


async def test_fills_held_at_a_stop_are_counted_and_listed(
    venue: SimulatedPolySim, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """Stopped with a group still open: the stop line and `notifier outbox` say how many fills
    it holds and when they go out, where they said nothing and looked lost."""
    port = free_port()
    config = write_config(tmp_path / "c.yaml", venue, webhook, wait="1h", metrics=port)
    async with await _start(config, venue) as daemon:
        await _fills(venue)
        await metrics_once(port, 'notifier_fills_matched_total{rule="digest"} 3.0')
        daemon.signal(signal.SIGTERM)
        code, _ = await daemon.wait()
        assert code == 0
        assert daemon.lines[-1].endswith(
            "0 pending, 3 fills held by alert shaping (kept for later)"
        )
    async with await Daemon.start("outbox", str(config), env=child_env()) as listing:
        code, out = await listing.wait()
    assert code == 0, listing.log
    assert "3 fill(s) held by alert shaping (digest 3), the first due " in out
    assert webhook.requests == []
