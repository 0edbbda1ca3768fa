"""The shape the architecture asks for, checked on the source: the core imports no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "notifier"

# The core's roots (docs: events, normalization, config, rules, templates, shaping, back-off,
# errors); everything of the package they import, however indirectly, is core too.
CORE_ROOTS = (
    "events",
    "normalize",
    "live_frames",
    "config",
    "rules",
    "render",
    "release_render",
    "shaping",
    "digests",
    "recurrence",
    "backoff",
    "errors",
)
EDGES = frozenset(
    {"asyncio", "socket", "ssl", "selectors", "subprocess", "sqlite3", "threading", "signal"}
    | {"httpx", "httpcore", "websockets", "apprise", "requests", "urllib3"}
)
# Where the core uses an edge library on purpose, and why.
ALLOWED = {
    # A base URL is refused at load by the parser of the client that will use it (pure
    # parsing): a URL our own check passed and httpx refused would fail only at connect.
    ("feedconfig", "httpx"),
}


def _imports(module: str) -> tuple[set[str], set[str]]:
    """The package modules and the outside top-level modules `module` imports."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    inside = {n.removeprefix("notifier.") for n in names if n.startswith("notifier.")}
    outside = {n.split(".")[0] for n in names if n.split(".")[0] != "notifier"}
    return inside, outside


def core_modules() -> set[str]:
    """The roots and every package module they reach."""
    seen: set[str] = set()
    todo = list(CORE_ROOTS)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_imports(module)[0])
    return seen


def test_the_core_imports_no_io_however_indirectly() -> None:
    """No module the core reaches imports asyncio, sockets, threads, SQLite, HTTP or apprise
    (but the exceptions listed with their reasons)."""
    found = {
        (module, name)
        for module in core_modules()
        for name in _imports(module)[1] & EDGES
        if (module, name) not in ALLOWED
    }
    assert found == set()


def test_the_core_reaches_no_edge_module() -> None:
    """The core never imports an edge of the package (the feed, the store, delivery, the CLI)."""
    edges = {"feed", "store", "deliver", "service", "cli", "markets", "metrics", "logs", "demo"}
    assert core_modules() & edges == set()


def test_every_allowed_exception_is_still_needed() -> None:
    """An exception whose import is gone is taken off the list, so none outlives its reason."""
    assert all(name in _imports(module)[1] for module, name in ALLOWED)
