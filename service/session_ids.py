"""The `sessions` setting's text forms and session ids: `PREFIX{A..B}` ranges, `id1,id2`
lists and `@FILE` files (one id per line), parsed with errors naming what is wrong.

Owns the id alphabet and the spec grammar, so the settings can reject a bad spec at start
(exit 2) and the runtime's source reads the same thing. Must not start sessions; reads a
file only when asked to.
"""

from __future__ import annotations

import re
from pathlib import Path

from service.errors import ConfigError

_RANGE = re.compile(r"^(?P<prefix>[^{}]*)\{(?P<start>\d{1,9})\.\.(?P<end>\d{1,9})\}(?P<suffix>[^{}]*)$")
_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")
MAX_RANGE = 1_000_000
FORMS = "'@FILE' (one id per line), 'PREFIX{A..B}' (a range, e.g. s{0..99}) or 'id1,id2,...'"


def check_session_id(session_id: str, where: str) -> str:
    if not _ID.match(session_id):
        shown = session_id if len(session_id) <= 40 else session_id[:40] + "..."
        raise ConfigError(f"session id {shown!r} from {where} is invalid: use 1-128 of A-Z a-z 0-9 _ . : @ + -")
    return session_id


def check_spec(spec: str) -> str:
    """The spec, stripped, once its form is right (a file is read later); raises `ConfigError`."""
    text = spec.strip()
    if text == "backoffice":
        raise ConfigError(f"'backoffice' is not a sessions source: the back-office API has no account "
                          f"listing; give {FORMS}")
    if text.startswith("@"):
        if not text[1:].strip() or "\x00" in text:
            raise ConfigError(f"'@' must be followed by a file path; give {FORMS}")
        return text
    if "{" in text or "}" in text:
        match = _RANGE.match(text)
        if match is None:
            raise ConfigError(f"{text[:60]!r} is not a range like s{{0..99}}: give {FORMS}")
        start, end = int(match["start"]), int(match["end"])
        if end < start or end - start + 1 > MAX_RANGE:
            raise ConfigError(f"range {text!r} must have start <= end and at most {MAX_RANGE} ids")
        check_session_id(f"{match['prefix']}{end}{match['suffix']}", "the sessions range")
        return text
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise ConfigError(f"is empty: give {FORMS}")
    for session_id in ids:
        check_session_id(session_id, "the sessions list")
    return text


def expand_ids(text: str) -> list[str]:
    """`s{0..2}` → [s0, s1, s2]; `a,b` → [a, b]; raises `ConfigError` naming the problem."""
    text = check_spec(text)
    match = _RANGE.match(text)
    if match:
        return [f"{match['prefix']}{n}{match['suffix']}" for n in range(int(match["start"]), int(match["end"]) + 1)]
    return [part.strip() for part in text.split(",") if part.strip()]


def read_id_file(path: Path) -> list[str]:
    """The ids in a sessions file (blank lines and `#` comments skipped); raises `ConfigError`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise ConfigError(f"sessions file {str(path)[:200]!r} cannot be read: {reason}") from None
    ids = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [check_session_id(i, f"file {path}") for i in ids]
