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
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.core import Policy, PolicyError, build_policy
from service.errors import ConfigError
from service.ports import Secret

ENV_PREFIX = "RECONNECT_LAB_"
POLICY_ENV_PREFIX = ENV_PREFIX + "POLICY_"
BACKOFFICE_TOKEN_ENV = ENV_PREFIX + "BACKOFFICE_TOKEN"  # the stand-ins read the same variable
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/]*):(?P<pw>[^@/]*)@", re.I)


def redact_url(url: str) -> str:
    """`redis://:pw@host` → `redis://:***@host`; URLs without a password are unchanged."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def _default_owner_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseModel):
    """Every setting of `python -m service`. Field docs are what `--help` prints."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    redis_url: Secret = Field(Secret("redis://127.0.0.1:6379/0"),
                              description="Redis URL; may carry a password (never logged)")
    backoffice_url: str = Field("http://127.0.0.1:8080", description="back office base URL")
    backoffice_token: Secret = Field(Secret(""), description="bearer token for the back office (never logged)")
    backoffice_timeout_s: float = Field(5.0, gt=0, description="timeout of one back-office request")
    backoffice_validity: Literal["batch", "single"] = Field("batch", description=(
        "how validity (R4) is asked: 'batch' (every question of one loop tick in one POST "
        "/api/validity/batch) or 'single' (one GET /api/sessions/{id}/validity each, for a back "
        "office without the batch endpoint)"))
    backoffice_validity_batch_size: int = Field(500, ge=1, description="sessions per validity batch request")
    backoffice_validity_budget_s: float = Field(1.0, gt=0, allow_inf_nan=False, description=(
        "longest a reconnect's validation (R4) waits for the back office; past it Redis's answer "
        "stands, as when the back office is down"))
    transport: Literal["wire", "neonize"] = Field("wire", description="WhatsApp transport: wire | neonize")
    whatsapp_url: str = Field("ws://127.0.0.1:8765", description="WhatsApp (stand-in) URL for the wire transport")
    sessions: str = Field("backoffice", description=(
        "which sessions to run: 'backoffice' (its accounts), '@FILE' (one id per line), "
        "'PREFIX{A..B}' (a range, e.g. s{0..99}) or 'id1,id2,...'"))
    lease_ttl_s: float = Field(10.0, gt=0, description="session lease TTL (B4); a dead process's sessions move within it")
    cache_ttl_s: float = Field(5.0, ge=0, description="TTL of the in-process validity cache")
    outbox_batch_size: int = Field(200, ge=1, description="status updates per back-office request")
    outbox_flush_interval_s: float = Field(0.5, gt=0, description="how often normal-priority updates are flushed")
    outbox_retry_base_s: float = Field(0.5, gt=0, description="first retry delay when the back office fails")
    outbox_retry_cap_s: float = Field(30.0, gt=0, description="largest retry delay for the back office")
    metrics_port: int = Field(9464, ge=0, le=65535, description="loopback port of /metrics and /healthz (0: pick a free one)")
    timeline_path: Path | None = Field(None, description="JSON-lines timeline file of this process (none: no timeline)")
    owner_id: str = Field(default_factory=_default_owner_id, min_length=1,
                          description="this process's lease owner id (default: host-pid)")
    time_scale: float = Field(1.0, gt=0, description="multiplies every policy duration (0.1: ten times faster)")
    policy: dict[str, Any] = Field(default_factory=dict, description=(
        "reconnect policy keys for service.core.build_policy: base_s, factor, cap_s, max_attempts, "
        "jitter, connect_timeout_s, keepalive_interval_s, keepalive_misses, default_ban_wait_s, codes"))
    seed: int | None = Field(None, description="seed of the jitter random generator (none: random)")
    start_concurrency: int = Field(500, ge=1, description="sessions opening at once at start-up")
    max_inflight: int = Field(256, ge=1, description=(
        "validations and socket opens in flight at once (paces a reconnect storm; decides nothing)"))
    health_stuck_after_s: float | None = Field(None, gt=0, allow_inf_nan=False, description=(
        "/healthz is unhealthy while a session is validating or connecting for longer than this "
        "(none: twice the sum of the bounds of those steps; see service/README.md)"))
    health_outbox_stall_s: float | None = Field(None, gt=0, allow_inf_nan=False, description=(
        "/healthz is unhealthy while the oldest undelivered update is older than this and the back "
        "office answers the status batches (none: twice outbox_retry_cap_s + outbox_flush_interval_s "
        "+ backoffice_timeout_s)"))
    shutdown_timeout_s: float = Field(10.0, gt=0, description="graceful-stop deadline")
    session_credentials: Secret = Field(Secret(""), description=(
        "WhatsApp credentials sent by every session of a list/file/range source (never logged)"))
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")

    @field_validator("redis_url", "backoffice_token", "session_credentials", mode="before")
    @classmethod
    def _to_secret(cls, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        return Secret(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: Secret) -> Secret:
        if not value.reveal().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"must start with redis://, rediss:// or unix://, got {redact_url(value.reveal())!r}")
        return value

    @field_validator("backoffice_url")
    @classmethod
    def _http_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("whatsapp_url")
    @classmethod
    def _ws_scheme(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError(f"must start with ws:// or wss://, got {value!r}")
        return value.rstrip("/")

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_mapping(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a table of policy keys, got {type(value).__name__}")
        return dict(value)

    def build_policy(self) -> Policy:
        """The reconnect policy (scaled by time_scale); raises `ConfigError` with the core's message."""
        try:
            return build_policy({**self.policy, "time_scale": self.time_scale})
        except PolicyError as err:
            raise ConfigError(f"invalid policy setting: {err}") from err

    def safe_dict(self) -> dict[str, Any]:
        """Every setting with secrets masked, for the start-up log line."""
        raw = self.model_dump()
        raw["redis_url"] = redact_url(self.redis_url.reveal())
        raw["backoffice_token"] = "***" if self.backoffice_token.reveal() else ""
        raw["session_credentials"] = "***" if self.session_credentials.reveal() else ""
        raw["timeline_path"] = str(self.timeline_path) if self.timeline_path else None
        return raw


FIELD_NAMES: tuple[str, ...] = tuple(Settings.model_fields)
_SECRET_FIELDS = ("redis_url", "backoffice_token", "session_credentials")


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
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None


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
    lines = []
    for problem in err.errors():
        key = str(problem["loc"][0]) if problem["loc"] else "?"
        source = origin.get(key, "defaults")
        if problem["type"] == "extra_forbidden":
            lines.append(f"unknown setting {key!r} (from {source}); known: {', '.join(FIELD_NAMES)}")
            continue
        shown = "***" if key in _SECRET_FIELDS else repr(problem.get("input"))
        lines.append(f"setting {key!r} (from {source}) = {shown}: {problem['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
