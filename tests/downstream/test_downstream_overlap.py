"""``downstream`` refuses a synthetic set whose generator saw, or which reconstructs, a test subject."""

from __future__ import annotations

import json

import pytest
from downstream_fixtures import bar_arrays, make_bar_dataset

from conftest import IdentityAutoencoder
from uterosynth.cli import main
from uterosynth.core.errors import DataError
from uterosynth.data.manifest import PreparedDataset
from uterosynth.data.subjects import training_subjects
from uterosynth.data.synthetic import write_synthetic_set
from uterosynth.downstream.config import DownstreamConfig
from uterosynth.downstream.experiment import REPORT_FILE, RESULTS_FILE, run_downstream
from uterosynth.evaluation.baselines import AutoencoderAdapter, make_reconstruction_baseline

TINY = {"budgets": [1.0], "n_seeds": 1, "classifier": {"image_size": 16, "widen_factor": 0.0625},
        "train": {"max_epochs": 1, "min_samples_per_epoch": 16, "batch_size": 16},
        "protocols": {"augment": False, "ratios": ["1:1"], "synthetic_only": "none"}}


def _sampled(real, out, splits):
    """A labelled set as ``uterosynth sample`` records it: its generator was trained on ``splits`` of ``real``."""
    arrays, cond = bar_arrays(8, (16, 16))
    record = training_subjects(PreparedDataset.load(real), splits)
    return write_synthetic_set(out, arrays, cond, info={"model": {"path": "gen", "training_subjects": record}})


@pytest.fixture
def real(tmp_path):
    return make_bar_dataset(tmp_path / "real", shape=(16, 16), items_per_subject=1)


def _message(err: DataError) -> str:
    message = str(err)
    assert "\n" not in message and "allow_overlap" in message and "--allow-overlap" not in message
    return message


def test_generator_trained_on_test_subjects_is_refused(tmp_path, real):
    leaky = _sampled(real, tmp_path / "leaky", ("train", "test"))
    with pytest.raises(DataError) as info:
        run_downstream(real, {"diffusion": leaky}, DownstreamConfig.model_validate(TINY), tmp_path / "out")
    assert _message(info.value).startswith(f"the generator of synthetic set 'diffusion' ({leaky}) vs the real test "
                                           f"set {real}:test: 4 of 4 evaluated subjects")
    assert not (tmp_path / "out").exists()


def test_reconstructions_of_test_subjects_are_refused(tmp_path, real):
    recon = make_reconstruction_baseline(AutoencoderAdapter(IdentityAutoencoder(), latent_shape=(1, 16, 16)), f"{real}:test",
                                         tmp_path / "recon")
    with pytest.raises(DataError) as info:
        run_downstream(real, {"diffusion": _sampled(real, tmp_path / "clean", ("train",)), "recon": recon},
                       DownstreamConfig.model_validate(TINY), tmp_path / "out")
    assert _message(info.value).startswith(f"synthetic set 'recon' ({recon}), reconstructions of real subjects, vs "
                                           f"the real test set {real}:test: 4 of 4 evaluated subjects")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_allowed_overlap_is_recorded_and_warned(tmp_path, real):
    sets = {"diffusion": _sampled(real, tmp_path / "clean", ("train",)),
            "leaky": _sampled(real, tmp_path / "leaky", ("train", "test"))}
    cfg = DownstreamConfig.model_validate({**TINY, "allow_overlap": True})
    results = run_downstream(real, sets, cfg, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / RESULTS_FILE).read_text())
    overlap = on_disk["subject_overlap"]
    assert overlap == results["subject_overlap"] and overlap["allow_overlap"] is True and overlap["total"] == 4
    assert [(c["model"].split(" (")[0], c["overlap"], c["of"]) for c in overlap["checks"]] == [
        ("the generator of synthetic set 'diffusion'", 0, 4), ("the generator of synthetic set 'leaky'", 4, 4)]
    assert on_disk["warnings"] == [f"subject overlap allowed (allow_overlap): the generator of synthetic set 'leaky' "
                                   f"({sets['leaky']}) shares 4 of 4 subjects with the real test set {real}:test"]
    assert "subject overlap allowed" in (tmp_path / "out" / REPORT_FILE).read_text()


def test_cli_refuses_in_one_line(tmp_path, real, capsys):
    leaky = _sampled(real, tmp_path / "leaky", ("train", "test"))
    with pytest.raises(SystemExit) as info:
        main(["downstream", "--real", str(real), "--synthetic", f"diffusion={leaky}", "--out", str(tmp_path / "o"),
              "--quick"])
    err = [line for line in capsys.readouterr().err.splitlines() if "━" not in line]  # less the progress bar
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert f"synthetic set 'diffusion' ({leaky})" in err[0] and "4 of 4 evaluated subjects" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaky", "real"]  # nothing half-written
