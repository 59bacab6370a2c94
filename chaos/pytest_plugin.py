"""The pytest plugin (entry point `pytest11`): real servers and chaos runs as fixtures, for any gateway.

Owns the fixtures a project's tests use to chaos-test a gateway: session-scoped real
servers on free loopback ports (`redis_server`, `toxiproxy_server`, `standins`, started
through `chaos.servers` and always stopped), per-test clean state (`redis_client`,
`toxiproxy`, `redis_proxy`, `standins_clean`), the `chaos_lab` over them, the gateway under
test (`chaos_gateway`: `--chaos-gateway FILE` or the `chaos_gateway` ini value, else the
reference service), `chaos_run` (one scenario — a name, a TOML file or a value — in, its
`ScenarioRun` with verdict and violations out) and `run_chaos` (several at once); one run
folder per session under `--chaos-report` (default `reports/chaos`, with `latest`), its
summary written at the end, the newest `--chaos-keep-runs` folders kept (default 20); server
logs kept in `reports/test-logs/` when a session fails.
Must not skip when a server binary is missing (that hides a broken CI) or install anything.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from chaos import catalog
from chaos.gateway import GatewaySpec, GatewaySpecError, load_gateway, reference_gateway
from chaos.lab import Lab
from chaos.process import ALL_PROCESSES, ManagedProcess
from chaos.report import ScenarioRun, write_summary
from chaos.runner import RunOptions, run_scenarios
from chaos.runs import DEFAULT_KEEP_RUNS, new_run_dir, point_latest, prune_runs
from chaos.scenario import ChaosScenario
from chaos.scenario_file import load_scenario
from chaos.servers import (MissingToolError, RedisServer, Standins, ToxiproxyHandle, start_redis, start_standins,
                           start_toxiproxy)
from chaos.toxiproxy import Proxy, Toxiproxy

DEFAULT_REPORT = "reports/chaos"
ScenarioLike = str | Path | ChaosScenario


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "reconnect-lab chaos harness")
    group.addoption("--chaos-gateway", metavar="FILE", default=None,
                    help="the gateway's TOML file for chaos_run/run_chaos (default: the reference service)")
    group.addoption("--chaos-report", metavar="DIR", default=None,
                    help=f"each session's chaos reports go to a new folder in DIR (default {DEFAULT_REPORT})")
    group.addoption("--chaos-keep-runs", metavar="N", type=int, default=None,
                    help=f"keep only the newest N run folders there (default {DEFAULT_KEEP_RUNS})")
    parser.addini("chaos_gateway", "the gateway's TOML file, relative to the rootdir", default="")
    parser.addini("chaos_keep_runs", f"run folders kept under the report folder ({DEFAULT_KEEP_RUNS})", default="")
    parser.addini("chaos_report", f"parent of the chaos run folders, relative to the rootdir ({DEFAULT_REPORT})",
                  default="")


def pytest_configure(config: pytest.Config) -> None:
    _keep_runs(config)  # a bad value stops the session before any test runs


def _setting(config: pytest.Config, name: str) -> Path | None:
    value = config.getoption("--" + name.replace("_", "-")) or config.getini(name)
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else config.rootpath / path


def _started(start: Callable[[], Any]) -> Any:
    try:
        return start()
    except MissingToolError as exc:
        pytest.fail(f"{exc}", pytrace=False)


# ---- servers ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def redis_server(server_log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the session (no persistence)."""
    server = _started(lambda: start_redis(server_log_dir, tmp_path_factory.mktemp("redis-data")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an empty database; restarts Redis if an earlier test left it down."""
    redis_server.start()
    client = redis_server.client()
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def _toxiproxy(server_log_dir: Path) -> Iterator[ToxiproxyHandle]:
    handle = _started(lambda: start_toxiproxy(server_log_dir))
    try:
        yield handle
    finally:
        handle.process.stop()


@pytest.fixture(scope="session")
def toxiproxy_server(_toxiproxy: ToxiproxyHandle) -> Toxiproxy:
    """The facade for the session's Toxiproxy server (state is shared: prefer `toxiproxy`)."""
    return _toxiproxy.api


@pytest.fixture(scope="session")
def toxiproxy_process(_toxiproxy: ToxiproxyHandle) -> ManagedProcess:
    """The Toxiproxy server process, for tests that kill or restart it."""
    return _toxiproxy.process


@pytest.fixture
def toxiproxy(_toxiproxy: ToxiproxyHandle) -> Iterator[Toxiproxy]:
    """The facade; after the test: `/reset`, and every proxy the test created is deleted."""
    _toxiproxy.process.start()  # no-op unless an earlier test stopped it
    api = _toxiproxy.api
    before = set(api.proxies())
    try:
        yield api
    finally:
        if not _toxiproxy.process.running:
            _toxiproxy.process.start()  # a restarted server has no proxies left to clean
        else:
            try:
                api.reset()
            finally:
                for name in set(api.proxies()) - before:
                    api.delete_proxy(name)


@pytest.fixture
def redis_proxy(toxiproxy: Toxiproxy, redis_server: RedisServer) -> Proxy:
    """A fresh proxy in front of `redis_server` on 127.0.0.1; deleted after the test."""
    return toxiproxy.create_proxy(f"redis-{uuid.uuid4().hex[:8]}", upstream=f"{redis_server.host}:{redis_server.port}")


@pytest.fixture(scope="session")
def standins(server_log_dir: Path, redis_server: RedisServer,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standins]:
    """The WhatsApp and back-office stand-ins (one process), the back office sharing `redis_server`."""
    ready_file = tmp_path_factory.mktemp("standins") / "ready.json"
    running = start_standins(server_log_dir, ready_file, redis_server.url)
    try:
        yield running
    finally:
        running.process.stop()


@pytest.fixture
def standins_clean(standins: Standins) -> Standins:
    """The stand-ins with no sessions, events, accounts, updates or modes left over."""
    if not standins.process.running:
        standins.process.start()  # an earlier test stopped it: same ports
    standins.reset()
    return standins


# ---- chaos runs ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chaos_lab(redis_server: RedisServer, standins: Standins, toxiproxy_server: Toxiproxy) -> Lab:
    """The session's servers as the runner's `Lab`."""
    return Lab.attach(redis_server, standins, toxiproxy_server)


@pytest.fixture(scope="session")
def chaos_gateway(pytestconfig: pytest.Config) -> GatewaySpec:
    """The gateway under test: `--chaos-gateway FILE`, the `chaos_gateway` ini value, or the reference service."""
    path = _setting(pytestconfig, "chaos_gateway")
    try:
        return reference_gateway() if path is None else load_gateway(path)
    except GatewaySpecError as exc:
        raise pytest.UsageError(f"--chaos-gateway: {exc}") from None


@pytest.fixture(scope="session")
def chaos_report_dir(pytestconfig: pytest.Config) -> Path:
    """This session's own run folder (`<report>/<UTC time>-<random>`, `<report>/latest` links it)."""
    base = _setting(pytestconfig, "chaos_report") or pytestconfig.rootpath / DEFAULT_REPORT
    run_dir = new_run_dir(base)
    point_latest(base, run_dir)
    prune_runs(base, _keep_runs(pytestconfig), current=run_dir)
    return run_dir


def _keep_runs(config: pytest.Config) -> int:
    value = config.getoption("--chaos-keep-runs")
    value = config.getini("chaos_keep_runs") if value is None else value
    try:
        keep = DEFAULT_KEEP_RUNS if value in (None, "") else int(value)
    except ValueError:
        keep = 0
    if keep < 1:
        raise pytest.UsageError(f"chaos_keep_runs / --chaos-keep-runs must be a whole number >= 1, got {value!r}")
    return keep


@pytest.fixture(scope="session")
def chaos_results(chaos_report_dir: Path) -> Iterator[list[ScenarioRun]]:
    """Every scenario run of the session; the run folder's `summary.md` is written from them at the end."""
    results: list[ScenarioRun] = []
    yield results
    if results:
        write_summary(chaos_report_dir, results, title=f"Chaos suite: {len(results)} scenario run(s)")


def toxiproxy_problems(api: Toxiproxy) -> list[str]:
    """Why Toxiproxy is not clean: a toxic left, a proxy left disabled."""
    problems = []
    for name, proxy in api.proxies().items():
        if not proxy.enabled:
            problems.append(f"proxy {name} is disabled")
        problems += [f"proxy {name} keeps toxic {t['name']}" for t in proxy.toxics()]
    return problems


def run_and_check_clean(lab: Lab, results: list[ScenarioRun], scenarios: list[ChaosScenario], report_dir: Path, *,
                        concurrent: bool = False, subdir: str = "", **options: Any) -> list[ScenarioRun]:
    """Run scenarios, keep their results for the summary, and assert Toxiproxy is clean after."""
    found = run_scenarios(scenarios, lab, RunOptions(report_dir=report_dir / subdir, **options), concurrent=concurrent)
    results.extend(found)
    assert toxiproxy_problems(lab.toxiproxy) == [], "a scenario left Toxiproxy dirty"
    for result in found:
        assert result.journal is not None and result.journal.exists(), f"{result.name}: no journal"
    return found


@pytest.fixture(scope="session")
def run_chaos(chaos_lab: Lab, chaos_results: list[ScenarioRun], chaos_report_dir: Path,
              chaos_gateway: GatewaySpec) -> Callable[..., list[ScenarioRun]]:
    """`run_chaos([scenario, ...], concurrent=False, subdir="", **RunOptions)`; Toxiproxy checked clean after."""
    def run(scenarios: list[ChaosScenario], **kwargs: Any) -> list[ScenarioRun]:
        kwargs.setdefault("gateway", chaos_gateway)
        for scenario in scenarios:
            if not kwargs["gateway"].supports_scale(scenario.time_scale):
                raise GatewaySpecError(f"gateway {kwargs['gateway'].name!r} has no time scale: "
                                       f"run {scenario.name} at scale 1, not {scenario.time_scale:g}")
        return run_and_check_clean(chaos_lab, chaos_results, scenarios, chaos_report_dir, **kwargs)
    return run


def resolve_scenario(scenario: ScenarioLike, scale: float | None = None) -> ChaosScenario:
    """A catalog name or alias, a TOML scenario file (str ending in .toml, or a Path), or a value; scaled."""
    if isinstance(scenario, ChaosScenario):
        return scenario if scale is None else scenario.scaled(scale)
    if isinstance(scenario, Path) or scenario.endswith(".toml"):
        loaded = load_scenario(scenario)
        k = scale if scale is not None else (loaded.default_scale or catalog.QUICK_SCALE)
        return loaded.scenario if k == 1.0 else loaded.scenario.scaled(k)
    return catalog.at_scale(scenario, scale)


@pytest.fixture
def chaos_run(run_chaos: Callable[..., list[ScenarioRun]]) -> Callable[..., ScenarioRun]:
    """`chaos_run("S1" | "my.toml" | scenario, scale=None, gateway=None)` → its `ScenarioRun`.

    The run's `.verdict` is `passed`/`failed`/`error`; `.violations` maps each failed check
    to what it saw; `.explain()` is everything that went wrong, for an assertion message.
    `gateway` is a TOML file or a `GatewaySpec` (default: the session's `chaos_gateway`).
    """
    def run(scenario: ScenarioLike, *, scale: float | None = None, gateway: str | Path | GatewaySpec | None = None,
            **options: Any) -> ScenarioRun:
        if gateway is not None:
            options["gateway"] = gateway if isinstance(gateway, GatewaySpec) else load_gateway(gateway)
        [result] = run_chaos([resolve_scenario(scenario, scale)], **options)
        return result
    return run


# ---- logs and cleanup ------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """On a failed session, copy every server log to reports/test-logs/ and say where."""
    if exitstatus == 0 or not ALL_PROCESSES:
        return
    dest = config.rootpath / "reports" / "test-logs"
    lines = []
    for process in ALL_PROCESSES:
        if not process.log_path.exists():
            continue
        try:
            dest.mkdir(parents=True, exist_ok=True)
            copied = shutil.copy2(process.log_path, dest / process.log_path.name)
            lines.append(f"{process.name}: {copied}")
        except OSError as err:
            lines.append(f"{process.name}: {process.log_path} (copy failed: {err})")
    if lines:
        terminalreporter.section("server logs")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Safety net: no server outlives the session, whatever a test did."""
    for process in ALL_PROCESSES:
        process.stop()
