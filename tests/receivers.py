"""Real peers on loopback for delivery tests, in one import: an HTTP webhook receiver (here), an
SMTP server with AUTH (smtp_peer) and a TLS-intercepting proxy playing Slack and Telegram
(tls_proxy). Fixtures for them are in conftest.py.
"""

from __future__ import annotations

import asyncio
from collections import deque

from http_peer import LoopbackServer, Planned, Request, http_response, read_request
from smtp_peer import Mail, SmtpServer
from tls_proxy import (
    SLACK_HOST,
    TELEGRAM_HOST,
    TelegramHtmlError,
    TlsProxy,
    telegram_html_to_text,
)

__all__ = [
    "SLACK_HOST",
    "TELEGRAM_HOST",
    "LoopbackServer",
    "Mail",
    "Planned",
    "Request",
    "SmtpServer",
    "TelegramHtmlError",
    "TlsProxy",
    "WebhookReceiver",
    "http_response",
    "read_request",
    "telegram_html_to_text",
]


class WebhookReceiver(LoopbackServer):
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
        self,
        status: int,
        *,
        body: bytes = b"",
        retry_after: int | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `times` requests get this status (and Retry-After and `headers` if given)."""
        headers = dict(headers or {})
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        for _ in range(times):
            self._plan.append(Planned(status=status, body=body, headers=headers))

    def hang(self, times: int = 1) -> None:
        """The next `times` requests are read and never answered."""
        for _ in range(times):
            self._plan.append(Planned(hang=True))

    def answer_late(self, seconds: float, times: int = 1) -> None:
        """The next `times` requests are answered 200, `seconds` after each arrived."""
        for _ in range(times):
            self._plan.append(Planned(delay=seconds))

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
        if planned.delay:
            await asyncio.sleep(planned.delay)
        headers = {"Content-Type": "application/json", **planned.headers}
        writer.write(http_response(planned.status, planned.body, headers))
        await writer.drain()
