"""The fault matrix (each upstream × disable, half-open, latency, stall, reset, slicer) and the
scenarios beyond it, at the catalog's scaled timings, against the real service."""

from __future__ import annotations

import pytest

from chaos import catalog

pytestmark = [pytest.mark.chaos]

# Findings of this suite against the service as it is: strict, so a fix turns them into failures
# to remove from here. Each names what the service does and which invariant it breaks.
KNOWN_SERVICE_DEFECTS: dict[str, str] = {}


def _param(name: str):
    reason = KNOWN_SERVICE_DEFECTS.get(name)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_param(n) for n in catalog.names("matrix")])
def test_matrix_scenario(run_chaos, name):
    [result] = run_chaos([catalog.at_scale(name)])
    assert result.status == "passed", result.explain()
    assert result.chart is not None and result.chart.exists()


@pytest.mark.parametrize("name", [_param(n) for n in catalog.names("extra")])
def test_extra_scenario(run_chaos, name):
    [result] = run_chaos([catalog.at_scale(name)])
    assert result.status == "passed", result.explain()
