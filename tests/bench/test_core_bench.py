"""How many events per second the pure core handles (a measurement, never an assertion on time)."""

import random

import pytest

from service.core import SessionMachine, build_policy
from service.core.events import BackoffElapsed, Closed, Opened, Start, StartFailed, Validated

pytestmark = pytest.mark.benchmark

# one full long-outage episode: start, open, close, then 5 × (timer, validate, fail)
EPISODE = [Start(), Opened(), Closed()] + [BackoffElapsed(), Validated(True), StartFailed()] * 5


def run_episodes(count: int, trace: bool) -> int:
    policy = build_policy({"jitter": "full"})
    rng = random.Random(1)
    handled = 0
    for i in range(count):
        machine = SessionMachine(f"s{i}", policy, rng, trace=trace)
        for event in EPISODE:
            machine.handle(event, 0.0)
            handled += 1
    return handled


@pytest.mark.parametrize("trace", [True, False], ids=["traced", "untraced"])
def test_core_events_per_second(benchmark, trace):
    handled = benchmark(run_episodes, 1_000, trace)
    assert handled == 1_000 * len(EPISODE)
    if benchmark.stats:
        benchmark.extra_info["events_per_s"] = handled / benchmark.stats.stats.mean
