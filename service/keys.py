"""Redis key names shared by the service, the back office (which writes statuses when an
account is deleted) and the stand-ins. One place, so nobody spells a key twice."""

PREFIX = "rl"


def status_key(session_id: str) -> str:
    """The session's status string (`active` / `connecting` / `inactive`), shared with the back office."""
    return f"{PREFIX}:status:{session_id}"


def session_key(session_id: str) -> str:
    """Hash of the service's reconnect bookkeeping: attempt, due_at, owner (B5)."""
    return f"{PREFIX}:session:{session_id}"


def lease_key(session_id: str) -> str:
    """The owning process id, with a TTL (B4)."""
    return f"{PREFIX}:lease:{session_id}"


def fence_key(session_id: str) -> str:
    """The session's fencing token: a counter incremented on every lease acquisition (B9)."""
    return f"{PREFIX}:fence:{session_id}"


OUTBOX_KEY = f"{PREFIX}:outbox"  # pending back-office updates, kept until acknowledged (B6)


def seq_key(session_id: str) -> str:
    """Per-session counter (INCR) giving each back-office update its `seq` (B6)."""
    return f"{PREFIX}:seq:{session_id}"


OUTBOX_DEAD_KEY = f"{PREFIX}:outbox:dead"  # outbox entries that could not be decoded, kept for a person to read


def update_id_key(update_id: str) -> str:
    """The seq assigned to one back-office update, so a retried append is a no-op (B6)."""
    return f"{PREFIX}:outbox:id:{update_id}"
