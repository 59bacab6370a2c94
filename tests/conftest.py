"""Shared pytest setup for the whole suite. Keep it small: fixtures live in tests/fixtures/.

Redis, Toxiproxy, the stand-ins and the chaos runs come from the package's own pytest
plugin (`chaos/pytest_plugin.py`, entry point `pytest11`), as in any project that installs it.
"""

# in import order: a plugin another imports comes first (pytest rewrites a plugin's asserts only
# if it registers it before anything imports it)
pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.redis_ha", "tests.fixtures.redis_cluster",
                  "tests.fixtures.service", "tests.fixtures.socks5"]

# The shell's and the core's own tests run first, in this order: a planted defect in the runner,
# a store port or the machine turns `make test-quick` (which stops at the first failure) red in
# seconds, not after the whole quick suite. Everything else keeps its collection order.
RUN_FIRST = ("tests/unit/test_runner_memory.py", "tests/unit/test_store_ports.py",
             "tests/unit/test_crash_recovery.py", "tests/unit/test_machine.py",
             "tests/unit/test_machine_properties.py")


def pytest_collection_modifyitems(config, items) -> None:  # noqa: ANN001 - pytest's hook signature
    def rank(item) -> int:  # noqa: ANN001
        path = item.nodeid.split("::", 1)[0]
        return RUN_FIRST.index(path) if path in RUN_FIRST else len(RUN_FIRST)
    items.sort(key=rank)  # stable: the rest stays in collection order
