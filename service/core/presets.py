"""Named reconnect policies of real clients, as `build_policy` settings, each with its source.

Owns the preset table: the design note's policy (the default) and the reconnect
behaviour of whatsmeow, Baileys' README example, gRPC, socket.io and SignalR, written
as the settings of `service.core.policy.build_policy` (`{"preset": "grpc", ...}`; keys
given beside a preset override it). Each entry cites where its numbers come from; a
unit test pins every preset's delays against that definition. Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from service.core.errors import PolicyError


@dataclass(frozen=True)
class Preset:
    """A named policy: its settings, where they come from and what it does."""

    name: str
    settings: Mapping[str, Any]
    source: str
    summary: str


PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (
    Preset("note", {}, "reference/design-note-reconnect-fixes.es.md (SPEC R2)",
           "2, 4, 8, 16, 32 s, then inactive after the 5th attempt"),
    Preset("whatsmeow",
           {"schedule": "linear", "base_s": 0.0, "step_s": 2.0, "cap_s": float("inf"),
            "max_attempts": "unlimited", "codes": "whatsmeow"},
           "whatsmeow client.go autoReconnect: delay = AutoReconnectErrors * 2 s, "
           "AutoReconnectErrors++ after computing it, reset to 0 on connect",
           "0, 2, 4, 6, … s (linear 2 s steps, no cap), never gives up"),
    Preset("baileys_readme",
           {"schedule": "steps", "steps_s": [0.0], "max_attempts": "unlimited",
            "codes": "baileys_readme"},
           "Baileys README 'connection.update' example: on close, shouldReconnect = statusCode "
           "!== DisconnectReason.loggedOut; if so call connectToWhatsApp() again at once",
           "reconnect at once on every close but 401, forever"),
    Preset("grpc",
           {"base_s": 1.0, "factor": 1.6, "cap_s": 120.0, "jitter": "proportional",
            "jitter_ratio": 0.2, "jitter_from_attempt": 2, "max_attempts": "unlimited",
            "connect_timeout_s": 20.0},
           "grpc/doc/connection-backoff.md: INITIAL_BACKOFF 1 s, MULTIPLIER 1.6, JITTER 0.2, "
           "MAX_BACKOFF 120 s, MIN_CONNECT_TIMEOUT 20 s; the first deadline is un-jittered, "
           "later ones min(backoff * 1.6, 120) ± 20 %",
           "1 s, then 1.6^(n-1) s ≤ 120 s ± 20 %, connect timeout 20 s, never gives up"),
    Preset("socketio",
           {"base_s": 1.0, "factor": 2.0, "cap_s": 5.0, "jitter": "proportional",
            "jitter_ratio": 0.5, "cap_after_jitter": True, "max_attempts": "unlimited",
            "connect_timeout_s": 20.0},
           "socket.io-client Manager defaults (reconnectionDelay 1000, reconnectionDelayMax 5000, "
           "randomizationFactor 0.5, reconnectionAttempts Infinity, timeout 20000) and backo2: "
           "min(1000 * 2^n ± rand * 0.5 * that, 5000) ms",
           "2^(n-1) s ± 50 %, then capped at 5 s, never gives up"),
    Preset("signalr",
           {"schedule": "steps", "steps_s": [0.0, 2.0, 10.0, 30.0], "max_attempts": 4},
           "@microsoft/signalr DefaultReconnectPolicy: DEFAULT_RETRY_DELAYS_IN_MILLISECONDS = "
           "[0, 2000, 10000, 30000, null] (null: stop)",
           "0, 2, 10, 30 s, then stops"),
)})


def preset_settings(name: object) -> dict[str, Any]:
    """The settings of preset `name` (a copy); an unknown name raises `PolicyError` listing them."""
    if not isinstance(name, str) or name not in PRESETS:
        raise PolicyError(f"unknown policy preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return dict(PRESETS[name].settings)
