"""Closed form of a mass outage with no capacity limits: a numpy cross-check of the event model.

When nothing but the outage decides success, a session closed at t0 recovers on the first
attempt k whose time t0 + d1 + … + dk is at or after the outage's end, and ends inactive
if none of its `max_attempts` is. The delays follow the core's `Backoff` formulas
(vectorised, with numpy's own random stream, so agreement with the model is statistical
for jittered policies and exact without jitter). Must not run SimPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.core import Backoff, Jitter


def delays_s(backoff: Backoff, sessions: int, rng: np.random.Generator) -> np.ndarray:
    """A (sessions × max_attempts) array of backoff delays (exponential schedules with an attempt cap)."""
    if (backoff.max_attempts is None or backoff.max_elapsed_s is not None or backoff.jitter is Jitter.PROPORTIONAL
            or backoff.schedule.value != "exponential"):
        raise ValueError("the closed form covers capped exponential backoff with none/full/equal/decorrelated "
                         "jitter and no give-up deadline; run the model for this policy")
    out = np.empty((sessions, backoff.max_attempts))
    previous = np.full(sessions, backoff.base_s)
    for n in range(1, backoff.max_attempts + 1):
        exp_s = backoff.exponential_s(n)
        if backoff.jitter is Jitter.NONE:
            delay = np.full(sessions, exp_s)
        elif backoff.jitter is Jitter.FULL:
            delay = rng.uniform(0.0, exp_s, sessions)
        elif backoff.jitter is Jitter.EQUAL:
            delay = exp_s / 2 + rng.uniform(0.0, exp_s / 2, sessions)
        else:
            delay = np.minimum(backoff.cap_s, rng.uniform(backoff.base_s, np.maximum(backoff.base_s, previous * 3)))
        out[:, n - 1] = delay
        previous = delay
    return out


def mass_outage(backoff: Backoff, sessions: int, outage_s: float, *, seed: int = 0) -> dict[str, Any]:
    """Outcome counts and recovery times (from the close) for a mass outage of `outage_s`."""
    attempt_times_s = np.cumsum(delays_s(backoff, sessions, np.random.default_rng(seed)), axis=1)
    ok = attempt_times_s >= outage_s
    recovered = ok.any(axis=1)
    first = np.argmax(ok, axis=1)
    recovery_s = attempt_times_s[np.arange(sessions), first][recovered]
    attempts = np.where(recovered, first + 1, backoff.max_attempts)
    return {"sessions": sessions, "recovered": int(recovered.sum()), "inactive": int((~recovered).sum()),
            "attempts": int(attempts.sum()), "recovery_s": recovery_s}
