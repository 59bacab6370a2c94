"""The HTTP back-office client over real loopback sockets.

Against the back-office stand-in (`standins_clean`): validity, batches, auth, URL quoting
and the stand-in's failure modes. Against a tiny canned-reply server started here: the
malformed replies the stand-in has no mode for (a missing field, a wrong type, a reply
for another session), so every parse rule is exercised. Every failure is a
`BackOfficeError` that never contains the token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from service.backoffice import HttpBackOffice
from service.core import Priority, Status
from service.errors import BackOfficeError
from service.ports import Secret, new_update
from tests.fixtures.process import free_port

pytestmark = pytest.mark.integration

TOKEN = Secret("tok-very-secret-123")


class CannedServer:
    """An aiohttp app on 127.0.0.1 answering each request with `reply(request)`."""

    def __init__(self) -> None:
        self.reply: Callable[[web.Request], web.StreamResponse] = lambda request: web.json_response({})
        self.seen: list[tuple[str, str, str | None]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.raw_path, request.headers.get("Authorization")))
        result = self.reply(request)
        if asyncio.iscoroutine(result):
            result = await result
        return result


@pytest.fixture
async def canned() -> AsyncIterator[CannedServer]:
    server = CannedServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, handler_cancellation=True)  # a timed-out client ends the slow handler
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def canned_client(canned: CannedServer) -> AsyncIterator[HttpBackOffice]:
    async with HttpBackOffice(canned.url, TOKEN, timeout_s=0.5) as client:
        yield client


def assert_no_token(err: BaseException) -> None:
    text = f"{err} {err!r} {err.__cause__!r} {err.__context__!r}"
    assert TOKEN.reveal() not in text


async def test_sends_bearer_token_and_quotes_ids(canned: CannedServer, canned_client: HttpBackOffice) -> None:
    sid = "a/b c?d#e%"
    canned.reply = lambda request: web.json_response({"session_id": sid, "valid": True, "status": "active"})
    assert await canned_client.is_valid(sid) is True
    method, path, auth = canned.seen[-1]
    assert method == "GET"
    assert path == "/api/sessions/a%2Fb%20c%3Fd%23e%25/validity"
    assert auth == f"Bearer {TOKEN.reveal()}"
    assert TOKEN.reveal() not in repr(canned_client)


@pytest.mark.parametrize("body, why", [
    ({"session_id": "s1", "status": "active"}, "valid"),
    ({"session_id": "s1", "valid": "yes"}, "valid"),
    ({"session_id": "other", "valid": True}, "other"),
    ([True], "JSON object"),
])
async def test_validity_garbage_is_a_clear_error(canned: CannedServer, canned_client: HttpBackOffice,
                                                 body: object, why: str) -> None:
    canned.reply = lambda request: web.json_response(body)
    with pytest.raises(BackOfficeError, match=why) as caught:
        await canned_client.is_valid("s1")
    assert_no_token(caught.value)


@pytest.mark.parametrize("body, why", [
    ({"sessions": {"s1": True}}, "'sessions' must be a list"),
    ({"sessions": [{"session_id": "s1", "valid": True}]}, "1 sessions for 2 asked; missing \\['s2'\\]"),
    ({"sessions": [{"session_id": "s1", "valid": True}, {"session_id": "s1", "valid": True}]}, "one session's"),
    ({"sessions": [{"session_id": "s1", "valid": "yes"}, {"session_id": "s2", "valid": True}]}, "one session's"),
    ({"sessions": [{"session_id": "s1", "valid": True}, {"session_id": "s2", "valid": False},
                   {"session_id": "s3", "valid": True}]}, "3 sessions for 2 asked"),
    ({"sessions": [7, 8]}, "one session's"),
])
async def test_validity_batch_garbage_is_a_clear_error(canned: CannedServer, canned_client: HttpBackOffice,
                                                       body: object, why: str) -> None:
    canned.reply = lambda request: web.json_response(body)
    with pytest.raises(BackOfficeError, match=why) as caught:
        await canned_client.validities(["s1", "s2"])
    assert_no_token(caught.value)
    assert canned.seen[-1][:2] == ("POST", "/api/validity/batch")


@pytest.mark.parametrize("status, text, why", [
    (200, "<html>oops</html>", "not JSON"),
    (200, '{"acked": "u1"}', "acked"),
    (200, '{"acked": [1, 2]}', "acked"),
    (200, '{"ok": true}', "acked"),
    (500, "boom", "HTTP 500"),
    (401, "no", "token"),
])
async def test_batch_garbage_is_a_clear_error(canned: CannedServer, canned_client: HttpBackOffice,
                                              status: int, text: str, why: str) -> None:
    canned.reply = lambda request: web.Response(status=status, text=text, content_type="application/json")
    with pytest.raises(BackOfficeError, match=why) as caught:
        await canned_client.send_statuses([new_update("s1", Status.ACTIVE)])
    assert_no_token(caught.value)


async def test_timeout_is_a_clear_error(canned: CannedServer, canned_client: HttpBackOffice) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.json_response({"acked": []})

    canned.reply = slow
    with pytest.raises(BackOfficeError, match="no reply within 0.5 s") as caught:
        await canned_client.send_statuses([new_update("s1", Status.ACTIVE)])
    assert_no_token(caught.value)


async def test_acked_ids_limited_to_the_batch(canned: CannedServer, canned_client: HttpBackOffice) -> None:
    updates = [new_update("s1", Status.CONNECTING), new_update("s1", Status.ACTIVE, Priority.HIGH)]
    canned.reply = lambda request: web.json_response({"acked": [updates[0].update_id, "stranger"]})
    assert await canned_client.send_statuses(updates) == {updates[0].update_id}
    assert await canned_client.send_statuses([]) == set()
    assert len(canned.seen) == 1  # an empty batch sends nothing


# -- against the back-office stand-in ------------------------------------------------------


@pytest.fixture
async def standin_client(standins_clean) -> AsyncIterator[HttpBackOffice]:
    async with HttpBackOffice(standins_clean.backoffice_url, standins_clean.backoffice_token,
                              timeout_s=1.0) as client:
        yield client


async def test_validity_follows_the_accounts(standins_clean, standin_client: HttpBackOffice) -> None:
    admin = standins_clean.backoffice
    weird = "tenant/7 phone+34 600?x#y%"
    admin.add_accounts(["s1", "s2", weird])
    admin.deactivate("s2")
    assert await standin_client.is_valid("s1") is True
    assert await standin_client.is_valid("s2") is False
    assert await standin_client.is_valid(weird) is True  # quoted on the way, unquoted by the server
    assert await standin_client.is_valid("nobody") is False
    admin.delete_account("s1")
    assert await standin_client.is_valid("s1") is False


async def test_batch_is_recorded_in_order_and_acknowledged(standins_clean, standin_client: HttpBackOffice) -> None:
    updates = [new_update("s1", Status.CONNECTING), new_update("s2", Status.ACTIVE),
               new_update("s1", Status.INACTIVE, Priority.HIGH)]
    assert await standin_client.send_statuses(updates) == {u.update_id for u in updates}
    assert await standin_client.send_statuses(updates[:1]) == {updates[0].update_id}  # a resend is acked again
    history = standins_clean.backoffice.updates()
    assert [r["update_id"] for r in history["updates"]] == [u.update_id for u in updates]
    assert [(r["session_id"], r["status"], r["priority"]) for r in history["updates"]] == [
        ("s1", "connecting", "normal"), ("s2", "active", "normal"), ("s1", "inactive", "high")]
    assert history["duplicates"] == 1 and history["batches"] == 2


async def test_wrong_token_is_refused_and_not_echoed(standins_clean) -> None:
    wrong = Secret("not-the-token-42")
    async with HttpBackOffice(standins_clean.backoffice_url, wrong, timeout_s=1.0) as client:
        with pytest.raises(BackOfficeError, match="HTTP 401.*token") as caught:
            await client.is_valid("s1")
    assert wrong.reveal() not in str(caught.value)
    assert standins_clean.backoffice.updates()["rejected_auth"] == 1


@pytest.mark.parametrize("mode, why", [("error500", "HTTP 500"), ("garbage", "not JSON"),
                                       ("slow", "no reply within 0.3 s")])
async def test_standin_failure_modes(standins_clean, mode: str, why: str) -> None:
    standins_clean.backoffice.add_account("s1")
    standins_clean.backoffice.set_mode(mode, delay_s=1.0 if mode == "slow" else None)
    async with HttpBackOffice(standins_clean.backoffice_url, standins_clean.backoffice_token,
                              timeout_s=0.3) as client:
        with pytest.raises(BackOfficeError, match=why) as validity_err:
            await client.is_valid("s1")
        with pytest.raises(BackOfficeError, match=why) as batch_err:
            await client.send_statuses([new_update("s1", Status.ACTIVE)])
    for err in (validity_err.value, batch_err.value):
        assert standins_clean.backoffice_token.reveal() not in f"{err} {err!r}"
