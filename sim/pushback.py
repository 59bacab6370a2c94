"""Upstreams that push back: Redis, the back office and WhatsApp as FIFO queues with a
capacity and a latency distribution, so sessions wait in them (`--queues`).

Each upstream serves `capacity_per_s` operations per second one after another (0:
unlimited) and adds a latency drawn from `fixed`, `exponential` or `uniform` (0 to twice
the mean). A block owns its share of each capacity (its sessions / all sessions), so blocks
stay independent, as shards of one server would be. What waits where (the service's
order): every Redis op (cache clear, status write, validity read); a validation asks Redis,
then the back office within the R4 budget (past it Redis's answer stands, as in the
service); a status update queues at the back office without holding the session (the outbox
is asynchronous) but delays the validations behind it; a connect waits for WhatsApp's
handshake and fails with a timeout past the policy's connect timeout. Must not do I/O.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sim.params import ModelParams

DISTRIBUTIONS = ("fixed", "exponential", "uniform")


class Queue:
    """One upstream's FIFO server for one block."""

    __slots__ = ("rate_per_s", "latency_s", "dist", "rng", "free_at_s", "busiest_wait_s")

    def __init__(self, rate_per_s: float, latency_s: float, dist: str, rng: random.Random) -> None:
        self.rate_per_s, self.latency_s, self.dist, self.rng = rate_per_s, latency_s, dist, rng
        self.free_at_s = 0.0
        self.busiest_wait_s = 0.0  # longest time an operation waited for the server

    def occupy(self, now: float, ops: float) -> float:
        """Queue `ops` operations at `now`; seconds until the last is served (no latency)."""
        if self.rate_per_s <= 0 or ops <= 0:
            return 0.0
        start_s = max(now, self.free_at_s)
        self.busiest_wait_s = max(self.busiest_wait_s, start_s - now)
        self.free_at_s = start_s + ops / self.rate_per_s
        return self.free_at_s - now

    def wait_s(self, now: float, ops: float) -> float:
        """Seconds until `ops` operations issued at `now` are answered (queue + latency)."""
        return self.occupy(now, ops) + self.latency()

    def latency(self) -> float:
        if self.latency_s <= 0:
            return 0.0
        if self.dist == "exponential":
            return self.rng.expovariate(1.0 / self.latency_s)
        if self.dist == "uniform":
            return self.rng.uniform(0.0, 2.0 * self.latency_s)
        return self.latency_s


class Upstreams:
    """The three queues of one block, sized to its share of the population."""

    def __init__(self, params: ModelParams, share: float, rng: random.Random) -> None:
        dist = params.latency_dist
        self.redis = Queue(params.redis_ops_per_s * share, params.redis_latency_s, dist, rng)
        self.backoffice = Queue(params.backoffice_requests_per_s * share, params.backoffice_latency_s, dist, rng)
        self.whatsapp = Queue(params.whatsapp_handshakes_per_s * share, params.whatsapp_connect_s, dist, rng)
        self.batch = params.backoffice_batch
        self.budget_s = params.backoffice_validity_budget_s
        self.connect_timeout_s = params.connect_timeout_s

    def validation_s(self, now: float, count: int) -> float:
        """Redis read, then the back office within the R4 budget."""
        redis_s = self.redis.wait_s(now, count)
        backoffice_s = self.backoffice.wait_s(now + redis_s, count / self.batch)
        return redis_s + min(backoffice_s, self.budget_s)
