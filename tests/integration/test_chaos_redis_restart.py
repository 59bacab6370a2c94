"""The chaos harness's Redis restart against a real redis-server, bound as a scenario binds it:
a restart that keeps data (a Redis with persistence) loses no acknowledged write, even one landing
while the restart begins; a restart that loses data leaves nothing, not even an earlier snapshot."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos import catalog
from chaos.bindings import Step, Targets, steps_for
from chaos.lab import Lab
from chaos.scenario import ChaosScenario, RestartRedis
from chaos.servers import RedisServer

pytestmark = pytest.mark.integration

WRITES_BEFORE_RESTART = 200
DEADLINE_S = 20.0
COUNTER = "restart:counter"


def restart_steps(lab: Lab, *, keep_data: bool) -> list[Step]:
    """The stop and start steps of a Redis restart, bound to the lab's Redis as the runner binds them."""
    schedule = dataclasses.replace(catalog.get("redis_restart_mid_reconnect").schedule, faults=())
    scenario = ChaosScenario(schedule, actions=(RestartRedis(0.0, 1.0, keep_data),))
    targets = Targets({}, lab.whatsapp, lab.backoffice, [], stop_redis=lab.stop_redis, start_redis=lab.start_redis,
                      stop_redis_saving=lab.stop_redis_saving)
    steps = [s for s in steps_for(scenario, targets) if s.window == ("redis_restart", "redis")]
    assert [s.edge for s in steps] == ["start", "end"]
    return steps


class Writer(threading.Thread):
    """INCRs one counter as fast as it can until Redis goes away; remembers the last acknowledged value."""

    def __init__(self, server: RedisServer) -> None:
        super().__init__(daemon=True)
        self.client = server.client(retry=Retry(NoBackoff(), 0), socket_timeout=2.0)
        self.last_acked = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + DEADLINE_S
        try:
            while not self.stopped.is_set() and time.monotonic() < deadline:
                self.last_acked = int(self.client.incr(COUNTER))
        except redis.exceptions.ConnectionError:
            pass  # Redis went away: every INCR before this one was acknowledged
        finally:
            self.client.close()


def wait_for(check, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"{what}: not true after {DEADLINE_S} s"
        time.sleep(0.01)


def test_a_restart_keeping_data_loses_no_acknowledged_write(chaos_lab: Lab, redis_server: RedisServer,
                                                            redis_client: redis.Redis) -> None:
    stop, start = restart_steps(chaos_lab, keep_data=True)
    writer = Writer(redis_server)
    writer.start()
    try:
        wait_for(lambda: writer.last_acked >= WRITES_BEFORE_RESTART, "the writer's INCRs acknowledged")
        stop.run()
        writer.join(DEADLINE_S)
        assert not writer.is_alive(), "the writer still writes after Redis stopped"
    finally:
        writer.stopped.set()
        start.run()
    survived = int(redis_server.client().get(COUNTER) or 0)
    assert survived >= writer.last_acked, f"acknowledged up to {writer.last_acked}, {survived} survived the restart"


def test_a_restart_losing_data_forgets_an_earlier_restart_s_snapshot(chaos_lab: Lab, redis_server: RedisServer,
                                                                      redis_client: redis.Redis) -> None:
    redis_client.set("kept", "1")
    for step in restart_steps(chaos_lab, keep_data=True):
        step.run()
    assert redis_server.client().get("kept") == b"1"
    redis_server.client().set("written-after", "1")

    for step in restart_steps(chaos_lab, keep_data=False):
        step.run()

    fresh = redis_server.client()
    assert (fresh.get("kept"), fresh.get("written-after"), fresh.dbsize()) == (None, None, 0)
