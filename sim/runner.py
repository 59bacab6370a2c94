"""Carry out one run end to end: simulate, build results, print, write the run folder.

Used by `python -m sim` (run) and `compare`. Owns the progress bar and the choice of
report folder (`reports/sim/<scenario>-<params digest>/` unless `--out` is given).
Must not parse flags.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sim import charts, engine, studies
from sim.params import ModelParams
from sim.report import render_table, write_run
from sim.results import build

REPORTS = Path("reports/sim")
PROGRESS_FROM_SESSIONS = 30_000  # per-session runs past this take more than a couple of seconds


def simulate(params: ModelParams, *, workers: int | None = None, quiet: bool = False,
             scheduler: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results, timing) for `params`, with a progress bar on stderr for long runs; blocks on a
    Dask cluster when `scheduler` is given."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    scenario_engine = engine.choose_engine(params, engine.resolve(params.scenario, params.outage_s))
    long_run = scenario_engine == "session" and params.sessions >= PROGRESS_FROM_SESSIONS
    if long_run and not quiet:
        console = Console(stderr=True)
        with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("sessions"),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task("run", total=params.sessions)
            output = engine.run(params, workers=workers, scheduler=scheduler,
                                progress=lambda done, _t: bar.update(task, completed=done))
    else:
        output = engine.run(params, workers=workers, scheduler=scheduler)
    simulated_s = time.perf_counter() - started
    results = build(output)
    timing = {"wall_s": round(time.perf_counter() - started, 4), "simulate_wall_s": round(simulated_s, 4),
              "main_process_cpu_s": round(time.process_time() - cpu_started, 4),
              "workers": output.workers, "blocks": output.blocks, "engine": output.engine,
              "engine_reason": output.engine_reason, "where": scheduler or "local processes",
              "core_events_per_wall_s": round(output.tally.core_events / simulated_s, 1),
              "timer_events_per_wall_s": round(output.tally.timer_events / simulated_s, 1)}
    return results, timing


def run_folder(params: ModelParams, out: Path | None) -> Path:
    return out if out is not None else REPORTS / f"{params.scenario}-{params.digest()}"


def run_and_report(params: ModelParams, *, out: Path | None, workers: int | None, with_charts: bool,
                   quiet: bool, stdout=None, scheduler: str | None = None) -> dict[str, Any]:
    """Simulate, print the summary table on stdout, write the run folder; returns the results."""
    stdout = stdout or sys.stdout
    started = time.perf_counter()
    results, timing = simulate(params, workers=workers, quiet=quiet, scheduler=scheduler)
    folder = run_folder(params, out)
    folder.mkdir(parents=True, exist_ok=True)
    names = _draw_with_progress(params, results, folder, quiet) if with_charts else []
    timing["with_charts_wall_s"] = round(time.perf_counter() - started, 4)
    write_run(folder, results, timing, names)
    stdout.write(render_table(results))
    if not quiet:
        print(f"wrote {folder}/results.json, summary.md and {len(names)} charts "
              f"(simulated in {timing['wall_s']:.2f} s, {timing['with_charts_wall_s']:.1f} s with charts; "
              f"engine {timing['engine']}: {timing['engine_reason']})", file=sys.stderr)
    return results


CHARTS = ("backoff_schedule", "load_over_time", "recovery_cdf", "herd", "cliff")


def draw(params: ModelParams, results: dict[str, Any], folder: Path, tick=None) -> list[str]:
    """Every chart of a run: its own load and recovery, plus the herd and cliff studies run
    with its policy and capacities; `tick(name)` after each one."""
    resolved = params.with_(until_s=results["params"]["until_s"])
    makers = {
        "backoff_schedule": lambda: charts.backoff_schedule(resolved.policy(), folder / "backoff_schedule.png"),
        "load_over_time": lambda: charts.load_over_time(results, folder / "load_over_time.png"),
        "recovery_cdf": lambda: charts.recovery_cdf(results, folder / "recovery_cdf.png"),
        "herd": lambda: charts.herd(studies.herd(params, outage_s=params.outage_s), folder / "herd.png"),
        "cliff": lambda: charts.cliff(studies.cliff(params), folder / "cliff.png"),
    }
    names = []
    for name in CHARTS:
        names.append(makers[name]())
        if tick:
            tick(name)
    return names


def _draw_with_progress(params: ModelParams, results: dict[str, Any], folder: Path, quiet: bool) -> list[str]:
    """`draw`, with a transient progress bar on stderr naming the chart being drawn."""
    if quiet:
        return draw(params, results, folder)
    with Progress(TextColumn("drawing charts"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(CHARTS[0], total=len(CHARTS))
        following = dict(zip(CHARTS, (*CHARTS[1:], "done")))
        return draw(params, results, folder, tick=lambda name: bar.update(task, advance=1,
                                                                           description=following[name]))
