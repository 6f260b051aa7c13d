"""``uterosynth demo``: the whole chain on the phantom, resumable, with one report."""

from __future__ import annotations

import json

import pytest

from uterosynth.cli import main
from uterosynth.demo import demo_stages, run_demo
from uterosynth.errors import UserError


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as info:
        main(["demo", "--quick", "--out", str(out), "--json"])
    assert info.value.code in (0, None)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for stage in demo_stages(out, quick=True):
        assert (out / stage.name / stage.done_marker).is_file(), stage.name
        assert isinstance(summary["stages"][stage.name], float)
    report = (out / "report.html").read_text()
    assert "06_samples/metadata.jsonl" in report and "07_audit/audit.html" in report
    assert (out / "08_release" / "DATASHEET.md").is_file()
    calls = []
    again = run_demo(out, quick=True, run_command=calls.append)
    assert calls == [] and set(again["stages"].values()) == {"done earlier"}


def test_failed_stage_stops_the_demo_and_keeps_finished_stages(tmp_path):
    done = []

    def fake(args):
        stage = next(s for s in demo_stages(tmp_path, quick=True) if tuple(args) == s.args)
        if stage.name == "03_autoencoder":
            raise UserError("demo stage 'uterosynth train autoencoder' failed (exit code 2)")
        (tmp_path / stage.name).mkdir()
        (tmp_path / stage.name / stage.done_marker).write_text("x")
        done.append(stage.name)

    with pytest.raises(UserError, match="train autoencoder"):
        run_demo(tmp_path, quick=True, run_command=fake)
    assert done == ["01_phantom", "02_prepared"]
    assert not (tmp_path / "report.html").exists()
