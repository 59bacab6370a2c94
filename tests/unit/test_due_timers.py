"""`DueTimers`: fires what is due, earliest first, never early, never re-entered."""

from __future__ import annotations

import asyncio

from service.runtime.due import DueTimers


def test_fires_due_entries_in_due_order_and_keeps_the_rest() -> None:
    timers, fired = DueTimers(), []
    for due_s, name in ((3.0, "c"), (1.0, "a"), (2.0, "b"), (2.0, "b2"), (9.0, "late")):
        timers.add(due_s, lambda name=name: fired.append(name))
    timers.run_due(0.5)
    assert fired == []
    timers.run_due(3.0)
    assert fired == ["a", "b", "b2", "c"] and len(timers) == 1
    timers.run_due(8.999)
    assert fired == ["a", "b", "b2", "c"]


def test_a_fire_that_comes_back_does_not_re_enter() -> None:
    timers, fired = DueTimers(), []

    def first() -> None:
        fired.append("first")
        timers.run_due(10.0)  # e.g. the event it delivers runs `deliver`, which calls run_due
        fired.append("first done")

    timers.add(1.0, first)
    timers.add(2.0, lambda: fired.append("second"))
    timers.run_due(5.0)
    assert fired == ["first", "first done", "second"]
    assert timers.fired_early == 2


async def test_run_due_now_uses_loop_time_and_contains_a_failing_timer(caplog) -> None:
    timers, fired = DueTimers(), []
    now = asyncio.get_running_loop().time()

    def broken() -> None:
        raise RuntimeError("a timer's bug")

    timers.add(now - 1.0, broken)
    timers.add(now - 0.5, lambda: fired.append("due"))
    timers.add(now + 60.0, lambda: fired.append("later"))
    assert timers.next_due_s() == now - 1.0
    timers.run_due_now()  # the socket callback that called it goes on
    assert "due timers failed" in caplog.text
    timers.run_due_now()
    assert fired == ["due"] and len(timers) == 1 and timers.next_due_s() == now + 60.0


async def test_run_due_now_hands_a_failing_timer_to_on_error() -> None:
    errors: list[Exception] = []
    timers = DueTimers(on_error=errors.append)
    timers.add(asyncio.get_running_loop().time() - 1.0, lambda: 1 / 0)
    timers.run_due_now()
    assert [type(e) for e in errors] == [ZeroDivisionError]
