"""YAML for people: a located tree of text, without pyyaml's surprises.

pyyaml reads `No` as False, `0.3` as a binary float, `0xdef0123` as an int, and keeps the last
of two duplicate keys in silence. This reader composes the document with a SafeLoader subclass
that resolves nothing, then builds a tree in which every scalar stays its source text (with its
line), duplicate keys are problems, and `${VAR}` / `${VAR:-default}` are expanded from an
injected environment (envrefs.py). The config module interprets the text per key, so
`max: 0.3` becomes Decimal("0.3") exactly and `outcome: No` is the string "No".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

import yaml

from notifier.config_problems import Problems
from notifier.envrefs import EnvRefs
from notifier.yaml_mistakes import cut_by_comment, split_numbers, syntax_hint, tag_problem

Kind = Literal["null", "bool", "yaml11_bool", "number", "str"]

_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_YAML11_BOOL = frozenset(
    "y Y yes Yes YES n N no No NO on On ON off Off OFF".split()  # noqa: SIM905 -- reads as a table
)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# Bounds on what one file may expand to: an alias used ten times at each of seven levels is
# ten million nodes (a 400-byte file), and deep nesting overflows the recursive walk.
MAX_NODES = 1_000_000  # ten thousand rules take about 200,000
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Scalar:
    """A scalar's text after env expansion; `plain` when unquoted (so it may be a number etc.)."""

    text: str
    line: int
    plain: bool

    @property
    def kind(self) -> Kind:
        """What the text means when unquoted; quoted text is always a string."""
        if not self.plain:
            return "str"
        if self.text in _NULL:
            return "null"
        if self.text in _BOOL:
            return "bool"
        if self.text in _YAML11_BOOL:
            return "yaml11_bool"
        if _NUMBER.fullmatch(self.text):
            return "number"
        return "str"

    @property
    def boolean(self) -> bool | None:
        """True/False for true/false (any YAML 1.2 spelling), else None."""
        return _BOOL.get(self.text) if self.plain else None

    def decimal(self) -> Decimal | None:
        """The text as an exact finite decimal, quoted or not; None if it is not a number."""
        text = self.text.strip()
        if not _NUMBER.fullmatch(text):
            return None
        try:
            return Decimal(text)
        except InvalidOperation:  # pragma: no cover -- the pattern admits only valid decimals
            return None


class YMap(dict[str, "Node"]):
    """A mapping with the line of itself and of each key."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}


class YSeq(list["Node"]):
    """A sequence with its line."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line


Node = Scalar | YMap | YSeq


def describe(node: Node) -> str:
    """A node's kind for "wrong type" messages (never its text: it may be a secret)."""
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    return {
        "null": "nothing (null)",
        "bool": "a boolean",
        "yaml11_bool": "a string",
        "number": "a number",
        "str": "a string",
    }[node.kind]


# libyaml's SafeLoader when present: it composes about ten times faster (a reload of 10,000
# rules); the resolver, which we empty, is Python's in both.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]  # chosen at import time
    """A SafeLoader that resolves no implicit types: every plain scalar stays text."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}  # noqa: RUF012 -- pyyaml's class-level table, emptied on purpose


class _TooBig(Exception):
    """The document expands past MAX_NODES; raised out of the walk to stop it at once."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def read(
    text: str,
    problems: Problems,
    *,
    env: Mapping[str, str],
    lenient: Collection[str] | Callable[[str], bool] = (),
    literal: Callable[[str, str], bool] | None = None,
    secret: Callable[[str], bool] = lambda path: False,
    stand_in: Callable[[str], str | None] = lambda path: None,
) -> Node | None:
    """The document as a located tree, or None when empty or not YAML (problems say why).

    `lenient` lists key paths (or says by a predicate) where an unset `${VAR}` is quietly
    empty instead of an error.
    `literal(path, reference)` says which `${reference}` to keep as written (a template's
    "${price}" is a dollar sign before the placeholder {price}, not a variable).
    `secret(path)` says where a value is a secret: a problem there never quotes a reference
    (the key pasted in place of the variable's name would be echoed).
    `stand_in(path)`, when not None, is the whole value of a path one of whose variables is
    unset (a dry run that needs no channel URL).
    """
    try:
        root = _compose(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        at = text.count("\n", 0, exc.position) + 1
        what = f"U+{exc.character:04X}" if isinstance(exc.character, int) else "a character"
        problems.add(at, "", f"{what} cannot appear in YAML: remove it")
        return None
    except RecursionError:
        problems.add(None, "", f"nested deeper than {MAX_DEPTH} levels")
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "unreadable"
        if exc.problem and exc.context and exc.context_mark is not None:
            what += f" ({exc.context} at line {exc.context_mark.line + 1})"
        problems.add(line, "", f"YAML syntax error: {what}{syntax_hint(text, exc)}")
        return None
    except yaml.YAMLError as exc:
        problems.add(None, "", f"YAML error: {exc}")
        return None
    if root is None:
        return None
    walker = _Walker(problems, env, lenient, literal, secret, stand_in, text.splitlines())
    try:
        return walker.node(root, "")
    except _TooBig as exc:
        message = f"expands to more than {MAX_NODES:,} values: an alias used over and over?"
        problems.add(exc.line, "", message)
        return None


def _compose(text: str) -> yaml.Node | None:
    """The composed document (the loader is built inside the caller's error handling: the
    pure-Python reader already refuses a control character while being built)."""
    loader = _Loader(text)
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]  # pyyaml is untyped
    finally:
        loader.dispose()


# The tags a node has when the file names none (this loader's resolver resolves nothing).
_DEFAULT_TAGS = frozenset(
    {"tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}
)


class _Walker:
    """Turns composed nodes into Scalar/YMap/YSeq, checking keys and expanding variables."""

    def __init__(
        self,
        problems: Problems,
        env: Mapping[str, str],
        lenient: Collection[str] | Callable[[str], bool],
        literal: Callable[[str, str], bool] | None,
        secret: Callable[[str], bool],
        stand_in: Callable[[str], str | None],
        lines: list[str],
    ):
        self.problems = problems
        self.lines = lines
        self.refs = EnvRefs(env, lenient=lenient, literal=literal, secret=secret, stand_in=stand_in)
        self.active: set[int] = set()
        self.count = 0  # nodes built so far, an alias's each time it is used

    def node(self, node: yaml.Node, path: str) -> Node:
        line = node.start_mark.line + 1
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(line)
        if len(self.active) >= MAX_DEPTH and not isinstance(node, yaml.ScalarNode):
            shown = path if len(path) <= 60 else path[:57] + "..."
            self.problems.add(line, shown, f"nested deeper than {MAX_DEPTH} levels")
            self.problems.silence(path)
            return Scalar("", line, plain=True)
        if node.tag not in _DEFAULT_TAGS:
            # `!!int 5`, `!!binary ...`, `!env X`: this loader resolves no tags, so one would be
            # dropped silently and its value read as plain text.
            self.problems.add(line, path, tag_problem(node.tag))
            self.problems.silence(path)
            return Scalar("", line, plain=True)
        if isinstance(node, yaml.ScalarNode):
            text = str(node.value)
            if "$" in text:
                text = self.refs.expand(text, path, line, self.problems)
            # Plain style is None from pyyaml's parser and "" from libyaml's; a block scalar
            # (| or >) ends on a later line, where a `#{` line is a comment of its own.
            cut = None
            if node.style in (None, "", "'", '"'):
                cut = cut_by_comment(self.lines, node.end_mark, quoted=bool(node.style))
            if cut is not None:
                self.problems.add(line, path, cut)
                self.problems.silence(path)
            return Scalar(text, line, plain=not node.style)
        if id(node) in self.active:
            self.problems.add(line, path, "recursive YAML alias")
            self.problems.silence(path)
            return Scalar("", line, plain=True)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                seq = YSeq(line)
                seq.extend(self.node(item, f"{path}[{i}]") for i, item in enumerate(node.value))
                return seq
            assert isinstance(node, yaml.MappingNode)
            return self.mapping(node, path, line)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: str, line: int) -> YMap:
        out = YMap(line)
        merges: list[tuple[int, yaml.Node]] = []  # `<<: *defaults` values, in order
        splits = split_numbers(node.value) if node.flow_style else {}
        pieces = 0  # entries still to skip: the pieces of a number split at its commas
        for index, (key_node, value_node) in enumerate(node.value):
            key_line = key_node.start_mark.line + 1
            if pieces:
                pieces -= 1
                continue
            split, pieces = splits.get(index, (None, 0))
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.add(key_line, path, "a key must be a plain name, not a list/mapping")
                continue
            key = str(key_node.value)
            if key_node.tag not in _DEFAULT_TAGS:
                self.problems.add(key_line, path, tag_problem(key_node.tag))
                continue
            if key == "<<" and not key_node.style:  # a merge key: this loader resolves no tags
                if merges:  # a duplicate key, as any other: YAML keeps one of them
                    first = merges[0][0]
                    message = (
                        f"duplicate key '<<' (first at line {first}): merge several with "
                        "one, as <<: [*a, *b]"
                    )
                    self.problems.add(key_line, f"{path}.<<" if path else "<<", message)
                    continue
                merges.append((key_line, value_node))
                continue
            child = f"{path}.{key}" if path else key
            if key in out:
                first = out.key_lines[key]
                self.problems.add(key_line, child, f"duplicate key {key!r} (first at line {first})")
            elif not path and key.startswith("x-"):
                # Shared settings (`x-defaults: &defaults`) are read where an alias puts them,
                # at the rule's or channel's path: read here too, their templates' `${price}`
                # and their secrets would be judged as neither.
                out.key_lines[key] = key_line
                out[key] = Scalar("", key_line, plain=True)
            else:
                out.key_lines[key] = key_line
                out[key] = self.node(value_node, child)
            if split is not None:  # said at the first piece, where the comma is
                self.problems.add(node.value[index + 1][0].start_mark.line + 1, child, split)
                self.problems.silence(child)
        for key_line, value_node in merges:
            self.merge(out, value_node, path, key_line)
        return out

    def merge(self, out: YMap, value_node: yaml.Node, path: str, line: int) -> None:
        """YAML's merge key: `<<: *defaults` (or a list of such) gives the mapping each key it
        does not write itself, the first source first (as YAML 1.1 defines it)."""
        merged = self.node(value_node, path)
        sources = list(merged) if isinstance(merged, YSeq) else [merged]
        maps = [source for source in sources if isinstance(source, YMap)]
        if len(maps) != len(sources):
            message = "<< takes a mapping (an alias such as *defaults) or a list of them"
            self.problems.add(line, path, message)
            self.problems.silence(path)
            return
        for source in maps:
            for key, value in source.items():
                if key not in out:
                    out.key_lines[key] = source.key_lines[key]
                    out[key] = value
