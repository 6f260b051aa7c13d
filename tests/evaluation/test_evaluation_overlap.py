"""``evaluate`` refuses a judge or extractor trained on evaluated subjects or on a generator's subjects.

Two cohorts of other subjects (A: ``S…``, B: ``T…``), a tiny diffusion model trained on A and
sampled, and a judge trained on each cohort (train + val): a judge of B on reference B sees its
own subjects; a judge of A on A's generator's samples sees the generator's training subjects.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import IdentityAutoencoder, make_prepared_dataset
from uterosynth.cli import main
from uterosynth.core.config import load_config
from uterosynth.core.errors import DataError
from uterosynth.data.manifest import PreparedDataset
from uterosynth.data.subjects import training_subjects
from uterosynth.data.synthetic import SyntheticSet, generator_subjects, source_subjects
from uterosynth.downstream.config import JudgeConfig
from uterosynth.downstream.judge import train_judge
from uterosynth.evaluation.baselines import (
    AutoencoderAdapter,
    make_class_prior_baseline,
    make_reconstruction_baseline,
)
from uterosynth.evaluation.config import EncoderTrainConfig, EvaluationConfig
from uterosynth.evaluation.contrastive import train_encoder
from uterosynth.evaluation.runner import evaluate
from uterosynth.sampling.generate import SampleConfig, generate
from uterosynth.training.diffusion import DiffusionTrainConfig, train_diffusion

FAST = {"frd": {"enabled": False}, "bootstrap": {"n": 10}, "kid": {"subsets": 2, "bootstrap_subsets": 1},
        "msssim": {"pairs": 20}}
FAST_CLI = ["--set", "bootstrap.n=10", "--set", "kid.subsets=2", "--set", "kid.bootstrap_subsets=1", "--set",
            "msssim.pairs=20", "--set", "frd.enabled=false", "--extractor-kind", "torchscript"]


def _extractor(path: Path) -> Path:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 1, 16, 16)), str(path))
    return path


def _judge(data: Path, out: Path) -> Path:
    cfg = JudgeConfig.model_validate({"classifier": {"image_size": 16, "widen_factor": 0.0625},
                                      "train": {"max_epochs": 1, "min_epochs": 1, "min_samples_per_epoch": 16},
                                      "augment_training": False})
    train_judge(data, cfg, out)
    return out


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("overlap")
    a = make_prepared_dataset(root / "A", shape=(16, 16), subject_prefix="S")
    b = make_prepared_dataset(root / "B", shape=(16, 16), subject_prefix="T", seed=1)
    cfg = load_config(DiffusionTrainConfig, "configs/ddpm2d_cpu.yaml", overrides={"train.steps": 2, "train.val_every": 100})
    train_diffusion(cfg, a, root / "gen_A", progress=False)
    generate(root / "gen_A", SampleConfig.model_validate({
        "sampler": {"name": "ddim", "steps": 2}, "runtime": {"device": "cpu", "batch_size": 4}, "per_class": 1,
        "conditions": {"field_strength": "3T"}}), root / "syn_A")
    return {"A": a, "B": b, "syn": root / "syn_A", "judge_A": _judge(a, root / "judge_A"),
            "judge_B": _judge(b, root / "judge_B"), "ex": _extractor(root / "ex.pt")}


def _cfg(c: dict[str, Path], **extra) -> EvaluationConfig:
    return EvaluationConfig.model_validate({**FAST, "extractor": {"kind": "torchscript", "path": str(c["ex"])}, **extra})


def _one_line(err: DataError) -> str:
    message = str(err)
    assert "\n" not in message and "allow_overlap" in message and "--allow-overlap" not in message
    return message


@pytest.mark.slow
def test_sampled_set_records_its_generators_training_subjects(cohorts):
    record = generator_subjects(SyntheticSet.load(cohorts["syn"]).info)
    train = PreparedDataset.load(cohorts["A"], "train")
    assert record is not None and record["ids"] == training_subjects(train, ("train",))["ids"]
    assert not set(train.subjects()) & set(json.dumps(record).split('"'))  # hashes only


@pytest.mark.slow
def test_judge_trained_on_the_reference_subjects_is_refused(cohorts, tmp_path):
    c = cohorts
    cfg = _cfg(c, classifier={"path": str(c["judge_B"])})
    with pytest.raises(DataError) as info:
        evaluate(f"{c['B']}:train", c["syn"], tmp_path / "out", cfg)
    assert _one_line(info.value).startswith(
        f"judge {c['judge_B']} vs the real set 'reference' ({c['B']}:train): 4 of 4 evaluated subjects")
    assert not (tmp_path / "out").exists()

    metrics = evaluate(f"{c['B']}:train", c["syn"], tmp_path / "out", cfg.model_copy(update={"allow_overlap": True}))
    overlap = metrics["subject_overlap"]
    assert overlap["allow_overlap"] is True and overlap["total"] == 4
    judged = {ch["against"].split(" (")[0]: ch["overlap"] for ch in overlap["checks"] if ch["model"].startswith("judge")}
    assert judged == {"the real set 'reference'": 4, "the real set 'real_vs_real'": 0,
                      "the generator of the synthetic set 'synthetic'": 0}
    assert metrics["warnings"][0] == (f"subject overlap allowed (allow_overlap): judge {c['judge_B']} shares 4 of 4 "
                                      f"subjects with the real set 'reference' ({c['B']}:train)")
    assert "subject overlap allowed (allow_overlap)" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.slow
def test_judge_trained_on_the_generators_subjects_is_refused(cohorts, tmp_path):
    c = cohorts
    with pytest.raises(DataError) as info:
        evaluate(f"{c['B']}:train", c["syn"], tmp_path / "out", _cfg(c, classifier={"path": str(c["judge_A"])}))
    assert _one_line(info.value).startswith(
        f"judge {c['judge_A']} vs the generator of the synthetic set 'synthetic' ({c['syn']}): 4 of its 4 subjects")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_disjoint_models_pass_and_record_zero_overlaps(cohorts, tmp_path):
    c = cohorts
    metrics = evaluate(f"{c['A']}:train", c["syn"], tmp_path / "out", _cfg(c, classifier={"path": str(c["judge_B"])}))
    overlap = metrics["subject_overlap"]
    assert overlap["allow_overlap"] is False and overlap["total"] == 0
    judged = [ch for ch in overlap["checks"] if ch["model"].startswith("judge")]
    assert [ch["overlap"] for ch in judged] == [0, 0, 0] and [ch["of"] for ch in judged] == [4, 4, 1]
    # the plain TorchScript extractor records no subjects: listed as unchecked, never as 0
    unchecked = [ch for ch in overlap["checks"] if ch["model"].startswith("extractor")]
    assert unchecked and all(ch["overlap"] is None and ch["reason"] for ch in unchecked)
    assert not any(w.startswith("subject overlap") for w in metrics["warnings"])


@pytest.mark.slow
def test_encoder_trained_on_the_reference_is_refused_also_as_torchscript(cohorts, tmp_path):
    c = cohorts
    train_encoder(f"{c['B']}:train", tmp_path / "enc", EncoderTrainConfig.model_validate(
        {"image_size": 16, "epochs": 1, "batch_size": 4, "channels": [4, 4, 8, 8]}))
    pt = tmp_path / "enc" / "encoder.pt"
    for kind, path in (("encoder", tmp_path / "enc"), ("torchscript", pt)):
        cfg = EvaluationConfig.model_validate({**FAST, "extractor": {"kind": kind, "path": str(path)}})
        with pytest.raises(DataError) as info:
            evaluate(f"{c['B']}:train", c["syn"], tmp_path / "out", cfg)
        assert _one_line(info.value).startswith(
            f"extractor {pt} vs the real set 'reference' ({c['B']}:train): 4 of 4 evaluated subjects")
    assert not (tmp_path / "out").exists()


def test_baseline_sets_record_their_generator_and_reconstructed_subjects(tmp_path):
    c = {"A": make_prepared_dataset(tmp_path / "A", shape=(16, 16)),
         "B": make_prepared_dataset(tmp_path / "B", shape=(16, 16), subject_prefix="T")}
    ae_record = training_subjects(PreparedDataset.load(c["A"]), ("train",))
    adapter = AutoencoderAdapter(IdentityAutoencoder(), latent_shape=(1, 16, 16), training_subjects=ae_record)
    recon = SyntheticSet.load(make_reconstruction_baseline(adapter, f"{c['B']}:val", tmp_path / "recon"))
    assert generator_subjects(recon.info) == ae_record
    assert source_subjects(recon.info)["ids"] == training_subjects(PreparedDataset.load(c["B"]), ("val",))["ids"]
    prior = SyntheticSet.load(make_class_prior_baseline(adapter, f"{c['B']}:train", ["orientation"], 4,
                                                        tmp_path / "prior"))
    fitted = training_subjects(PreparedDataset.load(c["B"]), ("train",))["ids"]
    assert generator_subjects(prior.info)["ids"] == sorted(set(ae_record["ids"]) | set(fitted))
    assert [p["of"] for p in generator_subjects(prior.info)["parts"]] == ["autoencoder", "class_prior"]


@pytest.mark.slow
def test_judge_trained_on_reconstructed_real_subjects_is_refused(cohorts, tmp_path):
    c = cohorts
    recon = make_reconstruction_baseline(AutoencoderAdapter(IdentityAutoencoder(), latent_shape=(1, 16, 16)),
                                         f"{c['B']}:val", tmp_path / "recon")
    with pytest.raises(DataError) as info:
        evaluate(f"{c['A']}:train", None, tmp_path / "out", _cfg(c, classifier={"path": str(c["judge_B"])}),
                 baselines={"recon": recon})
    assert _one_line(info.value).startswith(
        f"judge {c['judge_B']} vs the real subjects of the baseline set 'recon' ({recon}): 1 of its 1 subjects")


@pytest.mark.slow
def test_cli_refuses_in_one_line_and_records_an_allowed_overlap(cohorts, tmp_path, capsys):
    c = cohorts
    args = ["evaluate", "--real", f"{c['B']}:train", "--synthetic", str(c["syn"]), "--classifier", str(c["judge_A"]),
            "--extractor", str(c["ex"]), "--out", str(tmp_path / "out"), *FAST_CLI]
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1
    assert str(c["judge_A"]) in err[0] and "4 of its 4 subjects" in err[0] and "allow_overlap" in err[0]
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as info:
        main([*args, "--allow-overlap"])
    assert info.value.code in (0, None)
    overlap = json.loads((tmp_path / "out" / "metrics.json").read_text())["subject_overlap"]
    assert overlap["allow_overlap"] is True and overlap["total"] == 4
    assert np.count_nonzero([ch["overlap"] for ch in overlap["checks"] if ch["overlap"] is not None]) == 1
