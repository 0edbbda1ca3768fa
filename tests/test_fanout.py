"""One message to every target of a rule's channels, rendered once for each format they take."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes import DeskAndPhone, Target

from notifier.fanout import fan_out
from notifier.render import Escape

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_the_message_is_rendered_once_per_escaping_its_channels_need() -> None:
    """desk writes HTML, phone (two URLs) text: two renderings, one escaped, for three alerts;
    text and Markdown escape nothing, so they share one."""
    asked: list[Escape | None] = []

    def render(escape: Escape | None) -> tuple[str, str]:
        asked.append(escape)
        text = escape("S&P < 5000") if escape else "S&P < 5000"
        return f"title {text}", f"body {text}"

    alerts = fan_out(
        fill_key="k",
        rule="r",
        channels=("desk", "phone"),
        render=render,
        filled_at=AT,
        targets=DeskAndPhone(desk="html", phone="markdown"),
    )
    assert [(a.channel, a.target, a.title) for a in alerts] == [
        ("desk", "desk-1", "title S&amp;P &lt; 5000"),
        ("phone", "phone-1", "title S&P < 5000"),
        ("phone", "phone-2", "title S&P < 5000"),
    ]
    assert len(asked) == 2
    assert asked[1] is None


def test_a_channel_not_configured_is_a_key_error_before_anything_is_rendered() -> None:
    """The caller filters channels gone from the config; one that slips through is a bug."""
    asked: list[Escape | None] = []

    def render(escape: Escape | None) -> tuple[str, str]:
        asked.append(escape)
        return "t", "b"

    with pytest.raises(KeyError):
        fan_out(
            fill_key="k",
            rule="r",
            channels=("pager",),
            render=render,
            filled_at=AT,
            targets=DeskAndPhone(),
        )
    assert asked == []


class _Shared(DeskAndPhone):
    """`desk` and `phone` list one URL in common (`phone-1` is `desk-1`'s)."""

    def targets(self, channel: str) -> tuple[Target, ...]:
        keys = {"desk": ("desk-1",), "phone": ("desk-1", "phone-2")}[channel]
        return tuple(Target(k) for k in keys)


def test_a_url_two_channels_list_gets_the_message_once_as_the_first_has_it() -> None:
    """desk (html) and phone (text) share a URL: it gets desk's HTML rendering once, as the
    outbox would keep it; phone's other URL gets the text."""

    def render(escape: Escape | None) -> tuple[str, str]:
        return ("html" if escape else "text"), "body"

    alerts = fan_out(
        fill_key="k",
        rule="r",
        channels=("desk", "phone"),
        render=render,
        filled_at=AT,
        targets=_Shared(desk="html"),
    )
    assert [(a.channel, a.target, a.title, a.body_format) for a in alerts] == [
        ("desk", "desk-1", "html", "html"),
        ("phone", "phone-2", "text", "text"),
    ]
