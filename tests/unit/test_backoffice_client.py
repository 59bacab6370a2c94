"""The HTTP back-office client without a back office: settings checked at construction and a
refused connection reported as a clear error without the token. Against real servers:
tests/integration/test_backoffice_client.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.backoffice import HttpBackOffice, json_body
from service.errors import BackOfficeError, ConfigError
from service.ports import Secret
from tests.fixtures.process import free_port

TOKEN = Secret("tok-very-secret-123")


def assert_no_token(err: BaseException) -> None:
    text = f"{err} {err!r} {err.__cause__!r} {err.__context__!r}"
    assert TOKEN.reveal() not in text


async def test_refused_connection_is_a_clear_error() -> None:
    async with HttpBackOffice(f"http://127.0.0.1:{free_port()}", TOKEN, timeout_s=1.0) as client:
        with pytest.raises(BackOfficeError, match="GET /api/sessions/s1/validity") as caught:
            await client.is_valid("s1")
    assert_no_token(caught.value)
    assert client.errors == 1


def test_bad_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        HttpBackOffice("127.0.0.1:8080", TOKEN, timeout_s=1.0)
    with pytest.raises(ConfigError, match="timeout_s"):
        HttpBackOffice("http://127.0.0.1:8080", TOKEN, timeout_s=0)
    with pytest.raises(ConfigError, match="token"):
        HttpBackOffice("http://127.0.0.1:8080", Secret(""), timeout_s=1.0)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5), max_leaves=20)


@given(JSON_VALUES)
def test_a_request_body_is_the_json_json_writes(value) -> None:
    """orjson writes the bodies (`json_body`), never another value than json would: integers
    past 64 bits, NaN and infinities (which orjson writes as null) are left to json."""
    sent, reference = json_body(value), json.dumps(value).encode()
    if sent != reference:  # then orjson's: the same value but for spaces and escapes
        assert b"null" not in sent
        assert json.loads(sent) == json.loads(reference)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 2**70, -2**64, {"x": [1.5, float("nan")]}])
def test_values_orjson_would_write_otherwise_are_written_by_json(value) -> None:
    assert json_body(value) == json.dumps(value).encode()
