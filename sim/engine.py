"""Run a whole population: choose the engine, cut it into blocks, run them, merge.

Blocks are whole IP groups of about `block_sessions` sessions, each with its own
seeded random streams, so the merged result does not depend on how many worker
processes ran them: same params → same tally → byte-identical results.json. Must not
write files or print: callers get a `RunOutput` and a progress callback.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from service.core import Jitter
from sim.model import BlockModel
from sim.params import ModelParams, ParamError
from sim.population import PopulationScenario, resolve
from sim.tally import Tally, merge

Progress = Callable[[int, int], None]  # (sessions done, sessions total)


@dataclass
class RunOutput:
    params: ModelParams
    scenario: PopulationScenario
    engine: str
    tally: Tally
    blocks: int
    workers: int


def choose_engine(params: ModelParams, scenario: PopulationScenario) -> str:
    """`cohort` when sessions are identical (no jitter, no per-session chance), else `session`."""
    cohort_ok = (params.jitter_kind is Jitter.NONE and not scenario.has_per_session_randomness
                 and not params.pushes_back)
    if params.engine == "cohort" and not cohort_ok:
        raise ParamError("engine 'cohort' needs jitter 'none', upstreams that do not push back (no queues, "
                         f"no latencies) and a scenario without per-session chance (flaky links, churn); "
                         f"{scenario.name!r} with jitter {params.jitter!r} needs engine 'session' or 'auto'")
    if params.engine == "auto":
        return "cohort" if cohort_ok else "session"
    return params.engine


def blocks_of(params: ModelParams, engine: str = "session") -> list[tuple[int, int, int]]:
    """(block index, first session, sessions) — block edges fall on IP-group edges.

    A block holds about `block_sessions` machines: sessions in the per-session engine,
    whole IP groups (one cohort each) in the cohort engine, which has no chance in it, so
    its block layout cannot change a result.
    """
    spi = params.sessions_per_ip
    groups = max(1, round(params.block_sessions / spi)) if engine == "session" else params.block_sessions
    size = groups * spi
    return [(b, first, min(size, params.sessions - first))
            for b, first in enumerate(range(0, params.sessions, size))]


def run_block(params: ModelParams, engine: str, block: int, first: int, n: int) -> Tally:
    scenario = resolve(params.scenario, params.outage_s)
    model = BlockModel(params, scenario, block, first, n, cohort=engine == "cohort")
    return model.run()


def default_workers(params: ModelParams, engine: str) -> int:
    """One process for small or cohort runs (start-up costs more than it saves), else every core."""
    if engine == "cohort" or params.sessions < 50_000:
        return 1
    return max(1, min(os.cpu_count() or 1, len(blocks_of(params, engine))))


def run(params: ModelParams, *, workers: int | None = None, progress: Progress | None = None) -> RunOutput:
    """Simulate `params`; `workers` processes (default: see `default_workers`)."""
    scenario = resolve(params.scenario, params.outage_s)
    if params.until_s == 0:
        params = params.with_(until_s=scenario.until_s)
    engine = choose_engine(params, scenario)
    blocks = blocks_of(params, engine)
    workers = default_workers(params, engine) if workers is None else workers
    if workers < 1:
        raise ParamError(f"workers must be ≥ 1, got {workers}")
    done, tallies = 0, {}
    if workers == 1:
        for block, first, n in blocks:
            tallies[block] = _frozen_gc(run_block, params, engine, block, first, n)
            done += n
            if progress:
                progress(done, params.sessions)
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_frozen_gc, run_block, params, engine, b, f, n): (b, n)
                       for b, f, n in blocks}
            for future in _as_completed(futures):
                block, n = futures[future]
                tallies[block] = future.result()
                done += n
                if progress:
                    progress(done, params.sessions)
    merged = merge([tallies[b] for b, _, _ in blocks])
    return RunOutput(params, scenario, engine, merged, len(blocks), workers)


def _frozen_gc(fn, *args):
    """Cyclic GC passes over millions of live objects cost 20–30 %; the model makes no cycles worth collecting mid-run."""
    gc.collect()
    gc.freeze()
    enabled = gc.isenabled()
    gc.disable()
    try:
        return fn(*args)
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


def _as_completed(futures):
    from concurrent.futures import as_completed

    return as_completed(futures)
