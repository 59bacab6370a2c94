"""Shared pytest setup for the whole suite. Keep it small: fixtures live in tests/fixtures/."""

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.standins", "tests.fixtures.service", "tests.fixtures.socks5"]
