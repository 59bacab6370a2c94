"""HTTP client for the back office (Laravel in the original; the stand-in in chaos runs).

Owns: the calls of `service.ports.BackOffice` over aiohttp —
`GET {base}/api/sessions/{id}/validity`, `POST {base}/api/validity/batch` (many sessions'
validity in one request; `service.validity_batch` gathers them) and
`POST {base}/api/status/batch` — with the bearer token, a per-request timeout, and strict parsing of the replies. Must not: retry
(the outbox and the validation chain decide that), log or put the token in any message,
or guess at a reply it does not understand: garbage, a missing field, a 5xx, a refused
connection or a timeout all raise `BackOfficeError` saying which call failed and why.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from service.core import Priority, Status
from service.errors import BackOfficeError, ConfigError
from service.ports import ENUM_TEXT, Secret, StatusUpdate

MAX_REPLY_BYTES = 1024 * 1024
_JSON_TYPE = {"Content-Type": "application/json"}
_VALIDITY_STATUSES = (200, 404)  # 404 with a well-formed body means "no such account"


def update_to_json(update: StatusUpdate) -> dict[str, Any]:
    """The wire shape of one update in a batch."""
    status, priority = update.status, update.priority
    return {"update_id": update.update_id, "session_id": update.session_id,
            "status": ENUM_TEXT[status] if type(status) is Status else Status(status).value,
            "priority": ENUM_TEXT[priority] if type(priority) is Priority else priority.value,
            "seq": update.seq, "at_s": update.at_s}


def json_body(body: Any) -> bytes:
    """A request's JSON, as json writes it but for spaces and escapes: orjson's (a batch of
    hundreds of updates, several times faster), else json's where orjson refuses (an integer
    past 64 bits, a key that is not text) or may write otherwise (a NaN or infinity: null)."""
    try:
        text = orjson.dumps(body)
    except TypeError:
        text = b"null"
    return json.dumps(body).encode() if b"null" in text else text


class HttpBackOffice:
    """`BackOffice` over HTTP. Create inside a running event loop; `aclose()` when done."""

    def __init__(self, base_url: str, token: Secret, *, timeout_s: float) -> None:
        parts = urlsplit(base_url) if isinstance(base_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"back-office base_url must be an http(s) URL like http://127.0.0.1:8080, "
                              f"got {base_url!r}")
        if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or timeout_s <= 0:
            raise ConfigError(f"back-office timeout_s must be a positive number, got {timeout_s!r}")
        if not isinstance(token, (str, Secret)) or not token:
            raise ConfigError("back-office token must be a non-empty Secret")
        self.base_url = base_url.rstrip("/")
        self._token = Secret(token)
        self.timeout_s = float(timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.errors = 0
        # monotonic time of the last reply below 500, by call ("validity" for the per-session GET)
        self.last_reply_at: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"HttpBackOffice({self.base_url!r}, token=***, timeout_s={self.timeout_s})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"Authorization": f"Bearer {self._token.reveal()}", "Accept": "application/json"},
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HttpBackOffice:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, ok: tuple[int, ...], body: Any = None) -> Any:
        """One call → parsed JSON object; every failure is a `BackOfficeError` naming the call."""
        what = f"back office {method} {path}"
        self.requests += 1
        try:
            data = None if body is None else json_body(body)
            async with self._client().request(method, self.base_url + path, data=data,
                                              headers=None if body is None else _JSON_TYPE) as resp:
                status = resp.status
                if status < 500:  # up and talking, whatever it says
                    self.last_reply_at[path if path.endswith("/batch") else "validity"] = time.monotonic()
                raw = await self._read_body(what, resp)
        except asyncio.TimeoutError:
            self.errors += 1
            raise BackOfficeError(f"{what}: no reply within {self.timeout_s:g} s") from None
        except aiohttp.ClientError as err:
            self.errors += 1
            raise BackOfficeError(f"{what}: {type(err).__name__}: {err}") from None
        return self._parse(what, status, ok, raw)

    async def _read_body(self, what: str, resp: aiohttp.ClientResponse) -> bytes:
        """The whole body, however the bytes arrive, up to `MAX_REPLY_BYTES`; a larger one
        (announced or sent) is refused without reading further."""
        announced = resp.content_length
        if announced is not None and announced > MAX_REPLY_BYTES:
            raise self._too_large(what, resp.status, f"announces {announced} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise self._too_large(what, resp.status, f"sent more than {MAX_REPLY_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, what: str, status: int, detail: str) -> BackOfficeError:
        self.errors += 1
        return BackOfficeError(f"{what}: HTTP {status} reply {detail}; at most {MAX_REPLY_BYTES} bytes "
                               "are read (a back office should answer far less)", status)

    def _parse(self, what: str, status: int, ok: tuple[int, ...], raw: bytes) -> Any:
        if status not in ok:
            self.errors += 1
            hint = " (check the back-office token)" if status in (401, 403) else ""
            raise BackOfficeError(f"{what}: HTTP {status}{hint}: {raw[:200]!r}", status)
        try:
            value = json.loads(raw)
        except RecursionError:  # e.g. 50,000 '[': the parser's stack, not ours, gives out
            self.errors += 1
            raise BackOfficeError(f"{what}: HTTP {status} reply is nested too deeply to parse "
                                  f"({len(raw)} bytes): {raw[:80]!r}", status) from None
        except ValueError as err:  # not JSON, not UTF-8, or a number too long to convert
            self.errors += 1
            raise BackOfficeError(f"{what}: HTTP {status} reply is not JSON ({str(err)[:120]}): "
                                  f"{raw[:200]!r}", status) from None
        if not isinstance(value, dict):
            self.errors += 1
            raise BackOfficeError(f"{what}: reply is {type(value).__name__}, expected a JSON object", status)
        return value

    def _garbage(self, what: str, detail: str) -> BackOfficeError:
        self.errors += 1
        return BackOfficeError(f"back office {what}: {detail}")

    async def is_valid(self, session_id: str) -> bool:
        """True when the account behind `session_id` exists and is enabled."""
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"session_id must be a non-empty str, got {session_id!r}")
        path = f"/api/sessions/{quote(session_id, safe='')}/validity"
        reply = await self._request("GET", path, _VALIDITY_STATUSES)
        valid = reply.get("valid")
        if not isinstance(valid, bool):
            raise self._garbage(f"GET {path}", f"field 'valid' must be true/false, got {valid!r}")
        if reply.get("session_id") != session_id:
            raise self._garbage(f"GET {path}", f"reply is for session {reply.get('session_id')!r}")
        return valid

    async def validities(self, session_ids: list[str]) -> dict[str, bool]:
        """`is_valid` for many sessions in one request: {session_id: valid} for every id
        asked. A reply that leaves one out, or answers one twice, is garbage."""
        asked = list(dict.fromkeys(session_ids))
        if not asked or not all(isinstance(sid, str) and sid for sid in asked):
            raise ValueError(f"session_ids must be a non-empty list of non-empty str, got {session_ids!r:.120}")
        path = "/api/validity/batch"
        reply = await self._request("POST", path, (200,), {"session_ids": asked})
        sessions = reply.get("sessions")
        if not isinstance(sessions, list):
            raise self._garbage(f"POST {path}", f"field 'sessions' must be a list, got {str(sessions)[:80]}")
        answers: dict[str, bool] = {}
        for entry in sessions:
            sid = entry.get("session_id") if isinstance(entry, dict) else None
            valid = entry.get("valid") if isinstance(entry, dict) else None
            if not isinstance(sid, str) or not isinstance(valid, bool) or sid in answers:
                raise self._garbage(f"POST {path}", f"each of 'sessions' must be one session's "
                                                    f"{{session_id, valid: true/false}}, got {str(entry)[:80]}")
            answers[sid] = valid
        missing = [sid for sid in asked if sid not in answers]
        if missing or len(answers) != len(asked):
            raise self._garbage(f"POST {path}", f"reply answers {len(answers)} sessions for {len(asked)} asked"
                                                + (f"; missing {missing[:3]!r}" if missing else ""))
        return answers

    async def send_statuses(self, updates: list[StatusUpdate]) -> set[str]:
        """Deliver a batch in order; return the ids acknowledged (a subset of those sent)."""
        if not updates:
            return set()
        path = "/api/status/batch"
        reply = await self._request("POST", path, (200,), {"updates": [update_to_json(u) for u in updates]})
        acked = reply.get("acked")
        if not isinstance(acked, list) or not all(isinstance(a, str) for a in acked):
            raise self._garbage(f"POST {path}", f"field 'acked' must be a list of update ids, got {str(acked)[:80]}")
        return set(acked) & {u.update_id for u in updates}
