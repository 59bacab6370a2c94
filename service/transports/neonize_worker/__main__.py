"""Entry point of a neonize worker process; started only by the neonize transport's supervisor."""

import logging
import os
import sys

from service.transports.neonize_worker.worker import main

EXIT_BUG = 1

if __name__ == "__main__":
    try:
        code = main()
    except BaseException:  # noqa: BLE001 - a bug here must still end the process (below)
        logging.getLogger("service.transports.neonize_worker").exception("neonize worker failed")
        code = EXIT_BUG
    sys.stderr.flush()
    # Go threads and neonize's non-daemon connect thread must not keep us alive, and the
    # client's finalizer must not run Go code during interpreter shutdown.
    os._exit(code)
