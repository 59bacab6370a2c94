"""Chaos harness: drives the real service through real Toxiproxy faults and checks invariants."""
