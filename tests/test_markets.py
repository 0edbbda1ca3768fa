"""Market title look-ups against the fake venue: cached, shared, bounded, never raising."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from fakes import MonoClock

from notifier.markets import MAX_IN_FLIGHT, MarketTitles
from notifier.normalize import MAX_SHOWN
from notifier.simulator import DEFAULT_API_KEY, DEFAULT_MARKETS, SimulatedPolySim

BTC, FED, NBA = list(DEFAULT_MARKETS)[:3]


def titles_for(
    sim: SimulatedPolySim, http: httpx.AsyncClient, clock: MonoClock | None = None, **kw: float
) -> MarketTitles:
    return MarketTitles(
        http,
        base_url=sim.base_url,
        api_key=DEFAULT_API_KEY,
        clock=clock or MonoClock(),
        **kw,  # type: ignore[arg-type]
    )


async def test_title_is_looked_up_once_and_cached(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """The first call asks the venue; later calls and cached() answer from memory."""
    titles = titles_for(venue, http)
    assert titles.cached(BTC) is None
    assert await titles.title(BTC) == DEFAULT_MARKETS[BTC]
    assert await titles.title(BTC) == DEFAULT_MARKETS[BTC]
    assert titles.cached(BTC) == DEFAULT_MARKETS[BTC]
    assert venue.market_requests == 1
    assert titles.stats == {"lookups": 1, "failures": 0}


async def test_concurrent_lookups_share_one_request(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Ten callers asking for one new market cause a single request."""
    titles = titles_for(venue, http)
    results = await asyncio.gather(*(titles.title(FED) for _ in range(10)))
    assert results == [DEFAULT_MARKETS[FED]] * 10
    assert venue.market_requests == 1


async def test_unknown_market_is_negative_cached_then_retried(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A 404 gives None, is not asked again within retry_after, and is asked after it."""
    clock = MonoClock()
    titles = titles_for(venue, http, clock, retry_after=300.0)
    assert await titles.title("0xdead") is None
    assert await titles.title("0xdead") is None
    assert venue.market_requests == 1
    clock.t += 301
    venue.markets["0xdead"] = "Listed late?"
    assert await titles.title("0xdead") == "Listed late?"
    assert venue.market_requests == 2
    assert titles.stats == {"lookups": 2, "failures": 1}


async def test_absent_tells_the_venue_saying_no_title_from_a_failure(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Only a 404/410 or an answer without a question is `absent`; failures and successes not."""
    clock = MonoClock()
    titles = titles_for(venue, http, clock)
    assert await titles.title("0xdead") is None
    assert titles.absent("0xdead")
    venue.markets["0xblank"] = "   "
    assert await titles.title("0xblank") is None
    assert titles.absent("0xblank")
    venue.market_status = 503
    assert await titles.title(BTC) is None
    assert not titles.absent(BTC)
    venue.market_status, venue.market_retry_after = 429, "1"
    assert await titles.title(FED) is None
    assert not titles.absent(FED)
    venue.market_retry_after = None
    clock.t += 2
    for status, market in ((408, "0x408"), (403, "0x403"), (302, "0x302")):
        venue.market_status = status  # a proxy's answer says nothing about the market
        assert await titles.title(market) is None
        assert not titles.absent(market), status
    venue.market_status = 410
    assert await titles.title("0x410") is None
    assert titles.absent("0x410")
    venue.market_status = None
    clock.t += 301
    venue.markets["0xdead"] = "Listed late?"
    assert await titles.title("0xdead") == "Listed late?"
    assert not titles.absent("0xdead")
    assert not titles.absent(NBA)  # never asked: nothing known either way


async def test_server_errors_and_timeouts_give_none(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A 503 and a look-up slower than the timeout both fall back to None without raising."""
    venue.market_status = 503
    titles = titles_for(venue, http, timeout=0.05)
    assert await titles.title(BTC) is None
    venue.market_status, venue.market_delay = None, 5.0
    assert await titles.title(NBA) is None
    assert titles.stats["failures"] == 2


async def test_unreachable_venue_gives_none(http: httpx.AsyncClient) -> None:
    """Connection refused is a failure like any other: None, no exception."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nothing listens there
    titles = MarketTitles(http, base_url=f"http://127.0.0.1:{port}", api_key="k", timeout=2)
    assert await titles.title(BTC) is None
    assert titles.stats["failures"] == 1


async def test_cache_is_lru_bounded(venue: SimulatedPolySim, http: httpx.AsyncClient) -> None:
    """With room for two, the least recently used title is dropped and fetched again."""
    titles = titles_for(venue, http, max_entries=2)
    await titles.title(BTC)
    await titles.title(FED)
    assert titles.cached(BTC) is not None  # BTC is now the most recently used
    await titles.title(NBA)
    assert titles.cached(FED) is None
    assert titles.cached(BTC) == DEFAULT_MARKETS[BTC]
    await titles.title(FED)
    assert venue.market_requests == 4


async def test_one_caller_giving_up_does_not_cancel_the_others(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Cancelling one waiter leaves the shared look-up running for the rest."""
    venue.market_delay = 0.05
    titles = titles_for(venue, http)
    first = asyncio.create_task(titles.title(BTC))
    second = asyncio.create_task(titles.title(BTC))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == DEFAULT_MARKETS[BTC]
    with pytest.raises(asyncio.CancelledError):
        await first
    assert venue.market_requests == 1


async def test_aclose_cancels_lookups_in_flight(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """aclose() at shutdown leaves no look-up task behind."""
    venue.market_delay = 5.0
    titles = titles_for(venue, http)
    waiter = asyncio.create_task(titles.title(BTC))
    await asyncio.sleep(0.01)
    await titles.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_market_id_is_quoted_into_the_path(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """An id with a slash or query characters stays one path segment."""
    venue.markets["a/b?c"] = "Odd id"
    titles = titles_for(venue, http)
    assert await titles.title("a/b?c") == "Odd id"
    assert await titles.title("") is None
    assert venue.market_requests == 1


async def test_a_failure_after_the_venue_said_no_title_keeps_its_word(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A 429, a 503 or a timeout says nothing about the market: a market the venue said has no
    title stays `absent` through them (fills for it are not held for a title again)."""
    clock = MonoClock()
    titles = titles_for(venue, http, clock, retry_after=300.0)
    assert await titles.title("0xdead") is None
    assert titles.absent("0xdead")
    for status in (429, 503):
        clock.t += 301
        venue.market_status, venue.market_retry_after = status, "1"
        assert await titles.title("0xdead") is None
        assert titles.absent("0xdead"), status
    clock.t += 301
    venue.market_status = None
    venue.markets["0xdead"] = "Listed late"
    assert await titles.title("0xdead") == "Listed late"
    assert not titles.absent("0xdead")


async def test_after_a_429_no_lookup_is_made_until_its_retry_after(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A 429 pauses every look-up for its Retry-After (None at once meanwhile), then resumes."""
    clock = MonoClock()
    titles = titles_for(venue, http, clock, retry_after=300.0)
    venue.market_status, venue.market_retry_after = 429, "4"
    assert await titles.title(BTC) is None
    venue.market_status = None
    assert await titles.title(FED) is None  # paused: answered at once, nothing asked
    assert await titles.title(BTC) is None
    assert venue.market_requests == 1
    clock.t += 4
    assert await titles.title(FED) == DEFAULT_MARKETS[FED]
    assert await titles.title(BTC) == DEFAULT_MARKETS[BTC]  # not kept out for 300 s
    assert venue.market_requests == 3


async def test_a_server_error_is_retried_sooner_than_an_unknown_market(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """A 503 is asked again after TRANSIENT_RETRY (30 s), a 404 only after retry_after."""
    clock = MonoClock()
    titles = titles_for(venue, http, clock, retry_after=300.0)
    venue.market_status = 503
    assert await titles.title(BTC) is None
    venue.market_status = None
    assert await titles.title("0xdead") is None  # 404
    clock.t += 31
    assert await titles.title(BTC) == DEFAULT_MARKETS[BTC]
    assert await titles.title("0xdead") is None  # still remembered as unknown
    assert venue.market_requests == 3


async def test_a_server_that_drips_its_answer_is_cut_off_at_the_timeout(
    http: httpx.AsyncClient,
) -> None:
    """httpx bounds each read, not the request: a byte every 20 ms would keep a look-up (and a
    connection of the client the feed shares) forever. The whole exchange has the timeout."""

    done = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            writer.write(b"Content-Length: 100000\r\n\r\n")
            while not done.is_set():
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.02)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    titles = MarketTitles(http, base_url=f"http://127.0.0.1:{port}", api_key="k", timeout=0.2)
    try:
        async with asyncio.timeout(5):
            assert await titles.title(BTC) is None
        assert titles.stats == {"lookups": 1, "failures": 1}
    finally:
        done.set()
        server.close()
        await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 5)
        await server.wait_closed()


async def test_a_burst_of_look_ups_stops_at_the_first_429(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Fifty new markets at once: a few requests are in flight, the 429 stops the rest."""
    venue.market_status, venue.market_retry_after = 429, "60"
    titles = titles_for(venue, http)
    markets = [f"0x{n:03x}" for n in range(50)]
    assert await asyncio.gather(*(titles.title(m) for m in markets)) == [None] * 50
    assert venue.market_requests == MAX_IN_FLIGHT < 10
    assert not any(titles.absent(m) for m in markets)
    assert await titles.title(markets[0]) is None  # paused: no request until Retry-After
    assert venue.market_requests == MAX_IN_FLIGHT


async def test_the_title_is_the_question_shown_on_one_line(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """The question is the title, its control characters and line breaks made spaces: a title
    is shown in messages, logs and `notifier outbox`, where a newline could forge a row. A
    market without a question has no title: not its event's (many markets share one) nor its
    slug, which a `market_title` rule would be tested against as if it were the question."""
    titles = titles_for(venue, http)
    venue.markets |= {"0xnl": "Will it rain?\n#999 dead\u2028x", "0xnul": "\x00\r\n"}
    assert await titles.title("0xnl") == "Will it rain? #999 dead x"
    assert await titles.title("0xnul") is None
    assert titles.absent("0xnul")
    venue.markets["0xevent"] = ""
    venue.event_titles["0xevent"] = "Fed decision in March"
    assert await titles.title("0xevent") is None
    assert titles.absent("0xevent")
    assert venue.market_requests == 3


async def test_a_title_is_shown_in_reading_order_and_cut_to_a_line(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """Bidi controls are dropped (a right-to-left override made "above" read as "evoba", and
    can make a title read as another), and a question past MAX_SHOWN characters is cut: a
    venue's megabyte question must not fill every message, outbox row and the title cache.
    Rules match the title kept, so the cut is far past any real question."""
    titles = titles_for(venue, http)
    venue.markets |= {"0xrlo": "Will BTC close \u202eabove\u202c $100k?", "0xbig": "x" * 100_000}
    assert await titles.title("0xrlo") == "Will BTC close above $100k?"
    big = await titles.title("0xbig")
    assert big is not None
    assert len(big) == MAX_SHOWN
    assert big.endswith("x…")
    assert MAX_SHOWN >= 1000


async def test_a_lone_surrogate_never_makes_a_look_up_raise(
    venue: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """JSON can spell a lone surrogate ("\\ud800"), which no UTF-8 encodes: in a question it
    becomes a space (the state file could not store it); in an id the look-up fails, quietly."""
    titles = titles_for(venue, http)
    venue.markets["0xodd"] = "BTC \ud800 100k?"
    assert await titles.title("0xodd") == "BTC   100k?"
    assert await titles.title("0x\ud800") is None
    assert not titles.absent("0x\ud800")  # nothing said about the market: asked again later
