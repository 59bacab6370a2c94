"""Model flags: one argparse flag per `ModelParams` field, with units and defaults, plus TOML.

Owns the help text that teaches each parameter, and the merge order
defaults < TOML file (`--config`) < flags. Must not run the model.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from service.core import Jitter
from service.core.policy import Schedule
from service.core.presets import PRESETS
from service.core.codes import TABLES
from sim.params import ENGINES, ModelParams, ParamError, coerce, names, params_settings
from sim.population import all_names

# field → (metavar, help). Units are in the names and restated here.
HELP: dict[str, tuple[str, str]] = {
    "sessions": ("N", "sessions in the population"),
    "scenario": ("NAME", "fault schedule: " + ", ".join(all_names())),
    "outage_s": ("SECONDS", "length of the mass outage (scenarios mass_outage, outage_during_deploy)"),
    "base_s": ("SECONDS", "backoff before attempt 1 (R2)"),
    "factor": ("X", "backoff growth per attempt (R2)"),
    "cap_s": ("SECONDS", "longest single backoff (R2)"),
    "max_attempts": ("N", "reconnect attempts before a session is marked inactive (R2); 0 = no cap"),
    "jitter": ("KIND", "backoff jitter (B2): " + ", ".join(j.value for j in Jitter)),
    "max_elapsed_s": ("SECONDS", "give-up deadline: no attempt starts later than this after the first close; "
                      "0 = none (B13)"),
    "schedule": ("KIND", "how delays grow: exponential (base·factor^(n-1)), linear (base + step·(n-1)), "
                 "steps (the steps_s list)"),
    "step_s": ("SECONDS", "linear schedule: delay added per attempt"),
    "steps_s": ("LIST", "steps schedule: comma-separated delays in seconds, the last repeated (e.g. 0,2,10,30)"),
    "jitter_ratio": ("SHARE", "proportional jitter: each delay moves by up to ± this share"),
    "jitter_from_attempt": ("N", "attempts before this one are not jittered"),
    "cap_after_jitter": ("BOOL", "cap the jittered delay (socket.io) instead of the un-jittered one (gRPC)"),
    "connect_timeout_s": ("SECONDS", "connect timeout of the policy (connects take no time in the model)"),
    "default_ban_wait_s": ("SECONDS", "wait of a temporary ban that names no expiry"),
    "keepalive_interval_s": ("SECONDS", "keepalive interval of the policy (not modelled: no half-open links)"),
    "keepalive_misses": ("N", "keepalives missed before a link counts as dead (not modelled)"),
    "codes": ("TABLE", "close-code table (B1): " + ", ".join(sorted(TABLES))
              + "; a custom one as a [codes] table in --config (base, default, codes)"),
    "sessions_per_ip": ("N", "sessions sharing one source IP at WhatsApp"),
    "ip_connects_per_s": ("RATE", "WhatsApp connects allowed per IP per second (token refill); 0 = unlimited"),
    "ip_burst": ("N", "WhatsApp per-IP token bucket size (connects at once)"),
    "account_connects": ("N", "connects allowed per account per window; 0 = unlimited"),
    "account_window_s": ("SECONDS", "per-account rate-limit window"),
    "account_lockout_s": ("SECONDS", "lock-out of an account that went over its limit (extended by every try)"),
    "redis_ops_per_s": ("RATE", "Redis capacity in operations per second (load meter)"),
    "backoffice_requests_per_s": ("RATE", "back-office capacity in requests per second (load meter)"),
    "backoffice_batch": ("N", "status updates per back-office request"),
    "backoffice_flush_s": ("SECONDS", "how often normal-priority updates are flushed (high: at once)"),
    "queues": ("BOOL", "upstreams push back: sessions wait for Redis, back-office and WhatsApp-handshake "
               "capacity (true/false)"),
    "latency_dist": ("KIND", "distribution of every upstream latency: fixed, exponential, uniform (0 to 2× mean)"),
    "redis_latency_s": ("SECONDS", "mean latency of a Redis round trip (sessions wait for it)"),
    "backoffice_latency_s": ("SECONDS", "mean latency of a back-office request (validations wait for it)"),
    "backoffice_validity_budget_s": ("SECONDS", "R4: a validation waits at most this for the back office"),
    "whatsapp_connect_s": ("SECONDS", "mean time a connect takes to open or fail (past connect_timeout_s: fails)"),
    "whatsapp_handshakes_per_s": ("RATE", "WhatsApp connect capacity when --queues is on; 0 = unlimited"),
    "seed": ("N", "seed of every random stream (same seed → identical results.json)"),
    "until_s": ("SECONDS", "simulated horizon; 0 = the scenario's own"),
    "bin_s": ("SECONDS", "width of the load-over-time bins"),
    "engine": ("KIND", "auto (cohort when sessions are identical, histogram when only jitter tells them "
               "apart, else session), session, cohort or histogram"),
    "block_sessions": ("N", "sessions simulated together in one SimPy environment"),
    "grid_s": ("SECONDS", "time grid of the histogram engine (sessions due in one cell move as one lump); "
               "0 = base_s / 200"),
}

_CHOICES: dict[str, list[str]] = {
    "jitter": [j.value for j in Jitter],
    "schedule": [s.value for s in Schedule],
    "codes": sorted(TABLES),
    "engine": list(ENGINES),
    "latency_dist": ["fixed", "exponential", "uniform"],
    "scenario": all_names(),
}


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Add --config and one flag per model parameter (default None: TOML or the dataclass decides)."""
    defaults = ModelParams()
    parser.add_argument("--config", metavar="FILE.toml", type=Path,
                        help="TOML file of model parameters (keys as the flags, with underscores, top level or "
                             "in [sim]) and/or a [policy] table as `python -m service` reads it; flags win")
    parser.add_argument("--preset", choices=list(PRESETS), metavar="NAME",
                        help="start from a named policy (" + ", ".join(PRESETS) + "); "
                             "--config and flags override its keys")
    group = parser.add_argument_group("model parameters")
    for name in names():
        metavar, text = HELP[name]
        default = getattr(defaults, name)
        kind = type(default)
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar=metavar, default=None,
                           type=_typed(name, kind), choices=_CHOICES.get(name),
                           help=f"{text} (default: {default:g})" if kind is float else
                           f"{text} (default: {default})")


def parse_share(raw: str) -> float:
    """A share of sessions as 0–1 (`0.01`) or a percentage (`1%`); anything else is an argparse error."""
    text = raw.strip()
    percent = text.endswith("%")
    try:
        value = float(text[:-1] if percent else text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share 0–1 (e.g. 0.01) or a percentage (e.g. 1%), "
                                         f"got {raw!r}") from None
    if percent:
        value /= 100
    if not 0 <= value <= 1:
        shown = f"{raw!r} is {value * 100:g} %" if percent else f"{raw!r} is not between 0 and 1"
        raise argparse.ArgumentTypeError(f"expected a share 0–1 (e.g. 0.01) or a percentage 0–100% (e.g. 1%); "
                                         f"{shown}")
    return value


def _typed(name: str, kind: type):
    def parse(raw: str) -> Any:
        try:
            return coerce(name, raw)
        except ParamError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def load_toml(path: Path) -> dict[str, Any]:
    """Model parameters from a TOML file: top-level keys, or a [sim] table."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParamError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ParamError(f"config {path} is not valid TOML: {exc}") from None
    policy = raw.pop("policy", None)
    table = raw.get("sim", raw)
    unknown = sorted(set(table) - set(names()))
    if unknown:
        raise ParamError(f"config {path}: unknown key(s) {unknown}; known: {', '.join(names())}")
    values = {key: coerce(key, value) for key, value in table.items()}
    if policy is not None:
        if not isinstance(policy, dict):
            raise ParamError(f"config {path}: [policy] must be a table of policy keys")
        try:
            values.update(params_settings(policy))
        except ParamError as exc:
            raise ParamError(f"config {path}: [policy]: {exc}") from None
    return values


def params_from(args: argparse.Namespace, **overrides: Any) -> ModelParams:
    """defaults < --preset < TOML < flags < overrides."""
    preset = getattr(args, "preset", None)
    values: dict[str, Any] = params_settings({"preset": preset}) if preset else {}
    values.update(load_toml(args.config) if getattr(args, "config", None) else {})
    for name in names():
        flag_value = getattr(args, name, None)
        if flag_value is not None:
            values[name] = flag_value
    values.update(overrides)
    try:
        return ModelParams(**values)
    except TypeError as exc:  # a TOML value of the wrong type reaching the dataclass
        raise ParamError(str(exc)) from None
