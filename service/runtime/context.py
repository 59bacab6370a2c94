"""`RunnerContext`: what every session runner of one gateway shares — the store and validity ports, the
transport, the policy, metrics, timeline, log, the reconnect timers and the admission
slots that pace validations and socket opens.

Owns: those shared parts and the knobs of the runners' I/O (retries, timeouts, in-flight
caps). Must not: hold anything of one session, or decide anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service.core import Policy
from service.metrics import ServiceMetrics
from service.ports import StatusStore, Transport, Validity
from service.retry import RetryPolicy
from service.runtime.timeline import TimelineWriter
from service.runtime.drivers import ReconnectTimers

if TYPE_CHECKING:
    from service.runtime.runner import SessionRunner


@dataclass
class RunnerContext:
    """What every runner of one gateway shares."""

    store: StatusStore
    validity: Validity
    transport: Transport
    policy: Policy
    metrics: ServiceMetrics
    timeline: TimelineWriter
    log: Any
    clock: Callable[[], float] = time.time  # the `now` the core sees: epoch seconds, comparable across processes
    on_drop: Callable[[SessionRunner, str], None] | None = None
    on_fenced: Callable[[SessionRunner], None] | None = None  # a write was refused: the lease moved (B9)
    lateness_s: list[float] | None = None  # raw samples, kept only when a benchmark asks
    io_retries: int = 3  # tries of one status write before it is logged as deferred
    # waits between tries while Redis is unreachable (settings redis_retry_base_s, redis_retry_cap_s, ...)
    validate_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(0.1, 5.0, what="validation retry"))
    write_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(0.1, 1.0, what="status write retry"))
    close_timeout_s: float = 5.0
    rng_seed: int | None = None
    # admission control: at most this many validations / socket opens in flight at once. It paces
    # I/O (like a connection pool); when and whether to reconnect is still the core's decision.
    max_inflight: int = 256
    timers: ReconnectTimers = field(default_factory=ReconnectTimers)  # every runner's reconnect timer
    _validations: asyncio.Semaphore | None = None
    _opens: asyncio.Semaphore | None = None

    def validation_slot(self) -> asyncio.Semaphore:
        if self._validations is None:
            self._validations = asyncio.Semaphore(self.max_inflight)
        return self._validations

    def open_slot(self) -> asyncio.Semaphore:
        if self._opens is None:
            self._opens = asyncio.Semaphore(self.max_inflight)
        return self._opens
