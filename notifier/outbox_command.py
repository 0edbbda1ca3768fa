"""`notifier outbox`: what waits in the state file's outbox, and the dead alerts' requeue or purge.

Read from the state file alone (the daemon need not run): pending and dead alerts, fills held
by alert shaping or waiting for their market's title.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from notifier.clock import utc_now
from notifier.config import channel_names, load_state
from notifier.errors import StateError
from notifier.ruleconfig import channel_shown
from notifier.send_results import service_paused
from notifier.shaping_state import waiting
from notifier.store import StateStore


def outbox(
    config_path: Path,
    *,
    retry_dead: bool = False,
    purge_dead: bool = False,
    channel: str | None = None,
    to: str | None = None,
) -> int:
    """List what waits to be sent and what was given up on; or requeue or remove the dead
    (of `channel`, or all); requeued `to` another channel of the config, moved there."""
    path = load_state(config_path).path
    if to is not None and to not in (names := channel_names(config_path)):
        known = ", ".join(sorted(names)) or "none"
        message = f"no channel named {channel_shown(to)} in {config_path} (channels: {known})"
        print(message, file=sys.stderr)
        return 2
    try:
        path.stat()  # not exists(), which may say False for a file it cannot look at
    except FileNotFoundError:
        # Before the first `run`: nothing can be pending. Said with the path, so a mistyped
        # one shows; never opened, which would create the file (and its directory).
        nothing = "nothing to retry" if retry_dead else "nothing to purge"
        if not (retry_dead or purge_dead):
            nothing = "nothing pending, nothing dead"
        print(f"no state file yet at {path} (the first `notifier run` creates it): {nothing}")
        return 0
    except OSError as exc:  # a directory we may not enter, a name too long, ...
        raise StateError(f"state file {path}: cannot open: {exc.strerror}") from None
    # A listing only reads: no write lock to wait for, and a read-only file is enough. None
    # of these migrates the file: the daemon does, at its start.
    changes = retry_dead or purge_dead
    with StateStore(path, read_only=not changes, migrate=False) as store:
        if channel is not None and changes:
            dead = sorted({item.channel for item in store.outbox(state="dead")})
            if channel not in dead and channel not in channel_names(config_path):
                # A typo here would read "requeued 0" and look like nothing was wrong.
                some = ", ".join(channel_shown(name) for name in dead) or "none"
                print(
                    f"no dead alerts of channel {channel_shown(channel)} (channels with dead "
                    f"alerts: {some})",
                    file=sys.stderr,
                )
                return 2
        if retry_dead:
            count = store.retry_dead(channel=channel, to=to)
            where = f" for channel {to}" if to is not None else ""
            print(f"requeued {count} dead alert(s){where}{_PICKED_UP if count else ''}")
        elif purge_dead:
            print(f"removed {store.purge_dead(channel=channel)} dead alert(s)")
        else:
            print_outbox(store, sys.stdout)
    return 0


# deliver.LOOK_EVERY: how often a running daemon asks whether another program wrote the file.
_PICKED_UP = ": a running daemon sends them within a second, else the next `notifier run` does"


def print_outbox(store: StateStore, out: TextIO, *, now: datetime | None = None) -> None:
    """Counts first, then what holds fills back, then each pending and dead alert."""
    items = store.outbox(state="pending") + store.outbox(state="dead")
    counts = store.counts()
    print(f"pending {counts.get('pending', 0)}, dead {counts.get('dead', 0)}", file=out)
    shaped, due = waiting(store.shaping.entries())
    if shaped:
        rules = ", ".join(f"{rule} {n}" for rule, n in sorted(shaped.items()))
        when = "when the daemon next runs"
        if due is not None:
            when = f"{due:%Y-%m-%d %H:%M:%S}Z (or {when} after that)"
        print(
            f"{sum(shaped.values())} fill(s) held by alert shaping ({rules}), the first due {when}",
            file=out,
        )
    held = store.title_waits.held()
    if held:
        print(
            f"{len(held)} fill(s) wait for their market title, the oldest since "
            f"{held[0][1]:%Y-%m-%d %H:%M:%S}Z: the daemon judges them once it has it",
            file=out,
        )
    now = now or utc_now()
    for item in items:
        error = f"  last error: {item.last_error}" if item.last_error else ""
        if item.requeued:  # its error is from before the requeue, or a 429's pause since
            error = f"  requeued, its one try to come; last error: {item.last_error}"
        retry = ""
        if item.state == "pending" and (item.attempts or item.requeued) and item.next_at > now:
            # A start tries it at once, unless the service asked for the pause (a 429).
            start = "" if service_paused(item.last_error or "") else " (or at the daemon's start)"
            retry = f" next try {item.next_at:%Y-%m-%d %H:%M:%S}Z{start}"
        print(
            f"#{item.id} {item.state:<7} {item.channel}/{item.rule} attempts={item.attempts}"
            f"{retry} filled {item.filled_at:%Y-%m-%d %H:%M:%S}Z: {item.title}{error}",
            file=out,
        )
