"""Keep-alive sessions under requests' module-level functions, against a real loopback server:
one connection per sending thread, nothing carried between calls, the environment honoured."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from http_peer import LoopbackServer, Request, read_request
from receivers import SLACK_HOST, TlsProxy, WebhookReceiver

from notifier import keepalive
from notifier.channels import ChannelSet
from notifier.settings import ChannelSettings, DeliverySettings


class KeepAliveServer(LoopbackServer):
    """Answers any number of requests per connection; counts connections; can set a cookie."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0
        self.requests: list[Request] = []
        self.set_cookie = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while (request := await read_request(reader)) is not None:
            self.requests.append(request)
            cookie = "Set-Cookie: sid=secret; Path=/\r\n" if self.set_cookie else ""
            writer.write(f"HTTP/1.1 200 OK\r\n{cookie}Content-Length: 2\r\n\r\n{{}}".encode())
            await writer.drain()


@pytest.fixture
async def server() -> AsyncIterator[KeepAliveServer]:
    peer = KeepAliveServer()
    await peer.start()
    try:
        yield peer
    finally:
        await peer.close()


@pytest.fixture(autouse=True)
def _installed() -> Iterator[None]:
    keepalive.install()
    try:
        yield
    finally:
        keepalive.uninstall()


def _close_this_threads_session() -> None:
    session: requests.Session | None = getattr(keepalive._local, "session", None)
    if session is not None:
        session.close()


@contextlib.contextmanager
def _sending_thread() -> Iterator[ThreadPoolExecutor]:
    """One worker thread; its keep-alive session is closed before the thread ends, or its
    pooled sockets stay open until the garbage collector finds them (a later test)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            yield pool
        finally:
            pool.submit(_close_this_threads_session).result(timeout=10)


@pytest.fixture
def one_thread() -> Iterator[ThreadPoolExecutor]:
    with _sending_thread() as pool:
        yield pool


async def _on(pool: ThreadPoolExecutor, call: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(pool, call)


def _post(url: str) -> Callable[[], int]:
    return lambda: requests.post(url, json={"n": 1}, timeout=5).status_code


async def test_sends_from_one_thread_share_one_connection(
    server: KeepAliveServer, one_thread: ThreadPoolExecutor
) -> None:
    """Five posts from one thread arrive over one connection; the stock function opens five."""
    assert keepalive.installed()
    for _ in range(5):
        assert await _on(one_thread, _post(server.url)) == 200
    assert (len(server.requests), server.connections) == (5, 1)
    keepalive.uninstall()
    assert not keepalive.installed()
    for _ in range(5):
        assert await _on(one_thread, _post(server.url)) == 200
    assert (len(server.requests), server.connections) == (10, 6)


async def test_each_thread_keeps_its_own_connection(server: KeepAliveServer) -> None:
    """Two threads sending alternately hold two connections, each reused."""
    with _sending_thread() as first, _sending_thread() as second:
        for _ in range(3):
            await _on(first, _post(server.url))
            await _on(second, _post(server.url))
    assert (len(server.requests), server.connections) == (6, 2)


async def test_a_response_cookie_is_never_sent_back(
    server: KeepAliveServer, one_thread: ThreadPoolExecutor
) -> None:
    """A cookie set by a response is not carried to the next call (as with a fresh session)."""
    server.set_cookie = True
    await _on(one_thread, _post(server.url))
    await _on(one_thread, _post(server.url))
    assert [r.headers.get("cookie") for r in server.requests] == [None, None]
    assert server.connections == 1


async def test_a_call_with_its_own_proxies_runs_on_a_fresh_session(
    server: KeepAliveServer, one_thread: ThreadPoolExecutor
) -> None:
    """Explicit `proxies` take requests' own path: a connection of its own, closed after."""
    call = lambda: requests.post(server.url, data=b"x", proxies={}, timeout=5)  # noqa: E731
    await _on(one_thread, call)
    await _on(one_thread, call)
    assert (len(server.requests), server.connections) == (2, 2)


async def test_a_proxy_set_or_removed_between_calls_is_followed(
    server: KeepAliveServer, one_thread: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is read again when it changes: pointing nowhere fails, removed it works."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = s.getsockname()[1]  # closed once the block ends: connections are refused
    assert await _on(one_thread, _post(server.url)) == 200
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{nowhere}")
    with pytest.raises(requests.exceptions.ProxyError):
        await _on(one_thread, _post(server.url))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert await _on(one_thread, _post(server.url)) == 200
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("HTTP_PROXY")
    assert await _on(one_thread, _post(server.url)) == 200
    assert len(server.requests) == 3


async def test_apprise_through_the_proxy_environment(
    tls_proxy: TlsProxy, webhook: WebhookReceiver
) -> None:
    """apprise's Slack send follows HTTPS_PROXY and REQUESTS_CA_BUNDLE; NO_PROXY'd json://
    goes straight to the loopback webhook: the environment as requests itself applies it."""
    settings = {
        "slack": ChannelSettings(name="slack", urls=("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdn",)),
        "hook": ChannelSettings(name="hook", urls=(webhook.json_url,)),
    }
    channels = ChannelSet.build(settings, delivery=DeliverySettings(timeout=5))
    for name in ("slack", "hook", "slack"):
        (target,) = channels.targets(name)
        result = await channels.send(target.key, "title", "body")
        assert result.ok, result.error
    assert [r.host for r in tls_proxy.requests] == [SLACK_HOST, SLACK_HOST]
    assert len(webhook.requests) == 1


async def test_a_connection_idle_past_the_reuse_window_is_replaced(
    server: KeepAliveServer, one_thread: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reused only within REUSE_WITHIN of the last call: an older one may be half-closed by the
    server or a NAT, so the next call opens a fresh connection and closes the old."""
    now = [1000.0]
    monkeypatch.setattr(keepalive, "_monotonic", lambda: now[0])
    connections = []
    for step in (0.0, 1.0, keepalive.REUSE_WITHIN, 0.5):
        now[0] += step
        assert await _on(one_thread, _post(server.url)) == 200
        connections.append(server.connections)
    assert connections == [1, 1, 2, 2]
