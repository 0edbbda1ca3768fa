"""The systemd unit in deploy/ agrees with the program it runs: its exit codes, its stop time,
its command line; and systemd itself accepts it where systemd-analyze is installed."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from notifier import cli, cli_args, sdnotify
from notifier.service import PIPELINE_GRACE, SHUTDOWN_GRACE

UNIT = Path(__file__).parent.parent / "deploy" / "notifier.service"


def _directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_restarts_on_what_may_clear_and_never_on_a_verdict() -> None:
    """Exit 1 (key refused at start, state file unusable) and 2 (config) need a person:
    restarting would hammer the venue. Exit 70 may clear, and must restart."""
    unit = _directives()
    assert unit["Restart"] == ["on-failure"]
    prevented = {int(code) for code in unit["RestartPreventExitStatus"][0].split()}
    assert prevented == {cli.EXIT_FATAL, cli.EXIT_CONFIG}
    assert cli.EXIT_SOFTWARE not in prevented


def test_the_stop_timeout_leaves_the_daemon_its_graces() -> None:
    """systemd kills at TimeoutStopSec: past the pipeline's and the sends' graces, or a stop
    would be a kill -9 mid-send (an alert sent twice)."""
    assert float(_directives()["TimeoutStopSec"][0]) > PIPELINE_GRACE + SHUTDOWN_GRACE + 2


def test_the_unit_s_command_line_is_one_the_program_takes() -> None:
    """ExecStart parses as `run` with its config and JSON logs; Type=notify needs `run`."""
    (command,) = _directives()["ExecStart"]
    argv = shlex.split(command)
    assert argv[0] == "/opt/notifier/bin/notifier"
    _, args = cli_args.parse(argv[1:])
    assert (args.command, args.config, args.log_format) == (
        "run",
        "/etc/notifier/config.yaml",
        "json",
    )
    assert _directives()["Type"] == ["notify"]
    assert _directives()["StateDirectory"] == ["notifier"]


def test_the_watchdog_is_on_and_tolerates_more_than_a_slow_moment() -> None:
    """WatchdogSec= makes the daemon ping from its loop (sdnotify.watchdog_interval): long
    enough that no busy spell trips it, so a restart means the loop really stopped."""
    (seconds,) = _directives()["WatchdogSec"]
    environ = {"WATCHDOG_USEC": str(int(seconds) * 1_000_000)}
    assert sdnotify.watchdog_interval(environ, pid=1) == int(seconds) / 2
    assert int(seconds) >= 30


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the unit, its ExecStart pointed at a program that exists
    here (it checks the command is executable)."""
    text = UNIT.read_text(encoding="utf-8").replace("/opt/notifier/bin/notifier", "/bin/true")
    (tmp_path / "notifier.service").write_text(text, encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "notifier.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_the_environment_file_as_the_header_writes_it_reads_whole_under_sh(tmp_path: Path) -> None:
    """The README's upgrade check sources the unit's env file with sh: a bare `&` cut a URL."""
    lines = re.findall(r"^#\s+([A-Z_]+='[^']*')$", UNIT.read_text(encoding="utf-8"), re.M)
    assert any("&" in line for line in lines), "the header shows a URL with a query"
    (tmp_path / "env").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    names = [line.partition("=")[0] for line in lines]
    shown = " ".join(f'"${name}"' for name in names)
    done = subprocess.run(
        ["sh", "-c", f"set -a; . ./env; printf '%s\\n' {shown}"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.splitlines() == [line.partition("=")[2].strip("'") for line in lines]
