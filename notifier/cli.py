"""The `notifier` command: run the daemon, try the demo, check and test configs, tend the outbox.

Exit status: 0 success, 1 a fatal condition (key refused, state file unusable, a test send failed),
2 a config or usage error, 70 an unexpected error or one that may clear (the metrics port in use),
130 interrupted by Ctrl-C (a daemon that is up stops gracefully instead, 0; so does the demo),
141 stdout closed by its reader (`| head`). Config errors print every problem, never a
traceback. The systemd unit restarts on 70, never on 1 or 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from notifier import __version__, config, logs
from notifier.closedpipe import drop_stdout
from notifier.errors import (
    ConfigError,
    FatalFeedError,
    ListenError,
    StateBusyError,
    StateError,
    key_prefix,
    os_reason,
)
from notifier.hangup import HangupLatch

if TYPE_CHECKING:
    from notifier.settings import LogSettings, Settings
    from notifier.store import StateStore

log = logging.getLogger("notifier")

EXIT_OK, EXIT_FATAL, EXIT_CONFIG = 0, 1, 2
EXIT_SOFTWARE = 70  # sysexits' EX_SOFTWARE: not a verdict on the key, file or config
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as `git log | head` ends
DEFAULT_CONFIG = "config.yaml"


def entry(*, hangups: HangupLatch | None = None) -> NoReturn:
    """Run the command line (after `launch.entry` holds SIGHUP), then leave at once.

    apprise sends on its own worker threads; one still blocked on a service that does not
    answer would hold the interpreter's exit for the whole send timeout, breaking the promise
    to stop within seconds. Everything that matters is done by then: the state file is
    closed, an unfinished send stays pending and goes out after the next start.
    """
    try:
        code = main(hangups=hangups)  # its errors go to stderr, whose reader may be gone too
        sys.stdout.flush()  # a pipe's output is buffered: this is often its first write
    except BrokenPipeError:
        drop_stdout()
        code = EXIT_BROKEN_PIPE
    except KeyboardInterrupt:  # while parsing arguments, before main's own handler
        code = EXIT_INTERRUPTED
    with contextlib.suppress(OSError):  # a closed stderr: nothing left to say it on
        sys.stderr.flush()
        logging.shutdown()
    os._exit(code)


def main(argv: Sequence[str] | None = None, *, hangups: HangupLatch | None = None) -> int:
    """Parse the arguments, run one command, return its exit status (callable in-process).

    `hangups`: a SIGHUP latch installed before the CLI was imported, for `run` to take over.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    args.hangups = hangups
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    if args.command == "demo" and args.send and args.config is None:
        parser.error("demo --send needs --config: the demo's own rules have no channels")
    try:
        _configure_logging(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        count = len(exc.problems)
        heading = f"config error: {count} problem{'' if count == 1 else 's'}"
        _last_word(f"{heading}\n{exc}", prefix="")  # one JSON record under JSON logging
        return EXIT_CONFIG
    except StateBusyError as exc:  # may clear: exit so that the unit restarts us
        _last_word(f"stopping: {exc}")
        return EXIT_SOFTWARE
    except (FatalFeedError, StateError) as exc:
        _last_word(f"fatal: {exc}")
        return EXIT_FATAL
    except ListenError as exc:
        _last_word(str(exc))
        return EXIT_SOFTWARE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        drop_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        # A bug or an unforeseen condition: said through logging (a JSON line under
        # --log-format json), with an exit status the unit restarts on.
        log.critical("unexpected error, exiting: %r", exc, exc_info=True)
        return EXIT_SOFTWARE
    return code


# -- commands ---------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    if args.hangups is not None:  # held since launch.entry, until the process exits
        return _run_held(args, args.hangups)
    # Called in-process: hold SIGHUP before the slow part (imports, config, state file), a
    # reload then must not kill us, and give it back to the caller after.
    hangups = HangupLatch().install()
    try:
        return _run_held(args, hangups)
    finally:
        hangups.restore()


def _run_held(args: argparse.Namespace, hangups: HangupLatch) -> int:
    from notifier import eventloop, keepalive
    from notifier.service import Service

    path = Path(args.config)
    settings = _load(path)
    _configure_logging(args, settings.log)
    keepalive.install()  # the daemon sends alert after alert to the same hosts

    async def go() -> None:
        watch = path if args.watch else None
        service = Service(settings, reload=lambda: _load(path), watch=watch, hangups=hangups)
        try:
            await service.run()
        except* FatalFeedError as group:
            raise group.exceptions[0] from None
        except* StateError as group:
            raise group.exceptions[0] from None

    eventloop.run(go())
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from notifier.demo import run_demo

    try:
        return asyncio.run(run_demo(fills=args.fills, config_path=args.config, send=args.send))
    except KeyboardInterrupt:  # how the demo is meant to stop
        return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    from notifier.channels import ChannelSet
    from notifier.render import fill_values

    settings = _load(Path(args.path))
    channels = ChannelSet.build(settings.channels, delivery=settings.delivery)
    for rule in settings.rules.rules:  # as `run` would render them, on a sample fill
        values = fill_values(config.SAMPLE_FILL, rule=rule.name)
        rule.title.render(values)
        rule.body.render(values)
    enabled = sum(rule.enabled for rule in settings.rules.rules)
    urls = sum(len(channels.targets(name)) for name in channels.names)
    print(
        f"{args.path}: ok: {len(settings.rules.rules)} rules ({enabled} enabled), "
        f"{len(channels.names)} channels ({urls} URLs)"
    )
    return EXIT_OK


def _test(args: argparse.Namespace) -> int:
    from notifier.replay import replay

    settings = _load(Path(args.path), require_api_key=False)
    try:
        lines = [args.fill] if args.fill is not None else _read_lines(args.fills)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"notifier test: cannot read --fills {args.fills}: {os_reason(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(replay(settings, lines, send=args.send, out=sys.stdout))


def _send_test(args: argparse.Namespace) -> int:
    from notifier.channels import ChannelSet

    settings = _load(Path(args.config), require_api_key=False)
    channels = ChannelSet.build(settings.channels, delivery=settings.delivery)
    if args.channel is not None and args.channel not in channels.names:
        names = ", ".join(channels.names)
        print(f"no channel named {args.channel!r} (channels: {names})", file=sys.stderr)
        return EXIT_CONFIG
    results = asyncio.run(channels.send_test(args.channel))
    for target, result in results:
        mark = "ok" if result.ok else f"FAILED: {result.error}"
        print(f"{target.channel}: {target.display}: {mark}")
    return EXIT_OK if all(r.ok for _, r in results) else EXIT_FATAL


def _outbox(args: argparse.Namespace) -> int:
    from notifier.store import StateStore

    path = config.load_state(Path(args.config)).path
    try:
        found = path.exists()
    except OSError as exc:  # a directory we may not enter: Python 3.11 raises, not False
        raise StateError(f"state file {path}: cannot open: {exc.strerror}") from None
    if not found:  # opening would create it: a typo would report an empty outbox
        raise StateError(
            f"state file {path}: not found (the daemon creates it on its first run; "
            "is this the config it runs with?)"
        )
    # A listing only reads: no write lock to wait for, and a read-only file is enough.
    changes = args.retry_dead or args.purge_dead
    with StateStore(path, read_only=not changes) as store:
        if args.retry_dead:
            print(f"requeued {store.retry_dead()} dead alert(s)")
        elif args.purge_dead:
            print(f"removed {store.purge_dead()} dead alert(s)")
        else:
            _print_outbox(store, sys.stdout)
    return EXIT_OK


def _print_outbox(store: StateStore, out: TextIO) -> None:
    items = store.outbox(state="pending") + store.outbox(state="dead")
    counts = store.counts()
    print(f"pending {counts.get('pending', 0)}, dead {counts.get('dead', 0)}", file=out)
    held = store.title_waits.held()
    if held:
        print(
            f"{len(held)} fill(s) wait for their market title, the oldest since "
            f"{held[0][1]:%Y-%m-%d %H:%M:%S}Z: the daemon judges them once it has it",
            file=out,
        )
    for item in items:
        error = f"  last error: {item.last_error}" if item.last_error else ""
        print(
            f"#{item.id} {item.state:<7} {item.channel}/{item.rule} attempts={item.attempts} "
            f"filled {item.filled_at:%Y-%m-%d %H:%M:%S}Z: {item.title}{error}",
            file=out,
        )


# -- helpers ----------------------------------------------------------------------------------


def _count(text: str) -> int:
    """A command-line count: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, got {text!r}")
    return value


def _last_word(message: str, *, prefix: str = "notifier: ") -> None:
    """Why the command ends, on stderr: one JSON record when the log is JSON (the journal's
    lines), else the text after `prefix`."""
    if logs.json_active():
        log.critical("%s", message)
    else:
        print(f"{prefix}{message}", file=sys.stderr)


def _configure_logging(args: argparse.Namespace, defaults: LogSettings | None = None) -> None:
    """Level and format: the flag, else NOTIFIER_LOG_LEVEL (level only), else config, else info."""
    level = getattr(args, "log_level", None) or os.environ.get("NOTIFIER_LOG_LEVEL")
    level = level or (defaults.level if defaults else "info")
    fmt = getattr(args, "log_format", None) or (defaults.format if defaults else "text")
    logs.configure(level=logs.parse_level(level), fmt=fmt)


def _load(path: Path, *, require_api_key: bool = True) -> Settings:
    from notifier.channels import check_url

    settings = config.load(path, check_url=check_url, require_api_key=require_api_key)
    logs.hide(settings.feed.api_key, key_prefix(settings.feed.api_key))
    return settings


def _read_lines(path: str) -> list[str]:
    source = sys.stdin if path == "-" else Path(path).open(encoding="utf-8")  # noqa: SIM115
    with source:
        return [line for line in source if line.strip()]


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get("NOTIFIER_CONFIG", DEFAULT_CONFIG),
        help=f"the config file (default: $NOTIFIER_CONFIG, else {DEFAULT_CONFIG})",
    )


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: the option may stand before or after the command without one hiding the other.
    common.add_argument(
        "--log-level",
        metavar="LEVEL",
        default=argparse.SUPPRESS,
        help="debug, info, warning or error (default: $NOTIFIER_LOG_LEVEL, the config's "
        "log.level, or info)",
    )
    common.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=argparse.SUPPRESS,
        help="log line format (default: the config's log.format, or text)",
    )
    parser = argparse.ArgumentParser(
        prog="notifier",
        parents=[common],
        description="Fill alerts from PolySimulator's execution feed to chat, email and push.",
        epilog="Start with `notifier demo --fills 10`; then `notifier check-config config.yaml`.",
    )
    parser.add_argument("--version", action="version", version=f"notifier {__version__}")
    # Not log_level/log_format: the subcommands share those actions (parents=), so a default
    # set here would be theirs too, and would overwrite a value given before the command.
    parser.set_defaults(command=None)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: object, summary: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            parents=[common],
            help=summary,
            description=summary,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(command=name, handler=handler)
        return p

    p = command(
        "run",
        _run,
        "Run the daemon: hold the feed, match rules, deliver alerts until SIGTERM.",
        "POLYSIM_API_KEY=ps_live_... notifier run --config config.yaml --log-format json",
    )
    _config_option(p)
    p.add_argument(
        "--watch",
        action="store_true",
        help="reload when the config file changes, as SIGHUP does (validated first)",
    )
    p = command(
        "demo",
        _demo,
        "Run the whole pipeline against a built-in simulated feed; alerts print here.",
        "notifier demo --fills 20",
    )
    p.add_argument(
        "--fills", type=_count, default=None, help="stop after N fills (default: Ctrl-C)"
    )
    p.add_argument(
        "--config",
        default=None,
        help="use your rules instead of the demo's own (their alerts print here too)",
    )
    p.add_argument(
        "--send",
        action="store_true",
        help="with --config: deliver to its channels (the fills are simulated: tell your team)",
    )
    p = command(
        "check-config",
        _check_config,
        "Validate a config file as `run` would; print a summary or every problem (exit 2).",
        "notifier check-config config.yaml",
    )
    p.add_argument("path")
    p = command(
        "test",
        _test,
        "Show which rules match given fills and the messages they render (no send without --send).",
        """notifier test config.yaml --fill '{"order_id": 1, "market_id": "0xabc", "side": "BUY", \
"outcome": "Yes", "price": "0.4", "quantity": "150", "filled_at": "2026-01-01T00:00:00Z"}'""",
    )
    p.add_argument("path")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--fill", help="one fill as JSON (any feed shape or a plain fill object)")
    given.add_argument("--fills", help="a JSON-lines file of fills ('-' for stdin)")
    p.add_argument("--send", action="store_true", help="deliver the rendered alerts for real")
    p = command(
        "send-test",
        _send_test,
        "Send a test message to every channel (or one) and report each URL's result.",
        "notifier send-test --config config.yaml --channel desk",
    )
    _config_option(p)
    p.add_argument("--channel", help="only this channel")
    p = command(
        "outbox",
        _outbox,
        "List pending and dead-lettered alerts; requeue or remove the dead ones.",
        "notifier outbox --config config.yaml --retry-dead",
    )
    _config_option(p)
    action = p.add_mutually_exclusive_group()
    action.add_argument("--retry-dead", action="store_true", help="requeue dead alerts")
    action.add_argument("--purge-dead", action="store_true", help="delete dead alerts")
    return parser
