"""Where fills waiting for their market title live in the state file (see title_wait.py).

Apart from `store.py`'s fills and outbox: a held fill is durable but not yet seen, so it is
kept whole, as JSON, until the pipeline judges it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from notifier.sqlitefile import SqliteFile
from notifier.store_schema import from_us, to_us


class TitleWaitTable:
    """The `title_waits` table of one state file: key -> (waiting since, fill as JSON)."""

    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    def hold(self, fills: Sequence[tuple[str, datetime, str]]) -> None:
        """Keep (key, waiting since, fill as JSON) durably; a fill held already keeps its since.

        Deferrable, like the store's `record`: a held fill and the fills of its batch commit
        together.
        """
        if not fills:
            return
        rows = [(key, to_us(since), data) for key, since, data in fills]
        with self._file.errors("hold fills"), self._file.write(deferrable=True) as db:
            db.executemany(
                "INSERT OR IGNORE INTO title_waits (key, since, fill) VALUES (?, ?, ?)", rows
            )

    def held(self) -> list[tuple[str, datetime, str]]:
        """Every held fill as (key, waiting since, fill as JSON), longest waiting first."""
        with self._file.errors("read held fills"):
            rows = self._file.db.execute(
                "SELECT key, since, fill FROM title_waits ORDER BY since, key"
            ).fetchall()
        return [(str(key), from_us(int(since)), str(data)) for key, since, data in rows]

    def release_recorded(self) -> int:
        """Forget held fills that are recorded already (judged); how many there were."""
        with self._file.errors("release held fills"), self._file.write() as db:
            return int(
                db.execute("DELETE FROM title_waits WHERE key IN (SELECT key FROM fills)").rowcount
            )

    def release(self, keys: Sequence[str]) -> None:
        """Forget held fills now judged (deferrable: one transaction with their records)."""
        if not keys:
            return
        with self._file.errors("release held fills"), self._file.write(deferrable=True) as db:
            db.executemany("DELETE FROM title_waits WHERE key = ?", [(key,) for key in keys])
