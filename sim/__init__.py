"""The simulation shell: SimPy drives `service.core` for one session or a million.

`sim.scenarios` / `sim.replay` give the shared scenario vocabulary and few-session
predictions, the model run as the twin (chaos imports them); `sim.population`, `sim.model`, `sim.engine` model whole
populations with WhatsApp, Redis and back-office upstreams; `sim.cli` is `python -m sim`.
Imports only `service.core` from the project; never the asyncio shell or `chaos`.
"""
