"""Metastability: immediate reconnects keep WhatsApp's handshakes saturated after the outage ends."""

import pytest

from sim.cli import main
from sim.metastability import WORLD, study
from sim.params import ModelParams

pytestmark = pytest.mark.sim


def test_immediate_reconnects_never_recover_where_the_notes_backoff_does():
    # a fifth of the default world: 400 sessions against 40 handshakes/s
    data = study(ModelParams(**{**WORLD, "sessions": 400, "whatsapp_handshakes_per_s": 40.0, "until_s": 150.0}))
    baileys, note = data["runs"]["baileys_readme"], data["runs"]["note"]
    after_outage = int(data["outage_ends_s"] / data["bin_s"]) + 1
    assert baileys["recovered"] == 0 and baileys["reconnecting"] == 400
    assert sum(baileys["attempts"][after_outage:]) > 10 * 400  # still hammering 120 s later
    assert note["recovered"] == 400 and note["all_back_by_s"] < 100
    assert sum(note["opened"][after_outage:]) == 400


def test_the_command_writes_the_chart(tmp_path, capsys):
    assert main(["metastability", "--out", str(tmp_path), "--sessions", "200",
                 "--whatsapp-handshakes-per-s", "20", "--until-s", "90"]) == 0
    assert (tmp_path / "useful_work.png").exists() and (tmp_path / "metastability.json").exists()
    assert "baileys_readme" in capsys.readouterr().out
