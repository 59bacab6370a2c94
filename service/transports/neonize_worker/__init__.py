"""The worker-process side of the neonize transport: one neonize client per OS process.

`protocol` (the JSON-lines messages between service and worker) is imported by the
service; `worker` runs only inside the child (`python -m service.transports.neonize_worker`).
Nothing here imports neonize at module level: the child configures logging first.
"""
