"""`python -m sim sweep`: grids of parameters × replications, in local processes or on Dask.

Every (grid point, replication) is one ordinary run with seed = `--seed` + replication
(common random numbers across points). Runs go to a local process pool by default, or to
a `dask.distributed` cluster when `--scheduler tcp://HOST:PORT` is given (for sweeps
that outgrow one machine). The rows depend only on the parameters, never on where they
ran. Output: a table, sweep.json and heatmaps. Must not change the model.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from sim.params import ModelParams, ParamError, coerce

OUT = Path("reports/sim/sweep")


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """["outage_s=30,60,90", "jitter=none,full"] → {"outage_s": [30.0, 60.0, 90.0], "jitter": [...]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ParamError(f"--grid takes NAME=V1,V2,…, got {item!r}")
        if key in grid:
            raise ParamError(f"--grid names {key!r} twice")
        grid[key] = [coerce(key, v.strip()) for v in values.split(",") if v.strip()]
    return grid


def tasks(base: ModelParams, grid: dict[str, list[Any]], replications: int) -> list[ModelParams]:
    """One params value per (point, replication), in a fixed order; each is validated here."""
    if replications < 1:
        raise ParamError(f"replications must be ≥ 1, got {replications}")
    keys = list(grid)
    return [base.with_(**dict(zip(keys, values)), seed=base.seed + rep)
            for values in itertools.product(*grid.values()) for rep in range(replications)]


def run_point(params: ModelParams) -> dict[str, Any]:
    """One run, reduced to the numbers a sweep tabulates (runs in a worker or on Dask)."""
    from sim import engine
    from sim.results import build

    results = build(engine.run(params, workers=1))
    n = results["sessions"]
    return {"params": params.to_dict(), "inactive_fraction": results["outcomes"]["inactive"] / n,
            "recovered_fraction": results["outcomes"]["recovered"] / n, "attempts": results["attempts"],
            "rate_limited": results["rate_limited"], "peak_attempts_per_s": results["peaks"]["whatsapp_attempts_per_s"],
            "recovery_p99_s": results["recovery_s"]["p99"], "engine": results["engine"]}


def run_local(all_params: list[ModelParams], workers: int, progress=None) -> list[dict[str, Any]]:
    """Run every task in `workers` local processes; rows come back in task order."""
    tick = progress or (lambda: None)
    if workers <= 1:
        rows = []
        for params in all_params:
            rows.append(run_point(params))
            tick()
        return rows
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = []
        for row in pool.map(run_point, all_params, chunksize=max(1, len(all_params) // (8 * workers))):
            rows.append(row)
            tick()
        return rows


def _connect(address: str, timeout_s: float):
    """A client of the scheduler at `address`; unreachable within `timeout_s` → one clear ParamError."""
    from distributed import Client

    try:
        return Client(address, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParamError(f"cannot reach the Dask scheduler at {address!r} within {timeout_s:g} s "
                         f"({reason[:120]}); check --scheduler or drop it to run locally") from None


def run_dask(all_params: list[ModelParams], scheduler: Any, progress=None,
             connect_timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """`scheduler`: an address string or a `distributed.Client`; rows come back in task order."""
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else _connect(scheduler, connect_timeout_s)
    try:
        futures = client.map(run_point, all_params, pure=False)
        for _ in as_completed(futures):
            if progress:
                progress()
        return client.gather(futures)
    finally:
        if client is not scheduler:
            client.close()


def summarise(rows: list[dict[str, Any]], grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Mean of each metric over replications, one entry per grid point (grid order)."""
    points: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        points.setdefault(tuple(row["params"][k] for k in grid), []).append(row)
    summary = []
    for key, reps in points.items():
        entry = dict(zip(grid, key))
        for metric in ("inactive_fraction", "recovered_fraction", "attempts", "peak_attempts_per_s"):
            entry[metric] = sum(r[metric] for r in reps) / len(reps)
        p99s = [r["recovery_p99_s"] for r in reps if r["recovery_p99_s"] is not None]
        entry["recovery_p99_s"] = max(p99s) if p99s else None
        entry["replications"] = len(reps)
        summary.append(entry)
    return summary


def add_parser(commands) -> None:
    from sim.flags import add_model_flags

    parser = commands.add_parser("sweep", help="grids of parameters with replications, locally or on Dask",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,…",
                        help="a swept parameter and its values (repeatable), e.g. --grid outage_s=30,60,90")
    parser.add_argument("--replications", type=int, default=3, metavar="N", help="runs per point (default: 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="local worker processes (default: every core)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run on this dask.distributed scheduler instead")
    parser.add_argument("--scheduler-timeout-s", type=float, default=10.0, metavar="SECONDS",
                        help="give up connecting to --scheduler after this long (exit 2; default: 10)")
    parser.add_argument("--out", type=Path, default=OUT, metavar="DIR", help=f"output folder (default: {OUT})")
    add_model_flags(parser)


def command(args: argparse.Namespace) -> int:
    from sim.flags import params_from
    from sim.sweep_report import render, write

    grid = parse_grid(args.grid or ["outage_s=30,60,90", "jitter=none,full,equal", "max_attempts=5,6"])
    base = params_from(args, **({} if args.sessions else {"sessions": 1_000}))
    all_params = tasks(base, grid, args.replications)
    started = time.perf_counter()
    client = _connect(args.scheduler, args.scheduler_timeout_s) if args.scheduler else None  # before the bar
    try:
        with _progress(len(all_params)) as tick:
            rows = run_dask(all_params, client, tick) if client else run_local(all_params, args.workers, tick)
    finally:
        if client is not None:
            client.close()
    wall_s = time.perf_counter() - started
    summary = summarise(rows, grid)
    sys.stdout.write(render(summary, grid))
    names = write(args.out, grid, rows, summary, {"wall_s": round(wall_s, 3), "runs": len(rows),
                                                  "where": args.scheduler or f"{args.workers} local processes"})
    print(f"wrote {args.out}/sweep.json and {', '.join(names)} ({len(rows)} runs, {wall_s:.1f} s)", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _progress(total: int):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("sweep", total=total)
        yield lambda: bar.advance(task)


def dumps(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, sort_keys=True, indent=1) + "\n"
