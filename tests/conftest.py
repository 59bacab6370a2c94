"""Shared pytest setup for the whole suite. Keep it small: fixtures live in tests/fixtures/.

Redis, Toxiproxy, the stand-ins and the chaos runs come from the package's own pytest
plugin (`chaos/pytest_plugin.py`, entry point `pytest11`), as in any project that installs it.
"""

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.service", "tests.fixtures.socks5", "tests.fixtures.redis_ha"]
