"""Fixtures of the chaos suite: a `Lab` over the session's real Redis, stand-ins and Toxiproxy.

Owns `chaos_lab` (session-scoped, attached to the fixtures in tests/fixtures), `run_chaos`
(runs scenarios, reports under reports/chaos/, then asserts Toxiproxy is clean) and
`toxiproxy_is_clean`. Must not start servers itself: the shared fixtures do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.lab import Lab
from chaos.report import ScenarioRun, write_summary
from chaos.runner import RunOptions, run_scenarios
from chaos.runs import new_run_dir, point_latest
from chaos.scenario import ChaosScenario
from chaos.toxiproxy import Toxiproxy
from tests.fixtures.servers import RedisServer
from tests.fixtures.standins import Standins

REPORT_BASE = Path(__file__).resolve().parents[2] / "reports" / "chaos"


@functools.cache
def session_report_dir() -> Path:
    """This test session's own run folder under reports/chaos/ (reports/chaos/latest links it)."""
    run_dir = new_run_dir(REPORT_BASE)
    point_latest(REPORT_BASE, run_dir)
    return run_dir


@pytest.fixture(scope="session")
def chaos_lab(redis_server: RedisServer, standins: Standins, toxiproxy_server: Toxiproxy) -> Lab:
    return Lab(
        toxiproxy=toxiproxy_server,
        redis_address=(redis_server.host, redis_server.port),
        whatsapp_address=("127.0.0.1", standins.ports["whatsapp_port"]),
        backoffice_address=("127.0.0.1", standins.ports["backoffice_port"]),
        whatsapp=standins.whatsapp, backoffice=standins.backoffice, backoffice_token=standins.backoffice_token,
        stop_redis=redis_server.stop, start_redis=redis_server.start, redis_running=lambda: redis_server.running,
    )


def toxiproxy_problems(api: Toxiproxy) -> list[str]:
    """Why Toxiproxy is not clean: a toxic left, a proxy left disabled."""
    problems = []
    for name, proxy in api.proxies().items():
        if not proxy.enabled:
            problems.append(f"proxy {name} is disabled")
        problems += [f"proxy {name} keeps toxic {t['name']}" for t in proxy.toxics()]
    return problems


@pytest.fixture(scope="session")
def chaos_results() -> Iterator[list[ScenarioRun]]:
    """Every scenario run of the session; `summary.md` in the session's run folder is written from them at the end."""
    results: list[ScenarioRun] = []
    yield results
    if results:
        write_summary(session_report_dir(), results, title=f"Chaos suite: {len(results)} scenario run(s)")


def run_and_check_clean(lab: Lab, results: list[ScenarioRun], scenarios: list[ChaosScenario], *,
                        concurrent: bool = False, subdir: str = "", **options: Any) -> list[ScenarioRun]:
    """Run scenarios, keep their results for the summary, and assert Toxiproxy is clean after."""
    found = run_scenarios(scenarios, lab, RunOptions(report_dir=session_report_dir() / subdir, **options),
                          concurrent=concurrent)
    results.extend(found)
    assert toxiproxy_problems(lab.toxiproxy) == [], "a scenario left Toxiproxy dirty"
    for result in found:
        assert result.journal is not None and result.journal.exists(), f"{result.name}: no journal"
    return found


@pytest.fixture
def run_chaos(chaos_lab: Lab, chaos_results: list[ScenarioRun]) -> Callable[..., list[ScenarioRun]]:
    """`run_chaos([scenario, ...], concurrent=False, subdir="", **options)`; Toxiproxy checked clean after."""
    def run(scenarios: list[ChaosScenario], **kwargs: Any) -> list[ScenarioRun]:
        return run_and_check_clean(chaos_lab, chaos_results, scenarios, **kwargs)
    return run


def verdict(result: ScenarioRun) -> str:
    """Everything that went wrong in a run, for assertion messages."""
    lines = [f"{result.name} ×{result.scale:g}: {result.status}" + (f" ({result.error})" if result.error else "")]
    lines += [str(c) for c in result.failed_checks]
    if result.prediction is not None and not result.prediction.ok:
        lines += ["prediction differs:", *result.prediction.differences[:10]]
    return "\n".join(lines)
