"""What a release of alert shaping says: its rule's templates over the digest's fields.

A release renders with its rule's templates over `Release.fields`, plus `lines`: each fill in
the rule's `line` template, capped so a digest of a busy minute stays one readable message. A
message of one fill looks like any rule's alert; a body written for one fill gets the others
listed after it; a throttled message says what it folded in. Apart from shaping_stage.py,
which decides when releases happen and whose channels get them.
"""

from __future__ import annotations

import functools
from datetime import UTC, tzinfo

from notifier.digests import AGGREGATE_FIELDS, Bunch, Release, cap_lines, make_release
from notifier.events import Fill
from notifier.render import (
    DEFAULT_BODY,
    DEFAULT_TITLE,
    Escape,
    Markup,
    Template,
    fill_values,
    line_break,
    shown_in,
)
from notifier.rules import Rule
from notifier.shapingconfig import (
    DEFAULT_LINE,
    DIGEST_BODY,
    DIGEST_TITLE,
    MIXED_LINE,
    digest_body,
)
from notifier.wording import counted

_DEFAULT_LINE = Template(DEFAULT_LINE)
# A body with any of these was written for several fills: it needs no list added.
_DIGEST_FIELDS = frozenset(AGGREGATE_FIELDS) - {"suppressed"}


def render_release(rule: Rule, release: Release, escape: Escape | None) -> tuple[str, str]:
    """Title and body of a release: the rule's templates over the digest fields and `lines`;
    for a release of one fill, where the rule left a template to the digest default, the
    plain default instead (a quiet-hours rule's daytime alerts look like any rule's).
    `escape`: the channel's format's (render.escape_for); the default body's lines end as
    that format ends a line."""
    title, body = rule.title, rule.body
    if release.count == 1 and not release.suppressed and rule.single is not None:
        title, body = rule.single
    newline = line_break(escape)
    if body.text == DIGEST_BODY:
        body = _template(digest_body(newline))
    body, line = _mixed(body, rule.line or _DEFAULT_LINE, release, newline)
    return _render(title, body, line, rule.name, release, escape, rule.tz)


def render_orphan(release: Release, escape: Escape | None) -> tuple[str, str]:
    """A release of a rule no longer shaped: default digest templates, saying why it comes now.

    `escape`: the format's of the channel it goes to (the rule may be gone).
    """
    newline = line_break(escape)
    title, body = Template(DIGEST_TITLE), Template(digest_body(newline))
    if release.count == 1 and not release.suppressed:  # one fill looks like one fill
        title, body = Template(DEFAULT_TITLE), Template(DEFAULT_BODY)
    body, line = _mixed(body, _DEFAULT_LINE, release, newline)
    title_text, body_text = _render(title, body, line, release.rule, release, escape)
    note = f"(held by rule {release.rule!r}, whose shaping is no longer configured)"
    return title_text, f"{body_text}{newline}{escape(note) if escape else note}"


def _mixed(
    body: Template, line: Template, release: Release, newline: str
) -> tuple[Template, Template]:
    """The default body and line as a digest of fills that differ in market, side or outcome
    has them (no sums, each line naming its market); templates the rule wrote stay."""
    bunch = release.bunch
    markets = len(bunch.markets) > 1
    if not (markets or len(bunch.sides) > 1 or len(bunch.outcomes) > 1):
        return body, line
    if body.text == digest_body(newline):
        body = _template(digest_body(newline, mixed=True))
    if markets and line.text == DEFAULT_LINE:
        line = _template(MIXED_LINE)
    return body, line


@functools.lru_cache(maxsize=8)
def _template(text: str) -> Template:
    """A default template, parsed once."""
    return Template(text)


def _render(
    title: Template,
    body: Template,
    line: Template,
    rule: str,
    release: Release,
    escape: Escape | None = None,
    tz: tzinfo | None = None,
) -> tuple[str, str]:
    values = shown_in(dict(release.fields), tz)
    newline = line_break(escape)
    # In the order they were filled (as a bunch keeps them; sorted again for a bunch an older
    # notifier stored in arrival order).
    fills = sorted(release.fills, key=lambda fill: fill.filled_at)
    rendered = [line.render(fill_values(f, rule=rule, tz=tz), escape=escape) for f in fills]
    values["lines"] = Markup(cap_lines(rendered, release.count, newline))  # escaped line by line
    text = body.render(values, escape=escape)
    shown = body.fields | title.fields
    if release.count > 1 and not body.fields & _DIGEST_FIELDS:
        # A message of several fills (held, grouped, throttled) under a body written for one
        # fill would show its last fill alone: the others are listed after it. The body's
        # fields decide, not the title's: the default title's "({count})" lists nothing.
        note = f"({release.count} fills in this message:)"
        text += f"{newline}{escape(note) if escape else note}{newline}{values['lines']}"
    if "suppressed" not in shown and (note := _held_back(release)):
        # A throttled message always says what it folded in, whatever the rule's templates.
        text += f"{newline}{note}"
    if release.kind == "held" and not shown & {"first_filled_at", "last_filled_at"}:
        # Sent at the opening, what quiet hours held would read as just made.
        text += f"{newline}{_held_for_hours(release, tz)}"
    return title.render(values, escape=escape), text


def _held_for_hours(release: Release, tz: tzinfo | None) -> str:
    """What a digest held outside active hours says of itself: when its fills were made."""
    zone = tz or UTC
    first, last = (at.astimezone(zone) for at in (release.bunch.first_at, release.bunch.last_at))
    made = f"{first:%Y-%m-%d %H:%M}"
    if first.tzname() != last.tzname():  # across a clock change: each end in its own time
        made += f" {first:%Z}"
    if last != first:
        made += f" to {last:%H:%M}" if last.date() == first.date() else f" to {last:%Y-%m-%d %H:%M}"
    return f"(held outside active hours: made {made} {last:%Z})"


def _held_back(release: Release) -> str:
    """What a throttle's trailing message says of itself: it comes late, and (N messages
    held back, sent as one) what it stands for; a held digest, what throttles folded into it."""
    if release.kind == "throttle":
        messages = release.suppressed + 1
        if messages == 1:
            return "(held back by the throttle)"
        return f"({messages} messages held back by the throttle, sent as one)"
    if release.suppressed:
        return f"({counted(release.suppressed, 'earlier message')} folded into this one)"
    return ""


def preview(rule: Rule, fill: Fill, escape: Escape | None) -> tuple[str, str]:
    """What a shaped rule would send for this fill alone (the dry run's view of a digest)."""
    release = make_release(rule.name, (), Bunch.of(fill), 0, "single")
    return render_release(rule, release, escape)
