"""The loop probes: a blocked loop shows as lag, a collection shows as a GC pause."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from service.runtime.loop_watch import GcPauses, LoopLagProbe

BLOCK_S = 0.15


async def test_a_blocked_loop_is_seen_as_lag() -> None:
    lags: list[float] = []
    probe = LoopLagProbe(lags.append, interval_s=0.01)
    probe.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(BLOCK_S)  # nothing else can run: the probe's timer waits
        async with asyncio.timeout(5):
            while len(lags) < 8:
                await asyncio.sleep(0.01)
    finally:
        probe.stop()
    assert max(lags) >= BLOCK_S * 0.8
    assert sorted(lags)[len(lags) // 2] < BLOCK_S / 2  # the rest of the time the loop was free
    count = len(lags)
    await asyncio.sleep(0.05)
    assert len(lags) == count  # stopped means stopped


def test_every_collection_is_reported_with_its_generation() -> None:
    seen: list[tuple[int, float]] = []
    pauses = GcPauses(lambda generation, pause_s: seen.append((generation, pause_s)))
    pauses.start()
    try:
        gc.collect(1)
        gc.collect(2)
    finally:
        pauses.stop()
    assert [g for g, _ in seen][-2:] == [1, 2]
    assert all(pause_s >= 0 for _, pause_s in seen)
    count = len(seen)
    gc.collect()
    assert len(seen) == count  # nothing recorded once stopped


def test_bad_interval_is_named() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        LoopLagProbe(lambda lag_s: None, interval_s=0)
