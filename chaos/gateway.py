"""The gateway under test: a `GatewaySpec` read from a TOML file, and the process that runs it.

Owns the contract's launch half (`chaos/CONTRACT.md`, "Starting a gateway"): the TOML
shape (command, environment, working directory, readiness probe, whether the gateway
honours a time scale and writes the shared timeline, where its status lives in Redis),
its validation with errors naming the file and key, the placeholders the harness fills
in (`{whatsapp_url}`, `{redis_url}`, `{sessions_file}`, …), and `GatewayProcess`, one
started gateway (each start a new incarnation with its own timeline file). Must not
know scenarios or judge behaviour: the runner passes the values, the checkers judge.
"""

from __future__ import annotations

import json
import string
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from chaos.process import ManagedProcess, free_port
from service.core import Status, TimelineRecord, read_jsonl

GATEWAYS_DIR = Path(__file__).resolve().parent / "gateways"
REFERENCE_GATEWAY = GATEWAYS_DIR / "reference.toml"
# What the harness fills in; `backoffice_token` only in `env` (argv shows in `ps` and in logs).
PLACEHOLDERS = {
    "python": "this Python interpreter (sys.executable)",
    "whatsapp_url": "ws://HOST:PORT of the WhatsApp stand-in (sessions connect to {whatsapp_url}/ws/<session id>)",
    "redis_url": "redis://HOST:PORT/0 of the Redis the gateway keeps its status in",
    "backoffice_url": "http://HOST:PORT of the back-office stand-in's API",
    "backoffice_token": "the back office's bearer token (env only)",
    "sessions": "the session ids, comma-separated",
    "sessions_file": "a file with one session id per line",
    "policy_json": "the scenario's policy keys as a JSON object, at real timings (absent keys: the note's)",
    "time_scale": "multiply every policy duration by this (1 = the note's real timings)",
    "timeline_path": "where to write the shared timeline (JSON lines), when `timeline = true`",
    "health_port": "a free loopback port for the readiness probe",
    "owner_id": "a unique id for this incarnation of the gateway",
    "lease_ttl_s": "how long a crashed gateway's claim on a session may last (short when the scenario kills it)",
    "run_dir": "the run's report folder (logs go there)",
}
_TOP_KEYS = {"name", "description", "command", "env", "cwd", "time_scale", "timeline", "start_timeout_s",
             "stop_timeout_s", "ready", "status", "policy", "outbox_key"}
_READY_KINDS = ("http", "status")
_STATUS_NAMES = tuple(s.value for s in Status)


class GatewaySpecError(ValueError):
    """A gateway file is missing, not TOML, or has a wrong key; the message names the file and key."""


@dataclass(frozen=True)
class StatusLayout:
    """Where and how the gateway keeps each session's status in Redis (the note's layout fits)."""

    key_template: str = "rl:status:{session_id}"
    hash_field: str | None = None  # HGET key field instead of GET key
    values: Mapping[str, str] = field(default_factory=lambda: {s: s for s in _STATUS_NAMES})

    def key(self, session_id: str) -> str:
        return self.key_template.replace("{session_id}", session_id)

    def canonical(self, raw: bytes | str | None) -> str | None:
        """The gateway's stored value as `active` / `connecting` / `inactive`; unknown text kept as is."""
        if raw is None:
            return None
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return next((name for name, value in self.values.items() if value == text), text)

    def stored(self, status: str) -> str:
        return self.values[status]

    def read(self, client: redis.Redis, session_ids: list[str]) -> dict[str, str | None]:
        """Every session's canonical status, read in one round trip."""
        if self.hash_field is None:
            raws = client.mget([self.key(s) for s in session_ids]) if session_ids else []
        else:
            pipe = client.pipeline(transaction=False)
            for session_id in session_ids:
                pipe.hget(self.key(session_id), self.hash_field)
            raws = pipe.execute()
        return {s: self.canonical(raw) for s, raw in zip(session_ids, raws)}

    def write(self, client: redis.Redis, session_id: str, status: str) -> None:
        if self.hash_field is None:
            client.set(self.key(session_id), self.stored(status))
        else:
            client.hset(self.key(session_id), self.hash_field, self.stored(status))

    @property
    def is_default(self) -> bool:
        return self == StatusLayout()


@dataclass(frozen=True)
class ReadyProbe:
    """How the harness knows the gateway is up: an HTTP GET answering 2xx (and not `{"ok": false}`),
    or `status`: every session has a status in Redis (the harness deletes them before the first start)."""

    kind: str = "status"
    url: str = ""

    def is_ready(self, values: Mapping[str, str], statuses: Callable[[], dict[str, str | None]]) -> bool:
        if self.kind == "status":
            return None not in statuses().values()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(fill(self.url, values), timeout=0.5) as reply:
                body = reply.read(65536)
        except (urllib.error.URLError, OSError):
            return False
        try:
            answer = json.loads(body)
        except ValueError:
            return True
        return not (isinstance(answer, dict) and answer.get("ok") is False)


@dataclass(frozen=True)
class GatewaySpec:
    """One gateway as the contract describes it. Build it with `load_gateway(path)`."""

    name: str
    command: tuple[str, ...]
    source: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    description: str = ""
    time_scale: bool = False
    timeline: bool = False
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    ready: ReadyProbe = ReadyProbe()
    status: StatusLayout = StatusLayout()
    policy_env_prefix: str | None = None  # also give each policy key as env PREFIX<KEY> (JSON value)
    outbox_key: str | None = None  # a Redis stream/list of undelivered back-office updates: empty = settled

    def outbox_empty(self, client: redis.Redis) -> bool:
        """True when the gateway keeps no outbox in Redis, or keeps it empty."""
        if self.outbox_key is None:
            return True
        kind = client.type(self.outbox_key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        length = {"stream": client.xlen, "list": client.llen, "zset": client.zcard, "set": client.scard}.get(kind)
        return length is None or length(self.outbox_key) == 0

    def supports_scale(self, time_scale: float) -> bool:
        return self.time_scale or time_scale == 1.0

    def argv(self, values: Mapping[str, str]) -> list[str]:
        return [fill(part, values) for part in self.command]

    def environment(self, values: Mapping[str, str], policy: Mapping[str, Any]) -> dict[str, str]:
        env = {key: fill(value, values) for key, value in self.env.items()}
        if self.policy_env_prefix is not None:
            env.update({self.policy_env_prefix + key.upper(): json.dumps(value) for key, value in policy.items()})
        return env


def fill(template: str, values: Mapping[str, str]) -> str:
    """`template` with each `{name}` replaced (`{{`/`}}` are literal braces)."""
    return template.format_map(values)


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def load_gateway(path: Path | str) -> GatewaySpec:
    """Read and validate a gateway TOML file; relative `cwd` and paths resolve from its folder."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            raw = tomllib.load(stream)
    except FileNotFoundError:
        raise GatewaySpecError(f"gateway file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise GatewaySpecError(f"gateway file {str(path)!r} is not valid TOML: {exc}") from None
    return _Reader(path, raw).spec()


class _Reader:
    """Validates one parsed gateway file, each error naming the file and the key."""

    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        self.path, self.raw = path.resolve(), raw

    def fail(self, key: str, problem: str) -> GatewaySpecError:
        return GatewaySpecError(f"{self.path}: key {key!r}: {problem}")

    def spec(self) -> GatewaySpec:
        unknown = sorted(set(self.raw) - _TOP_KEYS)
        if unknown:
            raise self.fail(unknown[0], f"unknown key; known: {', '.join(sorted(_TOP_KEYS))}")
        return GatewaySpec(
            name=self.text("name", self.raw.get("name", self.path.parent.name)),
            description=self.text("description", self.raw.get("description", "")),
            command=self.command(), source=self.path, env=self.env(), cwd=self.cwd(),
            time_scale=self.flag("time_scale"), timeline=self.flag("timeline"),
            start_timeout_s=self.seconds("start_timeout_s", 30.0), stop_timeout_s=self.seconds("stop_timeout_s", 10.0),
            ready=self.ready(), status=self.status(), policy_env_prefix=self.policy_prefix(),
            outbox_key=None if "outbox_key" not in self.raw else self.text("outbox_key", self.raw["outbox_key"]))

    def text(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {type(value).__name__}")
        return value

    def template(self, key: str, value: Any, *, secret_ok: bool) -> str:
        text = self.text(key, value)
        try:
            names = _placeholders(text)
        except ValueError as exc:
            raise self.fail(key, f"bad placeholder in {text!r}: {exc} (write {{{{ for a literal brace)") from None
        bad = sorted(names - set(PLACEHOLDERS))
        if bad:
            raise self.fail(key, f"unknown placeholder {{{bad[0]}}}; known: {', '.join(sorted(PLACEHOLDERS))}")
        if not secret_ok and "backoffice_token" in names:
            raise self.fail(key, "{backoffice_token} may only appear in [env] (a command line shows in ps and logs)")
        return text

    def command(self) -> tuple[str, ...]:
        command = self.raw.get("command")
        if not isinstance(command, list) or not command:
            raise self.fail("command", "must be a non-empty list of strings (argv), e.g. [\"node\", \"gateway.js\"]")
        return tuple(self.template(f"command[{i}]", part, secret_ok=False) for i, part in enumerate(command))

    def env(self) -> dict[str, str]:
        env = self.raw.get("env", {})
        if not isinstance(env, dict):
            raise self.fail("env", f"must be a table of NAME = \"value\", got {type(env).__name__}")
        return {str(name): self.template(f"env.{name}", value, secret_ok=True) for name, value in env.items()}

    def cwd(self) -> Path:
        cwd = Path(self.text("cwd", self.raw.get("cwd", ".")))
        resolved = cwd if cwd.is_absolute() else self.path.parent / cwd
        if not resolved.is_dir():
            raise self.fail("cwd", f"{str(resolved)!r} is not a directory")
        return resolved.resolve()

    def flag(self, key: str) -> bool:
        value = self.raw.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def seconds(self, key: str, default: float) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise self.fail(key, f"must be a number of seconds > 0, got {value!r}")
        return float(value)

    def table(self, key: str, known: set[str]) -> dict[str, Any]:
        table = self.raw.get(key, {})
        if not isinstance(table, dict):
            raise self.fail(key, f"must be a table, got {type(table).__name__}")
        unknown = sorted(set(table) - known)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", f"unknown key; known: {', '.join(sorted(known))}")
        return table

    def ready(self) -> ReadyProbe:
        table = self.table("ready", {"kind", "url"})
        kind = table.get("kind", "http" if "url" in table else "status")
        if kind not in _READY_KINDS:
            raise self.fail("ready.kind", f"must be one of {', '.join(_READY_KINDS)}, got {kind!r}")
        url = self.template("ready.url", table.get("url", ""), secret_ok=False)
        if kind == "http" and not url.startswith("http://127.0.0.1"):
            raise self.fail("ready.url", f"must be an http://127.0.0.1:… URL (loopback only), got {url!r}")
        return ReadyProbe(kind, url)

    def status(self) -> StatusLayout:
        table = self.table("status", {"key", "field", "values"})
        key = self.text("status.key", table.get("key", StatusLayout.key_template))
        if "{session_id}" not in key:
            raise self.fail("status.key", f"must contain {{session_id}}, got {key!r}")
        hash_field = table.get("field")
        if hash_field is not None:
            hash_field = self.text("status.field", hash_field)
        values = table.get("values", {})
        if not isinstance(values, dict) or set(values) - set(_STATUS_NAMES):
            raise self.fail("status.values", f"must be a table with keys among {', '.join(_STATUS_NAMES)}")
        merged = {name: self.text(f"status.values.{name}", values.get(name, name)) for name in _STATUS_NAMES}
        if len(set(merged.values())) != len(merged):
            raise self.fail("status.values", f"two statuses share one stored value: {merged}")
        return StatusLayout(key, hash_field, merged)

    def policy_prefix(self) -> str | None:
        table = self.table("policy", {"env_prefix"})
        prefix = table.get("env_prefix")
        return None if prefix is None else self.text("policy.env_prefix", prefix)


def reference_gateway() -> GatewaySpec:
    """The reference service (`python -m service`) as a gateway."""
    return load_gateway(REFERENCE_GATEWAY)


@dataclass(frozen=True)
class Endpoints:
    """What one run hands every incarnation of its gateway."""

    whatsapp_url: str
    redis_url: str
    backoffice_url: str
    backoffice_token: str
    sessions: list[str]
    run_dir: Path
    name_prefix: str
    time_scale: float = 1.0
    policy: Mapping[str, Any] = field(default_factory=dict)
    lease_ttl_s: float = 10.0


class GatewayProcess:
    """The gateway of one run; each `start()` is a new incarnation with its own timeline file."""

    def __init__(self, spec: GatewaySpec, endpoints: Endpoints,
                 statuses: Callable[[], dict[str, str | None]]) -> None:
        if not spec.supports_scale(endpoints.time_scale):
            raise GatewaySpecError(f"{spec.source}: gateway {spec.name!r} has no time scale (`time_scale = false`); "
                                   f"run it at scale 1, not {endpoints.time_scale:g}")
        self.spec, self.endpoints, self.statuses = spec, endpoints, statuses
        self.incarnation = 0
        self.proc: ManagedProcess | None = None

    @property
    def policy(self) -> dict[str, Any]:
        return dict(self.endpoints.policy)

    def values(self, name: str, port: int) -> dict[str, str]:
        ends = self.endpoints
        sessions_file = ends.run_dir / "sessions.txt"
        sessions_file.write_text("".join(f"{s}\n" for s in ends.sessions), encoding="utf-8")
        return {
            "python": sys.executable, "whatsapp_url": ends.whatsapp_url, "redis_url": ends.redis_url,
            "backoffice_url": ends.backoffice_url, "backoffice_token": ends.backoffice_token,
            "sessions": ",".join(ends.sessions), "sessions_file": str(sessions_file),
            "policy_json": json.dumps(dict(ends.policy), sort_keys=True), "time_scale": repr(float(ends.time_scale)),
            "timeline_path": str(ends.run_dir / f"timeline-{name}.jsonl"), "health_port": str(port),
            "owner_id": f"{ends.name_prefix}-{name}", "lease_ttl_s": repr(float(ends.lease_ttl_s)),
            "run_dir": str(ends.run_dir),
        }

    def start(self) -> None:
        name = f"gateway-{self.incarnation}"
        self.incarnation += 1
        self.endpoints.run_dir.mkdir(parents=True, exist_ok=True)
        values = self.values(name, free_port())
        self.proc = ManagedProcess(name, self.spec.argv(values), cwd=self.spec.cwd,
                                   ready=lambda: self.spec.ready.is_ready(values, self.statuses),
                                   log_dir=self.endpoints.run_dir, env=self.spec.environment(values, self.policy),
                                   start_timeout_s=self.spec.start_timeout_s, stop_timeout_s=self.spec.stop_timeout_s)
        self.proc.start()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def timeline(self) -> list[TimelineRecord]:
        """Every incarnation's timeline records (none when the gateway writes no timeline)."""
        records: list[TimelineRecord] = []
        if not self.spec.timeline:
            return records
        for path in sorted(self.endpoints.run_dir.glob("timeline-gateway-*.jsonl")):
            with open(path, encoding="utf-8") as stream:
                records += list(read_jsonl(stream))
        return records

    def clear_old_timelines(self) -> None:
        for old in self.endpoints.run_dir.glob("timeline-gateway-*.jsonl"):
            old.unlink()
