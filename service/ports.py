"""The seams of the service: one small protocol per kind of I/O — WhatsApp link, back office,
and the four ports the runtime keeps its state behind (status store, validity, outbox,
leases), one method per operation. Real implementations live beside them (`transports/`,
`backoffice.py`, `store.py`, `validity.py`, `outbox.py`, `lease.py`); the in-memory ones
(`service.memory`) carry the same semantics, for fast tests of the shell without servers.

Owns interface shapes and the plain values crossing them; must not do I/O itself.
"""

from __future__ import annotations

import hmac
import itertools
import os
import time
import uuid
from dataclasses import dataclass
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NoReturn, Protocol, runtime_checkable

from service.core import Priority, Status

if TYPE_CHECKING:
    from service.pending import PendingReconnect


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

    @classmethod
    def trusted(cls, update_id: str, session_id: str, status: Status, priority: Priority, seq: int,
                at_s: float) -> StatusUpdate:
        """The update of these values, already of their types: for the outbox, which makes
        hundreds a batch (a frozen dataclass's `__init__` sets each field through
        `object.__setattr__`: ~3x the time)."""
        update = _new(cls)
        fields = update.__dict__
        fields["update_id"] = update_id
        fields["session_id"] = session_id
        fields["status"] = status
        fields["priority"] = priority
        fields["seq"] = seq
        fields["at_s"] = at_s
        return update


_new = object.__new__
ENUM_TEXT: dict[Status | Priority, str] = {member: member.value for member in (*Status, *Priority)}  # `.value` is slow on an Enum
_id_prefix = ""
_id_count = itertools.count()


def _new_update_ids() -> None:
    """This process's update ids: 80 random bits, new in every process (a forked child too),
    then a count (`next` of a count is atomic: threads never share an id), unique like a uuid4
    each for a fraction of its cost (no urandom call, no UUID made)."""
    global _id_prefix, _id_count
    _id_prefix, _id_count = uuid.uuid4().hex[:20], itertools.count()


_new_update_ids()
os.register_at_fork(after_in_child=_new_update_ids)


def new_update(session_id: str, status: Status, priority: Priority = Priority.NORMAL,
               *, at_s: float | None = None) -> StatusUpdate:
    """A fresh update with a unique `update_id` (32 hex digits); its `seq` (0 here) is assigned
    by Redis on append."""
    if not isinstance(session_id, str) or not session_id:
        raise ValueError(f"session_id must be a non-empty str, got {session_id!r}")
    return StatusUpdate.trusted(f"{_id_prefix}{next(_id_count):012x}", session_id,
                                status if type(status) is Status else Status(status),
                                priority if type(priority) is Priority else Priority(priority),
                                0, time.time() if at_s is None else at_s)


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


@runtime_checkable
class StatusStore(Protocol):
    """Each session's status (shared with the back office) and its B5 reconnect record. Every
    write may carry the session's fencing token (`fence`, B9): once another process has taken
    the session, nothing is written and `FencedWrite` is raised. Failures to reach the store
    raise `StoreError`; a stored value that does not parse raises `MalformedInput`."""

    async def get_status(self, session_id: str, *, mark_started: PendingReconnect | None = None,
                         fence: int | None = None) -> Status | None:
        """The session's status, None if there is none. With `mark_started`, that reconnect
        record is saved with the read, as one request (B5: an attempt starts in its validation);
        `FencedWrite` when the save was refused."""

    async def set_status(self, session_id: str, status: Status, *, outbox_update: StatusUpdate | None = None,
                         pending: PendingReconnect | None = None, clear_pending: bool = False,
                         fence: int | None = None) -> StatusUpdate | None:
        """Write the status and, all or nothing, append `outbox_update` to the outbox (B6) and
        save (`pending`) or delete (`clear_pending`) the reconnect record (B5). Returns the
        update as stored, with its per-session `seq`. Retry a failed write with the same
        update: its `update_id` makes a repeat harmless."""

    async def save_pending(self, session_id: str, pending: PendingReconnect | None, *,
                           fence: int | None = None) -> None:
        """Replace the session's reconnect record with `pending` (None: delete it)."""

    async def pending(self, session_id: str) -> PendingReconnect | None:
        """The session's reconnect record, None if there is none."""

    def clear_cache(self, session_id: str) -> None:
        """R3: forget any validity answer remembered for the session (every close; every status
        write does it too)."""


@runtime_checkable
class Validity(Protocol):
    """R1/R3/R4: may this session still (re)connect? (`service.validity.ValidityChain`)."""

    async def is_session_active(self, session_id: str, *, for_reconnect: bool = False,
                                mark_started: PendingReconnect | None = None, fence: int | None = None) -> bool:
        """Valid for a strict question (`active`) or a reconnect (`connecting` too)? With
        `mark_started`, that record is saved with the read (B5). Raises `StoreError` when it
        cannot tell, `FencedWrite` when the mark was refused."""


@runtime_checkable
class Outbox(Protocol):
    """The durable queue of status updates for the back office (B6). Updates enter it with the
    status write that made them (`StatusStore.set_status`); it delivers them in append order,
    at least once, and forgets each only once the back office acknowledged it."""

    def notify(self, update: StatusUpdate) -> None:
        """An update was committed: wake the flusher (at once for `high`, else when a batch is full)."""

    def start(self) -> None:
        """Start the flusher task; it first delivers what an earlier process left."""

    async def drain(self) -> None:
        """Deliver batches until the queue is empty; raises on failure."""

    async def stop(self, *, timeout_s: float = 10.0) -> bool:
        """Stop the flusher; what is not delivered stays queued. False if it did not stop in time."""


@runtime_checkable
class Leases(Protocol):
    """Session ownership for several processes sharing one store (B4), with a fencing token
    per acquisition (B9). A process never extends or deletes a lease another one holds."""

    owner_id: str
    ttl_s: float

    async def acquire(self, session_id: str) -> bool:
        """Take the lease if free (or ours: extended) with a new fencing token; True if held."""

    def token(self, session_id: str) -> int | None:
        """The fencing token of our acquisition of `session_id` (None: not ours)."""

    def tokens(self) -> Mapping[str, int]:
        """Every token we hold, by session."""

    def forget(self, session_id: str) -> bool:
        """Drop our local record of the lease and its token; True if we had one."""

    async def renew(self, session_ids: Iterable[str], tokens: Mapping[str, int] | None = None) -> set[str]:
        """Extend those we still own with the token we took; return them, forget the rest."""

    async def release(self, session_id: str) -> bool:
        """Give the lease up if it is still ours; True if it was."""
