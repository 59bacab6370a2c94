"""Scenarios as TOML files: every built-in round-trips; bad files fail naming the file and the key;
`python -m chaos show/list/run --file/--scenario-module` from the command line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from chaos import catalog
from chaos.scenario_file import (MAX_FILE_BYTES, ScenarioFileError, dump_scenario, load_scenario, load_scenarios,
                                 loads_scenario)

REPO_ROOT = Path(__file__).resolve().parents[2]
S1_TEXT = dump_scenario(catalog.get("S1"))


def chaos_cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaos", *argv], capture_output=True, text=True, timeout=120,
                          cwd=cwd or REPO_ROOT)


@pytest.mark.parametrize("name", catalog.names())
def test_every_built_in_scenario_round_trips_through_its_file(name):
    scenario = catalog.get(name)
    loaded = loads_scenario(dump_scenario(scenario, catalog.explicit_scale(name)), f"{name}.toml")
    assert loaded.scenario == scenario
    assert loaded.default_scale == catalog.explicit_scale(name)
    assert loaded.scenario.scaled(0.1) == scenario.scaled(0.1)


def with_line(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize("edit, message", [
    (("start_s = 1.0", 'start_s = "1.0"'), r"my\.toml: faults\[0\]\.start_s: Input should be a valid number"),
    (("sessions = 1", "sessions = 0"), r"my\.toml: sessions: Input should be greater than or equal to 1"),
    (("sessions = 1", "sessions = 10000000"), r"my\.toml: sessions: Input should be less than or equal to 100000"),
    (("sessions = 1", "sessions = 1\nsesions = 2"), r"my\.toml: sesions: Extra inputs are not permitted"),
    (('kind = "link_down"', 'kind = "link_up"'), r"my\.toml: faults\[0\]: Input tag 'link_up' found using 'kind'"),
    (('final_status = "active"', 'final_status = "asleep"'), r"my\.toml: expected\.final_status: Input should be"),
    (("end_s = 6.0", "end_s = 60.0"), r"my\.toml: scenario 'flaky_wifi': .* ends after duration_s 12\.0"),
    (("end_s = 6.0", "end_s = 0.5"), r"my\.toml: scenario 'flaky_wifi': link-down window .* is empty"),
    (("[expected]", "[policy]\nbase_s = -2\n[expected]"), r"my\.toml: scenario 'flaky_wifi': bad policy_settings"),
    (("duration_s = 12.0", "duration_s = = 12.0"), r"my\.toml: not valid TOML: .*\(at line 6, column 14\)"),
    (('name = "flaky_wifi"', 'name = "../../etc"'), r"my\.toml: name: String should match pattern"),
    (('name = "flaky_wifi"', "name = [1, [2, [3]]]"), r"my\.toml: name: Input should be a valid string"),
    (("faults = [", "faults = 3\nx = ["), r"my\.toml: faults: Input should be a valid list"),
    (("dropped = false", "dropped = false\n[outcome]\nfinal_statuses = []"),
     r"my\.toml: outcome\.final_statuses: List should have at least 1 item"),
])
def test_a_bad_file_fails_naming_the_file_and_the_key_or_line(edit, message):
    with pytest.raises(ScenarioFileError, match=message):
        loads_scenario(with_line(S1_TEXT, *edit), "my.toml")


@pytest.mark.parametrize("text", ["x = " + "[" * 5000 + "]" * 5000, "x = " + "{a = " * 3000 + "1" + "}" * 3000])
def test_deeply_nested_toml_is_refused_not_a_crash(text):
    with pytest.raises(ScenarioFileError, match=r"deep\.toml: arrays or tables nested too deeply"):
        loads_scenario(text, "deep.toml")


@pytest.mark.parametrize("policy, words", [
    ("codes = " + "{a = " * 200 + "1" + "}" * 200, "bad policy_settings"),
    ('base_s = "fast"', "bad policy_settings"),
    ("base_s = [1, 2]", "bad policy_settings"),
    ("max_attempts = 1e400", "bad policy_settings"),
])
def test_a_hostile_policy_table_is_a_clear_error(policy, words):
    with pytest.raises(ScenarioFileError, match=words):
        loads_scenario(with_line(S1_TEXT, "[expected]", f"[policy]\n{policy}\n[expected]"), "my.toml")


def test_chaos_only_actions_are_validated_by_the_scenario_values():
    text = S1_TEXT + ('\n[[actions]]\nkind = "toxic"\nupstream = "kafka"\ntoxic = "latency"\n'
                      'start_s = 1.0\nend_s = 2.0\n')
    with pytest.raises(ScenarioFileError, match=r"my\.toml: unknown upstream 'kafka'; known: whatsapp, redis"):
        loads_scenario(text, "my.toml")
    text = S1_TEXT + ('\n[[actions]]\nkind = "toxic"\nupstream = "redis"\ntoxic = "latency"\nstart_s = 1.0\n'
                      'end_s = 2.0\n[actions.attributes]\nlatency = 1000\ncolour = 3\n')
    with pytest.raises(ScenarioFileError, match=r"toxic 'latency' takes \['jitter', 'latency'\], not \['colour'\]"):
        loads_scenario(text, "my.toml")


def test_files_that_are_not_text_or_too_big_or_missing_fail_clearly(tmp_path):
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"name = \"x\"\n\xff\xfe")
    with pytest.raises(ScenarioFileError, match=r"bin\.toml: not UTF-8 text \(byte 11\)"):
        load_scenario(binary)
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * MAX_FILE_BYTES)
    with pytest.raises(ScenarioFileError, match=r"big\.toml: larger than"):
        load_scenario(big)
    with pytest.raises(ScenarioFileError, match=r"nope\.toml: cannot read"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ScenarioFileError, match=r"no \.toml scenario files in this folder"):
        load_scenarios(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path)


def test_a_folder_loads_every_file_in_name_order_and_refuses_a_name_used_twice(tmp_path):
    (tmp_path / "b.toml").write_text(S1_TEXT.replace('name = "flaky_wifi"', 'name = "wifi_b"'))
    (tmp_path / "a.toml").write_text(S1_TEXT.replace('name = "flaky_wifi"', 'name = "wifi_a"'))
    (tmp_path / "notes.txt").write_text("not a scenario")
    assert [f.scenario.name for f in load_scenarios(tmp_path)] == ["wifi_a", "wifi_b"]
    (tmp_path / "c.toml").write_text(S1_TEXT.replace('name = "flaky_wifi"', 'name = "wifi_a"'))
    with pytest.raises(ScenarioFileError, match=r"c\.toml: scenario name 'wifi_a' is also used by .*a\.toml"):
        load_scenarios(tmp_path)


@pytest.mark.slow  # python -m chaos in subprocesses: seconds each on a busy machine
def test_show_prints_a_file_that_run_and_list_accept(tmp_path):
    shown = chaos_cli("show", "matrix_redis_latency")
    assert shown.returncode == 0, shown.stderr
    assert loads_scenario(shown.stdout).scenario == catalog.get("matrix_redis_latency")
    mine = tmp_path / "mine.toml"
    mine.write_text(shown.stdout.replace('name = "matrix_redis_latency"', 'name = "my_latency"'))
    listed = chaos_cli("list", "--group", "file", "--file", str(mine))
    assert listed.returncode == 0, listed.stderr
    assert re.match(r"my_latency\s+file\s+×0\.1\s+1\.6 s\s+1 session\(s\)\s+final active", listed.stdout)
    clash = chaos_cli("list", "--file", str(tmp_path / "mine.toml"), "--file", str(tmp_path))
    assert clash.returncode == 2 and "already known" in clash.stderr


@pytest.mark.slow  # python -m chaos in subprocesses: seconds each on a busy machine
def test_run_with_a_bad_file_or_module_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(S1_TEXT.replace("sessions = 1", "sessions = -1"))
    for argv, text in ((["run", "--file", str(bad)], "bad.toml: sessions: Input should be greater than"),
                       (["run", "S1", "--scenario-module", "no_such_team.scenarios"],
                        "cannot import scenario module 'no_such_team.scenarios': ModuleNotFoundError"),
                       (["show", "nope"], "unknown chaos scenario 'nope'")):
        done = chaos_cli(*argv, cwd=tmp_path)
        assert done.returncode == 2, done
        assert done.stderr.count("\n") == 1 and text in done.stderr, done.stderr


def readme_example() -> tuple[str, str]:
    """The README's "Adding your own scenario" module: its path comment and its code, as written."""
    text = (REPO_ROOT / "chaos" / "README.md").read_text(encoding="utf-8")
    section = text.split("## Adding your own scenario", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    path = re.match(r"# (\S+\.py)\n", code)
    assert path, "the example starts with a comment naming its file"
    return path.group(1), code


@pytest.mark.slow  # python -m chaos in subprocesses: seconds each on a busy machine
def test_the_readmes_own_scenario_module_loads_from_the_command_line(tmp_path):
    path, code = readme_example()
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(code)
    module = path.removesuffix(".py").replace("/", ".")
    listed = chaos_cli("list", "--scenario-module", module, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^slow_backoffice_during_outage\s+extra\s+×0\.1\s+1\.4 s", listed.stdout, re.M), listed.stdout
    shown = chaos_cli("show", "slow_backoffice_during_outage", "--scenario-module", module, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert loads_scenario(shown.stdout).default_scale == 0.1


@pytest.mark.parametrize("kind", ["toxic", "proxy_down", "restart_redis", "kill_service", "account_deactivated",
                                  "standin_refusing", "keepalive_silence"])
def test_a_bad_field_of_any_action_kind_is_named_by_index_and_key(kind):
    text = S1_TEXT + f'\n[[actions]]\nkind = "{kind}"\nat_s = "soon"\nstart_s = "soon"\n'
    bad_time = r"^my\.toml: .*actions\[0\]\.(at_s|start_s): Input should be a valid number"
    with pytest.raises(ScenarioFileError, match=bad_time):
        loads_scenario(text, "my.toml")
