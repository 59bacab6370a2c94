"""The fault matrix (each upstream × disable, half-open, latency, stall, reset, slicer) and the
scenarios beyond it, at the catalog's scaled timings, against the real service."""

from __future__ import annotations

import pytest

from chaos import catalog
from tests.chaos.conftest import verdict

pytestmark = [pytest.mark.chaos]

# Findings of this suite against the service as it is: strict, so a fix turns them into failures
# to remove from here. Each names what the service does and which invariant it breaks.
_STALLED_TIMER = ("while Redis hangs, the session's SetStatus (a Redis write with retries) holds its command "
                  "pipeline, so the backoff timer fires late (0.8–0.9 s after the close at ×0.1, policy 0.2 s "
                  "± 0.275 s): 'attempt times match the policy' fails")
_LOST_UPDATE = ("status updates decided while Redis refuses or resets connections never reach the back office "
                "(it gets connecting, active of connecting, active, connecting, active): B6, 'back office's "
                "history complete and ordered' fails")
KNOWN_SERVICE_DEFECTS: dict[str, str] = {
    "matrix_redis_disable": _LOST_UPDATE,
    "matrix_redis_timeout": _STALLED_TIMER + "; and one update (seq 4) never arrives",
    "matrix_redis_bandwidth": _STALLED_TIMER,
    "matrix_redis_reset_peer": _LOST_UPDATE,
    "redis_restart_mid_reconnect": (
        "a Redis error during validation counts as 'invalid' (R4 cancels only a session that is no longer "
        "valid): the reconnect is cancelled and the session dropped with no status; the per-session seq "
        "restarts at 1 after Redis loses its data, so the back office sees seq go backwards"),
}


def _param(name: str):
    reason = KNOWN_SERVICE_DEFECTS.get(name)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_param(n) for n in catalog.names("matrix")])
def test_matrix_scenario(run_chaos, name):
    [result] = run_chaos([catalog.at_scale(name)])
    assert result.status == "passed", verdict(result)
    assert result.chart is not None and result.chart.exists()


@pytest.mark.parametrize("name", [_param(n) for n in catalog.names("extra")])
def test_extra_scenario(run_chaos, name):
    [result] = run_chaos([catalog.at_scale(name)])
    assert result.status == "passed", verdict(result)
