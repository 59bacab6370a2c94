"""The WhatsApp stand-in: a WebSocket server speaking `service.transports.wire_protocol`,
and its admin HTTP API (a separate app on its own port, never behind Toxiproxy).

Owns the per-socket protocol (hello deadline, open/refuse, ping/pong, server-initiated
closes) and the admin routes. Counting lives in `whatsapp_state.py`. Per-connection cost
is one handler task and one aiohttp WebSocketResponse (no compression, no heartbeat
timer), so one process holds >= 10,000 sockets. Must not log credentials or frames.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from typing import Any

from aiohttp import WSMsgType, web

from chaos.standins.webutil import (BadRequest, json_body, json_response, non_negative_number,
                                    optional_code, required_code)
from chaos.standins.whatsapp_state import Conn, SessionState, WhatsAppState
from service.errors import MalformedInput
from service.transports.wire import ban_close_reason
from service.transports.wire_protocol import (MAX_FRAME_BYTES, WS_PATH_PREFIX, decode, encode,
                                              from_ws_close_code, to_ws_close_code)

log = logging.getLogger(__name__)

HELLO_TIMEOUT_CODE = 408  # no hello before the deadline
BAD_HELLO_CODE = 400  # first frame malformed, not a hello, or for another session
WS_GOING_AWAY = 1001  # a plain close without a WhatsApp code (admin close, reset, shutdown)
DATA_FRAMES = (WSMsgType.TEXT, WSMsgType.BINARY)


class WhatsAppStandin:
    """One stand-in: `ws_app()` for the WebSocket port, `admin_app()` for the admin port."""

    def __init__(self, *, hello_timeout_s: float = 10.0, close_timeout_s: float = 5.0) -> None:
        if hello_timeout_s <= 0 or close_timeout_s <= 0:
            raise ValueError(f"hello_timeout_s ({hello_timeout_s!r}) and close_timeout_s "
                             f"({close_timeout_s!r}) must be > 0 seconds")
        self.state = WhatsAppState()
        self.default_hello_timeout_s = hello_timeout_s
        self.hello_timeout_s = hello_timeout_s
        self.close_timeout_s = close_timeout_s

    # -- apps -------------------------------------------------------------------

    def ws_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(WS_PATH_PREFIX + "{session_id}", self._handle_ws)
        return app

    def admin_app(self) -> web.Application:
        app = web.Application()
        session = "/admin/sessions/{session_id}"
        app.add_routes([
            web.get("/admin/health", self._health),
            web.get("/admin/sessions", self._sessions),
            web.get(session, self._session),
            web.post(session + "/close", self._close),
            web.put(session + "/reject", self._set_reject),
            web.delete(session + "/reject", self._clear_reject),
            web.post(session + "/replace", self._replace),
            web.post(session + "/logout", self._logout),
            web.put(session + "/credentials", self._set_credentials),
            web.delete(session + "/credentials", self._clear_credentials),
            web.post(session + "/garbage", self._garbage),
            web.post(session + "/mute", self._mute),
            web.post(session + "/unmute", self._unmute),
            web.put(session + "/slow-close", self._slow_close),
            web.put("/admin/refusing", self._start_refusing),
            web.delete("/admin/refusing", self._end_refusing),
            web.put("/admin/outage", self._start_outage),
            web.delete("/admin/outage", self._end_outage),
            web.get("/admin/events", self._events),
            web.get("/admin/stats", self._stats),
            web.post("/admin/config", self._config),
            web.post("/admin/reset", self._reset),
        ])
        return app

    async def shutdown(self) -> None:
        """Close every socket (1001) and wait, bounded, for the closes to finish."""
        conns = self.state.all_conns()
        for conn in conns:
            self._close_conn(conn, None, WS_GOING_AWAY)
        tasks = [conn.close_task for conn in conns if conn.close_task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.close_timeout_s + 1.0)

    # -- one socket -------------------------------------------------------------

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoclose=False, autoping=True, compress=False,
                                   max_msg_size=4 * MAX_FRAME_BYTES, timeout=self.close_timeout_s)
        await ws.prepare(request)
        conn = self.state.connect(request.match_info["session_id"], ws)
        try:
            if await self._hello(conn):
                await self._serve(conn)
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the peer vanished; counted out below
        finally:
            self.state.end(conn, None, ws.close_code, "error")  # no-op when already counted
            if conn.close_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.close_task)
            elif not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close(code=WS_GOING_AWAY)
        return ws

    async def _hello(self, conn: Conn) -> bool:
        """Wait for the hello; answer `open` (True) or refuse with a close code (False)."""
        try:
            msg = await conn.ws.receive(timeout=self.hello_timeout_s)
        except asyncio.TimeoutError:
            await self._refuse(conn, HELLO_TIMEOUT_CODE)
            return False
        if msg.type not in DATA_FRAMES:
            await self._peer_closed(conn, msg)
            return False
        try:
            frame = decode(msg.data)
        except MalformedInput:
            self.state.malformed_frames += 1
            frame = {}
        if frame.get("type") != "hello" or frame.get("session_id") != conn.session_id:
            await self._refuse(conn, BAD_HELLO_CODE)
            return False
        refusal = self.state.hello_refusal(conn, frame.get("credentials"))
        if refusal is not None:
            await self._refuse(conn, refusal)
            return False
        self.state.open(conn)  # counted live before the client can know it is open
        await conn.ws.send_str(encode("open"))
        return True

    async def _serve(self, conn: Conn) -> None:
        ws = conn.ws
        while True:
            msg = await ws.receive()
            if msg.type not in DATA_FRAMES:
                await self._peer_closed(conn, msg)
                return
            try:
                frame = decode(msg.data)
            except MalformedInput:
                self.state.malformed_frames += 1
                continue
            if frame["type"] == "ping" and self.state.count_ping(conn):
                seq = frame.get("seq")  # echoed only when a plain integer (a hostile one is not sent back)
                seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
                await ws.send_str(encode("pong", seq=seq))

    async def _peer_closed(self, conn: Conn, msg: Any) -> None:
        if msg.type is WSMsgType.CLOSE:
            # Counted out before our close reply leaves: a client that waits for the
            # handshake (R7) never sees its old socket still counted live.
            ws_code = msg.data if isinstance(msg.data, int) else None
            delay_s = self.state.session(conn.session_id).slow_close_s
            if delay_s > 0:  # a server slow to finish the handshake: the socket stays live meanwhile
                await asyncio.sleep(delay_s)
            self.state.end(conn, from_ws_close_code(ws_code), ws_code, "client")
            with contextlib.suppress(Exception):
                await conn.ws.close(drain=False)

    async def _refuse(self, conn: Conn, code: int) -> None:
        self.state.reject(conn, code)
        ws_code = to_ws_close_code(code)
        self.state.end(conn, code, ws_code, "server")
        with contextlib.suppress(Exception):
            await conn.ws.close(code=ws_code)

    def _close_conn(self, conn: Conn, code: int | None, ws_code: int, reason: str = "") -> bool:
        """Start a server-side close; the socket is counted out at once."""
        if not self.state.end(conn, code, ws_code, "server"):
            return False
        conn.close_task = asyncio.ensure_future(self._bounded_close(conn, ws_code, reason))
        return True

    async def _bounded_close(self, conn: Conn, ws_code: int, reason: str) -> None:
        # aiohttp waits at most `timeout` (close_timeout_s) for the client's close frame.
        with contextlib.suppress(Exception):
            await conn.ws.close(code=ws_code, message=reason.encode())

    # -- admin --------------------------------------------------------------------

    def _close_session(self, session_id: str, code: int | None, reason: str = "") -> int:
        ws_code = WS_GOING_AWAY if code is None else to_ws_close_code(code)
        return sum(self._close_conn(conn, code, ws_code, reason) for conn in self.state.live_conns(session_id))

    async def _health(self, request: web.Request) -> web.Response:
        return json_response({"ok": True})

    async def _sessions(self, request: web.Request) -> web.Response:
        return json_response({sid: state.summary() for sid, state in self.state.sessions.items()})

    async def _session(self, request: web.Request) -> web.Response:
        state = self.state.sessions.get(request.match_info["session_id"]) or SessionState()
        return json_response(state.summary())

    async def _close(self, request: web.Request) -> web.Response:
        body = await json_body(request, required=False)
        code = optional_code(body)
        wait_s = non_negative_number(body, "reconnect_after_s")
        reason = ban_close_reason(wait_s) if wait_s is not None else ""
        closed = self._close_session(request.match_info["session_id"], code, reason)
        return json_response({"closed": closed})

    async def _set_reject(self, request: web.Request) -> web.Response:
        code = required_code(await json_body(request))
        self.state.session(request.match_info["session_id"]).reject_code = code
        return json_response({"rejecting": code})

    async def _clear_reject(self, request: web.Request) -> web.Response:
        self.state.session(request.match_info["session_id"]).reject_code = None
        return json_response({"rejecting": None})

    async def _start_outage(self, request: web.Request) -> web.Response:
        """Every session at once: live sockets closed with `code`; then every hello refused
        with it until the outage ends or, given `refusals`, each known session's next
        `refusals` hellos only (a per-session reject still wins)."""
        body = await json_body(request)
        code = required_code(body)
        refusals = body.get("refusals")
        if refusals is not None and (isinstance(refusals, bool) or not isinstance(refusals, int) or refusals < 1):
            raise BadRequest(f"'refusals' must be a whole number >= 1 (or absent: until the outage ends), "
                             f"got {refusals!r}")
        if refusals is None:
            self.state.outage_code = code
        else:
            for session in self.state.sessions.values():
                session.refusals_left, session.refusal_code = refusals, code
        ws_code = to_ws_close_code(code)
        closed = sum(self._close_conn(conn, code, ws_code) for conn in self.state.all_conns())
        log.info("whatsapp stand-in outage %d: closed %d sockets", code, closed)
        return json_response({"closed": closed, "outage": code, "refusals": refusals})

    async def _start_refusing(self, request: web.Request) -> web.Response:
        """Many sessions at once: each one's live sockets closed with `code` and its hellos refused
        with it (a per-session reject) until `DELETE /admin/refusing` names it."""
        body = await json_body(request)
        code, session_ids = required_code(body), _session_ids(body)
        closed = 0
        for session_id in session_ids:
            self.state.session(session_id).reject_code = code
            closed += self._close_session(session_id, code)
        return json_response({"refusing": len(session_ids), "closed": closed, "code": code})

    async def _end_refusing(self, request: web.Request) -> web.Response:
        session_ids = _session_ids(await json_body(request))
        for session_id in session_ids:
            self.state.session(session_id).reject_code = None
        return json_response({"refusing": 0, "accepted": len(session_ids)})

    async def _end_outage(self, request: web.Request) -> web.Response:
        self.state.outage_code = None
        for session in self.state.sessions.values():
            session.refusals_left = 0
        return json_response({"outage": None})

    async def _replace(self, request: web.Request) -> web.Response:
        return json_response({"closed": self._close_session(request.match_info["session_id"], 440)})

    async def _logout(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        self.state.session(session_id).reject_code = 401
        return json_response({"closed": self._close_session(session_id, 401), "rejecting": 401})

    async def _set_credentials(self, request: web.Request) -> web.Response:
        credentials = (await json_body(request)).get("credentials")
        if not isinstance(credentials, str) or not credentials:
            raise BadRequest("'credentials' must be a non-empty string")
        self.state.session(request.match_info["session_id"]).credentials = credentials
        return json_response({"requires_credentials": True})

    async def _clear_credentials(self, request: web.Request) -> web.Response:
        self.state.session(request.match_info["session_id"]).credentials = None
        return json_response({"requires_credentials": False})

    async def _garbage(self, request: web.Request) -> web.Response:
        """Send `payload` (text; bytes with `binary`) or `payload_b64` (raw bytes) as one frame."""
        data = _garbage_payload(await json_body(request))
        sent = 0
        for conn in self.state.live_conns(request.match_info["session_id"]):
            if conn.is_open and not conn.ended:
                with contextlib.suppress(ConnectionError):
                    await (conn.ws.send_str(data) if isinstance(data, str) else conn.ws.send_bytes(data))
                    sent += 1
        return json_response({"sent": sent})

    async def _mute(self, request: web.Request) -> web.Response:
        self.state.session(request.match_info["session_id"]).muted = True
        return json_response({"muted": True})

    async def _slow_close(self, request: web.Request) -> web.Response:
        """`{"delay_s": x}`: answer (and count out) a client's close frame x seconds late (0: at once)."""
        delay_s = non_negative_number(await json_body(request), "delay_s")
        if delay_s is None or delay_s > 60:
            raise BadRequest("'delay_s' must be a number of seconds in 0..60")
        self.state.session(request.match_info["session_id"]).slow_close_s = delay_s
        return json_response({"slow_close_s": delay_s})

    async def _unmute(self, request: web.Request) -> web.Response:
        self.state.session(request.match_info["session_id"]).muted = False
        return json_response({"muted": False})

    async def _events(self, request: web.Request) -> web.Response:
        since = _query_int(request, "since", 0)
        limit = _query_int(request, "limit", 100_000)
        return json_response(self.state.events_since(since, limit))

    async def _stats(self, request: web.Request) -> web.Response:
        return json_response(self.state.stats())

    async def _config(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        unknown = set(body) - {"hello_timeout_s"}
        if unknown:
            raise BadRequest(f"unknown settings {sorted(unknown)}; known: ['hello_timeout_s']")
        hello_timeout_s = non_negative_number(body, "hello_timeout_s")
        if hello_timeout_s is not None:
            if hello_timeout_s <= 0:
                raise BadRequest("'hello_timeout_s' must be > 0 seconds")
            self.hello_timeout_s = hello_timeout_s
        return json_response({"hello_timeout_s": self.hello_timeout_s})

    async def _reset(self, request: web.Request) -> web.Response:
        conns = self.state.all_conns()
        self.state.reset()  # first: the closes below record nothing in the fresh state
        for conn in conns:
            self._close_conn(conn, None, WS_GOING_AWAY)
        self.hello_timeout_s = self.default_hello_timeout_s
        log.info("whatsapp stand-in reset; closed %d sockets", len(conns))
        return json_response({"closed": len(conns)})


def _session_ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("session_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(s, str) and s for s in ids):
        raise BadRequest(f"'session_ids' must be a non-empty list of non-empty strings, got {str(ids)[:80]}")
    return ids


def _garbage_payload(body: dict[str, Any]) -> str | bytes:
    if "payload_b64" in body:
        try:
            return base64.b64decode(str(body["payload_b64"]), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("'payload_b64' must be base64 text") from None
    payload, binary = body.get("payload"), body.get("binary", False)
    if not isinstance(payload, str):
        raise BadRequest(f"'payload' must be a string (or give 'payload_b64'), got {type(payload).__name__}")
    if not isinstance(binary, bool):
        raise BadRequest(f"'binary' must be true or false, got {binary!r}")
    return payload.encode() if binary else payload


def _query_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer >= 0, got {raw!r}") from None
    if value < 0:
        raise BadRequest(f"query parameter {name!r} must be an integer >= 0, got {raw!r}")
    return value
