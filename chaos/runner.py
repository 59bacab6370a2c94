"""The runner: one scenario against a real gateway, through real Toxiproxy faults.

For each scenario: three proxies of its own (WhatsApp link, Redis, back office) in front
of the lab's servers, accounts in the back-office stand-in, the gateway of
`RunOptions.gateway` (`chaos.gateway`; the reference `python -m service` by default) as a
subprocess pointed at the proxies; steady state before → the timed steps of
`bindings.steps_for` → the scenario's duration → settle → steady state after; the
history recorded (timeline JSON lines, stand-in events and updates, fault windows,
Redis's final statuses); rollback always (gateway stopped, toxics removed, proxies
enabled and deleted, Redis started), on failure and on Ctrl-C too; then the checkers
and the prediction; journal, history and chart under the report dir. Must not decide
whether the service behaved: the checkers do.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from chaos import bindings
from chaos.checkers import check_all
from chaos.gateway import Endpoints, GatewayProcess, GatewaySpec, StatusLayout, reference_gateway
from chaos.history import (FaultWindow, History, link_events_from_standin, timeline_from_service,
                           updates_from_standin)
from chaos.journal import Journal
from chaos.lab import Lab, wait_for
from chaos.observed import observable
from chaos.prediction import predict_and_compare
from chaos.report import ScenarioRun, timeline_chart
from chaos.runs import unique_dir
from chaos.scenario import AccountDeactivated, ChaosScenario, KeepaliveSilence, KillService, StandinRefusing
from service.core import Status
from sim.scenarios import AccountDeleted

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTLE_QUIET_S = 0.3  # no back-office update for this long: nothing more in flight


class Interrupted(Exception):
    """The run was asked to stop (Ctrl-C) before it finished."""


@dataclass
class RunOptions:
    """How to run: the gateway, where reports go, a deliberately different service policy, progress output."""

    report_dir: Path = Path("reports/chaos")
    gateway: GatewaySpec = field(default_factory=reference_gateway)
    # judge from the stand-ins and Redis alone, with observable faults (default: when the gateway writes no timeline)
    black_box: bool | None = None

    @property
    def judged_black_box(self) -> bool:
        return not self.gateway.timeline if self.black_box is None else self.black_box
    service_policy: dict[str, Any] | None = None  # override (tests of the checkers' teeth)
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    abort: threading.Event = field(default_factory=threading.Event)
    # a broken-service proof: these checks (any, when empty) must fail; None for an ordinary run
    intended_failures: tuple[str, ...] | None = None


class ScenarioRunner:
    """Runs one (scaled) scenario in a lab; `run()` returns its `ScenarioRun`, never raises but Ctrl-C."""

    def __init__(self, scenario: ChaosScenario, lab: Lab, options: RunOptions) -> None:
        self.scenario = observable(scenario) if options.judged_black_box else scenario
        self.lab, self.options = lab, options
        self.tag = uuid.uuid4().hex[:6]
        self.prefix = f"{scenario.name}-{self.tag}"
        self.sessions = [f"{self.prefix}-s{i}" for i in range(scenario.sessions)]
        # absolute (a gateway may run in its own cwd), and this run's alone (a repeated name gets -2, -3, …)
        self.run_dir = unique_dir(Path(options.report_dir).resolve(), scenario.name)
        self.journal = Journal({**self.scenario.to_dict(), "session_prefix": self.prefix})
        self.redis = redis.Redis(*lab.redis_address, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.proxies: dict[str, Any] = {}
        self.gateway: GatewayProcess | None = None
        self.windows: dict[int, FaultWindow] = {}
        self.origin_s = 0.0
        self.history: History | None = None
        self._quiet: tuple[float, int] | None = None  # since when settled looked true, at how many updates

    def say(self, text: str) -> None:
        self.options.progress(f"[{self.scenario.name} ×{self.scenario.time_scale:g}] {text}")

    def run(self) -> ScenarioRun:
        started = time.monotonic()
        outcome = ScenarioRun(self.scenario.name, self.scenario.time_scale, "error", run_dir=self.run_dir,
                              expected=self.scenario.expected.describe(),
                              intended=self.options.intended_failures)
        self._clear_run_dir()
        try:
            self._setup()
            self._experiment()
            status = "completed"
        except (KeyboardInterrupt, Interrupted):
            self.options.abort.set()
            outcome.status, outcome.error, status = "interrupted", "interrupted (Ctrl-C)", "interrupted"
        except Exception as exc:  # noqa: BLE001 - any failure is reported, and rollback still runs
            outcome.error, status = f"{type(exc).__name__}: {exc}", "aborted"
        finally:
            self._rollback()
        self._conclude(outcome, status)
        outcome.duration_s = time.monotonic() - started
        self.say(f"{outcome.status} in {outcome.duration_s:.1f} s")
        return outcome

    # ---- phases ----
    def _setup(self) -> None:
        lab, journal = self.lab, self.journal
        with journal.activity("create one proxy per upstream", phase="before") as act:
            for upstream, (host, port) in (("whatsapp", lab.whatsapp_address), ("redis", lab.redis_address),
                                           ("backoffice", lab.backoffice_address)):
                self.proxies[upstream] = lab.toxiproxy.create_proxy(f"{self.prefix}-{upstream}", f"{host}:{port}")
            act.output = {u: p.listen for u, p in self.proxies.items()}
        with journal.activity("create the accounts", phase="before"):
            self.redis.delete(*[self.layout.key(s) for s in self.sessions])
            lab.backoffice.add_accounts(self.sessions)
        policy = dict(self.scenario.policy_settings) if self.options.service_policy is None else \
            dict(self.options.service_policy)
        self.gateway = GatewayProcess(self.options.gateway, self._endpoints(policy), self._statuses)
        self.gateway.clear_old_timelines()
        with journal.activity("start the gateway", phase="before") as act:
            self.gateway.start()
            act.output = {"sessions": len(self.sessions), "policy": policy}
        self.say(f"gateway {self.options.gateway.name} up with {len(self.sessions)} session(s); waiting for steady state")
        with journal.activity("every session active with one live socket", kind="probe", phase="before") as act:
            wait_for(self._all_active, 20.0 + len(self.sessions) / 25, "steady state before the faults")
            act.output = True

    def _experiment(self) -> None:
        targets = self._targets()
        steps = bindings.steps_for(self.scenario, targets)
        self.origin_s = time.time()
        self.say(f"method: {len(steps)} step(s) over {self.scenario.duration_s:g} s")
        for step in steps:
            self._sleep_until(self.origin_s + step.at_s)
            with self.journal.activity(step.name, at_s=round(step.at_s, 3)) as act:
                act.output = step.run()
                self._record_window(step, time.time() - self.origin_s)
        self._sleep_until(self.origin_s + self.scenario.duration_s)
        self.say("faults over; settling")
        with self.journal.activity("settle: outbox drained, nobody connecting", kind="probe", phase="after") as act:
            try:
                wait_for(self._settled, self.scenario.settle_s, "settled")
                act.output = True
            except TimeoutError:
                act.output = f"not settled after {self.scenario.settle_s} s (the checkers will say why)"
        allowed = {s.value for s in self.scenario.expected.final_statuses}
        with self.journal.activity("every session in an expected final status", kind="probe",
                                   phase="after") as act:
            act.output = set(self._statuses().values()) <= allowed
        self._record_history()

    def _rollback(self) -> None:
        journal = self.journal
        if self.gateway is not None:
            with journal.activity("stop the gateway", phase="rollbacks", reraise=False):
                self.gateway.stop()
        targets = self._targets()
        with journal.activity("remove toxics, enable proxies, start Redis", phase="rollbacks", reraise=False) as act:
            problems = bindings.rollback(targets)
            act.output = problems or "clean"
            if problems:
                raise RuntimeError("; ".join(problems))
        with journal.activity("delete this scenario's proxies", phase="rollbacks", reraise=False):
            for proxy in self.proxies.values():
                proxy.delete()

    def _conclude(self, outcome: ScenarioRun, status: str) -> None:
        journal = self.journal
        if self.history is not None and self.gateway is not None:
            end_s = max((a.end_s or 0.0) for a in journal.phase("after")) - self.origin_s
            if not self.options.judged_black_box:
                records = timeline_from_service(self.gateway.timeline(), -self.origin_s, self.sessions)
                self.history.timeline = [r for r in records if r.t <= end_s]
            self.history.save(self.run_dir)
            outcome.checks = check_all(self.history, self.scenario)
            # the replay is compared with the gateway's own timeline; black-box runs have none
            outcome.prediction = predict_and_compare(self.history, self.scenario) if self.history.timeline else None
            journal.checks = [{"name": c.name, "ok": c.ok, "violations": c.violations, "evidence": c.evidence,
                               "notes": c.notes} for c in outcome.checks]
            journal.prediction = outcome.prediction.to_dict() if outcome.prediction is not None else None
            outcome.chart = timeline_chart(self.history, self.run_dir / "timeline.png", end_s=self.scenario.duration_s,
                                           title=f"{self.scenario.name} (scale {self.scenario.time_scale:g})")
            good = all(c.ok for c in outcome.checks) and (outcome.prediction is None or outcome.prediction.ok)
            outcome.status = "passed" if good else "failed"
            for check in outcome.checks:
                self.say(f"{'ok  ' if check.ok else 'FAIL'} {check.name} ({check.evidence})")
        rolled_back = all(a.status == "succeeded" for a in journal.phase("rollbacks"))
        if not rolled_back and outcome.status == "passed":
            outcome.status, outcome.error = "failed", "rollback did not complete: see the journal"
        journal.artifacts = {"history": str(self.run_dir), "chart": str(outcome.chart or "")}
        journal.finish(status if status != "completed" or outcome.status == "passed" else "failed",
                       deviated=outcome.status == "failed")
        outcome.journal = journal.save(self.run_dir / "journal.json")

    # ---- helpers ----
    def _targets(self) -> bindings.Targets:
        gateway, layout = self.gateway, self.layout

        def account_ended(session_id: str) -> None:  # the stand-in writes the reference layout itself
            if not layout.is_default:
                layout.write(self.redis, session_id, Status.INACTIVE.value)
        return bindings.Targets(
            dict(self.proxies), self.lab.whatsapp, self.lab.backoffice, self.sessions,
            kill_service=gateway.kill if gateway else (lambda: None),
            start_service=gateway.start if gateway else (lambda: None), account_ended=account_ended,
            standin_faults=any(isinstance(a, StandinRefusing | KeepaliveSilence) for a in self.scenario.actions),
            stop_redis=self.lab.stop_redis, stop_redis_saving=self.lab.stop_redis_saving,
            start_redis=self.lab.start_redis, redis_running=self.lab.redis_running)

    def _record_window(self, step: bindings.Step, now_s: float) -> None:
        kind, target = step.window
        if step.edge == "end":
            window = self.windows.get(step.key)
            if window is not None:
                self.windows[step.key] = FaultWindow(kind, target, window.start_s, now_s, window.detail)
            return
        self.windows[step.key] = FaultWindow(kind, target, now_s, None, {"sessions": self.sessions}
                                             if kind.startswith("account") else {})

    def _sleep_until(self, epoch_s: float) -> None:
        while (left_s := epoch_s - time.time()) > 0:
            if self.options.abort.wait(min(left_s, 0.5)):
                raise Interrupted()

    def _statuses(self) -> dict[str, str | None]:
        return self.layout.read(self.redis, self.sessions)

    def _all_active(self) -> bool:
        if set(self._statuses().values()) != {"active"}:
            return False
        live = self.lab.whatsapp.sessions()
        return all(live.get(s, {}).get("live") == 1 for s in self.sessions)

    def _settled(self) -> bool:
        """Nobody `connecting`, the gateway's outbox (if it names one) empty, and each session's last
        update at the back office its Redis status, with no new update for `SETTLE_QUIET_S`."""
        statuses = self._statuses()
        if Status.CONNECTING.value in statuses.values() or not self.options.gateway.outbox_empty(self.redis):
            self._quiet = None
            return False
        mine = set(self.sessions)
        updates = [u for u in self.lab.backoffice.updates()["updates"] if u.get("session_id") in mine]
        last: dict[str, str] = {}
        for update in sorted(updates, key=lambda u: (u["session_id"], u["seq"])):
            last[str(update["session_id"])] = str(update["status"])
        ended_by_backoffice = any(isinstance(item, AccountDeleted | AccountDeactivated)
                                  for item in (*self.scenario.faults, *self.scenario.actions))
        if not ended_by_backoffice and any(last.get(s, status) != status for s, status in statuses.items()):
            self._quiet = None
            return False
        now_s = time.monotonic()
        if self._quiet is None or self._quiet[1] != len(updates):
            self._quiet = (now_s, len(updates))
        return now_s - self._quiet[0] >= SETTLE_QUIET_S

    def _record_history(self) -> None:
        origin, sessions = self.origin_s, self.sessions
        stats = self.lab.whatsapp.stats()
        self.history = History(
            scenario=self.scenario.name, sessions=sessions,
            link_events=link_events_from_standin(self.lab.whatsapp.events(0), origin, sessions),
            backoffice_updates=updates_from_standin(self.lab.backoffice.updates()["updates"], origin, sessions),
            faults=sorted(self.windows.values(), key=lambda w: w.start_s),
            final_status=self._statuses(),
            meta={"origin_epoch_s": origin, "time_scale": self.scenario.time_scale,
                  "service_policy": self.gateway.policy if self.gateway else {},
                  "gateway": self.options.gateway.name, "gateway_timeline": self.options.gateway.timeline,
                  "standin_r7_violations": [v for v in stats.get("r7_violations", []) if v.get("session_id") in sessions]},
        )

    def _clear_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def layout(self) -> StatusLayout:
        return self.options.gateway.status

    def _endpoints(self, policy: dict[str, Any]) -> Endpoints:
        crash = any(isinstance(a, KillService) for a in self.scenario.actions)
        return Endpoints(
            whatsapp_url=f"ws://{self.proxies['whatsapp'].listen}", redis_url=f"redis://{self.proxies['redis'].listen}/0",
            backoffice_url=f"http://{self.proxies['backoffice'].listen}",
            backoffice_token=self.lab.backoffice_token.reveal(), sessions=self.sessions, run_dir=self.run_dir,
            name_prefix=self.prefix, time_scale=self.scenario.time_scale, policy=policy,
            # a restarted gateway takes its sessions over once the dead one's leases expire
            lease_ttl_s=2.0 if crash else 10.0)


def run_scenarios(scenarios: list[ChaosScenario], lab: Lab, options: RunOptions, *,
                  concurrent: bool = False) -> list[ScenarioRun]:
    """Run scenarios one after another, or all at once (each has its own proxies and sessions)."""
    if not concurrent or len(scenarios) < 2:
        results = []
        for scenario in scenarios:
            if options.abort.is_set():
                break
            results.append(ScenarioRunner(scenario, lab, options).run())
        return results
    with ThreadPoolExecutor(max_workers=len(scenarios), thread_name_prefix="chaos") as pool:
        futures = [pool.submit(ScenarioRunner(s, lab, options).run) for s in scenarios]
        try:
            return [f.result() for f in futures]
        except KeyboardInterrupt:
            options.abort.set()  # the workers roll back and return
            return [f.result() for f in futures]
