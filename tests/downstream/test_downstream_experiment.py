import json

import pytest
from downstream_fixtures import bar_arrays, make_bar_dataset

from conftest import make_synthetic_set
from uterosynth.data.manifest import PreparedDataset
from uterosynth.downstream.config import DownstreamConfig
from uterosynth.downstream.experiment import PLOT_FILE, REPORT_FILE, RESULTS_FILE, run_downstream

TINY = {
    "budgets": [0.25, 1.0],
    "n_seeds": 2,
    "classifier": {"image_size": 24, "widen_factor": 0.0625},
    "train": {"max_epochs": 2, "patience": 2, "min_samples_per_epoch": 32, "batch_size": 16},
    "augment": {"elastic": True},
    "protocols": {"ratios": ["1:1"], "baseline_ratio": "1:2"},
}


@pytest.mark.slow
def test_grid_writes_results_plot_and_report(tmp_path):
    real = make_bar_dataset(tmp_path / "real", shape=(24, 24), items_per_subject=2)
    arrays, cond = bar_arrays(24, (24, 24))
    diffusion = make_synthetic_set(tmp_path / "samples", arrays, cond)
    baseline = make_synthetic_set(tmp_path / "prior", arrays[:8], cond[:8])
    cfg = DownstreamConfig.model_validate(TINY)
    results = run_downstream(real, {"vae_prior": baseline, "diffusion": diffusion}, cfg, tmp_path / "out")
    out = tmp_path / "out"
    on_disk = json.loads((out / RESULTS_FILE).read_text())
    assert on_disk["summary"] == json.loads(json.dumps(results["summary"]))
    assert (out / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / REPORT_FILE).read_text()
    assert html.startswith('<section class="uterosynth-downstream"') and "data:image/png;base64," in html

    # schema
    for key in ("provenance", "task", "classes", "spatial_dims", "budgets", "seeds", "protocols", "summary", "runs",
                "confidence_interval", "real", "synthetic", "seconds"):
        assert key in on_disk, key
    assert on_disk["provenance"]["config"]["budgets"] == [0.25, 1.0]
    ids = [p["id"] for p in on_disk["protocols"]]
    assert ids == ["real", "real+augment", "real+vae_prior@1:2", "real+diffusion@1:1", "diffusion_only"]
    assert on_disk["synthetic"]["diffusion"]["role"] == "diffusion"
    assert on_disk["synthetic"]["vae_prior"]["role"] == "baseline"
    assert len(on_disk["runs"]) == 2 * (4 * 2 + 1)
    assert len(on_disk["summary"]) == len(ids) * 2
    for row in on_disk["summary"]:
        assert row["n_seeds"] == 2
        for m in ("accuracy", "balanced_accuracy", "macro_f1"):
            assert 0 <= row[m]["mean"] <= 1 and row[m]["std"] >= 0
        assert set(row["per_class_recall"]) == set(on_disk["classes"])
        if row["protocol"] == "real":
            assert row["diff_vs_real"] is None
        else:
            d = row["diff_vs_real"]["balanced_accuracy"]
            assert d["n"] == 2 and d["ci_low"] <= d["mean"] <= d["ci_high"]

    # paired difference is computed from runs with the same seed and budget
    runs = {(r["protocol"], r["budget"], r["seed"]): r for r in on_disk["runs"]}
    row = next(r for r in on_disk["summary"] if r["protocol"] == "real+augment" and r["budget"] == 0.25)
    diffs = [runs[("real+augment", 0.25, s)]["metrics"]["balanced_accuracy"]
             - runs[("real", 0.25, s)]["metrics"]["balanced_accuracy"] for s in (0, 1)]
    assert row["diff_vs_real"]["balanced_accuracy"]["mean"] == pytest.approx(sum(diffs) / 2)

    # subject-level budgets: training subjects come from the train split only, nested per seed
    data = PreparedDataset.load(real)
    train_subjects = set(data.split("train").subjects())
    test_subjects = set(data.split("test").subjects()) | set(data.split("val").subjects())
    for seed in (0, 1):
        small = set(runs[("real", 0.25, seed)]["train_subjects"])
        full = set(runs[("real", 1.0, seed)]["train_subjects"])
        assert small < full == train_subjects and not full & test_subjects
        assert len(small) == 4 and set(runs[("real", 0.25, seed)]["train_class_counts"].values()) == {2}
        assert runs[("real+augment", 0.25, seed)]["train_subjects"] == sorted(small)

    # synthetic only: no real item, every synthetic item; mixing: 1 synthetic per real image
    for seed in (0, 1):
        only = runs[("diffusion_only", None, seed)]
        assert only["n_real_items"] == 0 and only["n_synthetic_items"] == 24 and only["train_subjects"] == []
        mix = runs[("real+diffusion@1:1", 0.25, seed)]
        assert mix["n_real_items"] == 8 and mix["n_synthetic_items"] == 8
        base = runs[("real+vae_prior@1:2", 0.25, seed)]
        assert base["n_real_items"] == 8 and base["n_synthetic_items"] == 4


@pytest.mark.slow
def test_grid_is_deterministic_3d(tmp_path):
    real = make_bar_dataset(tmp_path / "real", dims=3, shape=(12, 12, 4), items_per_subject=1)
    cfg = DownstreamConfig.model_validate({**TINY, "n_seeds": 1, "budgets": [1.0],
                                           "classifier": {"image_size": None, "widen_factor": 0.0625},
                                           "train": {"max_epochs": 1, "min_samples_per_epoch": 8, "batch_size": 8}})
    a = run_downstream(real, {}, cfg, tmp_path / "a")
    b = run_downstream(real, {}, cfg, tmp_path / "b")
    assert a["spatial_dims"] == 3 and a["model_input_shape"] == [12, 12, 4]
    assert [r["metrics"] for r in a["runs"]] == [r["metrics"] for r in b["runs"]]
    assert [p["id"] for p in a["protocols"]] == ["real", "real+augment"]


def _renamed_subjects(root, prefix: str):
    """The same dataset with every subject renamed (another cohort's ids)."""
    import csv

    path = root / "manifest.csv"
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        row["subject"] = prefix + row["subject"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.mark.slow
def test_an_external_test_set_replaces_the_test_split_when_its_subjects_are_new(tmp_path):
    from uterosynth.core.errors import DataError

    real = make_bar_dataset(tmp_path / "real", shape=(24, 24), items_per_subject=1)
    fresh = _renamed_subjects(make_bar_dataset(tmp_path / "fresh", shape=(24, 24), items_per_subject=2, seed=5), "F")
    info = json.loads((fresh / "dataset.json").read_text())
    (fresh / "dataset.json").write_text(json.dumps({**info, "spacing": [0.8, 0.8, 4.4]}))  # another slice thickness
    cfg = DownstreamConfig.model_validate({**TINY, "n_seeds": 1, "budgets": [1.0],
                                           "train": {"max_epochs": 1, "min_samples_per_epoch": 8, "batch_size": 8}})
    results = run_downstream(real, {}, cfg, tmp_path / "out", test=fresh)
    assert results["real"]["n_items"]["test"] == 48 and results["real"]["n_subjects"]["test"] == 24
    assert len(results["test_items"]["subjects"]) == 48 and results["evaluated_on"] == f"real test set {fresh}"
    assert "real test set" in (tmp_path / "out" / REPORT_FILE).read_text()
    only_test = run_downstream(real, {}, cfg, tmp_path / "out_split", test=f"{fresh}:test")
    assert only_test["real"]["n_subjects"]["test"] == 4
    with pytest.raises(DataError, match="training or validation split"):
        run_downstream(real, {}, cfg, tmp_path / "overlap", test=make_bar_dataset(tmp_path / "same", shape=(24, 24)))
    with pytest.raises(DataError, match="shape"):
        run_downstream(real, {}, cfg, tmp_path / "shape",
                       test=_renamed_subjects(make_bar_dataset(tmp_path / "small", shape=(20, 20)), "G"))
    assert not (tmp_path / "overlap").exists() and not (tmp_path / "shape").exists()
