"""The service shell's exception hierarchy; each error says what was wrong and what to do.

Core errors (`service.core.errors`) are for policy and transition problems; these are
for the shell's I/O: config, links, Redis, the back office, malformed input.
"""

from service.core.errors import CoreError


class ServiceError(Exception):
    """Base of every error raised by the service shell."""


class ConfigError(ServiceError, ValueError):
    """A setting is invalid; the message names the setting, its source and the fix."""


class StartupError(ServiceError):
    """An upstream the settings name (Redis) cannot be reached at start; try again later."""


class LinkFailed(ServiceError):
    """Opening a WhatsApp link failed: refused, timed out, rejected with a close code."""

    def __init__(self, reason: str, code: int | str | None = None, wait_s: float | None = None) -> None:
        super().__init__(f"link failed: {reason}" + (f" (code {code})" if code is not None else ""))
        self.reason = reason
        self.code = code
        self.wait_s = wait_s


class MalformedInput(ServiceError, ValueError):
    """Bytes from the network, the back office or Redis that do not parse; counted and logged."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"malformed input from {source}: {detail}")
        self.source = source
        self.detail = detail


class BackOfficeError(ServiceError):
    """The back office is down, slow, or answered garbage; the caller retries later.

    `status` is the HTTP status of the reply when there was one (None: no reply, or a reply
    that could not be read); `rejected` says the back office refused the request itself
    (400 or 422: something in what was sent is wrong, resending it unchanged cannot help).
    """

    REJECTED_STATUSES = frozenset({400, 422})

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def rejected(self) -> bool:
        return self.status in self.REJECTED_STATUSES


class StoreError(ServiceError):
    """Redis is unreachable or holds a value the service cannot use."""


class FencedWrite(ServiceError):
    """Redis refused a write because the session's lease has moved to another owner since
    this process took it (B9): nothing was written. Never retried: the session is not ours."""

    def __init__(self, session_id: str, token: int | None, token_now: str) -> None:
        super().__init__(f"write for session {session_id!r} refused: our fencing token is {token}, "
                         f"the session's is now {token_now or 'unset'} (another process owns it)")
        self.session_id = session_id
        self.token = token
        self.token_now = token_now


__all__ = ["BackOfficeError", "ConfigError", "CoreError", "FencedWrite", "LinkFailed", "MalformedInput",
           "ServiceError", "StartupError", "StoreError"]
