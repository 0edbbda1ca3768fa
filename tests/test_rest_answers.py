"""The venue's REST answers the feed depends on (token, history), at their worst: bounded in
time, never fatal by mistake, and read as exactly as the feed's frames.

A canned server on loopback answers every request the same way, optionally a byte at a time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from http_peer import LoopbackServer, http_response, read_request

from notifier.backfill import Backfill
from notifier.errors import KeyRefused, TransientFeedError
from notifier.events import Fill
from notifier.feed_connect import mint_token
from notifier.settings import FeedSettings
from notifier.store import StateStore

T0 = datetime(2026, 2, 6, 12, 0, tzinfo=UTC)
NESTED = b"[" * 100_000 + b"]" * 100_000  # parses as JSON would, but deeper than Python can
HUGE = b'[{"fee": 1e99999999999999999999}]'  # JSON, but past what a Decimal can hold
BOUND = 30  # seconds a test may take at most; the timeouts under test are a fraction of one


class Canned(LoopbackServer):
    """Answers every request with `status` and `body`; `trickle` sends the body a byte a pause."""

    def __init__(self, status: int = 200, body: bytes = b"{}", trickle: float = 0.0) -> None:
        super().__init__()
        self.status, self.body, self.trickle = status, body, trickle
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is None:
            return
        self.requests += 1
        answer = http_response(self.status, self.body, {"Content-Type": "application/json"})
        if not self.trickle:
            writer.write(answer)
            await writer.drain()
            return
        for byte in answer:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(self.trickle)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def canned() -> AsyncIterator[Canned]:
    server = Canned()
    await server.start()
    yield server
    await server.close()


def _settings(server: Canned, *, request_timeout: float = 5) -> FeedSettings:
    return FeedSettings(
        base_url=server.url, api_key="ps_test_0123456789abcdef", request_timeout=request_timeout
    )


async def _mint(server: Canned, http: httpx.AsyncClient, **kw: float) -> str:
    async with asyncio.timeout(BOUND):
        return await mint_token(http, _settings(server, **kw), floor=lambda: 1.0)


@pytest.mark.parametrize("body", [NESTED, HUGE], ids=["nested", "huge"])
async def test_a_token_answer_past_the_parser_is_a_transient_failure(
    canned: Canned, http: httpx.AsyncClient, body: bytes
) -> None:
    """JSON deeper than the parser can go, or with a number no Decimal holds, is "no token",
    retried, not an escaping crash."""
    canned.body = body
    with pytest.raises(TransientFeedError, match="without a token"):
        await _mint(canned, http)


async def test_only_a_401_refuses_the_key_for_good(canned: Canned, http: httpx.AsyncClient) -> None:
    """A 403 may come from a proxy in front of the venue: retried. A 401 stops the daemon."""
    canned.status = 403
    with pytest.raises(TransientFeedError, match="HTTP 403"):
        await _mint(canned, http)
    canned.status = 401
    with pytest.raises(KeyRefused) as refused:
        await _mint(canned, http)
    assert "ps_test_0123…" in str(refused.value)  # half of a key this short
    assert "ps_test_0123456789abcdef" not in str(refused.value)


async def test_a_404_from_the_token_endpoint_points_at_the_base_url(
    canned: Canned, http: httpx.AsyncClient
) -> None:
    """A base URL naming no venue API got "answered HTTP 404" and no word of feed.base_url."""
    canned.status = 404
    with pytest.raises(TransientFeedError) as failed:
        await _mint(canned, http)
    assert str(failed.value) == (
        "token endpoint answered HTTP 404: feed.base_url may not name the venue's API"
    )


async def test_a_trickled_token_answer_is_cut_off_at_the_request_timeout(
    canned: Canned, http: httpx.AsyncClient
) -> None:
    """A server sending a byte every 50 ms cannot hold the token request past its 0.2 s."""
    canned.body = b'{"token": "x"' + b" " * 10_000 + b"}"
    canned.trickle = 0.05
    with pytest.raises(TransientFeedError, match="timed out"):
        await _mint(canned, http, request_timeout=0.2)


class _Sink:
    def __init__(self) -> None:
        self.fills: list[Fill] = []

    async def __call__(self, fill: Fill, source: str) -> None:
        self.fills.append(fill)


def _backfill(
    server: Canned,
    http: httpx.AsyncClient,
    tmp_path: Path,
    sink: _Sink,
    *,
    request_timeout: float = 0.2,
) -> Backfill:
    """A backfill reading history from `server`; the short default timeout is what cuts a
    trickled answer off, a test that needs the answer read gives a generous one."""

    async def no_pause(_: float) -> None:
        return None

    store = StateStore(tmp_path / "state.db", clock=lambda: T0 + timedelta(seconds=30))
    store.save_watermark(T0)
    backfill = Backfill(
        _settings(server, request_timeout=request_timeout),
        http=http,
        watermark=store,
        sink=sink,
        clock=lambda: T0 + timedelta(seconds=30),
        on_reject=lambda rejected, source: None,
        pause=no_pause,
        rng=random.Random(1),
    )
    backfill.begin()
    return backfill


@pytest.mark.parametrize(
    ("body", "trickle"),
    [(NESTED, 0.0), (HUGE, 0.0), (b"[" + b" " * 10_000 + b"]", 0.05)],
    ids=["nested", "huge", "trickled"],
)
async def test_a_broken_history_answer_fails_the_run_and_nothing_else(
    canned: Canned, http: httpx.AsyncClient, tmp_path: Path, body: bytes, trickle: float
) -> None:
    """A history answer nested too deep, holding a number no Decimal holds, or trickled, is
    one failed try: run() never raises."""
    canned.body, canned.trickle = body, trickle
    sink = _Sink()
    backfill = _backfill(canned, http, tmp_path, sink)
    async with asyncio.timeout(BOUND):
        await backfill.run(attempts=1)
    assert backfill.failures == 1
    assert sink.fills == []


async def test_history_numbers_are_as_exact_as_the_feed_s(
    canned: Canned, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A quantity sent as a JSON number keeps every digit: one fill, one identity, both paths."""
    canned.body = (
        b'[{"order_id": "7", "market_id": "0xabc", "side": "BUY", "outcome": "Yes", '
        b'"price": "0.5", "quantity": 12.345678901234567891, '
        b'"filled_at": "2026-02-06T12:00:10Z"}]'
    )
    sink = _Sink()
    # Not the 0.2 s that cuts a trickle off: a loaded machine took longer over loopback once.
    backfill = _backfill(canned, http, tmp_path, sink, request_timeout=5)
    async with asyncio.timeout(BOUND):
        await backfill.run(attempts=1)
    assert [fill.quantity for fill in sink.fills] == [Decimal("12.345678901234567891")]
