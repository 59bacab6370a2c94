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
from sim import delays
from sim.histogram import HistogramModel
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
    engine_reason: str = ""


def choose_engine(params: ModelParams, scenario: PopulationScenario) -> str:
    """The engine `params` run with; see `engine_choice`."""
    return engine_choice(params, scenario)[0]


def engine_choice(params: ModelParams, scenario: PopulationScenario) -> tuple[str, str]:
    """(engine, why). `auto`: `cohort` when sessions are identical (no jitter, no per-session
    chance, no upstream pushing back), else `histogram` where it applies, else `session`. The fastest engine that applies."""
    cohort_ok = (params.jitter_kind is Jitter.NONE and not scenario.has_per_session_randomness
                 and not params.pushes_back)
    blocker = histogram_blocker(params, scenario)
    if params.engine == "cohort" and not cohort_ok:
        raise ParamError("engine 'cohort' needs jitter 'none', upstreams that do not push back (no queues, "
                         f"no latencies) and a scenario without per-session chance (flaky links, churn); "
                         f"{scenario.name!r} with jitter {params.jitter!r} needs engine 'session' or 'auto'")
    if params.engine == "histogram" and blocker:
        raise ParamError(f"engine 'histogram' does not apply: {blocker}; use engine 'session' or 'auto'")
    if params.engine != "auto":
        return params.engine, f"engine {params.engine!r} as asked"
    if cohort_ok:
        return "cohort", "sessions are identical (no jitter, no per-session chance): one machine per IP group"
    if blocker is None and not _one_session_lumps(params):
        return "histogram", "only jitter tells sessions apart: lumps on a time grid"
    if blocker is None:
        return "session", (f"lumps per IP group of {params.sessions_per_ip} sessions (WhatsApp limits per IP) would "
                           "hold about one session each; the per-session engine is as fast")
    return "session", f"the histogram engine does not apply: {blocker}"


def _one_session_lumps(params: ModelParams) -> bool:
    """Per-IP lumps pay only when an IP group outnumbers the cells its longest wait spreads over."""
    cells = params.policy().backoff.cap_s / params.histogram_grid_s
    return params.ip_connects_per_s > 0 and params.sessions_per_ip < cells


def histogram_blocker(params: ModelParams, scenario: PopulationScenario) -> str | None:
    """Why the histogram engine cannot run `params`, or None when it can."""
    if scenario.has_per_session_randomness:
        return f"scenario {scenario.name!r} gives each session its own chance (flaky links, churn)"
    if params.pushes_back:
        return "upstreams that push back (queues, latencies) delay each session by its own wait"
    backoff = params.policy().backoff
    if backoff.jitter not in delays.SUPPORTED:
        return f"no exact delay law for jitter {backoff.jitter.value!r}"
    if getattr(backoff, "max_elapsed_s", None) is not None:
        return "a give-up deadline depends on each session's own delays"
    return None


def blocks_of(params: ModelParams, engine: str = "session") -> list[tuple[int, int, int]]:
    """(block index, first session, sessions) — block edges fall on IP-group edges.

    A block holds about `block_sessions` machines: sessions in the per-session engine,
    whole IP groups (one cohort each) in the cohort engine, which has no chance in it, so
    its block layout cannot change a result.
    """
    spi = params.sessions_per_ip
    per_session = engine == "session" or (engine == "histogram" and params.ip_connects_per_s > 0)
    groups = max(1, round(params.block_sessions / spi)) if per_session else params.block_sessions
    size = groups * spi
    return [(b, first, min(size, params.sessions - first))
            for b, first in enumerate(range(0, params.sessions, size))]


def run_block(params: ModelParams, engine: str, block: int, first: int, n: int) -> Tally:
    scenario = resolve(params.scenario, params.outage_s)
    if engine == "histogram":
        return HistogramModel(params, scenario, block, first, n).run()
    model = BlockModel(params, scenario, block, first, n, cohort=engine == "cohort")
    return model.run()


def default_workers(params: ModelParams, engine: str) -> int:
    """One process for small or cohort runs (start-up costs more than it saves), else every core."""
    if engine == "cohort" or params.sessions < 50_000:
        return 1
    return max(1, min(os.cpu_count() or 1, len(blocks_of(params, engine))))


def run(params: ModelParams, *, workers: int | None = None, progress: Progress | None = None,
        scheduler=None) -> RunOutput:
    """Simulate `params`; `workers` local processes (default: see `default_workers`), or the
    blocks on a Dask cluster when `scheduler` (an address or a `distributed.Client`) is given."""
    scenario = resolve(params.scenario, params.outage_s)
    if params.until_s == 0:
        params = params.with_(until_s=scenario.until_s)
    engine, reason = engine_choice(params, scenario)
    blocks = blocks_of(params, engine)
    workers = default_workers(params, engine) if workers is None else workers
    if workers < 1:
        raise ParamError(f"workers must be ≥ 1, got {workers}")
    done = [0]

    def finished(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], params.sessions)

    items = [(run_block, params, engine, b, f, n) for b, f, n in blocks]
    if scheduler is not None:
        from sim.cluster import gather_in_order

        tallies, workers = gather_in_order(_frozen_gc, items, scheduler, lambda i: finished(blocks[i][2]))
    elif workers == 1:
        tallies = []
        for item in items:
            tallies.append(_frozen_gc(*item))
            finished(item[-1])
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_frozen_gc, *item): item[-1] for item in items}
            for future in _as_completed(futures):
                finished(futures[future])
            tallies = [future.result() for future in futures]  # block order, whatever finished first
    return RunOutput(params, scenario, engine, merge(tallies), len(blocks), workers, reason)


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
