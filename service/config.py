"""The service's settings: one validated value built from defaults, a TOML file, env vars
`RECONNECT_LAB_*` and command-line flags (later sources win).

Owns parsing and validation of every setting, with errors that name the setting and
where its value came from. The reconnect policy part is handed to
`service.core.build_policy`, so its errors are the core's. Must not do I/O beyond
reading the TOML file, and must never log or repr a password or token.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from service.config_checks import (check_http_url, check_path_text, check_policy_limits, check_proxy_url,
                                   check_redis_url, check_ws_url, redact_url, reject_bool, shown)
from service.core import Policy, PolicyError, build_policy
from service.errors import ConfigError
from service.keys import DEFAULT_CLUSTER_SHARDS, MAX_SHARDS, KeyLayout
from service.ports import Secret
from service.redis_connect import is_cluster_url, layout_for_url
from service.session_ids import check_spec, read_id_file

ENV_PREFIX = "RECONNECT_LAB_"
POLICY_ENV_PREFIX = ENV_PREFIX + "POLICY_"
BACKOFFICE_TOKEN_ENV = ENV_PREFIX + "BACKOFFICE_TOKEN"  # the stand-ins read the same variable


def _default_owner_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


_NUMBERS = ("redis_replica_waits", "redis_cluster_shards", "redis_wait_timeout_ms", "backoffice_timeout_s", "backoffice_validity_batch_size", "backoffice_validity_budget_s", "lease_ttl_s", "cache_ttl_s",
            "outbox_batch_size", "outbox_flush_interval_s", "outbox_retry_base_s", "outbox_retry_cap_s",
            "redis_retry_base_s", "redis_retry_cap_s", "status_write_retry_cap_s",
            "metrics_port", "time_scale", "seed", "start_concurrency", "max_inflight", "shutdown_timeout_s",
            "health_stuck_after_s", "health_outbox_stall_s", "neonize_clients_per_worker", "neonize_spare_workers",
            "neonize_worker_max_connects")
DAY_S = 86_400.0


class Settings(BaseModel):
    """Every setting of `python -m service`. Field docs are what `--help` prints. Numbers are
    finite and bounded, URLs parsed, text bounded: a bad value fails here, by name, never
    later as a traceback."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False)

    redis_url: Secret = Field(Secret("redis://127.0.0.1:6379/0"), description=(
        "Redis URL redis[s]://[:password@]host:port/db, or through Sentinel "
        "redis+sentinel://[:password@]host:port[,host:port...]/service-name/db, or a Redis Cluster "
        "redis+cluster://[:password@]host:port[,host:port...]/; the password is never logged"))
    redis_cluster_shards: int = Field(DEFAULT_CLUSTER_SHARDS, ge=1, le=MAX_SHARDS, description=(
        "with a Redis Cluster: hash-tagged shards the keys are spread over (rl:{s07}:...), one outbox "
        "stream each; every process of a fleet must use the same number (ignored otherwise)"))
    redis_replica_waits: int = Field(0, ge=0, le=16, description=(
        "replicas that must acknowledge every outbox append and lease/fencing write (WAIT) before it "
        "counts as done; 0: none (a failover may lose the last writes)"))
    redis_wait_timeout_ms: int = Field(1000, ge=1, le=60_000, description=(
        "longest a write waits for redis_replica_waits replicas; fewer in time: the write fails and is retried"))
    backoffice_url: str = Field("http://127.0.0.1:8080", description="back office base URL")
    backoffice_token: Secret = Field(Secret(""), description="bearer token for the back office (never logged)")
    backoffice_timeout_s: float = Field(5.0, gt=0, le=300, description="timeout of one back-office request (<= 300)")
    backoffice_validity: Literal["batch", "single"] = Field("batch", description=(
        "how validity (R4) is asked: 'batch' (every question of one loop tick in one POST "
        "/api/validity/batch) or 'single' (one GET /api/sessions/{id}/validity each, for a back "
        "office without the batch endpoint)"))
    backoffice_validity_batch_size: int = Field(500, ge=1, le=100_000, description="sessions per validity batch request")
    backoffice_validity_budget_s: float = Field(1.0, gt=0, le=300, description=(
        "longest a reconnect's validation (R4) waits for the back office; past it Redis's answer "
        "stands, as when the back office is down"))
    transport: Literal["wire", "neonize"] = Field("wire", description="WhatsApp transport: wire | neonize")
    event_loop: Literal["asyncio", "uvloop"] = Field("uvloop", description=(
        "the event loop: 'asyncio' (the standard library's) or 'uvloop' (libuv's: less CPU per "
        "socket callback and connect, timers to the millisecond)"))
    whatsapp_url: str = Field("ws://127.0.0.1:8765", description="WhatsApp (stand-in) URL for the wire transport")
    neonize_proxy_url: Secret = Field(Secret(""), description=(
        "proxy of every neonize client: socks5|http|https://[user:pass@]host:port (empty: HTTPS_PROXY "
        "from the environment, else none); never logged"))
    neonize_pairing: bool = Field(False, strict=True, description=(
        "neonize: a QR request waits for pairing (true) instead of closing the session as credentials lost"))
    neonize_clients_per_worker: int = Field(100, ge=1, le=10_000, description=(
        "neonize clients hosted by one worker process (1: a process per session; see NEONIZE.md)"))
    neonize_spare_workers: int = Field(1, ge=0, le=1000, description=(
        "neonize worker processes kept started beyond what the clients need, so a storm finds free slots"))
    neonize_worker_max_connects: int = Field(500, ge=1, le=1_000_000, description=(
        "dials after which a neonize worker takes no new client and is replaced (neonize leaks a file "
        "and ~0.2 MB per connect)"))
    sessions: str = Field(description=(
        "which sessions to run (required): '@FILE' (one id per line), 'PREFIX{A..B}' (a range, "
        "e.g. s{0..99}) or 'id1,id2,...'"), max_length=1_000_000)
    lease_ttl_s: float = Field(10.0, ge=0.1, le=DAY_S,
                               description="session lease TTL (B4); a dead process's sessions move within it")
    cache_ttl_s: float = Field(5.0, ge=0, le=DAY_S, description="TTL of the in-process validity cache")
    outbox_batch_size: int = Field(200, ge=1, le=100_000, description="status updates per back-office request")
    outbox_flush_interval_s: float = Field(0.5, gt=0, le=3600,
                                           description="how often normal-priority updates are flushed")
    outbox_retry_base_s: float = Field(0.5, gt=0, le=3600, description="first retry delay when the back office fails")
    outbox_retry_cap_s: float = Field(30.0, gt=0, le=DAY_S, description="largest retry delay for the back office")
    redis_retry_base_s: float = Field(0.1, gt=0, le=1.0, description=(
        "first wait before a failed status write or validation read is tried again (Redis unreachable)"))
    redis_retry_cap_s: float = Field(5.0, gt=0, le=DAY_S, description=(
        "largest wait between tries of a validation read while Redis is unreachable"))
    status_write_retry_cap_s: float = Field(1.0, gt=0, le=DAY_S, description=(
        "largest wait between tries of a status write: a session's status catches up within it once Redis is back"))
    metrics_port: int = Field(9464, ge=0, le=65535, description="loopback port of /metrics and /healthz (0: pick a free one)")
    timeline_path: Path | None = Field(None, description="JSON-lines timeline file of this process (none: no timeline)")
    owner_id: str = Field(default_factory=_default_owner_id, min_length=1, max_length=256,
                          description="this process's lease owner id (default: host-pid)")
    time_scale: float = Field(1.0, ge=0.001, le=1000,
                              description="multiplies every policy duration (0.1: ten times faster)")
    policy: dict[str, Any] = Field(default_factory=dict, description=(
        "reconnect policy keys for service.core.build_policy: base_s, factor, cap_s, max_attempts, "
        "jitter, connect_timeout_s, keepalive_interval_s, keepalive_misses, default_ban_wait_s, codes"))
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1,
                             description="seed of the jitter random generator (none: random)")
    start_concurrency: int = Field(500, ge=1, le=100_000, description="sessions opening at once at start-up")
    max_inflight: int = Field(4096, ge=1, le=100_000, description=(
        "socket opens in flight at once, and the cap of the validations in flight (their limit adapts "
        "below it to how fast they answer; paces a reconnect storm; decides nothing)"))
    health_stuck_after_s: float | None = Field(None, gt=0, le=DAY_S, description=(
        "/healthz is unhealthy while a session is validating or connecting for longer than this "
        "(none: twice the sum of the bounds of those steps; see service/README.md)"))
    health_outbox_stall_s: float | None = Field(None, gt=0, le=DAY_S, description=(
        "/healthz is unhealthy while the oldest undelivered update is older than this and the back "
        "office answers the status batches (none: twice outbox_retry_cap_s + outbox_flush_interval_s "
        "+ backoffice_timeout_s)"))
    shutdown_timeout_s: float = Field(10.0, gt=0, le=3600, description="graceful-stop deadline")
    session_credentials: Secret = Field(Secret(""), description=(
        "WhatsApp credentials sent by every session of a list/file/range source (never logged)"))
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")

    @field_validator("redis_url", "backoffice_token", "session_credentials", "neonize_proxy_url", mode="before")
    @classmethod
    def _to_secret(cls, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        if len(value) > 8192 or "\x00" in value:
            raise ValueError("must be at most 8192 characters with no NUL")
        return Secret(value)

    @field_validator(*_NUMBERS, mode="before")
    @classmethod
    def _numbers_not_bools(cls, value: Any) -> Any:
        return reject_bool(value)

    @field_validator("owner_id")
    @classmethod
    def _visible_text(cls, value: str) -> str:
        if not all(ch.isprintable() and not ch.isspace() for ch in value):
            raise ValueError("must be printable characters with no spaces")
        return value

    @field_validator("timeline_path", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return check_path_text(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: Secret) -> Secret:
        check_redis_url(value.reveal())
        return value

    @field_validator("backoffice_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("whatsapp_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        return check_ws_url(value)

    @field_validator("neonize_proxy_url")
    @classmethod
    def _proxy_url(cls, value: Secret) -> Secret:
        if value.reveal():
            check_proxy_url(value.reveal())
        return value

    @field_validator("sessions")
    @classmethod
    def _sessions(cls, value: str) -> str:
        spec = check_spec(value)
        if spec.startswith("@"):
            read_id_file(Path(spec[1:]))  # a missing or unreadable file is a bad setting, found now
        return spec

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_mapping(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a table of policy keys, got {type(value).__name__}")
        return dict(value)

    @model_validator(mode="after")
    def _no_replica_waits_on_cluster(self) -> "Settings":
        if self.redis_replica_waits and is_cluster_url(self.redis_url.reveal()):
            raise ValueError("redis_replica_waits must be 0 with a Redis Cluster (redis+cluster://): "
                             "replica waits are offered with a single server or Sentinel only")
        return self

    def key_layout(self) -> KeyLayout:
        """Where the keys live: the single-Redis names, or `redis_cluster_shards` tagged shards."""
        return layout_for_url(self.redis_url.reveal(), self.redis_cluster_shards)

    @model_validator(mode="after")
    def _retry_cap_not_below_base(self) -> "Settings":
        for base, cap in (("outbox_retry_base_s", "outbox_retry_cap_s"), ("redis_retry_base_s", "redis_retry_cap_s"),
                          ("redis_retry_base_s", "status_write_retry_cap_s")):
            if getattr(self, cap) < getattr(self, base):
                raise ValueError(f"{cap} ({getattr(self, cap)}) must be >= {base} ({getattr(self, base)})")
        return self

    def build_policy(self) -> Policy:
        """The reconnect policy (scaled by time_scale); raises `ConfigError` with the core's message."""
        try:
            policy = build_policy({**self.policy, "time_scale": self.time_scale})
            check_policy_limits(policy)
        except (PolicyError, TypeError, ValueError, ArithmeticError, RecursionError) as err:
            # TypeError and the like: a value the core did not expect is still a bad setting
            raise ConfigError(f"invalid policy setting{self._failing_policy_key()}: {str(err)[:200]}") from None
        return policy

    def _failing_policy_key(self) -> str:
        """` 'KEY'` for the first policy key that fails alone (a cross-key rule names its keys)."""
        for key, value in self.policy.items():
            try:
                check_policy_limits(build_policy({key: value, "time_scale": self.time_scale}))
            except Exception:  # noqa: BLE001 - any failure names this key
                return f" {str(key)[:60]!r}"
        return ""

    def safe_dict(self) -> dict[str, Any]:
        """Every setting with secrets masked, for the start-up log line."""
        raw = self.model_dump()
        raw["redis_url"] = redact_url(self.redis_url.reveal())
        raw["backoffice_token"] = "***" if self.backoffice_token.reveal() else ""
        raw["session_credentials"] = "***" if self.session_credentials.reveal() else ""
        raw["neonize_proxy_url"] = redact_url(self.neonize_proxy_url.reveal())
        raw["timeline_path"] = str(self.timeline_path) if self.timeline_path else None
        return raw


FIELD_NAMES: tuple[str, ...] = tuple(Settings.model_fields)
_SECRET_FIELDS = ("redis_url", "backoffice_token", "session_credentials", "neonize_proxy_url")


def parse_scalar(text: str) -> Any:
    """An env/flag string as a TOML-ish scalar: 12 → int, 0.5 → float, true → bool, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_toml(path: Path) -> dict[str, Any]:
    """The settings in a TOML file; `[policy]` is a sub-table. Unknown keys fail later, by name."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except OSError as err:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {err.strerror or type(err).__name__}") from None
    except (ValueError, RecursionError) as err:  # TOMLDecodeError, bad UTF-8, a 5,000-digit integer
        where = _failing_toml_key(path)
        raise ConfigError(f"config file {str(path)!r} is not valid TOML{where}: {str(err)[:200]}") from None


def _failing_toml_key(path: Path) -> str:
    """`at setting 'KEY'` for the first `KEY = value` line that does not parse alone, else ""."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        key, sep, _ = line.partition("=")
        if not sep or line.lstrip().startswith(("#", "[")):
            continue
        try:
            tomllib.loads(line)
        except (ValueError, RecursionError):
            return f" at setting {key.strip()[:60]!r}"
    return ""


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from `RECONNECT_LAB_<NAME>` and `RECONNECT_LAB_POLICY_<KEY>` variables."""
    found: dict[str, Any] = {}
    policy: dict[str, Any] = {}
    for name, value in environ.items():
        if name.startswith(POLICY_ENV_PREFIX):
            policy[name[len(POLICY_ENV_PREFIX):].lower()] = parse_scalar(value)
        elif name.startswith(ENV_PREFIX):
            key = name[len(ENV_PREFIX):].lower()
            if key not in FIELD_NAMES or key == "policy":
                raise ConfigError(f"unknown environment variable {name}; known: "
                                  + ", ".join(ENV_PREFIX + f.upper() for f in FIELD_NAMES if f != "policy"))
            found[key] = value if key in (*_SECRET_FIELDS, "owner_id", "sessions") else parse_scalar(value)
    if policy:
        found["policy"] = policy
    return found


def load_settings(*, toml_path: Path | None = None, environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults < TOML < env < overrides (flags). Raises `ConfigError` naming the setting and its source."""
    merged, origin = _merge_layers(toml_path, environ, overrides)
    return _validated(merged, origin)


# Settings a running service needs but a settings file may leave to flags or the environment
# (a policy file written by `python -m sim tune` carries neither).
NEEDED_TO_RUN: dict[str, Any] = {"sessions": "s{0..0}", "backoffice_token": "check-config"}


def check_settings(*, toml_path: Path | None = None, environ: Mapping[str, str] | None = None,
                   overrides: Mapping[str, Any] | None = None) -> tuple[Settings, list[str]]:
    """For `--check-config`: every value given is validated as `load_settings` does; the
    settings needed to run that were not given are returned by name instead of failing."""
    merged, origin = _merge_layers(toml_path, environ, overrides)
    not_set = [key for key in NEEDED_TO_RUN if key not in merged]  # given empty: still an error
    for key in not_set:
        merged[key] = NEEDED_TO_RUN[key]
    return _validated(merged, origin), not_set


def _merge_layers(toml_path: Path | None, environ: Mapping[str, str] | None,
                  overrides: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
    layers: list[tuple[str, dict[str, Any]]] = []
    if toml_path is not None:
        layers.append((f"config file {toml_path}", read_toml(toml_path)))
    layers.append(("environment", read_env(os.environ if environ is None else environ)))
    layers.append(("command line", dict(overrides or {})))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            if key == "policy" and isinstance(value, Mapping) and isinstance(merged.get("policy"), Mapping):
                merged["policy"] = {**merged["policy"], **value}
            else:
                merged[key] = value
            origin[key] = source
    return merged, origin


def _validated(merged: dict[str, Any], origin: Mapping[str, str]) -> Settings:
    try:
        settings = Settings(**merged)
    except ValidationError as err:
        raise ConfigError(_describe(err, origin)) from None
    if not settings.backoffice_token.reveal():
        raise ConfigError(f"setting 'backoffice_token' is required (the back office rejects calls without it); "
                          f"set {BACKOFFICE_TOKEN_ENV} or backoffice_token in the TOML file")
    settings.build_policy()  # policy errors surface at start, named by the core
    return settings


def _describe(err: ValidationError, origin: Mapping[str, str]) -> str:
    """Every problem of a failed validation on one line, each naming its setting and source."""
    problems = []
    for problem in err.errors():
        key = str(problem["loc"][0]) if problem["loc"] else ""
        source = origin.get(key, "defaults")
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            problems.append(f"unknown setting {key[:60]!r} (from {source}); known: {', '.join(FIELD_NAMES)}")
        elif problem["type"] == "missing":
            problems.append(f"setting {key!r} is required: {Settings.model_fields[key].description}")
        elif not key:  # a check across settings: its message names them
            problems.append(message)
        else:
            value = problem.get("input")
            text = "***" if key in _SECRET_FIELDS else shown(value) if isinstance(value, str) else _short_repr(value)
            problems.append(f"setting {key!r} (from {source}) = {text}: {message}")
    return "invalid configuration: " + "; ".join(problems)


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."
