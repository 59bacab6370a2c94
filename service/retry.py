"""How long to wait before trying again an operation that failed for a reason that may pass —
Redis or the back office unreachable — for every retry loop of the service: a session's status
writes, its validation reads, the outbox's batches.

Owns the waits: capped exponential, `base_s * factor**(n-1)` after the n-th failure in a row, at
most `cap_s`, computed by the core's `Backoff` (no jitter, no attempt cap: the callers retry
until the operation goes through or they are stopped), and the sleep itself. Must not: decide
which failures are worth retrying (the callers do) or give up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from service.core.errors import PolicyError
from service.core.policy import Backoff
from service.errors import ConfigError


@dataclass(frozen=True)
class RetryPolicy:
    """The waits of one kind of retry; invalid values raise `ConfigError` naming `what`."""

    base_s: float
    cap_s: float
    factor: float = 2.0
    what: str = "retry"
    _backoff: Backoff = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            backoff = Backoff(base_s=self.base_s, factor=self.factor, cap_s=self.cap_s, max_attempts=None)
        except PolicyError as err:
            raise ConfigError(f"{self.what}: {err}") from None
        object.__setattr__(self, "_backoff", backoff)

    def delay_s(self, failures: int) -> float:
        """The wait after the `failures`-th failure in a row (1-based)."""
        return self._backoff.exponential_s(failures)


class Retrying:
    """One operation's failures in a row: `failed()` counts one and says the wait, `wait()`
    sleeps it, `succeeded()` starts over."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0
        self._wait_s = 0.0

    def failed(self) -> float:
        self.failures += 1
        self._wait_s = self.policy.delay_s(self.failures)
        return self._wait_s

    async def wait(self) -> None:
        await asyncio.sleep(self._wait_s)

    def succeeded(self) -> None:
        self.failures = 0
        self._wait_s = 0.0
