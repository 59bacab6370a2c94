"""Test suite: unit, integration, chaos, sim and bench tests."""
