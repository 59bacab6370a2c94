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
    `decorrelated` grows from the previous delay rather than the attempt number;
    `proportional` moves each delay by up to ±`jitter_ratio` of itself (gRPC, socket.io).
    """

    NONE = "none"
    FULL = "full"
    EQUAL = "equal"
    DECORRELATED = "decorrelated"
    PROPORTIONAL = "proportional"


class Schedule(str, Enum):
    """How the un-jittered delay grows with the attempt number n (1-based)."""

    EXPONENTIAL = "exponential"  # base_s * factor**(n-1)  (the note's, gRPC, socket.io)
    LINEAR = "linear"  # base_s + step_s * (n-1)  (whatsmeow: 0, 2, 4, … s)
    STEPS = "steps"  # steps_s[n-1], the last one repeated  (SignalR, Baileys' README)


UNLIMITED = "unlimited"  # how a policy file spells "no attempt cap"


@dataclass(frozen=True)
class Backoff:
    """The wait before counted attempt n, and when to give up.

    The un-jittered delay follows `schedule` and is capped at `cap_s` (`inf`: no cap);
    `jitter` then randomises it. A session gives up when its attempts reach `max_attempts`
    (None: no cap) or when the next attempt would start more than `max_elapsed_s` after
    the close that began the disconnection (None: no deadline); both may be set.
    """

    base_s: float = 2.0
    factor: float = 2.0
    cap_s: float = 32.0
    max_attempts: int | None = 5
    jitter: Jitter = Jitter.NONE
    max_elapsed_s: float | None = None
    schedule: Schedule = Schedule.EXPONENTIAL
    step_s: float = 0.0
    steps_s: tuple[float, ...] = ()
    jitter_ratio: float = 0.5
    jitter_from_attempt: int = 1
    cap_after_jitter: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.jitter, Jitter):
            object.__setattr__(self, "jitter", _parse_enum(Jitter, self.jitter, "jitter"))
        if not isinstance(self.schedule, Schedule):
            object.__setattr__(self, "schedule", _parse_enum(Schedule, self.schedule, "schedule"))
        for name in ("base_s", "factor", "step_s", "jitter_ratio"):
            _check_number(name, getattr(self, name))
        _check_number("cap_s", self.cap_s, allow_inf=True)
        self._check_schedule()
        if self.cap_s < self.base_s:
            raise PolicyError(f"cap_s ({self.cap_s!r}) must be >= base_s ({self.base_s!r})")
        if self.max_attempts == UNLIMITED:
            object.__setattr__(self, "max_attempts", None)
        if self.max_attempts is not None:
            _check_whole("max_attempts", self.max_attempts, minimum=1, alternative=f" (or {UNLIMITED!r})")
        if self.max_elapsed_s is not None:
            _check_number("max_elapsed_s", self.max_elapsed_s)
            if self.max_elapsed_s <= 0:
                raise PolicyError(f"max_elapsed_s must be > 0 seconds (omit it for no deadline), "
                                  f"got {self.max_elapsed_s!r}")
        if self.jitter is Jitter.DECORRELATED and self.base_s <= 0:
            raise PolicyError("decorrelated jitter grows from base_s, so it needs base_s > 0 "
                              f"(with {self.base_s!r} every delay would be 0)")
        if not 0 < self.jitter_ratio <= 1:
            raise PolicyError(f"jitter_ratio must be in (0, 1], got {self.jitter_ratio!r}")
        _check_whole("jitter_from_attempt", self.jitter_from_attempt, minimum=1)
        if not isinstance(self.cap_after_jitter, bool):
            raise PolicyError(f"cap_after_jitter must be true or false, got {self.cap_after_jitter!r}")

    def _check_schedule(self) -> None:
        if self.schedule is Schedule.EXPONENTIAL and self.base_s <= 0:
            raise PolicyError(f"base_s must be > 0 seconds, got {self.base_s!r}")
        if self.base_s < 0:
            raise PolicyError(f"base_s must be >= 0 seconds, got {self.base_s!r}")
        if self.factor < 1:
            raise PolicyError(f"factor must be >= 1 (delays must not shrink), got {self.factor!r}")
        if self.step_s < 0:
            raise PolicyError(f"step_s must be >= 0 seconds, got {self.step_s!r}")
        if isinstance(self.steps_s, str) or not isinstance(self.steps_s, tuple | list):
            raise PolicyError(f"steps_s must be a list of seconds, got {self.steps_s!r}")
        object.__setattr__(self, "steps_s", tuple(self.steps_s))
        for delay_s in self.steps_s:
            _check_number("steps_s entry", delay_s)
            if delay_s < 0:
                raise PolicyError(f"steps_s entries must be >= 0 seconds, got {delay_s!r}")
        if self.schedule is Schedule.STEPS and not self.steps_s:
            raise PolicyError("schedule 'steps' needs steps_s, e.g. [0, 2, 10, 30]")

    def exponential_s(self, attempt: int) -> float:
        """The un-jittered delay before attempt `attempt` (1-based), capped at cap_s (any schedule)."""
        return min(self._raw_s(attempt), self.cap_s)

    def _raw_s(self, attempt: int) -> float:
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise PolicyError(f"attempt numbers start at 1, got {attempt!r}")
        if self.schedule is Schedule.STEPS:
            return self.steps_s[min(attempt, len(self.steps_s)) - 1]
        if self.schedule is Schedule.LINEAR:
            return self.base_s + self.step_s * (attempt - 1)
        try:
            return self.base_s * self.factor ** (attempt - 1)
        except OverflowError:
            return math.inf

    def bounds_s(self, attempt: int, previous_s: float | None = None) -> tuple[float, float]:
        """The closed interval every delay for this attempt lies in."""
        exp_s = self.exponential_s(attempt)
        if self.jitter is Jitter.NONE or attempt < self.jitter_from_attempt:
            return exp_s, exp_s
        if self.jitter is Jitter.FULL:
            return 0.0, exp_s
        if self.jitter is Jitter.EQUAL:
            return exp_s / 2, exp_s
        if self.jitter is Jitter.PROPORTIONAL:
            centre_s = self._raw_s(attempt) if self.cap_after_jitter else exp_s
            low_s, high_s = centre_s * (1 - self.jitter_ratio), centre_s * (1 + self.jitter_ratio)
            return (min(low_s, self.cap_s), min(high_s, self.cap_s)) if self.cap_after_jitter else (low_s, high_s)
        prev_s = self.base_s if previous_s is None else previous_s
        return min(self.base_s, self.cap_s), min(self.cap_s, max(self.base_s, prev_s * 3))

    def delay_s(self, attempt: int, rng: random.Random, previous_s: float | None = None) -> float:
        """The delay before attempt `attempt`; `previous_s` feeds decorrelated jitter."""
        exp_s = self.exponential_s(attempt)
        if self.jitter is Jitter.NONE or attempt < self.jitter_from_attempt:
            return exp_s
        if self.jitter is Jitter.FULL:
            return rng.uniform(0.0, exp_s)
        if self.jitter is Jitter.EQUAL:
            return exp_s / 2 + rng.uniform(0.0, exp_s / 2)
        if self.jitter is Jitter.PROPORTIONAL:
            centre_s = self._raw_s(attempt) if self.cap_after_jitter else exp_s
            delay_s = centre_s * (1 + rng.uniform(-self.jitter_ratio, self.jitter_ratio))
            return min(delay_s, self.cap_s) if self.cap_after_jitter else delay_s
        prev_s = self.base_s if previous_s is None else previous_s
        return min(self.cap_s, rng.uniform(self.base_s, max(self.base_s, prev_s * 3)))

    def allows(self, attempt: int, starts_after_s: float) -> bool:
        """May counted attempt `attempt` run, starting `starts_after_s` after the disconnection began?"""
        if self.max_attempts is not None and attempt > self.max_attempts:
            return False
        return self.max_elapsed_s is None or starts_after_s <= self.max_elapsed_s

    def schedule_s(self, limit: int = 50) -> list[float]:
        """The un-jittered delays of every attempt the policy makes (at most `limit`),
        e.g. [2, 4, 8, 16, 32] by default; a deadline ends the list where it would."""
        delays: list[float] = []
        elapsed_s = 0.0
        attempt = 1
        while attempt <= limit:
            delay_s = self.exponential_s(attempt)
            if not self.allows(attempt, elapsed_s + delay_s):
                break
            delays.append(delay_s)
            elapsed_s += delay_s
            attempt += 1
        return delays

    @property
    def gives_up(self) -> bool:
        """False when nothing ever stops the retries (no attempt cap, no deadline)."""
        return self.max_attempts is not None or self.max_elapsed_s is not None

    def give_up_after_s(self) -> float:
        """Seconds from the first close to the last attempt, un-jittered (62 s by default; inf if never)."""
        if not self.gives_up:
            return math.inf
        return math.fsum(self.schedule_s(limit=self.max_attempts or 100_000))


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
        b = self.backoff
        backoff = replace(b, base_s=b.base_s * time_scale, cap_s=b.cap_s * time_scale,
                          step_s=b.step_s * time_scale,
                          steps_s=tuple(delay_s * time_scale for delay_s in b.steps_s),
                          max_elapsed_s=None if b.max_elapsed_s is None else b.max_elapsed_s * time_scale)
        timeouts = replace(
            self.timeouts,
            connect_timeout_s=self.timeouts.connect_timeout_s * time_scale,
            keepalive_interval_s=self.timeouts.keepalive_interval_s * time_scale,
            default_ban_wait_s=self.timeouts.default_ban_wait_s * time_scale,
        )
        return replace(self, backoff=backoff, timeouts=timeouts)

    def to_mapping(self) -> dict[str, Any]:
        """A flat mapping that `build_policy` turns back into an equal policy (named tables only);
        TOML-ready: no None values (an absent deadline is left out, no attempt cap is "unlimited")."""
        b, t = self.backoff, self.timeouts
        mapping: dict[str, Any] = {
            "schedule": b.schedule.value,
            "base_s": b.base_s,
            "factor": b.factor,
            "step_s": b.step_s,
            "steps_s": list(b.steps_s),
            "cap_s": b.cap_s,
            "max_attempts": UNLIMITED if b.max_attempts is None else b.max_attempts,
            "jitter": b.jitter.value,
            "jitter_ratio": b.jitter_ratio,
            "jitter_from_attempt": b.jitter_from_attempt,
            "cap_after_jitter": b.cap_after_jitter,
            "connect_timeout_s": t.connect_timeout_s,
            "keepalive_interval_s": t.keepalive_interval_s,
            "keepalive_misses": t.keepalive_misses,
            "default_ban_wait_s": t.default_ban_wait_s,
            "codes": self.codes.name,
        }
        if b.max_elapsed_s is not None:
            mapping["max_elapsed_s"] = b.max_elapsed_s
        return mapping


_BACKOFF_KEYS = ("base_s", "factor", "cap_s", "max_attempts", "jitter", "max_elapsed_s", "schedule",
                 "step_s", "steps_s", "jitter_ratio", "jitter_from_attempt", "cap_after_jitter")
_TIMEOUT_KEYS = ("connect_timeout_s", "keepalive_interval_s", "keepalive_misses", "default_ban_wait_s")


def build_policy(settings: Mapping[str, Any] | None = None) -> Policy:
    """A policy from a flat mapping (flags, TOML or env values); unknown keys and bad values raise.

    Keys: preset (a named starting point, see `service.core.presets`; later keys override
    it), schedule, base_s, factor, step_s, steps_s, cap_s, max_attempts (a number or
    "unlimited"), max_elapsed_s, jitter, jitter_ratio, jitter_from_attempt,
    cap_after_jitter, connect_timeout_s, keepalive_interval_s, keepalive_misses,
    default_ban_wait_s, codes (a table name or a custom-table mapping, see
    `codes.build_code_table`), time_scale.
    """
    from service.core.presets import preset_settings

    settings = dict(settings or {})
    known = {*_BACKOFF_KEYS, *_TIMEOUT_KEYS, "codes", "time_scale", "preset"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise PolicyError(f"unknown policy setting(s) {unknown}; known: {sorted(known)}")
    if "preset" in settings:
        settings = {**preset_settings(settings.pop("preset")), **settings}
    backoff = Backoff(**{k: settings[k] for k in _BACKOFF_KEYS if k in settings})
    timeouts = Timeouts(**{k: settings[k] for k in _TIMEOUT_KEYS if k in settings})
    codes = build_code_table(settings.get("codes", "original"))
    policy = Policy(backoff=backoff, timeouts=timeouts, codes=codes)
    if "time_scale" in settings:
        policy = policy.scaled(settings["time_scale"])
    return policy


def _check_number(name: str, value: object, allow_inf: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{name} must be a number, got {value!r}")
    if math.isnan(value) or (math.isinf(value) and not (allow_inf and value > 0)):
        raise PolicyError(f"{name} must be finite, got {value!r}")


def _check_whole(name: str, value: object, minimum: int, alternative: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{name} must be a whole number{alternative}, got {value!r}")
    if value < minimum:
        raise PolicyError(f"{name} must be >= {minimum}, got {value!r}")


def _parse_enum(kind: type[Enum], raw: object, name: str) -> Any:
    try:
        return kind(raw)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise PolicyError(f"unknown {name} {raw!r}; choose one of: {known}") from None
