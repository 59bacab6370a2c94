"""Checks of the settings' URLs and text values, each raising `ValueError` with a message
that names what is wrong and never shows a password.

Owns what a usable Redis, back-office and WhatsApp URL looks like (scheme, host, port,
database number) and which text a path or an id may hold. `service.config` attaches
these to its fields; new settings reuse them. Must not do I/O.
"""

from __future__ import annotations

import dataclasses
import math
import re
import urllib.parse
from typing import Any

from service.redis_connect import (CLUSTER_EXAMPLE, SENTINEL_EXAMPLE, is_cluster_url, is_sentinel_url,
                                   parse_cluster_url, parse_sentinel_url)

# The password runs to the last `@` before the path, as redis-py and urllib read it: a raw `@`
# in a password must not leave its tail in a log line.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/]*):(?P<pw>[^/]*)@", re.I)
MAX_URL_CHARS = 2048
SHOWN_CHARS = 80


def redact_url(url: str) -> str:
    """`redis://:pw@host` → `redis://:***@host`; URLs without a password are unchanged."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def shown(text: str) -> str:
    """A value for an error message: passwords masked, at most SHOWN_CHARS characters (a
    text past MAX_URL_CHARS by its length only: masking it whole would cost quadratic time)."""
    if len(text) > MAX_URL_CHARS:
        return f"(a text of {len(text)} characters)"
    text = redact_url(text)
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


def _split(url: str, schemes: tuple[str, ...], example: str, *, secret: bool = False) -> urllib.parse.SplitResult:
    """The URL's parts once scheme, host and port are usable; raises `ValueError` (showing
    the URL unless it is `secret`: a password may hold any character, masking can miss it)."""
    got = "" if secret else f", got {shown(url)}"
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"is {len(url)} characters long, at most {MAX_URL_CHARS}")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValueError(f"must not contain spaces or control characters{got}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in schemes:
        if "redis" in schemes:
            example += f" or {SENTINEL_EXAMPLE} or {CLUSTER_EXAMPLE}"
        raise ValueError(f"must start with {' or '.join(s + '://' for s in schemes)} (like {example}){got}")
    if not parts.hostname:
        raise ValueError(f"has no host (like {example}){got}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"has a port that is not a number in 1..65535 (like {example}){got}") from None
    if port == 0:
        raise ValueError(f"has port 0; give the server's port (like {example}){got}")
    if parts.fragment:
        raise ValueError(f"must not have a #fragment{got}")
    return parts


def check_redis_url(url: str) -> str:
    """`redis[s]://[user:password@]host[:port][/db]`, `unix:///path/to/socket[?db=N]` or
    `redis+sentinel://[[user]:password@]host:port[,host:port...]/service-name[/db]` or
    `redis+cluster://[[user]:password@]host:port[,host:port...][/]`."""
    example = "redis://127.0.0.1:6379/0"
    if is_sentinel_url(url) or is_cluster_url(url):
        if len(url) > MAX_URL_CHARS:
            raise ValueError(f"is {len(url)} characters long, at most {MAX_URL_CHARS}")
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
            raise ValueError("must not contain spaces or control characters")
        (parse_sentinel_url if is_sentinel_url(url) else parse_cluster_url)(url)
        return url
    if url.lower().startswith("unix://"):
        parts = urllib.parse.urlsplit(url)
        if not parts.path or parts.path == "/" or "\x00" in url or len(url) > MAX_URL_CHARS:
            raise ValueError("must name the socket file, like unix:///run/redis.sock")
        _check_db_query(parts.query)
        return url
    parts = _split(url, ("redis", "rediss", "unix"), example, secret=True)
    db = parts.path.lstrip("/")
    if parts.path not in ("", "/") and (not db.isdigit() or not db.isascii() or int(db) > 1_000_000):
        raise ValueError(f"database must be a number, like {example}")
    _check_db_query(parts.query)
    return url


def _check_db_query(query: str) -> None:
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key == "db" and not (value.isdigit() and value.isascii()):
            raise ValueError("?db= must be a number")


def check_http_url(url: str) -> str:
    """A back-office base URL: `http(s)://host[:port][/base/path]`, no query."""
    parts = _split(url, ("http", "https"), "http://127.0.0.1:8080")
    if parts.query:
        raise ValueError(f"must be a base URL without a ?query, got {shown(url)}")
    return url.rstrip("/")


def check_ws_url(url: str) -> str:
    """A WhatsApp stand-in base URL: `ws(s)://host[:port]` (links add /ws/<session_id>)."""
    parts = _split(url, ("ws", "wss"), "ws://127.0.0.1:8765")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"must be a base URL with no path or query (links add /ws/<session_id>), "
                         f"got {shown(url)}")
    return url.rstrip("/")


PROXY_SCHEMES = ("socks5", "http", "https")  # neonize rejects socks5h and socks4


def check_proxy_url(url: str) -> str:
    """A neonize proxy: `socks5|http|https://[user:password@]host:port`, nothing after the port."""
    example = "socks5://127.0.0.1:1080"
    parts = _split(url, PROXY_SCHEMES, example, secret=True)
    if parts.port is None:
        raise ValueError(f"has no port (like {example})")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"must end at the port (like {example}), no path or ?query")
    return url


def check_path_text(value: Any) -> Any:
    """A file path setting given as text: non-empty, no NUL, at most 4096 characters."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must be a file path, got an empty string")
        if "\x00" in value or len(value) > 4096:
            raise ValueError(f"must be a file path (no NUL, at most 4096 characters), got {shown(value)}")
    return value


def reject_bool(value: Any) -> Any:
    """Numbers only: `true` is not 1 here."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {str(value).lower()}")
    return value


WEEK_S = 7 * 86_400.0
MAX_COUNT = 1_000_000


def check_policy_limits(value: Any, path: str = "") -> None:
    """A built policy's numbers within what the service can carry out: every duration
    (a `*_s` field) at most a week or infinite where the core allows it (no cap), every
    count at most a million. The core judges the
    policy's own rules; these are the shell's (a timer a week away is a stuck session)."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return
    for item in dataclasses.fields(value):
        leaf = getattr(value, item.name)
        name = f"{path}{item.name}"
        if isinstance(leaf, bool) or not isinstance(leaf, int | float):
            check_policy_limits(leaf, f"{name}.")
        elif item.name.endswith("_s") and WEEK_S < leaf < math.inf:  # inf: "no bound", where the core allows it
            raise ValueError(f"{item.name} = {leaf!r} s is more than a week ({WEEK_S:.0f} s, after time_scale)")
        elif isinstance(leaf, int) and leaf > MAX_COUNT:
            raise ValueError(f"{item.name} = {leaf!r} is more than {MAX_COUNT}")
