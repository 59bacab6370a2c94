"""A tiny pure driver for the core's unit tests: feed (t, event) pairs, collect commands.

Not a shell: it carries nothing out. It answers `OpenSocket` and `Validate` from a
script so the tests can state a whole scenario as data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.core import SessionMachine, build_policy
from service.core.events import (
    BackoffElapsed, Closed, Command, Emit, Event, Opened, OpenSocket, ScheduleReconnect,
    StartFailed, Validate, Validated,
)


@dataclass
class Run:
    machine: SessionMachine
    commands: list[tuple[float, Command]] = field(default_factory=list)

    def of(self, kind: type) -> list[tuple[float, Command]]:
        return [(t, c) for t, c in self.commands if isinstance(c, kind)]

    def events(self) -> list[str]:
        return [c.record.event for _, c in self.of(Emit)]


def drive(machine: SessionMachine, start: Event, *, link_up_at_s: float = 0.0,
          valid_until_s: float = float("inf"), until_s: float = 1_000.0) -> Run:
    """Run one session: sockets open iff t >= link_up_at_s, validation ok iff t < valid_until_s.

    Timers fire at their due time; everything else answers instantly.
    """
    run = Run(machine)
    queue: list[tuple[float, Event]] = [(0.0, start)]
    while queue:
        queue.sort(key=lambda item: item[0])
        now, event = queue.pop(0)
        if now > until_s:
            break
        for command in machine.handle(event, now):
            run.commands.append((now, command))
            if isinstance(command, ScheduleReconnect):
                queue.append((now + command.delay_s, BackoffElapsed()))
            elif isinstance(command, Validate):
                queue.append((now, Validated(ok=now < valid_until_s)))
            elif isinstance(command, OpenSocket):
                queue.append((now, Opened() if now >= link_up_at_s else StartFailed("refused")))
    return run


def open_session(session_id: str = "s1", **policy) -> SessionMachine:
    machine = SessionMachine(session_id, build_policy(policy))
    from service.core.events import Start
    machine.handle(Start(), 0.0)
    machine.handle(Opened(), 0.0)
    return machine


def close(code=None) -> Closed:
    return Closed(code=code)
