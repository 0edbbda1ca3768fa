"""Shared pieces of the daemon benchmarks: workload, webhook receiver, contenders as processes.

Every contender (the daemon, the hand-written client, the receive-only client) runs in its own
process, so the harness (the fake venue sending frames and the webhook receiving alerts) does
not share its event loop with what is measured, on this 2-core machine or any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

import notifier
from notifier.simulator import DEFAULT_API_KEY, SimulatedPolySim

# The tree of the notifier this harness imported (PYTHONPATH picks another checkout's, to
# measure an older build): children start there, since `python -m notifier` imports the
# package of its working directory first. Started from this checkout's directory, the
# "older build" measured was this one (as some comparisons up to 2026-12-07 were).
ROOT = Path(notifier.__file__).resolve().parent.parent
MARKETS = tuple(f"0x{n:064x}" for n in range(0xA000, 0xA000 + 100))
BANDS = 10  # rules per market: quantity bands 700-709, 710-719, ... 790-799
HIT_QUANTITY = "777"  # falls in exactly one band: one rule of its market matches
T0 = datetime(2026, 2, 6, 12, tzinfo=UTC)


def rule_specs(n_rules: int = 1000) -> list[tuple[str, str, str, int, int]]:
    """(name, market, side, quantity min, quantity max) of each benchmark rule."""
    specs = []
    for i in range(n_rules):
        low = 700 + (i // len(MARKETS)) % BANDS * 10
        specs.append((f"r{i}", MARKETS[i % len(MARKETS)], "BUY", low, low + 9))
    return specs


def rules_yaml(n_rules: int = 1000, *, channel: str = "hook") -> str:
    """`n_rules` rules, each a market, BUY and a quantity band: a fill may need 10 checked."""
    lines = ["rules:"]
    for i, market, _side, low, _high in rule_specs(n_rules):
        lines += [
            f"  - name: {i}",
            f"    when: {{market: '{market}', side: BUY,",
            f"            quantity: {{min: {low}, max: {low + 9}}}}}",
            f"    notify: [{channel}]",
            '    title: "{order_id}"',
            '    body: "{side} {quantity} {outcome} @ {price} on {market_title}"',
        ]
    return "\n".join(lines) + "\n"


def fill_frame(n: int, *, hit: bool) -> str:
    """Fill number `n` in the flat wire shape; a hit matches exactly one rule (1,000 rules)."""
    market = MARKETS[n % len(MARKETS)]
    quantity = HIT_QUANTITY if hit else str(1 + n % 99)
    at = T0 + timedelta(microseconds=n)
    return json.dumps(
        {
            "type": "fill",
            "order_id": n,
            "market_id": market,
            "side": "BUY" if hit or n % 2 else "SELL",
            "outcome": "Yes",
            "price": "0.42",
            "quantity": quantity,
            "filled_at": at.isoformat().replace("+00:00", "Z"),
        }
    )


def frames(count: int, *, every: int = 100, start: int = 0) -> list[str]:
    """`count` frames, one in `every` matching (the last one always does, to time the end);
    with `every` 0, none matches."""
    if not every:
        return [fill_frame(n, hit=False) for n in range(start, start + count)]
    return [
        fill_frame(n, hit=(n % every == every - 1) or n == start + count - 1)
        for n in range(start, start + count)
    ]


def market_titles() -> dict[str, str]:
    """The venue's market look-ups for the benchmark markets."""
    return {m: f"Benchmark market {i}" for i, m in enumerate(MARKETS)}


@dataclass
class Receiver:
    """A keep-alive HTTP/1.1 webhook on loopback: answers 200, stamps each body's arrival."""

    arrivals: list[tuple[float, bytes]] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def reset(self) -> None:
        self.arrivals.clear()

    async def wait_for(self, n: int, timeout: float = 180) -> float:  # noqa: ASYNC109
        """Wait until `n` requests arrived; the perf_counter time of the n-th."""
        if len(self.arrivals) < n:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((n, future))
            await asyncio.wait_for(future, timeout)
        return self.arrivals[n - 1][0]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                close = False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                body = await reader.readexactly(length) if length else b""
                self.arrivals.append((time.perf_counter(), body))
                for waiter in [w for w in self._waiters if len(self.arrivals) >= w[0]]:
                    self._waiters.remove(waiter)
                    if not waiter[1].done():
                        waiter[1].set_result(None)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def daemon_config(
    path: Path,
    *,
    base_url: str,
    hook_port: int,
    rules: str,
    delivery: str = "",
    metrics_port: int | None = None,
) -> Path:
    """The config file the daemon runs with in a benchmark."""
    delivery = delivery or "  concurrency: 4\n"
    metrics = f"metrics:\n  listen: 127.0.0.1:{metrics_port}\n" if metrics_port else ""
    path.write_text(
        f"feed:\n  base_url: {base_url}\n  api_key: ${{POLYSIM_API_KEY}}\n"
        f"state:\n  path: {path.parent / 'state.db'}\n"
        f"delivery:\n{delivery}"
        f"{metrics}"
        f"log:\n  level: warning\n"
        f"channels:\n  hook: json://127.0.0.1:{hook_port}/\n{rules}",
        encoding="utf-8",
    )
    return path


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: no proxies, no inherited PolySimulator settings."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env = {k: v for k, v in env.items() if not k.startswith("POLY")}
    env.update(extra)
    return env


async def spawn(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    """A child Python process (its stdout discarded)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=None,  # inherited: a failing child says why
    )


async def connected(venue: SimulatedPolySim, proc: asyncio.subprocess.Process) -> None:
    """Wait until the child holds the feed; fail at once if it exits instead."""
    waiting = asyncio.ensure_future(venue.wait_connected(1, timeout=60))
    exited = asyncio.ensure_future(proc.wait())
    await asyncio.wait((waiting, exited), return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        waiting.cancel()
        raise SystemExit(f"contender exited with status {proc.returncode} before connecting")
    exited.cancel()
    waiting.result()


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then kill if it lingers."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def ingest_figures(port: int) -> tuple[int, float | None]:
    """The daemon's own count of fills received and the Unix time it read its last frame (its
    /metrics), (0, None) until it answers."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0, None
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    await writer.wait_closed()
    total, last_frame = 0, None
    for line in raw.decode().splitlines():
        if line.startswith("notifier_fills_received_total{"):
            total += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("notifier_feed_last_frame_timestamp_seconds "):
            last_frame = float(line.rsplit(" ", 1)[1])
    return total, last_frame


async def open_feed(base_url: str) -> tuple[httpx.AsyncClient, str]:
    """A minimal client's way in: an HTTP client and the feed URL with a fresh token."""
    http = httpx.AsyncClient(timeout=10)
    response = await http.post(
        f"{base_url}/v1/keys/ws-token", headers={"X-API-Key": DEFAULT_API_KEY}
    )
    token = response.json()["token"]
    return http, base_url.replace("http://", "ws://") + f"/v1/ws/executions?token={token}"
