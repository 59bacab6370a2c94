"""The seams of the service: one small protocol per kind of I/O (WhatsApp link, status
store, back office). Real implementations live beside them (`transports/`, `store.py`,
`backoffice.py`); in-memory fakes are for the core's unit tests only.

Owns interface shapes and the plain values crossing them; must not do I/O itself.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import NoReturn, Protocol, runtime_checkable

from service.core import Priority, Status


class Secret:
    """A credential, token or password (B8). Deliberately not a `str`: nothing that works on
    text (`+`, slicing, `json.dumps`, `%`/f-strings, `str.join`, pickling) can reach the value;
    `str`, `repr` and `format` show `***`. `reveal()` is the one way in, for the one place
    that must send it. Immutable; equal only to a `Secret` holding the same value."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: "str | Secret") -> None:
        raw = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(raw, str):
            raise TypeError(f"a Secret wraps a str, got {type(value).__name__}")
        object.__setattr__(self, "_value", raw)

    def reveal(self) -> str:
        """The real value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Secret is immutable")

    def __copy__(self) -> "Secret":
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> "Secret":
        return self

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("a Secret is never pickled (it would carry the value in clear); "
                        "pass what the other process needs through its own channel")


@dataclass(frozen=True)
class LinkClosed:
    """How a link ended: a close code or client event name, a ban's wait, and why."""

    code: int | str | None = None
    wait_s: float | None = None
    reason: str = ""


@runtime_checkable
class Link(Protocol):
    """One WhatsApp connection of one session. Never two live at once for a session (R7)."""

    session_id: str

    async def open(self, timeout_s: float) -> None:
        """Open and log in; raise `LinkFailed` on refusal, rejection or after `timeout_s`."""

    async def wait_closed(self) -> LinkClosed:
        """Return once the link has closed: peer close, error, or keepalives dead (code
        "keepalive_timeout")."""

    async def close(self) -> None:
        """Close the link; idempotent; never raises."""


@runtime_checkable
class Transport(Protocol):
    """Makes links to WhatsApp (production: neonize; chaos runs: the `wire` stand-in client)."""

    def new_link(self, session_id: str, credentials: Secret) -> Link: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class StatusUpdate:
    """One status change for the back office. `update_id` is its idempotency key;
    `seq` increases per session, so the receiver can order and de-duplicate."""

    update_id: str
    session_id: str
    status: Status
    priority: Priority
    seq: int
    at_s: float  # wall-clock epoch seconds when the service decided it


@runtime_checkable
class BackOffice(Protocol):
    """The back office that owns accounts (Laravel in the original)."""

    async def is_valid(self, session_id: str) -> bool:
        """Does the account behind this session still exist and is it enabled? Raises
        `BackOfficeError` when it cannot tell."""

    async def send_statuses(self, updates: list[StatusUpdate]) -> set[str]:
        """Deliver a batch; return the update ids it acknowledged. Raises `BackOfficeError`."""


@runtime_checkable
class BatchBackOffice(BackOffice, Protocol):
    """A back office that also answers many sessions' validity in one request."""

    async def validities(self, session_ids: list[str]) -> dict[str, bool]:
        """{session_id: valid} for every id asked. Raises `BackOfficeError`."""
