"""The fake PolySimulator speaks the documented protocol (what the other tests rely on)."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fakes import MonoClock
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from notifier.events import Fill
from notifier.normalize import decode_frame, normalize_any, normalize_message
from notifier.simulator import DEFAULT_API_KEY, DEFAULT_MARKETS, SimulatedPolySim, demo_fills

KEY = {"X-API-Key": DEFAULT_API_KEY}


@pytest.fixture
async def clock() -> MonoClock:
    """The venue's token clock."""
    return MonoClock()


@pytest.fixture
async def polysim(clock: MonoClock) -> AsyncIterator[SimulatedPolySim]:
    """The fake venue on loopback, with an injected token clock."""
    async with SimulatedPolySim(clock=clock) as sim:
        yield sim


async def _token(sim: SimulatedPolySim, http: httpx.AsyncClient) -> str:
    response = await http.post(f"{sim.base_url}/v1/keys/ws-token", headers=KEY)
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 60
    token = body["token"]
    assert isinstance(token, str)
    return token


def _ws(sim: SimulatedPolySim, token: str) -> str:
    return sim.base_url.replace("http://", "ws://") + f"/v1/ws/executions?token={token}"


async def _close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    return info.value.rcvd.code if info.value.rcvd else None


async def test_tokens_need_a_known_key(polysim: SimulatedPolySim, http: httpx.AsyncClient) -> None:
    """The token endpoint answers 401 to an unknown key and accepts the Bearer alias."""
    url = f"{polysim.base_url}/v1/keys/ws-token"
    assert (await http.post(url, headers={"X-API-Key": "ps_live_nope"})).status_code == 401
    assert (await http.post(url)).status_code == 401
    bearer = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
    assert (await http.post(url, headers=bearer)).status_code == 200
    assert polysim.token_mints == 1


async def test_tokens_are_single_use_and_expire(
    polysim: SimulatedPolySim, http: httpx.AsyncClient, clock: MonoClock
) -> None:
    """A token works once; reused or past its TTL it is closed with 4001."""
    token = await _token(polysim, http)
    async with connect(_ws(polysim, token)) as ws:
        await polysim.wait_connected()
        await ws.send(json.dumps({"action": "ping"}))
        pong = json.loads(await ws.recv())
        assert pong["type"] == "pong"
        assert isinstance(pong["ts"], int)
    async with connect(_ws(polysim, token)) as ws:
        assert await _close_code(ws) == 4001
    stale = await _token(polysim, http)
    clock.t += 61
    async with connect(_ws(polysim, stale)) as ws:
        assert await _close_code(ws) == 4001


async def test_fault_knobs_close_with_their_codes(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """reject_tokens gives 4001, close_with_4002 and the tier limit give 4002."""
    polysim.reject_tokens = 1
    async with connect(_ws(polysim, await _token(polysim, http))) as ws:
        assert await _close_code(ws) == 4001
    polysim.close_with_4002 = 1
    async with connect(_ws(polysim, await _token(polysim, http))) as ws:
        assert await _close_code(ws) == 4002
    polysim.max_connections = 1
    async with connect(_ws(polysim, await _token(polysim, http))) as first:
        await polysim.wait_connected()
        async with connect(_ws(polysim, await _token(polysim, http))) as second:
            assert await _close_code(second) == 4002
        await first.send(json.dumps({"action": "ping"}))
        assert json.loads(await first.recv())["type"] == "pong"
    assert polysim.connections == 4


async def test_token_status_knob_and_retry_after(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """token_status replaces the token with that status; 429 carries Retry-After."""
    polysim.token_status, polysim.retry_after = 429, "12"
    response = await http.post(f"{polysim.base_url}/v1/keys/ws-token", headers=KEY)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "12"
    assert polysim.token_mints == 0


async def test_fill_goes_to_history_and_out_in_each_shape(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """fill() records a history item and emits the documented shape; all mean the same fill."""
    async with connect(_ws(polysim, await _token(polysim, http))) as ws:
        await polysim.wait_connected()
        keys = set()
        for shape in ("fill", "execution", "nested"):
            item = await polysim.fill(shape=shape, order_id=7, filled_at="2026-02-06T12:00:45Z")
            decoded = decode_frame(await ws.recv(), max_bytes=1 << 20)
            assert isinstance(decoded, dict)
            if shape == "nested":
                assert isinstance(decoded["data"], dict)
            fill = normalize_message(decoded)
            assert isinstance(fill, Fill)
            keys.add(fill.key)
            history = normalize_any(item)
            assert isinstance(history, Fill)
            keys.add(history.key)
        assert len(keys) == 1


async def test_history_is_newest_first_with_paging(
    polysim: SimulatedPolySim, http: httpx.AsyncClient
) -> None:
    """History pages newest first by limit/offset and refuses a limit outside 1..200."""
    start = datetime(2026, 2, 6, tzinfo=UTC)
    for n in (1, 3, 2):
        polysim.record_history(order_id=n, filled_at=start + timedelta(minutes=n))
    url = f"{polysim.base_url}/v1/account/history"
    page = await http.get(url, params={"limit": 2, "offset": 0}, headers=KEY)
    assert [i["order_id"] for i in page.json()] == [3, 2]
    page = await http.get(url, params={"limit": 2, "offset": 2}, headers=KEY)
    assert [i["order_id"] for i in page.json()] == [1]
    assert page.json()[0]["notional"] == "6.50"
    assert (await http.get(url, params={"limit": 201}, headers=KEY)).status_code == 422
    polysim.history_status = 503
    assert (await http.get(url, headers=KEY)).status_code == 503
    assert polysim.history_requests == 4


async def test_market_detail_and_404(polysim: SimulatedPolySim, http: httpx.AsyncClient) -> None:
    """A known market answers its question; an unknown one is 404; other paths are 404."""
    market = next(iter(DEFAULT_MARKETS))
    detail = (await http.get(f"{polysim.base_url}/v1/markets/{market}", headers=KEY)).json()
    assert detail["condition_id"] == market
    assert detail["question"] == DEFAULT_MARKETS[market]
    assert detail["slug"]
    missing = await http.get(f"{polysim.base_url}/v1/markets/0xnope", headers=KEY)
    assert missing.status_code == 404
    assert (await http.post(f"{polysim.base_url}/v1/orders", headers=KEY)).status_code == 404
    assert polysim.market_requests == 2


async def test_stop_closes_connected_clients(http: httpx.AsyncClient) -> None:
    """stop() with a feed client connected ends its connection and frees the ports."""
    sim = SimulatedPolySim()
    await sim.start()
    async with connect(_ws(sim, await _token(sim, http))) as ws:
        await sim.wait_connected()
        await sim.stop()
        with pytest.raises(ConnectionClosed):
            await ws.recv()


def test_demo_fills_are_varied_valid_and_reproducible() -> None:
    """demo_fills covers every shape, several markets and partial fills; all are valid fills."""
    fills = demo_fills(60, random.Random(3), start=datetime(2026, 2, 6, tzinfo=UTC))
    assert len(fills) == 60
    assert fills == demo_fills(60, random.Random(3), start=datetime(2026, 2, 6, tzinfo=UTC))
    assert {f["shape"] for f in fills} == {"fill", "execution", "nested"}
    assert len({f["market_id"] for f in fills}) >= 3
    assert {f["side"] for f in fills} == {"BUY", "SELL"}
    assert any(f["status"] == "PARTIALLY_FILLED" for f in fills)
    assert any("client_order_id" in f for f in fills)
    times = [str(f["filled_at"]) for f in fills]
    assert times == sorted(times)
    for f in fills:
        fill = normalize_any({k: v for k, v in f.items() if k != "shape"})
        assert isinstance(fill, Fill), fill
        assert f["market_id"] in DEFAULT_MARKETS
