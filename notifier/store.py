"""The durable state store: seen fill keys, the feed watermark and the alert outbox, in SQLite.

One file (see `sqlitefile.py`: WAL, group commit), one connection used from the event loop
thread. Every call is short (microseconds), so it runs inline rather than on a thread.
The tables, row type and time encoding are in `store_schema.py`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Literal

from notifier.clock import utc_now
from notifier.errors import StateError
from notifier.events import Alert
from notifier.shaping_table import ShapingTable
from notifier.sqlitefile import SqliteFile
from notifier.store_schema import (
    COLUMNS,
    MIGRATIONS,
    PENDING_TARGETS,
    SCHEMA_VERSION,
    OutboxItem,
    from_us,
    item_from_row,
    outbox_row,
    to_us,
)
from notifier.title_table import TitleWaitTable

__all__ = [
    "FUTURE_TOLERANCE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "OutboxItem",
    "StateStore",
]

FUTURE_TOLERANCE = timedelta(minutes=10)  # clock skew the watermark accepts
_KEYS_PER_QUERY = 500  # well under SQLite's bound on parameters per statement
_INSERT_FILL = "INSERT OR IGNORE INTO fills (key, filled_at) VALUES (?, ?)"
_GAP_KEY = "feed.gap"
PRUNE_STEP = 5000  # rows a prune deletes per transaction (see prune)


class StateStore:
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
    ) -> None:
        self._clock = clock
        self._file = SqliteFile(
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
        )
        self.path = self._file.path
        self.shaping = ShapingTable(self._file)  # the shaping stage's held state
        self.title_waits = TitleWaitTable(self._file)  # fills waiting for their market title
        self._db = self._file.db
        self._errors = self._file.errors
        self._tx = self._file.write

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
            "filled_at, created_at, next_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rows,
        )
        self._advance(db, self._believable(filled))
        return True

    def _believable(self, filled_us: int) -> int:
        """A fill time as far as the watermark may follow it: not past now + a tolerance.

        One fill stamped far in the future (a venue bug, a skewed clock) would otherwise move
        the watermark there, and every later backfill would start after the fills it must find.
        """
        return min(filled_us, to_us(self._clock() + FUTURE_TOLERANCE))

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

    # -- outbox ------------------------------------------------------------------------------

    def pending_targets(self) -> list[str]:
        """Targets that have pending rows."""
        with self._errors("read outbox"):
            rows = self._db.execute(PENDING_TARGETS).fetchall()
        return [str(r[0]) for r in rows]

    def head(self, target: str, limit: int = 1) -> list[OutboxItem]:
        """The first pending rows of one target, in fill order (filled_at, then insertion)."""
        with self._errors("read outbox"):
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM outbox WHERE state = 'pending' AND target = ? "  # noqa: S608  # fixed column list, no input
                "ORDER BY filled_at, id LIMIT ?",
                (target, limit),
            ).fetchall()
        return [item_from_row(r) for r in rows]

    def pending_by_age(
        self, target: str, *, after: tuple[datetime, int] | None = None, limit: int = 100
    ) -> list[OutboxItem]:
        """A target's pending rows in the order they were recorded (created_at, then id),
        from just past `after` (the created_at and id of the last one already seen)."""
        since, last_id = (to_us(after[0]), after[1]) if after else (-(2**62), 0)
        with self._errors("read outbox"):
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM outbox INDEXED BY outbox_pending_by_age "  # noqa: S608  # fixed column list, no input
                "WHERE state = 'pending' AND target = ? AND (created_at, id) > (?, ?) "
                "ORDER BY created_at, id LIMIT ?",
                (target, since, last_id, limit),
            ).fetchall()
        return [item_from_row(r) for r in rows]

    def mark_sent(self, item_id: int) -> None:
        """The row's alert was accepted by its channel."""
        self._update(
            "UPDATE outbox SET state = 'sent', done_at = ? WHERE id = ?",
            (to_us(self._clock()), item_id),
        )

    def mark_failed(self, item_id: int, *, error: str, next_at: datetime) -> None:
        """One more failed attempt; the row waits until `next_at`."""
        self._update(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ? "
            "WHERE id = ? AND state = 'pending'",
            (error, to_us(next_at), item_id),
        )

    def mark_dead(self, item_id: int, *, error: str) -> None:
        """Give up on the row; it stays in the store for `outbox` to show."""
        self._update(
            "UPDATE outbox SET state = 'dead', last_error = ?, done_at = ? "
            "WHERE id = ? AND state = 'pending'",
            (error, to_us(self._clock()), item_id),
        )

    def _update(self, sql: str, params: tuple[object, ...]) -> int:
        with self._errors("write outbox"), self._tx() as db:
            return db.execute(sql, params).rowcount

    def outbox(self, *, state: str | None = None) -> list[OutboxItem]:
        """Rows in one state, or (None) every row not yet sent: pending and dead."""
        where, params = ("state = ?", (state,)) if state else ("state != 'sent'", ())
        with self._errors("read outbox"):
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM outbox WHERE {where} ORDER BY filled_at, id",  # noqa: S608  # fixed SQL fragments
                params,
            ).fetchall()
        return [item_from_row(r) for r in rows]

    def retry_dead(self, *, step: int = PRUNE_STEP) -> int:
        """Requeue every dead row: attempts reset, due now, and a fresh max_age from now.

        In short transactions of `step` rows, as `purge_dead`: the daemon beside it must not
        wait on the write lock past its busy timeout.
        """
        now = to_us(self._clock())
        return self._in_steps(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?, created_at = ?, "
            "done_at = NULL WHERE id IN (SELECT id FROM outbox WHERE state = 'dead' LIMIT ?)",
            (now, now),
            step,
        )

    def purge_dead(self, *, step: int = PRUNE_STEP) -> int:
        """Delete every dead row, in short transactions of `step` rows.

        One DELETE of 600,000 dead rows held the write lock over a second, and the daemon
        running beside it (as this command may) stopped on its busy timeout.
        """
        return self._in_steps(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = 'dead' LIMIT ?)",
            (),
            step,
        )

    def _in_steps(self, sql: str, params: tuple[object, ...], step: int) -> int:
        """Run `sql` (its last parameter the step) until it touches fewer than `step` rows."""
        total = 0
        while True:
            done = self._update(sql, (*params, step))
            total += done
            if done < step:
                return total

    def has_alert(self, *, fill_key: str, rule: str, target: str, derived: bool = False) -> bool:
        """Whether this alert has a row for this target, in any state; with `derived`, also
        under a rule name derived from `rule` (`rule→fallback`, `rule→retarget`...)."""
        sql = "SELECT 1 FROM outbox WHERE fill_key = ? AND target = ? AND (rule = ?"
        params: tuple[object, ...] = (fill_key, target, rule)
        if derived:  # substr, not LIKE: a rule's name may hold % or _
            sql += " OR substr(rule, 1, ?) = ?"
            params += (len(rule) + 1, rule + "→")  # every derived name's suffix starts so
        with self._errors("read outbox"):
            row = self._db.execute(sql + ")", params).fetchone()
        return row is not None

    def pending_count(self) -> int:
        """Rows pending, from the pending index: the metrics and health checks ask it often,
        and counting every state walked the whole outbox (10 ms at 200,000 sent rows)."""
        with self._errors("read outbox"):
            row = self._db.execute(
                "SELECT count(*) FROM outbox INDEXED BY outbox_pending WHERE state = 'pending'"
            ).fetchone()
        return int(row[0])

    def pending_by_channel(self) -> dict[str, tuple[int, datetime]]:
        """Per channel: how many rows are pending and when the oldest was queued (for /healthz
        and the oldest-pending gauge: one stuck channel must show even when others deliver)."""
        with self._errors("read outbox"):
            rows = self._db.execute(
                "SELECT channel, count(*), min(created_at) FROM outbox "
                "WHERE state = 'pending' GROUP BY channel"
            ).fetchall()
        return {str(channel): (int(n), from_us(int(oldest))) for channel, n, oldest in rows}

    def counts(self) -> dict[str, int]:
        """How many rows are pending, dead and sent."""
        result = {"pending": 0, "dead": 0, "sent": 0}
        with self._errors("read outbox"):
            rows = self._db.execute("SELECT state, count(*) FROM outbox GROUP BY state")
            result.update({str(state): int(n) for state, n in rows})
        return result

    def prune(
        self, *, fills_before: datetime, sent_before: datetime, limit: int = PRUNE_STEP
    ) -> int:
        """Forget up to `limit` fill keys filled before `fills_before` and rows sent before
        `sent_before`; returns how many went (call again while it returns `limit`).

        Keeps the file bounded; pending and dead rows are never pruned. In steps, each one
        short transaction: after a long downtime one DELETE of a million keys held the event
        loop for most of a second. Sent rows go first, so that a sent row of a fill whose key
        goes is gone before it: the keys that record a retarget are dated by their fill, and
        the outbox row such a key explains must not outlive it (a later retarget would collide
        with it and be silently ignored).
        """
        with self._errors("prune"), self._tx() as db:
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
