"""Where the shaping stage's held state lives in the state file: one row per entry.

Apart from `store.py`'s fills and outbox: the stage reads every entry once at start and then
writes what changed after each batch (`StateChanges`), in one transaction with the batch's
records, so a held fill is in the file exactly when its record is.
"""

from __future__ import annotations

from notifier.shaping_state import StateChanges
from notifier.sqlitefile import SqliteFile

# The whole-state snapshot an older notifier kept in the meta table, replaced by rows.
LEGACY_KEY = "shaping"


class ShapingTable:
    """The `shaping` table of one state file: (rule, kind, key) -> data as JSON text."""

    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    def entries(self) -> list[tuple[str, str, str, str]]:
        """Every stored entry as (rule, kind, key text, data), in a stable order."""
        with self._file.errors("read shaping state"):
            rows = self._file.db.execute(
                "SELECT rule, kind, key, data FROM shaping ORDER BY rule, kind, key"
            ).fetchall()
        return [(str(r), str(k), str(key), str(d)) for r, k, key, d in rows]

    def legacy_snapshot(self) -> str | None:
        """The whole-state snapshot an older notifier left, if it is still there."""
        with self._file.errors("read shaping state"):
            row = self._file.db.execute(
                "SELECT value FROM meta WHERE key = ?", (LEGACY_KEY,)
            ).fetchone()
        return None if row is None else str(row[0])

    def save(self, changes: StateChanges) -> None:
        """Apply `changes` in one transaction, which also commits any open batch of records."""
        with self._file.errors("write shaping state"), self._file.write() as db:
            if changes.replace:
                db.execute("DELETE FROM shaping")
                db.execute("DELETE FROM meta WHERE key = ?", (LEGACY_KEY,))
            db.executemany("DELETE FROM shaping WHERE rule = ?", [(r,) for r in changes.cleared])
            db.executemany(
                "DELETE FROM shaping WHERE rule = ? AND kind = ? AND key = ?", changes.deletes
            )
            db.executemany(
                "INSERT INTO shaping (rule, kind, key, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (rule, kind, key) DO UPDATE SET data = excluded.data",
                changes.puts,
            )
