"""Chaos scenarios as TOML files: a schema, a loader with errors naming the file and key, a writer.

Owns the file shape of a `ChaosScenario` (at real timings): top-level name, description,
duration_s, sessions, tolerances, tags; `[policy]` (the policy settings); `[expected]`
(the simulation's expectation); an optional `[outcome]` (the chaos run's own); arrays of
tables `[[faults]]` (what the simulation replays: `link_down`, `close_with`,
`account_deleted`), `[[actions]]` (chaos-only: `toxic`, `proxy_down`, `restart_redis`,
`kill_service`, `account_deactivated`) and `[[model_faults]]`. `dump_scenario` writes any
scenario so that `loads_scenario` gives back an equal value. Must not run anything.
"""

from __future__ import annotations

import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chaos.scenario import (AccountDeactivated, ChaosAction, ChaosScenario, ChaosScenarioError, KeepaliveSilence,
                            KillService, Outcome, ProxyDown, RestartRedis, StandinRefusing, ToxicWindow)
from service.core import Status
from sim.scenarios import AccountDeleted, CloseWith, Expected, Fault, LinkDown, Scenario, ScenarioError

SUFFIX = ".toml"
MAX_FILE_BYTES = 1_000_000  # a scenario file is a page of text, never a data dump


class ScenarioFileError(ChaosScenarioError):
    """A scenario file cannot be read or is not a valid scenario; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---- faults the simulation replays ----


class _LinkDown(_Strict):
    kind: Literal["link_down"]
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)


class _CloseWith(_Strict):
    kind: Literal["close_with"]
    at_s: float = Field(ge=0)
    code: int | str


class _AccountDeleted(_Strict):
    kind: Literal["account_deleted"]
    at_s: float = Field(ge=0)


_FaultModel = Annotated[_LinkDown | _CloseWith | _AccountDeleted, Field(discriminator="kind")]

# ---- chaos-only actions ----


class _Toxic(_Strict):
    kind: Literal["toxic"]
    upstream: str
    toxic: str
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    attributes: dict[str, int] = Field(default_factory=dict)
    stream: Literal["downstream", "upstream"] = "downstream"


class _ProxyDown(_Strict):
    kind: Literal["proxy_down"]
    upstream: str
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)


class _RestartRedis(_Strict):
    kind: Literal["restart_redis"]
    at_s: float = Field(ge=0)
    down_s: float = Field(default=1.0, ge=0)
    keep_data: bool = True


class _KillService(_Strict):
    kind: Literal["kill_service"]
    at_s: float = Field(ge=0)
    restart_after_s: float | Literal["never"] = 1.0


class _AccountDeactivated(_Strict):
    kind: Literal["account_deactivated"]
    at_s: float = Field(ge=0)


class _StandinRefusing(_Strict):
    kind: Literal["standin_refusing"]
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    code: int = Field(default=503, ge=100, le=999)


class _KeepaliveSilence(_Strict):
    kind: Literal["keepalive_silence"]
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)


_ActionModel = Annotated[_Toxic | _ProxyDown | _RestartRedis | _KillService | _AccountDeactivated
                         | _StandinRefusing | _KeepaliveSilence, Field(discriminator="kind")]

# ---- outcome and the whole file ----

_StatusName = Literal["active", "connecting", "inactive"]


class _Expected(_Strict):
    final_status: _StatusName | None = None
    attempt_offsets_s: list[float] = Field(default_factory=list)
    sockets_opened: int | None = Field(default=None, ge=0)
    dropped: bool = False


class _Outcome(_Strict):
    final_statuses: list[_StatusName] = Field(min_length=1)
    reconnects_min: int = Field(default=0, ge=0)
    reconnects_max: int | None = Field(default=None, ge=0)
    attempt_offsets_s: list[float] | None = None
    dropped: bool | None = None
    text: str = ""


class _ScenarioFile(_Strict):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str
    duration_s: float = Field(gt=0)
    expected: _Expected
    sessions: int = Field(default=1, ge=1, le=100_000)
    prediction: Literal["exact", "none"] = "exact"
    tolerance_s: float = Field(default=0.25, ge=0)
    overhead_s: float = Field(default=0.25, ge=0)
    settle_s: float = Field(default=3.0, ge=0)
    default_scale: float | None = Field(default=None, ge=0.01)
    tags: list[str] = Field(default_factory=list)
    schedule_tags: list[str] = Field(default_factory=list)
    policy: dict[str, Any] = Field(default_factory=dict)
    outcome: _Outcome | None = None
    faults: list[_FaultModel] = Field(default_factory=list)
    actions: list[_ActionModel] = Field(default_factory=list)
    model_faults: list[_FaultModel] | None = None


@dataclass(frozen=True)
class ScenarioFile:
    """A loaded file: the scenario (at real timings), the scale to run it at by default, where it came from."""

    scenario: ChaosScenario
    default_scale: float | None
    path: Path | None = None


# ---- file → value ----


def _fault(model: _LinkDown | _CloseWith | _AccountDeleted) -> Fault:
    if isinstance(model, _LinkDown):
        return LinkDown(model.start_s, model.end_s)
    if isinstance(model, _CloseWith):
        return CloseWith(model.at_s, model.code)
    return AccountDeleted(model.at_s)


def _action(model: Any) -> ChaosAction:
    if isinstance(model, _Toxic):
        return ToxicWindow(model.upstream, model.toxic, model.start_s, model.end_s,
                           tuple(sorted(model.attributes.items())), model.stream)
    if isinstance(model, _ProxyDown):
        return ProxyDown(model.upstream, model.start_s, model.end_s)
    if isinstance(model, _RestartRedis):
        return RestartRedis(model.at_s, model.down_s, model.keep_data)
    if isinstance(model, _KillService):
        return KillService(model.at_s, None if model.restart_after_s == "never" else model.restart_after_s)
    if isinstance(model, _StandinRefusing):
        return StandinRefusing(model.start_s, model.end_s, model.code)
    if isinstance(model, _KeepaliveSilence):
        return KeepaliveSilence(model.start_s, model.end_s)
    return AccountDeactivated(model.at_s)


def _scenario(data: _ScenarioFile) -> ChaosScenario:
    exp = data.expected
    expected = Expected(None if exp.final_status is None else Status(exp.final_status),
                        tuple(exp.attempt_offsets_s), exp.sockets_opened, exp.dropped)
    schedule = Scenario(data.name, data.description, tuple(_fault(f) for f in data.faults), data.duration_s,
                        expected, tags=tuple(data.schedule_tags))
    outcome = None
    if data.outcome is not None:
        out = data.outcome
        outcome = Outcome(frozenset(Status(s) for s in out.final_statuses), out.reconnects_min, out.reconnects_max,
                          None if out.attempt_offsets_s is None else tuple(out.attempt_offsets_s), out.dropped,
                          out.text)
    model = None if data.model_faults is None else tuple(_fault(f) for f in data.model_faults)
    return ChaosScenario(schedule, tuple(_action(a) for a in data.actions), data.sessions,
                         tuple(sorted(data.policy.items())), outcome, data.prediction, model, data.tolerance_s,
                         data.overhead_s, data.settle_s, tuple(data.tags))


def _kinds(union: Any) -> frozenset[str]:
    """The `kind` tags of a discriminated union of table models."""
    members = typing.get_args(typing.get_args(union)[0])
    return frozenset(typing.get_args(m.model_fields["kind"].annotation)[0] for m in members)


_TAGS = _kinds(_FaultModel) | _kinds(_ActionModel)


def _where(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in _TAGS and text.endswith("]"):
            continue  # pydantic names the union member; the index already says which table
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def loads_scenario(text: str, source: str = "<string>") -> ScenarioFile:
    """Parse and validate TOML text; `ScenarioFileError` names `source`, the line (syntax) or the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioFileError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ScenarioFileError(f"{source}: arrays or tables nested too deeply to be a scenario") from None
    try:
        data = _ScenarioFile.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ScenarioFileError(f"{source}: " + "; ".join(problems)) from None
    try:
        scenario = _scenario(data)
        if data.default_scale is not None:
            scenario.scaled(data.default_scale)
    except (ScenarioError, ValueError, TypeError) as exc:
        raise ScenarioFileError(f"{source}: {exc}") from None
    except RecursionError:
        raise ScenarioFileError(f"{source}: [policy] nested too deeply to be a policy") from None
    return ScenarioFile(scenario, data.default_scale)


def load_scenario(path: Path | str) -> ScenarioFile:
    """Read one scenario file (at most `MAX_FILE_BYTES`)."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            blob = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(blob) > MAX_FILE_BYTES:
        raise ScenarioFileError(f"{path}: larger than {MAX_FILE_BYTES} bytes: not a scenario file")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    loaded = loads_scenario(text, str(path))
    return ScenarioFile(loaded.scenario, loaded.default_scale, path)


def load_scenarios(path: Path | str) -> list[ScenarioFile]:
    """A file, or every `*.toml` in a folder (sorted by name); an empty folder or a name used twice raises."""
    path = Path(path)
    if not path.is_dir():
        return [load_scenario(path)]
    files = sorted(p for p in path.iterdir() if p.suffix == SUFFIX and p.is_file())
    if not files:
        raise ScenarioFileError(f"{path}: no {SUFFIX} scenario files in this folder")
    loaded, seen = [], {}
    for file in files:
        item = load_scenario(file)
        if item.scenario.name in seen:
            name = item.scenario.name
            raise ScenarioFileError(f"{file}: scenario name {name!r} is also used by {seen[name]}")
        seen[item.scenario.name] = file
        loaded.append(item)
    return loaded


# ---- value → file ----


def _fault_table(fault: Fault) -> dict[str, Any]:
    if isinstance(fault, LinkDown):
        return {"kind": "link_down", "start_s": fault.start_s, "end_s": fault.end_s}
    if isinstance(fault, CloseWith):
        return {"kind": "close_with", "at_s": fault.at_s, "code": fault.code}
    return {"kind": "account_deleted", "at_s": fault.at_s}


def _action_table(action: ChaosAction) -> dict[str, Any]:
    if isinstance(action, ToxicWindow):
        return {"kind": "toxic", "upstream": action.upstream, "toxic": action.kind, "start_s": action.start_s,
                "end_s": action.end_s, "stream": action.stream, "attributes": dict(action.attributes)}
    if isinstance(action, ProxyDown):
        return {"kind": "proxy_down", "upstream": action.upstream, "start_s": action.start_s, "end_s": action.end_s}
    if isinstance(action, RestartRedis):
        return {"kind": "restart_redis", "at_s": action.at_s, "down_s": action.down_s, "keep_data": action.keep_data}
    if isinstance(action, KillService):
        after = "never" if action.restart_after_s is None else action.restart_after_s
        return {"kind": "kill_service", "at_s": action.at_s, "restart_after_s": after}
    if isinstance(action, StandinRefusing):
        return {"kind": "standin_refusing", "start_s": action.start_s, "end_s": action.end_s, "code": action.code}
    if isinstance(action, KeepaliveSilence):
        return {"kind": "keepalive_silence", "start_s": action.start_s, "end_s": action.end_s}
    return {"kind": "account_deactivated", "at_s": action.at_s}


def _drop_none(table: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if v is not None}


def _drop_empty(table: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k not in keys or v}


def scenario_table(scenario: ChaosScenario, default_scale: float | None = None) -> dict[str, Any]:
    """The file's content as plain data (TOML has no null: absent keys mean None)."""
    if scenario.time_scale != 1.0:
        raise ScenarioFileError(f"scenario {scenario.name!r}: write scenario files at real timings, "
                                f"not at scale {scenario.time_scale:g}")
    exp = scenario.schedule.expected
    table: dict[str, Any] = {
        "name": scenario.name, "description": scenario.description, "duration_s": scenario.duration_s,
        "sessions": scenario.sessions, "prediction": scenario.prediction, "tolerance_s": scenario.tolerance_s,
        "overhead_s": scenario.overhead_s, "settle_s": scenario.settle_s, "default_scale": default_scale,
        "tags": list(scenario.tags), "schedule_tags": list(scenario.schedule.tags),
        "policy": dict(scenario.policy_settings),
        "expected": _drop_none({"final_status": None if exp.final_status is None else exp.final_status.value,
                                "attempt_offsets_s": list(exp.attempt_offsets_s),
                                "sockets_opened": exp.sockets_opened, "dropped": exp.dropped}),
        "faults": [_fault_table(f) for f in scenario.faults],
        "actions": [_action_table(a) for a in scenario.actions],
    }
    if scenario.outcome is not None:
        out = scenario.outcome
        table["outcome"] = _drop_none({
            "final_statuses": sorted(s.value for s in out.final_statuses), "reconnects_min": out.reconnects_min,
            "reconnects_max": out.reconnects_max,
            "attempt_offsets_s": None if out.attempt_offsets_s is None else list(out.attempt_offsets_s),
            "dropped": out.dropped, "text": out.text})
    if scenario.model_faults is not None:
        table["model_faults"] = [_fault_table(f) for f in scenario.model_faults]
    return _drop_empty(_drop_none(table), ("tags", "schedule_tags", "policy", "faults", "actions"))


def dump_scenario(scenario: ChaosScenario, default_scale: float | None = None) -> str:
    """The scenario as a TOML file that `loads_scenario` turns back into an equal value."""
    header = f"# chaos scenario {scenario.name}: {scenario.description}\n# times at real timings, in seconds\n\n"
    return header + tomli_w.dumps(scenario_table(scenario, default_scale))
