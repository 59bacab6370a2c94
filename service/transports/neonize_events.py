"""neonize/whatsmeow events → what they mean for a link: open, closed (with a close code of
the core's `whatsmeow` table), keepalive health, or nothing. Also classifies the error text
of a failed dial.

Owns the one mapping from neonize's protobuf events (`neonize.proto.Neonize_pb2`) to
`LinkClosed` codes, translating neonize's own reason numbering with the core's
`NEONIZE_REASON_TO_CODE` / `NEONIZE_BAN_TO_CODE`. Pure: it reads the message's type name
and fields only, so it never imports neonize (importing neonize configures logging and
loads a Go runtime). Must not do I/O or decide policy: the core's table says what a
code means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from service.core.codes import NEONIZE_BAN_TO_CODE, NEONIZE_REASON_TO_CODE, WHATSMEOW
from service.ports import LinkClosed

OPEN: Literal["open"] = "open"


@dataclass(frozen=True)
class KeepAlive:
    """Keepalive health: degraded info only. The link's dead-link deadline decides a close."""

    code: str  # "KeepAliveTimeout" or "KeepAliveRestored"
    ok: bool
    error_count: int = 0


Mapped = Literal["open"] | LinkClosed | KeepAlive | None


def map_event(event: Any, *, pairing: bool = False) -> Mapped:
    """What one neonize event means for the link; None for events that do not concern it.

    `pairing=False` (a session that already has credentials, i.e. every reconnect): a QR
    request means the credentials are gone, which closes the link with code "QR".
    """
    name = type(event).__name__
    if name == "Connected":
        return OPEN
    if name == "QR":
        return None if pairing else LinkClosed(code="QR", reason="QR requested: credentials lost")
    if name == "KeepAliveTimeout":
        return KeepAlive(code="KeepAliveTimeout", ok=False, error_count=int(event.ErrorCount))
    if name == "KeepAliveRestored":
        return KeepAlive(code="KeepAliveRestored", ok=True)
    closer = _CLOSERS.get(name)
    return closer(event) if closer is not None else None


def _connect_failure(event: Any) -> LinkClosed:
    neonize_reason = int(event.Reason)
    code = NEONIZE_REASON_TO_CODE.get(neonize_reason)
    if code is None:  # a reason this neonize build added later: no code, table default
        return LinkClosed(code="ConnectFailure", reason=f"unknown neonize reason {neonize_reason}")
    close_code = f"ConnectFailure:{code}"
    return LinkClosed(code=close_code, reason=_describe(close_code, str(event.Message)))


def _logged_out(event: Any) -> LinkClosed:
    code = NEONIZE_REASON_TO_CODE.get(int(event.Reason))
    when = "on connect" if event.OnConnect else "while connected"
    return LinkClosed(code="LoggedOut", reason=f"logged out {when} (reason {code})")


def _temporary_ban(event: Any) -> LinkClosed:
    ban_code = NEONIZE_BAN_TO_CODE.get(int(event.Code))
    wait_s = float(event.Expire) if int(event.Expire) > 0 else None
    return LinkClosed(code="TemporaryBan", wait_s=wait_s, reason=f"temporary ban {ban_code}")


def _stream_error(event: Any) -> LinkClosed:
    return LinkClosed(code="StreamError", reason=f"stream error {str(event.Code)[:80]!r}")


def _named(code: str) -> Any:
    return lambda event: LinkClosed(code=code, reason=_describe(code))


def _describe(code: str, extra: str = "") -> str:
    text = str(WHATSMEOW.descriptions.get(code, code))
    return f"{text}: {extra[:120]}" if extra else text


_CLOSERS = {
    "Disconnected": _named("Disconnected"),
    "StreamReplaced": _named("StreamReplaced"),
    "ClientOutdated": _named("ClientOutdated"),
    "LoggedOut": _logged_out,
    "TemporaryBan": _temporary_ban,
    "ConnectFailure": _connect_failure,
    "StreamError": _stream_error,
}

# Event types the worker subscribes to: everything above, by neonize's class names.
SUBSCRIBED_EVENTS = ("Connected", "QR", "KeepAliveTimeout", "KeepAliveRestored", *_CLOSERS)

# ---- failed dials ---------------------------------------------------------------------

# (pattern in the error text of `connect()`, reason) — first match wins. Offline
# failures seen with neonize 0.5.2 (see shared/reference/neonize-notes.md).
_DIAL_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in (
        (r"not allowed by ruleset|general SOCKS server failure|host unreachable|network unreachable",
         "proxy_refused_target"),
        (r"connection refused", "connection_refused"),
        (r"connection reset", "connection_reset"),
        (r"\bEOF\b", "proxy_closed"),
        (r"no such host|server misbehaving", "dns_failure"),
        (r"deadline exceeded|i/o timeout", "dial_timeout"),
    )
)


def classify_dial_error(message: str) -> str:
    """A short, stable reason for a failed `connect()`, from its error text."""
    for pattern, reason in _DIAL_ERRORS:
        if pattern.search(message):
            return reason
    return "dial_error"
