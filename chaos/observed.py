"""What can be seen of a gateway from outside: reconnect episodes and attempts from the WhatsApp
stand-in's link events, and the scenarios whose attempts all reach the stand-in.

Owns `observed_episodes` (a live socket closes → the next connects are attempts 1, 2, …,
each ending in an open or a refusal/close), `attempts_observable` (no fault hides an
attempt from the stand-in: a disabled WhatsApp proxy refuses connects itself, a toxic may
swallow the handshake) and `observable` (a scenario's black-box variant: each WhatsApp
link down becomes the stand-in refusing the sessions, which it records). Also the
per-step timing both kinds of checks share: attempt n judged against the previous
attempt's end plus its delay. Must not do I/O; the checkers call in here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from chaos.history import LinkEvent
from chaos.scenario import ChaosScenario, KillService, ProxyDown, StandinRefusing, ToxicWindow
from sim.scenarios import LinkDown


@dataclass(frozen=True)
class Attempt:
    """One reconnect socket seen at the stand-in: `outcome` is `open`, `failed` or `pending`."""

    number: int
    connect_s: float
    end_s: float | None
    outcome: str


@dataclass
class Episode:
    """From the close of a session's live socket to the next socket that opens (or the run's end)."""

    start_s: float
    code: int | str | None
    attempts: list[Attempt] = field(default_factory=list)


def observed_episodes(events: Iterable[LinkEvent]) -> list[Episode]:
    """The session's reconnect episodes, in order, from its link events alone."""
    ordered = sorted(events, key=lambda e: e.t)
    ends = {e.conn_id: e for e in ordered if e.kind in ("reject", "close")}
    opened = {e.conn_id for e in ordered if e.kind == "open"}
    episodes: list[Episode] = []
    live: set[str] = set()
    current: Episode | None = None
    for event in ordered:
        if event.kind == "open":
            live.add(event.conn_id)
            current = None
        elif event.kind == "close" and event.conn_id in live:
            live.discard(event.conn_id)
            if not live:
                current = Episode(event.t, event.code)
                episodes.append(current)
        elif event.kind == "connect" and current is not None:
            end = ends.get(event.conn_id)
            outcome = "open" if event.conn_id in opened else ("failed" if end is not None else "pending")
            end_s = None if outcome != "failed" or end is None else end.t
            current.attempts.append(Attempt(len(current.attempts) + 1, event.t, end_s, outcome))
    return episodes


def attempts_observable(scenario: ChaosScenario) -> bool:
    """True when every reconnect attempt of the scenario reaches the stand-in (and is recorded there)
    and follows the policy's schedule (a killed gateway's successor starts where it can)."""
    if any(isinstance(f, LinkDown) for f in scenario.faults):
        return False
    if any(isinstance(a, KillService) for a in scenario.actions):
        return False
    return not any(isinstance(a, ProxyDown | ToxicWindow) and a.upstream == "whatsapp" for a in scenario.actions)


def observable(scenario: ChaosScenario) -> ChaosScenario:
    """The black-box variant: each WhatsApp link down becomes the stand-in refusing (code 503)
    over the same window; the prediction still replays the link down (the policy sees the same)."""
    links = [f for f in scenario.faults if isinstance(f, LinkDown)]
    if not links:
        return scenario
    schedule = replace(scenario.schedule, faults=tuple(f for f in scenario.faults if not isinstance(f, LinkDown)))
    model = scenario.model_faults if scenario.model_faults is not None else scenario.faults
    return replace(scenario, schedule=schedule, model_faults=model,
                   actions=(*scenario.actions, *(StandinRefusing(f.start_s, f.end_s) for f in links)))


@dataclass(frozen=True)
class Step:
    """Attempt `number` started `late_s` after its anchor plus its delay (negative: early)."""

    number: int
    start_s: float
    anchor_s: float
    low_s: float
    high_s: float
    excused_s: float = 0.0  # measured validation/connect time of this step, when known

    def error(self, tol_s: float) -> str | None:
        """Why the step is off the policy, or None."""
        gap_s = self.start_s - self.anchor_s
        if gap_s < self.low_s - tol_s:
            return f"started {gap_s:.3f}s after the previous step ended; the policy says {_span(self.low_s, self.high_s)}"
        if gap_s > self.high_s + tol_s + self.excused_s:
            measured = f" + {self.excused_s:.3f}s measured validation" if self.excused_s else ""
            return (f"started {gap_s:.3f}s after the previous step ended; the policy says "
                    f"{_span(self.low_s, self.high_s)} ± {tol_s:.3f}s{measured}")
        return None


def _span(low_s: float, high_s: float) -> str:
    return f"{low_s:.3f}s" if abs(high_s - low_s) < 1e-9 else f"{low_s:.3f}–{high_s:.3f}s"
