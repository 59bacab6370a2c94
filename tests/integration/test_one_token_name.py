"""One name for the back-office token: the stand-ins read the variable the service reads
(`RECONNECT_LAB_BACKOFFICE_TOKEN`), so one exported token serves both.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from service.config import BACKOFFICE_TOKEN_ENV, load_settings
from tests.fixtures.standins import TOKEN_ENV, standins_argv, start_standins


@pytest.mark.integration
def test_standins_take_the_token_from_the_services_variable(tmp_path: Path) -> None:
    assert TOKEN_ENV == BACKOFFICE_TOKEN_ENV == "RECONNECT_LAB_BACKOFFICE_TOKEN"
    assert "--backoffice-token-env" not in standins_argv(tmp_path / "r.json", None, None)
    # started with the service's variable only (no flag naming another)
    running = start_standins(tmp_path, tmp_path / "ready.json", None, name="standins-token")
    try:
        token = running.backoffice_token.reveal()
        assert load_settings(environ={BACKOFFICE_TOKEN_ENV: token, "RECONNECT_LAB_SESSIONS": "s0"}).backoffice_token.reveal() == token
        request = urllib.request.Request(running.backoffice_url + "/api/validity/batch",
                                         data=b'{"session_ids": ["s0"]}', method="POST",
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            assert response.status == 200
    finally:
        running.process.stop()
