"""`${VAR}` and `${VAR:-default}` in config values, expanded from an injected environment.

`$${` is a literal `${`. A mistake is a located problem, never a guess: a bad reference, an
unset variable (unless its key is lenient), a `${...}` inside a default, a `${` never closed, a
secret written as a shell's `$NAME` (which this file does not expand). In a secret's value
(the API key, channel URLs) a problem quotes nothing that could be the secret itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

# The last alternative is a `${` that no `}` closes: it would stay in the value as written.
_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_SHOWN_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,39}")  # an upper-case name, as variables are
_BARE = re.compile(r"\$([A-Z_][A-Z0-9_]{0,39})")  # `$POLYSIM_API_KEY`: a shell's reference


class ProblemSink(Protocol):
    """Where problems go (config_problems.Problems)."""

    def add(
        self, line: int | None, path: str, message: str, *, unset_variable: bool = False
    ) -> None: ...

    def note(self, line: int | None, path: str, message: str) -> None: ...

    def silence(self, path: str) -> None: ...

    def conceal(self, value: str, shown: str) -> None: ...

    def explain(self, path: str, note: str) -> None: ...


class EnvRefs:
    """Expands the references in one file's values."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        lenient: Collection[str] | Callable[[str], bool],
        literal: Callable[[str, str], bool] | None,
        secret: Callable[[str], bool],
        stand_in: Callable[[str], str | None] = lambda path: None,
    ) -> None:
        self.env = env
        # path -> the whole value to use when one of its variables is unset (a dry run's
        # channel URL), or None: the unset variable is a problem as usual.
        self.stand_in = stand_in
        # Key paths where an unset variable is quietly empty: listed, or said by a predicate.
        self.lenient = lenient if callable(lenient) else frozenset(lenient).__contains__
        self.literal = literal  # (path, reference) -> keep `${reference}` as written
        self.secret = secret  # path -> whether its value is a secret

    def expand(self, text: str, path: str, line: int, problems: ProblemSink) -> str:
        """`text` with its references replaced; problems (and "") for the bad ones."""
        bare = _BARE.fullmatch(text)
        if bare is not None and self.secret(path):
            # Taken as written, `$POLYSIM_API_KEY` is a key the venue refuses at start, and
            # `$SLACK_URL` a URL apprise does not know: name the spelling that expands.
            problems.add(
                line,
                path,
                f"${bare.group(1)} is not expanded here: write ${{{bare.group(1)}}} "
                "to read the environment variable",
            )
            problems.silence(path)
            return ""
        whole = _REF.fullmatch(text) is not None  # the value is one reference, nothing else
        unset: list[str] = []  # variables a stand-in covers

        def refuse(message: str, *, unset: bool = False) -> str:
            problems.add(line, path, message, unset_variable=unset)
            problems.silence(path)
            return ""

        def one(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            reference = match.group(1)
            if reference is None:  # `${POLYSIM_API_KEY` with its `}` lost
                return refuse("a ${ is never closed: end the reference with }, or write $${")
            if self.literal is not None and self.literal(path, reference):
                return match.group(0)
            inner = _NAME.fullmatch(reference)
            if inner is None:
                # Echoed only when it cannot be a URL: `${SLACK-URL:-slack://T/B/token}` holds
                # one, and never in a secret's value.
                safe = (
                    len(reference) <= 40
                    and not any(c in reference for c in ":/@")
                    and not self.secret(path)
                )
                shown = f" '${{{reference}}}'" if safe else ""
                return refuse(
                    f"bad variable reference{shown}: write ${{NAME}} or ${{NAME:-default}}, "
                    "NAME of letters, digits and _"
                )
            name, default = inner.group(1), inner.group(2)
            if default is not None and "${" in default:
                # `${A:-${B}}` would be read as `${A:-${B}` and a stray `}`: refused, not guessed.
                return refuse("a ${...} inside a default is not supported: write the default out")
            value = self.env.get(name)
            if default is not None and not value:
                if self.secret(path):
                    # A channel URL's default is often a placeholder (the example config's
                    # are): said, so a variable forgotten where the daemon runs shows.
                    problems.note(
                        line,
                        path,
                        f"{name} is {'empty' if value == '' else 'not set'}: the value written "
                        "after :- is used",
                    )
                return default
            if value == "" and whole:
                # The whole value is "", which reads as nothing: fine where a key may be empty
                # (`metrics.listen` off), and where it may not, its problem names the cause.
                named = _SHOWN_NAME.fullmatch(name) or not self.secret(path)
                problems.explain(
                    path,
                    f"environment variable {name} is set but empty"
                    if named
                    else "the environment variable it names is set but empty",
                )
            if value is not None:
                # The environment's value may be a secret set in the wrong place (the key
                # as base_url): a problem quoting it names the variable instead.
                problems.conceal(value, f"${{{name}}}")
                return value
            if self.lenient(path):
                return ""
            if self.stand_in(path) is not None:
                unset.append(name)
                return ""
            cased = _other_case(name, self.env)
            # In a secret's value only a conventional NAME is shown: a key pasted in its place
            # (`${ps_live_...}`) is a valid name too. The variable found in other capitals is
            # named: that is the environment's own name, not the value written here.
            if self.secret(path) and not _SHOWN_NAME.fullmatch(name):
                if cased is not None:
                    return refuse(
                        "names an environment variable that is not set; names are "
                        f"case-sensitive, and {cased} is set: write ${{{cased}}}",
                        unset=True,
                    )
                return refuse(
                    "names an environment variable that is not set (its name is not shown:"
                    " it does not look like one, and this value is a secret)",
                    unset=True,
                )
            if cased is not None:
                return refuse(
                    f"environment variable {name} is not set; names are case-sensitive, and "
                    f"{cased} is set: write ${{{cased}}}",
                    unset=True,
                )
            if self.secret(path):  # a default for a key or a URL's token would be one in the file
                return refuse(
                    f"environment variable {name} is not set (set it where the daemon runs: "
                    "the shell, or the unit's EnvironmentFile)",
                    unset=True,
                )
            return refuse(
                f"environment variable {name} is not set (set it, or write ${{{name}:-default}})",
                unset=True,
            )

        expanded = _REF.sub(one, text)
        stand_in = self.stand_in(path) if unset else None
        return expanded if stand_in is None else stand_in


def _other_case(name: str, env: Mapping[str, str]) -> str | None:
    """The set variable that `name` spells in other capitals (`${polysim_api_key}` for
    POLYSIM_API_KEY), if exactly one is; None otherwise."""
    folded = name.casefold()
    found = [key for key in env if key != name and key.casefold() == folded and env[key]]
    return found[0] if len(found) == 1 else None
