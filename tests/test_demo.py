"""``uterosynth demo``: the whole chain on the phantom, resumable, with one report."""

from __future__ import annotations

import json

import pytest

from uterosynth.cli import main
from uterosynth.core.errors import UserError
from uterosynth.demo import demo_stages, run_demo


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
    assert "06_samples/metadata.jsonl" in report and "12_audit/audit.html" in report
    assert "11_evaluation/report.html" in report and "10_downstream/results.json" in report
    assert (out / "13_release" / "DATASHEET.md").is_file()
    metrics = json.loads((out / "11_evaluation" / "metrics.json").read_text())
    assert {"synthetic", "reconstruction", "prior", "real_vs_real"} <= set(metrics["sets"])
    assert metrics["downstream"]["task"] == "orientation"
    downstream = json.loads((out / "10_downstream" / "results.json").read_text())
    assert {"real+vae_prior@1:1", "real+diffusion@1:1"} <= {row["protocol"] for row in downstream["summary"]}
    assert "conditioning_fidelity" in metrics["sets"]["synthetic"]["metrics"]
    assert json.loads((out / "05_ldm" / "summary.json").read_text())["steps"] == 20
    calls = []
    again = run_demo(out, quick=True, run_command=lambda stage, args: calls.append(args))
    assert calls == [] and set(again["stages"].values()) == {"done earlier"}


def test_failed_stage_stops_the_demo_and_keeps_finished_stages(tmp_path):
    done = []

    def fake(stage, args):
        if stage.name == "03_autoencoder":
            raise UserError("demo stage 'uterosynth train autoencoder' failed (exit code 2)")
        (tmp_path / stage.name).mkdir()
        (tmp_path / stage.name / stage.done_marker).write_text("x")
        done.append(stage.name)

    with pytest.raises(UserError, match="train autoencoder"):
        run_demo(tmp_path, quick=True, run_command=fake)
    assert done == ["01_phantom", "02_prepared"]
    assert not (tmp_path / "report.html").exists()


def test_unfinished_training_stage_is_resumed(tmp_path):
    seen = []
    (tmp_path / "03_autoencoder").mkdir()  # a run cut short: folder without summary.json

    def fake(stage, args):
        seen.append((stage.name, "--resume" in args))
        (tmp_path / stage.name).mkdir(exist_ok=True)
        (tmp_path / stage.name / stage.done_marker).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / stage.name / stage.done_marker).write_text("x")

    run_demo(tmp_path, quick=True, run_command=fake)
    assert ("03_autoencoder", True) in seen and ("05_ldm", False) in seen
    assert all(not resumed for name, resumed in seen if name != "03_autoencoder")


def test_dims_must_be_2_or_3(tmp_path):
    with pytest.raises(UserError, match="dims: expected 2 or 3"):
        demo_stages(tmp_path, quick=True, dims=4)


def test_3d_demo_uses_the_volume_presets(tmp_path):
    stages = {s.name: s.args for s in demo_stages(tmp_path, quick=False, dims=3)}
    assert any(a.endswith("prepare3d.yaml") for a in stages["02_prepared"])
    assert any(a.endswith("ldm3d_demo.yaml") for a in stages["05_ldm"])
    reader = stages["14_reader_study"]
    assert reader[reader.index("--class-by") + 1] == "none"
