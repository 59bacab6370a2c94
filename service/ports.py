"""The seams of the service: one small protocol per kind of I/O (WhatsApp link, status
store, back office). Real implementations live beside them (`transports/`, `store.py`,
`backoffice.py`); in-memory fakes are for the core's unit tests only.

Owns interface shapes and the plain values crossing them; must not do I/O itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from service.core import Priority, Status


class Secret(str):
    """A credential or token: a str whose repr and str never show the value (B8)."""

    def __new__(cls, value: str) -> "Secret":
        # re-wrapping must keep the value, not the redacted str() of it
        raw = value.reveal() if isinstance(value, Secret) else value
        return super().__new__(cls, raw)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def reveal(self) -> str:
        """The real value, for the one place that must send it."""
        return str.__str__(self)


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
