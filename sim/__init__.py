"""The simulation shell: SimPy drives `service.core` for one session or a million.

`sim.scenarios` / `sim.replay` give the shared scenario vocabulary and one-session
predictions (chaos imports them); `sim.population`, `sim.model`, `sim.engine` model whole
populations with WhatsApp, Redis and back-office upstreams; `sim.cli` is `python -m sim`.
Imports only `service.core` from the project; never the asyncio shell or `chaos`.
"""
