"""`Slots` (service/runtime/context.py): the admission slots that pace validations and socket
opens. A storm's waiting attempts are queued callbacks, not tasks; the order is kept; a slot
never leaks, whether a start no longer wants it, raises, or a waiter is cancelled. And a
validated attempt's open runs in its validation's task (`LinkDriver.open_here`). The
validations' limit adapts (`AdmissionLimit`): it grows on fast answers, shrinks on slow ones,
between its floor and its cap."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.core import Status
from service.core.events import Start
from service.errors import StoreError
from service.memory import MemoryStatusStore
from service.retry import RetryPolicy
from service.runtime.context import AdmissionLimit, SlotHold, Slots
from service.runtime.runner import SessionRunner
from tests.fixtures.memory import Shell, memory_shell, until


def test_slots_serve_in_the_order_asked_and_never_more_than_the_limit() -> None:
    slots, started = Slots(2), []
    for name in "abcde":
        slots.when_free(lambda name=name: started.append(name) or True)
    assert started == ["a", "b"] and slots.waiting == 3
    slots.release()
    assert started == ["a", "b", "c"]
    for _ in range(4):
        slots.release()
    assert started == list("abcde") and slots.waiting == 0
    slots.when_free(lambda: started.append("f") or True)
    slots.when_free(lambda: started.append("g") or True)
    slots.when_free(lambda: started.append("h") or True)
    assert started[-2:] == ["f", "g"], "two slots were free again"


def test_starts_that_no_longer_want_a_slot_pass_it_on_however_many_in_a_row() -> None:
    slots, started = Slots(1), []
    slots.when_free(lambda: True)
    for _ in range(20_000):  # stale validations of released sessions: no recursion per entry
        slots.when_free(lambda: False)
    slots.when_free(lambda: started.append("live") or True)
    slots.release()
    assert started == ["live"] and slots.waiting == 0
    slots.release()
    slots.when_free(lambda: started.append("next") or True)
    assert started == ["live", "next"], "the slot was free again"


def test_a_start_that_raises_passes_its_slot_on() -> None:
    slots, started = Slots(1), []

    def broken() -> bool:
        raise RuntimeError("a bug in a start")
    slots.when_free(lambda: True)
    slots.when_free(broken)
    slots.when_free(lambda: started.append("after") or True)
    with pytest.raises(RuntimeError):
        slots.release()
    assert started == ["after"]
    with pytest.raises(RuntimeError):
        Slots(1).when_free(broken)
    fresh = Slots(1)
    with pytest.raises(RuntimeError):
        fresh.when_free(broken)
    fresh.when_free(lambda: started.append("free") or True)
    assert started == ["after", "free"], "the raising start's slot leaked"


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "2"])
def test_a_limit_that_is_not_a_positive_int_is_refused(limit: object) -> None:
    with pytest.raises(ValueError, match="slots limit"):
        Slots(limit)  # type: ignore[arg-type]


async def test_a_waiter_cancelled_before_or_after_its_turn_leaks_no_slot() -> None:
    slots = Slots(1)
    await slots.acquire()
    before = asyncio.create_task(slots.acquire())
    handed = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    before.cancel()  # cancelled while waiting: it must not take the slot later
    await asyncio.gather(before, return_exceptions=True)
    slots.release()  # goes to `handed`, which is cancelled before it resumes
    handed.cancel()
    await asyncio.gather(handed, return_exceptions=True)
    async with asyncio.timeout(1.0):
        await slots.acquire()  # the one slot is free again
    hold = SlotHold(slots)
    hold.release()
    hold.release()  # once only
    async with asyncio.timeout(1.0):
        await slots.acquire()
    assert slots.waiting == 0


class HeldReads(MemoryStatusStore):
    """A store whose validation reads wait until `released` is set (a slow Redis)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()
        self.released.set()
        self.reading = 0

    async def get_status(self, session_id: str, **kwargs) -> Status | None:  # type: ignore[override]
        self.reading += 1
        try:
            await self.released.wait()
        finally:
            self.reading -= 1
        return await super().get_status(session_id, **kwargs)


async def all_active(shell: Shell, ids: list[str]) -> list[SessionRunner]:
    """A runner per id, each session's account valid, started until every one is `active`."""
    runners = []
    for sid in ids:
        shell.backoffice.accounts[sid] = True
        runners.append(shell.runner(sid))
        await runners[-1].deliver(Start())
    await until(lambda: all(shell.state.statuses.get(sid) is Status.ACTIVE for sid in ids), "all active")
    return runners


def validation_tasks() -> int:
    return sum(1 for task in asyncio.all_tasks() if "Validation._ask" in task.get_coro().__qualname__)


async def test_validations_waiting_for_a_slot_are_not_tasks() -> None:
    """40 sessions drop at once with 2 validation slots: 2 validations ask, 38 wait in the queue as
    callbacks (before: 40 tasks, 38 of them parked on a semaphore); all reconnect once Redis answers."""
    store = HeldReads()
    shell = memory_shell(store=store)
    shell.ctx.max_inflight = 2
    ids = [f"s{i}" for i in range(40)]
    runners = await all_active(shell, ids)
    store.released.clear()
    for sid in ids:
        shell.transport.close(sid, 503)
    await until(lambda: store.reading == 2 and shell.ctx.validation_slot().waiting == 38, "2 asking, 38 queued")
    assert validation_tasks() == 2
    store.released.set()
    await until(lambda: all(shell.transport.opens.get(sid) == 2 for sid in ids), "every session reopened")
    assert shell.ctx.validation_slot().waiting == 0
    for runner in runners:
        await runner.aclose()


class FailingReads(MemoryStatusStore):
    """A store whose first `failures` validation reads find Redis unreachable."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def get_status(self, session_id: str, **kwargs) -> Status | None:  # type: ignore[override]
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("redis unreachable (stand-in)")
        return await super().get_status(session_id, **kwargs)


async def test_a_validation_retried_while_redis_is_down_gives_its_slot_back_each_time() -> None:
    """One slot, three sessions, the first four reads fail: each retry waits for the slot again
    and gives it back, so every session reconnects and the slot ends free."""
    store = FailingReads(failures=0)
    shell = memory_shell(store=store)
    shell.ctx.max_inflight = 1
    shell.ctx.validate_retry = RetryPolicy(0.01, 0.02, what="validation retry")
    ids = ["a", "b", "c"]
    runners = await all_active(shell, ids)
    store.failures = 4
    for sid in ids:
        shell.transport.close(sid, 503)
    await until(lambda: all(shell.transport.opens.get(sid) == 2 for sid in ids), "every session reopened")
    assert store.failures == 0 and shell.ctx.validation_slot().waiting == 0
    async with asyncio.timeout(1.0):
        await shell.ctx.validation_slot().acquire()  # the one slot is free
    for runner in runners:
        await runner.aclose()


def tasks_named(name: str) -> int:
    return sum(1 for task in asyncio.all_tasks() if name in task.get_coro().__qualname__)


async def test_a_reconnects_validation_and_its_link_share_one_task() -> None:
    """The validated attempt's link is driven by the validation's own task (before: a second
    task per attempt, `LinkDriver._drive`); its close still reaches the session, twice over."""
    shell = memory_shell()
    shell.backoffice.accounts["s1"] = True
    runner = shell.runner("s1")
    await runner.deliver(Start())
    await until(lambda: shell.state.statuses.get("s1") is Status.ACTIVE, "active")
    assert tasks_named("LinkDriver._drive") == 1, "the first connect (no validation) has its own task"
    for reopened in (2, 3):
        shell.transport.close("s1", 503)
        await until(lambda: shell.transport.opens.get("s1") == reopened and "s1" in shell.transport.live, "reopened")
        await until(lambda: shell.state.statuses.get("s1") is Status.ACTIVE, "active again")
        assert (tasks_named("LinkDriver._drive"), tasks_named("Validation._ask")) == (0, 1)
    await runner.aclose()
    assert tasks_named("Validation._ask") == 0


def test_a_lower_limit_takes_effect_as_holders_release() -> None:
    slots, started = Slots(4), []
    for name in "abcdef":
        slots.when_free(lambda name=name: started.append(name) or True)
    assert started == list("abcd")
    slots.set_limit(2)
    assert slots.limit == 2
    slots.release()
    slots.release()
    assert started == list("abcd"), "two of the four holders gave theirs back for good"
    slots.release()
    assert started == list("abcde"), "then a release hands on again"
    slots.release()
    slots.release()
    slots.release()
    assert started == list("abcdef") and slots.waiting == 0
    slots.when_free(lambda: started.append("g") or True)
    slots.when_free(lambda: started.append("h") or True)
    slots.when_free(lambda: started.append("i") or True)
    assert started[-2:] == ["g", "h"], "two slots once every holder released"


def test_a_higher_limit_hands_its_slots_to_the_waiters_at_once_in_order() -> None:
    slots, started = Slots(1), []
    for name in "abcdef":
        slots.when_free(lambda name=name: started.append(name) or True)
    slots.when_free(lambda: False)  # a stale start: passes its slot on
    slots.when_free(lambda: started.append("g") or True)
    assert started == ["a"]
    slots.set_limit(3)
    assert started == ["a", "b", "c"] and slots.limit == 3
    slots.set_limit(2)
    slots.set_limit(6)  # one holder more than 2 was owed back: 6 - 3 held = 3 free
    assert started == list("abcdef")
    slots.set_limit(7)
    assert started == list("abcdefg") and slots.waiting == 0
    slots.set_limit(8)  # nobody waits: one slot free
    slots.when_free(lambda: started.append("h") or True)
    slots.when_free(lambda: started.append("i") or True)
    assert started[-1] == "h" and slots.waiting == 1


def test_a_lower_then_higher_limit_owes_nothing_twice() -> None:
    slots, started = Slots(4), []
    for name in "abcd":
        slots.when_free(lambda name=name: started.append(name) or True)
    slots.set_limit(1)
    slots.set_limit(4)  # back where it was, nobody released: still four held, none free
    slots.when_free(lambda: started.append("e") or True)
    assert started == list("abcd")
    slots.release()
    assert started == list("abcde")


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_answers_within_half_the_budget_grow_the_limit_about_double_per_round_up_to_the_cap() -> None:
    limit = AdmissionLimit(cap=200, budget_s=1.0, floor=64)
    assert limit.slots.limit == 64, "it starts at the floor"
    for _ in range(64):
        limit.answered(0.01)
    assert limit.slots.limit == 128, "a round of answers well inside the budget doubles it"
    for _ in range(500):
        limit.answered(0.2)
    assert limit.slots.limit == 200, "never past the cap"


@pytest.mark.parametrize("took_s", [0.26, 0.4, 0.5])
def test_an_answer_between_a_quarter_and_half_the_budget_still_grows_the_limit(took_s: float) -> None:
    """One line at half the budget, no band where the limit stands still: a 10,000-session storm's
    answers came back in 0.25-0.5 s while thousands of attempts waited for a slot."""
    limit = AdmissionLimit(cap=4096, budget_s=1.0, floor=64)
    for _ in range(100):
        limit.answered(took_s)
    assert limit.slots.limit == 164


def test_a_slow_answer_cuts_the_limit_once_per_budget_period_never_below_the_floor() -> None:
    clock = Clock()
    limit = AdmissionLimit(cap=4096, budget_s=1.0, floor=64, clock=clock)
    for _ in range(1000):
        limit.answered(0.001)
    assert limit.slots.limit == 1064
    limit.answered(0.6)
    assert limit.slots.limit == 744, "x0.7"
    for _ in range(100):
        limit.answered(0.9)  # the answers admitted before the cut come back slow too
    assert limit.slots.limit == 744, "once per budget period"
    clock.now_s += 1.0
    limit.answered(2.0)
    assert limit.slots.limit == 520
    for _ in range(20):
        clock.now_s += 1.0
        limit.answered(0.9)
    assert limit.slots.limit == 64, "never below the floor"


def test_a_cap_below_the_floor_is_the_floor_and_bad_settings_are_refused() -> None:
    limit = AdmissionLimit(cap=2, budget_s=1.0)
    assert limit.slots.limit == 2
    limit.answered(0.001)
    assert limit.slots.limit == 2
    with pytest.raises(ValueError, match="cut"):
        AdmissionLimit(cap=10, budget_s=1.0, cut=1.0)
    with pytest.raises(ValueError, match="budget_s"):
        AdmissionLimit(cap=10, budget_s=0.0)
    with pytest.raises(ValueError, match="slots limit"):
        AdmissionLimit(cap=0, budget_s=1.0)
    with pytest.raises(ValueError, match="slots limit"):
        Slots(3).set_limit(0)


async def test_slow_validity_answers_through_a_runner_lower_the_limit() -> None:
    """40 sessions reconnect with Redis answering at once: each fast answer adds a slot (64 -> 104).
    Then Redis holds its answers past half the back-office budget: the limit is cut (x0.7)."""
    store = HeldReads()
    shell = memory_shell(store=store)
    shell.ctx.validity_budget_s = 0.4
    ids = [f"s{i}" for i in range(40)]
    runners = await all_active(shell, ids)
    assert shell.ctx.validation_slot().limit == 64
    for sid in ids:
        shell.transport.close(sid, 503)
    await until(lambda: all(shell.transport.opens.get(sid) == 2 for sid in ids), "every session reopened")
    grown = shell.ctx.validation_slot().limit
    assert grown > 64, "fast answers grow the limit"
    store.released.clear()
    for sid in ids:
        shell.transport.close(sid, 503)
    await until(lambda: store.reading == 40, "every validation asking")
    held_since_s = time.monotonic()
    await until(lambda: time.monotonic() - held_since_s > 0.25, "Redis answers past half the budget")
    store.released.set()
    await until(lambda: all(shell.transport.opens.get(sid) == 3 for sid in ids), "every session reopened")
    assert shell.ctx.validation_slot().limit == max(64, int(grown * 0.7)), "cut once"
    for runner in runners:
        await runner.aclose()
