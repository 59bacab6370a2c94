"""`python -m service`: run the reference reconnect service until SIGTERM/SIGINT.

Owns the command line (one flag per setting, generated from `Settings`), exit codes
(0 clean stop, 1 a failure while running, 2 bad usage or configuration) and signal
handling (SIGTERM → graceful stop: sessions released, leases given up, outbox flushed).
Must not make reconnect decisions or print secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from service.config import ENV_PREFIX, POLICY_ENV_PREFIX, Settings, check_settings, load_settings, parse_scalar
from service.errors import ConfigError, StartupError
from service.logging import configure_logging, get_logger

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
Run the reference reconnect service: many WhatsApp sessions in one asyncio process.
Every reconnect decision (backoff, attempts, terminal codes, validation) is made by the
pure core in service.core; this process carries its commands out against Redis, the
back office (HTTP) and a WhatsApp transport, and exports /metrics and /healthz on
127.0.0.1:METRICS_PORT.

Settings come from, in rising precedence: defaults, a TOML file (--config), environment
variables RECONNECT_LAB_<SETTING> (policy keys: RECONNECT_LAB_POLICY_<KEY>), and flags.
"""

EPILOG = """\
examples:
  # 100 sessions against the stand-ins, ten times faster than the note's timings
  python -m service --sessions 's{0..99}' --redis-url redis://127.0.0.1:6379/0 \\
      --backoffice-url http://127.0.0.1:8080 --whatsapp-url ws://127.0.0.1:8765 \\
      --time-scale 0.1 --timeline-path reports/service/timeline.jsonl

  # the back-office token from the environment (never put secrets on a command line)
  RECONNECT_LAB_BACKOFFICE_TOKEN=... python -m service --config service.toml

  # check a configuration without starting anything
  python -m service --config service.toml --check-config

  # policy keys (see service.core.build_policy): jitter, 6 attempts, Baileys' close codes
  python -m service --sessions @ids.txt --policy jitter=full --policy max_attempts=6 --policy codes=baileys

TOML file: the same keys as the flags (with underscores), policy keys in a [policy] table.
exit codes: 0 stopped cleanly; 1 failed while running or an upstream (Redis) unreachable at
start; 2 bad usage or configuration, also when found at start (e.g. metrics port in use),
always one line on stderr naming the setting.
"""

_SECRET_FLAGS = {"redis_url", "backoffice_token", "session_credentials", "neonize_proxy_url"}


def one_line(text: str) -> str:
    """A message as one line (a bad setting is reported on one line, never a traceback)."""
    return " ".join(text.split())


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (exit 2), like every other bad setting."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, one_line(f"error: {message} (see {self.prog} --help)") + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m service", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    parser.add_argument("--policy", action="append", default=[], metavar="KEY=VALUE",
                        help="a reconnect policy key (repeatable), e.g. base_s=0.2, jitter=full, codes=baileys")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the settings, print them (secrets masked) and exit")
    group = parser.add_argument_group("settings (each also RECONNECT_LAB_<NAME> or a TOML key)")
    for name, info in Settings.model_fields.items():
        if name == "policy":
            continue
        hint = " (prefer the env var: flags show in `ps`)" if name in _SECRET_FLAGS else ""
        group.add_argument("--" + name.replace("_", "-"), dest=name, default=None, metavar="VALUE",
                           help=f"{info.description}{hint} [env {ENV_PREFIX}{name.upper()}]")
    return parser


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Flags given on the command line → settings overrides (flags not given are absent)."""
    found: dict[str, Any] = {}
    for name in Settings.model_fields:
        if name == "policy":
            continue  # --policy KEY=VALUE, below
        value = getattr(args, name, None)
        if value is not None:
            found[name] = value if name in (*_SECRET_FLAGS, "owner_id", "sessions") else parse_scalar(value)
    policy: dict[str, Any] = {}
    for item in args.policy:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--policy expects KEY=VALUE, got {item!r} (e.g. --policy base_s=0.2)")
        policy[key.strip()] = parse_scalar(value.strip())
    if policy:
        found["policy"] = policy
    return found


async def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    from service.runtime.app import build_service

    log = get_logger(owner_id=settings.owner_id)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        service = await build_service(settings)
    except ConfigError as err:  # a setting that only starting could judge (a port in use, a file)
        log.error("service_start_failed", error=str(err))
        print(one_line(f"error: {err}"), file=sys.stderr)
        return EXIT_USAGE
    except StartupError as err:  # an upstream the settings name is not there (yet)
        log.error("service_start_failed", error=str(err))
        print(one_line(f"error: {err}"), file=sys.stderr)
        return EXIT_FAILED
    log.info("service_running", sessions=len(service.gateway.runners), metrics_port=service.server.port,
             event_loop=type(loop).__module__.partition(".")[0])
    await stop.wait()
    log.info("service_stopping", reason="signal")
    try:
        await service.stop()
    except Exception as err:  # noqa: BLE001 - report and exit non-zero
        log.error("service_stop_failed", error=repr(err), exc_info=True)
        return EXIT_FAILED
    log.info("service_stopped")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and EXIT_USAGE
    load = check_settings if args.check_config else load_settings
    try:
        loaded = load(toml_path=args.config, overrides=overrides_from(args))
    except ConfigError as err:
        print(one_line(f"error: {err} (see python -m service --help; policy keys also via {POLICY_ENV_PREFIX}<KEY>)"),
              file=sys.stderr)
        return EXIT_USAGE
    if args.check_config:
        settings, not_set = loaded
        shown = {**settings.safe_dict(), **{key: None for key in not_set}, "not_set": not_set}
        print(json.dumps(shown, indent=2, sort_keys=True))
        if not_set:
            print(f"note: every value given is valid; still to give before running: {', '.join(not_set)} "
                  f"(flag, {ENV_PREFIX}<NAME> or the TOML file)", file=sys.stderr)
        return EXIT_OK
    settings = loaded
    configure_logging(sys.stderr, settings.log_level)
    if settings.event_loop == "uvloop":
        import uvloop
        return uvloop.run(serve(settings))
    return asyncio.run(serve(settings))
