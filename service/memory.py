"""In-memory implementations of the runtime's store ports — status store, leases (with fencing)
and outbox — for fast tests of the shell without servers. The validity rules are not here:
`service.validity.ValidityChain` runs over this store exactly as over the Redis one.

Owns: one process-local `MemoryState` (what Redis holds for the service: statuses, pending
records, lease owners and expiries, fencing counters, outbox entries, seq counters, seen
update ids) and the same semantics as the Redis implementations: fenced writes refused whole
(`FencedWrite`), status + outbox entry + pending record in one write, a retried update keeps
its seq, a new token per acquisition, leases expiring on an injected clock, renewal and release
only by the owner with its token. The outbox is the service's own flusher
(`service.outbox.OutboxFlusher`) over `MemoryQueue`. Must not: be used by the service itself (it is not shared
between processes and does not survive one).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from typing import Any

from service.core import Status
from service.dead_letters import dead_fields, update_fields
from service.errors import FencedWrite
from service.lease import HeldTokens, check_lease_settings
from service.pending import PendingReconnect, pending_mapping
from service.outbox import OutboxFlusher, RawEntry
from service.ports import BackOffice, Outbox, StatusUpdate
from service.keys import check_session_id
from service.store import ValidityCache, check_status_write


@dataclass
class MemoryState:
    """What Redis would hold, shared by the in-memory ports of one test."""

    clock: Callable[[], float] = time.monotonic  # lease expiry
    statuses: dict[str, Status] = field(default_factory=dict)
    pendings: dict[str, PendingReconnect] = field(default_factory=dict)
    fences: dict[str, int] = field(default_factory=dict)  # session → its current fencing token
    leases: dict[str, tuple[str, float]] = field(default_factory=dict)  # session → (owner, expires at)
    outbox: list[tuple[str, StatusUpdate, float]] = field(default_factory=list)  # (entry id, update, appended at)
    dead: list[dict[Any, Any]] = field(default_factory=list)  # dead letters, with why
    seqs: dict[str, int] = field(default_factory=dict)
    update_seqs: dict[str, int] = field(default_factory=dict)  # update_id → its seq (idempotency)
    _entry_ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def fence_allows(self, session_id: str, token: int | None) -> None:
        """Raise `FencedWrite` unless the write is unfenced or carries the session's token."""
        if token is not None and self.fences.get(session_id) != token:
            now = self.fences.get(session_id)
            raise FencedWrite(session_id, token, "" if now is None else str(now))

    def append(self, update: StatusUpdate) -> int:
        """Append `update` once (a repeat of its `update_id` returns the seq it got); its seq."""
        known = self.update_seqs.get(update.update_id)
        if known is not None:
            return known
        seq = self.seqs.get(update.session_id, 0) + 1
        self.seqs[update.session_id] = seq
        self.update_seqs[update.update_id] = seq
        stored = StatusUpdate(update.update_id, update.session_id, update.status, update.priority, seq, update.at_s)
        self.outbox.append((f"{next(self._entry_ids)}-0", stored, self.clock()))
        return seq

    def lease_owner(self, session_id: str) -> str | None:
        entry = self.leases.get(session_id)
        if entry is None:
            return None
        if self.clock() >= entry[1]:
            del self.leases[session_id]
            return None
        return entry[0]


class MemoryStatusStore:
    """`service.ports.StatusStore` in memory."""

    def __init__(self, state: MemoryState | None = None, *, cache: ValidityCache | None = None,
                 outbox: Outbox | None = None) -> None:
        self.state = state if state is not None else MemoryState()
        self.cache = cache
        self.outbox = outbox

    async def get_status(self, session_id: str, *, mark_started: PendingReconnect | None = None,
                         fence: int | None = None) -> Status | None:
        check_session_id(session_id)
        if mark_started is not None:
            await self.save_pending(session_id, mark_started, fence=fence)
        return self.state.statuses.get(session_id)

    async def set_status(self, session_id: str, status: Status, *, outbox_update: StatusUpdate | None = None,
                         pending: PendingReconnect | None = None, clear_pending: bool = False,
                         fence: int | None = None) -> StatusUpdate | None:
        status, _ = check_status_write(session_id, status, outbox_update, pending, clear_pending)
        self.clear_cache(session_id)
        self.state.fence_allows(session_id, fence)
        seq = 0 if outbox_update is None else self.state.append(outbox_update)
        self.state.statuses[session_id] = status
        if pending is not None:
            self.state.pendings[session_id] = pending
        elif clear_pending:
            self.state.pendings.pop(session_id, None)
        if outbox_update is None:
            return None
        stored = StatusUpdate(outbox_update.update_id, session_id, status, outbox_update.priority, seq,
                              outbox_update.at_s)
        if self.outbox is not None:
            self.outbox.notify(stored)
        return stored

    async def save_pending(self, session_id: str, pending: PendingReconnect | None, *,
                           fence: int | None = None) -> None:
        check_session_id(session_id)
        if pending is not None:
            pending_mapping(pending)  # a bad record raises before anything is written
        self.state.fence_allows(session_id, fence)
        if pending is None:
            self.state.pendings.pop(session_id, None)
        else:
            self.state.pendings[session_id] = pending

    async def pending(self, session_id: str) -> PendingReconnect | None:
        return self.state.pendings.get(check_session_id(session_id))

    def clear_cache(self, session_id: str) -> None:
        if self.cache is not None:
            self.cache.forget(session_id)


class MemoryLeases(HeldTokens):
    """`service.ports.Leases` in memory: leases expire `ttl_s` after they were taken or renewed,
    on the state's clock; every acquisition takes a new fencing token."""

    def __init__(self, state: MemoryState, owner_id: str, *, ttl_s: float) -> None:
        check_lease_settings(owner_id, ttl_s)
        self.state = state
        self.owner_id = owner_id
        self.ttl_s = float(ttl_s)
        self._tokens: dict[str, int] = {}
        self.lost = 0

    async def acquire(self, session_id: str) -> bool:
        owner = self.state.lease_owner(check_session_id(session_id))
        if owner is not None and owner != self.owner_id:
            self.forget(session_id)
            return False
        token = self.state.fences.get(session_id, 0) + 1
        self.state.fences[session_id] = token
        self.state.leases[session_id] = (self.owner_id, self.state.clock() + self.ttl_s)
        self._tokens[session_id] = token
        return True

    async def renew(self, session_ids: Iterable[str], tokens: Mapping[str, int] | None = None) -> set[str]:
        tokens = self._tokens if tokens is None else tokens
        held: set[str] = set()
        for session_id in dict.fromkeys(session_ids):
            token = tokens.get(check_session_id(session_id))
            if (self.state.lease_owner(session_id) == self.owner_id
                    and (token is None or self.state.fences.get(session_id) == token)):
                self.state.leases[session_id] = (self.owner_id, self.state.clock() + self.ttl_s)
                held.add(session_id)
            elif self.forget(session_id):
                self.lost += 1
        return held

    async def release(self, session_id: str) -> bool:
        self.forget(check_session_id(session_id))
        if self.state.lease_owner(session_id) != self.owner_id:
            return False
        del self.state.leases[session_id]
        return True


class MemoryQueue:
    """`service.outbox.OutboxQueue` over `MemoryState.outbox` (entries as the stream's fields)."""

    def __init__(self, state: MemoryState) -> None:
        self.state = state
        self.round_trips = 0

    async def read(self, count: int) -> list[RawEntry]:
        self.round_trips += 1
        return [(entry_id, update_fields(update)) for entry_id, update, _ in self.state.outbox[:count]]

    async def delete(self, entry_ids: list[str]) -> None:
        self.round_trips += 1
        gone = set(entry_ids)
        self.state.outbox = [entry for entry in self.state.outbox if entry[0] not in gone]

    async def move_dead(self, entries: list[RawEntry], reason: str, detail: list[str]) -> None:
        self.round_trips += 1
        for (entry_id, fields), why in zip(entries, detail):
            self.state.dead.append(dead_fields(fields, entry_id, reason, why))
        gone = {entry_id for entry_id, _ in entries}
        self.state.outbox = [entry for entry in self.state.outbox if entry[0] not in gone]

    async def depth(self) -> int:
        return len(self.state.outbox)

    async def oldest_age_s(self, now_s: float) -> float:
        """On the state's clock (`now_s`, the wall clock, is not comparable with it)."""
        if not self.state.outbox:
            return 0.0
        return max(0.0, self.state.clock() - self.state.outbox[0][2])


class MemoryOutbox(OutboxFlusher):
    """`service.ports.Outbox` in memory: the service's own flusher over `MemoryQueue`."""

    def __init__(self, state: MemoryState, backoffice: BackOffice, **options: Any) -> None:
        super().__init__(MemoryQueue(state), backoffice, **options)
