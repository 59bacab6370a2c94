"""`service.deadlines`: `deadline(delay_s)` behaves as `asyncio.timeout(delay_s)` in every case the
service meets (each scenario runs under both and must end the same way, on asyncio's loop and on
uvloop), and the shared heap fires due entries in order, never a forgotten one, and stays small."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from service.deadlines import _COMPACT_MIN, Deadlines, deadline

LOOPS = {"asyncio": asyncio.run, "uvloop": uvloop.run}
Bound = Callable[[float], Any]  # asyncio.timeout or deadline


async def _outcome(body: Callable[[], Awaitable[Any]]) -> str:
    try:
        await asyncio.wait_for(body(), 10.0)  # bounded whatever the deadline does
    except TimeoutError:
        return "TimeoutError"
    except asyncio.CancelledError:
        return "CancelledError"
    return "done"


async def _ended(task: asyncio.Future[Any]) -> str:
    try:
        await asyncio.wait_for(asyncio.shield(task), 10.0)  # bounded whatever the deadline does
    except asyncio.CancelledError:
        return "CancelledError"
    except TimeoutError:
        return "TimeoutError"
    return "done"


async def expires(bound: Bound) -> str:
    async def body() -> None:
        async with bound(0.02):
            await asyncio.sleep(5)
    return await _outcome(body)


async def finishes_in_time(bound: Bound) -> str:
    async def body() -> None:
        async with bound(5):
            await asyncio.sleep(0)
    return await _outcome(body)


async def caught_inside(bound: Bound) -> str:
    """The block swallows its own cancellation: nothing to convert (as asyncio.timeout)."""
    async def body() -> str:
        async with bound(0.02):
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                return "swallowed"
        return "fell through"
    try:
        return await asyncio.wait_for(body(), 10.0)
    except TimeoutError:
        return "TimeoutError"


async def cancelled_from_outside(bound: Bound) -> str:
    async def body() -> None:
        async with bound(5):
            await asyncio.sleep(5)
    task = asyncio.ensure_future(body())
    await asyncio.sleep(0.01)
    task.cancel()
    return await _ended(task)


async def expiry_and_outside_cancel_together(bound: Bound) -> str:
    """The deadline fires, then an outside cancel comes before the task runs: the outside one wins."""
    loop = asyncio.get_running_loop()
    started = loop.create_future()

    async def body() -> None:
        async with bound(0.05):
            started.set_result(None)
            await asyncio.sleep(5)
    task = asyncio.ensure_future(body())
    await started
    deadline_s = loop.time() + 0.05
    while loop.time() < deadline_s + 0.2 and task.cancelling() == 0:  # until the deadline has cancelled it
        await asyncio.sleep(0)
    task.cancel()
    return await _ended(task)


async def nested_inner_expires(bound: Bound) -> str:
    async def body() -> str:
        async with bound(5):
            try:
                async with bound(0.02):
                    await asyncio.sleep(5)
            except TimeoutError:
                await asyncio.sleep(0.01)  # the outer deadline still holds and has not fired
                return "inner timed out, outer went on"
        return "no timeout"
    return await asyncio.wait_for(body(), 10.0)


SCENARIOS = [expires, finishes_in_time, caught_inside, cancelled_from_outside,
             expiry_and_outside_cancel_together, nested_inner_expires]


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_deadline_ends_each_case_as_asyncio_timeout_does(scenario, loop_name: str) -> None:
    run = LOOPS[loop_name]
    expected = run(scenario(asyncio.timeout))
    assert run(scenario(deadline)) == expected
    if scenario is expires:
        assert expected == "TimeoutError"


async def test_a_deadline_fires_at_its_time_not_before() -> None:
    loop = asyncio.get_running_loop()
    for delay_s in (0.01, 0.05):
        started_s = loop.time()
        with pytest.raises(TimeoutError):
            async with deadline(delay_s):
                await asyncio.sleep(5)
        took_s = loop.time() - started_s
        assert took_s >= delay_s - 0.002  # a loop timer may fire up to the clock's resolution early
        # on time: judged against a plain loop timer of the same delay, measured just now
        timer = loop.create_future()
        timer_started_s = loop.time()
        loop.call_later(delay_s, timer.set_result, None)
        await timer
        assert took_s <= 3 * (loop.time() - timer_started_s) + 0.05


def test_due_entries_fire_earliest_first_and_forgotten_ones_never() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        deadlines, fired = Deadlines.of(loop), []
        done = loop.create_future()
        now_s = loop.time()
        for name, after_s in (("c", 0.06), ("a", 0.02), ("x", 0.03), ("b", 0.04)):
            key = deadlines.call_at(now_s + after_s, lambda name=name: fired.append(name))
            if name == "x":
                deadlines.forget(key)
        deadlines.call_at(now_s + 0.08, lambda: done.set_result(None))
        await asyncio.wait_for(done, 10.0)
        assert len(deadlines) == 0
        return fired
    for run in LOOPS.values():
        assert run(scenario()) == ["a", "b", "c"]


async def test_an_expiry_that_raises_does_not_stop_the_others(caplog) -> None:
    loop = asyncio.get_running_loop()
    deadlines, fired = Deadlines.of(loop), loop.create_future()

    def broken() -> None:
        raise RuntimeError("a bug in one wait")
    now_s = loop.time()
    deadlines.call_at(now_s + 0.01, broken)
    deadlines.call_at(now_s + 0.01, lambda: fired.set_result("ran"))
    assert await asyncio.wait_for(fired, 10.0) == "ran"
    assert "deadline expiry failed" in caplog.text


async def test_forgotten_entries_do_not_pile_up() -> None:
    """A storm's deadlines almost all end before their time: the heap keeps about the live ones."""
    loop = asyncio.get_running_loop()
    deadlines = Deadlines.of(loop)
    keep = [deadlines.call_at(loop.time() + 60, lambda: None) for _ in range(100)]
    for _ in range(50_000):
        async with deadline(60):
            pass
    assert len(deadlines) == 100
    assert len(deadlines._heap) <= 2 * 100 + _COMPACT_MIN + 1
    for key in keep:
        deadlines.forget(key)
    assert len(deadlines) == 0


def test_each_loop_has_its_own_deadlines() -> None:
    async def mine() -> Deadlines:
        return Deadlines.of(asyncio.get_running_loop())
    first, second = asyncio.run(mine()), uvloop.run(mine())
    assert first is not second
    assert first._loop is not second._loop


async def test_outside_a_task_it_says_so() -> None:
    loop = asyncio.get_running_loop()
    raised = loop.create_future()

    def in_a_callback() -> None:  # a loop callback runs in no task
        entering = deadline(1).__aenter__()
        try:
            entering.send(None)
        except RuntimeError as err:
            raised.set_result(str(err))
        finally:
            entering.close()
    loop.call_soon(in_a_callback)
    assert "inside a task" in await asyncio.wait_for(raised, 10.0)
