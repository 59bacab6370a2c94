"""Bindings: each fault kind of a scenario → the real action that makes it happen.

A link down disables the WhatsApp proxy; a close-with-code and an account deletion or
deactivation are stand-in admin calls; toxics and disabled proxies go through
`chaos.toxiproxy`; Redis restarts and service kills call what the runner hands in.
`steps_for` turns a scenario into timed steps (start and end of each fault), each of
which records the fault window it opened or closed. `rollback` undoes every kind of
fault on this scenario's proxies and servers; it never raises half-way. Must not
schedule or wait: the runner runs the steps at their times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaos.scenario import (AccountDeactivated, ChaosAction, ChaosScenario, KeepaliveSilence, KillService, ProxyDown,
                            RestartRedis, StandinRefusing, ToxicWindow, describe)
from chaos.standins.admin import BackOfficeAdmin, WhatsAppAdmin
from chaos.toxiproxy import Proxy, ToxiproxyError, ToxiproxyNotFoundError, ToxiproxyUnreachableError
from sim.scenarios import AccountDeleted, CloseWith, Fault, LinkDown

# At one instant, network faults go first, so a close or deletion meets the fault already in place.
_ORDER_NETWORK, _ORDER_SESSIONS, _ORDER_PROCESSES = 0, 1, 2
REMOVE_DEADLINE_S = 30.0


@dataclass
class Targets:
    """What the bindings act on: this scenario's proxies, the stand-ins, and process controls."""

    proxies: dict[str, Proxy]
    whatsapp: WhatsAppAdmin
    backoffice: BackOfficeAdmin
    sessions: list[str]
    kill_service: Callable[[], None] = lambda: None
    start_service: Callable[[], None] = lambda: None
    stop_redis: Callable[[], None] = lambda: None  # the data is lost (a Redis without persistence)
    stop_redis_saving: Callable[[], None] = lambda: None  # kept: a Redis with persistence, nothing lost
    start_redis: Callable[[], None] = lambda: None
    redis_running: Callable[[], bool] = lambda: True
    # after a deletion/deactivation: mark the session inactive in the gateway's own Redis layout
    account_ended: Callable[[str], None] = lambda session_id: None
    standin_faults: bool = False  # the scenario has the stand-in refuse or go silent: undo it in rollback

    def proxy(self, upstream: str) -> Proxy:
        try:
            return self.proxies[upstream]
        except KeyError:
            raise KeyError(f"no proxy for upstream {upstream!r}; have {sorted(self.proxies)}") from None


@dataclass(frozen=True)
class Step:
    """One action at `at_s` on the scenario's clock. `window` is the fault it starts or ends."""

    at_s: float
    order: int
    name: str
    run: Callable[[], Any] = field(compare=False)
    window: tuple[str, str] = ("", "")  # (kind, target)
    edge: str = "instant"  # start, end or instant
    key: int = 0  # which fault of the scenario; pairs a start with its end


def steps_for(scenario: ChaosScenario, targets: Targets) -> list[Step]:
    """Every timed step of the scenario, in the order to run them."""
    steps: list[Step] = []
    for key, item in enumerate((*scenario.faults, *scenario.actions)):
        steps.extend(_bind(item, targets, key))
    return sorted(steps, key=lambda s: (s.at_s, s.edge != "end", s.order, s.key))


def _bind(item: Fault | ChaosAction, targets: Targets, key: int) -> list[Step]:
    text = describe(item)
    if isinstance(item, LinkDown):
        proxy = targets.proxy("whatsapp")
        return _window(item.start_s, item.end_s, text, ("link_down", "whatsapp"), key,
                       proxy.disable, proxy.enable)
    if isinstance(item, ProxyDown):
        proxy = targets.proxy(item.upstream)
        return _window(item.start_s, item.end_s, text, (f"{item.upstream}_down", item.upstream), key,
                       proxy.disable, proxy.enable)
    if isinstance(item, ToxicWindow):
        return _toxic(item, targets.proxy(item.upstream), text, key)
    if isinstance(item, StandinRefusing):
        return _window(item.start_s, item.end_s, text, ("standin_refusing", "whatsapp"), key,
                       lambda: targets.whatsapp.refuse(targets.sessions, item.code),
                       lambda: targets.whatsapp.accept(targets.sessions), order=_ORDER_SESSIONS)
    if isinstance(item, KeepaliveSilence):
        return _window(item.start_s, item.end_s, text, ("keepalive_silence", "whatsapp"), key,
                       lambda: _each(targets, targets.whatsapp.mute), lambda: _each(targets, targets.whatsapp.unmute),
                       order=_ORDER_SESSIONS)
    if isinstance(item, CloseWith):
        return [Step(item.at_s, _ORDER_SESSIONS, text, lambda: _each(targets, lambda s: targets.whatsapp.close(
            s, item.code if isinstance(item.code, int) else None)), ("close_with", "whatsapp"), "instant", key)]
    if isinstance(item, AccountDeleted):
        return [Step(item.at_s, _ORDER_SESSIONS, text,
                     lambda: _each(targets, targets.backoffice.delete_account, targets.account_ended),
                     ("account_deleted", "backoffice"), "instant", key)]
    if isinstance(item, AccountDeactivated):
        return [Step(item.at_s, _ORDER_SESSIONS, text,
                     lambda: _each(targets, targets.backoffice.deactivate, targets.account_ended),
                     ("account_deactivated", "backoffice"), "instant", key)]
    if isinstance(item, RestartRedis):
        stop = targets.stop_redis_saving if item.keep_data else targets.stop_redis
        return _window(item.at_s, item.at_s + item.down_s, text, ("redis_restart", "redis"), key,
                       stop, targets.start_redis, order=_ORDER_PROCESSES)
    if isinstance(item, KillService):
        if item.restart_after_s is None:
            return [Step(item.at_s, _ORDER_PROCESSES, text, targets.kill_service, ("service_killed", "service"),
                         "start", key)]
        return _window(item.at_s, item.at_s + item.restart_after_s, text, ("service_killed", "service"), key,
                       targets.kill_service, targets.start_service, order=_ORDER_PROCESSES)
    raise TypeError(f"no binding for {item!r}")


def _window(start_s: float, end_s: float, text: str, window: tuple[str, str], key: int,
            begin: Callable[[], Any], finish: Callable[[], Any], order: int = _ORDER_NETWORK) -> list[Step]:
    return [Step(start_s, order, f"start: {text}", begin, window, "start", key),
            Step(end_s, order, f"end: {text}", finish, window, "end", key)]


def _toxic(item: ToxicWindow, proxy: Proxy, text: str, key: int) -> list[Step]:
    name = f"chaos_{item.kind}_{key}"

    def add() -> str:
        return proxy.add_toxic(item.kind, name=name, stream=item.stream, **item.attrs)

    def remove() -> None:
        _remove_toxic(proxy, name)

    return _window(item.start_s, item.end_s, text, (f"toxic_{item.kind}", item.upstream), key, add, remove)


def _each(targets: Targets, *calls: Callable[[str], Any]) -> dict[str, Any]:
    """Call each once per session; the output says for how many sessions."""
    for session_id in targets.sessions:
        for call in calls:
            call(session_id)
    return {"sessions": len(targets.sessions)}


def rollback(targets: Targets) -> list[str]:
    """Undo every fault on this scenario's proxies and servers; returns what failed (never raises).

    Removes each toxic and enables each proxy of the scenario (a global Toxiproxy
    `/reset` would also undo the faults of scenarios running alongside) and starts Redis
    if it is down.
    """
    problems: list[str] = []
    for upstream, proxy in targets.proxies.items():
        problems += _attempt(f"clear toxics of {upstream}", lambda p=proxy: _clear_toxics(p))
        problems += _attempt(f"enable {upstream}", proxy.enable)
    if not targets.redis_running():
        problems += _attempt("start Redis", targets.start_redis)
    if targets.standin_faults:
        problems += _attempt("stand-in accepts the sessions again", lambda: targets.whatsapp.accept(targets.sessions))
        problems += _attempt("stand-in answers the sessions' keepalives",
                             lambda: _each(targets, targets.whatsapp.unmute))
    return problems


def _clear_toxics(proxy: Proxy) -> None:
    for toxic in proxy.toxics():
        _remove_toxic(proxy, toxic["name"])


def _remove_toxic(proxy: Proxy, name: str, deadline_s: float = REMOVE_DEADLINE_S) -> None:
    """Remove a toxic, riding out a slow answer: Toxiproxy answers a DELETE of a `bandwidth` 0
    toxic only once the connections it stalled let go (seconds), finishing the removal anyway."""
    try:
        proxy.remove_toxic(name)
        return
    except ToxiproxyNotFoundError:
        return
    except ToxiproxyUnreachableError:
        pass
    give_up = time.monotonic() + deadline_s
    while any(t["name"] == name for t in proxy.toxics()):
        if time.monotonic() >= give_up:
            raise TimeoutError(f"toxic {name} still on proxy {proxy.name} {deadline_s:.0f} s after its removal")
        time.sleep(0.05)


def _attempt(what: str, call: Callable[[], Any]) -> list[str]:
    try:
        call()
    except (ToxiproxyError, OSError, RuntimeError, KeyError, ValueError, TimeoutError) as exc:
        return [f"{what}: {exc}"]
    return []
