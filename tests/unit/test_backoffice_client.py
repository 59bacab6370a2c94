"""The HTTP back-office client without a back office: settings checked at construction and a
refused connection reported as a clear error without the token. Against real servers:
tests/integration/test_backoffice_client.py."""

from __future__ import annotations

import pytest

from service.backoffice import HttpBackOffice
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
