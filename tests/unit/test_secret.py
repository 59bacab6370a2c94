"""B8: a `Secret` reveals its value only through `reveal()` — never through the things that
work on text (`+`, slicing, `json.dumps`, `%`, `str.join`), `str`/`repr`/`format`, pickling,
or any log line (structlog or stdlib), whatever the value holds.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.config import load_settings
from service.logging import configure_logging, get_logger
from service.ports import Secret

# marked with a snowman, so an error message that happens to contain the same short text
# (e.g. "__di" inside "__dict__") is not mistaken for a leak
VALUES = st.text(min_size=3, max_size=40).map(lambda v: "\u2603" + v + "\u2603")


def shown(action: Callable[[], Any]) -> str:
    """What `action` gives away: its result as text, or its error's message."""
    try:
        return str(action())
    except Exception as err:  # noqa: BLE001 - the error text must not carry the value either
        return f"{type(err).__name__}: {err} {err!r}"


@settings(max_examples=60, deadline=None)
@given(VALUES)
def test_no_text_operation_reveals_the_value(value: str) -> None:
    secret = Secret(value)
    attempts: dict[str, Callable[[], Any]] = {
        "str": lambda: str(secret), "repr": lambda: repr(secret), "format": lambda: format(secret, ""),
        "f-string": lambda: f"{secret} {secret!r} {secret:>40}", "percent": lambda: "%s %r" % (secret, secret),
        "str.format": lambda: "{0} {0!r}".format(secret), "json.dumps": lambda: json.dumps(secret),
        "json.dumps nested": lambda: json.dumps({"cred": [secret]}),
        "json.dumps default=str": lambda: json.dumps({"cred": secret}, default=str),
        "plus": lambda: secret + "x", "radd": lambda: "x" + secret,  # type: ignore[operator]
        "slice": lambda: secret[0:3], "index": lambda: secret[0],  # type: ignore[index]
        "join": lambda: "".join([secret]),  # type: ignore[list-item]
        "encode": lambda: secret.encode(),  # type: ignore[attr-defined]
        "pickle": lambda: pickle.dumps(secret), "pickle in a dict": lambda: pickle.dumps({"c": secret}, protocol=0),
        "vars": lambda: vars(secret), "dir": lambda: [getattr(secret, n, None) for n in dir(secret)
                                                      if not n.startswith("_")],
    }
    for name, attempt in attempts.items():
        text = shown(attempt)
        assert value not in text, f"{name} revealed the value: {text!r}"
        assert value.encode() not in text.encode(errors="replace"), name
    assert secret.reveal() == value


def test_text_operations_fail_loudly_instead_of_working_on_the_value() -> None:
    secret = Secret("hunter2-abc")
    for attempt in (lambda: secret + "x", lambda: "x" + secret, lambda: secret[1:],  # type: ignore[operator,index]
                    lambda: json.dumps(secret), lambda: pickle.dumps(secret), lambda: "".join([secret])):  # type: ignore[list-item]
        with pytest.raises(TypeError):
            attempt()
    assert not isinstance(secret, str)


def test_secret_value_semantics() -> None:
    secret = Secret("tok-1")
    assert Secret(secret).reveal() == "tok-1", "re-wrapping keeps the value, not its mask"
    assert Secret("tok-1") == secret and hash(Secret("tok-1")) == hash(secret)
    assert secret != "tok-1", "a Secret never equals the plain text"
    assert secret != Secret("tok-2")
    assert bool(Secret("")) is False and bool(secret) is True
    assert copy.copy(secret) is secret and copy.deepcopy({"s": secret})["s"] is secret
    with pytest.raises(AttributeError):
        secret._value = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


def test_settings_never_reveal_their_secrets(tmp_path) -> None:
    values = {"redis_url": "redis://:pw-REDIS-123@127.0.0.1:6379/0", "backoffice_token": "tok-BACKOFFICE-456",
              "session_credentials": "cred-SESSION-789"}
    settings_ = load_settings(environ={}, overrides={**values, "sessions": "s0"})
    texts = [str(settings_), repr(settings_), json.dumps(settings_.safe_dict()),
             shown(lambda: settings_.model_dump_json()), shown(lambda: json.dumps(settings_.model_dump())),
             shown(lambda: pickle.dumps(settings_)), str(settings_.model_dump())]
    for text in texts:
        for value in ("pw-REDIS-123", "tok-BACKOFFICE-456", "cred-SESSION-789"):
            assert value not in text, text
    assert settings_.backoffice_token.reveal() == "tok-BACKOFFICE-456"


def test_logging_never_reveals_a_secret() -> None:
    secret = Secret("s3cr3t-LOGGED-0042")
    out = io.StringIO()
    configure_logging(out, "debug")
    try:
        log = get_logger(component="test", bound_cred=secret)
        log.info("structlog_line", value=secret, nested={"a": [secret, {"b": secret}]}, text=f"x {secret} y")
        logging.getLogger("some.library").warning("stdlib %s %r", secret, secret)
        logging.getLogger("some.library").warning("stdlib extra", extra={"thing": secret})
        try:
            raise ValueError(secret)
        except ValueError:
            log.exception("with_traceback", secret_in_exc=True)
    finally:
        configure_logging(io.StringIO(), "info")
    written = out.getvalue()
    assert written.count("\n") >= 4, written
    assert "s3cr3t-LOGGED-0042" not in written
