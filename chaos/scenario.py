"""The chaos scenario value: a pure fault schedule from `sim.scenarios` plus chaos-only actions.

A `ChaosScenario` wraps one `sim.scenarios.Scenario` (the shared vocabulary: link down,
close with a code, account deleted — what the simulation can replay) and adds what only
a real run can do: toxics and disabled proxies on a named upstream, a Redis restart, a
service kill, an account deactivation, how many sessions, the policy settings, the
expected outcome and the timing tolerance. Everything is a frozen value at the note's
real timings; `scaled(k)` gives the quick-loop version. Must not do I/O: `bindings.py`
turns each fault into a real action, `runner.py` runs it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chaos.standin_actions import KeepaliveSilence, StandinRefusing
from chaos.toxiproxy import TOXIC_ATTRIBUTES
from service.core import Policy, PolicyError, Status, build_policy
from sim.scenarios import AccountDeleted, CloseWith, Expected, Fault, LinkDown, Scenario, ScenarioError

UPSTREAMS = ("whatsapp", "redis", "backoffice")
TOXIC_KINDS = tuple(sorted(TOXIC_ATTRIBUTES))
# Toxic attributes that are durations (milliseconds; slicer's `delay` is microseconds):
# they scale with the scenario. Sizes and rates do not.
_DURATION_ATTRIBUTES = {"latency", "jitter", "timeout", "delay"}
PREDICTION_MODES = ("exact", "none")
MIN_SCALE = 0.01


class ChaosScenarioError(ScenarioError):
    """A chaos scenario is malformed; the message names the scenario and the field."""


def _check_upstream(upstream: str) -> None:
    if upstream not in UPSTREAMS:
        raise ChaosScenarioError(f"unknown upstream {upstream!r}; known: {', '.join(UPSTREAMS)}")


def _check_window(what: str, start_s: float, end_s: float) -> None:
    if not 0 <= start_s < end_s:
        raise ChaosScenarioError(f"{what}: window [{start_s!r}, {end_s!r}) is empty or negative")


# ---- chaos-only actions -------------------------------------------------------------


@dataclass(frozen=True)
class ProxyDown:
    """Disable the proxy of `upstream` in [start_s, end_s): open connections close, new ones are refused.

    The WhatsApp link going down is the pure `sim.scenarios.LinkDown`; use this for Redis
    and the back office (the simulation does not model their outages).
    """

    upstream: str
    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        _check_upstream(self.upstream)
        _check_window(f"proxy {self.upstream} down", self.start_s, self.end_s)

    def scaled(self, k: float) -> ProxyDown:
        return ProxyDown(self.upstream, self.start_s * k, self.end_s * k)


@dataclass(frozen=True)
class ToxicWindow:
    """A Toxiproxy toxic on `upstream`'s proxy in [start_s, end_s), e.g. latency 1000 ± 500 ms.

    `attributes` are Toxiproxy's own (integers: ms, bytes, KB/s; slicer's delay in µs),
    at the note's real timings; duration attributes scale with the scenario.
    """

    upstream: str
    kind: str
    start_s: float
    end_s: float
    attributes: tuple[tuple[str, int], ...] = ()
    stream: str = "downstream"

    def __post_init__(self) -> None:
        _check_upstream(self.upstream)
        _check_window(f"toxic {self.kind} on {self.upstream}", self.start_s, self.end_s)
        if self.kind not in TOXIC_ATTRIBUTES:
            raise ChaosScenarioError(f"unknown toxic kind {self.kind!r}; known: {', '.join(TOXIC_KINDS)}")
        attrs = dict(self.attributes.items() if isinstance(self.attributes, Mapping) else self.attributes)
        unknown = set(attrs) - TOXIC_ATTRIBUTES[self.kind]
        if unknown:
            raise ChaosScenarioError(f"toxic {self.kind!r} takes {sorted(TOXIC_ATTRIBUTES[self.kind])}, "
                                     f"not {sorted(unknown)}")
        for key, value in attrs.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ChaosScenarioError(f"toxic attribute {key}={value!r} must be a non-negative int")
        if self.stream not in ("downstream", "upstream"):
            raise ChaosScenarioError(f"toxic stream must be downstream or upstream, not {self.stream!r}")
        object.__setattr__(self, "attributes", tuple(sorted(attrs.items())))

    @property
    def attrs(self) -> dict[str, int]:
        return dict(self.attributes)

    def scaled(self, k: float) -> ToxicWindow:
        attrs = {key: (max(1, round(value * k)) if key in _DURATION_ATTRIBUTES and value else value)
                 for key, value in self.attributes}
        return replace(self, start_s=self.start_s * k, end_s=self.end_s * k, attributes=tuple(attrs.items()))


@dataclass(frozen=True)
class RestartRedis:
    """Stop Redis at `at_s` and start it again `down_s` later on the same port.

    `keep_data` (the default) stops it with SHUTDOWN SAVE, as a Redis with persistence keeps
    every acknowledged write across a restart; without it the data is lost (a Redis without
    persistence, a wipe)."""

    at_s: float
    down_s: float = 1.0
    keep_data: bool = True

    def __post_init__(self) -> None:
        if self.at_s < 0 or self.down_s < 0:
            raise ChaosScenarioError(f"Redis restart: at_s and down_s must be >= 0, got {self}")

    def scaled(self, k: float) -> RestartRedis:
        return RestartRedis(self.at_s * k, self.down_s * k, self.keep_data)


@dataclass(frozen=True)
class KillService:
    """SIGKILL the service at `at_s`; start it again after `restart_after_s` (None: leave it dead)."""

    at_s: float
    restart_after_s: float | None = 1.0

    def __post_init__(self) -> None:
        if self.at_s < 0 or (self.restart_after_s is not None and self.restart_after_s < 0):
            raise ChaosScenarioError(f"service kill: times must be >= 0, got {self}")

    def scaled(self, k: float) -> KillService:
        after = None if self.restart_after_s is None else self.restart_after_s * k
        return KillService(self.at_s * k, after)


@dataclass(frozen=True)
class AccountDeactivated:
    """The back office disables (not deletes) the accounts at `at_s` and marks them inactive in Redis.

    A pure fault kind the simulation could model like `AccountDeleted`; it lives here until
    `sim/scenarios.py` takes it (see the chaos report).
    """

    at_s: float

    def scaled(self, k: float) -> AccountDeactivated:
        return AccountDeactivated(self.at_s * k)


ChaosAction = (ProxyDown | ToxicWindow | RestartRedis | KillService | AccountDeactivated | StandinRefusing
               | KeepaliveSilence)
_WINDOWS = (ProxyDown, ToxicWindow, LinkDown, StandinRefusing, KeepaliveSilence)


def action_start_s(action: ChaosAction | Fault) -> float:
    """When a fault or action begins, seconds from the scenario's start."""
    return action.start_s if isinstance(action, _WINDOWS) else action.at_s


def action_end_s(action: ChaosAction | Fault) -> float:
    """When a fault or action is over (an instant action ends where it starts)."""
    if isinstance(action, _WINDOWS):
        return action.end_s
    if isinstance(action, RestartRedis):
        return action.at_s + action.down_s
    if isinstance(action, KillService):
        return action.at_s + (action.restart_after_s or 0.0)
    return action.at_s


# ---- expected outcome -----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What must come of the scenario for every session.

    `reconnects_*` count reconnect sockets (attempt >= 1) per session over the run;
    `attempt_offsets_s`, when given, are the attempts' times relative to the first fault.
    """

    final_statuses: frozenset[Status]
    reconnects_min: int = 0
    reconnects_max: int | None = None
    attempt_offsets_s: tuple[float, ...] | None = None
    dropped: bool | None = None
    text: str = ""

    def __post_init__(self) -> None:
        statuses = frozenset(Status(s) for s in self.final_statuses)
        if not statuses:
            raise ChaosScenarioError("an outcome needs at least one allowed final status")
        object.__setattr__(self, "final_statuses", statuses)
        if self.reconnects_max is not None and self.reconnects_max < self.reconnects_min:
            raise ChaosScenarioError(f"reconnects_max {self.reconnects_max} < reconnects_min {self.reconnects_min}")
        if self.attempt_offsets_s is not None:
            object.__setattr__(self, "attempt_offsets_s", tuple(float(t) for t in self.attempt_offsets_s))

    @classmethod
    def from_expected(cls, expected: Expected, text: str = "") -> Outcome:
        """The sim scenario's own expectation, exactly."""
        count = expected.sockets_opened
        if count is None:
            count = len(expected.attempt_offsets_s)
        statuses = {expected.final_status} if expected.final_status is not None else set(Status)
        return cls(frozenset(statuses), count, count, tuple(expected.attempt_offsets_s),
                   expected.dropped, text)

    def scaled(self, k: float) -> Outcome:
        if self.attempt_offsets_s is None:
            return self
        return replace(self, attempt_offsets_s=tuple(t * k for t in self.attempt_offsets_s))

    def describe(self) -> str:
        statuses = "/".join(sorted(s.value for s in self.final_statuses))
        top = "∞" if self.reconnects_max is None else str(self.reconnects_max)
        count = str(self.reconnects_min) if top == str(self.reconnects_min) else f"{self.reconnects_min}–{top}"
        text = f"final {statuses}; {count} reconnect(s)"
        if self.attempt_offsets_s:
            text += " at +" + ", +".join(f"{t:g}" for t in self.attempt_offsets_s) + " s"
        if self.dropped is not None:
            text += "; dropped" if self.dropped else "; kept"
        return f"{text}. {self.text}".strip()


# ---- the scenario ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosScenario:
    """A named chaos experiment: steady state → faults → steady state again, rollback always.

    `schedule` is the pure sim scenario (its faults are bound to real actions and its
    timeline is what `sim.replay` predicts); `actions` are chaos-only. `policy_settings`
    go to `build_policy` (at real timings); `tolerance_s` scales with the scenario,
    `overhead_s` (process and network noise) does not. `prediction` is `exact` (the
    replay's per-attempt times and outcomes must match) or `none` (the replay cannot
    model these faults). `model_faults`, when given, is what the replay should run
    instead of `schedule.faults` (a toxic that acts like a link down, for example).
    """

    schedule: Scenario
    actions: tuple[ChaosAction, ...] = ()
    sessions: int = 1
    policy_settings: tuple[tuple[str, Any], ...] = ()
    outcome: Outcome | None = None
    prediction: str = "exact"
    model_faults: tuple[Fault, ...] | None = None
    tolerance_s: float = 0.25
    overhead_s: float = 0.25
    settle_s: float = 3.0
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        name = self.schedule.name
        if isinstance(self.policy_settings, Mapping):
            object.__setattr__(self, "policy_settings", tuple(sorted(self.policy_settings.items())))
        if isinstance(self.sessions, bool) or not isinstance(self.sessions, int) or self.sessions < 1:
            raise ChaosScenarioError(f"scenario {name!r}: sessions must be a whole number >= 1, got {self.sessions!r}")
        if self.prediction not in PREDICTION_MODES:
            raise ChaosScenarioError(f"scenario {name!r}: prediction must be one of {PREDICTION_MODES}, "
                                     f"got {self.prediction!r}")
        if self.tolerance_s < 0 or self.overhead_s < 0 or self.settle_s < 0:
            raise ChaosScenarioError(f"scenario {name!r}: tolerance_s, overhead_s, settle_s must be >= 0")
        if "time_scale" in dict(self.policy_settings):
            raise ChaosScenarioError(f"scenario {name!r}: give time_scale with scaled(), not in policy_settings")
        if not self.schedule.faults and not self.actions:
            raise ChaosScenarioError(f"scenario {name!r} has no fault and no action")
        for item in (*self.schedule.faults, *self.actions):
            if action_end_s(item) > self.schedule.duration_s:
                raise ChaosScenarioError(f"scenario {name!r}: {item} ends after duration_s {self.schedule.duration_s}")
        try:
            self.policy()
        except PolicyError as exc:
            raise ChaosScenarioError(f"scenario {name!r}: bad policy_settings: {exc}") from exc

    # ---- views ----
    @property
    def name(self) -> str:
        return self.schedule.name

    @property
    def description(self) -> str:
        return self.schedule.description

    @property
    def time_scale(self) -> float:
        return self.schedule.time_scale

    @property
    def duration_s(self) -> float:
        return self.schedule.duration_s

    @property
    def faults(self) -> tuple[Fault, ...]:
        return self.schedule.faults

    @property
    def first_fault_s(self) -> float:
        """When the first fault or action starts: the origin of attempt offsets."""
        return min(action_start_s(item) for item in (*self.schedule.faults, *self.actions))

    @property
    def expected(self) -> Outcome:
        """The stated outcome; the sim schedule's own when none is given."""
        return self.outcome if self.outcome is not None else Outcome.from_expected(self.schedule.expected)

    @property
    def allowed_error_s(self) -> float:
        """How far a measured time may be from the policy's or the prediction's."""
        return self.tolerance_s + self.overhead_s

    def policy(self) -> Policy:
        """The policy the service must follow here, at this scenario's time scale."""
        return build_policy(dict(self.policy_settings)).scaled(self.time_scale)

    def session_ids(self) -> list[str]:
        """Session ids of this scenario: unique per scenario so scenarios can share stand-ins."""
        return session_ids(self.name, self.sessions)

    def prediction_schedule(self) -> Scenario | None:
        """What `sim.replay` should run to predict this scenario, or None."""
        if self.prediction == "none":
            return None
        if self.model_faults is not None:
            return replace(self.schedule, faults=tuple(self.model_faults))
        return self.schedule

    def scaled(self, k: float) -> ChaosScenario:
        """The same scenario with every time multiplied by `k` (policy included)."""
        if not isinstance(k, int | float) or isinstance(k, bool) or k < MIN_SCALE:
            raise ChaosScenarioError(f"scale must be a number >= {MIN_SCALE}, got {k!r}")
        model = None if self.model_faults is None else tuple(f.scaled(k) for f in self.model_faults)
        return replace(self, schedule=self.schedule.scaled(k), actions=tuple(a.scaled(k) for a in self.actions),
                       outcome=None if self.outcome is None else self.outcome.scaled(k),
                       model_faults=model, tolerance_s=self.tolerance_s * k)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for journals and `python -m chaos list`)."""
        return {
            "name": self.name,
            "description": self.description,
            "time_scale": self.time_scale,
            "duration_s": self.duration_s,
            "sessions": self.sessions,
            "faults": [describe(f) for f in self.schedule.faults],
            "actions": [describe(a) for a in self.actions],
            "policy": self.policy().to_mapping(),
            "expected": self.expected.describe(),
            "prediction": self.prediction,
            "allowed_error_s": self.allowed_error_s,
            "tags": list(self.tags),
        }


def session_ids(scenario_name: str, count: int) -> list[str]:
    """`<scenario>-s0`, `<scenario>-s1`, …; `replay_id` maps them to the replay's `s0`, `s1`, …"""
    return [f"{scenario_name}-s{i}" for i in range(count)]


def replay_id(session_id: str) -> str:
    """The replay's id for a run's session id (`flaky_wifi-s0` → `s0`)."""
    return session_id.rsplit("-", 1)[-1]


def describe(item: ChaosAction | Fault) -> str:
    """One line a person can read, e.g. `toxic latency on redis [1.5, 9) s {latency: 1000, jitter: 500}`."""
    if isinstance(item, LinkDown):
        return f"whatsapp link down [{item.start_s:g}, {item.end_s:g}) s"
    if isinstance(item, CloseWith):
        return f"whatsapp closes the sessions with code {item.code} at {item.at_s:g} s"
    if isinstance(item, AccountDeleted):
        return f"accounts deleted at {item.at_s:g} s"
    if isinstance(item, AccountDeactivated):
        return f"accounts deactivated at {item.at_s:g} s"
    if isinstance(item, KeepaliveSilence):
        return f"whatsapp stand-in answers no keepalive of the sessions [{item.start_s:g}, {item.end_s:g}) s"
    if isinstance(item, StandinRefusing):
        return f"whatsapp stand-in refuses the sessions with code {item.code} [{item.start_s:g}, {item.end_s:g}) s"
    if isinstance(item, ProxyDown):
        return f"{item.upstream} proxy disabled [{item.start_s:g}, {item.end_s:g}) s"
    if isinstance(item, ToxicWindow):
        attrs = ", ".join(f"{k}: {v}" for k, v in item.attributes)
        return f"toxic {item.kind} on {item.upstream} [{item.start_s:g}, {item.end_s:g}) s {{{attrs}}}"
    if isinstance(item, RestartRedis):
        return f"Redis stopped at {item.at_s:g} s, started {item.down_s:g} s later"
    if isinstance(item, KillService):
        after = "not restarted" if item.restart_after_s is None else f"restarted {item.restart_after_s:g} s later"
        return f"service killed at {item.at_s:g} s, {after}"
    raise ChaosScenarioError(f"unknown fault or action {item!r}")


def flapping_windows(seed: int, start_s: float, span_s: float, min_s: float = 1.0,
                     max_s: float = 3.0) -> tuple[LinkDown, ...]:
    """Link-down windows alternating with up periods, each lasting U(min_s, max_s), seeded.

    The link is down from `start_s` and ends up for good by `start_s + span_s`.
    """
    if not 0 < min_s <= max_s or span_s <= 0 or start_s < 0:
        raise ChaosScenarioError(f"flapping: need 0 < min_s <= max_s, span_s > 0, start_s >= 0; "
                                 f"got min_s={min_s}, max_s={max_s}, span_s={span_s}, start_s={start_s}")
    rng = random.Random(seed)
    end_s, t_s, windows = start_s + span_s, start_s, []
    while t_s < end_s:
        down_end_s = min(end_s, t_s + rng.uniform(min_s, max_s))
        windows.append(LinkDown(round(t_s, 3), round(down_end_s, 3)))
        t_s = down_end_s + rng.uniform(min_s, max_s)
    return tuple(w for w in windows if w.start_s < w.end_s)
