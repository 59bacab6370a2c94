"""reconnect-lab's reference reconnect service.

`service.core` is the pure policy and session state machine shared by every shell;
the rest of this package is the asyncio shell that carries out the core's commands
against real Redis, a back office over HTTP and WhatsApp transports.
"""
