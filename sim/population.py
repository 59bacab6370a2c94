"""Population-level fault values and the scenarios the model can run.

Extends the shared vocabulary of `sim.scenarios` (one-session faults that chaos also
runs) with faults that only make sense for many sessions: a mass outage, per-session
flaky links, account churn and a rolling deploy. Pure values; must not do I/O or run
anything. `resolve(name, outage_s)` gives the model's fault list for any scenario name,
shared (`flaky_wifi`, `long_outage`, …) or population-level (`mass_outage`, …).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sim.scenarios import SCENARIOS, AccountDeleted, CloseWith, LinkDown, ScenarioError


@dataclass(frozen=True)
class FlakyLinks:
    """A `fraction` of sessions have their own on/off link windows, seeded per session.

    Up windows last Exp(mean_up_s), down windows Exp(mean_down_s); the first window
    starts at `start_s`. A down window closes an open socket and refuses connects.
    """

    start_s: float = 5.0
    mean_up_s: float = 40.0
    mean_down_s: float = 4.0
    fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ScenarioError(f"flaky links: fraction must be in [0, 1], got {self.fraction!r}")
        if self.mean_up_s <= 0 or self.mean_down_s <= 0 or self.start_s < 0:
            raise ScenarioError("flaky links: mean_up_s and mean_down_s must be > 0, start_s ≥ 0")


@dataclass(frozen=True)
class AccountChurn:
    """Accounts are deleted at `per_s` per second (Poisson) from `start_s`.

    A deleted account is marked inactive by the back office (shared Redis); an open
    socket of it is closed with `close_code` (401: the device was logged out).
    """

    per_s: float = 20.0
    start_s: float = 0.0
    close_code: int | str | None = 401

    def __post_init__(self) -> None:
        if self.per_s < 0 or self.start_s < 0:
            raise ScenarioError("account churn: per_s and start_s must be ≥ 0")


@dataclass(frozen=True)
class RollingDeploy:
    """`processes` gateway processes restart one after another from `start_s`.

    Process k restarts at start_s + k * interval_s: it releases its sessions (status
    untouched), and after `handover_s` a new process takes them over: open ones start
    again, ones waiting on a backoff resume with the time left (B5). Sessions belong
    to processes by whole IP groups.
    """

    processes: int = 4
    start_s: float = 10.0
    interval_s: float = 15.0
    handover_s: float = 2.0

    def __post_init__(self) -> None:
        if self.processes < 1 or self.interval_s < 0 or self.handover_s < 0 or self.start_s < 0:
            raise ScenarioError("rolling deploy: processes ≥ 1; start_s, interval_s, handover_s ≥ 0")


PopulationFault = LinkDown | CloseWith | AccountDeleted | FlakyLinks | AccountChurn | RollingDeploy

MASS_OUTAGE_START_S = 1.0


@dataclass(frozen=True)
class PopulationScenario:
    """A named fault list for a whole population; `until_s` is a suggested horizon."""

    name: str
    description: str
    faults: tuple[PopulationFault, ...]
    until_s: float

    @property
    def has_per_session_randomness(self) -> bool:
        """True if sessions differ by chance (then no cohort can stand for many)."""
        return any(isinstance(f, FlakyLinks | AccountChurn) for f in self.faults)


def mass_outage(outage_s: float) -> PopulationScenario:
    """Every session's link goes down at t=1 s for `outage_s` seconds."""
    if outage_s < 0:
        raise ScenarioError(f"outage_s must be ≥ 0, got {outage_s!r}")
    faults = (LinkDown(MASS_OUTAGE_START_S, MASS_OUTAGE_START_S + outage_s),) if outage_s > 0 else ()
    return PopulationScenario(
        name="mass_outage",
        description=f"WhatsApp is unreachable for every session from t=1 s for {outage_s:g} s",
        faults=faults, until_s=MASS_OUTAGE_START_S + outage_s + 60.0)


_BUILDERS: Mapping[str, tuple[str, object]] = MappingProxyType({
    "mass_outage": ("every link down for --outage-s seconds from t=1 s", None),
    "flaky_links": ("half the sessions have their own seeded on/off link windows (up ~40 s, down ~4 s)",
                    (FlakyLinks(),)),
    "account_churn": ("accounts deleted at 20/s; open sockets closed with 401, waiting ones cancelled",
                      (AccountChurn(),)),
    "rolling_deploy": ("4 gateway processes restart 15 s apart; sessions handed over after 2 s",
                       (RollingDeploy(),)),
    "outage_during_deploy": ("a --outage-s mass outage while 4 processes restart",
                             (RollingDeploy(start_s=5.0),)),
})


def population_names() -> list[str]:
    return sorted(_BUILDERS)


def all_names() -> list[str]:
    return population_names() + sorted(SCENARIOS)


def describe(name: str) -> str:
    if name in _BUILDERS:
        return str(_BUILDERS[name][0])
    return SCENARIOS[name].description if name in SCENARIOS else "unknown"


def resolve(name: str, outage_s: float) -> PopulationScenario:
    """The fault list for `name`: a population scenario or a shared one (applied to every session)."""
    if name == "mass_outage":
        return mass_outage(outage_s)
    if name == "outage_during_deploy":
        outage = mass_outage(outage_s)
        return PopulationScenario(name, describe(name), outage.faults + _BUILDERS[name][1], outage.until_s)
    if name in _BUILDERS:
        return PopulationScenario(name, describe(name), _BUILDERS[name][1], 120.0)  # type: ignore[arg-type]
    if name in SCENARIOS:
        shared = SCENARIOS[name]
        return PopulationScenario(name, shared.description, shared.faults, shared.duration_s)
    raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(all_names())}")
