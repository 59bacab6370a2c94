"""`service.runtime.runner.Turn`: a session's one-event-at-a-time lock with a non-blocking take."""

from __future__ import annotations

import asyncio

import pytest

from service.runtime.runner import Turn


async def test_try_acquire_only_when_free_and_nobody_waits() -> None:
    turn = Turn()
    assert turn.try_acquire() and turn.locked()
    assert not turn.try_acquire()
    waiter = asyncio.ensure_future(turn.acquire())
    await asyncio.sleep(0)
    turn.release()  # handed to the waiter, never free in between
    assert turn.locked() and not turn.try_acquire()
    await waiter
    turn.release()
    assert not turn.locked() and turn.try_acquire()


async def test_waiters_are_served_in_order_and_a_callback_cannot_barge_in() -> None:
    turn, order = Turn(), []

    async def worker(name: str) -> None:
        await turn.acquire()
        try:
            order.append(name)
            await asyncio.sleep(0)
        finally:
            turn.release()

    assert turn.try_acquire()
    tasks = [asyncio.ensure_future(worker(n)) for n in "abc"]
    await asyncio.sleep(0)
    turn.release()
    assert not turn.try_acquire(), "a waiter holds it now"
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c"]


async def test_a_cancelled_waiter_passes_the_turn_on() -> None:
    turn = Turn()
    assert turn.try_acquire()
    first = asyncio.ensure_future(turn.acquire())
    second = asyncio.ensure_future(turn.acquire())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    turn.release()
    await asyncio.wait_for(second, 1.0)
    assert turn.locked()
    turn.release()
    assert not turn.locked()


def test_release_when_free_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="free"):
        Turn().release()
