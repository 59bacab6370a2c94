"""The validation chain (R1, R3, R4): "may this session still (re)connect?", answered from the
in-process cache, then the status store, then the back office — one implementation of the
rules, over any `service.ports.StatusStore` (Redis or in memory).

Owns every branch of the chain, over the store's positive-answer cache (`service.store.ValidityCache`,
whose entry for a session every close and every status write drops):
- Cache: only positive answers are cached, for `ttl_s`; the store's `clear_cache` (R3, every
  close) and every status write drop the session's entry. An entry made while `connecting` (valid only for a
  reconnect) never answers a strict question.
- Store: R1 — `active` is valid, and `connecting` too when `for_reconnect`. Other statuses,
  or a value that does not parse (`MalformedInput`, counted by the store, logged here) are
  not valid: we cannot confirm the session, so we fail closed. A *missing* status during a
  reconnect (Redis lost its data: a restart without persistence, a failover to an empty
  replica) is not a verdict: the back office, which owns the accounts, decides (counted in
  `missing_status`); if it cannot answer either, `StoreError` is raised so the caller
  retries rather than dropping every session that reconnects after a Redis wipe.
- Back office, asked only when the store says valid: it owns the accounts, so if it says the
  account is gone or disabled, *invalid wins* (counted in `backoffice_vetoes`). If it is
  unreachable (`BackOfficeError`), the store's answer stands — a back-office outage must not
  drop every session that reconnects during it — counted in `backoffice_unreachable`; that
  answer is not cached, so the next validation asks again.
- Budget (R4 within a bound): every back-office question waits at most `backoffice_budget_s`
  (None: as long as the client's own timeout). A later answer is not waited for: it counts
  as unreachable (also in `backoffice_budget_expired`).
Must not: decide what to do with the answer (the core does), talk to Redis itself (the store
does), or remember negative answers.
"""

from __future__ import annotations

from service.core import Status
from service.core.statuses import is_valid_status
from service.deadlines import deadline
from service.errors import BackOfficeError, ConfigError, MalformedInput, StoreError
from service.logging import get_logger
from service.pending import PendingReconnect, pending_mapping
from service.ports import BackOffice, StatusStore
from service.store import ValidityCache

log = get_logger(component="validity")


def _check_number(name: str, value: object, *, low: float, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value < float("inf"):
        raise ConfigError(f"validity {name} must be a finite number >= {low:g}, got {value!r}")


class ValidityChain:
    """`is_session_active` (the `service.ports.Validity` port) over a store."""

    def __init__(self, store: StatusStore, backoffice: BackOffice, cache: ValidityCache, *,
                 backoffice_budget_s: float | None = None) -> None:
        _check_number("backoffice_budget_s", backoffice_budget_s, low=0.0, allow_none=True)
        if backoffice_budget_s == 0:
            raise ConfigError("validity backoffice_budget_s must be > 0 or None, got 0")
        self.store = store
        self.backoffice = backoffice
        self.cache = cache
        self.backoffice_budget_s = None if backoffice_budget_s is None else float(backoffice_budget_s)
        self.backoffice_vetoes = 0
        self.backoffice_unreachable = 0
        self.backoffice_budget_expired = 0
        self.missing_status = 0  # reconnect validations that found no status in the store

    @property
    def cache_hits(self) -> int:
        return self.cache.hits

    async def is_session_active(self, session_id: str, *, for_reconnect: bool = False,
                                mark_started: PendingReconnect | None = None, fence: int | None = None) -> bool:
        """R1/R4: cache → store → back office (module docstring). `mark_started` (a pending
        record with `started_at_s`) is saved with the store read, fenced: the validation
        of an attempt is where it starts, so a restart knows it was spent (B5). Raises
        `StoreError` only when the store cannot be read, `FencedWrite` when the mark was refused."""
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"session_id must be a non-empty str, got {session_id!r}")
        if mark_started is not None:
            pending_mapping(mark_started)  # a bad record raises before anything is asked
        if self.cache.answers(session_id, for_reconnect):
            if mark_started is not None:
                await self.store.save_pending(session_id, mark_started, fence=fence)
            return True
        try:
            # the mark goes in the read's request: one entry of a store's per-tick batch
            status = await self.store.get_status(session_id, mark_started=mark_started, fence=fence)
        except MalformedInput as err:
            log.warning("status_malformed", session_id=session_id, detail=err.detail)
            return False
        return await self._judge(session_id, status, for_reconnect)

    async def _judge(self, session_id: str, status: Status | None, for_reconnect: bool) -> bool:
        """The rest of the chain once the store answered `status` (R1, then the back office)."""
        if status is None and for_reconnect:
            return await self._ask_backoffice_without_status(session_id)
        if status is None or not is_valid_status(status, for_reconnect=for_reconnect):
            return False
        try:
            backoffice_ok = await self._ask_backoffice(session_id)
        except BackOfficeError as err:
            self.backoffice_unreachable += 1
            log.warning("validation_backoffice_unreachable",
                        session_id=session_id, redis_status=status.value, error=str(err))
            return True
        if not backoffice_ok:
            self.backoffice_vetoes += 1
            return False
        self.cache.remember(session_id, strict_ok=status is Status.ACTIVE)
        return True

    async def _ask_backoffice(self, session_id: str) -> bool:
        """The back office's answer within the budget; past it, a `BackOfficeError`."""
        if self.backoffice_budget_s is None:
            return await self.backoffice.is_valid(session_id)
        try:
            async with deadline(self.backoffice_budget_s):
                return await self.backoffice.is_valid(session_id)
        except TimeoutError:
            self.backoffice_budget_expired += 1
            raise BackOfficeError(f"back office gave no validity answer for {session_id!r} within the "
                                  f"R4 budget of {self.backoffice_budget_s:g} s") from None

    async def _ask_backoffice_without_status(self, session_id: str) -> bool:
        self.missing_status += 1
        try:
            valid = await self._ask_backoffice(session_id)
        except BackOfficeError as err:
            self.backoffice_unreachable += 1
            raise StoreError(f"no status in Redis for {session_id!r} and the back office cannot tell "
                             f"({err}); retry once either answers") from err
        log.warning("validation_without_redis_status", session_id=session_id, backoffice_valid=valid)
        return valid

