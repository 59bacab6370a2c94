"""The gateway: many `SessionRunner`s in one process, their leases, start-up recovery and stop.

Owns: which sessions this process runs (a session runs here only while this process
holds its lease, B4), the lease loop (renew what we hold, give up locally what we lost or
cannot renew in time, adopt free sessions — e.g. those of a dead process), the first event
of each adopted session (B5: read by `runtime/resume.py` for the core's `first_event`), and
graceful stop; failed status writes are repaired by `runtime/repairs.py`. Must not decide attempts, delays, validity or how to
resume: the core does, from what the gateway found.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from service.core import DropReason, ReleaseReason, Status
from service.core.events import Released
from service.errors import StoreError
from service.ports import Leases, Outbox
from service.runtime.context import RunnerContext
from service.runtime.repairs import StatusRepairs
from service.runtime.resume import found_event
from service.runtime.runner import SessionRunner
from service.runtime.sources import SessionSource, SessionSpec

SETTLED_REASONS = frozenset(DropReason)  # drops that keep the lease


class Gateway:
    """Runs the sessions of `source` that this process can lease."""

    def __init__(self, ctx: RunnerContext, *, lease: Leases, outbox: Outbox | None,
                 source: SessionSource, start_concurrency: int = 500,
                 lease_margin_s: float | None = None, renewer: Leases | None = None) -> None:
        """`renewer`: the same owner's leases on their own Redis connections, so renewals
        never queue behind adoption or session traffic (defaults to `lease`)."""
        self.ctx = ctx
        self.lease = lease
        self.renewer = renewer if renewer is not None else lease
        self.outbox = outbox
        self.source = source
        self.start_concurrency = start_concurrency
        self.runners: dict[str, SessionRunner] = {}
        self.settled: dict[str, Status | None] = {}  # leased here, not running (inactive/dropped)
        self.lease_interval_s = lease.ttl_s / 5
        self.lease_margin_s = lease.ttl_s / 4 if lease_margin_s is None else lease_margin_s
        self._lease_deadline: dict[str, float] = {}  # monotonic: when our lease surely ends
        self._specs: list[SessionSpec] = []
        self._adopting: set[str] = set()  # sessions between "lease acquired" and "runner made"
        self._stopping = asyncio.Event()
        self._lease_task: asyncio.Task[None] | None = None
        self._sweep: asyncio.Task[None] | None = None  # the one adoption sweep in progress
        self._repairs = StatusRepairs(ctx.log)
        self._log = ctx.log
        ctx.on_drop = self._on_drop
        ctx.on_fenced = self._on_fenced
        self._fenced_tasks: set[asyncio.Task[None]] = set()
        self.adopted = 0
        self.released = 0

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the outbox and the lease loop, then adopt every session we can lease. The
        loop runs from the start: adopting 10^4 sessions can outlast the lease TTL."""
        if self.outbox is not None:
            self.outbox.start()
        self._lease_task = asyncio.get_running_loop().create_task(self._lease_loop(), name="lease-loop")
        await self._refresh_specs()
        await self.adopt(self._specs)
        self._log.info("gateway_started", sessions=len(self.runners), settled=len(self.settled),
                       known=len(self._specs))

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Release every session (status untouched), give the leases up, flush the outbox."""
        self._stopping.set()
        for task in (self._lease_task, self._sweep):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        runners = list(self.runners.values())
        owned = sorted(set(self._lease_deadline) | set(self.runners) | set(self.settled))
        try:
            await asyncio.wait_for(self._release_runners(runners, ReleaseReason.SHUTDOWN), timeout_s)
        except asyncio.TimeoutError:
            self._log.error("stop_timeout", stage="release_sessions", timeout_s=timeout_s)
        self.settled.clear()
        try:
            await asyncio.wait_for(self._bounded(owned, self._release_lease), timeout_s)
        except (asyncio.TimeoutError, StoreError) as err:
            self._log.error("stop_lease_release_failed", error=repr(err))
        await self._flush_outbox(timeout_s)
        self.ctx.timeline.flush()
        self._log.info("gateway_stopped", released=len(owned))

    async def _flush_outbox(self, timeout_s: float) -> None:
        if self.outbox is None:
            return
        try:
            await asyncio.wait_for(self.outbox.drain(), timeout_s)
        except Exception as err:  # noqa: BLE001 - what is not flushed stays in Redis (B6)
            self._log.warning("stop_outbox_not_drained", error=repr(err))
        await self.outbox.stop()

    # ---- adopting sessions -----------------------------------------------------------------

    async def adopt(self, specs: Iterable[SessionSpec]) -> int:
        """Lease and start each spec not already ours; returns how many were adopted."""
        todo = [s for s in specs if s.session_id not in self.runners and s.session_id not in self.settled
                and s.session_id not in self._adopting]
        before = self.adopted
        await self._bounded(todo, self._adopt_one)
        return self.adopted - before

    async def _adopt_one(self, spec: SessionSpec) -> None:
        sid = spec.session_id
        if self._stopping.is_set() or sid in self.runners or sid in self.settled or sid in self._adopting:
            return
        self._adopting.add(sid)  # no await since the check: one adoption per session at a time
        try:
            await self._adopt_leased(spec)
        finally:
            self._adopting.discard(sid)

    async def _adopt_leased(self, spec: SessionSpec) -> None:
        sid = spec.session_id
        started = time.monotonic()
        try:
            if not await self.lease.acquire(sid):
                return
        except StoreError as err:
            self._log.warning("lease_acquire_failed", session_id=sid, error=str(err))
            return
        self._lease_deadline[sid] = started + self.lease.ttl_s
        try:
            event, status = await found_event(self.ctx, sid)
        except Exception as err:  # noqa: BLE001 - cannot tell how to resume: let the lease go, retry later
            if not isinstance(err, StoreError):  # a bug or an input no check foresaw: counted, and contained
                self.ctx.metrics.command_errors.labels(command="adopt").inc()
            self._log.warning("adopt_failed", session_id=sid, error=str(err)[:300], error_type=type(err).__name__)
            await self._release_lease(sid)
            return
        if sid not in self._lease_deadline or self._stopping.is_set():
            return  # the lease was lost (or we are stopping) while we looked
        self.adopted += 1
        if event is None:
            self.settled[sid] = status
            self.ctx.metrics.status_changed(None, status)
            self._log.info("session_settled", session_id=sid, status=status.value if status else None)
            return
        runner = SessionRunner(sid, spec.credentials, self.ctx, status=status, fence=self.lease.token(sid))
        self.runners[sid] = runner
        self.ctx.metrics.status_changed(None, status)
        await runner.deliver(event)

    def _on_drop(self, runner: SessionRunner, reason: str) -> None:
        sid = runner.session_id
        self._repairs.dropped(runner)
        if self.runners.get(sid) is runner:
            del self.runners[sid]
        if reason in SETTLED_REASONS and not self._stopping.is_set():
            self.settled[sid] = runner.status
        else:
            self.ctx.metrics.status_changed(runner.status, None)
            self._lease_deadline.pop(sid, None)

    # ---- leases (B4) --------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self.lease_interval_s)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await self.lease_round()
            except Exception as err:  # noqa: BLE001 - the loop must outlive any one failure
                self._log.error("lease_round_failed", error=repr(err), exc_info=True)

    async def lease_round(self) -> None:
        """Renew; let go of what we lost or could not renew in time; adopt free sessions."""
        local = list(self._lease_deadline)  # every lease we took: running, settled or being adopted
        started = time.monotonic()
        try:
            # a saturated loop makes the renew slow, not wrong: wait up to half a TTL for it
            renewed = await asyncio.wait_for(self.renewer.renew(local, self.lease.tokens()), self.lease.ttl_s / 2)
        except (StoreError, asyncio.TimeoutError) as err:
            self._log.warning("lease_renew_failed", error=repr(err), held=len(local))
            renewed = None
        if renewed is not None:
            for sid in renewed:
                if sid in self._lease_deadline:  # not dropped while the renew was in flight
                    self._lease_deadline[sid] = started + self.lease.ttl_s
            lost = [sid for sid in local if sid not in renewed]
        else:  # renew failed: stop, before Redis lets another process in, what may expire soon
            now = time.monotonic()
            lost = [sid for sid in local if self._lease_deadline.get(sid, 0.0) - now < self.lease_margin_s]
        if lost:
            await self._let_go(lost)
        self.ctx.metrics.leases.set(len(self.runners) + len(self.settled))
        if self._sweep is None or self._sweep.done():  # adoption never delays the next renewal
            self._sweep = asyncio.get_running_loop().create_task(self._adoption_sweep(), name="adoption-sweep")

    async def _adoption_sweep(self) -> None:
        try:
            await self.repair_statuses()
            await self._refresh_specs()
            await self.adopt(self._specs)
        except Exception as err:  # noqa: BLE001 - the next round sweeps again
            self._log.error("adoption_sweep_failed", error=repr(err), exc_info=True)

    async def repair_statuses(self) -> None:
        """Retry status writes that failed, so Redis and the back office converge (B6)."""
        await self._repairs.sweep(list(self.runners.values()), list(self.settled), self._bounded)

    def _on_fenced(self, runner: SessionRunner) -> None:
        """A runner's write was refused (B9): if its token is still the one this process holds
        for the session, the session is another process's now; let it go at once, writing
        nothing (the next lease round would find it lost too)."""
        sid = runner.session_id
        if runner.fence is None or runner.fence != self.lease.token(sid) or self._stopping.is_set():
            return
        self.lease.forget(sid)
        task = asyncio.get_running_loop().create_task(self._let_go([sid]), name=f"fenced-{sid}")
        self._fenced_tasks.add(task)
        task.add_done_callback(self._fenced_tasks.discard)

    async def _let_go(self, session_ids: list[str]) -> None:
        self._log.warning("leases_lost", count=len(session_ids), sample=session_ids[:5])
        for sid in session_ids:
            self.lease.forget(sid)
            if sid not in self.runners and sid not in self.settled:
                self._lease_deadline.pop(sid, None)  # being adopted: `_adopt_leased` sees it gone
                continue
            status = self.settled.pop(sid, None)
            if status is not None:
                self.ctx.metrics.status_changed(status, None)
            self._lease_deadline.pop(sid, None)
        runners = [self.runners[s] for s in session_ids if s in self.runners]
        await self._release_runners(runners, ReleaseReason.LEASE_LOST)

    async def _release_runners(self, runners: list[SessionRunner], reason: str) -> None:
        async def release(runner: SessionRunner) -> None:
            await runner.deliver(Released(reason=reason))
            await runner.aclose()
            self.released += 1
        await self._bounded(runners, release)

    async def _release_lease(self, sid: str) -> None:
        self._lease_deadline.pop(sid, None)
        try:
            await self.lease.release(sid)
        except StoreError as err:
            self._log.warning("lease_release_failed", session_id=sid, error=str(err))

    async def _refresh_specs(self) -> None:
        try:
            self._specs = await self.source()
        except Exception as err:  # noqa: BLE001 - keep the last good list; say why
            self._log.error("session_source_failed", error=str(err), error_type=type(err).__name__)

    async def _bounded(self, items: Iterable[Any], work: Callable[[Any], Awaitable[None]]) -> None:
        """Run `work` on every item with at most `start_concurrency` at once."""
        semaphore = asyncio.Semaphore(self.start_concurrency)

        async def one(item: Any) -> None:
            async with semaphore:
                await work(item)
        await asyncio.gather(*(one(item) for item in items))

    # ---- read-only views ----------------------------------------------------------------------

    def sync_link_counters(self) -> None:
        """Fold per-link counters (malformed frames) into the metrics."""
        for runner in list(self.runners.values()):
            runner.sync_link_counters()

    def owned(self) -> set[str]:
        return set(self.runners) | set(self.settled)

    def health(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for runner in self.runners.values():
            states[runner.machine.state.value] = states.get(runner.machine.state.value, 0) + 1
        return {"ok": not self._stopping.is_set(), "owner_id": self.lease.owner_id,
                "sessions": len(self.runners), "settled": len(self.settled), "states": states}

