"""The named chaos scenarios: the note's S1–S3 at real timings, the fault matrix, and the rest.

Every scenario here is written at the note's real timings and states its expected
outcome; `at_scale(name)` gives the version the suite runs by default (the note's at
1.0, everything else scaled down). Must not do I/O. A team adds a scenario by building a
`ChaosScenario` and passing it to `register` (see the README).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from chaos.scenario import (AccountDeactivated, ChaosScenario, ChaosScenarioError, KeepaliveSilence, KillService,
                            Outcome, ProxyDown, RestartRedis, StandinRefusing, ToxicWindow, UPSTREAMS,
                            flapping_windows)
from service.core import Status
from sim.scenarios import (DELETED_MID_RETRY, FLAKY_WIFI, LONG_OUTAGE, TERMINAL_401, AccountDeleted, CloseWith,
                           Expected, LinkDown, Scenario)

QUICK_SCALE = 0.1
MATRIX_FAULTS = ("disable", "timeout", "latency", "bandwidth", "reset_peer", "slicer")
STANDIN_FAULTS = ("refusing", "keepalive_silence")  # WhatsApp faults the stand-in carries out: seen from outside
# Quick dead-link detection (6 s of silence) and connect deadline, so half-open faults
# resolve within seconds; a ping's pong may take up to one interval (2 s), above the
# matrix's worst latency (1.5 s), so latency alone must never look like a dead link.
MATRIX_POLICY = (("connect_timeout_s", 3.0), ("keepalive_interval_s", 2.0), ("keepalive_misses", 3))
_ACTIVE = frozenset({Status.ACTIVE})

# ---- the note's three scenarios, at its real timings, exactly as the simulation has them ----
NOTE = (
    ChaosScenario(FLAKY_WIFI, tags=("note",)),
    ChaosScenario(LONG_OUTAGE, tags=("note",), settle_s=2.0),
    ChaosScenario(DELETED_MID_RETRY, tags=("note",)),
)
ALIASES = MappingProxyType({"S1": FLAKY_WIFI.name, "S2": LONG_OUTAGE.name, "S3": DELETED_MID_RETRY.name})


# ---- the fault matrix: each upstream × each fault kind ----
# A downstream `bandwidth` 0 toxic holds data for a client that has since closed; Toxiproxy
# then cannot lift it until the far end gives up (seconds late). Stalling what the service
# sends (upstream) starves keepalives and handshakes just the same and lifts on time.
_STREAMS = {"bandwidth": "upstream"}


def _toxic(upstream: str, kind: str, start_s: float, end_s: float) -> ToxicWindow:
    return ToxicWindow(upstream, kind, start_s, end_s, _toxic_attrs(kind), stream=_STREAMS.get(kind, "downstream"))


def _toxic_attrs(kind: str) -> dict[str, int]:
    return {
        "timeout": {"timeout": 0},  # half-open: data dropped, sockets kept
        "latency": {"latency": 1000, "jitter": 500},
        "bandwidth": {"rate": 0},  # stall without losing data
        "reset_peer": {"timeout": 0},
        "slicer": {"average_size": 8, "size_variation": 4, "delay": 10_000},
    }[kind]


def _whatsapp_case(kind: str) -> ChaosScenario:
    name = f"matrix_whatsapp_{kind}"
    if kind == "disable":
        schedule = Scenario(name, "WhatsApp proxy disabled 5 s: refused, attempt 1 fails, attempt 2 succeeds",
                            (LinkDown(1.0, 6.0),), 12.0, Expected(Status.ACTIVE, (2.0, 6.0), 2))
        return ChaosScenario(schedule, policy_settings=MATRIX_POLICY, tags=("matrix", "whatsapp"))
    if kind == "reset_peer":
        # reset_peer only hits new connections, so the session is closed (408) as it starts:
        # every reconnect inside the window is reset, exactly like a link that is down.
        schedule = Scenario(name, "new WhatsApp connections reset for 5 s while the session reconnects",
                            (CloseWith(1.0, 408),), 12.0, Expected(Status.ACTIVE, (2.0, 6.0), 2))
        return ChaosScenario(schedule, actions=(_toxic("whatsapp", kind, 1.0, 6.0),),
                             policy_settings=MATRIX_POLICY, model_faults=(LinkDown(1.0, 6.0),),
                             tags=("matrix", "whatsapp"))
    if kind in ("latency", "slicer"):
        schedule = Scenario(name, f"WhatsApp link slowed by {kind} for 5 s: below every deadline, no reconnect",
                            (), 9.0, Expected(Status.ACTIVE, (), 0))
        outcome = Outcome(_ACTIVE, 0, 0, text="The link stays usable; keepalives arrive before the dead-link deadline.")
        return ChaosScenario(schedule, actions=(_toxic("whatsapp", kind, 1.0, 6.0),),
                             policy_settings=MATRIX_POLICY, outcome=outcome, prediction="none",
                             tags=("matrix", "whatsapp"))
    # timeout / bandwidth 0: a half-open or stalled link, found by keepalives (B3): dead by
    # ~7 s, attempt 1 at ~9 s stalls until the window ends at 12 s, attempt 2 at ~16 s opens
    schedule = Scenario(name, f"WhatsApp link half-open ({kind}) for 11 s: keepalives detect it, reconnect after",
                        (), 24.0, Expected(Status.ACTIVE, (), None))
    outcome = Outcome(_ACTIVE, 1, 3, text="Keepalives declare the link dead; attempts inside the window time out; "
                                          "the first attempt after it succeeds.")
    return ChaosScenario(schedule, actions=(_toxic("whatsapp", kind, 1.0, 12.0),),
                         policy_settings=MATRIX_POLICY, outcome=outcome, prediction="none",
                         tags=("matrix", "whatsapp"))


def _dependency_case(upstream: str, kind: str) -> ChaosScenario:
    """A Redis or back-office fault over an S1-shaped reconnect: it must not change the outcome."""
    name = f"matrix_{upstream}_{kind}"
    schedule = Scenario(name, f"{upstream} {kind} from 0.5 s to 9 s while the session rides out a 5 s link drop",
                        (LinkDown(1.0, 6.0),), 16.0, Expected(Status.ACTIVE, (2.0, 6.0), 2))
    action = (ProxyDown(upstream, 0.5, 9.0) if kind == "disable"
              else _toxic(upstream, kind, 0.5, 9.0))
    outcome = Outcome(_ACTIVE, 1, 2, text=f"A slow or broken {upstream} may delay validation and status delivery, "
                                          "but the session reconnects, ends active, and the back office catches up.")
    return ChaosScenario(schedule, actions=(action,), policy_settings=MATRIX_POLICY, outcome=outcome,
                         prediction="none", settle_s=6.0, tags=("matrix", upstream))


def _standin_case(kind: str) -> ChaosScenario:
    """A WhatsApp fault the stand-in carries out, so every attempt is seen from outside (black-box)."""
    name = f"matrix_whatsapp_{kind}"
    if kind == "refusing":
        schedule = Scenario(name, "the WhatsApp stand-in refuses the session 5 s: attempt 1 refused, attempt 2 opens",
                            (), 12.0, Expected(Status.ACTIVE, (2.0, 6.0), 2))
        return ChaosScenario(schedule, actions=(StandinRefusing(1.0, 6.0),), policy_settings=MATRIX_POLICY,
                             model_faults=(LinkDown(1.0, 6.0),), tags=("matrix", "whatsapp", "black-box"))
    schedule = Scenario(name, "WhatsApp answers no keepalive for 11 s: the dead link is found, its socket closed "
                              "before the next opens (R7)", (), 20.0, Expected(Status.ACTIVE, (), None))
    outcome = Outcome(_ACTIVE, 1, 4, text="Keepalives declare the link dead; the old socket is closed before a "
                                          "new one opens; once pongs come back the session stays up.")
    return ChaosScenario(schedule, actions=(KeepaliveSilence(1.0, 12.0),), policy_settings=MATRIX_POLICY,
                         outcome=outcome, prediction="none", tags=("matrix", "whatsapp", "black-box"))


MATRIX = (*(_whatsapp_case(kind) if upstream == "whatsapp" else _dependency_case(upstream, kind)
            for upstream in UPSTREAMS for kind in MATRIX_FAULTS),
          *(_standin_case(kind) for kind in STANDIN_FAULTS))


# ---- beyond the matrix ----
HERD = ChaosScenario(
    Scenario("herd", "500 sessions dropped at once by a 5 s link outage: all retry together and recover",
             (LinkDown(1.0, 6.0),), 14.0, Expected(Status.ACTIVE, (2.0, 6.0), 2)),
    sessions=500, overhead_s=1.5, settle_s=8.0, tags=("herd",),
    # 500 validations at one instant queue up behind Redis and the back office, so an
    # attempt may start seconds late and find the link back: when is capacity, not policy
    # (the backoffs themselves are still checked), and the zero-latency replay cannot say.
    outcome=Outcome(_ACTIVE, 1, 2, dropped=False,
                    text="Every session retries on the note's schedule, ends active, none dropped or doubled."),
    prediction="none",
)

FLAPPING_SEED = 7
FLAPPING = ChaosScenario(
    Scenario("flapping", f"the WhatsApp link goes down/up every 1–3 s for a minute (seed {FLAPPING_SEED})",
             flapping_windows(FLAPPING_SEED, 1.0, 60.0), 95.0, Expected(Status.ACTIVE)),
    # Giving up needs the 5th attempt (62 s after a drop) inside a down window, and the
    # last window ends at ~61 s: the session cannot give up; its last attempt is < 93 s.
    outcome=Outcome(_ACTIVE, 1, None, text="Attempts inside a down window fail and count; one in an up window "
                                           "succeeds and resets the count; the session never gives up."),
    tags=("flapping",),
)

KILL_MID_BACKOFF = ChaosScenario(
    Scenario("kill_mid_backoff", "the service is killed while the session waits for attempt 1, restarted 1 s later",
             (LinkDown(1.0, 6.0),), 20.0, Expected(None)),
    actions=(KillService(2.0, restart_after_s=1.0),),
    outcome=Outcome(frozenset({Status.ACTIVE, Status.INACTIVE}), 0, 5,
                    text="B5: the restarted service resumes the reconnect or settles the session; never stuck connecting."),
    prediction="none", settle_s=5.0, tags=("crash",),
)

REDIS_RESTART = ChaosScenario(
    Scenario("redis_restart_mid_reconnect", "Redis restarts (persistent: data kept) while the session reconnects",
             (LinkDown(1.0, 6.0),), 16.0, Expected(Status.ACTIVE, (2.0, 6.0), 2)),
    actions=(RestartRedis(2.5, down_s=1.0),),
    outcome=Outcome(_ACTIVE, 1, 2, text="Validation falls back to the back office while Redis is away; the "
                                        "session reconnects and its status is written again."),
    prediction="none", settle_s=6.0, tags=("redis",),
)

TERMINAL = ChaosScenario(TERMINAL_401, tags=("codes",))

DEACTIVATED = ChaosScenario(
    Scenario("deactivated_mid_retry", "the account is deactivated while the session waits for its backoff",
             (LinkDown(1.0, 6.0),), 8.0, Expected(Status.INACTIVE, (), 0, dropped=True)),
    actions=(AccountDeactivated(2.0),),
    model_faults=(LinkDown(1.0, 6.0), AccountDeleted(2.0)),
    tags=("accounts",),
)

EXTRA = (HERD, FLAPPING, KILL_MID_BACKOFF, REDIS_RESTART, TERMINAL, DEACTIVATED)

_DEFAULT_SCALES = {HERD.name: 0.5}
_REGISTRY: dict[str, ChaosScenario] = {}
_GROUPS: dict[str, list[str]] = {"note": [], "matrix": [], "extra": []}


def register(scenario: ChaosScenario, *, group: str = "extra", default_scale: float | None = None) -> ChaosScenario:
    """Add a scenario (at real timings) to the catalog; a duplicate name raises."""
    if scenario.name in _REGISTRY or scenario.name in ALIASES:
        raise ChaosScenarioError(f"a scenario named {scenario.name!r} is already in the catalog")
    if scenario.time_scale != 1.0:
        raise ChaosScenarioError(f"register {scenario.name!r} at real timings (time_scale 1), not {scenario.time_scale}")
    _REGISTRY[scenario.name] = scenario
    _GROUPS.setdefault(group, []).append(scenario.name)
    if default_scale is not None:
        scenario.scaled(default_scale)  # validates the scale
        _DEFAULT_SCALES[scenario.name] = default_scale
    return scenario


for _item in NOTE:
    register(_item, group="note", default_scale=1.0)
for _item in MATRIX:
    register(_item, group="matrix")
for _item in EXTRA:
    register(_item, group="extra")

CATALOG: Mapping[str, ChaosScenario] = MappingProxyType(_REGISTRY)


def get(name: str) -> ChaosScenario:
    """A scenario at real timings, by name or alias (S1, S2, S3); unknown names raise listing the known."""
    name = ALIASES.get(name, name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ChaosScenarioError(f"unknown chaos scenario {name!r}; known: {', '.join(names())}") from None


def names(group: str | None = None) -> list[str]:
    """Scenario names in catalog order, optionally of one group (note, matrix, extra)."""
    if group is None:
        return [n for members in _GROUPS.values() for n in members]
    if group not in _GROUPS:
        raise ChaosScenarioError(f"unknown group {group!r}; known: {', '.join(_GROUPS)}")
    return list(_GROUPS[group])


def group_of(name: str) -> str:
    name = ALIASES.get(name, name)
    return next(g for g, members in _GROUPS.items() if name in members)


def default_scale(name: str) -> float:
    """The scale the suite runs a scenario at: the note's at 1.0, the rest at QUICK_SCALE unless set."""
    return _DEFAULT_SCALES.get(ALIASES.get(name, name), QUICK_SCALE)


def explicit_scale(name: str) -> float | None:
    """The default scale a scenario was registered with, or None when it takes the catalog's."""
    return _DEFAULT_SCALES.get(ALIASES.get(name, name))


def at_scale(name: str, scale: float | None = None) -> ChaosScenario:
    """The named scenario at `scale` (its default scale when None)."""
    scenario = get(name)
    k = default_scale(scenario.name) if scale is None else scale
    return scenario if k == 1.0 else scenario.scaled(k)
