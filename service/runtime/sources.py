"""Where the list of sessions to run comes from: the back office's accounts, a file, a
range like `s{0..99}` or a comma list.

Owns parsing the `sessions` setting into an async callable returning `SessionSpec`s, with
errors naming what is wrong. Must not start sessions or talk to Redis.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from service.errors import ConfigError
from service.ports import Secret
from service.runtime.gateway import SessionSource, SessionSpec

_RANGE = re.compile(r"^(?P<prefix>[^{}]*)\{(?P<start>\d+)\.\.(?P<end>\d+)\}(?P<suffix>[^{}]*)$")
_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")
MAX_RANGE = 1_000_000


def check_session_id(session_id: str, where: str) -> str:
    if not _ID.match(session_id):
        raise ConfigError(f"session id {session_id!r} from {where} is invalid: use 1-128 of A-Z a-z 0-9 _ . : @ + -")
    return session_id


def expand_ids(text: str) -> list[str]:
    """`s{0..2}` → [s0, s1, s2]; `a,b` → [a, b]; raises `ConfigError` naming the problem."""
    text = text.strip()
    match = _RANGE.match(text)
    if match:
        start, end = int(match["start"]), int(match["end"])
        if end < start or end - start + 1 > MAX_RANGE:
            raise ConfigError(f"sessions range {text!r} must have start <= end and at most {MAX_RANGE} ids")
        return [check_session_id(f"{match['prefix']}{n}{match['suffix']}", "the sessions range")
                for n in range(start, end + 1)]
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise ConfigError("setting 'sessions' is empty: give 'backoffice', '@FILE', 'PREFIX{A..B}' or 'id1,id2'")
    return [check_session_id(i, "the sessions list") for i in ids]


def read_id_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ConfigError(f"sessions file {str(path)!r} cannot be read: {err.strerror}") from None
    ids = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [check_session_id(i, f"file {path}") for i in ids]


def make_source(spec: str, credentials: Secret, backoffice: Any = None) -> SessionSource:
    """The `sessions` setting → an async callable giving the sessions to run."""
    spec = spec.strip()
    if spec == "backoffice":
        lister = getattr(backoffice, "list_accounts", None)
        if lister is None:
            raise ConfigError("sessions = 'backoffice' needs a back-office client with list_accounts(); "
                              "this one has none: give the sessions as '@FILE', 'PREFIX{A..B}' or 'id1,id2'")

        async def from_backoffice() -> list[SessionSpec]:
            accounts = await lister()
            return [SessionSpec(check_session_id(str(a), "the back office"), credentials) for a in accounts]
        return from_backoffice
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
