"""Long fault runs (`pytest -m slow tests/test_faults_slow.py`): more kills, more alerts."""

from __future__ import annotations

from pathlib import Path

import pytest
from faults import Hook
from test_faults import kill_and_restart

from notifier.simulator import SimulatedPolySim

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_ten_kill_9s_with_alerts_pending(
    venue: SimulatedPolySim,
    tmp_path: Path,
    seed: int,
) -> None:
    """Ten kill -9s at random points of 150 alerts: every alert arrives, at most 10 repeats."""
    hook = Hook()
    await hook.start()
    try:
        await kill_and_restart(venue, hook, tmp_path, fills=150, kills=10, seed=seed)
    finally:
        await hook.close()
