"""Reconnect policy as frozen values: backoff with jitter, timeouts and the close-code table.

Owns the numbers and the code → action mapping; shells ask the policy instead of
writing `if attempts > 5`. Must not do I/O or read a clock; randomness comes in as an
injected `random.Random`. Invalid values raise `PolicyError` when the policy is built.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from service.core.codes import CodeTable, build_code_table, code_table
from service.core.errors import PolicyError

class Jitter(str, Enum):
    """How a backoff delay is randomised ("Exponential Backoff And Jitter").

    `none` is the design note's deterministic schedule: easy to reason about, but after a
    shared outage every session retries in the same instant (a thundering herd), so it
    is not suitable for resolving contention between many sessions. `full` spreads
    retries widest and does least work; `equal` keeps a guaranteed minimum wait;
    `decorrelated` grows from the previous delay rather than the attempt number.
    """

    NONE = "none"
    FULL = "full"
    EQUAL = "equal"
    DECORRELATED = "decorrelated"


@dataclass(frozen=True)
class Backoff:
    """Attempt n (1-based) waits min(base_s * factor**(n-1), cap_s), then jitter; at most max_attempts."""

    base_s: float = 2.0
    factor: float = 2.0
    cap_s: float = 32.0
    max_attempts: int = 5
    jitter: Jitter = Jitter.NONE

    def __post_init__(self) -> None:
        _check_number("base_s", self.base_s)
        _check_number("factor", self.factor)
        _check_number("cap_s", self.cap_s)
        if self.base_s <= 0:
            raise PolicyError(f"base_s must be > 0 seconds, got {self.base_s!r}")
        if self.factor < 1:
            raise PolicyError(f"factor must be >= 1 (delays must not shrink), got {self.factor!r}")
        if self.cap_s < self.base_s:
            raise PolicyError(f"cap_s ({self.cap_s!r}) must be >= base_s ({self.base_s!r})")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise PolicyError(f"max_attempts must be a whole number, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise PolicyError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        if not isinstance(self.jitter, Jitter):
            object.__setattr__(self, "jitter", _parse_jitter(self.jitter))

    def exponential_s(self, attempt: int) -> float:
        """The un-jittered delay before attempt `attempt` (1-based), capped at cap_s."""
        if attempt < 1:
            raise PolicyError(f"attempt numbers start at 1, got {attempt!r}")
        try:
            raw_s = self.base_s * self.factor ** (attempt - 1)
        except OverflowError:
            return self.cap_s
        return min(raw_s, self.cap_s)

    def bounds_s(self, attempt: int, previous_s: float | None = None) -> tuple[float, float]:
        """The closed interval every delay for this attempt lies in."""
        exp_s = self.exponential_s(attempt)
        if self.jitter is Jitter.NONE:
            return exp_s, exp_s
        if self.jitter is Jitter.FULL:
            return 0.0, exp_s
        if self.jitter is Jitter.EQUAL:
            return exp_s / 2, exp_s
        prev_s = self.base_s if previous_s is None else previous_s
        return min(self.base_s, self.cap_s), min(self.cap_s, max(self.base_s, prev_s * 3))

    def delay_s(self, attempt: int, rng: random.Random, previous_s: float | None = None) -> float:
        """The delay before attempt `attempt`; `previous_s` feeds decorrelated jitter."""
        exp_s = self.exponential_s(attempt)
        if self.jitter is Jitter.NONE:
            return exp_s
        if self.jitter is Jitter.FULL:
            return rng.uniform(0.0, exp_s)
        if self.jitter is Jitter.EQUAL:
            return exp_s / 2 + rng.uniform(0.0, exp_s / 2)
        prev_s = self.base_s if previous_s is None else previous_s
        return min(self.cap_s, rng.uniform(self.base_s, max(self.base_s, prev_s * 3)))

    def schedule_s(self) -> list[float]:
        """The un-jittered delays of every attempt, e.g. [2, 4, 8, 16, 32] by default."""
        return [self.exponential_s(n) for n in range(1, self.max_attempts + 1)]

    def give_up_after_s(self) -> float:
        """Seconds from the first close to the last attempt, un-jittered (62 s by default)."""
        return math.fsum(self.schedule_s())


@dataclass(frozen=True)
class Timeouts:
    """Connect deadline and keepalive settings; the shells enforce them (B3)."""

    connect_timeout_s: float = 20.0
    keepalive_interval_s: float = 20.0
    keepalive_misses: int = 3
    default_ban_wait_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "keepalive_interval_s", "default_ban_wait_s"):
            value = getattr(self, name)
            _check_number(name, value)
            if value <= 0:
                raise PolicyError(f"{name} must be > 0 seconds, got {value!r}")
        if isinstance(self.keepalive_misses, bool) or not isinstance(self.keepalive_misses, int):
            raise PolicyError(f"keepalive_misses must be a whole number, got {self.keepalive_misses!r}")
        if self.keepalive_misses < 1:
            raise PolicyError(f"keepalive_misses must be >= 1, got {self.keepalive_misses!r}")

    @property
    def dead_link_after_s(self) -> float:
        """A link silent for this long is treated as closed."""
        return self.keepalive_interval_s * self.keepalive_misses


@dataclass(frozen=True)
class Policy:
    """Everything a session's machine decides with: backoff, timeouts, close codes."""

    backoff: Backoff = field(default_factory=Backoff)
    timeouts: Timeouts = field(default_factory=Timeouts)
    codes: CodeTable = field(default_factory=lambda: code_table("original"))

    def scaled(self, time_scale: float) -> Policy:
        """The same policy with every duration multiplied by `time_scale` (e.g. 0.1 for quick runs)."""
        _check_number("time_scale", time_scale)
        if time_scale <= 0:
            raise PolicyError(f"time_scale must be > 0, got {time_scale!r}")
        backoff = replace(self.backoff, base_s=self.backoff.base_s * time_scale,
                          cap_s=self.backoff.cap_s * time_scale)
        timeouts = replace(
            self.timeouts,
            connect_timeout_s=self.timeouts.connect_timeout_s * time_scale,
            keepalive_interval_s=self.timeouts.keepalive_interval_s * time_scale,
            default_ban_wait_s=self.timeouts.default_ban_wait_s * time_scale,
        )
        return replace(self, backoff=backoff, timeouts=timeouts)

    def to_mapping(self) -> dict[str, Any]:
        """A flat mapping that `build_policy` turns back into an equal policy (named tables only)."""
        return {
            "base_s": self.backoff.base_s,
            "factor": self.backoff.factor,
            "cap_s": self.backoff.cap_s,
            "max_attempts": self.backoff.max_attempts,
            "jitter": self.backoff.jitter.value,
            "connect_timeout_s": self.timeouts.connect_timeout_s,
            "keepalive_interval_s": self.timeouts.keepalive_interval_s,
            "keepalive_misses": self.timeouts.keepalive_misses,
            "default_ban_wait_s": self.timeouts.default_ban_wait_s,
            "codes": self.codes.name,
        }


_BACKOFF_KEYS = ("base_s", "factor", "cap_s", "max_attempts", "jitter")
_TIMEOUT_KEYS = ("connect_timeout_s", "keepalive_interval_s", "keepalive_misses", "default_ban_wait_s")


def build_policy(settings: Mapping[str, Any] | None = None) -> Policy:
    """A policy from a flat mapping (flags, TOML or env values); unknown keys and bad values raise.

    Keys: base_s, factor, cap_s, max_attempts, jitter, connect_timeout_s,
    keepalive_interval_s, keepalive_misses, default_ban_wait_s, codes (a table name or
    a custom-table mapping, see `codes.build_code_table`), time_scale.
    """
    settings = dict(settings or {})
    known = {*_BACKOFF_KEYS, *_TIMEOUT_KEYS, "codes", "time_scale"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise PolicyError(f"unknown policy setting(s) {unknown}; known: {sorted(known)}")
    backoff = Backoff(**{k: settings[k] for k in _BACKOFF_KEYS if k in settings})
    timeouts = Timeouts(**{k: settings[k] for k in _TIMEOUT_KEYS if k in settings})
    codes = build_code_table(settings.get("codes", "original"))
    policy = Policy(backoff=backoff, timeouts=timeouts, codes=codes)
    if "time_scale" in settings:
        policy = policy.scaled(settings["time_scale"])
    return policy


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise PolicyError(f"{name} must be finite, got {value!r}")


def _parse_jitter(raw: object) -> Jitter:
    try:
        return Jitter(raw)
    except ValueError:
        known = ", ".join(j.value for j in Jitter)
        raise PolicyError(f"unknown jitter {raw!r}; choose one of: {known}") from None
