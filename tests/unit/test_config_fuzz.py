"""Config fuzz: every setting of `python -m service`, in each of its three forms (flag, env
var, TOML key), given hostile values — wrong types, NaN/inf, negative, zero, huge and
5,000-digit numbers, empty, blank, control-character and overlong text, bad URLs. A value
the setting cannot use exits 2 with one line on stderr naming the setting; a usable one
exits 0; never a traceback. The table is generated from `Settings.model_fields`, so a new
setting without a kind here fails the first test.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.cli import main
from service.config import ENV_PREFIX, FIELD_NAMES, Settings

BASE_ENV = {"RECONNECT_LAB_BACKOFFICE_TOKEN": "t0ken-FUZZ", "RECONNECT_LAB_SESSIONS": "s0"}


class Digits:
    """A 5,000-digit integer, written out (Python refuses to make it an int from text)."""

    def __repr__(self) -> str:
        return "9" * 5000

    __str__ = __repr__


HUGE_DIGITS = Digits()
NUMBERS: list[Any] = [math.nan, math.inf, -math.inf, -1, -0.5, 0, 1, 1.5, 1e308, -1e308, 10**30, HUGE_DIGITS,
                      True, "abc", "", [1], {"a": 1}]
TEXTS: list[Any] = ["", " ", "x" * 100_000, "a\x00b", "a\nb", "\u202e\ufeff", 5, 1.5, True, [1], {"a": 1}]
URLS: list[Any] = ["http://", "redis://h:99999", "redis://h:notaport", "redis://:p@h:0/0", "redis://h/abc",
                   "redis://h:6379/0", "rediss://u:p@h/1", "unix://", "unix:///run/redis.sock", "ws://h/p",
                   "ws://h:1", "wss://h", "://x", "ws://", "http://h:8080?x=1", "http://h:8080/base",
                   "https://h", "ftp://h", "http://h:-1", "redis://h:1/0#f"]
SENTINEL_URLS: list[Any] = ["redis+sentinel://h:26379,h2:26380/mymaster/0", "redis+sentinel://:p@h:1/m",
                            "redis+sentinel://", "redis+sentinel://h:26379", "redis+sentinel://h:26379/",
                            "redis+sentinel://h/m", "redis+sentinel://h:0/m", "redis+sentinel://h:1,/m",
                            "redis+sentinel://h:1/m/x", "redis+sentinel://h:1/m?x=1", "redis+sentinel://h:1/m#f",
                            "redis+sentinel://u@h:1/m", "redis+sentinel://h:99999/m", "redis+sentinel://h:1/m m",
                            "redis+sentinel://" + ",".join(["h:1"] * 17) + "/m", "redis+sentinel://h:1/m/99999999",
                            "redis+sentinel://h:1/m/" + "9" * 5000, "redis+sentinel://h:1/" + "m" * 129]


def finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def within(name: str) -> Callable[[Any], bool]:
    """Accepts a finite number inside the field's declared bounds (whole for int fields)."""
    info = Settings.model_fields[name]
    whole = info.annotation in (int, int | None)

    def accepts(value: Any) -> bool:
        if not finite_number(value) or (whole and value != int(value)):
            return False
        for bound in info.metadata:
            if (isinstance(bound, annotated_types.Gt) and not value > bound.gt
                    or isinstance(bound, annotated_types.Ge) and not value >= bound.ge
                    or isinstance(bound, annotated_types.Le) and not value <= bound.le):
                return False
        return True
    return accepts


def url_of(schemes: tuple[str, ...], path_ok: bool) -> Callable[[Any], bool]:
    good = {"redis": {"redis://h:6379/0", "rediss://u:p@h/1", "unix:///run/redis.sock",
                      "redis+sentinel://h:26379,h2:26380/mymaster/0", "redis+sentinel://:p@h:1/m"},
            "ws": {"ws://h:1", "wss://h"}, "http": {"http://h:8080/base", "https://h"}}

    def accepts(value: Any) -> bool:
        return isinstance(value, str) and any(value in good[s] for s in schemes)
    return accepts


def proxy_ok(value: Any) -> bool:
    """Empty (no proxy) or socks5/http/https with a host and a port, nothing after it."""
    if value == "":
        return True
    if not isinstance(value, str) or len(value) > 2048 or any(c.isspace() or ord(c) < 32 for c in value):
        return False
    parts = urllib.parse.urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        return False
    return (parts.scheme in ("socks5", "http", "https") and bool(parts.hostname) and bool(port)
            and parts.path in ("", "/") and not parts.query and not parts.fragment)


PROXIES = ["socks5://u:p@127.0.0.1:1080", "socks5://h:1080", "socks5h://h:1080", "socks4://h:1080", "http://h:3128",
           "https://h:3128/", "socks5://h", "socks5://h:0", "socks5://h:1080/path", "socks5://h:1080?q=1", "socks5://:1"]


def one_of(*allowed: Any) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value in allowed


def text_between(low: int, high: int, visible: bool = False) -> Callable[[Any], bool]:
    def accepts(value: Any) -> bool:
        if not isinstance(value, str) or not low <= len(value) <= high or "\x00" in value:
            return False
        return not visible or all(c.isprintable() and not c.isspace() for c in value)
    return accepts


def sessions_ok(value: Any) -> bool:
    return value in ("s0", "s{0..9}", "a,b")


def path_ok(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and "\x00" not in value and len(value) <= 4096


# setting → (hostile values, which of them the setting accepts)
KINDS: dict[str, tuple[list[Any], Callable[[Any], bool]]] = {
    "redis_url": (URLS + SENTINEL_URLS + TEXTS, url_of(("redis",), True)),
    "backoffice_url": (URLS + TEXTS, url_of(("http",), True)),
    "whatsapp_url": (URLS + TEXTS, url_of(("ws",), False)),
    "backoffice_token": (TEXTS, lambda v: isinstance(v, str) and v not in ("",) and "\x00" not in v
                         and len(v) <= 8192),
    "session_credentials": (TEXTS, lambda v: isinstance(v, str) and "\x00" not in v and len(v) <= 8192),
    "backoffice_validity": (TEXTS + ["batch", "BATCH"], one_of("batch", "single")),
    "transport": (TEXTS + ["wire", "pigeon"], one_of("wire", "neonize")),
    "event_loop": (TEXTS + ["uvloop", "UVLOOP", "trio"], one_of("asyncio", "uvloop")),
    "log_level": (TEXTS + ["debug", "trace"], one_of("debug", "info", "warning", "error")),
    "sessions": (TEXTS + ["s0", "s{0..9}", "s{9..0}", "s{0..99999999}", "a,b", ",", "backoffice", "@",
                          "@/no/such/file", "s{0..1", "bad id"], sessions_ok),
    "owner_id": (TEXTS + ["host-1"], text_between(1, 256, visible=True)),
    "timeline_path": (TEXTS + ["/no/such/dir/x.jsonl"], path_ok),
    "policy": ([5, "x", [1], True], lambda v: False),
    "neonize_proxy_url": (URLS + TEXTS + PROXIES, proxy_ok),
    "neonize_pairing": (TEXTS + [False, 1, 0, "yes"], lambda v: isinstance(v, bool)),
}
for _name in FIELD_NAMES:
    if Settings.model_fields[_name].annotation in (float, int, int | None, float | None):
        KINDS[_name] = (NUMBERS, within(_name))


def render_text(value: Any) -> str:
    """A value as a flag or env var would carry it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def render_toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
    if isinstance(value, int | float | Digits):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(render_toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {render_toml(v)}" for k, v in value.items()) + " }"


def run(args: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    for name in [n for n in __import__("os").environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main([*args, "--check-config"])
    return code, capsys.readouterr().err


def forms(name: str, value: Any, tmp_path: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    """(form, argv, env) for each way the value can be given; text forms only for text-like values."""
    env = dict(BASE_ENV)
    toml = tmp_path / "fuzz.toml"
    if name == "policy":
        toml.write_text(f"policy = {render_toml(value)}\n", encoding="utf-8")
        return [("toml", ["--config", str(toml)], env)]
    toml.write_text(f"{name} = {render_toml(value)}\n", encoding="utf-8")
    env_name = ENV_PREFIX + name.upper()
    toml_env = {k: v for k, v in env.items() if k != env_name}
    out = [("toml", ["--config", str(toml)], toml_env)]
    text_like = not isinstance(value, list | dict | bool | int | float) or KINDS[name][0] is NUMBERS
    if text_like and "\x00" not in render_text(value):  # the OS refuses NUL in argv and environ
        flag = "--" + name.replace("_", "-")
        out.append(("flag", [f"{flag}={render_text(value)}"], dict(env)))
        out.append(("env", [], {**env, env_name: render_text(value)}))
    return out


def expected_ok(name: str, value: Any, form: str) -> bool:
    accepts = KINDS[name][1]
    if form != "toml" and KINDS[name][0] is NUMBERS and isinstance(value, str):
        return False  # "abc" and "" as text are not numbers either
    return accepts(value)


def test_every_setting_has_a_kind() -> None:
    assert set(FIELD_NAMES) == set(KINDS), "classify the new setting in KINDS"
    for name, (values, _) in KINDS.items():
        if values is NUMBERS:
            bounds = Settings.model_fields[name].metadata
            assert any(isinstance(b, annotated_types.Le) for b in bounds), f"{name} needs an upper bound"


@pytest.mark.parametrize("name", sorted(FIELD_NAMES))
def test_hostile_values_exit_2_with_one_line_naming_the_setting(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    values, _ = KINDS[name]
    wrong: list[str] = []
    for value in values:
        for form, argv, env in forms(name, value, tmp_path):
            code, err = run(argv, env, capsys, monkeypatch)
            shown = f"{form} {name}={render_text(value)[:40]!r}"
            if "Traceback" in err:
                wrong.append(f"{shown}: traceback")
            elif expected_ok(name, value, form):
                if code != 0:
                    wrong.append(f"{shown}: expected accepted, got {code}: {err.strip()[:200]}")
            elif code != 2:
                wrong.append(f"{shown}: expected exit 2, got {code}")
            elif err.count("\n") != 1 or name not in err.replace("-", "_"):
                wrong.append(f"{shown}: not one line naming {name}: {err[:300]!r}")
            elif "t0ken-FUZZ" in err:
                wrong.append(f"{shown}: the token is in the error")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("key", ["base_s", "factor", "cap_s", "max_attempts", "jitter", "connect_timeout_s",
                                 "keepalive_interval_s", "keepalive_misses", "default_ban_wait_s", "codes"])
def test_hostile_policy_values_exit_2_naming_the_key(
        key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = []
    for value in [*NUMBERS, *TEXTS[:5]]:
        toml = tmp_path / "policy.toml"
        toml.write_text(f"[policy]\n{key} = {render_toml(value)}\n", encoding="utf-8")
        for argv, env in ((["--config", str(toml)], BASE_ENV),
                          ([f"--policy={key}={render_text(value)}"], BASE_ENV),
                          ([], {**BASE_ENV, f"{ENV_PREFIX}POLICY_{key.upper()}": render_text(value)})):
            if "\x00" in " ".join(argv) + "".join(env.values()):
                continue
            code, err = run(argv, env, capsys, monkeypatch)
            shown = f"{argv or 'env'} {key}={render_text(value)[:40]!r}"
            if "Traceback" in err or code not in (0, 2):
                wrong.append(f"{shown}: exit {code} {err[:200]!r}")
            elif code == 2 and (err.count("\n") != 1 or key not in err):
                wrong.append(f"{shown}: not one line naming {key}: {err[:300]!r}")
    assert not wrong, "\n".join(wrong)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(set(FIELD_NAMES) - {"policy"})),
       text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60))
def test_random_text_never_crashes(name: str, text: str) -> None:
    import contextlib
    import io
    import os
    err = io.StringIO()
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    old_env = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update({**env, **BASE_ENV})
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["--" + name.replace("_", "-") + "=" + text, "--check-config"])
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    assert code in (0, 2)
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert err.getvalue().count("\n") == 1 and name in err.getvalue().replace("-", "_"), err.getvalue()
