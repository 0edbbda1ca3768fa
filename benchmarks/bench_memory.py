"""Memory: RSS of the real daemon over 1,000,000 fills with 1,000 rules, sampled as it goes.

Run: .venv/bin/python benchmarks/bench_memory.py [--fills 1000000] [--quick]

The whole daemon path, in its own process (`python -m notifier run`): WebSocket feed,
normalize, dedupe against the SQLite state file, 1,000 rules, outbox, apprise delivery of the
1 in 100 fills that match to a loopback webhook. The harness sends chunks of 10,000 fills
and waits for each chunk's alerts before sending beyond the next, so the RSS measured is the
daemon's steady state, not a backlog of frames it was not given time to read. Target: flat
after warm-up, under 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Receiver,
    child_env,
    connected,
    daemon_config,
    frames,
    market_titles,
    rss_mb,
    rules_yaml,
    spawn,
    stop,
)

from notifier.simulator import DEFAULT_API_KEY, SimulatedPolySim

CHUNK = 10_000


def state_mb(folder: Path) -> float:
    """Size of the state file with its WAL, in MB."""
    return sum(f.stat().st_size for f in folder.glob("state.db*")) / 2**20


async def run(args: argparse.Namespace, tmp: Path) -> None:
    async with SimulatedPolySim(markets=market_titles()) as venue:
        hook = Receiver()
        await hook.start()
        config = daemon_config(
            tmp / "config.yaml",
            base_url=venue.base_url,
            hook_port=hook.port,
            rules=rules_yaml(args.rules),
        )
        env = child_env(POLYSIM_API_KEY=DEFAULT_API_KEY)
        proc = await spawn("-m", "notifier", "run", "--config", str(config), env=env)
        try:
            await connected(venue, proc)
            await asyncio.sleep(0.5)
            print(f"{args.fills:,} fills, {args.rules} rules, 1 in 100 alerted; RSS of the daemon")
            print(f"  {'fills':>10} {'RSS MB':>8} {'alerts':>7} {'fills/s':>8}")
            print(f"  {0:>10,} {rss_mb(proc.pid):>8.1f} {0:>7} {'-':>8}")
            samples: list[float] = []
            alerts = 0
            began = time.perf_counter()
            every = max(CHUNK, args.fills // 20)
            for start in range(0, args.fills, CHUNK):
                chunk = frames(min(CHUNK, args.fills - start), start=start)
                for frame in chunk:
                    await venue.emit(frame)
                alerts += sum('"quantity": "777"' in f for f in chunk)
                await hook.wait_for(alerts, timeout=120)
                done = start + len(chunk)
                if done % every == 0 or done == args.fills:
                    rss = rss_mb(proc.pid)
                    samples.append(rss)
                    rate = done / (time.perf_counter() - began)
                    print(f"  {done:>10,} {rss:>8.1f} {alerts:>7,} {rate:>8,.0f}")
            state = state_mb(tmp)
        finally:
            await stop(proc)
            await hook.close()
    half = samples[len(samples) // 2 :]
    print(
        f"peak {max(samples):.1f} MB (target < 100); second half of the run "
        f"{min(half):.1f}..{max(half):.1f} MB (flat: {max(half) - min(half):.1f} MB spread); "
        f"state file {state:.0f} MB on disk"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fills", type=int, default=1_000_000)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100,000 fills")
    args = parser.parse_args()
    if args.quick:
        args.fills = 100_000
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
