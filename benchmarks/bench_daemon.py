"""Daemon throughput: fills/s from the first frame sent to the last alert received.

Run: .venv/bin/python benchmarks/bench_daemon.py [--fills 20000] [--rules 1000] [--quick]

The fake venue (SimulatedPolySim, loopback) sends the fills as fast as the socket takes them;
1 in 100 matches exactly one of the rules and goes to a local webhook. Three contenders, each
in its own process, against the same venue and webhook, in this run:

- daemon: `python -m notifier run` (feed client, normalize, dedupe, rules, SQLite outbox,
  apprise json:// delivery), the real thing;
- hand-written: websockets + json + a loop over the same rules, posting with httpx;
- receive-only: receives the frames and nothing else (the ceiling of this socket path).

A fourth run, "daemon, no alert", sends the same number of fills, none matching a rule, and
times them until the daemon read the last one (its /metrics says when: at the pipeline's door,
matching and recording it follow within milliseconds): its ingest path alone, the most that
moving delivery off the daemon's process could give.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Receiver,
    child_env,
    connected,
    cpu_seconds,
    daemon_config,
    frames,
    free_port,
    ingest_figures,
    market_titles,
    open_feed,
    rule_specs,
    rules_yaml,
    spawn,
    stop,
)

from notifier.simulator import DEFAULT_API_KEY, SimulatedPolySim

WARMUP = 1000
HERE = Path(__file__).resolve()


# -- the baseline clients (run as child processes) -------------------------------------------


async def receive_only(base_url: str, hook: str, marks: list[int]) -> None:
    """Count frames; post once to the webhook when each mark (a cumulative count) is reached."""
    http, url = await open_feed(base_url)
    async with contextlib.aclosing(http), connect(url, max_size=None, compression=None) as ws:
        seen = 0
        for mark in marks:
            while seen < mark:
                await ws.recv()
                seen += 1
            await http.post(hook, json={"title": f"mark {mark}"})


async def hand_written(base_url: str, hook: str, total: int, n_rules: int) -> None:
    """The minimal client someone would write: parse, loop over every rule, post each match."""
    rules = [(n, m, s, Decimal(lo), Decimal(hi)) for n, m, s, lo, hi in rule_specs(n_rules)]
    http, url = await open_feed(base_url)
    async with contextlib.aclosing(http), connect(url, max_size=None, compression=None) as ws:
        for _ in range(total):
            fill = json.loads(await ws.recv())
            if fill.get("type") not in ("fill", "execution"):
                continue
            quantity = Decimal(fill["quantity"])
            for name, market, side, low, high in rules:
                if fill["market_id"] == market and fill["side"] == side and low <= quantity <= high:
                    body = f"{fill['side']} {quantity} {fill['outcome']} @ {fill['price']}"
                    title = str(fill["order_id"])
                    await http.post(hook, json={"title": title, "body": body, "rule": name})


# -- the harness ------------------------------------------------------------------------------


async def measure(
    venue: SimulatedPolySim,
    hook: Receiver,
    batches: list[list[str]],
    alerts: list[int],
    pid: int,
    metrics_port: int | None = None,
) -> tuple[float, float | None, float | None]:
    """Send each batch, wait for its alerts; seconds of the last batch, first frame to alert.

    With `metrics_port` (the daemon), also seconds until the daemon read the last batch's last
    frame (its last-frame gauge): its ingest rate, apart from delivery, and the CPU seconds it
    spent on the last batch (all its threads): steadier than wall time on a machine whose speed
    drifts. (The baseline clients exit at their last fill, taking their CPU count with them.)
    """
    elapsed, ingested, cpu = 0.0, None, None
    if metrics_port is None and not all(alerts):
        raise ValueError("a batch without alerts is timed by the daemon's /metrics")
    received = 0
    for batch, expected in zip(batches, alerts, strict=True):
        hook.reset()
        cpu_before = cpu_seconds(pid) if metrics_port is not None else None
        received += len(batch)
        began, began_wall = time.perf_counter(), time.time()
        for frame in batch:
            await venue.emit(frame)
        if expected:
            elapsed = await hook.wait_for(expected) - began
        if metrics_port is not None:
            ingested = await ingest_ended(metrics_port, received) - began_wall
            elapsed = elapsed if expected else ingested
        await asyncio.sleep(0.2)  # nothing more may arrive: counted below
        if cpu_before is not None:
            cpu = cpu_seconds(pid) - cpu_before
        if len(hook.arrivals) != expected:
            raise SystemExit(f"expected {expected} alerts, got {len(hook.arrivals)}")
    return elapsed, ingested, cpu


async def ingest_ended(port: int, count: int) -> float:
    """The Unix time the daemon read its last frame, once its /metrics counts `count` fills.

    The daemon says when it read the frame (its last-frame gauge), so the harness need not
    catch the moment by polling: a scrape costs the daemon CPU (4 to 8 ms with 1,000 rules'
    series), and polling every 5 ms took a tenth of its CPU from the run it measured. Here a
    scrape every 250 ms, and none while alerts are awaited.
    """
    for _ in range(240):  # a minute at most
        await asyncio.sleep(0.25)
        seen, last_frame = await ingest_figures(port)
        if seen >= count:
            if last_frame is None:  # its fills came as frames, so one was read: no gauge
                raise SystemExit(
                    "the daemon has no notifier_feed_last_frame_timestamp_seconds gauge "
                    "(a build older than it): its ingest cannot be timed"
                )
            return last_frame
    raise SystemExit(f"the daemon counted {seen} of {count} fills received in a minute")


async def contender(
    name: str, args: argparse.Namespace, tmp: Path, warm: list[str], timed: list[str]
) -> tuple[float, float | None, float | None]:
    async with SimulatedPolySim(markets=market_titles()) as venue:
        hook = Receiver()
        await hook.start()
        env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
        me = str(HERE)
        total = len(warm) + len(timed)
        hits = [sum('"quantity": "777"' in f for f in batch) for batch in (warm, timed)]
        metrics_port = None
        if name.startswith("daemon"):
            metrics_port = free_port()
            config = daemon_config(
                tmp / "config.yaml",
                base_url=venue.base_url,
                hook_port=hook.port,
                rules=rules_yaml(args.rules),
                metrics_port=metrics_port,
            )
            proc = await spawn("-m", "notifier", "run", "--config", str(config), env=env)
        elif name == "hand-written":
            child = ["--client", "hand", "--total", str(total), "--rules", str(args.rules)]
            proc = await spawn(me, *child, "--venue", venue.base_url, "--hook", hook.url, env=env)
        else:
            marks = f"{len(warm)},{total}"
            child = ["--client", "recv", "--marks", marks, "--venue", venue.base_url]
            proc = await spawn(me, *child, "--hook", hook.url, env=env)
            hits = [1, 1]
        try:
            await connected(venue, proc)
            await asyncio.sleep(0.5)  # the daemon's first backfill (an empty history)
            seconds = await measure(venue, hook, [warm, timed], hits, proc.pid, metrics_port)
        finally:
            await stop(proc)
            await hook.close()
    return seconds


async def harness(args: argparse.Namespace) -> None:
    warm = frames(WARMUP, start=10_000_000)
    timed = frames(args.fills)
    matching = sum('"quantity": "777"' in f for f in timed)
    print(
        f"{args.fills} fills, {args.rules} rules, {matching} alerts to a loopback webhook; "
        f"best of {args.repeat}; fills/s first frame -> last alert"
    )
    misses = frames(args.fills, every=0)
    names = ("receive-only", "hand-written", "daemon", "daemon, no alert")
    best = dict.fromkeys(names, float("inf"))
    cpu = idle_cpu = float("inf")
    ingest = float("inf")
    # Rounds interleave the contenders, so a slow spell of a shared machine touches them all.
    for _ in range(args.repeat):
        for name in names:
            batch = misses if name == "daemon, no alert" else timed
            with tempfile.TemporaryDirectory() as tmp:
                seconds, ingested, used = await contender(name, args, Path(tmp), warm, batch)
            best[name] = min(best[name], seconds)
            if name == "daemon":
                cpu = min(cpu, used) if used is not None else cpu
                ingest = min(ingest, ingested) if ingested is not None else ingest
            elif used is not None:
                idle_cpu = min(idle_cpu, used)
    results = {name: args.fills / best[name] for name in names}
    for name in names[:3]:
        print(f"  {name:<13} {results[name]:>9,.0f} fills/s  ({best[name]:.2f} s)")
    daemon = results["daemon"]
    print(
        f"daemon = {daemon / results['hand-written']:.2f}x hand-written (target >= 2x), "
        f"{daemon / results['receive-only']:.2f}x receive-only ceiling (target >= 0.5x)"
    )
    print(
        f"daemon CPU (user + system, all threads): {cpu / args.fills * 1e6:.1f} us a fill, "
        "sends included"
    )
    print(
        f"daemon ingest alone (every fill received, by its /metrics): "
        f"{args.fills / ingest:,.0f} fills/s ({ingest:.2f} s), sending alerts meanwhile; after "
        "it, the alerts still queued for the one webhook (sent one at a time, in fill order)"
    )
    alone = results["daemon, no alert"]
    print(
        f"daemon, no fill matching a rule: {alone:,.0f} fills/s "
        f"({alone / results['hand-written']:.2f}x hand-written, "
        f"{alone / results['receive-only']:.2f}x ceiling), {idle_cpu / args.fills * 1e6:.1f} us "
        "CPU a fill: its ingest path alone, the most that delivery off this process could give"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fills", type=int, default=20_000)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="5,000 fills, one run each")
    parser.add_argument("--client", choices=("hand", "recv"), help=argparse.SUPPRESS)
    parser.add_argument("--venue", help=argparse.SUPPRESS)
    parser.add_argument("--hook", help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--marks", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client == "hand":
        asyncio.run(hand_written(args.venue, args.hook, args.total, args.rules))
    elif args.client == "recv":
        marks = [int(m) for m in args.marks.split(",")]
        asyncio.run(receive_only(args.venue, args.hook, marks))
    else:
        if args.quick:
            args.fills, args.repeat = 5000, 1
        asyncio.run(harness(args))


if __name__ == "__main__":
    main()
