"""`notifier simulator`: PolySimulator's stand-in on loopback, to try `run` without an account.

The simulated venue the demo and the tests use (REST endpoints, the execution feed with its
single-use tokens, the history a catch-up reads) trades on its own: a varied fill every few
seconds, printed as it goes. `run` pointed at it is the real daemon, so stopping and starting
either side shows what reconnects and catch-ups do, with no real venue involved.
"""

from __future__ import annotations

import asyncio
import random
from typing import TextIO

from notifier.errors import os_reason
from notifier.simulator import DEFAULT_API_KEY, SimulatedPolySim
from notifier.simulator_data import live_fills


async def run_simulator(
    *, port: int, every: float, fills: int | None, out: TextIO, err: TextIO
) -> int:
    """Serve the venue on loopback `port` (0: any free) and trade a fill every `every`
    seconds, `fills` of them (None: until interrupted); 1 if the port cannot be had (said
    on `err`)."""
    venue = SimulatedPolySim()
    try:
        await venue.start(port=port)
    except OSError as exc:
        print(f"notifier simulator: cannot listen on 127.0.0.1:{port}: {os_reason(exc)}", file=err)
        return 1
    try:
        print(
            f"simulated PolySimulator on {venue.base_url} (Ctrl-C stops it); in another "
            "shell, with a config whose feed.base_url is left to the environment:\n"
            f"  export POLYSIM_BASE_URL={venue.base_url} POLYSIM_API_KEY={DEFAULT_API_KEY}\n"
            "  notifier run --config config.yaml",
            file=out,
            flush=True,
        )
        for fill in live_fills(fills, random.Random()):
            await asyncio.sleep(every)
            item = await venue.fill(**fill)  # type: ignore[arg-type]  # shape is one of three
            print(_line(item, venue.markets), file=out, flush=True)
    finally:
        await venue.stop()
    return 0


def _line(item: dict[str, object], titles: dict[str, str]) -> str:
    """A fill as the venue made it, in one line (its market by title, as a trader reads it)."""
    market = str(item["market_id"])
    return (
        f"{item['filled_at']} order {item['order_id']}: {item['side']} {item['quantity']} "
        f"{item['outcome']} @ {item['price']} on {titles.get(market) or market} ({item['status']})"
    )
