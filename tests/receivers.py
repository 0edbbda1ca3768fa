"""Real peers on loopback for delivery tests: an HTTP webhook receiver, an SMTP server with AUTH,
and a TLS-intercepting CONNECT proxy that plays Slack and Telegram.

Nothing here leaves 127.0.0.1: the proxy answers every tunnelled request itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import html
import json
import re
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

# --------------------------------------------------------------------------------------------
# HTTP/1.1 parsing shared by the webhook receiver and the proxy


@dataclass(frozen=True)
class Request:
    """One HTTP request as it arrived: method, target path, lower-cased headers, raw body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    host: str = ""  # the tunnelled host, for requests seen through the proxy

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)


async def read_request(reader: asyncio.StreamReader, *, host: str = "") -> Request | None:
    """Read one request; None at a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method=method, path=path, headers=headers, body=body, host=host)


def http_response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    all_headers = {"Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
    return head.encode("latin-1") + b"\r\n" + body


class _Server:
    """An asyncio TCP server on 127.0.0.1:0 that owns and cleans up its connection tasks."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._closing = asyncio.Event()
        self._arrived = asyncio.Condition()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, release hanging handlers, close every connection."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        # Handlers end on their own once released and disconnected; cancelling them instead
        # makes asyncio's stream callback log the CancelledError.
        if self._tasks:
            _done, stuck = await asyncio.wait(list(self._tasks), timeout=5)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self.handle(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a peer that goes away, or a test that ends, is not the receiver's failure
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _notify_arrival(self) -> None:
        async with self._arrived:
            self._arrived.notify_all()

    async def _wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(predicate)

    async def hang_until_closed(self) -> None:
        await self._closing.wait()


# --------------------------------------------------------------------------------------------
# Webhook receiver (json://, ntfy://, anything plain HTTP)


@dataclass(frozen=True)
class Planned:
    """A planned answer to one request; `hang` accepts and never answers."""

    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


class WebhookReceiver(_Server):
    """Records every request; answers from a queue of planned responses, then 200 `{}`."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []
        self._plan: deque[Planned] = deque()

    # URLs apprise can use against this receiver
    @property
    def json_url(self) -> str:
        return f"json://127.0.0.1:{self.port}/"

    def ntfy_url(self, topic: str = "alerts") -> str:
        return f"ntfy://127.0.0.1:{self.port}/{topic}"

    # fault injection
    def respond(
        self, status: int, *, body: bytes = b"", retry_after: int | None = None, times: int = 1
    ) -> None:
        """The next `times` requests get this status (and Retry-After when given)."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        for _ in range(times):
            self._plan.append(Planned(status=status, body=body, headers=headers))

    def hang(self, times: int = 1) -> None:
        """The next `times` requests are read and never answered."""
        for _ in range(times):
            self._plan.append(Planned(hang=True))

    async def wait_for(self, n: int, timeout: float = 5) -> list[Request]:
        """Wait until at least `n` requests have arrived; TimeoutError otherwise."""
        await self._wait(lambda: len(self.requests) >= n, timeout)
        return list(self.requests)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if request is None:
            return
        self.requests.append(request)
        await self._notify_arrival()
        planned = self._plan.popleft() if self._plan else Planned()
        if planned.hang:
            await self.hang_until_closed()
            return
        headers = {"Content-Type": "application/json", **planned.headers}
        writer.write(http_response(planned.status, planned.body, headers))
        await writer.drain()


# --------------------------------------------------------------------------------------------
# SMTP server with AUTH (aiosmtpd, in its own thread)


@dataclass(frozen=True)
class Mail:
    """One accepted message: who authenticated, the envelope, the parsed message."""

    login: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    def text(self) -> str:
        """The plain-text body (first text/plain part)."""
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())


class _AnyPortController(Controller):  # type: ignore[misc]  # aiosmtpd is untyped
    """aiosmtpd's Controller, bound to port 0: learns its port before its readiness check."""

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    """An aiosmtpd server on loopback that requires AUTH (LOGIN/PLAIN) before MAIL, without TLS."""

    def __init__(self, *, user: str = "alerts", password: str = "s3cret-pw") -> None:
        self.user, self.password = user, password
        self.mails: list[Mail] = []
        self.failed_logins = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived = asyncio.Event()
        self._lock = threading.Lock()
        self._controller = _AnyPortController(
            self,
            hostname="127.0.0.1",
            port=0,
            authenticator=self._authenticate,
            # AUTH is required by handle_MAIL below: aiosmtpd's own auth_required without TLS
            # emits a UserWarning on every connection (and tests run with warnings as errors).
            auth_require_tls=False,
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def url(self, *, to: str = "trader@example.com", password: str | None = None) -> str:
        """A mailto:// URL for this server (plain SMTP, AUTH)."""
        pw = self.password if password is None else password
        return (
            f"mailto://{self.user}:{pw}@127.0.0.1:{self.port}"
            f"?from=notifier@example.com&to={to}&mode=insecure"
        )

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.user
            and auth_data.password.decode() == self.password
        )
        if not ok:
            self.failed_logins += 1
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        """aiosmtpd hook: refuse mail from a client that has not authenticated."""
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd hook: record the message."""
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.auth_data else ""
        mail = Mail(login, envelope.mail_from, tuple(envelope.rcpt_tos), message)
        with self._lock:
            self.mails.append(mail)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._arrived.set)
        return "250 Message accepted for delivery"

    async def wait_for(self, n: int, timeout: float = 5) -> list[Mail]:
        """Wait until at least `n` messages were accepted."""
        async with asyncio.timeout(timeout):
            while len(self.mails) < n:
                self._arrived.clear()
                if len(self.mails) >= n:
                    break
                await self._arrived.wait()
        return list(self.mails)


# --------------------------------------------------------------------------------------------
# TLS-intercepting proxy: fake Slack and Telegram on their real host names

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


class TlsProxy(_Server):
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
