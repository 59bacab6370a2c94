"""`GcPacer`: the middle generation is collected when no session timer is due soon, or frozen
(deferred) once too much piled up with timers always due; a sweep reclaims everything in a
long quiet window or past its bound; a clock bounds the time between young collections; the
process's GC settings come back at stop. The middle-generation tests turn the clock off so
that they count only the young collections they make."""

from __future__ import annotations

import asyncio
import gc

import pytest

from service.runtime.gc_pacing import GcPacer

NOTHING = {"quiet": 0, "deferred": 0, "sweep": 0, "forced_sweep": 0}


def pile_up_young_collections(count: int) -> None:
    for _ in range(count):
        gc.collect(0)


async def test_collects_only_when_no_timer_is_due_soon() -> None:
    before = gc.get_threshold()
    loop = asyncio.get_running_loop()
    due: list[float | None] = [loop.time() + 0.05]  # a timer due in 50 ms: not quiet
    pacer = GcPacer(lambda: due[0], young_threshold=1000, check_every_s=0.01, min_quiet_s=0.2, quiet_after=1,
                    defer_after=1000, young_every_s=None)
    pacer.start()
    try:
        assert gc.get_threshold()[0] == 1000 and gc.get_threshold()[1] >= 1 << 30
        pile_up_young_collections(3)
        await asyncio.sleep(0.1)
        assert pacer.collections == NOTHING
        due[0] = None  # nothing pending: quiet
        pile_up_young_collections(1)
        await asyncio.sleep(0.1)
        assert pacer.collections["quiet"] >= 1 and gc.get_count()[1] < 3
    finally:
        pacer.stop()
    assert gc.get_threshold() == before


async def test_with_timers_always_due_the_pile_is_frozen_not_collected(monkeypatch) -> None:
    loop = asyncio.get_running_loop()
    pacer = GcPacer(lambda: loop.time() + 0.001, check_every_s=0.01, quiet_after=1, defer_after=2,
                    young_every_s=None)
    collected: list[int] = []
    real_collect = gc.collect

    def watched_collect(generation: int = 2) -> int:
        collected.append(generation)
        return real_collect(generation)

    pacer.start()
    try:
        pile_up_young_collections(3)  # before gc.collect is watched: these make the pile
        monkeypatch.setattr(gc, "collect", watched_collect)
        await asyncio.sleep(0.1)
    finally:
        monkeypatch.undo()
        pacer.stop()
    assert pacer.collections["deferred"] == 1 and pacer.collections["quiet"] == 0
    assert collected == [], "no collection may pause the loop while timers are due"


async def test_a_sweep_waits_for_a_long_quiet_window_or_its_own_bound() -> None:
    loop = asyncio.get_running_loop()
    due: list[float | None] = [loop.time() + 0.001]  # always a timer due: never quiet
    pacer = GcPacer(lambda: due[0], young_threshold=1000, check_every_s=0.01, quiet_after=1, defer_after=1,
                    sweep_after=2000, sweep_force_after=10_000, young_every_s=None)
    pacer.start()
    try:
        for _ in range(4):  # 4 x 1,000 piled up: past sweep_after, but never quiet
            pile_up_young_collections(1)
            due[0] = loop.time() + 0.001
            await asyncio.sleep(0.03)
        assert pacer.collections["deferred"] >= 2
        assert pacer.collections["sweep"] == 0 and pacer.collections["forced_sweep"] == 0
        due[0] = None  # quiet: the sweep runs
        await asyncio.sleep(0.05)
        assert pacer.collections["sweep"] == 1
        for _ in range(12):  # never quiet again: past sweep_force_after, swept anyway
            pile_up_young_collections(1)
            due[0] = loop.time() + 0.001
            await asyncio.sleep(0.02)
        assert pacer.collections["forced_sweep"] >= 1
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
    assert gc.get_freeze_count() == 0, "the last to stop unfreezes"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="young_threshold"):
        GcPacer(lambda: None, young_threshold=0)
    with pytest.raises(ValueError, match="defer_after"):
        GcPacer(lambda: None, defer_after=0)


async def test_the_clock_collects_the_young_generation_when_the_count_does_not() -> None:
    """CPython counts allocations minus deallocations: when old objects die by the thousand
    the count stands still while the young generation grows. The clock bounds the time
    between young collections instead: one whenever none ran since its last tick."""
    young = [gc.get_stats()[0]["collections"]]
    pacer = GcPacer(lambda: None, young_threshold=1 << 30, young_every_s=0.01)  # the count never triggers
    pacer.start()
    try:
        young[0] = gc.get_stats()[0]["collections"]
        await asyncio.sleep(0.2)
        assert 5 <= pacer.clock_young <= 25
        assert gc.get_stats()[0]["collections"] - young[0] >= pacer.clock_young
    finally:
        pacer.stop()


async def test_the_clock_stays_out_while_young_collections_run_anyway() -> None:
    loop = asyncio.get_running_loop()
    pacer = GcPacer(lambda: None, young_every_s=0.02)
    stop_at = loop.time() + 0.2
    pacer.start()
    try:
        while loop.time() < stop_at:  # a young collection every 5 ms, as a busy process has
            gc.collect(0)
            await asyncio.sleep(0.005)
        assert pacer.clock_young <= 3  # the first tick (before it saw any), or a stall of a loaded machine
    finally:
        pacer.stop()


def test_a_bad_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="young_every_s must be > 0 or None, got 0"):
        GcPacer(lambda: None, young_every_s=0)


async def test_the_clock_piles_up_only_what_it_collected() -> None:
    """A young collection the clock ran is counted by what gc's count says it found, not as a
    full `young_threshold` of allocations: an idle service, its clock collecting a few objects
    every tick, must not walk every object in the process (a sweep) every few seconds."""
    loop = asyncio.get_running_loop()
    pacer = GcPacer(lambda: None, young_threshold=5_000, check_every_s=0.01, quiet_after=5,
                    sweep_after=200_000, young_every_s=0.005)  # 40 ticks x 5,000 would be a sweep
    pacer.start()
    try:
        deadline = loop.time() + 10.0
        while pacer.clock_young < 80 and loop.time() < deadline:  # twice what a sweep would take
            await asyncio.sleep(0.01)
        assert pacer.clock_young >= 80, "the clock must have ticked"
        assert pacer.collections["quiet"] >= 1, "the middle generation is still collected"
        assert pacer.collections["sweep"] == 0 and pacer.collections["forced_sweep"] == 0
        kept = [{"n": i} for i in range(250_000)]  # allocations really piling up: swept
        while pacer.collections["sweep"] == 0 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert pacer.collections["sweep"] >= 1 and len(kept) == 250_000
    finally:
        pacer.stop()


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_in_a_storm_the_young_generation_is_frozen_not_collected() -> None:
    """With a timer due within `freeze_within_s` the clock freezes what is young (constant
    time) and allocations trigger nothing; once no timer is due so soon, collections resume."""
    loop = asyncio.get_running_loop()
    due: list[float | None] = [loop.time() + 0.5]
    pacer = GcPacer(lambda: due[0], young_threshold=1000, young_every_s=0.01, freeze_within_s=1.0)
    pacer.start()
    try:
        deadline = loop.time() + 5.0
        while pacer.storm_freezes == 0 and loop.time() < deadline:  # the clock's first tick
            await asyncio.sleep(0.005)
        young = gc.get_stats()[0]["collections"]
        kept = []
        for _ in range(20):
            kept.append([[i] for i in range(2_000)])  # twice the threshold a tick: would trigger collections
            await asyncio.sleep(0.01)
        assert pacer.storm_freezes >= 5 and pacer.clock_young == 0
        assert gc.get_stats()[0]["collections"] == young, "no young collection in the storm"
        assert gc.get_count()[0] < 20_000 and gc.get_threshold()[0] >= 1 << 30
        due[0] = None
        deadline = loop.time() + 5.0
        while pacer.clock_young == 0 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert pacer.clock_young >= 1 and gc.get_threshold()[0] == 1000
    finally:
        pacer.stop()


async def test_in_a_long_storm_frozen_garbage_stays_bounded() -> None:
    """Timers always due and garbage cycles made all the time: what the storm freezes is
    counted, and a forced sweep past `sweep_force_after` reclaims it, again and again."""
    loop = asyncio.get_running_loop()
    pacer = GcPacer(lambda: loop.time() + 0.01, young_every_s=0.005, check_every_s=0.01,
                    sweep_after=50_000, sweep_force_after=100_000)
    pacer.start()
    try:
        frozen_at_start = gc.get_freeze_count()
        most = 0
        deadline = loop.time() + 30.0
        while pacer.collections["forced_sweep"] < 3 and loop.time() < deadline:
            for _ in range(2_000):
                Cycle()  # garbage only the collector can reclaim
            await asyncio.sleep(0.002)
            most = max(most, gc.get_freeze_count() - frozen_at_start)
        assert pacer.collections["forced_sweep"] >= 3 and pacer.storm_freezes > 0
        assert most < 100_000 + 20_000  # the bound and a tick's worth: reclaimed, not piled up forever
    finally:
        pacer.stop()


def test_a_bad_freeze_horizon_is_refused() -> None:
    with pytest.raises(ValueError, match="freeze_within_s must be >= 0 or None, got -1"):
        GcPacer(lambda: None, freeze_within_s=-1)


async def test_attempts_queued_behind_the_cpu_are_a_storm_whatever_the_timers_say() -> None:
    """At 10^4 sessions the attempts' work outlasts their timers by seconds: `busy()` keeps the
    young generation frozen with no timer due, and collections resume once it says no more."""
    loop = asyncio.get_running_loop()
    queued = [True]
    pacer = GcPacer(lambda: None, young_every_s=0.01, freeze_within_s=1.0, busy=lambda: queued[0])
    pacer.start()
    try:
        deadline = loop.time() + 5.0
        while pacer.storm_freezes < 3 and loop.time() < deadline:
            await asyncio.sleep(0.005)
        assert pacer.storm_freezes >= 3 and pacer.clock_young == 0
        queued[0] = False
        while pacer.clock_young == 0 and loop.time() < deadline:
            await asyncio.sleep(0.005)
        assert pacer.clock_young >= 1
    finally:
        pacer.stop()
