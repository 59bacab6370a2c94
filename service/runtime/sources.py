"""Where the list of sessions to run comes from: a file, a range like `s{0..99}` or a comma
list (the forms are parsed in `service.session_ids`).

Owns `SessionSpec` (one session to run) and turning the `sessions` setting into an async
callable returning them. Must not start sessions or talk to Redis.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from service.ports import Secret
from service.session_ids import expand_ids, read_id_file


@dataclass(frozen=True)
class SessionSpec:
    """One session to run: its id and its WhatsApp credentials (never logged)."""

    session_id: str
    credentials: Secret


SessionSource = Callable[[], Awaitable[list[SessionSpec]]]


def make_source(spec: str, credentials: Secret) -> SessionSource:
    """The `sessions` setting → an async callable giving the sessions to run."""
    spec = spec.strip()
    if spec.startswith("@"):
        path = Path(spec[1:])
        read_id_file(path)  # fail at start, not in the lease loop

        async def from_file() -> list[SessionSpec]:
            return [SessionSpec(i, credentials) for i in read_id_file(path)]
        return from_file
    specs = [SessionSpec(i, credentials) for i in expand_ids(spec)]

    async def fixed() -> list[SessionSpec]:
        return specs
    return fixed
