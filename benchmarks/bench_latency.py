"""Latency: fill frame sent -> alert received by a local webhook, p50 and p99.

Run: .venv/bin/python benchmarks/bench_latency.py [--fills 400] [--rate 50] [--quick]

The fake venue sends matching fills at a steady rate; each alert's title is its order id, so
the webhook pairs every arrival with its frame's send time. Two contenders in their own
processes, in this run: the daemon (`python -m notifier run`, 1,000 rules, SQLite outbox,
apprise json://); the floor, a bare client that receives the frame and posts it with httpx
(keep-alive connection); and the apprise floor, a bare client that sends each frame through
apprise json:// as the daemon does (notifier's channels, keep-alive sessions installed), which
shows what notifier itself adds. Each waits for its first alerts before the timed fills start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Receiver,
    child_env,
    connected,
    daemon_config,
    fill_frame,
    market_titles,
    median,
    open_feed,
    percentile,
    rules_yaml,
    spawn,
    stop,
)

from notifier import keepalive
from notifier.channels import ChannelSet
from notifier.settings import ChannelSettings, DeliverySettings
from notifier.simulator import DEFAULT_API_KEY, SimulatedPolySim

HERE = Path(__file__).resolve()


async def bare_client(base_url: str, hook: str) -> None:
    """The floor: receive a frame, post it to the webhook, next."""
    http, url = await open_feed(base_url)
    async with contextlib.aclosing(http), connect(url, compression=None) as ws:
        with contextlib.suppress(Exception):
            while True:
                fill = json.loads(await ws.recv())
                title = str(fill["order_id"])
                await http.post(hook, json={"title": title, "body": fill["quantity"]})


async def apprise_client(base_url: str, hook_port: int) -> None:
    """The apprise floor: receive a frame, send it through apprise json:// (as the daemon does)."""
    keepalive.install()  # as `notifier run` does
    url = f"json://127.0.0.1:{hook_port}/"
    channels = ChannelSet.build(
        {"hook": ChannelSettings(name="hook", urls=(url,))}, delivery=DeliverySettings()
    )
    (target,) = channels.targets("hook")
    http, feed_url = await open_feed(base_url)
    async with contextlib.aclosing(http), connect(feed_url, compression=None) as ws:
        with contextlib.suppress(Exception):
            while True:
                fill = json.loads(await ws.recv())
                await channels.send(target.key, str(fill["order_id"]), fill["quantity"])


async def contender(name: str, args: argparse.Namespace, tmp: Path) -> list[float]:
    """Milliseconds from frame sent to alert received, for each timed fill."""
    async with SimulatedPolySim(markets=market_titles()) as venue:
        hook = Receiver()
        await hook.start()
        env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
        if name == "daemon":
            config = daemon_config(
                tmp / "config.yaml",
                base_url=venue.base_url,
                hook_port=hook.port,
                rules=rules_yaml(args.rules),
            )
            proc = await spawn("-m", "notifier", "run", "--config", str(config), env=env)
        else:
            child = ["--client", name, "--venue", venue.base_url, "--hook", hook.url]
            proc = await spawn(str(HERE), *child, "--hook-port", str(hook.port), env=env)
        try:
            await connected(venue, proc)
            await asyncio.sleep(0.5)  # the daemon's first backfill (an empty history)
            # Warm-up: every market once (titles cached, connections open), untimed.
            for n in range(100):
                await venue.emit(fill_frame(50_000_000 + n, hit=True))
            await hook.wait_for(100)
            hook.reset()
            sent: dict[str, float] = {}
            interval = 1 / args.rate
            start = time.perf_counter()
            for n in range(args.fills):
                await asyncio.sleep(max(0.0, start + n * interval - time.perf_counter()))
                sent[str(n)] = time.perf_counter()
                await venue.emit(fill_frame(n, hit=True))
            await hook.wait_for(args.fills)
        finally:
            await stop(proc)
            await hook.close()
    return [(at - sent[json.loads(body)["title"]]) * 1e3 for at, body in hook.arrivals]


async def harness(args: argparse.Namespace) -> None:
    print(
        f"{args.fills} matching fills at {args.rate}/s, {args.rules} rules; "
        "ms from frame sent to webhook received"
    )
    results: dict[str, tuple[float, float]] = {}
    for name in ("floor", "apprise", "daemon"):
        with tempfile.TemporaryDirectory() as tmp:
            ms = await contender(name, args, Path(tmp))
        results[name] = (median(ms), percentile(ms, 99))
        p50, p99 = results[name]
        print(f"  {name:<7} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   max {max(ms):6.2f} ms")
    (f50, f99), (d50, d99) = results["floor"], results["daemon"]
    (a50, a99) = results["apprise"]
    print(
        f"daemon/floor: p50 {d50 / f50:.2f}x (target <= 1.5x), p99 {d99 / f99:.2f}x (target <= 2x)"
    )
    print(
        f"daemon/apprise floor: p50 {d50 / a50:.2f}x, p99 {d99 / a99:.2f}x "
        "(what notifier adds on top of sending through apprise)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fills", type=int, default=400)
    parser.add_argument("--rate", type=float, default=50.0, help="fills per second")
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 fills")
    parser.add_argument("--client", choices=("floor", "apprise"), help=argparse.SUPPRESS)
    parser.add_argument("--hook-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--venue", help=argparse.SUPPRESS)
    parser.add_argument("--hook", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client == "floor":
        asyncio.run(bare_client(args.venue, args.hook))
        return
    if args.client == "apprise":
        asyncio.run(apprise_client(args.venue, args.hook_port))
        return
    if args.quick:
        args.fills = 100
    asyncio.run(harness(args))


if __name__ == "__main__":
    main()
