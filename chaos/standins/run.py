"""`python -m chaos standins`: run both stand-ins on 127.0.0.1 until SIGTERM/SIGINT.

Owns: the `standins` subcommand's flags, raising the open-file limit (10,000 sockets),
binding the four ports, and announcing them (ready file + stdout) once all listen.
Must not print or log the back-office token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.standins.backoffice import BackOfficeStandin
from chaos.standins.webutil import start_app
from chaos.standins.whatsapp import WhatsAppStandin
from service.config import BACKOFFICE_TOKEN_ENV
from service.keys import DEFAULT_CLUSTER_SHARDS, MAX_SHARDS
from service.ports import Secret

log = logging.getLogger(__name__)

DEFAULT_TOKEN_ENV = BACKOFFICE_TOKEN_ENV  # the service's variable: one token, one name
PORT_NAMES = ("whatsapp_port", "whatsapp_admin_port", "backoffice_port", "backoffice_admin_port")


@dataclass(frozen=True)
class StandinsConfig:
    whatsapp_port: int = 0
    whatsapp_admin_port: int = 0
    backoffice_port: int = 0
    backoffice_admin_port: int = 0
    token: Secret = Secret("")
    redis_url: str | None = None
    ready_file: Path | None = None
    hello_timeout_s: float = 10.0
    redis_cluster_shards: int = DEFAULT_CLUSTER_SHARDS


def register(subparsers: Any) -> None:
    """Add the `standins` subcommand to `python -m chaos`."""
    parser = subparsers.add_parser(
        "standins", help="run the WhatsApp and back-office stand-in servers",
        description="Run the WhatsApp stand-in (WebSocket + admin port) and the back-office "
                    "stand-in (API + admin port) on 127.0.0.1 until SIGTERM/SIGINT. Port 0 "
                    "picks a free port; the real ports are printed and written to --ready-file.",
    )
    for flag in ("--whatsapp-port", "--whatsapp-admin-port", "--backoffice-port", "--backoffice-admin-port"):
        parser.add_argument(flag, type=_port, default=0, metavar="PORT", help="TCP port on 127.0.0.1 (default 0: any free port)")
    parser.add_argument("--backoffice-token-env", default=DEFAULT_TOKEN_ENV, metavar="NAME",
                        help=f"environment variable holding the API's bearer token (default {DEFAULT_TOKEN_ENV})")
    parser.add_argument("--redis-url", default=None, metavar="URL",
                        help="Redis shared with the service: deleting/deactivating an account writes 'inactive'")
    parser.add_argument("--redis-cluster-shards", type=_shards, default=DEFAULT_CLUSTER_SHARDS, metavar="N",
                        help="with a redis+cluster:// URL: the service's redis_cluster_shards, so the "
                             f"'inactive' write lands at the service's key (default {DEFAULT_CLUSTER_SHARDS})")
    parser.add_argument("--ready-file", type=Path, default=None, metavar="PATH",
                        help="write the bound ports as JSON here once every port listens")
    parser.add_argument("--hello-timeout-s", type=_positive_float, default=10.0, metavar="SECONDS",
                        help="close a socket that sends no hello within this time (code 4408; default 10)")
    parser.set_defaults(func=_run_command)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port must be an integer in 0..65535, got {text!r}")
    return int(text)


def _shards(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"must be an integer in 1..{MAX_SHARDS}, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _run_command(args: argparse.Namespace) -> int:
    token = os.environ.get(args.backoffice_token_env, "")
    if not token:
        print(f"error: the back-office token is missing: set the environment variable "
              f"{args.backoffice_token_env} (or name another with --backoffice-token-env)", file=sys.stderr)
        return 2
    config = StandinsConfig(args.whatsapp_port, args.whatsapp_admin_port, args.backoffice_port,
                            args.backoffice_admin_port, Secret(token), args.redis_url, args.ready_file,
                            args.hello_timeout_s, args.redis_cluster_shards)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_open_file_limit()
    asyncio.run(serve(config))
    return 0


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    return target


async def serve(config: StandinsConfig, stop: asyncio.Event | None = None) -> None:
    """Run both stand-ins until `stop` is set (or SIGTERM/SIGINT when none is given)."""
    stop = stop or _stop_on_signals()
    whatsapp = WhatsAppStandin(hello_timeout_s=config.hello_timeout_s)
    backoffice = BackOfficeStandin(config.token, redis_url=config.redis_url,
                                   cluster_shards=config.redis_cluster_shards)
    runners = []
    try:
        ports = {}
        for name, app, port in (
            ("whatsapp_port", whatsapp.ws_app(), config.whatsapp_port),
            ("whatsapp_admin_port", whatsapp.admin_app(), config.whatsapp_admin_port),
            ("backoffice_port", backoffice.api_app(), config.backoffice_port),
            ("backoffice_admin_port", backoffice.admin_app(), config.backoffice_admin_port),
        ):
            runner, ports[name] = await start_app(app, port)
            runners.append(runner)
        announce(ports, config.ready_file)
        await stop.wait()
        log.info("stopping the stand-ins")
        await whatsapp.shutdown()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        await backoffice.aclose()


def announce(ports: dict[str, int], ready_file: Path | None) -> None:
    """Print the ports and write them to `ready_file` atomically (write, then rename)."""
    text = json.dumps({**ports, "host": "127.0.0.1", "pid": os.getpid()}, sort_keys=True)
    if ready_file is not None:
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(ready_file)
    print(text, flush=True)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
