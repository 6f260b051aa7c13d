"""``uterosynth demo``: the whole chain on the phantom, resumable, with one report."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from markupsafe import escape

from uterosynth.cli import main
from uterosynth.core.errors import DataError, UserError
from uterosynth.demo import QUICK_NOTICE, demo_stages, run_demo
from uterosynth.pipeline import PipelineFailed
from uterosynth.pipeline_report import MAX_REPORT_BYTES


def _folders(out, *, quick: bool = True, dims: int = 2) -> dict[str, str]:
    """Stage name (``judge``) → its numbered folder (``09_judge``)."""
    return {s.name.split("_", 1)[1]: s.name for s in demo_stages(out, quick=quick, dims=dims)}


@pytest.mark.slow
@pytest.mark.parametrize("dims", [2, 3])
def test_quick_demo_runs_every_stage_and_resumes(tmp_path, capsys, one_thread, dims):
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as info:
        main(["demo", "--quick", "--dims", str(dims), "--out", str(out), "--json"])
    assert info.value.code in (0, None)
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    f = _folders(out, dims=dims)
    for stage in demo_stages(out, quick=True, dims=dims):
        assert (out / stage.name / stage.done_marker).is_file(), stage.name
        assert isinstance(summary["stages"][stage.name], float)
    # a smoke run says so: on the console, in demo.json and at the top of the report
    assert " ".join(QUICK_NOTICE.split()[:8]) in " ".join(captured.err.split())
    assert summary["smoke_run"] == QUICK_NOTICE
    report = (out / "report.html").read_text()
    assert str(escape(QUICK_NOTICE)) in report and report.index('id="notice"') < report.index('id="answer"')
    assert len(report.encode()) < MAX_REPORT_BYTES
    answer = report[report.index('id="answer"'):report.index("</section>")]
    assert "Samples per class" in answer and "Wilson 95 % interval" in answer and "noise floor" in answer
    assert f"{f['samples']}/metadata.jsonl" in report and f"{f['audit']}/audit.html" in report
    assert f"{f['evaluation']}/report.html" in report and f"{f['downstream']}/results.json" in report
    # the release went out with force, and its datasheet says the samples failed the bar
    datasheet = (out / f["release"] / "DATASHEET.md").read_text()
    assert "FAILED ITS FIDELITY BAR" in datasheet and "made with <code>--force</code>" in answer
    metrics = json.loads((out / f["evaluation"] / "metrics.json").read_text())
    assert {"synthetic", "reconstruction", "prior", "real_vs_real"} <= set(metrics["sets"])
    assert metrics["downstream"]["task"] == "orientation"
    assert "conditioning_fidelity" in metrics["sets"]["synthetic"]["metrics"]
    # the 3D demo's judge is the 2D one, shown each volume's central sagittal slice
    assert metrics["classifier"]["view"] == ("central sagittal slice" if dims == 3 else "whole item")
    # and, like a 2D model's samples, slice by slice: its five central slices, intervals over volumes
    assert ("evaluation_slices" in f) == (dims == 3)
    if dims == 3:
        sliced = json.loads((out / f["evaluation_slices"] / "metrics.json").read_text())
        assert sliced["reference"]["volume_slices"]["k"] == 5 and sliced["reference"]["dims"] == 2
        fidelity = sliced["sets"]["synthetic"]["metrics"]["conditioning_fidelity"]["details"]["per_class"]
        assert all(c["n"] == 5 * c["units"] for c in fidelity.values())
        assert {"synthetic", "reconstruction", "prior", "real_vs_real"} <= set(sliced["sets"])
    # the judge and the encoder saw none of the evaluated subjects, and every check could be made
    overlap = metrics["subject_overlap"]
    assert overlap["total"] == 0 and overlap["checks"] and all(c["overlap"] == 0 for c in overlap["checks"])
    assert {c["model"].split()[0] for c in overlap["checks"]} == {"judge", "extractor"}
    downstream = json.loads((out / f["downstream"] / "results.json").read_text())
    assert {"real+vae_prior@1:1", "real+diffusion@1:1"} <= {row["protocol"] for row in downstream["summary"]}
    assert json.loads((out / f["diffusion"] / "summary.json").read_text())["steps"] == 20
    # the model's samples carry the training geometry: the dataset's affine, the items' spacing
    prepared = json.loads((out / f["prepared"] / "dataset.json").read_text())
    sample = nib.load(str(next((out / f["samples"] / "items").glob("*.nii.gz"))))
    item = nib.load(str(next((out / f["prepared"] / "items").glob("*.nii.gz"))))
    assert np.array_equal(sample.affine, np.asarray(prepared["affine"], dtype=np.float32).astype(np.float64))
    assert sample.header.get_zooms() == item.header.get_zooms() and sample.shape == item.shape
    calls = []
    again = run_demo(out, quick=True, dims=dims, run_command=lambda stage, args: calls.append(args))
    assert calls == [] and set(again["stages"].values()) == {"done earlier"}


def test_failed_stage_stops_the_demo_and_keeps_finished_stages(tmp_path):
    done = []

    def fake(stage, args):
        if stage.name == "03_autoencoder":
            raise DataError("demo stage 'uterosynth train autoencoder' failed (exit code 2)")
        (tmp_path / stage.name).mkdir()
        (tmp_path / stage.name / stage.done_marker).write_text("x")
        done.append(stage.name)

    with pytest.raises(PipelineFailed, match="train autoencoder") as info:
        run_demo(tmp_path, quick=True, run_command=fake)
    assert done == ["01_phantom", "02_prepared"] and set(info.value.failures) == {"03_autoencoder"}
    assert "Stage 03_autoencoder failed:" in (tmp_path / "report.html").read_text()
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["failed"] == {"03_autoencoder": "demo stage 'uterosynth train autoencoder' failed (exit code 2)"}


def test_unfinished_training_stage_is_resumed(tmp_path):
    seen = []
    (tmp_path / "03_autoencoder").mkdir()  # a run cut short: folder without summary.json

    def fake(stage, args):
        seen.append((stage.name, "--resume" in args))
        (tmp_path / stage.name).mkdir(exist_ok=True)
        (tmp_path / stage.name / stage.done_marker).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / stage.name / stage.done_marker).write_text("x")

    run_demo(tmp_path, quick=True, run_command=fake)
    assert ("03_autoencoder", True) in seen and ("04_diffusion", False) in seen
    assert all(not resumed for name, resumed in seen if name != "03_autoencoder")


def test_dims_must_be_2_or_3(tmp_path):
    with pytest.raises(UserError, match="dims: expected 2 or 3"):
        demo_stages(tmp_path, quick=True, dims=4)


def test_3d_demo_uses_the_volume_presets(tmp_path):
    stages = {s.name: s.args for s in demo_stages(tmp_path, quick=False, dims=3)}
    assert any(a.endswith("prepare3d.yaml") for a in stages["02_prepared"])
    folders = _folders(tmp_path, quick=False, dims=3)
    assert any(a.endswith("ddpm3d_demo64.yaml") for a in stages[folders["diffusion"]])
    assert "latents" not in folders  # a pixel-space model: no latent cache
    reader = stages[folders["reader_study"]]
    assert reader[reader.index("--class-by") + 1] == "none"
    # the judge is the 2D demo's: trained on the reference volumes' central slices in the volumes'
    # in-plane window (128 mm, prepare2d.yaml's) and grid
    slices, judge = stages[folders["prepared_reference_slices"]], stages[folders["judge"]]
    assert any(a.endswith("prepare2d.yaml") for a in slices) and "preprocess.roi.window_mm=[128.0,128.0]" in slices
    assert "preprocess.roi.window_mm=[128.0,128.0,64.0]" in stages[folders["prepared"]]
    assert judge[judge.index("--data") + 1].endswith(folders["prepared_reference_slices"])
    assert "prepared_reference_slices" not in _folders(tmp_path, quick=False, dims=2)
