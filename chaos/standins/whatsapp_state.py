"""Bookkeeping of the WhatsApp stand-in: sessions, their sockets, the event log and the
R7 detector (a session with two sockets that completed hello at the same moment).

Owns counting and per-session admin settings (reject code, credentials, mute). Must not
do network I/O; `whatsapp.py` calls in here at each step of a socket's life.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_EVENTS = 500_000  # oldest events are dropped past this; `seq` keeps counting


@dataclass(eq=False)
class Conn:
    """One accepted WebSocket. `is_open` once hello succeeded; `ended` once counted out."""

    conn_id: int
    session_id: str
    ws: Any  # aiohttp WebSocketResponse; Any keeps this module free of aiohttp
    is_open: bool = False
    ended: bool = False
    close_task: Any = None  # the server-initiated close in progress, if any


@dataclass
class SessionState:
    """Counters and admin settings of one session id."""

    connected: set[Conn] = field(default_factory=set)  # every socket not yet ended
    live: int = 0  # sockets that completed hello and have not ended
    max_live: int = 0
    connects: int = 0
    opens: int = 0
    pings: int = 0
    reject_code: int | None = None
    refusals_left: int = 0  # the next hellos refused with `refusal_code` (an outage's, then accepted)
    refusal_code: int | None = None
    credentials: str | None = None  # never logged, never returned by the admin API
    muted: bool = False
    slow_close_s: float = 0.0  # a client's close is answered (and counted out) this much later

    def summary(self) -> dict[str, Any]:
        return {
            "live": self.live, "max_live": self.max_live, "connects": self.connects,
            "opens": self.opens, "connected": len(self.connected), "pings": self.pings,
            "rejecting": self.reject_code, "muted": self.muted, "slow_close_s": self.slow_close_s,
            "requires_credentials": self.credentials is not None,
        }


class WhatsAppState:
    """All sessions, the ordered event log and R7 violations of one stand-in."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionState] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.r7_violations: list[dict[str, Any]] = []
        self.malformed_frames = 0
        self.outage_code: int | None = None  # while set, every hello is refused with it
        self._next_seq = 1
        self._next_conn_id = 1

    def session(self, session_id: str) -> SessionState:
        state = self.sessions.get(session_id)
        if state is None:
            state = self.sessions[session_id] = SessionState()
        return state

    def connect(self, session_id: str, ws: Any) -> Conn:
        conn = Conn(self._next_conn_id, session_id, ws)
        self._next_conn_id += 1
        state = self.session(session_id)
        state.connects += 1
        state.connected.add(conn)
        self._record(session_id, "connect", None, conn.conn_id)
        return conn

    def hello_refusal(self, conn: Conn, credentials: object) -> int | None:
        """The WhatsApp code to refuse this hello with, or None to accept it."""
        state = self.session(conn.session_id)
        if state.reject_code is not None:
            return state.reject_code
        if self.outage_code is not None:
            return self.outage_code
        if state.refusals_left > 0:
            state.refusals_left -= 1
            return state.refusal_code
        if state.credentials is not None and credentials != state.credentials:
            return 401
        return None

    def reject(self, conn: Conn, code: int) -> None:
        self._record(conn.session_id, "reject", code, conn.conn_id)

    def open(self, conn: Conn) -> None:
        state = self.session(conn.session_id)
        conn.is_open = True
        state.opens += 1
        state.live += 1
        state.max_live = max(state.max_live, state.live)
        self._record(conn.session_id, "open", None, conn.conn_id)
        if state.live > 1:
            self.r7_violations.append({"session_id": conn.session_id, "t": time.time(), "live": state.live})

    def end(self, conn: Conn, code: int | None, ws_code: int | None, by: str) -> bool:
        """Count a socket out (first call wins); `by` is "client", "server" or "error"."""
        if conn.ended:
            return False
        conn.ended = True
        state = self.sessions.get(conn.session_id)
        if state is not None and conn in state.connected:  # absent after a reset
            state.connected.discard(conn)
            if conn.is_open:
                state.live -= 1
            self._record(conn.session_id, "close", code, conn.conn_id, ws_code=ws_code, by=by)
        return True

    def count_ping(self, conn: Conn) -> bool:
        """Count a ping; True when the session should answer it (not muted)."""
        state = self.session(conn.session_id)
        state.pings += 1
        return not state.muted

    def live_conns(self, session_id: str) -> list[Conn]:
        state = self.sessions.get(session_id)
        return [] if state is None else sorted(state.connected, key=lambda c: c.conn_id)

    def all_conns(self) -> list[Conn]:
        return [conn for state in self.sessions.values() for conn in state.connected]

    def events_since(self, since: int, limit: int) -> list[dict[str, Any]]:
        """Events with seq > `since`, oldest first, at most `limit` (seqs are contiguous)."""
        if not self.events:
            return []
        start = max(0, since - self.events[0]["seq"] + 1)
        return list(itertools.islice(self.events, start, start + limit))

    def stats(self) -> dict[str, Any]:
        return {
            "max_live_per_session": max((s.max_live for s in self.sessions.values()), default=0),
            "r7_violations": list(self.r7_violations),
            "sessions": len(self.sessions),
            "live": sum(s.live for s in self.sessions.values()),
            "connected": sum(len(s.connected) for s in self.sessions.values()),
            "malformed_frames": self.malformed_frames,
            "outage": self.outage_code,
            "last_seq": self._next_seq - 1,
        }

    def reset(self) -> None:
        """Forget everything; sockets still open are left to the caller to close."""
        self.sessions = {}
        self.events.clear()
        self.r7_violations = []
        self.malformed_frames = 0
        self.outage_code = None

    def _record(self, session_id: str, event: str, code: int | None, conn_id: int, **extra: Any) -> None:
        self.events.append({"seq": self._next_seq, "t": time.time(), "session_id": session_id,
                            "event": event, "code": code, "conn_id": conn_id, **extra})
        self._next_seq += 1
