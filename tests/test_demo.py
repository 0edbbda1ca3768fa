"""The demo in-process: it reports a failure instead of hanging or claiming success."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from daemon import ROOT, child_env, free_port
from receivers import WebhookReceiver

from notifier import demo
from notifier.errors import ConfigError
from notifier.events import Fill
from notifier.simulator import DEFAULT_MARKETS

UNREACHABLE = """\
channels:
  dead: json://127.0.0.1:{port}/
rules:
  - name: all
    notify: [dead]
"""


async def test_demo_with_a_channel_that_never_delivers_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """When alerts cannot be delivered in time the demo stops and returns 1, not 0 or never."""
    monkeypatch.setattr(demo, "SETTLE_TIMEOUT", 0.5)
    monkeypatch.setattr(demo, "FILL_INTERVAL", 0.0)
    config = tmp_path / "demo.yaml"
    config.write_text(UNREACHABLE.format(port=free_port()), encoding="utf-8")
    assert await demo.run_demo(fills=2, config_path=str(config), send=True) == 1


async def test_demo_delivers_every_fill_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the embedded rules, every fill prints one alert and the demo returns 0."""
    monkeypatch.setattr(demo, "FILL_INTERVAL", 0.0)
    assert await demo.run_demo(fills=4, config_path=None) == 0
    out = capsys.readouterr().out
    assert out.count("\n== ") + out.startswith("== ") == 4


async def test_demo_with_a_config_prints_instead_of_sending(
    tmp_path: Path,
    webhook: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Made-up fills never reach the config's real channels unless asked (--send), and the
    demo leaves the metrics port, which the running daemon holds, alone."""
    monkeypatch.setattr(demo, "FILL_INTERVAL", 0.0)
    with socket.socket() as held:  # the running daemon's metrics port
        held.bind(("127.0.0.1", 0))
        held.listen()
        config = tmp_path / "config.yaml"
        config.write_text(
            f"channels:\n  desk: {webhook.json_url}\n"
            f"metrics: {{listen: '127.0.0.1:{held.getsockname()[1]}'}}\n"
            "rules:\n  - name: all\n    notify: [desk]\n    title: 'demo {order_id}'\n",
            encoding="utf-8",
        )
        assert await demo.run_demo(fills=3, config_path=str(config)) == 0
    assert webhook.requests == []
    assert capsys.readouterr().out.count("demo 50") == 3


def test_demo_settings_need_no_key_of_the_config_s_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo brings its own key: a config whose key is `${MY_KEY}`, unset, still runs."""
    monkeypatch.delenv("MY_KEY", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text(
        "feed:\n  api_key: ${MY_KEY}\nchannels:\n  desk: json://127.0.0.1:9/\n"
        "rules:\n  - name: all\n    notify: [desk]\n",
        encoding="utf-8",
    )
    settings = demo.demo_settings(
        base_url="http://127.0.0.1:9", state_dir=tmp_path, config_path=str(config)
    )
    assert settings.feed.api_key == demo.DEFAULT_API_KEY
    assert [rule.name for rule in settings.rules.rules] == ["all"]


def test_demo_settings_need_no_channel_secret_unless_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Printing here, the demo needs no channel's secret: a URL whose variable is unset loads;
    with --send (real channels) the unset variable is the config error."""
    monkeypatch.delenv("SLACK_URL", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text(
        "channels:\n  desk: ${SLACK_URL}\nrules:\n  - name: all\n    notify: [desk]\n",
        encoding="utf-8",
    )
    settings = demo.demo_settings(
        base_url="http://127.0.0.1:9", state_dir=tmp_path, config_path=str(config)
    )
    assert settings.channels["desk"].urls == (demo.TERMINAL,)
    with pytest.raises(ConfigError, match="environment variable SLACK_URL is not set"):
        demo.demo_settings(
            base_url="http://127.0.0.1:9", state_dir=tmp_path, config_path=str(config), send=True
        )


def test_the_example_config_runs_in_the_demo_with_its_channels_named(tmp_path: Path) -> None:
    """`notifier demo --config config.example.yaml`: every channel prints here, each under its
    name (an alert to two channels would print twice without a word why), and the example's
    large-buys rule pins markets the demo trades, so it can fire."""
    example = Path(__file__).parent.parent / "config.example.yaml"
    settings = demo.demo_settings(
        base_url="http://127.0.0.1:9", state_dir=tmp_path, config_path=str(example)
    )
    assert {n: c.urls for n, c in settings.channels.items()} == {
        "desk": ("console://desk",),
        "phone": ("console://phone",),
        "mail": ("console://mail",),
    }
    large = next(r for r in settings.rules.rules if r.name == "large-buys")
    fills = [
        fill
        for fill in (
            Fill("1", market, "BUY", "Yes", Decimal("0.5"), Decimal("100"), datetime.now(UTC))
            for market in DEFAULT_MARKETS
        )
        if large.condition.matches(fill)
    ]
    assert len(fills) == 2


async def test_demo_waits_for_a_group_that_ends_soon_and_shows_its_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A digest rule (`wait: 1s`): the demo waits for its group to close and prints the one
    message it makes, rather than ending first and discarding it."""
    monkeypatch.setattr(demo, "FILL_INTERVAL", 0.0)
    config = tmp_path / "config.yaml"
    config.write_text(
        "channels:\n  desk: json://127.0.0.1:9/\n"
        "rules:\n  - name: digest\n    notify: [desk]\n    title: 'digest of {count}'\n"
        "    group: {wait: 1s}\n",
        encoding="utf-8",
    )
    assert await demo.run_demo(fills=3, config_path=str(config)) == 0
    out = capsys.readouterr().out
    assert out.count("digest of ") == 1
    assert "digest of 3" in out


async def test_demo_says_what_alert_shaping_still_holds_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fills a rule groups for longer than the demo runs are not shown: the demo says they
    are discarded with its state, rather than leaving only the daemon's "kept for later"."""
    monkeypatch.setattr(demo, "FILL_INTERVAL", 0.0)
    config = tmp_path / "config.yaml"
    config.write_text(
        "channels:\n  desk: json://127.0.0.1:9/\n"
        "rules:\n  - name: slow-digest\n    notify: [desk]\n    group: {by: [side], wait: 1h}\n",
        encoding="utf-8",
    )
    caplog.set_level("WARNING", logger="notifier.demo")
    assert await demo.run_demo(fills=3, config_path=str(config)) == 0
    [said] = [r.getMessage() for r in caplog.records if r.name == "notifier.demo"]
    assert said.startswith("rule slow-digest still holds 3 fill(s) in a group when the demo ends")
    assert "discarded with the demo's state" in said


def test_demo_piped_to_head_ends_with_0_once_the_reader_is_gone(tmp_path: Path) -> None:
    """`notifier demo | head -3`: the demo, with no --fills, runs until stopped. Its alerts
    are only a view, so once their reader is gone it stops as on SIGTERM and exits 0. It went
    on invisibly until killed: each alert's print found the pipe closed, dropped stdout and
    counted the alert sent, and nothing told the demo."""
    env = {k: v for k, v in child_env().items() if k != "PYTHONUNBUFFERED"}  # a shell's pipe
    with (tmp_path / "stderr").open("w+", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "notifier", "demo"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=ROOT,
            env=env | {"PYTHONPATH": str(ROOT)},
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("== ")  # the first alert's title
            proc.stdout.close()  # head has read its lines
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        log = err.read()
    assert code == 0, log
    assert "stopping (stdout closed: no one reads the alerts)" in log
    assert "Traceback" not in log
