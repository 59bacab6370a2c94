"""Chaos actions carried out by the WhatsApp stand-in itself, so that what they cause is seen from outside.

`StandinRefusing` is a link down whose attempts reach the stand-in (it closes the sessions'
sockets with a code and refuses every hello: each attempt is a recorded connect and
refusal, where a disabled proxy would refuse it unseen); `KeepaliveSilence` stops the
stand-in answering the sessions' pings (a dead link found by keepalives, B3, with the old
socket still open at the stand-in, so R7 is judged there). Frozen values at real
timings; must not do I/O (`bindings.py` binds them to the stand-in's admin API).
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.scenarios import ScenarioError


def _check_window(what: str, start_s: float, end_s: float) -> None:
    if not 0 <= start_s < end_s:
        raise ScenarioError(f"{what}: window [{start_s!r}, {end_s!r}) is empty or negative")


@dataclass(frozen=True)
class StandinRefusing:
    """The stand-in closes the sessions' sockets with `code` and refuses every hello in [start_s, end_s)."""

    start_s: float
    end_s: float
    code: int = 503

    def __post_init__(self) -> None:
        _check_window("stand-in refusing", self.start_s, self.end_s)
        if not 100 <= self.code <= 999:
            raise ScenarioError(f"stand-in refusing: code must be a WhatsApp code 100..999, got {self.code!r}")

    def scaled(self, k: float) -> StandinRefusing:
        return StandinRefusing(self.start_s * k, self.end_s * k, self.code)


@dataclass(frozen=True)
class KeepaliveSilence:
    """The stand-in answers none of the sessions' pings in [start_s, end_s) (their sockets stay open)."""

    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        _check_window("keepalive silence", self.start_s, self.end_s)

    def scaled(self, k: float) -> KeepaliveSilence:
        return KeepaliveSilence(self.start_s * k, self.end_s * k)
