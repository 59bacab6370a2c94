"""Entry point of a neonize worker process; started only by the neonize transport's supervisor."""

import os
import sys

from service.transports.neonize_worker.worker import main

if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # Go threads and neonize's non-daemon connect thread must not keep us alive, and the
    # client's finalizer must not run Go code during interpreter shutdown.
    os._exit(code)
