"""`GcPacer`: older generations are collected when no session timer is due soon, or once too
many young collections piled up; the process's GC settings come back at stop."""

from __future__ import annotations

import asyncio
import gc

import pytest

from service.runtime.gc_pacing import GcPacer


def pile_up_young_collections(count: int) -> None:
    for _ in range(count):
        gc.collect(0)


async def test_collects_only_when_no_timer_is_due_soon() -> None:
    before = gc.get_threshold()
    loop = asyncio.get_running_loop()
    due: list[float | None] = [loop.time() + 0.05]  # a timer due in 50 ms: not quiet
    pacer = GcPacer(lambda: due[0], young_threshold=1000, check_every_s=0.01, min_quiet_s=0.2, quiet_after=1,
                     force_after=1000)
    pacer.start()
    try:
        assert gc.get_threshold()[0] == 1000 and gc.get_threshold()[1] >= 1 << 30
        pile_up_young_collections(3)
        await asyncio.sleep(0.1)
        assert pacer.collections == {"quiet": 0, "forced": 0}
        due[0] = None  # nothing pending: quiet
        pile_up_young_collections(1)
        await asyncio.sleep(0.1)
        assert pacer.collections["quiet"] >= 1 and gc.get_count()[1] < 3
    finally:
        pacer.stop()
    assert gc.get_threshold() == before


async def test_forced_when_too_many_young_collections_piled_up() -> None:
    loop = asyncio.get_running_loop()
    pacer = GcPacer(lambda: loop.time() + 0.001, check_every_s=0.01, quiet_after=1, force_after=2)
    pacer.start()
    try:
        pile_up_young_collections(3)
        await asyncio.sleep(0.1)
        assert pacer.collections["forced"] >= 1 and pacer.collections["quiet"] == 0
    finally:
        pacer.stop()


async def test_two_pacers_restore_the_settings_once_both_stopped() -> None:
    before = gc.get_threshold()
    first, second = GcPacer(lambda: None), GcPacer(lambda: None)
    first.start()
    second.start()
    first.stop()
    assert gc.get_threshold() != before, "the second still runs"
    second.stop()
    assert gc.get_threshold() == before


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="young_threshold"):
        GcPacer(lambda: None, young_threshold=0)
