"""Prometheus metrics of the service and the loopback HTTP server for /metrics and /healthz.

Owns metric names and the aiohttp app that serves them. Each `ServiceMetrics` has its
own registry, so several gateways in one test process never collide. Must not decide
anything about reconnects: the runtime reports what happened, this module counts it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.core import Status

BACKOFF_BUCKETS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2, 4, 8, 16, 32, 64, 3600)
LATENESS_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
PAUSE_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
HOST = "127.0.0.1"


class ServiceMetrics:
    """Every counter, gauge and histogram the service exports (prefix `reconnect_lab_`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.attempts = Counter("reconnect_lab_reconnect_attempts", "reconnect attempts (attempt >= 1) by outcome",
                                ["outcome"], registry=r)
        self.sessions = Gauge("reconnect_lab_sessions", "sessions run by this process, by status", ["status"], registry=r)
        self.backoff = Histogram("reconnect_lab_backoff_seconds", "scheduled reconnect delays",
                                 buckets=BACKOFF_BUCKETS_S, registry=r)
        self.lateness = Histogram("reconnect_lab_reconnect_lateness_seconds",
                                  "how late a reconnect timer fired against its scheduled time",
                                  buckets=LATENESS_BUCKETS_S, registry=r)
        self.give_ups = Counter("reconnect_lab_give_ups", "sessions marked inactive after max attempts", registry=r)
        self.terminal = Counter("reconnect_lab_terminal_closes", "closes with a terminal code", ["code"], registry=r)
        self.cancelled = Counter("reconnect_lab_reconnects_cancelled", "reconnects cancelled because validation failed",
                                 registry=r)
        self.closes = Counter("reconnect_lab_session_closes", "link closes seen, by code", ["code"], registry=r)
        self.illegal = Counter("reconnect_lab_illegal_transitions", "events the core rejected as illegal",
                               ["event"], registry=r)
        self.malformed = Counter("reconnect_lab_malformed_input", "rejected malformed input, by source",
                                 ["source"], registry=r)
        self.fenced = Counter("reconnect_lab_fenced_writes", "ownership writes Redis refused because the "
                              "session's lease had moved to another process (B9), by write", ["write"], registry=r)
        self.command_errors = Counter("reconnect_lab_command_errors", "commands whose I/O failed", ["command"], registry=r)
        self.outbox_retries = Gauge("reconnect_lab_outbox_failed_batches", "back-office batches that failed "
                                    "and were retried, since start", registry=r)
        self.redis_round_trips = Gauge("reconnect_lab_redis_round_trips", "Redis round trips since start "
                                       "(status store + leases + outbox)", registry=r)
        self.backoffice_requests = Gauge("reconnect_lab_backoffice_requests", "HTTP requests to the back office "
                                         "since start, by call", ["call"], registry=r)
        self.backoffice_errors = Gauge("reconnect_lab_backoffice_errors", "back-office calls that failed since "
                                       "start (refused, timed out, 4xx/5xx, or a reply too large, too deep, "
                                       "cut short or not the shape asked for)", registry=r)
        self.validity_backoffice = Gauge("reconnect_lab_validity_backoffice", "reconnect validations (R4) whose "
                                         "back-office question ended so, since start: vetoed (invalid wins), "
                                         "unreachable (Redis's answer stood), budget_expired (no answer "
                                         "within the budget; also counted unreachable)", ["outcome"], registry=r)
        self.outbox_dead = Gauge("reconnect_lab_outbox_dead_letters", "outbox entries moved to the dead stream "
                                 "since start, by reason (malformed: undecodable; refused: the back office "
                                 "refuses it)", ["reason"], registry=r)
        self.leases = Gauge("reconnect_lab_leases_held", "session leases held by this process", registry=r)
        self.outbox_depth = Gauge("reconnect_lab_outbox_depth", "status updates waiting for the back office", registry=r)
        self.outbox_age = Gauge("reconnect_lab_outbox_oldest_age_seconds", "age of the oldest unacknowledged update",
                                registry=r)
        self.loop_lag = Histogram("reconnect_lab_event_loop_lag_seconds", "how late a loop timer probed every "
                                  "50 ms ran (what delays every callback, reconnect timers included)",
                                  buckets=PAUSE_BUCKETS_S, registry=r)
        self.gc_pause = Histogram("reconnect_lab_gc_pause_seconds", "cyclic garbage-collector pauses, by generation",
                                  ["generation"], buckets=PAUSE_BUCKETS_S, registry=r)
        self._gc_pause = {generation: self.gc_pause.labels(generation=str(generation)) for generation in (0, 1, 2)}
        # children of labelled metrics on the storm path, looked up once (`labels()` is not free)
        self._by_status = {status: self.sessions.labels(status=status.value) for status in Status}
        for child in self._by_status.values():
            child.set(0)
        self._attempts = {outcome: self.attempts.labels(outcome=outcome) for outcome in ("opened", "failed")}
        self._closes: dict[str, Any] = {}

    def status_changed(self, old: Status | None, new: Status | None) -> None:
        """Move one session between status gauges (None: not counted)."""
        if old is new:
            return
        if old is not None:
            self._by_status[old].dec()
        if new is not None:
            self._by_status[new].inc()

    def count_attempt(self, outcome: str) -> None:
        """One reconnect attempt (attempt >= 1) ended: `opened` or `failed`."""
        child = self._attempts.get(outcome)
        if child is None:
            raise ValueError(f"attempt outcome must be 'opened' or 'failed', got {outcome!r}")
        child.inc()

    def count_close(self, code: object) -> None:
        """One link close, by its code (any value; labelled by its text)."""
        label = str(code)
        child = self._closes.get(label)
        if child is None:
            child = self._closes[label] = self.closes.labels(code=label)
        child.inc()

    def observe_gc_pause(self, generation: int, pause_s: float) -> None:
        child = self._gc_pause.get(generation)
        if child is None:
            child = self._gc_pause[generation] = self.gc_pause.labels(generation=str(generation))
        child.observe(pause_s)

    def count_malformed(self, source: str) -> None:
        self.malformed.labels(source=source).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


Health = Callable[[], Awaitable[dict[str, Any]]]


class MetricsServer:
    """aiohttp on 127.0.0.1: GET /metrics (Prometheus text), GET /healthz (JSON, 200 or 503)."""

    def __init__(self, metrics: ServiceMetrics, health: Health, port: int = 0,
                 before_scrape: Callable[[], Awaitable[None]] | None = None) -> None:
        self.metrics = metrics
        self.health = health
        self.requested_port = port
        self.before_scrape = before_scrape
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.requested_port)
        await site.start()
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.requested_port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.before_scrape is not None:
            try:
                await self.before_scrape()
            except Exception:  # noqa: BLE001 - a failed refresh must not break the scrape
                pass
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            report = await self.health()
        except Exception as err:  # noqa: BLE001 - health says what failed instead of raising
            report = {"ok": False, "error": type(err).__name__}
        return web.Response(text=json.dumps(report), status=200 if report.get("ok") else 503,
                            content_type="application/json")
