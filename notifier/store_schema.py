"""The state store's on-disk shape: tables, migrations, the outbox row type and time encoding.

Apart from `store.py`'s queries so the schema reads in one place. Times are stored as integer
epoch microseconds: exact, sortable and cheap to index.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from notifier.events import Alert
from notifier.sqlitefile import Migration

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
COLUMNS = (
    "id, fill_key, rule, channel, target, title, body, filled_at, created_at, attempts, "
    "next_at, last_error, state, body_format"
)


def to_us(at: datetime) -> int:
    """An aware datetime as epoch microseconds; a naive one is refused."""
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at.isoformat()} given to the state store; use UTC")
    return (at - _EPOCH) // _MICRO


def from_us(value: int) -> datetime:
    """Epoch microseconds back to an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=value)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One alert for one target, as the outbox holds it; `state` is pending, sent or dead."""

    id: int
    fill_key: str
    rule: str
    channel: str
    target: str
    title: str
    body: str
    filled_at: datetime
    created_at: datetime
    attempts: int
    next_at: datetime
    last_error: str | None
    state: str
    # The format title and body were written in; None for a row an older notifier queued
    # (it is sent in its channel's format of the time).
    body_format: str | None = None

    @property
    def requeued(self) -> bool:
        """Put back by `outbox --retry-dead` and not tried since: its attempts reset to 0, its
        dead-lettering's error kept (a row recorded fresh, a fallback's or a move's, has none)."""
        return self.state == "pending" and self.attempts == 0 and self.last_error is not None

    @property
    def identity(self) -> str:
        """What names the alert for good (its id may be reused once its row is deleted)."""
        return f"{self.fill_key}|{self.rule}|{self.target}"


def item_from_row(row: tuple[Any, ...]) -> OutboxItem:
    """An OutboxItem from a row selected with `COLUMNS` (times come back as microseconds)."""
    id_, fill_key, rule, channel, target, title, body = row[:7]
    attempts, error, state, body_format = row[9], row[11], row[12], row[13]
    filled, created, next_at = from_us(row[7]), from_us(row[8]), from_us(row[10])
    return OutboxItem(
        id_,
        fill_key,
        rule,
        channel,
        target,
        title,
        body,
        filled,
        created,
        attempts,
        next_at,
        error,
        state,
        body_format,
    )


def outbox_row(a: Alert, now: int, created: int | None = None) -> tuple[object, ...]:
    """An alert as outbox values (?1 to ?10): created now (unless told) and due now."""
    created = now if created is None else created
    return (
        a.fill_key,
        a.rule,
        a.channel,
        a.target,
        a.title,
        a.body,
        to_us(a.filled_at),
        created,
        now,
        a.body_format,
    )


def _migrate_0_to_1(db: sqlite3.Connection) -> None:
    """The first schema: fills (dedupe), the watermark, the outbox and a small key-value table."""
    db.execute(
        "CREATE TABLE fills (key TEXT PRIMARY KEY, filled_at INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX fills_by_time ON fills (filled_at)")
    db.execute(
        "CREATE TABLE watermark (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL)"
    )
    db.execute(
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            fill_key TEXT NOT NULL, rule TEXT NOT NULL, channel TEXT NOT NULL,
            target TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
            filled_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL,
            last_error TEXT, state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'sent', 'dead')),
            done_at INTEGER,
            UNIQUE (fill_key, rule, target))"""
    )
    # Lanes read the head of one target's pending rows in fill order: keep exactly that indexed.
    db.execute(
        "CREATE INDEX outbox_pending ON outbox (target, filled_at, id) WHERE state = 'pending'"
    )
    db.execute("CREATE INDEX outbox_by_state ON outbox (state, done_at)")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    """Fills waiting for their market title (see title_wait.py): durable, but not yet seen."""
    db.execute(
        "CREATE TABLE title_waits (key TEXT PRIMARY KEY, since INTEGER NOT NULL, "
        "fill TEXT NOT NULL) WITHOUT ROWID"
    )


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    """Shaping state as one row per entry (shaping_table.py), not one blob rewritten whole."""
    db.execute(
        "CREATE TABLE shaping (rule TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, "
        "data TEXT NOT NULL, PRIMARY KEY (rule, kind, key)) WITHOUT ROWID"
    )


def _migrate_3_to_4(db: sqlite3.Connection) -> None:
    """Sent rows by fill time: the hourly prune found them by looking at every sent row
    (0.75 s of the event loop at 2,000,000 of them, even with nothing to delete)."""
    db.execute("CREATE INDEX outbox_sent_by_fill ON outbox (filled_at) WHERE state = 'sent'")


def _migrate_4_to_5(db: sqlite3.Connection) -> None:
    """Pending rows by age, per target: the fallback sweep finds the rows queued behind a
    failing one for fallback_after (reroute.FallbackPolicy) without a scan of them."""
    db.execute(
        "CREATE INDEX outbox_pending_by_age ON outbox (target, created_at, id) "
        "WHERE state = 'pending'"
    )


def _migrate_5_to_6(db: sqlite3.Connection) -> None:
    """The format each row was written in (channels.NAME.body_format): a row keeps it through
    a reload that changes its channel's format and on its way to a fallback channel."""
    db.execute("ALTER TABLE outbox ADD COLUMN body_format TEXT")


# A skip scan over the pending index: one index probe per target, however long the backlog
# (SELECT DISTINCT walked every pending row: 28 ms at 100,000, on every notify()).
PENDING_TARGETS = """    WITH RECURSIVE t (target) AS (
        SELECT min(target) FROM outbox INDEXED BY outbox_pending WHERE state = 'pending'
        UNION ALL
        SELECT (SELECT min(target) FROM outbox INDEXED BY outbox_pending
                WHERE state = 'pending' AND target > t.target)
        FROM t WHERE t.target IS NOT NULL)
    SELECT target FROM t WHERE target IS NOT NULL"""

# Schema migrations: MIGRATIONS[n] turns version n into n + 1, inside one transaction.
MIGRATIONS: dict[int, Migration] = {
    0: _migrate_0_to_1,
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
    3: _migrate_3_to_4,
    4: _migrate_4_to_5,
    5: _migrate_5_to_6,
}
SCHEMA_VERSION = max(MIGRATIONS) + 1
