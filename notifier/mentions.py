"""Mentions and links a value must not make: the zero-width space that defuses them.

Apart from render.py, which fills templates and calls these on each value and at each seam
between a value and the template's text (the dry run looks for NO_MENTION to say why).
"""

from __future__ import annotations

import re

# A mention in a value would ping people the alert's writer never named: "@everyone" in a
# market title pings a whole Discord server, "<@!123>" a Discord user, "<!channel>" a Slack
# channel, "@name" a Telegram user; apprise's Discord plugin even copies each "@word" of a
# Markdown body into the message as a ping ("👉 @everyone"). A Markdown link in a value,
# "[x](!here)", becomes Slack's "<!here|x>" in apprise's conversion, "[x](tg://user?id=1)" a
# Telegram mention, and any other one a link the venue's text chose. A zero-width space after
# the "@", inside "<!", "<@" or "](" leaves the text as it reads and makes it neither mention
# nor link; so does one at a seam where a value and the template's text would join into a
# mention. Values only: a template's own "@here" is its writer's choice.
NO_MENTION = "\u200b"
_MENTION = re.compile(r"(?<=@)(?=[\w&!])|(?<=<)(?=[!@])|(?<=\])(?=\()")


def joins(tail: str, text: str) -> bool:
    """Whether `text` written after the character `tail` would join into a mention across
    the seam: a template's "@{outcome}" with the venue's "everyone", a value ending in "@"
    before the template's "here", or the template's "@{status}here" with no status. Both
    sides as written, before escaping: "<" and "!channel" are one once an HTML view reads
    them back. The seam is one character each side, as in `_MENTION`."""
    return tail != "" and tail in "@<]" and _MENTION.match(tail + text[0], 1) is not None


def defused(text: str) -> str:
    """`text` with a zero-width space in each place it would mention or link."""
    return _MENTION.sub(NO_MENTION, text)
