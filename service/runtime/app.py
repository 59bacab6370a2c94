"""Assembling the service from `Settings`: Redis, back office, store, outbox, leases,
transport, metrics server, timeline and the gateway — and taking it apart again.

Owns construction order and teardown order (stop sessions, release leases, flush the
outbox, then close clients). Must not make reconnect decisions or parse settings.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from service.backoffice import HttpBackOffice
from service.config import Settings, redact_url
from service.due_work import NO_DUE_WORK, DueWork
from service.errors import ConfigError, StartupError
from service.lease import RedisLeases
from service.logging import get_logger
from service.metrics import MetricsServer, ServiceMetrics
from service.redis_outbox import RedisOutbox
from service.redis_connect import RedisOptions, open_client, parse_redis_url
from service.ports import BackOffice, Transport
from service.redis_scripts import load_scripts
from service.retry import RetryPolicy
from service.runtime import health
from service.runtime.context import RunnerContext
from service.runtime.gateway import Gateway
from service.runtime.gc_pacing import GcPacer
from service.runtime.loop_watch import GcPauses, LoopLagProbe
from service.runtime.sources import make_source
from service.runtime.timeline import TimelineWriter
from service.runtime.drivers import ReconnectTimers
from service.store import RedisStatusStore, ValidityCache
from service.validity import ValidityChain
from service.validity_batch import BatchedValidity

REDIS_MAX_CONNECTIONS = 64
LEASE_MAX_CONNECTIONS = 4
REDIS_TIMEOUT_S = 5.0
POOL_WAIT_S = 60.0  # waiting for a free connection is queueing behind our own work, not a fault


def make_transport(settings: Settings, keepalive_interval_s: float, keepalive_misses: int,
                   due_work: DueWork = NO_DUE_WORK) -> Transport:
    """The WhatsApp transport the settings name, handed `due_work` (`service.due_work`): its
    socket callbacks hand due reconnect timers on."""
    if settings.transport == "wire":
        from service.transports.wire import WireTransport
        return WireTransport(settings.whatsapp_url, keepalive_interval_s=keepalive_interval_s,
                             keepalive_misses=keepalive_misses, due_work=due_work)
    try:
        from service.transports import neonize_transport  # type: ignore[attr-defined]
    except ImportError as err:
        raise ConfigError(f"setting 'transport' = 'neonize' but the neonize transport cannot load: {err}") from None
    build = getattr(neonize_transport, "build_transport", None)
    if build is None:
        raise ConfigError("setting 'transport' = 'neonize': service.transports.neonize_transport has no "
                          "build_transport(settings, keepalive_interval_s, keepalive_misses, *, due_work)")
    return build(settings, keepalive_interval_s, keepalive_misses, due_work=due_work)


@dataclass
class Service:
    """Every running part of one service process."""

    settings: Settings
    redis: aioredis.Redis
    backoffice: HttpBackOffice
    store: RedisStatusStore
    validity: ValidityChain
    outbox: RedisOutbox
    lease: RedisLeases
    transport: Transport
    metrics: ServiceMetrics
    timeline: TimelineWriter
    gateway: Gateway
    server: MetricsServer
    log: Any
    extra: dict[str, Any] = field(default_factory=dict)
    gc_pacer: GcPacer = field(default_factory=lambda: GcPacer(lambda: None))
    watches: tuple[Any, ...] = ()  # loop-lag and GC-pause probes (`loop_watch`)
    health_bounds: health.HealthBounds = field(default_factory=lambda: health.HealthBounds(3600.0, 3600.0))
    _redis_malformed_seen: int = 0

    async def refresh_metrics(self) -> None:
        """Gauges that are read, not counted: outbox depth/age, per-link malformed frames."""
        self.metrics.outbox_depth.set(await self.outbox.depth())
        self.metrics.outbox_age.set(await self.outbox.oldest_age_s())
        self.gateway.sync_link_counters()
        redis_malformed = self.store.malformed + self.outbox.malformed + self.lease.malformed
        if redis_malformed > self._redis_malformed_seen:
            self.metrics.malformed.labels(source="redis").inc(redis_malformed - self._redis_malformed_seen)
            self._redis_malformed_seen = redis_malformed
        self.metrics.validation_slots.set(self.gateway.ctx.validation_slot().limit)
        self.metrics.outbox_retries.set(self.outbox.retries)
        for reason, count in self.outbox.dead.counts.items():
            self.metrics.outbox_dead.labels(reason=reason).set(count)
        self.metrics.redis_round_trips.set(self.store.round_trips + self.lease.round_trips
                                           + self.gateway.renewer.round_trips + self.outbox.round_trips)
        requests = self.backoffice.requests
        self.metrics.backoffice_requests.labels(call="status_batch_answered").set(self.outbox.sent_batches)
        self.metrics.backoffice_requests.labels(call="all").set(requests)
        self.metrics.backoffice_errors.set(self.backoffice.errors)
        for outcome, count in (("vetoed", self.validity.backoffice_vetoes),
                               ("unreachable", self.validity.backoffice_unreachable),
                               ("budget_expired", self.validity.backoffice_budget_expired)):
            self.metrics.validity_backoffice.labels(outcome=outcome).set(count)

    async def health(self) -> dict[str, Any]:
        """Running, Redis answers, no session stuck, delivery not stalled (`runtime.health`)."""
        report = self.gateway.health()
        report["reasons"] = [] if report["ok"] else ["stopping"]
        outbox_age_s = 0.0
        try:
            await asyncio.wait_for(self.redis.ping(), 1.0)
            report["redis"] = "ok"
            outbox_age_s = await asyncio.wait_for(self.outbox.oldest_age_s(), 1.0)
        except Exception as err:  # noqa: BLE001 - health reports, never raises
            report["redis"] = f"error: {type(err).__name__}"
            report["reasons"].append(f"redis: {type(err).__name__}")
            report["ok"] = False
        report["outbox"] = self.outbox.stats()
        stuck = health.stuck_sessions(list(self.gateway.runners.values()), asyncio.get_running_loop().time(),
                                      self.health_bounds.stuck_after_s)
        return health.judge(report, stuck=stuck, bounds=self.health_bounds, outbox_age_s=outbox_age_s,
                            status_reply_age_s=health.reply_age_s(self.backoffice.last_reply_at))

    async def stop(self) -> None:
        await self.gateway.stop(self.settings.shutdown_timeout_s)
        await self.server.stop()
        try:
            await asyncio.wait_for(self.transport.aclose(), self.settings.shutdown_timeout_s)
        except Exception as err:  # noqa: BLE001 - shutting down: say it and go on
            self.log.warning("transport_close_failed", error=repr(err))
        if isinstance(self.validity.backoffice, BatchedValidity):
            await self.validity.backoffice.aclose()
        await self.backoffice.aclose()
        await self.gateway.renewer.redis.aclose()
        await self.store.aclose()
        await self.redis.aclose()
        self.timeline.close()
        self.gc_pacer.stop()
        for watch in self.watches:
            watch.stop()


async def _close_all(*clients: Any) -> None:
    for client in clients:
        await client.aclose()


def _open_timeline(settings: Settings) -> TimelineWriter:
    try:
        return TimelineWriter(settings.timeline_path)
    except OSError as err:
        raise ConfigError(f"setting 'timeline_path' = {str(settings.timeline_path)[:200]!r}: cannot open it for "
                          f"appending: {err.strerror or type(err).__name__}") from None


async def _start_server(service: Service, lease_redis: aioredis.Redis) -> int:
    """Listen for /metrics and /healthz; a port in use is a bad `metrics_port` (clients closed)."""
    try:
        return await service.server.start()
    except OSError as err:
        await service.server.stop()
        await _close_all(service.backoffice, lease_redis, service.redis)
        service.timeline.close()
        raise ConfigError(f"setting 'metrics_port' = {service.settings.metrics_port}: cannot listen on "
                          f"127.0.0.1:{service.settings.metrics_port}: {err.strerror or type(err).__name__} "
                          f"(another process holds it? 0 picks a free port)") from None


def redis_client(settings: Settings, max_connections: int) -> aioredis.Redis:
    """A client with its own pool: one server, the primary Sentinel names (followed across failovers), or a cluster."""
    return open_client(parse_redis_url(settings.redis_url.reveal()), RedisOptions(
        max_connections=max_connections, pool_wait_s=POOL_WAIT_S, timeout_s=REDIS_TIMEOUT_S,
        replica_waits=settings.redis_replica_waits, wait_timeout_ms=settings.redis_wait_timeout_ms))


def _redis_bound_s(settings: Settings) -> float:
    """The longest one Redis request may take: its socket timeout, then its wait for replicas."""
    waits_s = settings.redis_wait_timeout_ms / 1000 if settings.redis_replica_waits else 0.0
    return REDIS_TIMEOUT_S + waits_s


async def build_service(settings: Settings, *, keep_lateness: bool = False) -> Service:
    """Build and start every part; `keep_lateness` keeps raw timer lateness samples (benchmarks)."""
    log, policy = get_logger(owner_id=settings.owner_id), settings.build_policy()
    redis = redis_client(settings, REDIS_MAX_CONNECTIONS)
    # leases get their own connections: a renewal must never queue behind 10^4 sessions' traffic
    lease_redis = redis_client(settings, LEASE_MAX_CONNECTIONS)
    backoffice = HttpBackOffice(settings.backoffice_url, settings.backoffice_token,
                                timeout_s=settings.backoffice_timeout_s)
    metrics = ServiceMetrics()

    def timer_failed(err: Exception) -> None:  # a timer's bug: counted and logged, contained
        metrics.command_errors.labels(command="ReconnectTimers").inc()
        log.error("reconnect_timer_failed", error=repr(err), exc_info=True)
    # every reconnect timer; socket callbacks and long stretches of Redis/outbox work hand due ones on too
    timers = ReconnectTimers(on_error=timer_failed)
    layout = settings.key_layout()  # the single-Redis names, or hash-tagged shards on a Redis Cluster
    outbox = RedisOutbox(redis, backoffice, layout=layout, batch_size=settings.outbox_batch_size, due_work=timers,
                    flush_interval_s=settings.outbox_flush_interval_s,
                    retry_base_s=settings.outbox_retry_base_s, retry_cap_s=settings.outbox_retry_cap_s)
    validity: BackOffice = backoffice
    if settings.backoffice_validity == "batch":
        validity = BatchedValidity(backoffice, max_batch=settings.backoffice_validity_batch_size)
    cache = ValidityCache(settings.cache_ttl_s)
    store = RedisStatusStore(redis, cache=cache, outbox=outbox, due_work=timers, layout=layout)
    chain = ValidityChain(store, validity, cache, backoffice_budget_s=settings.backoffice_validity_budget_s)
    lease = RedisLeases(redis, settings.owner_id, ttl_s=settings.lease_ttl_s, layout=layout)
    renewer = RedisLeases(lease_redis, settings.owner_id, ttl_s=settings.lease_ttl_s, layout=layout)
    transport = make_transport(settings, policy.timeouts.keepalive_interval_s, policy.timeouts.keepalive_misses,
                               due_work=timers)
    timeline = _open_timeline(settings)
    ctx = RunnerContext(store=store, validity=chain, transport=transport, policy=policy, metrics=metrics,
                        timeline=timeline, log=log, clock=time.time, lateness_s=[] if keep_lateness else None,
                        rng_seed=settings.seed, max_inflight=settings.max_inflight, timers=timers,
                        validity_budget_s=settings.backoffice_validity_budget_s,
                        validate_retry=RetryPolicy(settings.redis_retry_base_s, settings.redis_retry_cap_s),
                        write_retry=RetryPolicy(settings.redis_retry_base_s, settings.status_write_retry_cap_s))
    source = make_source(settings.sessions, settings.session_credentials)
    gateway = Gateway(ctx, lease=lease, outbox=outbox, source=source,
                      start_concurrency=settings.start_concurrency, renewer=renewer)
    server = MetricsServer(metrics, lambda: service.health(), settings.metrics_port)
    service = Service(settings, redis, backoffice, store, chain, outbox, lease, transport, metrics, timeline,
                      gateway, server=server, log=log)
    service.server.before_scrape = service.refresh_metrics
    service.health_bounds = health.derive_bounds(
        policy, redis_timeout_s=_redis_bound_s(settings), backoffice_budget_s=settings.backoffice_validity_budget_s,
        validate_retry_cap_s=ctx.validate_retry.cap_s, close_timeout_s=ctx.close_timeout_s,
        backoffice_timeout_s=settings.backoffice_timeout_s, outbox_retry_cap_s=settings.outbox_retry_cap_s,
        outbox_flush_interval_s=settings.outbox_flush_interval_s, stuck_after_s=settings.health_stuck_after_s,
        outbox_stall_s=settings.health_outbox_stall_s)
    service.gc_pacer = GcPacer(timers.next_due_s,  # O(1), checked every 0.1 s; a storm's queued attempts
                               busy=lambda: ctx.validation_slot().waiting > 0 or ctx.open_slot().waiting > 0)
    log.info("service_starting", settings=settings.safe_dict(), redis=redact_url(settings.redis_url.reveal()))
    try:
        await asyncio.wait_for(redis.ping(), REDIS_TIMEOUT_S)
        await asyncio.wait_for(load_scripts(redis), REDIS_TIMEOUT_S)  # writes name them by SHA
    except Exception as err:  # noqa: BLE001 - say which upstream and why, then give up
        await _close_all(backoffice, lease_redis, redis)
        timeline.close()
        raise StartupError(f"cannot reach Redis at {redact_url(settings.redis_url.reveal())}: "
                           f"{type(err).__name__}: {err}") from None
    port = await _start_server(service, lease_redis)
    log.info("metrics_listening", url=f"http://127.0.0.1:{port}/metrics")
    await gateway.start()
    service.gc_pacer.start()  # after start-up: what is alive now is frozen out of the GC's walks
    service.watches = (LoopLagProbe(metrics.loop_lag.observe), GcPauses(metrics.observe_gc_pause))
    for watch in service.watches:
        watch.start()
    return service
