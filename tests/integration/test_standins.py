"""The stand-in servers, driven over real sockets: the CLI, every admin endpoint of the
WhatsApp stand-in (including the R7 detector, shown able to fail) and the back office's
auth, validity, batch recording, failure modes and shared-Redis writes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chaos.standins.admin import AdminError
from service.keys import status_key
from tests.fixtures.process import wait_until
from tests.fixtures.redis_cluster import SERVICE_ON_BOTH, RedisView
from tests.fixtures.standins import Standins, start_standins

pytestmark = pytest.mark.integration
RECV_TIMEOUT_S = 5.0


# -- helpers -------------------------------------------------------------------------


@asynccontextmanager
async def raw_socket(standins: Standins, session_id: str) -> AsyncIterator[ClientConnection]:
    """A plain WebSocket to the stand-in (not the service's client), closed on exit."""
    ws = await connect(f"{standins.whatsapp_ws_url}/ws/{session_id}", proxy=None, compression=None,
                       ping_interval=None, open_timeout=RECV_TIMEOUT_S, close_timeout=2)
    try:
        yield ws
    finally:
        await ws.close()


async def send_hello(ws: ClientConnection, session_id: str, credentials: str = "c") -> None:
    await ws.send(json.dumps({"type": "hello", "session_id": session_id, "credentials": credentials}))


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await _recv(ws)))


async def _recv(ws: ClientConnection) -> str:
    async with asyncio.timeout(RECV_TIMEOUT_S):
        return str(await ws.recv())


async def close_code_seen(ws: ClientConnection) -> int | None:
    """The WebSocket close code the server sent (reads until the connection closes)."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(RECV_TIMEOUT_S):
            while True:
                await ws.recv()
    return info.value.rcvd.code if info.value.rcvd else None


async def open_session(ws: ClientConnection, session_id: str, credentials: str = "c") -> None:
    await send_hello(ws, session_id, credentials)
    assert await recv_json(ws) == {"type": "open"}


def api(standins: Standins, method: str, path: str, body: Any = None,
        token: str | None = "default") -> tuple[int, str]:
    """Call the back-office API; `token="default"` uses the right one, None sends none."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(standins.backoffice_url + path, data=data, method=method)
    if token is not None:
        value = standins.backoffice_token.reveal() if token == "default" else token
        request.add_header("Authorization", f"Bearer {value}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def update(update_id: str, session_id: str = "s1", seq: int = 1, status: str = "connecting") -> dict[str, Any]:
    return {"update_id": update_id, "session_id": session_id, "status": status,
            "priority": "normal", "seq": seq, "at_s": 1700000000.5}


# -- CLI -----------------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local hex addresses (from /proc/net/tcp{,6}) listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_every_port_listens_on_loopback_only(standins: Standins) -> None:
    assert set(standins.ports) == {"whatsapp_port", "whatsapp_admin_port", "backoffice_port", "backoffice_admin_port"}
    for name, port in standins.ports.items():
        assert listening_addresses(port) == {"0100007F"}, name  # 127.0.0.1, nothing else


def test_cli_without_token_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RL_NO_SUCH_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "chaos", "standins", "--backoffice-token-env", "RL_NO_SUCH_TOKEN"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "RL_NO_SUCH_TOKEN" in done.stderr


@pytest.mark.parametrize(("args", "says"), [(["--whatsapp-port", "70000"], "0..65535"),
                                             (["--redis-cluster-shards", "0"], "1..1024"),
                                             (["--redis-cluster-shards", "many"], "1..1024")])
def test_cli_bad_port_or_shards_is_a_usage_error(args: list[str], says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "chaos", "standins", *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert says in done.stderr


def test_cli_stops_gracefully_on_sigterm_and_restarts_on_same_ports(tmp_path: Path) -> None:
    own = start_standins(tmp_path, tmp_path / "ready.json", None, name="standins-sigterm")
    ports = dict(own.ports)
    try:
        assert own.whatsapp.healthy() and own.backoffice.healthy()
        own.process.restart()
        assert own.whatsapp.healthy()
        assert {k: v for k, v in json.loads((tmp_path / "ready.json").read_text()).items() if k in ports} == ports
    finally:
        own.process.stop()
    assert not own.process.running
    assert "stopping the stand-ins" in own.process.log_path.read_text()  # SIGTERM, not SIGKILL


# -- WhatsApp stand-in -----------------------------------------------------------------


async def test_hello_opens_and_pings_are_answered(standins_clean: Standins) -> None:
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")
        await ws.send(json.dumps({"type": "ping", "seq": 7}))
        assert await recv_json(ws) == {"type": "pong", "seq": 7}
        summary = standins_clean.whatsapp.sessions()["s1"]
        assert (summary["live"], summary["max_live"], summary["connects"], summary["opens"]) == (1, 1, 1, 1)
    wait_until(lambda: standins_clean.whatsapp.session("s1")["live"] == 0, 5, "socket counted out")
    events = standins_clean.whatsapp.events()
    assert [e["event"] for e in events] == ["connect", "open", "close"]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert events[-1]["by"] == "client" and events[-1]["code"] is None
    assert {e["conn_id"] for e in events} == {events[0]["conn_id"]}


@pytest.mark.parametrize(("code", "ws_code"), [(428, 4428), (515, 4515), (None, 1001)])
async def test_admin_close_closes_live_socket_with_code(standins_clean: Standins, code: int | None, ws_code: int) -> None:
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")
        assert standins_clean.whatsapp.close("s1", code) == 1
        assert await close_code_seen(ws) == ws_code
    close = standins_clean.whatsapp.events()[-1]
    assert (close["event"], close["code"], close["by"]) == ("close", code, "server")
    assert standins_clean.whatsapp.session("s1")["live"] == 0


async def test_close_can_carry_a_ban_wait(standins_clean: Standins) -> None:
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")
        standins_clean.whatsapp.close("s1", 402, reconnect_after_s=30)
        with pytest.raises(ConnectionClosed) as info:
            await _recv(ws)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, json.loads(info.value.rcvd.reason)) == (4402, {"reconnect_after_s": 30.0})


async def test_reject_refuses_every_hello_until_cleared(standins_clean: Standins) -> None:
    admin = standins_clean.whatsapp
    admin.reject("s1", 401)
    for _ in range(2):
        async with raw_socket(standins_clean, "s1") as ws:
            await send_hello(ws, "s1")
            assert await close_code_seen(ws) == 4401
    admin.unreject("s1")
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")
    assert [e["code"] for e in admin.events() if e["event"] == "reject"] == [401, 401]
    assert admin.session("s1")["opens"] == 1


async def test_outage_closes_every_session_and_refuses_hellos_until_it_ends(standins_clean: Standins) -> None:
    admin = standins_clean.whatsapp
    admin.reject("held", 401)
    async with raw_socket(standins_clean, "s1") as ws1, raw_socket(standins_clean, "s2") as ws2:
        await open_session(ws1, "s1")
        await open_session(ws2, "s2")
        assert admin.outage(503) == 2
        assert [await close_code_seen(ws1), await close_code_seen(ws2)] == [4503, 4503]
    assert admin.stats()["outage"] == 503
    for session_id, code in (("s1", 4503), ("held", 4401)):  # a session's own reject still wins
        async with raw_socket(standins_clean, session_id) as ws:
            await send_hello(ws, session_id)
            assert await close_code_seen(ws) == code
    admin.end_outage()
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")
    assert admin.stats()["outage"] is None and admin.session("s1")["opens"] == 2


async def test_outage_with_refusals_refuses_each_sessions_next_hellos_only(standins_clean: Standins) -> None:
    admin = standins_clean.whatsapp
    async with raw_socket(standins_clean, "s1") as ws1, raw_socket(standins_clean, "s2") as ws2:
        await open_session(ws1, "s1")
        await open_session(ws2, "s2")
        assert admin.outage(503, refusals=2) == 2
        assert [await close_code_seen(ws1), await close_code_seen(ws2)] == [4503, 4503]
    for _ in range(2):
        async with raw_socket(standins_clean, "s1") as ws:
            await send_hello(ws, "s1")
            assert await close_code_seen(ws) == 4503
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")  # its two refusals are spent; s2's are not
    async with raw_socket(standins_clean, "s2") as ws:
        await send_hello(ws, "s2")
        assert await close_code_seen(ws) == 4503
    assert admin.stats()["outage"] is None
    admin.end_outage()  # forgets what is left of the refusals
    async with raw_socket(standins_clean, "s2") as ws:
        await open_session(ws, "s2")


async def test_refusing_closes_and_refuses_the_named_sessions_only_until_accepted(standins_clean: Standins) -> None:
    admin = standins_clean.whatsapp
    async with raw_socket(standins_clean, "s1") as ws1, raw_socket(standins_clean, "other") as other:
        await open_session(ws1, "s1")
        await open_session(other, "other")
        assert admin.refuse(["s1", "s2"], 503) == 1  # s2 had no socket
        assert await close_code_seen(ws1) == 4503
        assert admin.session("other")["live"] == 1  # a session not named is untouched
    for session_id in ("s1", "s2"):
        async with raw_socket(standins_clean, session_id) as ws:
            await send_hello(ws, session_id)
            assert await close_code_seen(ws) == 4503
    admin.accept(["s1", "s2"])
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")
    rejects = [(e["session_id"], e["code"]) for e in admin.events() if e["event"] == "reject"]
    assert rejects == [("s1", 503), ("s2", 503)]
    with pytest.raises(AdminError, match="session_ids"):
        admin.refuse([], 503)


async def test_replace_closes_with_440_and_logout_rejects_from_then_on(standins_clean: Standins) -> None:
    admin = standins_clean.whatsapp
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")
        assert admin.replace("s1") == 1
        assert await close_code_seen(ws) == 4440
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")  # replace does not reject
        assert admin.logout("s1") == 1
        assert await close_code_seen(ws) == 4401
    async with raw_socket(standins_clean, "s1") as ws:
        await send_hello(ws, "s1")
        assert await close_code_seen(ws) == 4401


async def test_credentials_must_match_once_set(standins_clean: Standins) -> None:
    standins_clean.whatsapp.set_credentials("s1", "right-credentials-123")
    async with raw_socket(standins_clean, "s1") as ws:
        await send_hello(ws, "s1", "wrong")
        assert await close_code_seen(ws) == 4401
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1", "right-credentials-123")
    assert "right-credentials-123" not in json.dumps(standins_clean.whatsapp.sessions())


async def test_hello_for_another_session_is_refused_400(standins_clean: Standins) -> None:
    async with raw_socket(standins_clean, "s1") as ws:
        await send_hello(ws, "s2")
        assert await close_code_seen(ws) == 4400


async def test_no_hello_before_the_deadline_closes_408(standins_clean: Standins) -> None:
    standins_clean.whatsapp.configure(hello_timeout_s=0.3)
    async with raw_socket(standins_clean, "s1") as ws:
        assert await close_code_seen(ws) == 4408
    standins_clean.whatsapp.reset()  # restores the default deadline
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")


async def test_garbage_is_sent_raw_to_the_live_socket(standins_clean: Standins) -> None:
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")
        assert standins_clean.whatsapp.garbage("s1", "not json {") == 1
        assert await _recv(ws) == "not json {"
    assert standins_clean.whatsapp.garbage("nobody") == 0


async def test_mute_stops_pongs_until_unmute(standins_clean: Standins) -> None:
    admin = standins_clean.whatsapp
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")
        admin.mute("s1")
        await ws.send(json.dumps({"type": "ping", "seq": 1}))
        wait_until(lambda: admin.session("s1")["pings"] == 1, 5, "ping 1 reached the server")
        admin.unmute("s1")
        await ws.send(json.dumps({"type": "ping", "seq": 2}))
        assert await recv_json(ws) == {"type": "pong", "seq": 2}  # ping 1 was never answered


async def test_r7_detector_flags_two_open_sockets_for_one_session(standins_clean: Standins) -> None:
    admin = standins_clean.whatsapp
    async with raw_socket(standins_clean, "ok") as first:  # one after the other: no violation
        await open_session(first, "ok")
    wait_until(lambda: admin.session("ok")["live"] == 0, 5, "first socket counted out")
    async with raw_socket(standins_clean, "ok") as second:
        await open_session(second, "ok")
    assert admin.stats()["r7_violations"] == []

    async with raw_socket(standins_clean, "dup") as first, raw_socket(standins_clean, "dup") as second:
        await open_session(first, "dup")
        await open_session(second, "dup")
        stats = admin.stats()
    assert stats["max_live_per_session"] == 2
    assert [(v["session_id"], v["live"]) for v in stats["r7_violations"]] == [("dup", 2)]
    assert admin.session("dup")["max_live"] == 2


async def test_events_since_returns_only_newer_events(standins_clean: Standins) -> None:
    admin = standins_clean.whatsapp
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")
    wait_until(lambda: len(admin.events()) == 3, 5, "three events")
    first, second, third = admin.events()
    assert admin.events(since=first["seq"]) == [second, third]
    assert admin.events(since=third["seq"]) == []
    assert admin.events(since=0, limit=1) == [first]
    assert {"seq", "t", "session_id", "event", "code", "conn_id"} <= set(first)
    assert abs(first["t"] - time.time()) < 60


async def test_reset_closes_sockets_and_forgets_everything(standins_clean: Standins) -> None:
    admin = standins_clean.whatsapp
    admin.reject("gone", 401)
    async with raw_socket(standins_clean, "s1") as ws:
        await open_session(ws, "s1")
        assert admin.reset()["closed"] == 1
        assert await close_code_seen(ws) == 1001
    assert admin.sessions() == {}
    assert admin.events() == []
    assert admin.stats()["max_live_per_session"] == 0
    async with raw_socket(standins_clean, "gone") as ws:
        await open_session(ws, "gone")  # the reject was forgotten


@pytest.mark.parametrize(("method", "path", "body", "named"), [
    ("PUT", "/admin/sessions/s1/reject", {"code": "401"}, "'code'"),
    ("PUT", "/admin/sessions/s1/reject", {"code": 42}, "100..999"),
    ("POST", "/admin/sessions/s1/close", {"code": 1000}, "100..999"),
    ("PUT", "/admin/sessions/s1/credentials", {"credentials": ""}, "'credentials'"),
    ("POST", "/admin/sessions/s1/garbage", {"payload": 5}, "'payload'"),
    ("POST", "/admin/config", {"hello_timeout_s": -1}, "'hello_timeout_s'"),
    ("POST", "/admin/config", {"nope": 1}, "unknown settings"),
    ("GET", "/admin/events?since=x", None, "'since'"),
    ("PUT", "/admin/sessions/s1/reject", b"{not json", "not JSON"),
    ("PUT", "/admin/outage", {"code": 7}, "100..999"),
    ("PUT", "/admin/outage", {"code": 503, "refusals": 0}, "'refusals'"),
])
def test_whatsapp_admin_rejects_bad_input_naming_it(standins_clean: Standins, method: str, path: str,
                                                    body: Any, named: str) -> None:
    with pytest.raises(AdminError) as info:
        if isinstance(body, bytes):
            request = urllib.request.Request(standins_clean.whatsapp_admin_url + path, data=body, method=method)
            try:
                urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5)
            except urllib.error.HTTPError as err:
                raise AdminError(method, path, err.code, err.read().decode()) from None
        else:
            standins_clean.whatsapp.request(method, path, body)
    assert info.value.status == 400
    assert named in json.loads(info.value.detail)["error"]


# -- back-office stand-in ----------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_api_needs_the_bearer_token(standins_clean: Standins, token: str | None) -> None:
    standins_clean.backoffice.add_account("s1")
    assert api(standins_clean, "GET", "/api/sessions/s1/validity", token=token)[0] == 401
    assert api(standins_clean, "POST", "/api/status/batch", {"updates": [update("u1")]}, token=token)[0] == 401
    assert standins_clean.backoffice.updates()["updates"] == []
    assert api(standins_clean, "GET", "/api/sessions/s1/validity")[0] == 200


def test_token_never_reaches_the_log(standins_clean: Standins) -> None:
    api(standins_clean, "GET", "/api/sessions/s1/validity")
    api(standins_clean, "GET", "/api/sessions/s1/validity", token="wrong-token")
    standins_clean.backoffice.set_mode("ok")
    assert standins_clean.backoffice_token.reveal() not in standins_clean.process.log_path.read_text()


def test_validity_reflects_account_state(standins_clean: Standins) -> None:
    admin = standins_clean.backoffice
    admin.add_accounts(["on", "off", "gone"])
    admin.deactivate("off")
    admin.delete_account("gone")
    admin.add_account("born-off", active=False)
    seen = {sid: json.loads(api(standins_clean, "GET", f"/api/sessions/{sid}/validity")[1])
            for sid in ("on", "off", "gone", "born-off", "never")}
    assert seen == {
        "on": {"session_id": "on", "valid": True, "status": "active"},
        "off": {"session_id": "off", "valid": False, "status": "inactive"},
        "gone": {"session_id": "gone", "valid": False, "status": "deleted"},
        "born-off": {"session_id": "born-off", "valid": False, "status": "inactive"},
        "never": {"session_id": "never", "valid": False, "status": "unknown"},
    }
    admin.activate("off")
    assert json.loads(api(standins_clean, "GET", "/api/sessions/off/validity")[1])["valid"] is True


def test_validity_batch_answers_each_session_as_the_single_endpoint_does(standins_clean: Standins) -> None:
    admin = standins_clean.backoffice
    admin.add_accounts(["on", "off"])
    admin.deactivate("off")
    ids = ["off", "never", "on", "off"]  # a repeat is answered once
    status, text = api(standins_clean, "POST", "/api/validity/batch", {"session_ids": ids})
    assert status == 200
    single = [json.loads(api(standins_clean, "GET", f"/api/sessions/{sid}/validity")[1]) for sid in ids[:3]]
    assert json.loads(text) == {"sessions": single}
    assert [s["valid"] for s in single] == [False, False, True]
    assert admin.updates()["validity_batches"] == 1


@pytest.mark.parametrize(("body", "named"), [
    ({"session_ids": []}, "'session_ids'"),
    ({"session_ids": "s1"}, "'session_ids'"),
    ({"session_ids": ["s1", ""]}, "session_ids[1]"),
    ({"session_ids": ["s1", 7]}, "session_ids[1]"),
    ({"session_ids": [f"s{i}" for i in range(10_001)]}, "at most 10000"),
])
def test_malformed_validity_batch_is_400_naming_the_problem(standins_clean: Standins, body: Any, named: str) -> None:
    status, text = api(standins_clean, "POST", "/api/validity/batch", body)
    assert (status, named in json.loads(text)["error"]) == (400, True)
    assert standins_clean.backoffice.updates()["validity_batches"] == 0


def test_batches_are_recorded_in_order_and_duplicates_acked_once(standins_clean: Standins) -> None:
    first = [update("u1", "a", 1), update("u2", "b", 1, "active")]
    second = [update("u2", "b", 1, "active"), update("u3", "a", 2, "inactive")]
    assert json.loads(api(standins_clean, "POST", "/api/status/batch", {"updates": first})[1]) == {"acked": ["u1", "u2"]}
    assert json.loads(api(standins_clean, "POST", "/api/status/batch", {"updates": second})[1]) == {"acked": ["u2", "u3"]}
    seen = standins_clean.backoffice.updates()
    assert [u["update_id"] for u in seen["updates"]] == ["u1", "u2", "u3"]
    assert (seen["duplicates"], seen["batches"]) == (1, 2)
    assert {k: seen["updates"][2][k] for k in ("session_id", "status", "priority", "seq", "at_s")} == {
        "session_id": "a", "status": "inactive", "priority": "normal", "seq": 2, "at_s": 1700000000.5}


@pytest.mark.parametrize(("body", "named"), [
    (b"not json", "not JSON"),
    ([1, 2], "JSON object"),
    ({"updates": "u1"}, "'updates'"),
    ({"updates": [update("u1"), 7]}, "updates[1]"),
    ({"updates": [{"update_id": "u1"}]}, "missing"),
    ({"updates": [{**update("u1"), "status": "gone"}]}, "updates[0].status"),
    ({"updates": [{**update("u1"), "priority": "urgent"}]}, "updates[0].priority"),
    ({"updates": [{**update("u1"), "seq": -1}]}, "updates[0].seq"),
    ({"updates": [{**update("u1"), "seq": True}]}, "updates[0].seq"),
    ({"updates": [{**update("u1"), "at_s": "now"}]}, "updates[0].at_s"),
    ({"updates": [{**update("u1"), "update_id": ""}]}, "updates[0].update_id"),
])
def test_malformed_batch_is_400_naming_the_problem(standins_clean: Standins, body: Any, named: str) -> None:
    status, text = api(standins_clean, "POST", "/api/status/batch", body)
    assert status == 400
    assert named in json.loads(text)["error"]
    assert standins_clean.backoffice.updates()["updates"] == []


def test_modes_error500_garbage_slow_then_ok(standins_clean: Standins) -> None:
    admin = standins_clean.backoffice
    admin.add_account("s1")
    admin.set_mode("error500")
    assert api(standins_clean, "POST", "/api/status/batch", {"updates": [update("u1")]})[0] == 500
    admin.set_mode("garbage")
    status, text = api(standins_clean, "GET", "/api/sessions/s1/validity")
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(text)
    assert admin.updates()["updates"] == []  # neither failing mode processed anything

    admin.set_mode("slow", delay_s=0.5)
    started = time.monotonic()
    status, text = api(standins_clean, "POST", "/api/status/batch", {"updates": [update("u1")]})
    assert time.monotonic() - started >= 0.5  # a floor: the answer waited at least delay_s
    assert (status, json.loads(text)) == (200, {"acked": ["u1"]})

    admin.set_mode("ok")
    assert json.loads(api(standins_clean, "GET", "/api/sessions/s1/validity")[1])["valid"] is True
    with pytest.raises(AdminError, match="'mode'"):
        admin.set_mode("sideways")


@SERVICE_ON_BOTH
def test_delete_and_deactivate_write_inactive_to_shared_redis(standins_clean: Standins,
                                                              service_redis: RedisView) -> None:
    """At the key the service reads there: the contract's name on a single server, the
    session's tagged shard on a cluster (where the contract's name stays unwritten)."""
    admin, r = standins_clean.backoffice, service_redis
    admin.add_accounts(["del", "deact", "keep"])
    for sid in ("del", "deact", "keep"):
        r.sync.set(r.layout.status_key(sid), "active")

    assert admin.delete_account("del")["redis"] == "inactive"
    assert admin.deactivate("deact")["redis"] == "inactive"

    assert r.statuses(["del", "deact", "keep"]) == {"del": "inactive", "deact": "inactive", "keep": "active"}
    with pytest.raises(AdminError) as info:
        admin.delete_account("never-existed")
    assert info.value.status == 404
    assert r.statuses(["never-existed"]) == {"never-existed": None}
    if r.layout.is_sharded:
        assert r.get([status_key(sid) for sid in ("del", "deact")]) == [None, None]


def test_backoffice_redis_can_be_pointed_elsewhere_and_reset_points_it_back(
        standins_clean: Standins, redis_client: redis.Redis) -> None:
    admin = standins_clean.backoffice
    admin.add_accounts(["a", "b"])
    assert admin.use_redis(None) == {"redis": False, "cluster_shards": 0}
    assert admin.delete_account("a")["redis"] is None  # no Redis: nothing written
    for body, named in (({"url": "redis+cluster://127.0.0.1:1,x/"}, "port"), ({"url": 7}, "'url'"),
                        ({"url": "banana://127.0.0.1:1"}, "redis://"), ({"url": "redis://127.0.0.1:1/x"}, "database"),
                        ({"url": "redis+cluster://127.0.0.1:1/", "cluster_shards": "16"}, "shards"),
                        ({"url": "redis+cluster://127.0.0.1:1/", "cluster_shards": 0}, "shards")):
        with pytest.raises(AdminError, match=named) as info:
            admin.request("PUT", "/admin/redis", body)
        assert info.value.status == 400
    admin.reset()  # back to the Redis it was started with, in the single layout
    admin.add_account("b")
    assert admin.deactivate("b")["redis"] == "inactive"
    assert redis_client.get(status_key("a")) is None and redis_client.get(status_key("b")) == b"inactive"


def test_backoffice_reset_clears_accounts_updates_and_mode(standins_clean: Standins) -> None:
    admin = standins_clean.backoffice
    admin.add_account("s1")
    api(standins_clean, "POST", "/api/status/batch", {"updates": [update("u1")]})
    admin.set_mode("error500")
    admin.reset()
    assert admin.updates() == {"updates": [], "duplicates": 0, "batches": 0, "rejected_auth": 0,
                               "validity_batches": 0, "hostile_replies": 0}
    assert admin.accounts()["accounts"] == {}
    assert api(standins_clean, "GET", "/api/sessions/s1/validity")[0] == 200  # mode back to ok
