"""The histogram engine: sessions lumped by state and due time on a grid, split by jitter, merged again.

Sessions in the same machine state, attempt, upstream history (the IP group too when
WhatsApp limits per IP) and due cell of a time grid of `grid_s` seconds are one *lump*: one
`service.core.SessionMachine` standing for all of them (a `sim.model.Unit` with a count).
When a lump's machine schedules a jittered reconnect, the lump is split over the grid by an
exact multinomial draw from the jitter's distribution (`sim.delays`); lumps that land in the
same cell in the same state merge again. Work grows with occupied cells, not sessions.
The grid's cell is `ModelParams.histogram_grid_s` (base_s / 200 unless `grid_s` says).

Cell j holds due times in [j·grid_s, (j+1)·grid_s) and fires at its centre, so a fault on
the grid (t = 1 s, 121 s, …) falls between cells, never inside one; a lump's time is off by
at most grid_s / 2 per wait, unbiased. Decorrelated jitter draws from the previous delay, so
its lumps are keyed by the previous delay's cell too. The machine still draws its own delay
(from the block's stream) and decides everything else; the shell places the lump by the law
instead of by that draw. Per-session chance (flaky links, churn) cannot be lumped:
`sim.engine` falls back to the per-session engine for it. Must not do I/O.
"""

from __future__ import annotations

import math
import random

import numpy as np
from simpy.events import Timeout

from service.core import Jitter
from service.core.events import BackoffElapsed, ScheduleReconnect
from sim import delays
from sim.model import BlockModel, Unit, _processes
from sim.params import ModelParams
from sim.population import PopulationScenario

_ELAPSED = BackoffElapsed()
_LAW_CACHE_SIZE = 4_096
_MAX_POOL_CELLS = 8_000_000  # a pool's count array: 64 MB at most


class Lump(Unit):
    """A unit that waits in a grid cell; `previous_delay_s` is the realised (grid) delay."""

    __slots__ = ("due_cell", "previous_delay_s")

    def __init__(self, machine, count: int, ip: int, proc: int) -> None:
        super().__init__(machine, count, ip, proc)
        self.due_cell: int | None = None
        self.previous_delay_s: float | None = None

    def split(self, count: int) -> Lump:
        twin = super().split(count)
        twin.previous_delay_s = self.previous_delay_s
        return twin


class Lumps(dict):
    """The live lumps in creation order: a dict, so a merged lump leaves in O(1); `append` as a list's."""

    made = 0  # lumps ever made (the machines simulated)

    def append(self, lump: Lump) -> None:
        self[lump] = None
        self.made += 1


class Pool:
    """Sessions in one state waiting on the grid: `lump` stands for all of them (its count is
    their total) and `counts[cell]` says how many are due in each cell."""

    __slots__ = ("lump", "counts", "beyond", "key")

    def __init__(self, lump: Lump, counts: np.ndarray, key: tuple) -> None:
        self.lump, self.counts, self.beyond, self.key = lump, counts, 0, key


class HistogramModel(BlockModel):
    """Sessions [first, first + n) of a run as lumps on a time grid, in their own SimPy environment."""

    def __init__(self, params: ModelParams, scenario: PopulationScenario, block: int, first: int, n: int,
                 *, trace: bool = False) -> None:
        self.grid_s = params.histogram_grid_s
        self.per_ip = params.ip_connects_per_s > 0
        self.gen = np.random.default_rng([params.seed, block, 0x6869])
        self.draws = random.Random(f"{params.seed}:{block}:grid")
        self.cells: dict[int, dict] = {}
        self.resuming = False
        self._laws: dict[tuple, tuple[int, np.ndarray]] = {}
        super().__init__(params, scenario, block, first, n, cohort=True, trace=trace)
        self.backoff = self.policy.backoff
        self.keyed_by_previous = self.backoff.jitter is Jitter.DECORRELATED
        n_cells = math.ceil(params.until_s / self.grid_s) + 1
        dense = not self.per_ip and not self.keyed_by_previous and n_cells <= _MAX_POOL_CELLS
        self.pools: dict[tuple, Pool] | None = {} if dense else None
        self.pool_list: list[Pool] = []
        self.occupied = np.zeros(n_cells if dense else 0, dtype=bool)

    def _make_units(self, first: int, n: int) -> Lumps:
        """One lump per IP group when WhatsApp limits per IP, else one per gateway process."""
        spi, procs = self.params.sessions_per_ip, _processes(self.scenario)
        lumps, by_key = Lumps(), {}
        ip, end = first // spi, first + n
        while ip * spi < end:
            count = min(end, (ip + 1) * spi) - max(first, ip * spi)
            key = ip if self.per_ip else ip % procs
            lump = by_key.get(key)
            if lump is None:
                lump = by_key[key] = Lump(self._machine(f"ip{ip}"), 0, ip, ip % procs)
                lumps.append(lump)
            lump.count += count
            ip += 1
        return lumps

    def run(self):
        tally = super().run()
        tally.units = self.units.made
        return tally

    # ---- the grid ----
    def _schedule(self, unit: Lump, command: ScheduleReconnect) -> None:
        unit.timer_token += 1
        unit.pending_attempt = command.attempt
        drawn = command.counted and not self.resuming
        law = delays.law(self.backoff, command.attempt, unit.previous_delay_s) if drawn else delays.point(command.delay_s)
        now = self.env.now
        cached = self._cells_of(law, now) if unit.count > delays.FEW else None
        cells, counts = law.split(unit.count, now, self.grid_s, self.gen, self.draws, cached)
        if self.pools is not None:
            self._pool(unit, np.array(cells, dtype=np.int64), np.array(counts, dtype=np.int64), now)
        else:
            self._place(unit, cells, counts, now, command.counted)

    # ---- dense pools: few states (no per-IP lumps, no previous-delay keys) ----
    def _pool(self, unit: Lump, cells: np.ndarray, counts: np.ndarray, now: float) -> None:
        """Add the unit's sessions to the pool of its state: one count array over the grid's cells."""
        key = self._key(unit)
        pool = self.pools.get(key)
        if pool is not None and (pool.lump.dropped is not None or self._key(pool.lump) != key):
            pool = None  # its lump changed state since (a fault): a fresh pool, the old one keeps firing
        if pool is None:
            pool = self.pools[key] = Pool(unit, np.zeros(len(self.occupied), dtype=np.int64), key)
            self.pool_list.append(pool)
        else:
            pool.lump.count += unit.count
            unit.count, unit.dropped = 0, "merged"
            del self.units[unit]
        inside = cells < len(self.occupied)
        if not inside.all():
            pool.beyond += int(counts[~inside].sum())  # due after the horizon: still reconnecting at the end
            cells, counts = cells[inside], counts[inside]
        pool.counts[cells] += counts
        fresh = cells[~self.occupied[cells]]
        self.occupied[fresh] = True
        for cell in fresh.tolist():
            Timeout(self.env, max(0.0, (cell + 0.5) * self.grid_s - now), cell).callbacks.append(self._on_pool_cell)

    def _on_pool_cell(self, event: Timeout) -> None:
        cell = event.value
        self.tally.timer_events += 1
        now, busy = self.env.now, True
        while busy:  # a lump may land in this very cell again (a wait shorter than half a cell)
            busy = False
            for pool in list(self.pool_list):
                count = int(pool.counts[cell])
                if count:
                    pool.counts[cell] = 0
                    lump = pool.lump.split(count)
                    self.units.append(lump)
                    lump.timer_due_s, busy = now, True
                    self.feed(lump, _ELAPSED)
        self.occupied[cell] = False
        if len(self.pool_list) > 2 * len(self.pools):  # pools replaced after a fault: drop the drained ones
            self.pool_list = [pool for pool in self.pool_list
                              if pool.lump.count or self.pools.get(pool.key) is pool]

    def release_process(self, process: int) -> list:
        """Pools of the process first become lumps with their own due times, so each hands its time left on."""
        for pool in self.pool_list:
            if pool.lump.proc == process and pool.lump.dropped is None:
                self._unpool(pool)
        return super().release_process(process)

    def _unpool(self, pool: Pool) -> None:
        for cell in np.flatnonzero(pool.counts).tolist():
            lump = pool.lump.split(int(pool.counts[cell]))
            lump.timer_due_s = (cell + 0.5) * self.grid_s
            self.units.append(lump)
        pool.counts[:] = 0
        if pool.beyond:
            lump = pool.lump.split(pool.beyond)
            lump.timer_due_s, pool.beyond = self.params.until_s + self.grid_s, 0
            self.units.append(lump)
        pool.lump.dropped = "merged"
        del self.units[pool.lump]

    # ---- sparse buckets: lumps keyed per IP group or by the previous delay ----
    def _cells_of(self, law: delays.DelayLaw, now: float) -> tuple[int, np.ndarray] | None:
        """The law's cell probabilities, cached by the law and `now`'s place within its cell."""
        if law.is_point:
            return None
        base = math.floor(now / self.grid_s)
        key = (law, round(now / self.grid_s - base, 9))
        cached = self._laws.get(key)
        if cached is None:
            if len(self._laws) >= _LAW_CACHE_SIZE:
                self._laws.clear()
            first, p = law.cell_probabilities(now, self.grid_s)
            cached = self._laws[key] = (first - base, p)
        return cached[0] + base, cached[1]

    def _place(self, unit: Lump, cells: list[int], counts: list[int], now: float, sets_previous: bool) -> None:
        """Put the unit's sessions into their cells: merged into an equal lump there, or as a twin."""
        state = self._key(unit)
        own = 0
        for cell, count in zip(cells, counts):
            fire_s = max(now, (cell + 0.5) * self.grid_s)
            previous_s = fire_s - now if sets_previous else unit.previous_delay_s
            keyed = self.keyed_by_previous and previous_s is not None
            key = (state, round(previous_s / self.grid_s) if keyed else None)
            bucket = self.cells.get(cell)
            if bucket is None:
                bucket = self.cells[cell] = {}
                Timeout(self.env, fire_s - now, cell).callbacks.append(self._on_cell)
            existing = bucket.get(key)
            if existing is not None and existing.due_cell == cell and existing.dropped is None \
                    and self._key(existing) == state:
                existing.count += count
                unit.count -= count
                continue
            if own:
                lump = unit.split(count)
                self.units.append(lump)
            else:
                lump, own = unit, count
            lump.due_cell, lump.timer_due_s, lump.previous_delay_s = cell, fire_s, previous_s
            bucket[key if existing is None else (key, id(lump))] = lump
        if not own:  # every session joined an equal lump
            unit.dropped = "merged"
            unit.due_cell = None
            del self.units[unit]
        elif unit.count != own:
            raise AssertionError(f"histogram: a lump holds {unit.count} sessions, its cell {own}")

    def _key(self, lump: Lump) -> tuple:
        return (lump.machine.state_key(), lump.ip if self.per_ip else None, lump.proc, lump.socket_open,
                lump.pending_attempt, lump.episode_s, lump.disrupted, lump.opening_attempt,
                tuple(lump.acct_times), lump.acct_locked_until_s, lump.link_down, lump.deleted, lump.status)

    def _on_cell(self, event: Timeout) -> None:
        cell = event.value
        bucket = self.cells.pop(cell)
        self.tally.timer_events += 1
        for lump in list(bucket.values()):
            if lump.due_cell == cell and lump.dropped is None:
                lump.due_cell = None
                self.feed(lump, _ELAPSED)

    def _cancel(self, unit: Lump, command) -> None:
        unit.timer_token += 1
        unit.due_cell = None

    def _opened(self, unit: Lump):
        unit.previous_delay_s = None  # the machine forgets its last delay on open, too
        return super()._opened(unit)

    def take_over(self, unit: Lump, handover: tuple[bool, float, int]) -> None:
        """A resumed timer keeps its time left: placed as it is, not drawn again."""
        self.resuming = True
        try:
            super().take_over(unit, handover)
        finally:
            self.resuming = False
