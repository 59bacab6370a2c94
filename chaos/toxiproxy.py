"""The project's one client for the Toxiproxy HTTP API (server v2.12.0).

Owns: every HTTP call to a Toxiproxy server, and the checks that keep a proxy on
loopback. Must not: start or stop the server (test fixtures and the chaos runner do
that), know about scenarios, or be bypassed by another module talking to Toxiproxy.

Why not `toxiproxy-python`. The project brief names toxiproxy-python 0.1.1 (2019);
it stays a declared dependency, but this module does not build on it. Read at 0.1.1:

- its host and port are class attributes of `APIConsumer`, changed by
  `update_api_consumer()`: one server per process, shared by every caller;
- it calls `requests` with no timeout, so a stalled server hangs a test forever;
- only 400/404/409 raise; any other error status (a 5xx) is returned as if it
  succeeded and its JSON error body is then read as a proxy, which surfaces as
  `KeyError: 'name'`;
- proxy and toxic names go into URL paths unquoted;
- `create()` lists all proxies first (a race, and a second request), `populate()`
  deletes and recreates proxies client-side, `get_proxy()` returns None for both
  "missing" and "server said something odd";
- it needs the Python 2 shim package `future`.

None of that can be fixed from outside without rewriting each call, so this module
is a small typed client on `urllib.request` instead: every request has a timeout,
names are validated and URL-quoted, every non-2xx answer raises `ToxiproxyError`
carrying the status and body, and a proxy can only listen on a loopback address
given explicitly (Toxiproxy binds every interface for an empty host).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TOXIC_ATTRIBUTES",
    "Proxy",
    "ToxiproxyConflictError",
    "ToxiproxyNotFoundError",
    "Toxiproxy",
    "ToxiproxyError",
    "ToxiproxyUnreachableError",
]

# Attributes each toxic kind accepts (all integers, milliseconds/bytes/KB/s).
TOXIC_ATTRIBUTES: dict[str, frozenset[str]] = {
    "latency": frozenset({"latency", "jitter"}),
    "timeout": frozenset({"timeout"}),
    "bandwidth": frozenset({"rate"}),
    "reset_peer": frozenset({"timeout"}),
    "slicer": frozenset({"average_size", "size_variation", "delay"}),
    "limit_data": frozenset({"bytes"}),
    "slow_close": frozenset({"delay"}),
}
STREAMS = ("downstream", "upstream")

# Conservative: gorilla/mux routes on decoded paths, so '/' can never work and
# other punctuation is a trap in logs and shells. Quoting still applies.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_USER_AGENT = "reconnect-lab-toxiproxy/1"


class ToxiproxyError(Exception):
    """A Toxiproxy request failed; `status` is the HTTP status (None if no answer)."""

    def __init__(self, method: str, path: str, status: int | None, body: str, hint: str = "") -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        shown = "no response" if status is None else f"HTTP {status}"
        message = f"Toxiproxy {method} {path} failed: {shown}: {_error_text(body)}"
        super().__init__(f"{message} ({hint})" if hint else message)


class ToxiproxyUnreachableError(ToxiproxyError):
    """No HTTP answer at all: server not running, wrong port, or request timed out."""


class ToxiproxyNotFoundError(ToxiproxyError):
    """HTTP 404: the proxy or toxic named in the request does not exist."""


class ToxiproxyConflictError(ToxiproxyError):
    """HTTP 409: a proxy or toxic of that name already exists."""


def _error_text(body: str) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return body.strip() or "(empty body)"
    if isinstance(decoded, dict) and "error" in decoded:
        return str(decoded["error"])
    return body.strip()


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid {what} name {name!r}: use 1-128 characters from "
            "letters, digits and . _ : - (starting with a letter or digit)"
        )
    return name


def _split_host_port(address: str, what: str) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{what} {address!r} must be 'host:port'")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise ValueError(
            f"{what} {address!r} has no host; Toxiproxy would listen on every "
            "interface. Give one explicitly, e.g. '127.0.0.1:0'"
        )
    return host, int(port_text)


def _check_loopback_listen(listen: str) -> str:
    host, _ = _split_host_port(listen, "listen address")
    try:
        is_loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback:
        raise ValueError(
            f"listen address {listen!r} is not a loopback IP literal; "
            "proxies here listen on 127.0.0.1 only, e.g. '127.0.0.1:0'"
        )
    return listen


def _toxic_body(kind: str, name: str | None, stream: str, toxicity: float, attributes: dict[str, Any]) -> dict[str, Any]:
    if kind not in TOXIC_ATTRIBUTES:
        raise ValueError(f"unknown toxic kind {kind!r}; known: {', '.join(sorted(TOXIC_ATTRIBUTES))}")
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {STREAMS}, not {stream!r}")
    if not 0.0 <= float(toxicity) <= 1.0:
        raise ValueError(f"toxicity must be within [0, 1], not {toxicity!r}")
    unknown = set(attributes) - TOXIC_ATTRIBUTES[kind]
    if unknown:
        allowed = ", ".join(sorted(TOXIC_ATTRIBUTES[kind]))
        raise ValueError(f"toxic {kind!r} takes {allowed}; got unknown {', '.join(sorted(unknown))}")
    for key, value in attributes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"toxic attribute {key}={value!r} must be a non-negative int")
    toxic_name = _check_name(name if name is not None else f"{kind}_{stream}", "toxic")
    return {"name": toxic_name, "type": kind, "stream": stream, "toxicity": float(toxicity), "attributes": attributes}


class Toxiproxy:
    """Client for one Toxiproxy server. Cheap; holds no connection between calls."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8474, timeout_s: float = 5.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s!r}")
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._base_url = f"http://{host}:{port}"
        # No proxy handler: environment HTTP proxies must never see loopback calls.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"Toxiproxy(host={self.host!r}, port={self.port}, timeout_s={self.timeout_s})"

    # -- server-wide -------------------------------------------------------

    def version(self) -> str:
        """The server's version string, e.g. '2.12.0'."""
        raw = self._request("GET", "/version", expect_json=False)
        try:
            decoded = json.loads(raw)
        except ValueError:
            return raw.strip()
        return str(decoded["version"]) if isinstance(decoded, dict) else str(decoded)

    def reset(self) -> None:
        """Enable every proxy and remove every toxic. Proxies themselves stay."""
        self._request("POST", "/reset")

    def proxies(self) -> dict[str, Proxy]:
        body = self._request("GET", "/proxies")
        return {name: Proxy._from_json(self, value) for name, value in body.items()}

    # -- proxies -------------------------------------------------------------

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0") -> Proxy:
        """Create an enabled proxy; `listen` must be an explicit loopback host:port."""
        _check_name(name, "proxy")
        _split_host_port(upstream, "upstream")
        _check_loopback_listen(listen)
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": True}
        return Proxy._from_json(self, self._request("POST", "/proxies", body))

    def get_proxy(self, name: str) -> Proxy:
        """The named proxy; raises ToxiproxyNotFoundError if there is none."""
        return Proxy._from_json(self, self._request("GET", self._proxy_path(name)))

    def delete_proxy(self, name: str) -> None:
        self._request("DELETE", self._proxy_path(name))

    # -- plumbing used by Proxy -----------------------------------------------

    def _proxy_path(self, name: str, *rest: str) -> str:
        parts = [_check_name(name, "proxy"), *rest]
        return "/proxies/" + "/".join(urllib.parse.quote(part, safe="") for part in parts)

    def _request(self, method: str, path: str, body: Any = None, expect_json: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._base_url + path, data=data, method=method)
        request.add_header("User-Agent", _USER_AGENT)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                text = response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            raise _http_error(method, path, err) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ToxiproxyUnreachableError(
                method, path, None, str(reason),
                hint=f"is toxiproxy-server listening on {self.host}:{self.port}? timeout {self.timeout_s}s",
            ) from err
        if not expect_json:
            return text
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError as err:
            raise ToxiproxyError(method, path, 200, text, hint="answer was not JSON") from err


def _http_error(method: str, path: str, err: urllib.error.HTTPError) -> ToxiproxyError:
    try:
        body = err.read().decode("utf-8", "replace")
    except OSError:
        body = ""
    kinds: dict[int, type[ToxiproxyError]] = {404: ToxiproxyNotFoundError, 409: ToxiproxyConflictError}
    return kinds.get(err.code, ToxiproxyError)(method, path, err.code, body)


@dataclass(frozen=True)
class Proxy:
    """A proxy as the server last described it. Methods act on the server.

    The fields are a snapshot: `enable()`/`disable()` return a fresh snapshot;
    `refresh()` fetches one.
    """

    name: str
    listen_host: str
    listen_port: int
    upstream: str
    enabled: bool
    client: Toxiproxy = field(repr=False, compare=False)

    @classmethod
    def _from_json(cls, client: Toxiproxy, value: dict[str, Any]) -> Proxy:
        try:
            host, port = _split_host_port(value["listen"], "listen address")
            return cls(value["name"], host, port, value["upstream"], bool(value["enabled"]), client)
        except (KeyError, TypeError, ValueError) as err:
            raise ToxiproxyError("GET", "/proxies", 200, json.dumps(value), hint=f"unexpected proxy shape: {err}") from err

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to connect a client to, instead of the upstream."""
        return self.listen_host, self.listen_port

    def refresh(self) -> Proxy:
        return self.client.get_proxy(self.name)

    def disable(self) -> Proxy:
        """Close every open connection through the proxy and refuse new ones."""
        return self._set_enabled(False)

    def enable(self) -> Proxy:
        return self._set_enabled(True)

    def delete(self) -> None:
        self.client.delete_proxy(self.name)

    def add_toxic(
        self,
        kind: str,
        *,
        name: str | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
        **attributes: int,
    ) -> str:
        """Add a toxic; returns its name (default '<kind>_<stream>', as the server's).

        Toxicity is drawn once per connection by the server: never assert on a
        single random outcome with toxicity < 1.
        """
        body = _toxic_body(kind, name, stream, toxicity, attributes)
        self.client._request("POST", self.client._proxy_path(self.name, "toxics"), body)
        return body["name"]

    def remove_toxic(self, name: str) -> None:
        path = self.client._proxy_path(self.name, "toxics", _check_name(name, "toxic"))
        self.client._request("DELETE", path)

    def toxics(self) -> list[dict[str, Any]]:
        return list(self.client._request("GET", self.client._proxy_path(self.name, "toxics")))

    @contextlib.contextmanager
    def toxic(self, kind: str, **kwargs: Any) -> Iterator[str]:
        """Add a toxic for the `with` block; it is removed on exit, even on error.

        A toxic already gone on exit (e.g. after `reset()`) is not an error.
        """
        name = self.add_toxic(kind, **kwargs)
        try:
            yield name
        finally:
            with contextlib.suppress(ToxiproxyNotFoundError):
                self.remove_toxic(name)

    @contextlib.contextmanager
    def disabled(self) -> Iterator[Proxy]:
        """Disable the proxy for the `with` block; it is enabled again on exit."""
        snapshot = self.disable()
        try:
            yield snapshot
        finally:
            self.enable()

    def _set_enabled(self, enabled: bool) -> Proxy:
        # PATCH: v2.12 logs POST on this route as deprecated.
        body = self.client._request("PATCH", self.client._proxy_path(self.name), {"enabled": enabled})
        return Proxy._from_json(self.client, body)
