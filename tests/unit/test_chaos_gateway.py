"""The gateway file (chaos/CONTRACT.md, "Starting a gateway"): loading, placeholders, errors
naming the file and key, the status layout, and the reference service's own file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.gateway import (PLACEHOLDERS, REFERENCE_GATEWAY, GatewaySpecError, StatusLayout, fill, load_gateway,
                           reference_gateway)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_reference_gateway_file_loads_and_fills_every_endpoint():
    spec = reference_gateway()
    assert spec.name == "reference" and spec.time_scale and spec.timeline
    values = {name: f"<{name}>" for name in PLACEHOLDERS}
    argv = spec.argv(values)
    assert argv[:3] == ["<python>", "-m", "service"]
    assert "@<sessions_file>" in argv and "<whatsapp_url>" in argv and "<redis_url>" in argv
    assert not any("backoffice_token" in part for part in argv)
    env = spec.environment(values, {"max_attempts": 6, "codes": "baileys"})
    assert env["RECONNECT_LAB_BACKOFFICE_TOKEN"] == "<backoffice_token>"
    assert json.loads(env["RECONNECT_LAB_POLICY_MAX_ATTEMPTS"]) == 6
    assert json.loads(env["RECONNECT_LAB_POLICY_CODES"]) == "baileys"
    assert spec.ready.kind == "http" and spec.status.is_default
    assert spec.source == REFERENCE_GATEWAY.resolve()


def test_a_minimal_file_gets_the_defaults_and_resolves_cwd_from_its_folder(tmp_path):
    (tmp_path / "app").mkdir()
    spec = load_gateway(write(tmp_path, 'command = ["node", "gw.js", "{sessions}"]\ncwd = "app"\n'))
    assert spec.name == tmp_path.name and spec.cwd == (tmp_path / "app").resolve()
    assert not spec.time_scale and not spec.timeline
    assert spec.supports_scale(1.0) and not spec.supports_scale(0.1)
    assert spec.ready.kind == "status" and spec.status.is_default
    assert spec.argv({"sessions": "a,b"}) == ["node", "gw.js", "a,b"]


@pytest.mark.parametrize("text, key, words", [
    ("", "command", "non-empty list"),
    ('command = "node gw.js"', "command", "non-empty list"),
    ('command = ["node", 3]', "command[1]", "must be a string"),
    ('command = ["node", "{whatsap_url}"]', "command[1]", "unknown placeholder {whatsap_url}"),
    ('command = ["node", "{backoffice_token}"]', "command[1]", "only appear in [env]"),
    ('command = ["node", "{"]', "command[1]", "bad placeholder"),
    ('command = ["node"]\ncolour = "red"', "colour", "unknown key"),
    ('command = ["node"]\ntime_scale = "yes"', "time_scale", "true or false"),
    ('command = ["node"]\nstart_timeout_s = 0', "start_timeout_s", "> 0"),
    ('command = ["node"]\ncwd = "nowhere"', "cwd", "not a directory"),
    ('command = ["node"]\n[env]\nX = 1', "env.X", "must be a string"),
    ('command = ["node"]\n[ready]\nkind = "tcp"', "ready.kind", "must be one of"),
    ('command = ["node"]\n[ready]\nurl = "http://10.0.0.1/h"', "ready.url", "loopback"),
    ('command = ["node"]\n[ready]\nwhen = 1', "ready.when", "unknown key"),
    ('command = ["node"]\n[status]\nkey = "status"', "status.key", "{session_id}"),
    ('command = ["node"]\n[status.values]\ndead = "x"', "status.values", "keys among"),
    ('command = ["node"]\n[status.values]\nactive = "on"\ninactive = "on"', "status.values", "share one"),
])
def test_a_bad_file_names_the_file_and_the_key(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(GatewaySpecError) as caught:
        load_gateway(path)
    message = str(caught.value)
    assert str(path.resolve()) in message and repr(key) in message and words in message


def test_a_missing_or_broken_file_is_named(tmp_path):
    with pytest.raises(GatewaySpecError, match="does not exist"):
        load_gateway(tmp_path / "nope.toml")
    with pytest.raises(GatewaySpecError, match="not valid TOML"):
        load_gateway(write(tmp_path, "command = ["))


def test_a_status_layout_maps_the_gateways_own_words_both_ways(tmp_path):
    spec = load_gateway(write(tmp_path, 'command = ["x"]\n[status]\nkey = "wa:{session_id}"\nfield = "state"\n'
                                        '[status.values]\nactive = "open"\nconnecting = "reconnecting"\n'))
    layout = spec.status
    assert layout.key("s1") == "wa:s1" and layout.hash_field == "state" and not layout.is_default
    assert layout.canonical(b"open") == "active" and layout.canonical("reconnecting") == "connecting"
    assert layout.canonical("inactive") == "inactive" and layout.canonical(None) is None
    assert layout.canonical("weird") == "weird"
    assert layout.stored("active") == "open"
    assert StatusLayout().key("s1") == "rl:status:s1"


def test_fill_leaves_doubled_braces_literal():
    assert fill('{{"url": "{whatsapp_url}"}}', {"whatsapp_url": "ws://h:1"}) == '{"url": "ws://h:1"}'


def test_run_with_only_a_gateway_selects_the_note_scenarios_and_the_matrix():
    from chaos import catalog
    from chaos.cli import build_parser
    from chaos.cli_run import _selected

    args = build_parser().parse_args(["run", "--gateway", str(REFERENCE_GATEWAY)])
    assert _selected(args) == catalog.names("note") + catalog.names("matrix")
    assert _selected(build_parser().parse_args(["run", "S1", "--gateway", str(REFERENCE_GATEWAY)])) == ["flaky_wifi"]


def test_run_refuses_a_bad_gateway_file_with_exit_2(tmp_path, capsys):
    from chaos.cli import main

    assert main(["run", "S1", "--gateway", str(write(tmp_path, 'command = ["x", "{nope}"]'))]) == 2
    assert "unknown placeholder {nope}" in capsys.readouterr().err
    unscaled = write(tmp_path, 'command = ["x"]')
    assert main(["run", "S1", "--scale", "0.1", "--gateway", str(unscaled)]) == 2
    assert "has no time scale" in capsys.readouterr().err
