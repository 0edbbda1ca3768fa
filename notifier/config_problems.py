"""A config file's problems, collected so that every one is reported at once.

Apart from the YAML reader (yamltree.py) that finds many of them: each section's parser adds
its own here too. What a problem says is kept from quoting a value the environment supplied
(a secret set in the wrong place shows as its `${NAME}`), and one about a value that is
nothing says why, when an empty variable made it so.
"""

from __future__ import annotations

import dataclasses
import re

from notifier.errors import ConfigError, ConfigProblem

MIN_CONCEALED = 6  # an environment value this long is concealed even inside other text

# A problem about a value that is nothing: a note on why it is (an empty variable) belongs
# there, and not on one about its key (unknown, duplicate, a bad channel name).
_ABOUT_NOTHING = re.compile(r"got nothing|must not be empty")


class Problems:
    """Every problem found in one file, collected so they are all reported at once."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[ConfigProblem] = []
        self.notes: list[ConfigProblem] = []  # worth knowing, not wrong (check-config shows them)
        self._silenced: set[str] = set()
        self._concealed: dict[str, str] = {}  # value from the environment -> what shows instead
        self._notes: dict[str, str] = {}  # path -> why its value is what it is

    def add(
        self, line: int | None, path: str, message: str, *, unset_variable: bool = False
    ) -> None:
        if not self._silenced or not self.silenced(path):
            self.items.append(ConfigProblem(self.file, line, path, message, unset_variable))

    def note(self, line: int | None, path: str, message: str) -> None:
        """Something the file does that its writer may not mean, though it is no problem."""
        self.notes.append(ConfigProblem(self.file, line, path, message))

    def silence(self, path: str) -> None:
        """Drop later problems at or under `path`: they would only echo the first one."""
        self._silenced.add(path)

    def silenced(self, path: str) -> bool:
        """Whether problems at `path` are dropped (it or a parent already has the real one)."""
        while True:
            if path in self._silenced:
                return True
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                return False
            path = path[:cut]

    def conceal(self, value: str, shown: str) -> None:
        """Wherever a problem would quote `value`, write `shown` (`${NAME}`) instead."""
        if value:
            self._concealed.setdefault(value, shown)

    def explain(self, path: str, note: str) -> None:
        """Add `note` to a problem at exactly `path` (its value came from an empty variable)."""
        self._notes.setdefault(path, note)

    def raise_if_any(self) -> None:
        """Raise ConfigError with every problem, in file order (unlocated ones last)."""
        if self.items:
            order = sorted(self.items, key=lambda p: (p.line is None, p.line or 0))
            raise ConfigError([self._concealing(p) for p in order])

    def _concealing(self, problem: ConfigProblem) -> ConfigProblem:
        message = problem.message
        if problem.path in self._notes and _ABOUT_NOTHING.search(message):
            message = f"{message} ({self._notes[problem.path]})"
        for value, shown in sorted(self._concealed.items(), key=lambda vs: -len(vs[0])):
            # Quoted whole, at any length; inside other text, once long enough to be no word.
            message = message.replace(repr(value), shown)
            if len(value) >= MIN_CONCEALED:
                message = message.replace(value, shown)
        return dataclasses.replace(problem, message=message)
