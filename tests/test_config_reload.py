"""A reload's outcome as an operator sees it: the log line, its JSON fields, the metrics."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifier.config import parse
from notifier.config_reload import ConfigReloader
from notifier.errors import StateError
from notifier.service import Service
from notifier.settings import Settings
from notifier.simulator import DEFAULT_API_KEY

CONFIG = "channels:\n  hook: json://127.0.0.1:9/\n"


def _settings(tmp_path: Path, text: str, env: dict[str, str]) -> Settings:
    return parse(
        text,
        source=tmp_path / "config.yaml",
        env={"POLYSIM_API_KEY": DEFAULT_API_KEY, **env},
        check_url=lambda url: None,
    )


def _reloading_to(tmp_path: Path, text: str) -> Service:
    """A service started on CONFIG whose reload reads `text`."""
    return Service(
        _settings(tmp_path, CONFIG, {}),
        reload=lambda: _settings(tmp_path, text, {}),
        install_signals=False,
    )


async def _refusal(service: Service, caplog: pytest.LogCaptureFixture) -> str:
    """The one line a refused reload logs."""
    with caplog.at_level(logging.ERROR, logger="notifier.config_reload"):
        assert await service.reload() is False
    (refused,) = caplog.records
    return refused.getMessage()


async def test_a_refused_reload_shows_in_the_metrics_until_one_takes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`systemctl reload` cannot tell a refused reload (SIGHUP always "succeeds"): the refusal
    is a record with its own event, and the metrics say the last reload did not take until
    one does. A channel whose variable was added to the environment after the start is
    refused with the reason: a reload sees the environment the daemon started with."""
    env: dict[str, str] = {}
    later = CONFIG + "  phone: ${PHONE_URL}\n"
    service = Service(
        _settings(tmp_path, CONFIG, env),
        reload=lambda: _settings(tmp_path, later, env),
        install_signals=False,
    )
    # Both results present from the start: a rate() over the first refusal sees it.
    started = service.snapshot()
    assert (started.reloads, started.last_reload_ok) == ({"ok": 0, "refused": 0}, True)
    with caplog.at_level(logging.INFO, logger="notifier.config_reload"):
        assert await service.reload() is False
        refused = service.snapshot()
        env["PHONE_URL"] = "json://127.0.0.1:9/phone"
        assert await service.reload() is True
    assert (refused.reloads, refused.last_reload_ok) == ({"ok": 0, "refused": 1}, False)
    taken = service.snapshot()
    assert (taken.reloads, taken.last_reload_ok) == ({"refused": 1, "ok": 1}, True)
    first, second = caplog.records
    assert getattr(first, "event", None) == "reload_refused"
    assert getattr(first, "problems", None) == 1
    assert "environment variable PHONE_URL is not set" in first.getMessage()
    assert first.getMessage().endswith(
        "(a reload sees the environment the daemon started with: a variable set or changed"
        " since, in the shell or the unit's EnvironmentFile, needs a restart)"
    )
    assert getattr(second, "event", None) == "reloaded"
    assert service.settings.channels.keys() == {"hook", "phone"}


async def test_a_refusal_for_another_reason_has_no_word_about_the_environment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The environment note is for an unset variable only: elsewhere it would mislead."""
    service = _reloading_to(tmp_path, CONFIG + "delivery:\n  timeout: soon\n")
    refused = await _refusal(service, caplog)
    assert "delivery.timeout" in refused
    assert "environment" not in refused


async def test_a_reload_that_changes_only_delivery_settings_names_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reload changing only delivery.timeout said "no change in rules or channels", though
    the new timeout is in force for the next send: the line names the delivery settings."""
    service = _reloading_to(tmp_path, CONFIG + "delivery:\n  timeout: 5s\n  max_age: 2h\n")
    with caplog.at_level(logging.INFO, logger="notifier.config_reload"):
        assert await service.reload() is True
        assert await service.reload() is True
    assert [r.getMessage() for r in caplog.records] == [
        "reloaded: 0 rules, 1 channel (delivery changed: max_age, timeout)",
        "reloaded: 0 rules, 1 channel (no change in rules, channels or delivery)",
    ]
    assert service.settings.delivery.timeout == 5.0


async def test_the_environment_note_also_follows_a_variable_whose_name_is_not_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret's unset variable with an unconventional name (a key pasted as one) is refused
    without its name; the reload still says the environment is the start's."""
    refused = await _refusal(
        _reloading_to(tmp_path, CONFIG + "  phone: ${ps_live_pasted}\n"), caplog
    )
    assert "names an environment variable that is not set" in refused
    assert "ps_live_pasted" not in refused
    assert refused.endswith("needs a restart)")


async def test_systemd_is_told_when_each_reload_begins_and_how_it_ended(tmp_path: Path) -> None:
    """Each reload is bracketed by RELOADING=1 and READY=1, and STATUS= says what runs after
    it: the new config, or the one before with the refusal's time and count, or a loader
    failure; the demo's reload (no config file) tells systemd nothing."""
    told: list[str] = []
    texts = iter([CONFIG + "  hook2: json://127.0.0.1:9/x\n", "rules: [{name: x}, 5]\n"])

    def read() -> Settings:
        text = next(texts, None)
        if text is None:
            raise ValueError("a loader bug")
        return _settings(tmp_path, text, {})

    service = Service(_settings(tmp_path, CONFIG, {}), install_signals=False)
    at = datetime(2026, 12, 7, 5, 40, 12, tzinfo=UTC)
    reloader = ConfigReloader(service, read, on_broken=print, systemd=told.append, clock=lambda: at)
    assert await reloader.reload() is True
    assert await reloader.reload() is False
    assert await reloader.reload() is False
    stamps = told[0::2]
    assert all(re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", line) for line in stamps)
    assert told[1::2] == [
        "READY=1\nSTATUS=running: 0 rules, 2 channels; reloaded at 2026-12-07 05:40:12 UTC",
        "READY=1\nSTATUS=running the config before: reload refused at 2026-12-07 05:40:12 UTC"
        " (2 problems)",
        "READY=1\nSTATUS=running the config before: reload failed at 2026-12-07 05:40:12 UTC"
        " (see the log)",
    ]
    quiet: list[str] = []
    demo = ConfigReloader(service, None, on_broken=print, systemd=quiet.append)
    assert await demo.reload() is False
    assert quiet == []


async def test_a_reload_that_fails_while_swapping_still_tells_systemd_it_ended(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug past the reading (the pipeline refusing the new rules) is logged and counted as
    a failed reload, and READY=1 follows RELOADING=1: under Type=notify-reload systemd would
    otherwise hold `systemctl reload` until its timeout."""

    class Refusing:
        def swap(self, **_: object) -> None:
            raise RuntimeError("a bug")

    told: list[str] = []
    service = Service(_settings(tmp_path, CONFIG, {}), install_signals=False)
    service.pipeline = Refusing()  # type: ignore[assignment]  # a pipeline that fails
    at = datetime(2026, 12, 7, 5, 40, 12, tzinfo=UTC)
    reloader = ConfigReloader(
        service,
        lambda: _settings(tmp_path, CONFIG, {}),
        on_broken=print,
        systemd=told.append,
        clock=lambda: at,
    )
    with caplog.at_level(logging.ERROR, logger="notifier.config_reload"):
        assert await reloader.reload() is False
    assert "reload failed while swapping the new config in" in caplog.text
    assert (
        told[1] == "READY=1\nSTATUS=reload failed halfway at 2026-12-07 05:40:12 UTC (see the log)"
    )
    assert reloader.results["refused"] == 1


async def test_a_refused_reload_stays_in_the_status_line_until_one_takes(tmp_path: Path) -> None:
    """The periodic status line would hide a refusal the reload's own line showed: it carries
    it until a reload takes."""
    texts = iter(["rules: [{name: x}]\n", CONFIG])
    service = Service(
        _settings(tmp_path, CONFIG, {}),
        reload=lambda: _settings(tmp_path, next(texts), {}),
        install_signals=False,
    )
    assert (
        service.status_line() == "running: 0 rules, 1 channel; feed not connected; 0 alerts waiting"
    )
    assert await service.reload() is False
    assert re.fullmatch(
        r"running: 0 rules, 1 channel; feed not connected; 0 alerts waiting; "
        r"reload refused at .* UTC \(\d+ problems?\)",
        service.status_line(),
    )
    assert await service.reload() is True
    assert service.status_line().endswith("; 0 alerts waiting")


def test_a_state_file_failing_the_status_line_stops_the_run_as_a_failed_write_does(
    tmp_path: Path,
) -> None:
    """The periodic status reads the outbox: a state file that fails there stops the run
    gracefully with its error (as any failed write), not the task group with a traceback."""

    class Broken:
        def pending(self) -> int:
            raise StateError("state file s.db: count pending: disk I/O error")

    service = Service(_settings(tmp_path, CONFIG, {}), install_signals=False)
    service.deliverer = Broken()  # type: ignore[assignment]  # a deliverer whose file fails
    assert service.status_line() == "stopping: state file s.db: count pending: disk I/O error"
    assert service._stop.is_set()
    assert isinstance(service._broken, StateError)


async def test_a_reload_disabling_a_rule_says_what_it_holds_still_goes_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`enabled: false` skips the rule from now on, but the fills its digest gathered are
    sent when due, not dropped: the reload line says so (it said only "rules changed")."""
    rule = "rules:\n  - {name: day, notify: hook, group: {at: '17:00'}%s}\n"
    service = Service(
        _settings(tmp_path, CONFIG + rule % "", {}),
        reload=lambda: _settings(tmp_path, CONFIG + rule % ", enabled: false", {}),
        install_signals=False,
    )
    with caplog.at_level(logging.INFO, logger="notifier.config_reload"):
        assert await service.reload() is True
    assert [r.getMessage() for r in caplog.records] == [
        "reloaded: 1 rule, 1 channel (rules changed: day; rules disabled: day (fills they hold "
        "still go out when due; `notifier outbox` lists them))"
    ]
