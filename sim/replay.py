"""Replay a named scenario for a few sessions through the population model (the twin).

The prediction the chaos runner compares reality with. There is one interpreter of the
core's commands, `sim.model.BlockModel` (per-session engine, tracing on); this module only
sets it up for a handful of sessions with no WhatsApp limits, optionally with the
latencies measured in a chaos run (`Latencies`: validation and connect time, the model's
back-office and WhatsApp connect latencies), and collects what the sessions did: timeline,
status writes, sockets opened, final status, drops. Must not touch the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.core import Policy, Status, TimelineRecord
from service.core.events import Drop, OpenSocket, SetStatus
from service.core.statuses import Priority
from sim.model import BlockModel, Unit
from sim.params import ModelParams
from sim.population import PopulationScenario
from sim.scenarios import Scenario


@dataclass(frozen=True)
class Latencies:
    """Per-step latencies of a real run, fed to the model (0: the zero-latency twin)."""

    validation_s: float = 0.0  # reconnect_running → session_starting (Redis, then the back office)
    connect_s: float = 0.0  # session_starting → session_open or the failure

    def to_dict(self) -> dict[str, float]:
        return {"validation_ms": round(self.validation_s * 1000, 1), "connect_ms": round(self.connect_s * 1000, 1)}


@dataclass
class ReplayResult:
    """What a replay produced: the timeline, status writes and sockets opened per session."""

    scenario: str
    timeline: list[TimelineRecord] = field(default_factory=list)
    status_updates: list[tuple[float, str, Status, Priority]] = field(default_factory=list)
    sockets_opened: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    final_status: dict[str, Status | None] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)

    def attempt_times_s(self, session_id: str) -> list[float]:
        """Times of the reconnect sockets (attempt ≥ 1) of one session."""
        return [t for t, attempt in self.sockets_opened.get(session_id, []) if attempt >= 1]


class _TwinModel(BlockModel):
    """The model, also noting status writes and socket opens per session."""

    def __init__(self, *args, result: ReplayResult, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.result = result

    def _set_status(self, unit: Unit, command: SetStatus) -> None:
        self.result.status_updates.append((self.env.now, unit.machine.session_id, command.status, command.priority))
        super()._set_status(unit, command)

    def _open_socket(self, unit: Unit, command: OpenSocket):
        self.result.sockets_opened.setdefault(unit.machine.session_id, []).append((self.env.now, command.attempt))
        return super()._open_socket(unit, command)

    def _drop(self, unit: Unit, command: Drop) -> None:
        self.result.dropped[unit.machine.session_id] = command.reason
        super()._drop(unit, command)


def twin_params(policy: Policy, *, sessions: int, until_s: float, seed: int = 0,
                latencies: Latencies | None = None) -> ModelParams:
    """Model parameters for a few sessions of one gateway: no WhatsApp limits or upstream capacities
    (0: unlimited), the run's latencies."""
    lat = latencies or Latencies()
    return ModelParams(sessions=sessions, seed=seed, until_s=until_s, ip_connects_per_s=0, account_connects=0,
                       sessions_per_ip=1, redis_ops_per_s=0, backoffice_requests_per_s=0, connect_timeout_s=policy.timeouts.connect_timeout_s,
                       backoffice_latency_s=lat.validation_s, whatsapp_connect_s=lat.connect_s,
                       backoffice_validity_budget_s=max(lat.validation_s, 1.0))


def replay(scenario: Scenario, policy: Policy, *, sessions: int = 1, seed: int = 0,
           latencies: Latencies | None = None) -> ReplayResult:
    """Run `scenario` for `sessions` sessions (ids s0, s1, …) through the model and return what happened."""
    params = twin_params(policy, sessions=sessions, until_s=scenario.duration_s, seed=seed, latencies=latencies)
    population = PopulationScenario(scenario.name, scenario.description, scenario.faults, scenario.duration_s)
    result = ReplayResult(scenario=scenario.name)
    model = _TwinModel(params, population, 0, 0, sessions, cohort=False, trace=True, policy=policy, result=result)
    model.run()
    result.timeline = model.timeline
    for unit in model.units:
        result.sockets_opened.setdefault(unit.machine.session_id, [])
        result.final_status[unit.machine.session_id] = unit.status
    return result
