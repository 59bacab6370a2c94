"""The worker processes of the neonize transport: one neonize client per OS process.

`protocol`: the JSON-lines messages between service and worker (both sides import it).
`supervisor`: the service's handle on one worker process (spawn, read, stop, kill).
`worker`: runs only inside the child (`python -m service.transports.neonize_worker`).
Nothing here imports neonize at module level: the child configures logging first.
"""
