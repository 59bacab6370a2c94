"""The back-office stand-in (Laravel in the original): accounts, session validity and
the batch status endpoint on an API port, plus an admin port to drive it.

Owns accounts, the ordered record of status updates (de-duplicated by `update_id`),
failure modes (error500 / garbage / slow, and the hostile replies of `hostile.py`:
deep nesting, huge numbers, wrong types, truncated, oversize, padded, never-ending and
trickling bodies, per endpoint) and, given a Redis URL, the shared-Redis
write a real back office makes when an account is deleted or deactivated, at the key the
service's layout names (`service.keys.KeyLayout`: the single names, or a cluster's tagged
shards; `PUT /admin/redis` points it at another Redis).
Must not log the bearer token or accept a request without it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from chaos.standins import hostile
from chaos.standins.hostile import HostileParams, Mode
from chaos.standins.webutil import BadRequest, json_body, json_response
from service.config_checks import check_redis_url
from service.core import Priority, Status
from service.keys import DEFAULT_CLUSTER_SHARDS, KeyLayout
from service.ports import Secret
from service.redis_connect import RedisOptions, layout_for_url, open_client, parse_redis_url

log = logging.getLogger(__name__)

UPDATE_FIELDS = ("update_id", "session_id", "status", "priority", "seq", "at_s")
REDIS_TIMEOUT_S = 2.0


@dataclass
class BackOfficeState:
    accounts: dict[str, bool] = field(default_factory=dict)  # session id -> active
    deleted: set[str] = field(default_factory=set)
    updates: list[dict[str, Any]] = field(default_factory=list)
    seen_update_ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    batches: int = 0
    validity_batches: int = 0
    rejected_auth: int = 0
    mode: Mode = Mode.OK
    params: HostileParams = field(default_factory=HostileParams)
    refused_sessions: frozenset[str] = frozenset()  # a batch with any update of these is refused (400)
    hostile_replies: int = 0  # replies the mode spoiled (error500, garbage and the hostile ones)

    def validity(self, session_id: str) -> dict[str, Any]:
        if session_id in self.accounts:
            active = self.accounts[session_id]
            status = "active" if active else "inactive"
        else:
            active, status = False, "deleted" if session_id in self.deleted else "unknown"
        return {"session_id": session_id, "valid": active, "status": status}

    def record_batch(self, updates: list[dict[str, Any]]) -> list[str]:
        self.batches += 1
        received_at = time.time()
        for update in updates:
            if update["update_id"] in self.seen_update_ids:
                self.duplicates += 1
                continue
            self.seen_update_ids.add(update["update_id"])
            self.updates.append({**update, "batch": self.batches, "received_at": received_at})
        return [update["update_id"] for update in updates]


MAX_VALIDITY_BATCH = 10_000


def validate_validity_batch(body: dict[str, Any]) -> list[str]:
    """The session ids of a validity batch, checked; raise `BadRequest` naming the problem."""
    ids = body.get("session_ids")
    if not isinstance(ids, list) or not ids:
        raise BadRequest(f"'session_ids' must be a non-empty list of session ids, got {str(ids)[:80]}")
    if len(ids) > MAX_VALIDITY_BATCH:
        raise BadRequest(f"'session_ids' holds {len(ids)} ids; at most {MAX_VALIDITY_BATCH} per request")
    for index, sid in enumerate(ids):
        if not isinstance(sid, str) or not sid:
            raise BadRequest(f"session_ids[{index}] must be a non-empty string, got {sid!r}")
    return list(dict.fromkeys(ids))


def validate_batch(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch's updates, each checked; raise `BadRequest` naming the first problem."""
    updates = body.get("updates")
    if not isinstance(updates, list):
        raise BadRequest(f"'updates' must be a list of update objects, got {type(updates).__name__}")
    return [_validate_update(i, update) for i, update in enumerate(updates)]


def _validate_update(index: int, update: object) -> dict[str, Any]:
    where = f"updates[{index}]"
    if not isinstance(update, dict):
        raise BadRequest(f"{where} must be an object, got {type(update).__name__}")
    missing = [name for name in UPDATE_FIELDS if name not in update]
    if missing:
        raise BadRequest(f"{where} is missing {missing}")
    for name in ("update_id", "session_id"):
        if not isinstance(update[name], str) or not update[name]:
            raise BadRequest(f"{where}.{name} must be a non-empty string, got {update[name]!r}")
    for name, kind in (("status", Status), ("priority", Priority)):
        if update[name] not in {item.value for item in kind}:
            raise BadRequest(f"{where}.{name} must be one of {[item.value for item in kind]}, got {update[name]!r}")
    seq, at_s = update["seq"], update["at_s"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise BadRequest(f"{where}.seq must be an integer >= 0, got {seq!r}")
    if isinstance(at_s, bool) or not isinstance(at_s, (int, float)):
        raise BadRequest(f"{where}.at_s must be a number (epoch seconds), got {at_s!r}")
    return {name: update[name] for name in UPDATE_FIELDS}


class BackOfficeStandin:
    """`api_app()` needs `Authorization: Bearer <token>`; `admin_app()` drives the state."""

    def __init__(self, token: Secret, *, redis_url: str | None = None,
                 cluster_shards: int = DEFAULT_CLUSTER_SHARDS) -> None:
        if not token:
            raise ValueError("the back-office token must be a non-empty string")
        self._token = Secret(token)
        self._redis_url = redis_url
        self._layout: KeyLayout = layout_for_url(redis_url or "", cluster_shards)
        self._start_redis = (redis_url, self._layout)  # what `/admin/reset` points back at
        self._redis: Any = None
        self.state = BackOfficeState()

    # -- apps -------------------------------------------------------------------

    def api_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_and_mode])
        app.add_routes([
            web.get("/api/sessions/{session_id}/validity", self._validity),
            web.post("/api/validity/batch", self._validity_batch),
            web.post("/api/status/batch", self._batch),
        ])
        return app

    def admin_app(self) -> web.Application:
        app = web.Application()
        app.add_routes([
            web.get("/admin/health", self._health),
            web.get("/admin/accounts", self._list_accounts),
            web.post("/admin/accounts", self._add_accounts),
            web.delete("/admin/accounts/{session_id}", self._delete_account),
            web.post("/admin/accounts/{session_id}/deactivate", self._deactivate),
            web.post("/admin/accounts/{session_id}/activate", self._activate),
            web.get("/admin/updates", self._updates),
            web.post("/admin/mode", self._set_mode),
            web.put("/admin/refused-sessions", self._set_refused),
            web.put("/admin/redis", self._set_redis),
            web.post("/admin/reset", self._reset),
        ])
        return app

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # -- API ----------------------------------------------------------------------

    @web.middleware
    async def _auth_and_mode(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self._authorised(request.headers.get("Authorization", "")):
            self.state.rejected_auth += 1
            return json_response({"error": "missing or wrong bearer token"}, status=401)
        mode, params = self.state.mode, self.state.params
        endpoint = hostile.endpoint_of(request)
        if mode is Mode.OK or endpoint not in params.endpoints:
            return await handler(request)
        if mode in hostile.WITHOUT_HANDLER:
            self.state.hostile_replies += 1
            return await self._refuse(request, mode, endpoint)
        response = await handler(request)  # state changes on arrival, as a real server's would
        if mode is Mode.SLOW:
            await asyncio.sleep(params.delay_s)
            return response
        if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
            return response
        self.state.hostile_replies += 1
        return await hostile.stream_reply(request, mode, params, response.body, response.status)

    async def _refuse(self, request: web.Request, mode: Mode, endpoint: str) -> web.Response:
        if mode is Mode.ERROR500:
            return json_response({"error": "back office stand-in in mode error500"}, status=500)
        if mode is Mode.GARBAGE:
            return web.Response(text="<html><body>502 Bad Gateway (stand-in garbage)</body></html>",
                                content_type="text/html")
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            body = None
        reply = hostile.refused_body(mode, self.state.params, endpoint, request, body, self.state.hostile_replies)
        return web.Response(body=reply, content_type="application/json")

    def _authorised(self, header: str) -> bool:
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), self._token.reveal().encode())

    async def _validity(self, request: web.Request) -> web.Response:
        return json_response(self.state.validity(request.match_info["session_id"]))

    async def _validity_batch(self, request: web.Request) -> web.Response:
        session_ids = validate_validity_batch(await json_body(request))
        self.state.validity_batches += 1
        return json_response({"sessions": [self.state.validity(sid) for sid in session_ids]})

    async def _batch(self, request: web.Request) -> web.Response:
        updates = validate_batch(await json_body(request))
        for index, update in enumerate(updates):
            if update["session_id"] in self.state.refused_sessions:
                raise BadRequest(f"updates[{index}].session_id {update['session_id']!r} is refused: "
                                 "the back office takes no updates for it")
        return json_response({"acked": self.state.record_batch(updates)})

    # -- admin --------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return json_response({"ok": True, "redis": self._redis_url is not None})

    async def _list_accounts(self, request: web.Request) -> web.Response:
        return json_response({"accounts": {sid: {"active": active} for sid, active in self.state.accounts.items()},
                              "deleted": sorted(self.state.deleted)})

    async def _add_accounts(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        active = body.get("active", True)
        if not isinstance(active, bool):
            raise BadRequest(f"'active' must be true or false, got {active!r}")
        if "session_ids" in body:
            session_ids = body["session_ids"]
            if not isinstance(session_ids, list) or not all(isinstance(s, str) and s for s in session_ids):
                raise BadRequest("'session_ids' must be a list of non-empty strings")
        elif isinstance(body.get("session_id"), str) and body["session_id"]:
            session_ids = [body["session_id"]]
        else:
            raise BadRequest("give 'session_id' (a non-empty string) or 'session_ids' (a list of them)")
        for session_id in session_ids:
            self.state.accounts[session_id] = active
            self.state.deleted.discard(session_id)
        return json_response({"created": len(session_ids)}, status=201)

    async def _delete_account(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        if self.state.accounts.pop(session_id, None) is None:
            return json_response({"error": f"no account {session_id!r}"}, status=404)
        self.state.deleted.add(session_id)
        return await self._mark_inactive_in_redis(session_id, {"deleted": session_id})

    async def _deactivate(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        if session_id not in self.state.accounts:
            return json_response({"error": f"no account {session_id!r}"}, status=404)
        self.state.accounts[session_id] = False
        return await self._mark_inactive_in_redis(session_id, {"deactivated": session_id})

    async def _activate(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        if session_id not in self.state.accounts:
            return json_response({"error": f"no account {session_id!r}"}, status=404)
        self.state.accounts[session_id] = True
        return json_response({"activated": session_id})

    async def _mark_inactive_in_redis(self, session_id: str, answer: dict[str, Any]) -> web.Response:
        """The real back office shares Redis: it writes `inactive` itself."""
        if self._redis_url is None:
            return json_response({**answer, "redis": None})
        try:
            await self._redis_client().set(self._layout.status_key(session_id), Status.INACTIVE.value)
        except Exception as exc:  # noqa: BLE001 - report it; the account change stands
            log.warning("back-office stand-in: Redis write for %s failed: %s", session_id, type(exc).__name__)
            return json_response({**answer, "error": f"account changed but the Redis write failed: {exc}"},
                                 status=503)
        return json_response({**answer, "redis": Status.INACTIVE.value})

    def _redis_client(self) -> Any:
        target = parse_redis_url(self._redis_url or "")
        if self._redis is None and target.kind != "single":  # Sentinel or Cluster: as the service opens it
            options = RedisOptions(max_connections=8, pool_wait_s=REDIS_TIMEOUT_S, timeout_s=REDIS_TIMEOUT_S)
            self._redis = open_client(target, options)
        if self._redis is None:
            import redis.asyncio  # only when a Redis URL was given

            from redis.asyncio.retry import Retry
            from redis.backoff import ExponentialBackoff

            # a Redis restarted under us leaves dead pooled connections: retry on a fresh one
            self._redis = redis.asyncio.Redis.from_url(
                self._redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
                retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError])
        return self._redis

    async def _updates(self, request: web.Request) -> web.Response:
        return json_response({"updates": self.state.updates, "duplicates": self.state.duplicates,
                              "batches": self.state.batches, "rejected_auth": self.state.rejected_auth,
                              "validity_batches": self.state.validity_batches,
                              "hostile_replies": self.state.hostile_replies})

    async def _set_mode(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        try:
            mode = Mode(body.get("mode"))
        except ValueError:
            raise BadRequest(f"'mode' must be one of {[m.value for m in Mode]}, got {body.get('mode')!r}") from None
        params = hostile.parse_params(mode, body)
        self.state.mode, self.state.params = mode, params
        log.info("back-office stand-in mode: %s (delay %.3fs, endpoints %s)", mode.value, params.delay_s,
                 ",".join(sorted(params.endpoints)))
        return json_response({"mode": mode.value, "delay_s": params.delay_s, "depth": params.depth,
                              "digits": params.digits, "size_bytes": params.size_bytes,
                              "chunk_bytes": params.chunk_bytes, "endpoints": sorted(params.endpoints)})

    async def _set_refused(self, request: web.Request) -> web.Response:
        """`{"session_ids": [...]}`: refuse (400) every status batch holding an update of these."""
        ids = (await json_body(request)).get("session_ids")
        if not isinstance(ids, list) or not all(isinstance(sid, str) for sid in ids):
            raise BadRequest(f"'session_ids' must be a list of strings, got {str(ids)[:80]}")
        self.state.refused_sessions = frozenset(ids)
        return json_response({"refused_sessions": sorted(ids)})

    async def _set_redis(self, request: web.Request) -> web.Response:
        """`{"url": ..., "cluster_shards": n}`: write to this Redis from now on, in its layout
        (`n` tagged shards on a cluster, default the service's); `{"url": null}`: to none."""
        body = await json_body(request)
        url, shards = body.get("url"), body.get("cluster_shards", DEFAULT_CLUSTER_SHARDS)
        if url is not None and not isinstance(url, str):
            raise BadRequest(f"'url' must be a Redis URL string or null, got {type(url).__name__}")
        try:
            if url is not None:
                check_redis_url(url)
            layout = layout_for_url(url or "", shards)
        except ValueError as exc:  # names the problem, never the password
            raise BadRequest(str(exc)) from None
        await self._use_redis(url, layout)
        return json_response({"redis": url is not None, "cluster_shards": layout.shards})

    async def _use_redis(self, url: str | None, layout: KeyLayout) -> None:
        if (url, layout) != (self._redis_url, self._layout):
            await self.aclose()
            self._redis_url, self._layout = url, layout

    async def _reset(self, request: web.Request) -> web.Response:
        self.state = BackOfficeState()
        await self._use_redis(*self._start_redis)
        return json_response({"reset": True})
