"""`DueWork`: the one interface through which long stretches of I/O work hand due reconnect
timers on — socket callbacks of a transport, the store's and the outbox's per-tick
pipelines, a session's ordered writes.

Why: asyncio runs a due timer's callback only after every callback queued before it in the
current pass, and in a storm one pass holds thousands. Whoever runs such a stretch calls
`run_due_now()` between its steps, so a due timer waits for one step, not the whole pass.
The owner of the timers (`service.runtime.drivers.ReconnectTimers`) implements it.
Owns: the shape of that interface and `NO_DUE_WORK` (nothing is due: for a part used on
its own). Must not: import anything of the runtime (transports import this module).
"""

from __future__ import annotations

from typing import Protocol


class DueWork(Protocol):
    """Something with timers that may have fallen due."""

    def run_due_now(self) -> None:
        """Fire whatever is due at the running loop's time. Never raises; cheap when nothing
        is due (one comparison), so it may be called before every step of I/O work."""


class _NoDueWork:
    def run_due_now(self) -> None:
        return None


NO_DUE_WORK: DueWork = _NoDueWork()
