"""The durable state store: seen fill keys, the feed watermark and the alert outbox, in SQLite.

One file (see `sqlitefile.py`: WAL, group commit), one connection used from the event loop
thread. Every call is short (microseconds), so it runs inline rather than on a thread.
The tables, row type and time encoding are in `store_schema.py`; what the deliverer and
`notifier outbox` do with the outbox rows, in `outbox_queue.py`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal

from notifier.clock import utc_now
from notifier.errors import StateError
from notifier.events import Alert
from notifier.outbox_queue import PRUNE_STEP, OutboxQueue
from notifier.shaping_table import ShapingTable
from notifier.sqlitefile import SqliteFile
from notifier.store_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    OutboxItem,
    from_us,
    outbox_row,
    to_us,
)
from notifier.title_table import TitleWaitTable

__all__ = [
    "MIGRATIONS",
    "PRUNE_STEP",
    "SCHEMA_VERSION",
    "OutboxItem",
    "StateStore",
]

_KEYS_PER_QUERY = 500  # well under SQLite's bound on parameters per statement
_INSERT_FILL = "INSERT OR IGNORE INTO fills (key, filled_at) VALUES (?, ?)"
_GAP_KEY = "feed.gap"


class StateStore(OutboxQueue):
    """Fill identities, the watermark and the outbox, durable across restarts and kill -9.

    `exclusive=True` keeps any other exclusive opener off the file for this process's lifetime:
    two daemons sharing one state file would deliver every alert twice, so the service opens it
    that way. Plain openers (`notifier outbox`) can still read and requeue beside it.

    Group commit: a commit costs ~40 µs even without fsync, too much for every fill at feed
    speed. Given `defer_commit` (the service passes `loop.call_soon`), record() joins an open
    batch that the scheduled `flush()` commits once the feed reader yields. Other writes and
    `flush()` are durable on return; the deliverer flushes before every send. If a scheduled
    commit fails, `on_broken` gets its error (nobody else is there to).
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], datetime] = utc_now,
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
        file = SqliteFile(
            path,
            migrations=MIGRATIONS,
            exclusive=exclusive,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            defer_commit=defer_commit,
            on_broken=on_broken,
            batch_limit=batch_limit,
            autocheckpoint=autocheckpoint,
            read_only=read_only,
            migrate=migrate,
        )
        super().__init__(file, clock=clock)
        self.path = file.path
        self.shaping = ShapingTable(file)  # the shaping stage's held state
        self.title_waits = TitleWaitTable(file)  # fills waiting for their market title

    def flush(self) -> None:
        """Commit records batched by group commit, if any: durable on return."""
        self._file.flush()

    def hold_batch(self) -> contextlib.AbstractContextManager[None]:
        """Writes that join the open batch past its limit, until the caller commits them
        (see SqliteFile.hold_batch)."""
        return self._file.hold_batch()

    def abandon_batch(self, reason: StateError) -> None:
        """Roll back the open batch and refuse every later write (see SqliteFile.abandon)."""
        self._file.abandon(reason)

    def close(self) -> None:
        """Commit any open batch and close the file."""
        self._file.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- fills and watermark -----------------------------------------------------------------

    def seen(self, fill_key: str) -> bool:
        """Whether this fill was recorded before."""
        with self._errors("read fills"):
            row = self._db.execute("SELECT 1 FROM fills WHERE key = ?", (fill_key,)).fetchone()
        return row is not None

    def unseen(self, fill_keys: Sequence[str]) -> set[str]:
        """Those of `fill_keys` neither recorded nor waiting for a title: a few queries."""
        fresh = set(fill_keys)
        with self._errors("read fills"):
            for start in range(0, len(fill_keys), _KEYS_PER_QUERY):
                chunk = fill_keys[start : start + _KEYS_PER_QUERY]
                marks = ",".join("?" * len(chunk))
                for table in ("fills", "title_waits"):
                    rows = self._db.execute(
                        f"SELECT key FROM {table} WHERE key IN ({marks})",  # noqa: S608  # only ?s
                        chunk,
                    ).fetchall()
                    fresh.difference_update(str(r[0]) for r in rows)
        return fresh

    def remember(self, fills: Sequence[tuple[str, datetime]]) -> int:
        """Record fills that raise no alert, as `record` would, in one step; how many were new.

        The feed's common case (most fills match no rule) costs a few statements a batch
        instead of three a fill. As with `record`, a fill seen before moves nothing: the
        watermark follows only the rows inserted now, or a backfill re-reading a fill stamped
        in the future would push it ahead again each time. When only some rows are new (a
        backfill's overlap), the batch is inserted again row by row to learn which.
        """
        if not fills:
            return 0
        rows = [(key, to_us(at)) for key, at in fills]
        with self._errors("record fills"), self._tx(deferrable=True) as db:
            db.execute("SAVEPOINT remember")
            before = db.total_changes
            db.executemany(_INSERT_FILL, rows)
            inserted = db.total_changes - before
            if inserted == len(rows):
                new = [at for _, at in rows]
            elif inserted == 0:
                new = []
            else:
                db.execute("ROLLBACK TO remember")
                new = [at for key, at in rows if db.execute(_INSERT_FILL, (key, at)).rowcount]
            db.execute("RELEASE remember")
            if new:
                self._advance(db, self._believable(max(new)))
        return len(new)

    def record(
        self,
        *,
        fill_key: str,
        filled_at: datetime,
        alerts: Sequence[Alert],
        created_at: datetime | None = None,
    ) -> bool:
        """Record a fill, its alerts and the watermark atomically; False if seen before.

        A fill seen before writes nothing, so its alerts can never be queued twice. With
        `defer_commit` the record is one savepoint of the open batch: a batch lost to kill -9
        holds only fills newer than the durable watermark (backfill brings them back), and
        none of its alerts was sent, since the deliverer flushes before sending.
        `created_at` (default now) starts the rows' max_age: a moved alert keeps its own.
        """
        filled = to_us(filled_at)
        now = to_us(self._clock())
        created = None if created_at is None else to_us(created_at)
        rows = [outbox_row(a, now, created) for a in alerts]
        with self._errors("record fill"), self._tx(deferrable=True):
            return self._insert(fill_key, filled, rows)

    def _insert(self, fill_key: str, filled: int, rows: Sequence[tuple[object, ...]]) -> bool:
        db = self._db
        inserted = db.execute(_INSERT_FILL, (fill_key, filled)).rowcount
        if inserted == 0:
            return False
        db.executemany(
            "INSERT OR IGNORE INTO outbox (fill_key, rule, channel, target, title, body, "
            "filled_at, created_at, next_at, body_format) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rows,
        )
        self._advance(db, self._believable(filled))
        return True

    def _believable(self, filled_us: int) -> int:
        """A fill time as far as the watermark may follow it: not past now.

        A backfill reads history from the watermark less `backfill_overlap`. One fill stamped
        ahead of this clock (a venue bug, its clock ahead, a late stamp) would otherwise move
        the watermark past the fills of the next gap, stamped before it: five minutes ahead,
        under the 60 s overlap, lost the gap's fills. Capped at now, a venue whose clock runs
        ahead costs only a longer read (its fills deduped), never a fill.
        """
        return min(filled_us, to_us(self._clock()))

    @staticmethod
    def _advance(db: sqlite3.Connection, at_us: int) -> None:
        db.execute(
            "INSERT INTO watermark (id, at) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET at = max(at, excluded.at)",
            (at_us,),
        )

    def load_watermark(self) -> datetime | None:
        """The newest fill time processed so far, or None on a fresh store."""
        with self._errors("read watermark"):
            row = self._db.execute("SELECT at FROM watermark WHERE id = 1").fetchone()
        return None if row is None else from_us(int(row[0]))

    def save_watermark(self, at: datetime) -> None:
        """Move the watermark forward to `at`; an earlier time leaves it where it is."""
        with self._errors("save watermark"), self._tx() as db:
            self._advance(db, to_us(at))

    def forget_watermark(self) -> None:
        """Back to a fresh store's watermark (none): the next start sets its floor again."""
        with self._errors("forget watermark"), self._tx() as db:
            db.execute("DELETE FROM watermark WHERE id = 1")

    def load_gap(self) -> datetime | None:
        """Start of a feed gap history has not yet been recovered from (see backfill.py)."""
        value = self.get_meta(_GAP_KEY)
        return None if value is None else from_us(int(value))

    def save_gap(self, at: datetime | None) -> None:
        """Store the gap's start, or clear it; durable on return (commits any open batch)."""
        if at is not None:
            self.set_meta(_GAP_KEY, str(to_us(at)))
            return
        with self._errors("write meta"), self._tx() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (_GAP_KEY,))

    def prune(
        self, *, fills_before: datetime, sent_before: datetime, limit: int = PRUNE_STEP
    ) -> int:
        """Forget up to `limit` fill keys filled before `fills_before` and rows sent before
        `sent_before`; returns how many went (call again while it returns `limit`).

        Keeps the file bounded; pending and dead rows are never pruned, nor anything filled
        since the oldest pending row (its fallback's row may be among it). In steps, each one
        short transaction: after a long downtime one DELETE of a million keys held the event
        loop for most of a second. Sent rows go first, so that a sent row of a fill whose key
        goes is gone before it: the keys that record a retarget are dated by their fill, and
        the outbox row such a key explains must not outlive it (a later retarget would collide
        with it and be silently ignored).
        """
        with self._errors("prune"), self._tx() as db:
            # Nothing filled or sent since the oldest pending alert was goes: the sent rows of
            # its fill (its fallback's) and the keys recording its moves are all that keep a
            # restarted daemon from queueing it for them again. A pending alert ends within
            # max_age.
            filled, created = db.execute(
                "SELECT min(filled_at), min(created_at) FROM outbox WHERE state = 'pending'"
            ).fetchone()
            if filled is not None:
                fills_before = min(fills_before, from_us(int(filled)))
                sent_before = min(sent_before, from_us(int(created)))
            # Two indexed look-ups, not one OR (which visited every sent row).
            sent = db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM ("
                "SELECT id FROM outbox INDEXED BY outbox_by_state "
                "WHERE state = 'sent' AND done_at < ? "
                "UNION SELECT id FROM outbox INDEXED BY outbox_sent_by_fill "
                "WHERE state = 'sent' AND filled_at < ?) LIMIT ?)",
                (to_us(sent_before), to_us(fills_before), limit),
            ).rowcount
            fills = 0
            if sent < limit:
                fills = db.execute(
                    "DELETE FROM fills WHERE key IN "
                    "(SELECT key FROM fills WHERE filled_at < ? ORDER BY filled_at LIMIT ?)",
                    (to_us(fills_before), limit - sent),
                ).rowcount
        return sent + fills

    # -- small blobs -------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A small stored value (JSON text by convention), or None."""
        with self._errors("read meta"):
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a small value under `key`, replacing any earlier one."""
        with self._errors("write meta"), self._tx() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
