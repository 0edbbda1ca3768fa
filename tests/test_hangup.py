"""SIGHUP around the event loop's lifetime: never the default action, which ends the process.

Each case runs in a child interpreter, since a failure here is the process dying by SIGHUP.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

HANDOVER = """\
import asyncio, os, signal, threading
from notifier.hangup import loop_signals
from notifier.hangup_latch import HangupLatch

latch = HangupLatch().install()
done = threading.Event()
worker = threading.Thread(target=done.wait)  # as the send threads: any thread may get it
worker.start()
reloads = []

async def main() -> None:
    loop = asyncio.get_running_loop()
    remove = loop.remove_signal_handler

    def remove_then_hang_up(signum: int) -> bool:
        removed = remove(signum)
        os.kill(os.getpid(), signal.SIGHUP)  # as the loop gives its signals back
        return removed

    loop.remove_signal_handler = remove_then_hang_up
    handlers = {signal.SIGHUP: lambda: reloads.append(1), signal.SIGTERM: lambda: None}
    with loop_signals(handlers, hangups=latch):
        assert signal.getsignal(signal.SIGHUP) == latch._note
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(1000):
            if reloads:
                break
            await asyncio.sleep(0.01)

try:
    asyncio.run(main())
finally:
    done.set()
print("alive, reloads:", len(reloads), "hangup noted after:", latch.take())
"""


def _child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sighup_goes_through_the_latch_so_the_loop_never_leaves_it_fatal() -> None:
    """While the loop runs a SIGHUP reaches its handler through the latch, and as the loop
    gives its signals back at the end of a graceful stop one is noted again: SIGHUP's handler
    never passes through the default action, which ended the process (with other threads
    alive, blocking the signal in the main thread alone did not help)."""
    child = _child(HANDOVER)
    assert child.returncode == 0, (child.returncode, -signal.SIGHUP, child.stderr)
    assert child.stdout == "alive, reloads: 1 hangup noted after: True\n"


def test_the_launcher_holds_sighup_before_importing_asyncio() -> None:
    """`notifier` installs its latch first; until then SIGHUP is fatal, so what comes before
    it must be quick to import: asyncio alone takes some 50 ms."""
    child = _child(
        """\
        import sys
        import notifier.launch
        print(sorted({"asyncio", "logging", "yaml"} & set(sys.modules)))
        """
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout == "[]\n"


RESTARTED = """\
import ctypes, os, signal, threading
from notifier.hangup_latch import HangupLatch

latch = HangupLatch().install()
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
got = []
blocked = threading.Event()

def read_one() -> None:
    buffer = ctypes.create_string_buffer(1)
    blocked.set()
    got.append(libc.read(r, buffer, 1))  # C's read: no retry of Python's around it

worker = threading.Thread(target=read_one)
worker.start()
blocked.wait()
for _ in range(50):  # the thread is in read() by now, or soon: each signal lands in it
    signal.pthread_kill(worker.ident, signal.SIGHUP)
os.write(w, b"x")
worker.join(30)
print("read:", got, "noted:", latch.take())
"""


def test_a_hangup_resumes_what_it_interrupts_in_other_threads() -> None:
    """The latch is SIGHUP's handler for the whole run, so a send thread's blocking call that
    a SIGHUP interrupts goes on (as under asyncio's handlers) instead of failing with EINTR."""
    child = _child(RESTARTED)
    assert child.returncode == 0, child.stderr
    assert child.stdout == "read: [1] noted: True\n"


FORWARDED = """\
import asyncio, contextvars, os, signal
from notifier.hangup import loop_signals
from notifier.hangup_latch import HangupLatch

where = contextvars.ContextVar("where")
seen = []

async def main() -> None:
    latch = HangupLatch().install()
    try:
        where.set("service")
        with loop_signals({signal.SIGHUP: lambda: seen.append(where.get())}, hangups=latch):

            async def feed() -> None:
                where.set("feed")
                os.kill(os.getpid(), signal.SIGHUP)
                for _ in range(1000):  # the handler runs between these bytecodes
                    pass

            await asyncio.create_task(feed())
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
    finally:
        latch.restore()

asyncio.run(main())
print("seen:", seen)
"""


def test_a_forwarded_hangup_runs_in_the_service_s_context() -> None:
    """The reload runs in the context the handlers were set up in, not in that of the task
    the signal happened to interrupt."""
    child = _child(FORWARDED)
    assert child.returncode == 0, (child.returncode, -signal.SIGHUP, child.stderr)
    assert child.stdout == "seen: ['service']\n"
