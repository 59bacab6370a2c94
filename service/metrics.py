"""Prometheus metrics of the service and the loopback HTTP server for /metrics and /healthz.

Owns metric names and the aiohttp app that serves them. Each `ServiceMetrics` has its
own registry, so several gateways in one test process never collide. What a storm moves for
every session (statuses, attempts, closes, backoff and lateness) is kept as plain numbers
that a scrape reads (`Tally`, `PlainHistogram`): prometheus-client's children take a lock per
bump (~1 us each, ~10 bumps a session in a storm). Those are moved from the event loop's
thread only. Must not decide anything about reconnects: the runtime reports what happened,
this module counts it.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from service.core import Status

BACKOFF_BUCKETS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2, 4, 8, 16, 32, 64, 3600)
LATENESS_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
PAUSE_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
HOST = "127.0.0.1"


class Tally:
    """A counter or gauge with one label, kept as plain numbers: `counts[label value]`. A scrape
    reads it as prometheus-client's own metric of that name (with `_created` for a counter)."""

    def __init__(self, kind: str, name: str, documentation: str, label: str, registry: CollectorRegistry,
                 values: Iterable[str] = ()) -> None:
        self.kind, self.name, self.documentation, self.label = kind, name, documentation, label
        self.counts: dict[str, float] = {}
        self._created: dict[str, float] = {}
        for value in values:
            self.add(value, 0)
        registry.register(self)

    def add(self, value: str, amount: float) -> None:
        if value not in self.counts:
            self.counts[value] = 0
            self._created[value] = time.time()
        self.counts[value] += amount

    def collect(self) -> list[Metric]:
        if self.kind == "counter":
            counter = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
            for value, count in list(self.counts.items()):
                counter.add_metric([value], count, created=self._created[value])
            return [counter]
        gauge = GaugeMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in list(self.counts.items()):
            gauge.add_metric([value], count)
        return [gauge]


class PlainHistogram:
    """`observe(value)` like prometheus-client's `Histogram` (no labels), kept as plain numbers."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float], registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = sorted(float(bound) for bound in buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0
        self._created = time.time()
        registry.register(self)

    def observe(self, value: float) -> None:
        index = bisect_left(self.bounds, value)  # `le`: a value on a bound is in its bucket
        if value == value:  # NaN is in no bucket (its sum takes it), as in prometheus-client
            self.counts[index] += 1
        self.sum += value

    def collect(self) -> list[Metric]:
        histogram = HistogramMetricFamily(self.name, self.documentation)
        cumulative, buckets = 0, []
        for bound, count in zip([*self.bounds, float("inf")], self.counts):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        histogram.add_metric([], buckets, self.sum)
        histogram.samples.append(Sample(self.name + "_created", {}, self._created))
        return [histogram]


class ServiceMetrics:
    """Every counter, gauge and histogram the service exports (prefix `reconnect_lab_`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.attempts = Tally("counter", "reconnect_lab_reconnect_attempts", "reconnect attempts (attempt >= 1) "
                              "by outcome", "outcome", r, ("opened", "failed"))
        self.sessions = Tally("gauge", "reconnect_lab_sessions", "sessions run by this process, by status", "status",
                              r, (status.value for status in Status))
        self.backoff = PlainHistogram("reconnect_lab_backoff_seconds", "scheduled reconnect delays",
                                      BACKOFF_BUCKETS_S, r)
        self.lateness = PlainHistogram("reconnect_lab_reconnect_lateness_seconds",
                                       "how late a reconnect timer fired against its scheduled time",
                                       LATENESS_BUCKETS_S, r)
        self.give_ups = Counter("reconnect_lab_give_ups", "sessions marked inactive after max attempts", registry=r)
        self.terminal = Counter("reconnect_lab_terminal_closes", "closes with a terminal code", ["code"], registry=r)
        self.cancelled = Counter("reconnect_lab_reconnects_cancelled", "reconnects cancelled because validation failed",
                                 registry=r)
        self.closes = Tally("counter", "reconnect_lab_session_closes", "link closes seen, by code", "code", r)
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
        self.validation_slots = Gauge("reconnect_lab_validation_slots", "validations let in flight at once "
                                      "now (adapts between a floor and max_inflight)", registry=r)
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
        self._by_status = self.sessions.counts
        self._status_text = {status: status.value for status in Status}

    def status_changed(self, old: Status | None, new: Status | None) -> None:
        """Move one session between status gauges (None: not counted)."""
        if old is new:
            return
        if old is not None:
            self._by_status[self._status_text[old]] -= 1
        if new is not None:
            self._by_status[self._status_text[new]] += 1

    def count_attempt(self, outcome: str) -> None:
        """One reconnect attempt (attempt >= 1) ended: `opened` or `failed`."""
        if outcome not in ("opened", "failed"):
            raise ValueError(f"attempt outcome must be 'opened' or 'failed', got {outcome!r}")
        self.attempts.counts[outcome] += 1

    def count_close(self, code: object) -> None:
        """One link close, by its code (any value; labelled by its text)."""
        label = code if type(code) is str else str(code)
        counts = self.closes.counts
        if label in counts:
            counts[label] += 1
        else:
            self.closes.add(label, 1)

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
