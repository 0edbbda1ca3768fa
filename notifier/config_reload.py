"""Applying a config reload to a running service: validate the file again, swap rules and channels.

A reload runs in the background, one at a time, and a request made while another waits to
read the file joins it: a burst of SIGHUPs or of editor writes costs one reading. What a reload
changes, and what waits for a restart, is reload_diff.py's; what SIGHUP means is service.py's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from notifier import sdnotify
from notifier.channels import ChannelSet
from notifier.clock import utc_now
from notifier.deliver import Deliverer
from notifier.errors import ConfigError, StateError
from notifier.pipeline import Pipeline
from notifier.reload_diff import described_changes, kept_runtime, waiting_for_restart
from notifier.settings import Settings
from notifier.wording import counted

log = logging.getLogger(__name__)


class Reloadable(Protocol):
    """What a reload swaps in a running service: its settings, and its pipeline and deliverer
    once they are built (None before)."""

    settings: Settings
    pipeline: Pipeline | None
    deliverer: Deliverer | None


class ConfigReloader:
    """Reloads one service's config file into it; `read` is None for a run with no config file
    (the demo)."""

    def __init__(
        self,
        service: Reloadable,
        read: Callable[[], Settings] | None,
        on_broken: Callable[[StateError], None],
        *,
        systemd: Callable[[str], None] = sdnotify.notify,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._service = service
        self._read = read
        self._on_broken = on_broken  # a reload's write to the state file failed
        self._systemd = systemd  # told when a reload begins and how it ended
        self._clock = clock
        self._lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[bool]] = set()  # reloads asked for and not done yet
        self._queued = False  # a reload asked for has not read the file yet
        self._stopped = False  # the service is stopping: no reload from now on
        # For the metrics: reloads done, by result ("ok", "refused"), and whether the last
        # one took (the start's reading counts as one that did).
        self.results: Counter[str] = Counter(ok=0, refused=0)  # present from the start
        self.last_ok = True
        self.refusal: str | None = None  # how the last reload went, while it did not take

    @property
    def has_config_file(self) -> bool:
        """Whether there is a file to reload (not for the demo)."""
        return self._read is not None

    def request(self) -> None:
        """Reload in the background (what SIGHUP does); reloads run one at a time.

        A request while another waits to read the file joins it: that reading sees every
        edit made before it, so a burst of signals costs one reload, not one each.
        """
        if self._stopped:
            log.info("reload asked while stopping: not done")
            return
        if self._queued:
            log.debug("reload already queued: this request joins it")
            return
        self._queued = True
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def reload(self) -> bool:
        """Validate the config file again and swap rules and channels if it is valid.

        Reading and building run in a thread: a config with thousands of rules takes a
        second or more to parse, and the feed must not wait for it.
        """
        if self._read is None:
            self._queued = False
            log.warning("reload asked, but this run has no config file to reload")
            return False
        async with self._lock:
            self._queued = False  # from here on, an edit needs a reload of its own
            self._systemd(sdnotify.reloading())
            ok, outcome = await self._reread(self._read)
            self.refusal = None if ok else outcome.removeprefix("running the config before: ")
            self._systemd(f"READY=1\n{sdnotify.status(outcome)}")
            return self._counted(ok)

    async def _reread(self, read: Callable[[], Settings]) -> tuple[bool, str]:
        """Read, build and swap in the config; whether it took, and a line saying how it went
        (for `systemctl status`: a refused reload is otherwise seen only in the journal)."""
        when = self._clock().strftime("%Y-%m-%d %H:%M:%S UTC")
        try:
            new, channels = await asyncio.to_thread(self._build, read)
        except ConfigError as exc:
            log.error(
                "reload refused, the running config stays in force:\n%s%s",
                exc,
                _ENVIRONMENT_NOTE if _names_unset_variable(exc) else "",
                extra={"event": "reload_refused", "problems": len(exc.problems)},
            )
            count = counted(len(exc.problems), "problem")
            return False, f"running the config before: reload refused at {when} ({count})"
        except Exception:  # a loader bug must not end the daemon, nor pass unseen
            log.exception(
                "reload failed unexpectedly, the running config stays in force",
                extra={"event": "reload_refused"},
            )
            return False, f"running the config before: reload failed at {when} (see the log)"
        try:
            swapped = self._swap(new, channels)
        except Exception:  # a bug past the reading: logged, and systemd still hears READY
            log.exception("reload failed while swapping the new config in")
            return False, f"reload failed halfway at {when} (see the log)"
        if not swapped:
            return False, f"reload stopped halfway at {when}: the state file failed"
        return True, f"{running(new)}; reloaded at {when}"

    def _counted(self, ok: bool) -> bool:
        self.results["ok" if ok else "refused"] += 1
        self.last_ok = ok
        return ok

    async def cancel(self) -> None:
        """End the reloads asked for and not done (a stop): none may swap rules into a
        pipeline whose state file is about to close. A reading in its thread runs on, unused;
        a reload asked for from now on is not done."""
        self._stopped = True
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _build(read: Callable[[], Settings]) -> tuple[Settings, ChannelSet]:
        new = read()
        return new, ChannelSet.build(new.channels, delivery=new.delivery)

    def _swap(self, new: Settings, channels: ChannelSet) -> bool:
        service = self._service
        try:
            if service.pipeline is not None:  # writes the shaping state: the file may fail
                service.pipeline.swap(rules=new.rules, targets=channels)
        except StateError as exc:
            log.error("reload stopped halfway: %s", exc)
            self._on_broken(exc)  # the service stops with it, as at any write
            return False
        if service.deliverer is not None:
            if isinstance(service.deliverer.sender, ChannelSet):
                channels.take_locks(service.deliverer.sender)
            service.deliverer.swap_sender(channels, new.channels, new.delivery)
        old = service.settings
        later = waiting_for_restart(old, new)
        if later:
            log.warning(
                "%s settings changed: they take effect at the next restart", ", ".join(later)
            )
        service.settings = kept_runtime(service.settings, new)
        log.info(
            "reloaded: %s, %s (%s)",
            counted(len(new.rules.rules), "rule"),
            counted(len(channels.names), "channel"),
            described_changes(old, new),
            extra={"event": "reloaded"},
        )
        return True


def running(settings: Settings) -> str:
    """What the daemon runs, as `systemctl status` shows it: "running: 12 rules, 3 channels"."""
    rules = counted(len(settings.rules.rules), "rule")
    return f"running: {rules}, {counted(len(settings.channels), 'channel')}"


# A reload reads the environment the daemon started with: a variable added to the unit's
# EnvironmentFile since is not in it, however often the daemon reloads.
_ENVIRONMENT_NOTE = (
    "\n(a reload sees the environment the daemon started with: a variable set or changed"
    " since, in the shell or the unit's EnvironmentFile, needs a restart)"
)


def _names_unset_variable(error: ConfigError) -> bool:
    return any(problem.unset_variable for problem in error.problems)
