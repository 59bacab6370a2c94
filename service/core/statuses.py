"""Session statuses as stored in Redis, and back-office update priorities."""

from enum import Enum


class Status(str, Enum):
    """A session's status; the values are the strings stored in Redis."""

    ACTIVE = "active"
    CONNECTING = "connecting"
    INACTIVE = "inactive"


class Priority(str, Enum):
    """Priority of a status update queued for the back office; `high` flushes at once."""

    NORMAL = "normal"
    HIGH = "high"


def is_valid_status(status: Status, *, for_reconnect: bool) -> bool:
    """R1: only `active` is valid, unless validating for a reconnect, where `connecting` is too."""
    if status is Status.ACTIVE:
        return True
    return for_reconnect and status is Status.CONNECTING
