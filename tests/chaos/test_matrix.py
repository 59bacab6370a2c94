"""The fault matrix (each upstream × disable, half-open, latency, stall, reset, slicer) and the
scenarios beyond it, at the catalog's scaled timings, against the real service."""

from __future__ import annotations

import pytest

from chaos import catalog
from tests.chaos.conftest import verdict

pytestmark = [pytest.mark.chaos]

# Findings of this suite against the service as it is: strict, so a fix turns them into failures
# to remove from here. Each names what the service does and which invariant it breaks.
KNOWN_SERVICE_DEFECTS: dict[str, str] = {
    "matrix_redis_timeout": (
        "a status write whose reply is lost when the half-open Redis link is cut is retried with the same "
        "update_id, and the outbox append (INCR seq + XADD) is not idempotent per update_id: the back office "
        "sees seq 3 then seq 5, seq 4 never arrives ('back office's history complete and ordered')"),
    "redis_restart_mid_reconnect": (
        "Redis restarts without persistence and loses the per-session seq counters (and any undelivered "
        "outbox entries): the next update restarts at seq 1, so the back office sees seq go backwards. "
        "B6 is only as durable as Redis; the reconnect itself now succeeds (validation asks the back office)"),
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
