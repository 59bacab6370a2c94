"""The worker processes of the neonize transport: each hosts many neonize clients.

`protocol`: the JSON-lines messages between service and worker (both sides import it).
`supervisor`: the service's handle on one worker process (spawn, route, stop, kill).
`worker`: runs only inside the child (`python -m service.transports.neonize_worker`);
`host`: the child's clients and the gate that serialises their starts and stops.
Nothing here imports neonize at module level: the child configures logging first.
"""
