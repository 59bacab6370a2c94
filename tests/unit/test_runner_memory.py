"""The shell (`SessionRunner`, `ValidityChain`, the outbox's flusher) on in-memory ports: what it
must do with the core's commands and the answers it gets, in milliseconds and without servers.
The same behaviours against real Redis and sockets: tests/integration/test_service_*.py."""

from __future__ import annotations

import asyncio

from service.core import Status
from service.core.events import Start
from service.memory import MemoryStatusStore
from service.ports import StatusUpdate
from tests.fixtures.memory import Shell, memory_shell, until


class HeldWrites(MemoryStatusStore):
    """A store whose status writes wait while `held` is set, as a slow Redis makes them wait."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()
        self.released.set()

    async def set_status(self, session_id: str, status: Status, **kwargs) -> StatusUpdate | None:  # type: ignore[override]
        await self.released.wait()
        return await super().set_status(session_id, status, **kwargs)


async def started(shell: Shell, session_id: str = "s1"):
    """A runner whose session is open and `active` in the store."""
    runner = shell.runner(session_id)
    await runner.deliver(Start())
    await until(lambda: shell.state.statuses.get(session_id) is Status.ACTIVE, f"{session_id} active")
    return runner


async def test_a_close_clears_the_validity_cache_before_any_write_lands() -> None:
    """R3. The status writes are held (a slow Redis), so only the shell's own `ClearCache` can
    keep a validity answer from before the close from answering the reconnect after it: the
    back office has since deleted the account (its own write to Redis was lost), and the
    reconnect must see that, not the cached yes."""
    store = HeldWrites()
    shell = memory_shell(store=store)
    shell.backoffice.accounts["s1"] = True
    runner = await started(shell)
    store.released.clear()
    shell.transport.close("s1", 503)  # first drop: validated (the cache now says yes), reopened
    await until(lambda: shell.transport.opens.get("s1") == 2 and "s1" in shell.transport.live, "reopened")
    assert shell.backoffice.validity_questions == 1
    shell.backoffice.accounts["s1"] = False
    shell.transport.close("s1", 503)  # second drop: its reconnect must ask afresh
    await until(lambda: "s1" in shell.dropped, "dropped (its Drop carried out)")
    assert shell.dropped["s1"] == "invalid", "the reconnect was answered from a cache the close should have cleared"
    assert shell.transport.opens["s1"] == 2 and shell.backoffice.validity_questions == 2
    store.released.set()
    await until(lambda: shell.state.statuses.get("s1") is Status.INACTIVE, "inactive written once Redis answers")
    await runner.aclose()


async def test_an_invalid_answer_ends_the_session_without_a_socket() -> None:
    """R4: the back office says the account is gone: the reconnect is cancelled, no socket
    opens, `inactive` is the session's last word in the store and to the back office (B10)."""
    shell = memory_shell()
    shell.backoffice.accounts["s1"] = True
    runner = await started(shell)
    shell.backoffice.accounts["s1"] = False
    shell.transport.close("s1", 503)
    await until(lambda: "s1" in shell.dropped, "dropped (its Drop carried out)")
    assert shell.dropped["s1"] == "invalid"
    assert shell.transport.opens["s1"] == 1, "a socket was opened for an invalid session"
    await until(lambda: shell.state.statuses.get("s1") is Status.INACTIVE, "inactive written")
    assert shell.state.pendings.get("s1") is None
    await shell.outbox.drain()
    assert [u.status for u in shell.backoffice.updates("s1")][-1] is Status.INACTIVE
    await runner.aclose()


async def test_a_reconnect_of_a_connecting_session_is_valid() -> None:
    """R1: during a reconnect the session's own `connecting` is valid (a strict question would
    say no and drop every session that ever reconnects)."""
    shell = memory_shell()
    shell.backoffice.accounts["s1"] = True
    runner = await started(shell)
    shell.transport.refusals["s1"] = 1  # attempt 1 fails: attempt 2 is validated with `connecting` stored
    shell.transport.close("s1", 503)
    await until(lambda: shell.transport.opens.get("s1") == 3 and shell.state.statuses.get("s1") is Status.ACTIVE,
                "recovered on attempt 2")
    assert not runner.dropped and shell.dropped == {}
    assert shell.backoffice.validity_questions == 2
    await runner.aclose()


async def test_the_back_office_gets_each_sessions_updates_in_order() -> None:
    """B6: every status a session went through reaches the back office once, in the order the
    session wrote them (seq 1, 2, 3, ...), however the sessions interleave."""
    shell = memory_shell()
    ids = [f"s{i}" for i in range(5)]
    shell.backoffice.accounts.update({sid: True for sid in ids})
    runners = [await started(shell, sid) for sid in ids]
    for sid in ids:
        shell.transport.close(sid, 503)
    await until(lambda: all(shell.transport.opens.get(sid) == 2 for sid in ids)
                and all(shell.state.statuses.get(sid) is Status.ACTIVE for sid in ids), "all recovered")
    await shell.outbox.drain()
    for sid in ids:
        got = shell.backoffice.updates(sid)
        assert [u.seq for u in got] == [1, 2, 3, 4], sid
        assert [u.status for u in got] == [Status.CONNECTING, Status.ACTIVE, Status.CONNECTING, Status.ACTIVE]
    assert len(shell.state.outbox) == 0
    for runner in runners:
        await runner.aclose()
