"""Validity questions batched per event-loop tick (`service.validity_batch`), against the
back-office stand-in over real loopback sockets: many questions, one request; each caller
gets its own answer, or the error that ended its request; nothing is left waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from service.backoffice import HttpBackOffice
from service.errors import BackOfficeError
from service.validity_batch import BatchedValidity
from tests.fixtures.standins import Standins

pytestmark = pytest.mark.integration
ANSWER_TIMEOUT_S = 10.0


@pytest.fixture
async def client(standins_clean: Standins) -> AsyncIterator[HttpBackOffice]:
    async with HttpBackOffice(standins_clean.backoffice_url, standins_clean.backoffice_token,
                              timeout_s=2.0) as http:
        yield http


async def ask_all(batched: BatchedValidity, ids: list[str]) -> list[bool | BaseException]:
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        return list(await asyncio.gather(*(batched.is_valid(sid) for sid in ids), return_exceptions=True))


async def test_one_tick_of_questions_is_one_request_per_max_batch(standins_clean: Standins,
                                                                  client: HttpBackOffice) -> None:
    admin = standins_clean.backoffice
    admin.add_accounts([f"s{i}" for i in range(0, 300, 2)])  # even ids valid, odd ids unknown
    ids = [f"s{i}" for i in range(300)] + ["s0", "s1"]  # asked twice in the tick: asked once
    batched = BatchedValidity(client, max_batch=128)
    answers = await ask_all(batched, ids)
    assert answers == [int(sid[1:]) % 2 == 0 for sid in ids]
    assert (batched.requests, batched.questions, admin.updates()["validity_batches"]) == (3, 300, 3)
    assert client.requests == 3
    assert await ask_all(batched, ["s2"]) == [True]  # a later tick is a new request
    assert admin.updates()["validity_batches"] == 4


async def test_answers_are_fresh_every_tick(standins_clean: Standins, client: HttpBackOffice) -> None:
    standins_clean.backoffice.add_account("s1")
    batched = BatchedValidity(client)
    assert await ask_all(batched, ["s1"]) == [True]
    standins_clean.backoffice.delete_account("s1")
    assert await ask_all(batched, ["s1"]) == [False]  # R4: never a remembered answer


@pytest.mark.parametrize("mode, why", [("error500", "HTTP 500"), ("garbage", "not JSON")])
async def test_a_failed_request_fails_each_of_its_callers_then_recovers(standins_clean: Standins,
                                                                        client: HttpBackOffice,
                                                                        mode: str, why: str) -> None:
    admin = standins_clean.backoffice
    admin.add_accounts(["a", "b", "c"])
    batched = BatchedValidity(client)
    admin.set_mode(mode)
    answers = await ask_all(batched, ["a", "b", "c"])
    assert all(isinstance(a, BackOfficeError) and why in str(a) for a in answers), answers
    assert all(standins_clean.backoffice_token.reveal() not in str(a) for a in answers)
    admin.set_mode("ok")
    assert await ask_all(batched, ["a", "b", "c"]) == [True, True, True]


async def test_a_cancelled_caller_leaves_the_others_answered(standins_clean: Standins,
                                                             client: HttpBackOffice) -> None:
    standins_clean.backoffice.add_accounts(["a", "b"])
    batched = BatchedValidity(client)
    gone = asyncio.ensure_future(batched.is_valid("a"))
    kept = asyncio.ensure_future(batched.is_valid("b"))
    await asyncio.sleep(0)  # both queued in this tick
    gone.cancel()
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        assert await kept is True
    assert gone.cancelled()


async def test_bad_arguments_are_named(client: HttpBackOffice) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        BatchedValidity(client, max_batch=0)
    with pytest.raises(ValueError, match="session_id"):
        await BatchedValidity(client).is_valid("")
    with pytest.raises(ValueError, match="session_ids"):
        await client.validities([])
