"""Running `notifier` as a real subprocess, reading its logs as they come."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from notifier.simulator import SimulatedPolySim

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def http_get(port: int, path: str, *, method: str = "GET") -> tuple[int, str]:
    """One plain HTTP/1.1 request to 127.0.0.1:port; the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def metrics_once(port: int, line: str, timeout: float = 10) -> str:
    """/metrics once it shows `line` (a send is counted just after the receiver has it)."""
    async with asyncio.timeout(timeout):
        while True:
            status, body = await http_get(port, "/metrics")
            assert status == 200
            if line in body.splitlines():
                return body
            await asyncio.sleep(0.02)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child notifier: no proxies, the test's extras."""
    env = {
        k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("POLY")
    }
    env.update(extra)
    return env


def python_child(script: str, *args: str) -> subprocess.Popen[str]:
    """`python -c script args...` with the repo importable; its stdout a text pipe."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def python_child_output(script: str, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run `python_child` to its end: its exit status and stdout; killed if it outlives
    `timeout` (then TimeoutExpired), never left running after a failed test."""
    child = python_child(script, *args)
    try:
        out, _ = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return child.returncode, out


class Daemon:
    """A `python -m notifier ...` child; stderr lines are collected as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *args: str, env: Mapping[str, str], cwd: Path = ROOT) -> Daemon:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            *args,
            env=dict(env),
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_log(self, text: str, *, timeout: float = 10, count: int = 1) -> str:
        """Wait until `count` stderr lines contain `text`; return the last such line."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = [line for line in self.lines if text in line]
                    if len(found) >= count:
                        return found[-1]
                    if self._reader.done():
                        raise AssertionError(f"exited without logging {text!r}:\n{self.log}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {text!r} within {timeout}s:\n{self.log}") from None

    async def feed_ready(self, venue: SimulatedPolySim) -> None:
        """Wait until the daemon holds the feed and its first backfill is done."""
        await venue.wait_connected(1, timeout=10)
        await self.wait_log("backfill", timeout=10)

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    async def wait(self, timeout: float = 15) -> tuple[int, str]:
        """Wait for the exit; return the status and stdout."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            out = await self.proc.stdout.read()
            code = await self.proc.wait()
            await self._reader
        return code, out.decode(errors="replace")

    async def __aenter__(self) -> Daemon:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Leaving the block: a child still running (a test that failed half-way) is killed."""
        if self.proc.returncode is None:
            await self.kill()

    async def kill(self) -> None:
        """Kill -9 (also the clean-up for a test that failed half-way)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.wait()
