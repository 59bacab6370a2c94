"""One policy file shape: what the simulator writes, the simulator and the service read alike."""

import pytest

from service.cli import main as service_main
from service.config import load_settings
from service.core import build_policy
from service.core.presets import PRESETS
from sim.flags import load_toml
from sim.params import ModelParams, ParamError
from sim.policy_file import write_policy_file

TOKEN_ENV = {"RECONNECT_LAB_BACKOFFICE_TOKEN": "t0ken", "RECONNECT_LAB_SESSIONS": "s0"}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_file_means_the_same_policy_to_sim_and_service(name, tmp_path):
    # retrying at once forever would stop the model's clock (a clear error, below): cap it here
    cap = {"max_attempts": 20} if name == "baileys_readme" else {}
    policy = build_policy({"preset": name, "max_elapsed_s": 90.0, **cap})
    path = write_policy_file(tmp_path / f"{name}.toml", policy, ["a test"])
    assert ModelParams(**load_toml(path)).policy() == policy
    assert load_settings(toml_path=path, environ=TOKEN_ENV).build_policy() == policy


def test_service_check_config_accepts_a_written_policy_file(tmp_path, monkeypatch, capsys):
    path = write_policy_file(tmp_path / "policy.toml", build_policy({"preset": "grpc", "max_attempts": 9}))
    monkeypatch.setenv("RECONNECT_LAB_BACKOFFICE_TOKEN", "t0ken")
    monkeypatch.setenv("RECONNECT_LAB_SESSIONS", "s0")
    assert service_main(["--config", str(path), "--check-config"]) == 0
    assert '"max_attempts": 9' in capsys.readouterr().out
    monkeypatch.delenv("RECONNECT_LAB_BACKOFFICE_TOKEN")
    monkeypatch.delenv("RECONNECT_LAB_SESSIONS")
    assert service_main(["--config", str(path), "--check-config"]) == 0, "the file alone checks"
    printed = capsys.readouterr()
    assert '"max_attempts": 9' in printed.out and "still to give before running: sessions, backoffice_token" in printed.err


def test_a_preset_name_in_the_policy_table_is_read_by_both(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[policy]\npreset = "signalr"\nmax_elapsed_s = 20\n', encoding="utf-8")
    expected = build_policy({"preset": "signalr", "max_elapsed_s": 20})
    assert ModelParams(**load_toml(path)).policy() == expected
    assert load_settings(toml_path=path, environ=TOKEN_ENV).build_policy() == expected


def test_policy_keys_the_model_cannot_hold_are_named(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[policy]\ntime_scale = 0.5\n", encoding="utf-8")
    with pytest.raises(ParamError, match=r"\[policy\]: policy key\(s\) \['time_scale'\] are not simulated"):
        load_toml(path)


def test_the_model_refuses_a_policy_that_would_stop_its_clock(tmp_path):
    path = write_policy_file(tmp_path / "b.toml", build_policy({"preset": "baileys_readme"}))
    with pytest.raises(ParamError, match="retries at once forever"):
        ModelParams(**load_toml(path))
