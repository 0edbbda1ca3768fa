"""A mapping that keeps only recent keys: for memories a long-running daemon must bound."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class RecentMap(Generic[K, V]):
    """Holds the last `generation` to 2 x `generation` keys written, forgetting older ones.

    Two generations instead of an LRU: a write is one dict store, and a key written again
    moves to the current generation, so what is still in use is kept.
    """

    __slots__ = ("_current", "_generation", "_previous")

    def __init__(self, generation: int) -> None:
        self._generation = generation
        self._current: dict[K, V] = {}
        self._previous: dict[K, V] = {}

    def get(self, key: K, default: D) -> V | D:
        """The value last written for `key`, or `default` if none or forgotten."""
        current = self._current
        if key in current:
            return current[key]
        return self._previous.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._current or key in self._previous

    def __setitem__(self, key: K, value: V) -> None:
        self._current[key] = value
        if len(self._current) >= self._generation:
            self._previous, self._current = self._current, {}

    def __len__(self) -> int:
        """Keys held (one written in both generations counts twice: an upper bound)."""
        return len(self._current) + len(self._previous)
