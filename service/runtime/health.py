"""What `/healthz` judges beyond "running and Redis answers": sessions stuck in a step that
is bounded, and back-office delivery stalled while the back office answers.

Owns the two bounds (`HealthBounds`, derived from the policy's timeouts and the settings
unless set) and the checks. Must not change anything: it reads the runners' states and
the outbox's age, and reports.

- **Stuck**: a session `validating` or `connecting` for longer than `stuck_after_s`. Each
  step is bounded: a validation by a Redis read (`redis_timeout_s`), a back-office
  question (its budget) and a retry wait; an open by the connect timeout (+1 s guard)
  and the close of the old socket before it. The default is twice their sum, so a storm's
  queueing for CPU and in-flight slots (seconds) is not taken for a hang; a session past
  it is one whose task hangs or died (what `session_task_failed` would also show).
- **Stalled**: the oldest undelivered update is older than `outbox_stall_s` while the back
  office answers the status batches (any reply below 500 within that time: it is up and
  talking, yet the entries do not get through). A back office that is down (5xx,
  timeouts, refused) is its own outage, shown by the outbox's age, not this process's fault.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from service.core import Policy, State

STATUS_BATCH = "/api/status/batch"  # the call whose replies say the back office takes deliveries
BOUNDED_STATES = frozenset({State.VALIDATING, State.CONNECTING})
SAMPLE = 5


@dataclass(frozen=True)
class HealthBounds:
    stuck_after_s: float
    outbox_stall_s: float


def derive_bounds(policy: Policy, *, redis_timeout_s: float, backoffice_budget_s: float, validate_retry_cap_s: float,
                  close_timeout_s: float, backoffice_timeout_s: float, outbox_retry_cap_s: float,
                  outbox_flush_interval_s: float, stuck_after_s: float | None = None,
                  outbox_stall_s: float | None = None) -> HealthBounds:
    """The bounds of the module docstring; a value given explicitly wins."""
    if stuck_after_s is None:
        validation_s = redis_timeout_s + backoffice_budget_s + validate_retry_cap_s
        open_s = policy.timeouts.connect_timeout_s + 1.0 + close_timeout_s
        stuck_after_s = 2 * (validation_s + open_s)
    if outbox_stall_s is None:
        outbox_stall_s = 2 * (outbox_retry_cap_s + outbox_flush_interval_s + backoffice_timeout_s)
    return HealthBounds(float(stuck_after_s), float(outbox_stall_s))


def stuck_sessions(runners: Iterable[Any], now_s: float, bound_s: float) -> list[str]:
    """Ids of runners in a bounded state for longer than `bound_s` (loop time)."""
    return [runner.session_id for runner in runners
            if runner.machine.state in BOUNDED_STATES and now_s - runner.state_since > bound_s]


def judge(report: dict[str, Any], *, stuck: list[str], bounds: HealthBounds, outbox_age_s: float,
          status_reply_age_s: float | None) -> dict[str, Any]:
    """Add the stuck and stalled verdicts to `report` (its `ok` and `reasons`)."""
    reasons: list[str] = report.setdefault("reasons", [])
    report["stuck"] = len(stuck)
    report["stuck_after_s"] = bounds.stuck_after_s
    if stuck:
        report["stuck_sample"] = sorted(stuck)[:SAMPLE]
        reasons.append(f"{len(stuck)} session(s) validating or connecting for more than {bounds.stuck_after_s:g} s")
    report["outbox_oldest_age_s"] = round(outbox_age_s, 3)
    report["outbox_stall_s"] = bounds.outbox_stall_s
    answering = status_reply_age_s is not None and status_reply_age_s < bounds.outbox_stall_s
    if outbox_age_s > bounds.outbox_stall_s and answering:
        reasons.append(f"back-office delivery stalled: the oldest update is {outbox_age_s:.1f} s old "
                       f"(bound {bounds.outbox_stall_s:g} s) while the back office answers")
    if reasons:
        report["ok"] = False
    return report


def reply_age_s(last_reply_at: dict[str, float], call: str = STATUS_BATCH) -> float | None:
    """Seconds since the back office last answered `call` below 500 (None: never)."""
    at = last_reply_at.get(call)
    return None if at is None else time.monotonic() - at
