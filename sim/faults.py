"""Fault processes: turn a scenario's fault values into happenings on a block's SimPy clock.

Shared faults (link down, close with a code, account deleted) hit every session of the
block (`sim.replay` runs this model for a few sessions); population faults (flaky links, churn, rolling
deploy) follow `sim.population`. Chance comes only from the block's `fault_rng`. Must
not decide anything about reconnects: faults deliver events, the core decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simpy.events import Timeout

from service.core import Status
from service.core.events import Closed
from sim.population import AccountChurn, FlakyLinks, RollingDeploy
from sim.scenarios import AccountDeleted, CloseWith, LinkDown

if TYPE_CHECKING:
    from sim.model import BlockModel, Unit

_LINK_LOST = Closed(code=None)


def install(model: BlockModel) -> None:
    """Start one process per fault of the model's scenario."""
    env = model.env
    for fault in model.scenario.faults:
        if isinstance(fault, LinkDown):
            env.process(_link_down(model, fault))
        elif isinstance(fault, CloseWith):
            env.process(_close_with(model, fault))
        elif isinstance(fault, AccountDeleted):
            env.process(_deleted(model, fault))
        elif isinstance(fault, FlakyLinks):
            _flaky_links(model, fault)
        elif isinstance(fault, AccountChurn):
            env.process(_churn(model, fault))
        elif isinstance(fault, RollingDeploy):
            env.process(_rolling_deploy(model, fault))
        else:
            raise TypeError(f"the model does not know fault {fault!r}")


def _close_open(model: BlockModel, event: Closed) -> None:
    for unit in list(model.units):  # a feed may split units; the new ones are not open
        if unit.socket_open and unit.dropped is None:
            model.disrupt(unit, event)


def _link_down(model: BlockModel, fault: LinkDown):
    yield model.env.timeout(fault.start_s)
    model.down_depth += 1
    _close_open(model, _LINK_LOST)
    yield model.env.timeout(fault.end_s - fault.start_s)
    model.down_depth -= 1


def _close_with(model: BlockModel, fault: CloseWith):
    yield model.env.timeout(fault.at_s)
    _close_open(model, Closed(code=fault.code))


def _deleted(model: BlockModel, fault: AccountDeleted):
    yield model.env.timeout(fault.at_s)
    for unit in model.units:
        _delete(model, unit, close_code=None)


def _delete(model: BlockModel, unit: Unit, close_code) -> None:
    """The back office deletes the account: Redis says inactive; an open socket is closed."""
    unit.deleted = True
    unit.status = Status.INACTIVE  # the back office shares Redis
    model.redis_op(unit.count)
    if close_code is not None and unit.socket_open and unit.dropped is None:
        model.disrupt(unit, Closed(code=close_code))


def _churn(model: BlockModel, fault: AccountChurn):
    share = len(model.units) / model.params.sessions  # per-session engine: one unit per session
    rate_per_s = fault.per_s * share
    if rate_per_s <= 0:
        return
    rng, env = model.fault_rng, model.env
    yield env.timeout(fault.start_s)
    live = list(model.units)
    while live:
        yield env.timeout(rng.expovariate(rate_per_s))
        unit = live.pop(rng.randrange(len(live)))
        _delete(model, unit, close_code=fault.close_code)


def _flaky_links(model: BlockModel, fault: FlakyLinks) -> None:
    rng = model.fault_rng
    for unit in list(model.units):
        if rng.random() < fault.fraction:
            first_s = fault.start_s + rng.expovariate(1.0 / fault.mean_up_s)
            _at(model, first_s, lambda _e, u=unit: _link_flips(model, fault, u, down=True))


def _link_flips(model: BlockModel, fault: FlakyLinks, unit: Unit, *, down: bool) -> None:
    unit.link_down = down
    if down and unit.socket_open and unit.dropped is None:
        model.disrupt(unit, _LINK_LOST)
    mean_s = fault.mean_down_s if down else fault.mean_up_s
    next_s = model.fault_rng.expovariate(1.0 / mean_s)
    if model.env.now + next_s < model.params.until_s:
        _at(model, next_s, lambda _e: _link_flips(model, fault, unit, down=not down))


def _at(model: BlockModel, delay_s: float, callback) -> None:
    Timeout(model.env, delay_s).callbacks.append(callback)


def _rolling_deploy(model: BlockModel, fault: RollingDeploy):
    env = model.env
    yield env.timeout(fault.start_s)
    for process in range(fault.processes):
        if process:
            yield env.timeout(fault.interval_s)
        handovers = model.release_process(process)
        _at(model, fault.handover_s, lambda _e, hs=handovers: [model.take_over(u, h) for u, h in hs])
