"""The asyncio shell's runtime: session runners, the gateway that holds them, the
timeline writer and the assembly of a whole service from settings.

Carries out `service.core`'s commands with real I/O; makes no reconnect decision.
"""

from service.runtime.context import RunnerContext
from service.runtime.gateway import Gateway
from service.runtime.runner import SessionRunner
from service.runtime.sources import SessionSpec
from service.runtime.timeline import TimelineWriter

__all__ = ["Gateway", "RunnerContext", "SessionRunner", "SessionSpec", "TimelineWriter"]
