"""Model parameters: one frozen dataclass with units in every name, validated once.

Owns the numbers a simulation run is made of (population, policy settings, upstream
capacities, scenario choice, seed, horizon) and their checks. Must not run anything:
`sim.engine` runs a `ModelParams`, `sim.cli` builds one from flags and TOML.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from service.core import Jitter, Policy, build_policy
from sim.population import all_names


class ParamError(ValueError):
    """A model parameter is invalid; the message names it and what is allowed."""


ENGINES = ("auto", "session", "cohort", "histogram")
GRID_CELLS_PER_BASE = 200  # the histogram grid's default: a 2 s base backoff in 10 ms cells


@dataclass(frozen=True)
class ModelParams:
    """Everything one simulation run depends on. Same params → same results.json."""

    sessions: int = 10_000
    scenario: str = "mass_outage"
    outage_s: float = 60.0  # length of the mass outage (mass_outage scenario)
    # reconnect policy (R2, B1, B2) — handed to service.core.build_policy
    base_s: float = 2.0
    factor: float = 2.0
    cap_s: float = 32.0
    max_attempts: int = 5  # 0 = no attempt cap ("unlimited" in a policy file)
    jitter: str = "none"
    codes: str = "original"
    max_elapsed_s: float = 0.0  # give-up deadline after the first close; 0 = none (B13)
    schedule: str = "exponential"  # exponential | linear | steps
    step_s: float = 0.0  # linear schedule: added per attempt
    steps_s: tuple = ()  # steps schedule: the delays, the last one repeated
    jitter_ratio: float = 0.5  # proportional jitter: ± this share of the delay
    jitter_from_attempt: int = 1  # attempts before this one are not jittered (gRPC: 2)
    cap_after_jitter: bool = False  # cap the jittered delay (socket.io) instead of the un-jittered one
    connect_timeout_s: float = 20.0  # policy value; connects take no time in the model
    default_ban_wait_s: float = 3600.0  # wait of a temporary ban without its own expiry
    keepalive_interval_s: float = 20.0  # policy values kept so a policy file round-trips;
    keepalive_misses: int = 3  # the model has no half-open links to detect
    # WhatsApp connect limits
    sessions_per_ip: int = 100
    ip_connects_per_s: float = 20.0  # token refill per IP; 0 = unlimited
    ip_burst: float = 100.0  # token bucket size per IP
    account_connects: int = 10  # connects allowed per account per window; 0 = unlimited
    account_window_s: float = 60.0
    account_lockout_s: float = 300.0  # rate-limited accounts are locked out this long
    # Redis and back office (load meters with capacity and a fluid backlog)
    redis_ops_per_s: float = 50_000.0
    backoffice_requests_per_s: float = 50.0
    backoffice_batch: int = 100  # status updates per back-office request
    backoffice_flush_s: float = 1.0  # normal-priority updates are flushed this often
    # upstreams that push back (sim.pushback): off by default, so upstreams only meter load
    queues: bool = False  # sessions wait for Redis / back-office / WhatsApp-handshake capacity
    latency_dist: str = "fixed"  # fixed | exponential | uniform (0 to twice the mean)
    redis_latency_s: float = 0.0  # mean latency of one Redis round trip
    backoffice_latency_s: float = 0.0  # mean latency of one back-office request
    backoffice_validity_budget_s: float = 1.0  # R4: past this the back office is not waited for
    whatsapp_connect_s: float = 0.0  # mean time a connect takes to succeed or fail
    whatsapp_handshakes_per_s: float = 0.0  # WhatsApp's connect capacity (with queues); 0 = unlimited
    # run control
    seed: int = 0
    until_s: float = 0.0  # simulated horizon; 0 = the scenario's own (e.g. outage + 60 s)
    bin_s: float = 1.0  # width of the load-over-time bins
    engine: str = "auto"  # auto | session | cohort | histogram
    block_sessions: int = 10_000  # sessions simulated together in one SimPy environment
    grid_s: float = 0.0  # the histogram engine's time grid; 0 = base_s / 200 (10 ms by default)

    def __post_init__(self) -> None:
        _positive_int("sessions", self.sessions)
        _non_negative_int("max_attempts", self.max_attempts)
        if not isinstance(self.steps_s, tuple):
            object.__setattr__(self, "steps_s", tuple(self.steps_s) if isinstance(self.steps_s, list) else self.steps_s)
        _positive_int("sessions_per_ip", self.sessions_per_ip)
        _positive_int("backoffice_batch", self.backoffice_batch)
        _positive_int("block_sessions", self.block_sessions)
        _non_negative_int("account_connects", self.account_connects)
        _non_negative_int("seed", self.seed)
        for name in ("redis_latency_s", "backoffice_latency_s", "backoffice_validity_budget_s",
                     "whatsapp_connect_s", "whatsapp_handshakes_per_s"):
            _number(name, getattr(self, name), minimum=0.0)
        if self.latency_dist not in ("fixed", "exponential", "uniform"):
            raise ParamError(f"latency_dist must be fixed, exponential or uniform, got {self.latency_dist!r}")
        if not isinstance(self.queues, bool):
            raise ParamError(f"queues must be true or false, got {self.queues!r}")
        for name in ("outage_s", "ip_connects_per_s", "redis_ops_per_s", "backoffice_requests_per_s",
                     "until_s", "grid_s"):
            _number(name, getattr(self, name), minimum=0.0)
        for name in ("ip_burst", "account_window_s", "account_lockout_s", "backoffice_flush_s",
                     "bin_s"):
            _number(name, getattr(self, name), minimum=0.0, strict=True)
        if self.until_s / self.bin_s > 1_000_000:
            raise ParamError(f"until_s / bin_s gives {self.until_s / self.bin_s:.0f} bins; keep it ≤ 1,000,000")
        if not isinstance(self.scenario, str) or self.scenario not in all_names():
            raise ParamError(f"unknown scenario {self.scenario!r}; known: {', '.join(all_names())}")
        if self.engine not in ENGINES:
            raise ParamError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        backoff = self.policy().backoff  # the core validates every policy value
        if backoff.max_attempts is None and backoff.exponential_s(1_000_000) == 0 and not self.whatsapp_connect_s:
            raise ParamError("this policy retries at once forever (e.g. preset baileys_readme) and connects "
                             "take no time in the model, so the clock would never move; give it max_attempts or "
                             "set whatsapp_connect_s")

    def policy(self) -> Policy:
        """The core policy these parameters describe (raises `PolicyError` on bad values)."""
        return build_policy(self.policy_settings())

    def policy_settings(self) -> dict[str, Any]:
        """These parameters' policy as `build_policy` settings (the [policy] table of a policy file)."""
        settings = {key: getattr(self, key) for key in POLICY_KEYS}
        settings["max_attempts"] = self.max_attempts or "unlimited"
        settings["steps_s"] = list(self.steps_s)
        if not self.max_elapsed_s:
            del settings["max_elapsed_s"]
        return settings

    @property
    def pushes_back(self) -> bool:
        """Do sessions wait for upstreams (queues or latencies)?"""
        return self.queues or any((self.redis_latency_s, self.backoffice_latency_s, self.whatsapp_connect_s))

    @property
    def histogram_grid_s(self) -> float:
        """The histogram engine's cell width: `grid_s`, or base_s / 200 when it is 0."""
        return self.grid_s or (self.base_s if self.base_s > 0 else 2.0) / GRID_CELLS_PER_BASE

    @property
    def jitter_kind(self) -> Jitter:
        return self.policy().backoff.jitter

    def with_(self, **changes: Any) -> ModelParams:
        """A copy with some values changed (validated again)."""
        unknown = sorted(set(changes) - set(names()))
        if unknown:
            raise ParamError(f"unknown model parameter(s) {unknown}; known: {names()}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """A short stable hash of every value: names a run's report folder."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


# the ModelParams fields that are the reconnect policy (keys of service.core.build_policy)
POLICY_KEYS = ("base_s", "factor", "cap_s", "max_attempts", "jitter", "codes", "max_elapsed_s",
               "schedule", "step_s", "steps_s", "jitter_ratio", "jitter_from_attempt",
               "cap_after_jitter", "connect_timeout_s", "default_ban_wait_s", "keepalive_interval_s",
               "keepalive_misses")


def names() -> list[str]:
    return [f.name for f in fields(ModelParams)]


def params_settings(policy_settings: dict[str, Any]) -> dict[str, Any]:
    """A policy file's [policy] table (or a preset) as ModelParams values; keys the model
    cannot hold raise, naming them."""
    from service.core.presets import preset_settings

    settings = dict(policy_settings)
    if "preset" in settings:
        settings = {**preset_settings(settings.pop("preset")), **settings}
    unknown = sorted(set(settings) - set(POLICY_KEYS))
    if unknown:
        raise ParamError(f"policy key(s) {unknown} are not simulated; the model takes: {', '.join(POLICY_KEYS)}")
    values = {key: coerce(key, value) for key, value in settings.items()}
    if values.get("max_attempts") == "unlimited":
        values["max_attempts"] = 0
    return values


def coerce(name: str, raw: Any) -> Any:
    """Turn a TOML or `key=value` string into the type the field `name` holds."""
    if name not in names():
        raise ParamError(f"unknown model parameter {name!r}; known: {', '.join(names())}")
    kind = type(getattr(ModelParams(), name))
    if name == "max_attempts" and raw in ("unlimited", "0"):
        return 0
    if kind is tuple:
        return _seconds_list(name, raw)
    if kind is bool:
        return _boolean(name, raw)
    if isinstance(raw, str) and kind is not str:
        try:
            return kind(float(raw)) if kind is int and "." not in raw else kind(raw)
        except ValueError:
            raise ParamError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if kind is int and isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return raw


def _seconds_list(name: str, raw: Any) -> tuple:
    """`0,2,10,30` or a TOML array → a tuple of floats."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise ParamError(f"{name} must be a list of seconds such as 0,2,10,30, got {raw!r}")
    try:
        return tuple(float(item) for item in items if not (isinstance(item, str) and not item.strip()))
    except (TypeError, ValueError):
        raise ParamError(f"{name} must be a list of seconds such as 0,2,10,30, got {raw!r}") from None


def _boolean(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise ParamError(f"{name} must be true or false, got {raw!r}")


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParamError(f"{name} must be a whole number ≥ 1, got {value!r}")


def _non_negative_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParamError(f"{name} must be a whole number ≥ 0, got {value!r}")


def _number(name: str, value: object, *, minimum: float, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParamError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value <= minimum):
        sign = ">" if strict else "≥"
        raise ParamError(f"{name} must be {sign} {minimum:g}, got {value!r}")
