"""`ReconnectTimers`: earliest first, never early, real cancellation, one loop timer for the
earliest entry only, not re-entered, a timer's exception contained."""

from __future__ import annotations

import asyncio

import pytest

from service.runtime.drivers import ReconnectTimers


@pytest.fixture
async def loop_timers(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.TimerHandle]:
    """Every loop timer armed from now on (to see how many are live, and for when)."""
    loop, armed = asyncio.get_running_loop(), []
    call_at = loop.call_at

    def recording_call_at(when: float, callback, *args):  # type: ignore[no-untyped-def]
        handle = call_at(when, callback, *args)
        armed.append(handle)
        return handle
    monkeypatch.setattr(loop, "call_at", recording_call_at)
    return armed


def live(armed: list[asyncio.TimerHandle]) -> list[asyncio.TimerHandle]:
    return [h for h in armed if not h.cancelled()]


async def test_fires_due_entries_earliest_first_and_keeps_the_rest() -> None:
    timers, fired = ReconnectTimers(), []
    base = asyncio.get_running_loop().time() + 1000.0  # the loop's own timer stays out of it
    for due_s, name in ((3.0, "c"), (1.0, "a"), (2.0, "b"), (2.0, "b2"), (9.0, "late")):
        timers.schedule(base + due_s, lambda name=name: fired.append(name))
    timers.run_due(base + 0.5)
    assert fired == []
    timers.run_due(base + 3.0)
    assert fired == ["a", "b", "b2", "c"] and len(timers) == 1
    timers.run_due(base + 8.999)
    assert fired == ["a", "b", "b2", "c"] and timers.next_due_s() == base + 9.0


async def test_cancel_removes_the_entry_for_good(loop_timers: list[asyncio.TimerHandle]) -> None:
    timers, fired = ReconnectTimers(), []
    base = asyncio.get_running_loop().time() + 1000.0
    first = timers.schedule(base + 1.0, lambda: fired.append("first"))
    timers.schedule(base + 2.0, lambda: fired.append("second"))
    timers.cancel(first)
    timers.cancel(first)  # twice: nothing more happens
    assert len(timers) == 1 and timers.next_due_s() == base + 2.0
    assert [h.when() for h in live(loop_timers)] == [base + 2.0]  # re-armed for the new earliest
    timers.run_due(base + 5.0)
    assert fired == ["second"] and len(timers) == 0
    assert live(loop_timers) == []  # nothing left, nothing armed


async def test_a_storm_of_schedules_and_cancels_leaves_nothing_behind(loop_timers) -> None:
    timers = ReconnectTimers()
    base = asyncio.get_running_loop().time() + 1000.0
    handles = [timers.schedule(base + (n % 97) / 10, lambda: None) for n in range(10_000)]
    assert len(live(loop_timers)) == 1 and live(loop_timers)[0].when() == timers.next_due_s() == base
    for handle in handles[::2]:
        timers.cancel(handle)
    assert len(timers) == 5_000 and len(live(loop_timers)) == 1
    assert live(loop_timers)[0].when() == timers.next_due_s()
    for handle in handles[1::2]:
        timers.cancel(handle)
    assert len(timers) == 0 and timers.next_due_s() is None and live(loop_timers) == []


async def test_one_loop_timer_armed_for_the_earliest_only(loop_timers) -> None:
    timers = ReconnectTimers()
    base = asyncio.get_running_loop().time() + 1000.0
    for n in range(100):  # later and later: the armed timer stays as it is
        timers.schedule(base + n, lambda: None)
    assert len(loop_timers) == 1
    timers.schedule(base - 1.0, lambda: None)  # a new earliest: re-armed, the old one cancelled
    assert len(loop_timers) == 2 and [h.when() for h in live(loop_timers)] == [base - 1.0]


async def test_the_loop_timer_fires_without_any_hand_on() -> None:
    loop = asyncio.get_running_loop()
    timers, fired_at = ReconnectTimers(), []
    done = asyncio.Event()
    due_s = loop.time() + 0.05

    def fire(name: str) -> None:
        fired_at.append((name, loop.time()))
        if len(fired_at) == 2:
            done.set()
    timers.schedule(due_s + 0.01, lambda: fire("second"))
    timers.schedule(due_s, lambda: fire("first"))
    await asyncio.wait_for(done.wait(), 10.0)
    assert [name for name, _ in fired_at] == ["first", "second"]
    resolution_s = loop._clock_resolution  # asyncio may run a timer this much before its time
    assert fired_at[0][1] >= due_s - resolution_s and timers.fired_early == 0 and len(timers) == 0


async def test_run_due_now_hands_due_timers_on_before_the_loop_timer() -> None:
    loop = asyncio.get_running_loop()
    timers, fired = ReconnectTimers(), []
    timers.schedule(loop.time() - 1.0, lambda: fired.append("due"))
    timers.schedule(loop.time() + 60.0, lambda: fired.append("later"))
    timers.run_due_now()
    assert fired == ["due"] and timers.fired_early == 1 and timers.next_due_s() is not None
    timers.run_due_now()  # nothing due: nothing happens
    assert fired == ["due"] and len(timers) == 1


async def test_a_fire_that_comes_back_does_not_re_enter_and_its_new_due_timer_runs() -> None:
    timers, fired = ReconnectTimers(), []
    base = asyncio.get_running_loop().time() + 1000.0

    def first() -> None:
        fired.append("first")
        timers.run_due(base + 10.0)  # e.g. the event it delivers runs `deliver`, which hands on
        timers.run_due_now()
        timers.schedule(base + 1.5, lambda: fired.append("scheduled by first"))
        fired.append("first done")

    timers.schedule(base + 1.0, first)
    timers.schedule(base + 2.0, lambda: fired.append("second"))
    timers.run_due(base + 5.0)
    assert fired == ["first", "first done", "scheduled by first", "second"]
    assert len(timers) == 0


async def test_a_failing_timer_is_contained_and_the_next_still_fires(caplog) -> None:
    loop = asyncio.get_running_loop()
    timers, fired = ReconnectTimers(), []

    def broken() -> None:
        raise RuntimeError("a timer's bug")
    timers.schedule(loop.time() - 1.0, broken)
    timers.schedule(loop.time() - 0.5, lambda: fired.append("due"))
    timers.run_due_now()  # the socket callback that called it goes on
    assert "reconnect timer failed" in caplog.text and fired == ["due"] and len(timers) == 0


async def test_a_failing_timer_goes_to_on_error() -> None:
    errors: list[Exception] = []
    timers = ReconnectTimers(on_error=errors.append)
    timers.schedule(asyncio.get_running_loop().time() - 1.0, lambda: 1 / 0)
    timers.run_due_now()
    assert [type(e) for e in errors] == [ZeroDivisionError]
