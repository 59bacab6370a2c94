"""Close-code tables: which close codes and client events are retried, and how.

Four named tables are data here: `original` (the design note's: 401, 405, 428 terminal;
the default), `baileys` (Baileys' DisconnectReason), `whatsmeow` (neonize/whatsmeow
events and ConnectFailure reasons) and `baileys_readme` (only 401 terminal, as the
README example of Baileys reconnects). Custom tables are built from a mapping with clear
errors. Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from service.core.errors import PolicyError

CloseCode = int | str | None

class Action(str, Enum):
    """What a close code means for the session."""

    RECONNECT = "reconnect"  # back off, count an attempt
    RECONNECT_NOW = "reconnect_now"  # reconnect at once, not counted (e.g. restart required)
    TERMINAL = "terminal"  # never retry: mark inactive, drop
    WAIT_UNTIL = "wait_until"  # temporary ban: wait for its expiry, then retry uncounted


@dataclass(frozen=True)
class CodeTable:
    """Close code or client event → action; codes not listed get `default`."""

    name: str
    actions: Mapping[int | str, Action]
    default: Action = Action.RECONNECT
    descriptions: Mapping[int | str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # private plain-dict copies: immutable by convention, and picklable for worker processes
        object.__setattr__(self, "actions", dict(self.actions))
        object.__setattr__(self, "descriptions", dict(self.descriptions))

    def __hash__(self) -> int:
        return hash((self.name, self.default, tuple(sorted(self.actions.items(), key=str))))

    def action_for(self, code: CloseCode) -> Action:
        """The action for `code`; a code-less close (None) gets the default."""
        if code is None:
            return self.default
        return self.actions.get(code, self.default)

    def terminal_codes(self) -> list[int | str]:
        """Every code this table never retries."""
        return [code for code, action in self.actions.items() if action is Action.TERMINAL]


_T, _R, _N, _W = Action.TERMINAL, Action.RECONNECT, Action.RECONNECT_NOW, Action.WAIT_UNTIL

ORIGINAL = CodeTable(
    name="original",
    actions={401: _T, 405: _T, 428: _T},
    descriptions={
        401: "unauthorised",
        405: "bad or corrupted credentials",
        428: "logged out (as the design note names it)",
    },
)

BAILEYS = CodeTable(
    name="baileys",
    actions={
        401: _T, 403: _T, 405: _T, 411: _T, 440: _T,
        408: _R, 428: _R, 500: _R, 503: _R,
        515: _N,
    },
    descriptions={
        401: "loggedOut",
        403: "forbidden",
        405: "client outdated",
        411: "multidevice mismatch",
        440: "connection replaced: retrying makes two devices fight forever",
        408: "timed out / connection lost",
        428: "connection closed",
        500: "bad session",
        503: "unavailable service",
        515: "restart required: reconnect at once, not counted",
    },
)

WHATSMEOW = CodeTable(
    name="whatsmeow",
    actions={
        "Disconnected": _R,
        "StreamError": _R,
        "KeepAliveTimeout": _R,
        "LoggedOut": _T,
        "StreamReplaced": _T,
        "ClientOutdated": _T,
        "QR": _T,
        "TemporaryBan": _W,
        "ConnectFailure:400": _R,
        "ConnectFailure:401": _T,
        "ConnectFailure:402": _W,
        "ConnectFailure:403": _T,
        "ConnectFailure:405": _T,
        "ConnectFailure:406": _T,
        "ConnectFailure:409": _T,
        "ConnectFailure:500": _R,
        "ConnectFailure:501": _R,
        "ConnectFailure:503": _R,
    },
    descriptions={
        "Disconnected": "the link dropped: stop whatsmeow's own loop, then our backoff",
        "StreamError": "stream error: treated as a drop",
        "KeepAliveTimeout": "keepalives failing: treated as a drop once the dead-link deadline passes",
        "LoggedOut": "logged out; the device store is already deleted",
        "StreamReplaced": "another instance holds the session",
        "ClientOutdated": "terminal until the library is upgraded",
        "QR": "a reconnecting session asked for a QR: credentials lost",
        "TemporaryBan": "wait until the ban expires, then retry",
        "ConnectFailure:400": "generic failure",
        "ConnectFailure:401": "logged out",
        "ConnectFailure:402": "temporarily banned",
        "ConnectFailure:403": "main device gone",
        "ConnectFailure:405": "client outdated (terminal until upgrade)",
        "ConnectFailure:406": "unknown logout",
        "ConnectFailure:409": "bad user agent",
        "ConnectFailure:500": "internal server error",
        "ConnectFailure:501": "experimental",
        "ConnectFailure:503": "service unavailable",
    },
)

# Baileys' README example reconnects on every close except DisconnectReason.loggedOut (401).
BAILEYS_README = CodeTable(
    name="baileys_readme",
    actions={401: _T},
    descriptions={401: "loggedOut: the only close Baileys' README example does not reconnect on"},
)

TABLES: Mapping[str, CodeTable] = MappingProxyType(
    {table.name: table for table in (ORIGINAL, BAILEYS, WHATSMEOW, BAILEYS_README)}
)

# neonize numbers its LoggedOut/ConnectFailure reasons and TemporaryBan codes differently
# from whatsmeow; these translate them (see shared/reference/neonize-notes.md).
NEONIZE_REASON_TO_CODE: Mapping[int, int] = MappingProxyType(
    {1: 400, 2: 401, 3: 402, 4: 403, 5: 406, 6: 405, 7: 409, 8: 500, 9: 501, 10: 503}
)
NEONIZE_BAN_TO_CODE: Mapping[int, int] = MappingProxyType({1: 101, 2: 102, 3: 103, 4: 104, 5: 106})


def code_table(name: str) -> CodeTable:
    """A named table: `original` (default), `baileys`, `whatsmeow` or `baileys_readme`."""
    try:
        return TABLES[name]
    except KeyError:
        known = ", ".join(sorted(TABLES))
        raise PolicyError(f"unknown close-code table {name!r}; choose one of: {known}") from None


def build_code_table(spec: str | Mapping[str, Any] | CodeTable) -> CodeTable:
    """A table from a name, or from {"name", "base", "default", "codes": {code: action}}.

    Codes given as digit strings (as TOML keys are) become integers, so "4000" matches
    a numeric close code 4000.
    """
    if isinstance(spec, CodeTable):
        return spec
    if isinstance(spec, str):
        return code_table(spec)
    if not isinstance(spec, Mapping):
        raise PolicyError(f"codes must be a table name or a mapping, got {type(spec).__name__}")
    unknown = set(spec) - {"name", "base", "default", "codes"}
    if unknown:
        raise PolicyError(f"unknown keys in custom close-code table: {sorted(unknown)}")
    base = code_table(spec.get("base", "original"))
    actions: dict[int | str, Action] = dict(base.actions)
    for raw_code, raw_action in dict(spec.get("codes", {})).items():
        actions[_parse_code(raw_code)] = _parse_action(raw_action, raw_code)
    default = _parse_action(spec.get("default", base.default.value), "default")
    return CodeTable(name=str(spec.get("name", "custom")), actions=actions, default=default,
                     descriptions=base.descriptions)


def _parse_code(raw: object) -> int | str:
    if isinstance(raw, bool):
        raise PolicyError(f"close code must be a number or an event name, got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip():
        text = raw.strip()
        return int(text) if text.isdigit() else text
    raise PolicyError(f"close code must be a number or an event name, got {raw!r}")


def _parse_action(raw: object, code: object) -> Action:
    try:
        return Action(raw)
    except ValueError:
        known = ", ".join(a.value for a in Action)
        raise PolicyError(f"unknown action {raw!r} for code {code!r}; choose one of: {known}") from None
