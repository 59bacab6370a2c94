"""`python -m sim bench`: measure the model's speed against bare SimPy, in one run, as JSON.

Measures (wall clock, this machine): a bare SimPy loop of `Timeout` callbacks (the
cheapest event SimPy has) and the same with a generator process per session; the model
per session (single process) on a mass outage, as SimPy timer events and core events per
second; and the scale target — N sessions (default 1,000,000) through a 120 s mass outage
with the cohort engine and with the per-session engine spread over worker processes.
Writes reports/sim/bench/bench.json. Measures only: asserts nothing about time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import simpy
from simpy.events import Timeout

from sim import engine
from sim.params import ModelParams
from sim.results import build

OUT = Path("reports/sim/bench")


def bare_callbacks(sessions: int, steps: int = 5) -> dict[str, Any]:
    """`sessions` chains of `steps` Timeout callbacks: SimPy's floor for this model's shape.

    Timed like a model run: from building the environment to the end of `env.run()`.
    """
    started = time.perf_counter()
    env = simpy.Environment()
    fired = [0]

    def step(event: Timeout) -> None:
        fired[0] += 1
        left = event.value
        if left > 1:
            Timeout(env, 2.0 ** (steps - left + 1), left - 1).callbacks.append(step)

    for _ in range(sessions):
        Timeout(env, 1.0, steps).callbacks.append(step)
    return _timed(env, fired, started)


def bare_processes(sessions: int, steps: int = 5) -> dict[str, Any]:
    """The same with one generator process per session (`yield env.timeout(d)`)."""
    started = time.perf_counter()
    env = simpy.Environment()
    fired = [0]

    def session(env: simpy.Environment):
        for n in range(steps):
            yield env.timeout(2.0 ** n)
            fired[0] += 1

    for _ in range(sessions):
        env.process(session(env))
    return _timed(env, fired, started)


def _timed(env: simpy.Environment, fired: list[int], started: float) -> dict[str, Any]:
    gc.freeze()
    gc.disable()
    try:
        env.run()
    finally:
        gc.enable()
        gc.unfreeze()
    wall_s = time.perf_counter() - started
    return {"events": fired[0], "wall_s": round(wall_s, 4), "events_per_s": round(fired[0] / wall_s, 1)}


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def model_run(params: ModelParams, workers: int) -> dict[str, Any]:
    started, cpu_started = time.perf_counter(), _cpu_s()
    output = engine.run(params, workers=workers)
    wall_s = time.perf_counter() - started
    cpu_s = _cpu_s() - cpu_started
    results = build(output)
    tally = output.tally
    return {"sessions": params.sessions, "engine": output.engine, "workers": output.workers,
            "jitter": params.jitter, "outage_s": params.outage_s, "wall_s": round(wall_s, 3),
            "cpu_s": round(cpu_s, 3), "cpu_s_per_worker": round(cpu_s / output.workers, 3),
            "timer_events": tally.timer_events, "timer_events_per_s": round(tally.timer_events / wall_s, 1),
            "core_handle_calls": tally.handle_calls, "core_handle_calls_per_s": round(tally.handle_calls / wall_s, 1),
            "session_events": tally.core_events, "session_events_per_s": round(tally.core_events / wall_s, 1),
            "outcomes": results["outcomes"], "units": tally.units}


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    best["all_wall_s"] = [r["wall_s"] for r in runs]
    return best


def measure(*, sessions: int, speed_sessions: int, workers: int, jittered: bool, repeat: int = 3) -> dict[str, Any]:
    """Interleaved repeats (best of `repeat`) for the ratio, so load from elsewhere hits both sides alike."""
    outage = dict(scenario="mass_outage", outage_s=120.0, ip_connects_per_s=0.0, account_connects=0)
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                          "simpy": simpy.__version__, "platform": platform.platform(),
                                          "load_average_at_start": list(os.getloadavg())}}
    runs: dict[str, list[dict[str, Any]]] = {"bare_callbacks": [], "bare_processes": [], "model": []}
    for _ in range(repeat):
        runs["bare_callbacks"].append(bare_callbacks(speed_sessions))
        runs["bare_processes"].append(bare_processes(speed_sessions))
        runs["model"].append(model_run(ModelParams(sessions=speed_sessions, engine="session", **outage), 1))
    report["bare_callbacks"] = _best(runs["bare_callbacks"])
    report["bare_processes"] = _best(runs["bare_processes"])
    single = report["model_per_session_1_process"] = _best(runs["model"])
    bare = report["bare_callbacks"]["events_per_s"]
    report["ratios"] = {
        "model_timer_events_per_s / bare_callback_events_per_s": round(single["timer_events_per_s"] / bare, 3),
        "model_core_events_per_s / bare_callback_events_per_s": round(single["core_handle_calls_per_s"] / bare, 3),
        "model_timer_events_per_s / bare_process_events_per_s":
            round(single["timer_events_per_s"] / report["bare_processes"]["events_per_s"], 3),
    }
    report["scale_cohort"] = model_run(ModelParams(sessions=sessions, **outage), workers=1)
    report["scale_per_session"] = model_run(ModelParams(sessions=sessions, engine="session", **outage), workers)
    if jittered:
        report["scale_per_session_full_jitter"] = model_run(
            ModelParams(sessions=sessions, jitter="full", **outage), workers)
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    report["target"] = {"sessions": sessions, "wall_s_limit": 60.0,
                        "cohort_met": report["scale_cohort"]["wall_s"] <= 60.0,
                        "per_session_met": report["scale_per_session"]["wall_s"] <= 60.0}
    return report


def add_parser(commands) -> None:
    parser = commands.add_parser("bench", help="measure the model against bare SimPy; JSON to reports/sim/bench/",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1_000_000, metavar="N",
                        help="sessions of the scale runs (default: 1,000,000)")
    parser.add_argument("--speed-sessions", type=int, default=50_000, metavar="N",
                        help="sessions of the events-per-second comparison, best of 3 (default: 50,000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="worker processes of the per-session scale run (default: every core)")
    parser.add_argument("--jittered", action="store_true", help="also run the scale test with full jitter")
    parser.add_argument("--out", type=Path, default=OUT, metavar="DIR", help=f"output folder (default: {OUT})")


def command(args: argparse.Namespace) -> int:
    if min(args.sessions, args.speed_sessions, args.workers) < 1:
        raise ValueError("--sessions, --speed-sessions and --workers must be ≥ 1")
    report = measure(sessions=args.sessions, speed_sessions=args.speed_sessions, workers=args.workers,
                     jittered=args.jittered)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench.json"
    path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    for key in ("bare_callbacks", "bare_processes"):
        print(f"{key:32} {report[key]['events_per_s']:>14,.0f} events/s")
    for key in ("model_per_session_1_process", "scale_cohort", "scale_per_session", "scale_per_session_full_jitter"):
        if key in report:
            r = report[key]
            print(f"{key:32} {r['sessions']:>10,} sessions {r['wall_s']:>8.2f} s wall {r['cpu_s']:>8.2f} s cpu  "
                  f"{r['timer_events_per_s']:>12,.0f} timer events/s  {r['session_events_per_s']:>14,.0f} session events/s")
    for name, value in report["ratios"].items():
        print(f"{name:60} {value}")
    print(f"load average at start / end: {report['machine']['load_average_at_start'][0]:.2f} / "
          f"{report['machine']['load_average_at_end'][0]:.2f}")
    print(f"wrote {path}", file=sys.stderr)
    return 0
