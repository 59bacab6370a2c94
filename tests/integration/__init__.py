"""Integration tests: real Redis and Toxiproxy servers started by fixtures."""
