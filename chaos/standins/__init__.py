"""Stand-ins for the upstreams that cannot run here: a WhatsApp WebSocket server and a
back-office HTTP API, both real aiohttp servers on 127.0.0.1, plus admin clients.

Owns the stand-ins' behaviour and their admin APIs. Must not import the service's
asyncio shell beyond the shared wire frame format and Redis key names.
"""
