"""An SMTP server on loopback that requires AUTH, for mailto:// deliveries (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


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
        self.answer_delay = 0.0  # seconds the answer to a message waits (a scanning server)
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
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
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
