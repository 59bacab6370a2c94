"""Predicted timelines in the shared timeline format (`service.core.TimelineRecord`).

`predict(name, …, via="replay")` is what `python -m sim replay NAME` prints and what the
chaos runner compares reality with (the model set up as the twin, `sim.replay`); `via="model"`
runs the same scenario with the population parameters, so tests can show both agree. Must not write files.
"""

from __future__ import annotations

from service.core import TimelineRecord
from sim.model import BlockModel
from sim.params import ModelParams
from sim.population import PopulationScenario, resolve
from sim.replay import replay
from sim.scenarios import SCENARIOS, ScenarioError


def predict(name: str, params: ModelParams, *, time_scale: float = 1.0, sessions: int = 1,
            via: str = "replay") -> list[TimelineRecord]:
    """The timeline of scenario `name` for `sessions` sessions under the policy in `params`."""
    if via == "replay":
        if name not in SCENARIOS:
            raise ScenarioError(f"replay knows the shared scenarios only ({', '.join(sorted(SCENARIOS))}); "
                                f"got {name!r} — use --via model for population scenarios")
        scenario = SCENARIOS[name].scaled(time_scale) if time_scale != 1.0 else SCENARIOS[name]
        policy = params.policy().scaled(time_scale) if time_scale != 1.0 else params.policy()
        return replay(scenario, policy, sessions=sessions, seed=params.seed).timeline
    if via == "model":
        return model_timeline(name, params, time_scale=time_scale, sessions=sessions)
    raise ScenarioError(f"via must be 'replay' or 'model', got {via!r}")


def model_timeline(name: str, params: ModelParams, *, time_scale: float = 1.0,
                   sessions: int = 1) -> list[TimelineRecord]:
    """Run the population model per session with tracing; its timeline records, in order."""
    if name in SCENARIOS:
        shared = SCENARIOS[name].scaled(time_scale) if time_scale != 1.0 else SCENARIOS[name]
        scenario = PopulationScenario(name, shared.description, shared.faults, shared.duration_s)
    else:
        scenario = resolve(name, params.outage_s * time_scale)
    until_s = params.until_s * time_scale if params.until_s else scenario.until_s
    scaled = params.with_(sessions=sessions, scenario=params.scenario, until_s=until_s,
                          base_s=params.base_s * time_scale, cap_s=params.cap_s * time_scale)
    model = BlockModel(scaled, scenario, 0, 0, sessions, cohort=False, trace=True)
    model.run()
    return model.timeline
