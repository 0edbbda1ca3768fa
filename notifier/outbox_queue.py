"""The alert outbox as a queue: per-target heads, attempt outcomes, listings and counts.

The rows are written by `StateStore.record` (with the fill they came from, in one transaction);
from there on the deliverer and `notifier outbox` work on them through these methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from notifier.sqlitefile import SqliteFile
from notifier.store_schema import (
    COLUMNS,
    PENDING_TARGETS,
    OutboxItem,
    from_us,
    item_from_row,
    to_us,
)

# The URL key of a row moved to another channel (`retry_dead(to=...)`): no URL has it, so the
# deliverer re-queues the row for that channel's URLs.
MOVED_PREFIX = "moved:"
PRUNE_STEP = 5000  # rows one transaction of a prune, a requeue or a purge touches at most


# A step of dead rows, of every channel or of one (its name the parameter before the step's).
_DEAD_ROWS = (
    "SELECT id FROM outbox WHERE state = 'dead' LIMIT ?",
    "SELECT id FROM outbox WHERE state = 'dead' AND channel = ? LIMIT ?",
)


class OutboxQueue:
    """The outbox rows of one state file; `StateStore` is this plus fills and the watermark."""

    def __init__(self, file: SqliteFile, *, clock: Callable[[], datetime]) -> None:
        self._file = file
        self._clock = clock
        self._db = file.db
        self._errors = file.errors
        self._tx = file.write

    def pending_targets(self) -> list[str]:
        """Targets that have pending rows."""
        with self._errors("read outbox"):
            rows = self._db.execute(PENDING_TARGETS).fetchall()
        return [str(r[0]) for r in rows]

    def changed_elsewhere(self) -> bool:
        """Whether another program wrote to the state file since the last call."""
        return self._file.changed_elsewhere()

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

    def mark_failed(
        self, item_id: int, *, error: str, next_at: datetime, counted: bool = True
    ) -> None:
        """One more failed attempt; the row waits until `next_at`. Not `counted`: the service
        asked for a pause, and a requeued row keeps its one try (see OutboxItem.requeued)."""
        self._update(
            "UPDATE outbox SET attempts = attempts + ?, last_error = ?, next_at = ? "
            "WHERE id = ? AND state = 'pending'",
            (int(counted), error, to_us(next_at), item_id),
        )

    def retry_waiting_now(self, *, unless: Callable[[str], bool]) -> int:
        """Make the pending rows waiting out a back-off due now, but for those whose last
        error is one `unless` says to wait out (a service's own 429); how many. A start does
        it: the usual reason to restart is a channel fixed, whose alerts would otherwise wait
        up to `retry_cap` for a retry the outage scheduled. Attempts stay counted, so a
        channel still down backs off from where it was."""
        now = to_us(self._clock())
        with self._errors("read outbox"):
            waiting = self._db.execute(
                "SELECT id, last_error FROM outbox WHERE state = 'pending' AND next_at > ?",
                (now,),
            ).fetchall()
        due = [(now, row_id) for row_id, error in waiting if not unless(error or "")]
        with self._errors("write outbox"), self._tx() as db:
            db.executemany("UPDATE outbox SET next_at = ? WHERE id = ? AND state = 'pending'", due)
        return len(due)

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

    def settle_formats(self, formats: Mapping[str, str]) -> int:
        """Give the rows an older notifier queued, which name no format, their channel's of now
        (channel -> format): the format they would have gone in. Settled, a row moved to
        another channel later (a fallback, `--retry-dead --to`) keeps it. Rows not yet sent
        only; how many."""
        settled = 0
        for channel, body_format in formats.items():
            settled += self._update(
                "UPDATE outbox SET body_format = ? WHERE body_format IS NULL "
                "AND state IN ('pending', 'dead') AND channel = ?",
                (body_format, channel),
            )
        return settled

    def retry_dead(
        self, *, channel: str | None = None, to: str | None = None, step: int = PRUNE_STEP
    ) -> int:
        """Requeue the dead rows (of `channel`, or all): attempts reset, due now, and a fresh
        max_age from now. With `to`, each is moved to that channel: its URL key becomes one no
        config has, so the daemon re-queues it for `to`'s current URLs, as for a URL a reload
        removed (a channel renamed along with its URL dead-letters what waited for it).

        In short transactions of `step` rows, as `purge_dead`: the daemon beside it must not
        wait on the write lock past its busy timeout.
        """
        now = to_us(self._clock())
        moved = f", channel = ?, target = '{MOVED_PREFIX}' || id" if to is not None else ""
        return self._in_steps(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?, created_at = ?, "  # noqa: S608  # fixed SQL fragments
            f"done_at = NULL{moved} WHERE id IN ({_DEAD_ROWS[channel is not None]})",
            (
                now,
                now,
                *((to,) if to is not None else ()),
                *((channel,) if channel is not None else ()),
            ),
            step,
        )

    def purge_dead(self, *, channel: str | None = None, step: int = PRUNE_STEP) -> int:
        """Delete the dead rows (of `channel`, or all), in short transactions of `step` rows.

        One DELETE of 600,000 dead rows held the write lock over a second, and the daemon
        running beside it (as this command may) stopped on its busy timeout.
        """
        return self._in_steps(
            f"DELETE FROM outbox WHERE id IN ({_DEAD_ROWS[channel is not None]})",  # noqa: S608  # fixed SQL fragments
            (channel,) if channel is not None else (),
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

    def pending_by_target(self) -> dict[tuple[str, str], tuple[int, datetime]]:
        """Per channel and target: how many rows are pending and when the oldest was queued
        (for /healthz: each URL of a channel delivers on its own, and may stall alone)."""
        with self._errors("read outbox"):
            rows = self._db.execute(
                "SELECT channel, target, count(*), min(created_at) FROM outbox "
                "WHERE state = 'pending' GROUP BY channel, target"
            ).fetchall()
        return {
            (str(channel), str(target)): (int(n), from_us(int(oldest)))
            for channel, target, n, oldest in rows
        }

    def counts(self) -> dict[str, int]:
        """How many rows are pending, dead and sent."""
        result = {"pending": 0, "dead": 0, "sent": 0}
        with self._errors("read outbox"):
            rows = self._db.execute("SELECT state, count(*) FROM outbox GROUP BY state")
            result.update({str(state): int(n) for state, n in rows})
        return result
