"""What an adopted session's last owner left in Redis (B5), read for the core's `first_event`:
its status, and — only beside `connecting` — its pending record.

Owns: reading those two values and what an unusable one means (counted as malformed, read as
absent: the session then starts afresh and overwrites it). Must not: decide how to resume
(`service.core.recovery.first_event` does).
"""

from __future__ import annotations

from service.core import Status
from service.core.events import Event
from service.core.recovery import first_event
from service.errors import MalformedInput
from service.runtime.context import RunnerContext


async def found_event(ctx: RunnerContext, sid: str) -> tuple[Event | None, Status | None]:
    """The core's first event for `sid` (None: nothing to run) and the status found."""
    try:
        status = await ctx.store.get_status(sid)
    except MalformedInput as err:
        _malformed(ctx, sid, err)
        status = None  # unusable: start afresh, which overwrites it with a real status
    pending = None
    if status is Status.CONNECTING:
        try:
            pending = await ctx.store.pending(sid)
        except MalformedInput as err:
            _malformed(ctx, sid, err)
    return first_event(status, pending, ctx.clock()), status


def _malformed(ctx: RunnerContext, sid: str, err: MalformedInput) -> None:
    ctx.metrics.count_malformed(err.source)
    ctx.log.error("malformed_input", session_id=sid, source=err.source, detail=err.detail)
