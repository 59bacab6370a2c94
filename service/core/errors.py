"""The core's exception hierarchy: each error says what was wrong and what to do."""


class CoreError(Exception):
    """Base of every error raised by `service.core`."""


class PolicyError(CoreError, ValueError):
    """A policy parameter or close-code table is invalid; fix the configuration value named."""


class IllegalTransition(CoreError):
    """An event arrived in a state that does not accept it; the machine's state is unchanged."""

    def __init__(self, session_id: str, state: str, event: str) -> None:
        super().__init__(
            f"session {session_id!r}: event {event} is not allowed in state {state}; "
            "the state is unchanged (the shell delivered a stale or duplicate event)"
        )
        self.session_id = session_id
        self.state = state
        self.event = event
