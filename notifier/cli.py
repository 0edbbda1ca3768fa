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
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from notifier import cli_args, config, logs
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
from notifier.hangup_latch import HangupLatch
from notifier.ruleconfig import channel_shown
from notifier.run_summary import NO_RULE_ENABLED
from notifier.wording import counted

if TYPE_CHECKING:
    from notifier.settings import LogSettings, Settings

log = logging.getLogger("notifier")

EXIT_OK, EXIT_FATAL, EXIT_CONFIG = 0, 1, 2
EXIT_SOFTWARE = 70  # sysexits' EX_SOFTWARE: not a verdict on the key, file or config
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as `git log | head` ends


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
    parser, args = cli_args.parse(None if argv is None else list(argv))
    args.hangups = hangups
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    try:
        _configure_logging(args)
    except ValueError as exc:
        if getattr(args, "log_level", None):
            parser.error(str(exc))  # the flag's: a usage error, with the usage
        _last_word(str(exc))  # NOTIFIER_LOG_LEVEL's: the usage would blame a flag
        return EXIT_CONFIG
    try:
        code: int = _COMMANDS[args.command](args)
    except ConfigError as exc:
        heading = f"config error: {counted(len(exc.problems), 'problem')}"
        _last_word(f"{heading}\n{exc}{_default_config_hint(args)}", prefix="")  # one record
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


def _holding_hangups(args: argparse.Namespace, command: Callable[[HangupLatch], int]) -> int:
    """Run `command` with SIGHUP held from before its slow part (imports, config, state file)
    until its service handles it: a reload then must not kill `run`, and a closed terminal
    must stop the demo even while it starts."""
    if args.hangups is not None:  # held since launch.entry, until the process exits
        return command(args.hangups)
    # Called in-process: hold it now, and give it back to the caller after.
    hangups = HangupLatch().install()
    try:
        return command(hangups)
    finally:
        hangups.restore()


def _run(args: argparse.Namespace) -> int:
    return _holding_hangups(args, functools.partial(_run_held, args))


def _run_held(args: argparse.Namespace, hangups: HangupLatch) -> int:
    from notifier import eventloop, keepalive
    from notifier.service import Service
    from notifier.watch import WatchedFile

    path = Path(args.config)
    watch = WatchedFile.before_reading(path) if args.watch else None  # a save from now counts
    settings = _load(path)
    _configure_logging(args, settings.log)
    keepalive.install()  # the daemon sends alert after alert to the same hosts

    async def go() -> None:
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
    return _holding_hangups(args, functools.partial(_demo_held, args))


def _demo_held(args: argparse.Namespace, hangups: HangupLatch) -> int:
    from notifier.demo import run_demo

    try:
        return asyncio.run(
            run_demo(fills=args.fills, config_path=args.config, send=args.send, hangups=hangups)
        )
    except KeyboardInterrupt:  # how the demo is meant to stop
        return EXIT_OK


def _simulator(args: argparse.Namespace) -> int:
    from notifier.simulator_command import run_simulator

    try:
        run = run_simulator(
            port=args.port, every=args.every, fills=args.fills, out=sys.stdout, err=sys.stderr
        )
        return asyncio.run(run)
    except KeyboardInterrupt:  # how it is meant to stop
        return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    from notifier.channels import ChannelSet
    from notifier.render import fill_values

    settings = _load(Path(args.config))
    channels = ChannelSet.build(settings.channels, delivery=settings.delivery)
    for rule in settings.rules.rules:  # as `run` would render them, on a sample fill
        values = fill_values(config.SAMPLE_FILL, rule=rule.name)
        rule.title.render(values)
        rule.body.render(values)
    enabled = sum(rule.enabled for rule in settings.rules.rules)
    urls = sum(len(channels.targets(name)) for name in channels.names)
    rules, names = (
        counted(len(settings.rules.rules), "rule"),
        counted(len(channels.names), "channel"),
    )
    print(f"{args.config}: ok: {rules} ({enabled} enabled), {names} ({counted(urls, 'URL')})")
    for note in settings.notes:
        print(f"note: {note}")
    if not enabled:
        print(f"note: {NO_RULE_ENABLED}")
    return EXIT_OK


def _test(args: argparse.Namespace) -> int:
    from notifier.replay import UNSET_URL, replay

    # A dry run sends nothing: a channel whose URL's variable is unset is shown, not refused.
    unset_urls = None if args.send else UNSET_URL
    settings = _load(Path(args.config), require_api_key=False, unset_urls=unset_urls)
    try:
        lines = [(1, args.fill)] if args.fill is not None else _read_lines(args.fills)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"notifier test: cannot read --fills {args.fills}: {os_reason(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(replay(settings, lines, send=args.send, out=sys.stdout))


def _refuse_unset(path: Path, channel: str) -> NoReturn:
    """The config error a full load gives, cut to the problems of `channel` (its unset URL
    variable among them)."""
    try:
        _load(path, require_api_key=False)
    except ConfigError as exc:
        mine = [p for p in exc.problems if p.path.split(".")[:2] == ["channels", channel]]
        raise ConfigError(mine or exc.problems) from None
    raise AssertionError("a URL stood in for an unset variable, which a full load accepts")


def _outbox(args: argparse.Namespace) -> int:
    from notifier.outbox_command import outbox

    if args.to is not None and not (args.retry_dead and args.channel is not None):
        # Without --channel, every channel's dead alerts would move, NEW's own among them.
        print("notifier outbox: --to goes with --retry-dead --channel OLD", file=sys.stderr)
        return EXIT_CONFIG
    if args.channel is not None and not (args.retry_dead or args.purge_dead):
        print("notifier outbox: --channel goes with --retry-dead or --purge-dead", file=sys.stderr)
        return EXIT_CONFIG
    return outbox(
        Path(args.config),
        retry_dead=args.retry_dead,
        purge_dead=args.purge_dead,
        channel=args.channel,
        to=args.to,
    )


def _send_test(args: argparse.Namespace) -> int:
    from notifier.channels import ChannelSet
    from notifier.replay import UNSET_URL

    # One channel tested: the others' URL variables need not be set, as nothing goes to them.
    path, one = Path(args.config), args.channel
    settings = _load(path, require_api_key=False, unset_urls=None if one is None else UNSET_URL)
    if one in settings.channels and UNSET_URL in settings.channels[one].urls:
        _refuse_unset(path, one)
    channels = ChannelSet.build(settings.channels, delivery=settings.delivery)
    if args.channel is not None and args.channel not in channels.names:
        names = ", ".join(channels.names)
        print(
            f"no channel named {channel_shown(args.channel)} (channels: {names})", file=sys.stderr
        )
        return EXIT_CONFIG
    if not channels.names:  # nothing sent is no proof the channels work
        print(f"no channels configured in {args.config}: nothing to test", file=sys.stderr)
        return EXIT_CONFIG
    results = asyncio.run(channels.send_test(args.channel))
    for target, result in results:
        mark = "ok" if result.ok else f"FAILED: {result.error}"
        print(f"{target.channel}: {target.display}: {mark}")
    return EXIT_OK if all(r.ok for _, r in results) else EXIT_FATAL


# -- helpers ----------------------------------------------------------------------------------


def _last_word(message: str, *, prefix: str = "notifier: ") -> None:
    """Why the command ends, on stderr: one JSON record when the log is JSON (the journal's
    lines), else the text after `prefix`."""
    if logs.json_active():
        log.critical("%s", message)
    else:
        print(f"{prefix}{message}", file=sys.stderr)


def _configure_logging(args: argparse.Namespace, defaults: LogSettings | None = None) -> None:
    """Level and format: the flag, else NOTIFIER_LOG_LEVEL (level only), else config, else info."""
    flag, env = getattr(args, "log_level", None), os.environ.get("NOTIFIER_LOG_LEVEL")
    level = flag or env or (defaults.level if defaults else "info")
    fmt = getattr(args, "log_format", None) or (defaults.format if defaults else "text")
    try:
        parsed = logs.parse_level(level)
    except ValueError as exc:
        if not flag and env:  # not on the command line: say where it came from
            raise ValueError(f"NOTIFIER_LOG_LEVEL: {exc}") from None
        raise
    logs.configure(level=parsed, fmt=fmt)


def _default_config_hint(args: argparse.Namespace) -> str:
    """For a command that read the default config.yaml because none was named, and found none."""
    if not getattr(args, "config_by_default", False) or Path(args.config).exists():
        return ""
    # A pip install has no example beside it: say where one is, not a file that is not here.
    example = (
        "config.example.yaml here"
        if Path("config.example.yaml").exists()
        else "the config.example.yaml beside notifier's README (in its source)"
    )
    return (
        f"\n(no config was named, so {args.config} here was read: name yours as `notifier "
        f"{args.command} PATH`, --config PATH or $NOTIFIER_CONFIG; {example} is one to start "
        "from)"
    )


def _load(path: Path, *, require_api_key: bool = True, unset_urls: str | None = None) -> Settings:
    from notifier.channels import check_url

    settings = config.load(
        path, check_url=check_url, require_api_key=require_api_key, unset_urls=unset_urls
    )
    logs.hide(settings.feed.api_key, key_prefix(settings.feed.api_key))
    return settings


def _read_lines(path: str) -> list[tuple[int, str]]:
    """The file's non-blank lines, each with its line number (what `test` calls the fill).

    A byte-order mark opening the file (Notepad's, PowerShell's) is dropped: it made a saved
    history page no JSON array, each of its lines then refused or taken alone.
    """
    source = sys.stdin if path == "-" else Path(path).open(encoding="utf-8")  # noqa: SIM115
    with source:
        lines = [(number, line) for number, line in enumerate(source, 1)]
    if lines and lines[0][1].startswith("\ufeff"):
        lines[0] = (1, lines[0][1][1:])
    return [(number, line) for number, line in lines if line.strip()]


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "demo": _demo,
    "simulator": _simulator,
    "check-config": _check_config,
    "test": _test,
    "send-test": _send_test,
    "outbox": _outbox,
}
