"""Shared fixtures: the venue, an HTTP client, delivery peers (those live in tests/receivers.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

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
