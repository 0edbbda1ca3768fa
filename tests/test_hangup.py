"""SIGHUP around the event loop's lifetime: never the default action, which ends the process.

Each case runs in a child interpreter, since a failure here is the process dying by SIGHUP.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

HANDOVER = """\
import asyncio, os, signal
from notifier.hangup import loop_signals
from notifier.hangup_latch import HangupLatch

latch = HangupLatch().install()

async def main() -> None:
    loop = asyncio.get_running_loop()
    remove = loop.remove_signal_handler

    def remove_then_hang_up(signum: int) -> bool:
        removed = remove(signum)
        os.kill(os.getpid(), signal.SIGHUP)  # in the gap before the latch is back
        return removed

    loop.remove_signal_handler = remove_then_hang_up
    with loop_signals({signal.SIGHUP: lambda: None}, hangups=latch):
        pass

asyncio.run(main())
print("alive, hangup noted:", latch.take())
"""


def _child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_hangup_while_the_loop_hands_sighup_back_reaches_the_latch() -> None:
    """The loop's handler is removed at the end of a graceful stop; a SIGHUP in the moment
    before the latch is back is held, then noted, instead of ending the process."""
    child = _child(HANDOVER)
    assert child.returncode == 0, (child.returncode, -signal.SIGHUP, child.stderr)
    assert child.stdout == "alive, hangup noted: True\n"


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
