"""A TLS-intercepting CONNECT proxy on loopback that plays Slack and Telegram.

requests honours HTTPS_PROXY and REQUESTS_CA_BUNDLE, so apprise's Slack and Telegram plugins reach
this proxy; it terminates TLS with `trustme` certificates for the real host names and answers
every request itself. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import ssl
from collections import deque
from pathlib import Path

import trustme
from http_peer import LoopbackServer, Planned, Request, http_response, read_request

SLACK_HOST = "hooks.slack.com"
TELEGRAM_HOST = "api.telegram.org"

_TG_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a"}
    | {"tg-emoji", "code", "pre", "blockquote"}
)
_TG_TOKEN = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^<>]*>|&(#\d+|#x[0-9A-Fa-f]+|[A-Za-z]+);|[<&]"
)
_TG_ENTITIES = frozenset({"lt", "gt", "amp", "quot"})


class TelegramHtmlError(ValueError):
    """The text is not HTML that Telegram's parse_mode=HTML accepts."""


def telegram_html_to_text(text: str) -> str:
    """What Telegram would display for parse_mode=HTML text; raises like the real API refuses."""
    shown: list[str] = []
    stack: list[str] = []
    pos = 0
    for match in _TG_TOKEN.finditer(text):
        shown.append(text[pos : match.start()])
        pos = match.end()
        closing, tag, entity = match.group(1), match.group(2), match.group(3)
        offset = len(text[: match.start()].encode("utf-16-le")) // 2
        if tag is not None:
            name = tag.lower()
            if name not in _TG_TAGS:
                raise TelegramHtmlError(f'Unsupported start tag "{name}" at byte offset {offset}')
            if closing:
                if not stack or stack.pop() != name:
                    raise TelegramHtmlError(f"Unmatched end tag at byte offset {offset}")
            else:
                stack.append(name)
        elif entity is not None:
            if not entity.startswith("#") and entity not in _TG_ENTITIES:
                raise TelegramHtmlError(f'Unsupported HTML entity "&{entity};" at offset {offset}')
            shown.append(html.unescape(match.group(0)))
        else:
            raise TelegramHtmlError(f"Unexpected {match.group(0)!r} at byte offset {offset}")
    shown.append(text[pos:])
    if stack:
        raise TelegramHtmlError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(shown)


class TlsProxy(LoopbackServer):
    """A loopback CONNECT proxy that terminates TLS for Slack and Telegram and answers itself."""

    def __init__(self, ca: trustme.CA) -> None:
        super().__init__()
        self.ca = ca
        self.requests: list[Request] = []
        self.connects: list[str] = []  # every CONNECT target asked for, allowed or not
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(SLACK_HOST, TELEGRAM_HOST).configure_cert(self._ctx)
        self._plan: deque[Planned] = deque()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ca_bundle(self, directory: Path) -> Path:
        path = directory / "proxy-ca.pem"
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def respond(self, status: int, *, body: bytes = b"", times: int = 1) -> None:
        """The next `times` tunnelled requests get this answer instead of the service's."""
        for _ in range(times):
            self._plan.append(Planned(status=status, body=body))

    def of(self, host: str) -> list[Request]:
        return [r for r in self.requests if r.host == host]

    async def wait_for(self, n: int, timeout: float = 5) -> list[Request]:
        await self._wait(lambda: len(self.requests) >= n, timeout)
        return list(self.requests)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connect = await read_request(reader)
        if connect is None:
            return
        if connect.method != "CONNECT":
            # Plain-HTTP proxying would mean reaching a real host: refuse.
            writer.write(http_response(403, b"plain proxying refused"))
            await writer.drain()
            return
        host = connect.path.rsplit(":", 1)[0]
        self.connects.append(connect.path)
        if host not in (SLACK_HOST, TELEGRAM_HOST):
            writer.write(http_response(403, b"host not intercepted"))
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await writer.start_tls(self._ctx)
        request = await read_request(reader, host=host)
        if request is None:
            return
        self.requests.append(request)
        await self._notify_arrival()
        if self._plan:
            planned = self._plan.popleft()
            status, body = planned.status, planned.body
        elif host == SLACK_HOST:
            status, body = 200, b"ok"
        else:
            status, body = _telegram_answer(request)
        writer.write(http_response(status, body, {"Content-Type": "application/json"}))
        await writer.drain()


def _telegram_answer(request: Request) -> tuple[int, bytes]:
    """What the Bot API says to one request (sendMessage checked like the real one)."""
    payload = request.json or {}
    if not request.path.endswith("/sendMessage"):
        return 200, json.dumps({"ok": True, "result": True}).encode()
    text = str(payload.get("text", ""))
    shown = text
    if payload.get("parse_mode") == "HTML":
        try:
            shown = telegram_html_to_text(text)
        except TelegramHtmlError as exc:
            refusal = {
                "ok": False,
                "error_code": 400,
                "description": f"Bad Request: can't parse entities: {exc}",
            }
            return 400, json.dumps(refusal).encode()
    result = {
        "message_id": 1,
        "chat": {"id": payload.get("chat_id"), "type": "private"},
        "date": 0,
        "text": shown,
    }
    return 200, json.dumps({"ok": True, "result": result}).encode()
