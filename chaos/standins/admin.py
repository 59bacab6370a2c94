"""Admin clients for the two stand-ins, used by test fixtures and the chaos runner.

Owns the HTTP calls to the admin ports (`urllib`, a timeout on every request, no HTTP
proxy ever). Calls are short and synchronous: the servers never wait on a WebSocket
client before answering, so calling them from async test code blocks only briefly.
Must not talk to the API/WebSocket ports (those are what the service uses).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class AdminError(RuntimeError):
    """An admin call failed; `status` is the HTTP status (None when nothing answered)."""

    def __init__(self, method: str, url: str, status: int | None, detail: str) -> None:
        super().__init__(f"{method} {url} failed: {'no answer' if status is None else f'HTTP {status}'}: {detail}")
        self.status = status
        self.detail = detail


class _AdminClient:
    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=self.timeout_s) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as err:
            raise AdminError(method, url, err.code, err.read().decode(errors="replace")) from None
        except (urllib.error.URLError, OSError) as err:
            raise AdminError(method, url, None, str(getattr(err, "reason", err))) from err
        return json.loads(text) if text.strip() else None

    def healthy(self) -> bool:
        return bool(self.request("GET", "/admin/health").get("ok"))

    def reset(self) -> Any:
        return self.request("POST", "/admin/reset")


def _quote(session_id: str) -> str:
    return urllib.parse.quote(session_id, safe="")


class WhatsAppAdmin(_AdminClient):
    """The WhatsApp stand-in's admin port. Codes are WhatsApp codes (401, 428, 440 …)."""

    def _session(self, method: str, session_id: str, action: str = "", body: Any = None) -> Any:
        suffix = f"/{action}" if action else ""
        return self.request(method, f"/admin/sessions/{_quote(session_id)}{suffix}", body)

    def close(self, session_id: str, code: int | None = None, *, reconnect_after_s: float | None = None) -> int:
        """Close the session's sockets (code None: a plain 1001 close); returns how many."""
        body: dict[str, Any] = {"code": code}
        if reconnect_after_s is not None:
            body["reconnect_after_s"] = reconnect_after_s
        return int(self._session("POST", session_id, "close", body)["closed"])

    def reject(self, session_id: str, code: int) -> None:
        self._session("PUT", session_id, "reject", {"code": code})

    def unreject(self, session_id: str) -> None:
        self._session("DELETE", session_id, "reject")

    def outage(self, code: int = 503, *, refusals: int | None = None) -> int:
        """Every session at once: close its sockets with `code` and refuse every hello with it
        until `end_outage()` or, with `refusals`, each session's next `refusals` hellos only;
        returns how many sockets were closed."""
        body: dict[str, Any] = {"code": code}
        if refusals is not None:
            body["refusals"] = refusals
        return int(self.request("PUT", "/admin/outage", body)["closed"])

    def refuse(self, session_ids: list[str], code: int = 503) -> int:
        """These sessions at once: close their sockets with `code`, refuse their hellos with it until
        `accept(session_ids)`; returns how many sockets were closed."""
        return int(self.request("PUT", "/admin/refusing", {"session_ids": list(session_ids), "code": code})["closed"])

    def accept(self, session_ids: list[str]) -> None:
        self.request("DELETE", "/admin/refusing", {"session_ids": list(session_ids)})

    def end_outage(self) -> None:
        self.request("DELETE", "/admin/outage")

    def replace(self, session_id: str) -> int:
        return int(self._session("POST", session_id, "replace")["closed"])

    def logout(self, session_id: str) -> int:
        return int(self._session("POST", session_id, "logout")["closed"])

    def set_credentials(self, session_id: str, credentials: str) -> None:
        self._session("PUT", session_id, "credentials", {"credentials": credentials})

    def clear_credentials(self, session_id: str) -> None:
        self._session("DELETE", session_id, "credentials")

    def garbage(self, session_id: str, payload: str = "not json", *, binary: bool = False) -> int:
        return int(self._session("POST", session_id, "garbage", {"payload": payload, "binary": binary})["sent"])

    def garbage_bytes(self, session_id: str, data: bytes) -> int:
        """Send raw bytes as one binary frame (e.g. not UTF-8)."""
        body = {"payload_b64": base64.b64encode(data).decode()}
        return int(self._session("POST", session_id, "garbage", body)["sent"])

    def mute(self, session_id: str) -> None:
        self._session("POST", session_id, "mute")

    def unmute(self, session_id: str) -> None:
        self._session("POST", session_id, "unmute")

    def slow_close(self, session_id: str, delay_s: float) -> None:
        """Answer (and count out) the session's client-initiated closes `delay_s` late."""
        self._session("PUT", session_id, "slow-close", {"delay_s": delay_s})

    def session(self, session_id: str) -> dict[str, Any]:
        return dict(self._session("GET", session_id))

    def sessions(self) -> dict[str, dict[str, Any]]:
        return dict(self.request("GET", "/admin/sessions"))

    def events(self, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        query = {"since": since} if limit is None else {"since": since, "limit": limit}
        return list(self.request("GET", "/admin/events?" + urllib.parse.urlencode(query)))

    def stats(self) -> dict[str, Any]:
        return dict(self.request("GET", "/admin/stats"))

    def configure(self, *, hello_timeout_s: float) -> None:
        self.request("POST", "/admin/config", {"hello_timeout_s": hello_timeout_s})


class BackOfficeAdmin(_AdminClient):
    """The back-office stand-in's admin port."""

    def add_account(self, session_id: str, *, active: bool = True) -> None:
        self.request("POST", "/admin/accounts", {"session_id": session_id, "active": active})

    def add_accounts(self, session_ids: list[str], *, active: bool = True) -> None:
        self.request("POST", "/admin/accounts", {"session_ids": list(session_ids), "active": active})

    def delete_account(self, session_id: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/admin/accounts/{_quote(session_id)}"))

    def deactivate(self, session_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/admin/accounts/{_quote(session_id)}/deactivate"))

    def activate(self, session_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/admin/accounts/{_quote(session_id)}/activate"))

    def accounts(self) -> dict[str, Any]:
        return dict(self.request("GET", "/admin/accounts"))

    def updates(self) -> dict[str, Any]:
        return dict(self.request("GET", "/admin/updates"))

    def refuse_sessions(self, session_ids: list[str]) -> None:
        """Refuse (400, naming the update) every status batch holding an update of these sessions."""
        self.request("PUT", "/admin/refused-sessions", {"session_ids": list(session_ids)})

    def use_redis(self, url: str | None, cluster_shards: int | None = None) -> dict[str, Any]:
        """Write `inactive` to this Redis from now on (None: to none), at the keys the service's
        layout names there (`cluster_shards` tagged shards on a `redis+cluster://` URL)."""
        body: dict[str, Any] = {"url": url}
        if cluster_shards is not None:
            body["cluster_shards"] = cluster_shards
        return dict(self.request("PUT", "/admin/redis", body))

    def set_mode(self, mode: str, delay_s: float | None = None, **knobs: Any) -> dict[str, Any]:
        """Set how the API answers (`ok`, `error500`, `garbage`, `slow` or a hostile mode of
        `chaos.standins.hostile.Mode`); `knobs`: `depth`, `digits`, `size_bytes`,
        `chunk_bytes`, `endpoints` (a list of `validity`, `validity_batch`, `status_batch`)."""
        body: dict[str, Any] = {"mode": mode, **knobs}
        if delay_s is not None:
            body["delay_s"] = delay_s
        return dict(self.request("POST", "/admin/mode", body))
