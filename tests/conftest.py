"""Shared fixtures: the venue, an HTTP client, delivery peers (those live in tests/receivers.py)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from hypothesis import settings
from receivers import SmtpServer, TlsProxy, WebhookReceiver

from notifier import logs
from notifier.simulator import SimulatedPolySim

# Hypothesis's per-example deadline (200 ms) is a timing assertion: a cold import or a busy CI
# core fails an example that is correct. Tests here must not depend on timing.
settings.register_profile("notifier", deadline=None)
settings.load_profile("notifier")

# --------------------------------------------------------------------------------------------
# Nothing leaves the machine


class OutsideNetworkError(RuntimeError):
    """A test tried to reach an address off loopback. Not an OSError: code under test that
    retries network failures must not take it for one and carry on."""


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.split("%", 1)[0].rstrip(".").lower()  # an IPv6 scope, a rooted name
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class LoopbackOnly:
    """Wraps name lookups and connects (asyncio's go through both): a host off loopback is
    refused with OutsideNetworkError and remembered, so a refusal that the code under test
    swallowed still fails the test."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self._getaddrinfo = socket.getaddrinfo
        self._connect = socket.socket.connect
        self._connect_ex = socket.socket.connect_ex

    def _refuse(self, what: str) -> OutsideNetworkError:
        self.refused.append(what)
        return OutsideNetworkError(f"tests use loopback only, refused: {what}")

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, "", b"") and not _is_loopback(host):
            try:
                unspecified = ipaddress.ip_address(str(host)).is_unspecified  # a bind to all
            except ValueError:
                unspecified = False
            if not unspecified:
                raise self._refuse(f"name lookup of {host!r} (port {port!r})")
        return self._getaddrinfo(host, port, *args, **kwargs)

    def _check(self, sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise self._refuse(f"connect to {address!r}")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        guard = self
        connect: Callable[[socket.socket, Any], None] = self._connect
        connect_ex: Callable[[socket.socket, Any], int] = self._connect_ex

        def guarded_connect(sock: socket.socket, address: Any) -> None:
            guard._check(sock, address)
            connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
            guard._check(sock, address)
            return connect_ex(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", self.getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", guarded_connect)
        monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)


@pytest.fixture(scope="session")
def _loopback_only_installed() -> Iterator[LoopbackOnly]:
    """Installed once for the run, so threads a test leaves behind stay guarded too."""
    guard = LoopbackOnly()
    with pytest.MonkeyPatch.context() as patch:
        guard.install(patch)
        yield guard


@pytest.fixture(autouse=True)
def loopback_only(_loopback_only_installed: LoopbackOnly) -> Iterator[LoopbackOnly]:
    """Fails a test that tried to reach beyond loopback, even if the attempt was swallowed.
    (Child processes a test starts are not covered: their peers are the test's own.)"""
    guard = _loopback_only_installed
    guard.refused.clear()
    yield guard
    refused, guard.refused[:] = list(guard.refused), []
    if refused:
        pytest.fail(f"tests use loopback only; this one tried: {refused}", pytrace=False)


# --------------------------------------------------------------------------------------------
# The venue and a client for it


@pytest.fixture
async def venue() -> AsyncIterator[SimulatedPolySim]:
    """The fake PolySimulator on loopback (a module may override it with a tuned venue)."""
    async with SimulatedPolySim() as sim:
        yield sim


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """One httpx client, closed after the test."""
    async with httpx.AsyncClient() as client:
        yield client


# --------------------------------------------------------------------------------------------
# Delivery peers (channels)

_PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _no_outside_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to loopback peers directly, whatever proxy the machine running them sets."""
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    """An HTTP receiver on 127.0.0.1 for json:// and ntfy:// URLs, closed after the test."""
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.close()


@pytest.fixture
async def smtp_server() -> AsyncIterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 requiring AUTH (user `alerts`), for mailto:// URLs."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def tls_proxy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[TlsProxy]:
    """A TLS-intercepting proxy that is Slack and Telegram; requests' env points at it."""
    proxy = TlsProxy(trustme.CA())
    await proxy.start()
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(proxy.ca_bundle(tmp_path)))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    try:
        yield proxy
    finally:
        await proxy.close()


# --------------------------------------------------------------------------------------------
# Process-wide state the CLI changes


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`notifier.logs.configure` rewires root handlers and library floors: undo it after a test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    floors = {name: logging.getLogger(name).level for name in logs.FLOORS}
    hidden = logs._HIDDEN  # channels and the CLI add secrets to hide: each test starts anew
    yield
    logs._HIDDEN = hidden
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, floor in floors.items():
        logging.getLogger(name).setLevel(floor)
