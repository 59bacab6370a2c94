"""WhatsApp transports behind `service.ports.Transport`: `wire` (the stand-in's client,
for chaos runs and tests) and `neonize` (production)."""
