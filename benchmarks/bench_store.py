"""Per-alert cost of the durable outbox: record(), then head() + mark_sent(), by commit mode.

Run: .venv/bin/python benchmarks/bench_store.py [--alerts N] [--batch N] [--dir PATH]

The hot path of one matched fill is one record() (fill key, outbox row, watermark) and, on
delivery, head() + mark_sent(). With synchronous=NORMAL in WAL mode a commit costs no fsync;
FULL fsyncs the WAL on every commit. Group commit (defer_commit) commits a batch of records at
once, as the daemon does when the feed reader yields. tmpfs hides fsync: use --dir on a disk.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from notifier.events import Alert
from notifier.store import StateStore

T0 = datetime(2026, 2, 6, tzinfo=UTC)


def run(
    path: Path, mode: Literal["NORMAL", "FULL"], *, alerts: int, batch: int
) -> tuple[float, float]:
    """Mean microseconds per alert for record() and for head()+mark_sent(), in a fresh store.

    With batch > 1, records are group-committed `batch` at a time before their delivery.
    """
    deferred: list[Callable[[], None]] = []
    defer = deferred.append if batch > 1 else None
    record_s = send_s = 0.0
    with StateStore(path, synchronous=mode, defer_commit=defer) as store:
        for start in range(0, alerts, batch):
            began = time.perf_counter()
            for n in range(start, min(start + batch, alerts)):
                at = T0 + timedelta(milliseconds=n)
                key = f"order-{n}|{at.isoformat()}|10|0.65"
                alert = Alert(key, "big-fills", "chat", "chat#0", "BUY 10 Yes", "body " * 20, at)
                store.record(fill_key=key, filled_at=at, alerts=[alert])
            while deferred:
                deferred.pop()()
            recorded = time.perf_counter()
            while items := store.head("chat#0"):
                store.mark_sent(items[0].id)
            record_s += recorded - began
            send_s += time.perf_counter() - recorded
    return record_s / alerts * 1e6, send_s / alerts * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--alerts", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64, help="records per group commit")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (a real disk)")
    parser.add_argument("--quick", action="store_true", help="300 alerts")
    args = parser.parse_args()
    if args.quick:
        args.alerts = 300
    cases: list[tuple[str, Literal["NORMAL", "FULL"], int]] = [
        ("NORMAL", "NORMAL", 1),
        ("FULL", "FULL", 1),
        (f"NORMAL+group({args.batch})", "NORMAL", args.batch),
    ]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"{args.alerts} fills with one alert each; files in {tmp}; mean µs per alert")
        print(f"{'mode':<20} {'record':>8} {'head+sent':>10} {'total':>8} {'alerts/s':>9}")
        for n, (label, mode, batch) in enumerate(cases):
            rec, sent = run(Path(tmp) / f"bench-{n}.db", mode, alerts=args.alerts, batch=batch)
            total = rec + sent
            print(f"{label:<20} {rec:>8.1f} {sent:>10.1f} {total:>8.1f} {1e6 / total:>9.0f}")


if __name__ == "__main__":
    main()
