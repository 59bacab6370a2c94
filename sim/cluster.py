"""Blocks of one run on a Dask cluster: submit, gather in block order, and say clearly when it is unreachable.

`gather_in_order(fn, items, scheduler)` runs `fn(*item)` for every item on a
`dask.distributed` scheduler (an address, or a `Client` the caller owns) and returns the
results in the items' order, so a merge over them is the same as a local run's. Must not
know what a block is: `sim.engine` decides that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sim.params import ParamError

CONNECT_TIMEOUT_S = 10.0


def gather_in_order(fn: Callable[..., Any], items: Sequence[tuple], scheduler: Any,
                    progress: Callable[[int], None] | None = None) -> tuple[list[Any], int]:
    """(results in item order, workers the cluster had); `progress(i)` after item i finished."""
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else _connect(Client, scheduler)
    try:
        workers = len(client.scheduler_info().get("workers", {})) or 1
        futures = [client.submit(fn, *item, pure=False) for item in items]
        index = {future.key: i for i, future in enumerate(futures)}
        for future in as_completed(futures):
            if progress:
                progress(index[future.key])
        return client.gather(futures), workers
    finally:
        if client is not scheduler:
            client.close()


def _connect(client_type, address: str):
    try:
        return client_type(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise ParamError(f"cannot reach the Dask scheduler at {address!r} within {CONNECT_TIMEOUT_S:g} s: "
                         f"{exc}") from None
