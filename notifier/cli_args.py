"""The `notifier` command line's grammar: commands, options and what each takes.

What the commands do, and the exit status each ends with, is cli.py's.
"""

from __future__ import annotations

import argparse
import os

from notifier import __version__

DEFAULT_CONFIG = "config.yaml"


def parse(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser and the parsed arguments; a usage error exits 2, as argparse does."""
    parser = build()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser, so its usage shows the form it takes
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "demo" and args.send and args.config is None:
        parser.error("demo --send needs --config: the demo's own rules have no channels")
    if args.command not in (None, "demo", "simulator"):
        _settle_config(parser, args)
    return parser, args


def _command_parser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    """The parser of one command (the top-level one when there is none)."""
    # argparse lists its subparsers only in these private attributes.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            chosen: argparse.ArgumentParser = action.choices[name]
            return chosen
    return parser


def _port(text: str) -> int:
    """A TCP port to listen on: 0 (any free) to 65535."""
    value = int(text) if text.isascii() and text.isdigit() else -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port, 0 to 65535, got {text!r}")
    return value


def _seconds(text: str) -> float:
    """A pause in seconds: a number from 0.01 to a day."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"must be seconds from 0.01 to 86400, got {text!r}")
    return value


def _count(text: str) -> int:
    """A command-line count: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, got {text!r}")
    return value


def _config_option(parser: argparse.ArgumentParser) -> None:
    """The config file, given either way: `notifier run config.yaml` or `--config config.yaml`
    (every command takes both; `parse` settles which)."""
    parser.add_argument("path", nargs="?", metavar="CONFIG", help="the config file")
    parser.add_argument(
        "--config",
        default=None,
        help=f"the config file (default: $NOTIFIER_CONFIG, else {DEFAULT_CONFIG})",
    )


def _settle_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One config path in `args.config`, from the positional, --config or the default."""
    if args.path is not None and args.config is not None and args.path != args.config:
        parser.error(f"two config files given ({args.path}, {args.config}): name one")
    named = args.path or args.config or os.environ.get("NOTIFIER_CONFIG")
    args.config_by_default = not named  # for a hint, should no file be there
    args.config = named or DEFAULT_CONFIG


def build() -> argparse.ArgumentParser:
    """The command line's grammar; each command sets `command` to its name."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: the option may stand before or after the command without one hiding the other.
    common.add_argument(
        "--log-level",
        metavar="LEVEL",
        default=argparse.SUPPRESS,
        help="debug, info, warning or error (default: $NOTIFIER_LOG_LEVEL, the config's "
        "log.level where the command reads a config, or info)",
    )
    common.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=argparse.SUPPRESS,
        help="log line format (default: the config's log.format where the command reads a "
        "config, or text)",
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

    def command(name: str, summary: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            parents=[common],
            help=summary,
            description=summary,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(command=name)
        return p

    p = command(
        "run",
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
        "simulator",
        "Run a simulated PolySimulator on loopback that trades on its own, to try `run` on.",
        "notifier simulator --port 8900 --every 5",
    )
    p.add_argument(
        "--port", type=_port, default=0, help="loopback port to listen on (default: any free)"
    )
    p.add_argument(
        "--every",
        type=_seconds,
        default=5.0,
        help="seconds between simulated fills (default: 5)",
    )
    p.add_argument(
        "--fills", type=_count, default=None, help="stop after N fills (default: Ctrl-C)"
    )
    p = command(
        "check-config",
        "Validate a config file as `run` would; print a summary or every problem (exit 2).",
        "notifier check-config config.yaml",
    )
    _config_option(p)
    p = command(
        "test",
        "Show which rules match given fills and the messages they render (no send without --send).",
        """notifier test config.yaml --fill '{"order_id": 1, "market_id": "0xabc", "side": "BUY", \
"outcome": "Yes", "price": "0.4", "quantity": "150", "filled_at": "2026-01-01T00:00:00Z"}'""",
    )
    _config_option(p)
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--fill", help="one fill as JSON (any feed shape or a plain fill object)")
    given.add_argument(
        "--fills",
        help="a file of fills ('-' for stdin): one JSON object a line, each named by its line "
        "number, or a JSON array of them (a history page saved from the venue), by its place",
    )
    p.add_argument("--send", action="store_true", help="deliver the rendered alerts for real")
    p = command(
        "send-test",
        "Send a test message to every channel (or one) and report each URL's result.",
        "notifier send-test --config config.yaml --channel desk",
    )
    _config_option(p)
    p.add_argument("--channel", help="only this channel")
    p = command(
        "outbox",
        "List pending and dead-lettered alerts; requeue or remove the dead ones.",
        "notifier outbox --config config.yaml --retry-dead",
    )
    _config_option(p)
    action = p.add_mutually_exclusive_group()
    action.add_argument("--retry-dead", action="store_true", help="requeue dead alerts")
    action.add_argument("--purge-dead", action="store_true", help="delete dead alerts")
    p.add_argument(
        "--channel", help="with --retry-dead or --purge-dead: only this channel's dead alerts"
    )
    p.add_argument(
        "--to",
        metavar="CHANNEL",
        help="with --retry-dead: requeue them for this channel of the config (a channel "
        "renamed, or another that should take them)",
    )
    return parser
