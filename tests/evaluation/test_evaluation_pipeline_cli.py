"""``evaluate baselines`` from a trained autoencoder, and the downstream section in the report."""

import json

import pytest

from uterosynth.cli import main
from uterosynth.data.manifest import PreparedDataset
from uterosynth.data.synthetic import SyntheticSet

FAST = ["--set", "bootstrap.n=10", "--set", "kid.subsets=2", "--set", "kid.bootstrap_subsets=1", "--set",
        "msssim.pairs=20", "--set", "frd.enabled=false", "--extractor-kind", "torchscript"]


def _run(args):
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code or 0


def _downstream_folder(path):
    path.mkdir()
    (path / "report_section.html").write_text("<section id='downstream'><h2>Downstream utility</h2>MARK</section>")
    diff = {"mean": 0.05, "ci_low": 0.01, "ci_high": 0.09}
    (path / "results.json").write_text(json.dumps({"task": "orientation", "summary": [
        {"protocol": "real", "budget": 0.05, "balanced_accuracy": {"mean": 0.6}, "diff_vs_real": None},
        {"protocol": "diffusion_1:1", "budget": 0.05, "balanced_accuracy": {"mean": 0.65},
         "diff_vs_real": {"balanced_accuracy": diff}}]}))
    return path


@pytest.mark.slow
def test_baselines_from_checkpoint_then_report_with_downstream(tmp_path, prepared_2d, capsys):
    ae = tmp_path / "ae"
    assert _run(["train", "autoencoder", "--config", "configs/ae2d_cpu.yaml", "--data", str(prepared_2d),
                 "--out", str(ae)]) == 0
    meta = json.loads(next(ae.rglob("model.json")).read_text())
    train_subjects = PreparedDataset.load(prepared_2d, "train").subjects()
    assert meta["training_subjects"]["splits"] == ["train"] and len(meta["training_subjects"]["ids"]) == len(
        train_subjects) and not set(train_subjects) & set(meta["training_subjects"]["ids"])  # hashed, not raw
    capsys.readouterr()
    assert _run(["evaluate", "baselines", "--autoencoder", str(ae), "--real", f"{prepared_2d}:train",
                 "--out", str(tmp_path / "leak")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{len(train_subjects)} of {len(train_subjects)} evaluated subjects" in err[0]
    assert _run(["evaluate", "baselines", "--autoencoder", str(ae), "--real", f"{prepared_2d}:train",
                 "--n-prior", "2", "--allow-overlap", "--out", str(tmp_path / "leak")]) == 0
    capsys.readouterr()
    assert _run(["evaluate", "baselines", "--autoencoder", str(ae), "--real", f"{prepared_2d}:test",
                 "--n-prior", "5", "--prior-by", "orientation", "--out", str(tmp_path / "base"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    recon, prior = SyntheticSet.load(summary["reconstruction"]), SyntheticSet.load(summary["prior"])
    n_test = len(PreparedDataset.load(prepared_2d, "test"))
    assert len(recon.records) == n_test and len(prior.records) == 5
    class_prior = SyntheticSet.load(summary["class_prior"])
    assert [r["condition"] for r in class_prior.records] == [
        {"orientation": c} for c in ["AVAF", "AVRF", "RVAF", "RVRF", "AVAF"]]
    assert class_prior.info["fit"].endswith(":train") and class_prior.info["model_hash"] == recon.info["model_hash"]
    assert recon.info["kind"] == "reconstruction" and recon.info["model_hash"]
    assert recon.records[0]["condition"]["orientation"]
    assert prior.stack().shape[1:] == recon.stack().shape[1:]

    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 1, 16, 16)), str(tmp_path / "ex.pt"))
    down = _downstream_folder(tmp_path / "down")
    assert _run(["evaluate", "--real", f"{prepared_2d}:train", "--synthetic", summary["reconstruction"],
                 "--baseline", f"prior={summary['prior']}", "--extractor", str(tmp_path / "ex.pt"),
                 "--downstream", str(down), "--out", str(tmp_path / "ev"), *FAST]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(metrics["sets"]) == {"synthetic", "prior", "real_vs_real"}
    assert metrics["downstream"]["gains"] == [{"protocol": "diffusion_1:1", "budget": 0.05, "balanced_accuracy": 0.65,
                                               "diff_vs_real": {"mean": 0.05, "ci_low": 0.01, "ci_high": 0.09}}]
    assert "MARK" in (tmp_path / "ev" / "report.html").read_text()


def test_downstream_folder_must_be_complete(tmp_path, prepared_2d, capsys):
    (tmp_path / "down").mkdir()
    assert _run(["evaluate", "--real", str(prepared_2d), "--synthetic", str(tmp_path / "x"),
                 "--downstream", str(tmp_path / "down"), "--out", str(tmp_path / "ev")]) == 2
    assert "report_section.html: not found" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists()


def test_baselines_need_an_autoencoder_checkpoint(tmp_path, prepared_2d, capsys):
    assert _run(["evaluate", "baselines", "--autoencoder", str(tmp_path / "none"), "--real", str(prepared_2d),
                 "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b").exists()
