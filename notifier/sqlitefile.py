"""One SQLite file opened for durable, fast writes: WAL, versioned schema, group commit.

The state store's queries live in `store.py`; this module owns how the file is opened, how a
write becomes durable, and how sqlite's errors become one-line `StateError`s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Literal
from urllib.parse import quote

from notifier.errors import StateBusyError, StateError
from notifier.state_path import create_private, hold_lock, make_directory, writable_hint

Migration = Callable[[sqlite3.Connection], None]

log = logging.getLogger(__name__)

# Bytes a WAL file is cut back to when it restarts after a burst made it grow.
WAL_SIZE_LIMIT = 64 * 2**20
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL = 5, 6, 13  # sqlite3.h primary result codes


class SqliteFile:
    """A connection in WAL mode whose writes are transactions, optionally group-committed.

    `migrations[n]` turns schema version n into n + 1 (PRAGMA user_version), all at open in one
    transaction. `exclusive` keeps other exclusive openers (another daemon) off the file for
    this process's lifetime; plain openers (the CLI) may still read and write. With `defer_commit`
    (e.g. `loop.call_soon`), deferrable writes join one open batch that the scheduled `flush()`
    commits; every other write, and `flush()` itself, is durable on return. `autocheckpoint` moves
    SQLite's in-commit checkpoint threshold (1,000 pages), e.g. to leave the routine work to a
    `WalCheckpointer`; a WAL grown past `WAL_SIZE_LIMIT` shrinks back once checkpointed.
    `read_only` opens for reading alone (SQLite's mode=ro): no write lock is taken, so a
    listing works on a file it may not write and beside a writer holding the lock; a file
    whose schema is not this notifier's is refused rather than migrated. So is one opened
    with `migrate=False` (a command run beside the daemon, maybe from another install: a
    migration behind the daemon's back would leave it a file it may not understand).
    """

    def __init__(
        self,
        path: Path,
        *,
        migrations: Mapping[int, Migration],
        exclusive: bool = False,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 1.0,
        defer_commit: Callable[[Callable[[], None]], object] | None = None,
        on_broken: Callable[[StateError], object] | None = None,
        batch_limit: int = 1000,
        autocheckpoint: int | None = None,
        read_only: bool = False,
        migrate: bool = True,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._defer = defer_commit
        self._on_broken = on_broken
        self._batch_limit = batch_limit
        self._in_batch = False
        self._batch_size = 0
        self._held = 0  # hold_batch() depth: the batch limit does not commit meanwhile
        self._broken: StateError | None = None
        self._lock: IO[bytes] | None = None
        self._data_version: int | None = None  # as `changed_elsewhere` last read it
        target = max(migrations) + 1 if migrations else 0
        try:
            if read_only:
                # With no WAL file beside it no connection has the file open (the daemon is
                # stopped): read it as immutable, which creates no -shm/-wal either, so a user
                # who may not write the directory can still list it. Else read-only, seeing the
                # daemon's commits through its WAL. SQLite keeps the WAL beside the file a
                # symlinked path names, so that is where to look for it.
                real = os.path.realpath(self.path)
                flags = "mode=ro" if Path(f"{real}-wal").exists() else "immutable=1"
                uri = f"file:{quote(real)}?{flags}"
                self.db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout)
            else:
                make_directory(self.path.parent)
                if exclusive:
                    self._lock = hold_lock(self.path)
                if create_private(self.path):
                    # A mistyped state.path starts afresh (its directories made too): said,
                    # with the path, beside the first start's "fills before ... not alerted".
                    log.info("new state file %s (there was none)", self.path)
                self.db = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout)
        except (OSError, sqlite3.Error) as exc:
            self._release_lock()
            hint = writable_hint(exc, self.path)
            raise StateError(f"state file {self.path}: cannot open: {exc}{hint}") from exc
        try:
            with self.errors("cannot open"):
                if read_only:
                    self._check_version(target, migrate=False)
                else:
                    self._setup(synchronous, migrations, target, autocheckpoint, migrate)
        except BaseException:
            self.db.close()
            self._release_lock()
            raise

    def _setup(
        self,
        synchronous: str,
        migrations: Mapping[int, Migration],
        target: int,
        autocheckpoint: int | None,
        migrate: bool,
    ) -> None:
        if not migrate:  # before anything is written: an empty file stays empty
            self._check_version(target, migrate=False)
        mode = self.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateError(f"state file {self.path}: cannot switch to WAL (got {mode})")
        # WAL + synchronous=NORMAL: a commit appends to the WAL with write() and no fsync. A
        # killed process (kill -9 included) loses nothing, since the OS page cache already holds
        # those bytes; only a power cut can roll back the last few commits, and it never
        # corrupts the file. The one fsync happens per checkpoint, not per commit: FULL would
        # put a disk flush on every alert's hot path (benchmarks/bench_store.py measures it).
        self.db.execute(f"PRAGMA synchronous = {synchronous}")
        self.db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        if autocheckpoint is not None:  # pages; None keeps SQLite's 1,000, 0 turns it off
            self.db.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint)}")
        with self.write():
            version = self._check_version(target, migrate=migrate)
            while version < target:
                migrations[version](self.db)
                version += 1
                self.db.execute(f"PRAGMA user_version = {version}")

    def _check_version(self, target: int, *, migrate: bool) -> int:
        """The file's schema version, if this notifier can use it (`migrate`: or upgrade it)."""
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > target:
            raise StateError(
                f"state file {self.path}: schema version {version} is newer than this "
                f"notifier understands ({target}); upgrade notifier"
            )
        if version < target and not migrate:
            raise StateError(
                f"state file {self.path}: schema version {version} is older than this "
                f"notifier's ({target}); start the daemon once to migrate it"
            )
        return version

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn sqlite's errors into one-line StateErrors naming the file (never a secret)."""
        try:
            yield
        except (sqlite3.ProgrammingError, sqlite3.IntegrityError):
            raise  # a bug in the caller, not a problem with the file
        except sqlite3.OperationalError as exc:
            reason = str(exc)
            code = _primary_code(exc)
            if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
                # Another notifier cannot be it: the lock beside the file keeps it out.
                reason = (
                    f"busy: another program held its write lock over {self._busy_timeout:g}s "
                    "(a sqlite3 shell, a backup?)"
                )
            if _may_clear(exc):
                raise StateBusyError(f"state file {self.path}: {doing}: {reason}") from exc
            raise StateError(f"state file {self.path}: {doing}: {reason}") from exc
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"state file {self.path}: {doing}: not a notifier state file or corrupt ({exc})"
            ) from exc

    @contextmanager
    def write(self, *, deferrable: bool = False) -> Iterator[sqlite3.Connection]:
        """One atomic write. Durable on return, unless deferrable and group commit is on.

        A write inside an open batch is a savepoint of it (all or nothing, the batch intact);
        a non-deferrable one then commits the batch with it.
        """
        if self._broken is not None:
            raise self._broken
        if deferrable and self._defer is not None and not self._in_batch:
            self.db.execute("BEGIN IMMEDIATE")
            self._in_batch, self._batch_size = True, 0
            self._defer(self._deferred_flush)
        if self._in_batch:
            with self._savepoint():
                yield self.db
            self._batch_size += 1
            if not deferrable or (self._batch_size >= self._batch_limit and not self._held):
                self.flush()
            return
        self.db.execute("BEGIN IMMEDIATE")  # a busy file fails here, not midway
        try:
            yield self.db
        except BaseException:
            if self.db.in_transaction:  # an I/O error or a full disk may have ended it already
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def hold_batch(self) -> Iterator[None]:
        """Writes in here join the open batch past its limit: the caller commits them (with
        `flush`, or a non-deferrable write) once they are whole, say records of shaped fills
        with the state that holds them. A limit reached meanwhile commits at the next write."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self.db.execute("SAVEPOINT step")
        try:
            yield
        except BaseException as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK TO step")
                self.db.execute("RELEASE step")
                raise
            # SQLite rolled the whole batch back (an I/O error, a full disk): writes that
            # returned success are gone. As with a failed commit, the file is broken for good;
            # a restart finds the durable watermark before them and backfill brings them again.
            self._in_batch = False
            lost = StateBusyError if _may_clear(exc) else StateError  # a full disk: restart
            self._broken = lost(f"state file {self.path}: batch lost: {exc}")
            raise
        self.db.execute("RELEASE step")

    def flush(self) -> None:
        """Commit the open batch, if any: durable on return.

        A failed commit breaks the file for good (every later write raises it): a commit run
        as a scheduled callback has nobody to raise to, and a lost batch must not pass unseen.
        On a broken file this raises its error too: rows read from a batch lost since are not
        on disk, and a caller flushing before it acts on them (a send) must not act.
        """
        if self._broken is not None:
            raise self._broken
        if not self._in_batch:
            return
        self._in_batch = False
        try:
            with self.errors("commit"):
                self.db.execute("COMMIT")
        except StateError as exc:
            self._broken = exc
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise

    def changed_elsewhere(self) -> bool:
        """Whether another connection committed to the file since the last call (the first
        call only takes note): SQLite's data_version, one cheap read, says so without a query
        over the tables. A command beside the daemon (`outbox --retry-dead`) is such a writer.
        """
        with self.errors("look for other writers"):
            version = int(self.db.execute("PRAGMA data_version").fetchone()[0])
        changed = self._data_version is not None and version != self._data_version
        self._data_version = version
        return changed

    def abandon(self, reason: StateError) -> None:
        """Roll the open batch back and break the file with `reason`: a caller found that its
        records must not commit without a write that failed (a restart's backfill brings
        those fills again, since the watermark never moved past them)."""
        if self._in_batch:
            self._in_batch = False
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
        lost = StateBusyError if isinstance(reason, StateBusyError) else StateError
        self._broken = self._broken or lost(f"{reason} (its batch rolled back)")

    def _deferred_flush(self) -> None:
        """`flush` as a scheduled callback: a failure is one log line, not a loop traceback.

        The file is broken by then (see `flush`), so the next write raises the error to its
        caller; `on_broken` hears of it at once, since on a quiet feed that write may be an
        hour away, its batch's alerts unrecorded meanwhile.
        """
        if not self._in_batch:
            return  # committed with a later write, or lost (and said so where it was lost)
        try:
            self.flush()
        except StateError as exc:
            if self._on_broken is None:
                log.error("%s; stopping at the next write", exc)
            else:
                log.error("%s; stopping", exc)
                self._on_broken(exc)

    def close(self) -> None:
        """Commit any open batch and close (checkpointing the WAL into the file)."""
        try:
            if self._broken is None:  # broken: no batch is open, and its error was raised
                self.flush()
        finally:
            self.db.close()
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the flock
            self._lock = None


def _primary_code(exc: BaseException) -> int:
    """SQLite's primary result code of an error (0 if it has none)."""
    return int(getattr(exc, "sqlite_errorcode", 0)) & 0xFF


def _may_clear(exc: BaseException) -> bool:
    """A busy or locked file, or a full disk: a condition a restart may find gone."""
    return isinstance(exc, StateBusyError) or _primary_code(exc) in (
        _SQLITE_BUSY,
        _SQLITE_LOCKED,
        _SQLITE_FULL,
    )
