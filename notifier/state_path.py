"""Where the state file lives: its directory made, the file created private, one daemon on it.

Apart from sqlitefile.py, which opens the file with SQLite and makes writes durable: these are
the file system's part, each with its own reason (the alerts' text is private, two daemons
on one file would send every alert twice, a mistyped path should say what is in the way).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import IO

from notifier.errors import StateError


def create_private(path: Path) -> bool:
    """Create a new state file readable by its owner alone (an existing one keeps its mode);
    whether it was created.

    It holds every alert's text (the fills of someone's trading); SQLite would create it
    0644 under the usual umask, and gives the -wal and -shm files beside it the same mode.
    """
    # The file a symlink names (O_EXCL would refuse the link itself, and SQLite would then
    # create its target with the default mode).
    try:
        os.close(os.open(os.path.realpath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True


def hold_lock(path: Path) -> IO[bytes]:
    """An advisory lock on `<state file>.lock`, held until closed: one daemon per state file.

    A lock beside the database rather than SQLite's exclusive locking mode, so that
    `notifier outbox` can still read and requeue while the daemon runs (WAL lets them share).
    """
    # One lock whichever symlink names the file (two daemons sent twice); realpath, unlike
    # Path.resolve on 3.11, leaves a symlink loop for sqlite to refuse as it always did.
    real = Path(os.path.realpath(path))
    # Owner-only: anyone who can open a lock file can flock it, and so keep the daemon out.
    # One left by an older notifier is tightened too (it holds no data).
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    path_of_lock = real.parent / f"{real.name}.lock"
    lock = os.fdopen(os.open(path_of_lock, flags, 0o600), "ab")
    if not path_of_lock.is_symlink():  # a link's target is someone's file: left as it is
        with contextlib.suppress(OSError):  # not ours to change: left as it is
            os.fchmod(lock.fileno(), 0o600)
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise StateError(
            f"state file {path}: cannot open: locked by another process "
            "(is another notifier running?)"
        ) from None
    return lock


def make_directory(directory: Path) -> None:
    """The state file's directory, created with its parents; an OSError naming a file in the
    way where mkdir's own words ("File exists", "Not a directory") name only a path."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((p for p in (directory, *directory.parents) if p.is_file()), None)
        if blocker is None:
            raise
        raise OSError(f"{blocker} is a file, where the state file's directory must be") from exc


def writable_hint(exc: BaseException, path: Path) -> str:
    """Where the state file may go, when a service manager keeps it from `path`.

    systemd names the directory a unit may write (its StateDirectory=) in $STATE_DIRECTORY,
    and ProtectSystem=strict makes the rest read-only: the example's `state.path:
    notifier.db`, relative to a config in /etc, is refused there with a bare "Read-only file
    system". An empty string where there is nothing to add.
    """
    if not isinstance(exc, OSError) or exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ""
    allowed = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if not allowed or Path(os.path.realpath(path)).is_relative_to(os.path.realpath(allowed)):
        return ""
    return (
        f" (this service may write in {allowed}, its state directory: "
        f"set state.path to a file there, such as {Path(allowed) / 'notifier.db'})"
    )
