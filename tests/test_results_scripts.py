"""The results scripts' verdicts: the pre-registered fidelity bar and the separation of two intervals."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fidelity = _load("results_fidelity")
ranking = _load("results_ranking")
autoencoder = _load("results_autoencoder")


def _result(*cells: tuple[float, float]) -> dict:
    per_class = {f"C{i}": {"accuracy": a, "wilson95": (low, 1.0), "n": 128, "correct": round(128 * a)}
                 for i, (a, low) in enumerate(cells)}
    return {"per_class": per_class, "worst": min(a for a, _ in cells), "edge_band_items": 0}


@pytest.mark.parametrize(("cells", "expected"), [
    ([(0.95, 0.90), (0.91, 0.86)], True),
    ([(0.95, 0.90), (0.89, 0.83)], False),   # below the bar
    ([(0.95, 0.90), (0.92, 0.84)], False),   # above the bar, interval too wide
])
def test_the_bar_needs_every_class_and_its_interval(cells: list, expected: bool) -> None:
    assert fidelity.passes(_result(*cells), bar=0.90, lower_bar=0.85) is expected


def test_real_items_are_binned_by_their_distance_from_a_class_boundary() -> None:
    rows = [{"version_angle": "-4.5", "flexion_angle": "-71"}, {"version_angle": "36.6", "flexion_angle": "2.3"},
            {"version_angle": "60", "flexion_angle": "-30"}, {"version_angle": "12", "flexion_angle": "8"}]
    margins = fidelity.angle_margins(rows)
    assert margins.tolist() == [4.5, 2.3, 30.0, 8.0]
    bins = fidelity.margin_bins(margins)
    assert {k: v.nonzero()[0].tolist() for k, v in bins.items()} == {"0-5°": [0, 1], "5-10°": [3], ">= 20°": [2]}
    assert fidelity.angle_margins([{"orientation": "AVAF"}]) is None  # real scans carry no angles


def test_the_fidelity_section_states_each_seeds_verdict() -> None:
    args = argparse.Namespace(bar=0.90, lower_bar=0.85, tries="three.", command="run")
    real = {"source": "x:train", "items": 10, "subjects": 2, "padded_items": 0, "accuracy": [0.9, 0.8, 1.0],
            "blur": {"4": [0.7, 0.6, 0.8]}, "band_flips": {"rows": [0.3, 0.2, 0.4]},
            "occlusion_flips": {"rows": [0.1, 0.0, 0.2]}, "band_fraction": 0.2}
    text = fidelity.section({"seed 0": _result((0.95, 0.9)), "seed 1": _result((0.8, 0.7))}, real, args)
    assert "| seed 0 |" in text and "**passes**" in text and "**fails**" in text
    assert "**1 of 2 training seeds pass.**" in text and "rows: 30 % [20, 40] (mean-valued: 10 % [0, 20])" in text
    assert "- accuracy: 90 % [80, 100];\n" in text
    real["per_class"] = {"AV": [0.6, 0.4, 0.8], "RV": [1.0, 1.0, 1.0]}
    text = fidelity.section({"seed 0": _result((0.95, 0.9))}, real, args)
    assert "- accuracy: 90 % [80, 100]; per class: AV 60 % [40, 80] · RV 100 % [100, 100];\n" in text


@pytest.mark.parametrize(("a", "b", "expected"), [
    ({"ci_low": 1, "ci_high": 2}, {"ci_low": 3, "ci_high": 4}, "yes"),
    ({"ci_low": 1, "ci_high": 3.5}, {"ci_low": 3, "ci_high": 4}, "no"),
    ({"ci_low": 5, "ci_high": 6}, {"ci_low": 3, "ci_high": 4}, "yes"),
    (None, {"ci_low": 3, "ci_high": 4}, "–"),
])
def test_separation_is_non_overlap_of_the_intervals(a, b, expected: str) -> None:
    assert ranking.separated(a, b) == expected


def test_the_ranking_table_keeps_the_expected_order_and_scales_kid() -> None:
    metric = {"value": 0.05, "ci_low": 0.01, "ci_high": 0.09}
    sets = {name: {"n": 40, "metrics": {"kid": metric}} for name in ("prior", "synthetic", "real_vs_real")}
    metrics = {"sets": sets, "reference": {"source": "r:train", "n": 320, "subjects": 64},
               "equal_n": {"n": 40, "draws": 10, "radiomics_n": 40, "unit": "subject"}, "extractor": {"name": "enc"}}
    text = ranking.section(metrics, ["real_vs_real", "synthetic", "prior"], [("synthetic", "prior")], "cmd")
    lines = [line for line in text.splitlines() if line.startswith("| ") and line.split(" | ")[0][2:] in sets]
    assert [line.split(" | ")[0][2:] for line in lines] == ["real_vs_real", "synthetic", "prior"]
    assert "50.0 [10.0, 90.0]" in text and "| synthetic vs prior | no |" in text


@pytest.mark.slow
def test_the_autoencoder_table_is_measured_on_unseen_subjects_with_subject_intervals(tmp_path, prepared_2d) -> None:
    from uterosynth.core.config import load_config
    from uterosynth.core.errors import DataError
    from uterosynth.training.autoencoder import AutoencoderTrainConfig, train_autoencoder

    cfg = load_config(AutoencoderTrainConfig, "configs/ae2d_cpu.yaml", overrides={
        "train.steps": 1, "train.val_every": 100, "loss.adv_weight": 0.0, "perceptual.network": "none"})
    train_autoencoder(cfg, prepared_2d, tmp_path / "ae", progress=False)
    m = autoencoder.evaluate(tmp_path / "ae", f"{prepared_2d}:test", None)
    assert m["subjects"] >= 1 and m["items"] >= m["subjects"]
    for key in ("psnr", "ssim", "ms_ssim"):
        mean, low, high = m[key]
        assert low <= mean <= high
    assert autoencoder._trained_run(tmp_path / "ae")[0] == 1
    with pytest.raises(DataError, match="evaluated subjects were used to train"):
        autoencoder.evaluate(tmp_path / "ae", f"{prepared_2d}:train", None)


def test_the_sweep_summary_groups_training_seeds_per_variant_and_judge(tmp_path, capsys) -> None:
    sweep = _load("demo_recipe_sweep")

    def record(name: str, judge: str, avaf: float, kid: float) -> dict:
        per_class = {"AVAF": {"acc": avaf}, "AVRF": {"acc": 0.99}}
        res = {"per_class": per_class, "worst": min(avaf, 0.99), "kid_x1e3": kid, "floor_kid_x1e3": 6.0}
        return {"name": name, "judge": judge, "sample_seed": 3 if judge == "judgeV" else 100, "steps": 2000,
                "results": {"dpmpp:20:g": res}}

    rows = [record("lr3e-3_s10", "judgeV", 0.88, 150.0), record("lr3e-3_s2", "judgeV", 0.02, 9e5),
            record("lr3e-3_s0", "judge2", 0.50, 100.0), record("L5_slowema", "judgeV", 0.5, 1.0)]
    (tmp_path / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sweep.seeds(argparse.Namespace(out=str(tmp_path)))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4  # header, rule, one row per (variant, judge); a name without a seed is left out
    assert lines[2] == ("| lr3e-3 | judgeV, sample seed 3 | 2000 | dpmpp:20:g | s2 0.02 (AVAF) / s10 0.88 (AVAF) "
                        "| 0.450 | 450075.0 (6.0) |")
    assert lines[3].startswith("| lr3e-3 | judge2, sample seed 100 | 2000 | dpmpp:20:g | s0 0.50 (AVAF) | 0.500 |")
    (tmp_path / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [rows[0], rows[0]]))
    with pytest.raises(SystemExit, match="lr3e-3_s10 is recorded twice"):
        sweep.seeds(argparse.Namespace(out=str(tmp_path)))


def test_the_ceiling_scores_the_judges_own_task_and_refuses_its_training_subjects(tmp_path, capsys):
    """demo_recipe_sweep.py ceiling: per class of the judge's task (here field strength) on a cohort
    the judge never saw; its own training cohort is refused."""
    from conftest import make_prepared_dataset
    from uterosynth.core.errors import DataError
    from uterosynth.downstream.config import JudgeConfig
    from uterosynth.downstream.judge import train_judge

    sweep = _load("demo_recipe_sweep")
    own = make_prepared_dataset(tmp_path / "own", shape=(16, 16), subjects=8)
    other = make_prepared_dataset(tmp_path / "other", shape=(16, 16), subjects=4, subject_prefix="T", attributes={
        "orientation": ["AVAF", "AVRF", "RVAF", "RVRF"], "field_strength": ["1.5T", "3T"],
        "myoma_voxels": ["0", "12", "50", "150"]})
    train_judge(own, JudgeConfig.model_validate({
        "task": "field_strength", "classifier": {"image_size": 16, "widen_factor": 0.0625}, "augment_training": False,
        "train": {"max_epochs": 1, "min_epochs": 1, "min_samples_per_epoch": 8}}), tmp_path / "judge")
    sweep.ceiling(argparse.Namespace(data=str(other), judge=str(tmp_path / "judge"), all_splits=True, by="orientation",
                                bins=None))
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["task"] == "field_strength" and set(out["per_class"]) == {"1.5T", "3T"}
    assert out["items"] == 8 and out["subjects"] == 4 and sum(v["n"] for v in out["per_class"].values()) == 8
    for v in out["per_class"].values():  # the interval over subjects holds its point estimate
        assert v["subjects"] == 2 and v["subjects95"][0] <= v["acc"] <= v["subjects95"][1]
    assert set(out["by"]) == {"orientation=AVAF", "orientation=AVRF", "orientation=RVAF", "orientation=RVRF"}
    assert sum(c["n"] for part in out["by"].values() for c in part.values()) == 8
    sweep.ceiling(argparse.Namespace(data=str(other), judge=str(tmp_path / "judge"), all_splits=True, by="myoma_voxels",
                                bins="1,16,40,100"))  # a numeric column in size ranges
    by_size = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["by"]
    assert set(by_size) == {"myoma_voxels=<1", "myoma_voxels=1-16", "myoma_voxels=40-100", "myoma_voxels=>=100"}
    with pytest.raises(DataError, match="were used to train"):
        sweep.ceiling(argparse.Namespace(data=str(own), judge=str(tmp_path / "judge"), all_splits=False, by=None, bins=None))
    with pytest.raises(SystemExit, match="no column 'myoma'"):
        sweep.ceiling(argparse.Namespace(data=str(other), judge=str(tmp_path / "judge"), all_splits=False, by="myoma",
                                    bins=None))


def test_a_judge_panel_averages_probabilities_and_refuses_the_judges_training_subjects(tmp_path, monkeypatch):
    """judge_panel.py: a panel's answer is the argmax of its judges' mean probabilities; a cohort any of
    them trained on is refused; the table gives each set's worst class and verdict per judge."""
    import torch

    from conftest import make_prepared_dataset, make_synthetic_set
    from uterosynth.core.errors import DataError
    from uterosynth.data.manifest import PreparedDataset
    from uterosynth.downstream.config import JudgeConfig
    from uterosynth.downstream.judge import predict_logits_judge, train_judge

    panel = _load("judge_panel")
    own = make_prepared_dataset(tmp_path / "own", shape=(16, 16), subjects=8)
    other = make_prepared_dataset(tmp_path / "other", shape=(16, 16), subjects=4, subject_prefix="T")
    for seed in (0, 1):
        train_judge(own, JudgeConfig.model_validate({
            "seed": seed, "classifier": {"image_size": 16, "widen_factor": 0.0625}, "augment_training": False,
            "train": {"max_epochs": 1, "min_epochs": 1, "min_samples_per_epoch": 8}}), tmp_path / f"judge{seed}")
    folders = [str(tmp_path / "judge0"), str(tmp_path / "judge1")]
    predict, metas = panel.panel(folders, "orientation")
    images = PreparedDataset.load(other, "train").stack()
    mean = sum(torch.softmax(predict_logits_judge(f, images).float(), dim=1) for f in folders)
    assert predict(images) == [metas[0]["classes"][i] for i in mean.argmax(dim=1).tolist()]
    panel.check_unseen(metas, f"{other}:train", "panel")  # other subjects: accepted
    plus = tmp_path / "cells" / "labels+text"
    plus.parent.mkdir()
    plus.symlink_to(folders[0])
    assert panel.judge_folders(str(plus)) == [str(plus)] and panel.judge_folders("+".join(folders)) == folders
    with pytest.raises(DataError, match="were used to train"):
        panel.check_unseen(metas, f"{own}:train", "panel")
    with pytest.raises(SystemExit, match="judge0: a judge of orientation, not of --attribute myoma"):
        panel.panel(folders, "myoma")
    real = {"x:train": {"per_class": {"C0": [0.9, 0.8, 1.0]}}}
    results = {"J1": {"real": real, "sets": {"s": _result((0.95, 0.9))}},
               "J2": {"real": real, "sets": {"s": _result((0.85, 0.8))}}}
    for res in results.values():  # as main() does: each set against each real cohort
        res["sets"]["s"]["against_real"] = {"x:train": panel.against_real(res["sets"]["s"]["per_class"],
                                                                          real["x:train"]["per_class"])}
    low = 0.05 - math.hypot(0.95 - 0.9, 1.0 - 0.9)  # sample minus real, MOVER with each own interval
    assert results["J1"]["sets"]["s"]["against_real"]["x:train"]["C0"][:2] == pytest.approx([0.05, low])
    text = panel.table(results, bar=0.90, lower_bar=0.85)
    assert "| real C0, x:train | 90 % [80, 100] | 90 % [80, 100] |" in text
    assert "| s | 95 % C0, passes | 85 % C0, fails |" in text
    results["J2"]["sets"]["s"]["edge_band_items"] = 3
    assert "| s, items with an edge band | 0 | 3 |" in panel.table(results, bar=0.90, lower_bar=0.85)
    assert "| s minus real, x:train | C0 +5 [-6, +16] | C0 -5 [-16, +13] |" in text
    with_margin = panel.table(results, bar=0.90, lower_bar=0.85, margin=0.10)
    assert ("| s minus real, x:train | C0 +5 [-6, +16]; non-inferior at a margin of 10 points | "
            "C0 -5 [-16, +13]; non-inferiority not shown at a margin of 10 points |") in with_margin
    assert panel.non_inferior({"a": [0.0, -0.05, 0.05], "b": [0.02, -0.049, 0.1]}, 0.05)
    assert not panel.non_inferior({"a": [0.0, -0.05, 0.05], "b": [0.02, -0.051, 0.1]}, 0.05)
    assert panel._points(-0.003) == "+0" and panel._points(-0.01) == "-1"
    import numpy as np

    unconditioned = make_synthetic_set(tmp_path / "plain", np.random.default_rng(0).random((6, 16, 16)).astype(np.float32))
    rates = panel.read_as(predict, unconditioned)
    assert rates["n"] == 6 and sum(v["count"] for v in rates["read_as"].values()) == 6
    results["J1"]["unconditioned"] = results["J2"]["unconditioned"] = {"plain": rates}
    first = next(iter(rates["read_as"]))
    assert f"| plain (not conditioned on it), read as | {100 * rates['read_as'][first]['share']:.0f} % {first}" in \
        panel.table(results, bar=0.90, lower_bar=0.85)

    # volumes: the 2D judge reads real and synthetic ones on their central sagittal slice
    volumes = make_prepared_dataset(tmp_path / "vol", dims=3, shape=(16, 16, 4), subjects=4, subject_prefix="V")
    vol_set = make_synthetic_set(tmp_path / "volset", np.random.default_rng(1).random((4, 16, 16, 4)).astype(np.float32),
                                 [{"orientation": c} for c in ("AVAF", "AVRF", "RVAF", "RVRF")], dims=3)
    out = tmp_path / "panel.json"
    monkeypatch.setattr("sys.argv", ["judge_panel.py", "--judge", f"j={folders[0]}", "--samples", f"v={vol_set}",
                                     "--real", f"{volumes}:train", "--json", str(out)])
    panel.main()
    read = json.loads(out.read_text())["j"]
    assert read["real"][f"{volumes}:train"]["items"] == 4 and sum(
        v["n"] for v in read["sets"]["v"]["per_class"].values()) == 4
    assert read["sets"]["v"]["edge_band_items"] == 0  # uniform noise: no band at any edge


def test_a_panel_averages_probabilities_not_logits_nor_the_first_judge(monkeypatch, capsys):
    """Item 0: the mean logit picks B, the mean probability A; item 1: the first judge says A, the panel B.
    A judge without a training-subject record is named in a warning."""
    import torch

    import uterosynth.downstream.judge as judge_module

    panel = _load("judge_panel")
    logits = {"j0": torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
              "j1": torch.tensor([[-5.0, 3.0, 2.9], [0.0, 5.0, 0.0]])}
    meta = {"task": "orientation", "classes": ["A", "B", "C"], "spatial_dims": 2}
    monkeypatch.setattr(judge_module, "load_classifier", lambda folder: (folder, meta))
    monkeypatch.setattr(judge_module, "predict_logits_judge", lambda judge, images: logits[judge[0]])
    predict, _ = panel.panel(["j0", "j1"], "orientation")
    assert predict(torch.zeros(2, 1, 4, 4)) == ["A", "B"]
    assert (logits["j0"] + logits["j1"]).argmax(dim=1).tolist() == [1, 1]  # the mean logit disagrees on item 0
    assert "j0 records no training subjects" in capsys.readouterr().err


def test_the_angle_judge_places_items_per_class_and_refuses_its_training_subjects(tmp_path, capsys):
    """angle_judge.py: per requested class, median predicted angles and the share whose signs give the
    class; a cohort it trained on is refused; a cohort without angle columns is named."""
    import numpy as np
    import torch

    from conftest import make_prepared_dataset, make_synthetic_set
    from uterosynth.core.errors import DataError

    angle = _load("angle_judge")
    pred = np.array([[10.0, 20.0], [-5.0, 30.0], [12.0, 18.0], [-20.0, -10.0]])
    out = angle.summarise(pred, ["AVAF", "AVAF", "AVAF", "RVRF"], truth=np.array([[8, 22], [4, 25], [10, 20], [-25, -5.0]]))
    assert out["AVAF"]["n"] == 3 and out["AVAF"]["signs_right"] == round(2 / 3, 3)  # -5° reads retroverted
    assert out["AVAF"]["version"][0] == 10.0 and out["AVAF"]["version_true"] == 8.0 and out["RVRF"]["signs_right"] == 1.0
    attrs = {"orientation": ["AVAF", "AVRF", "RVAF", "RVRF"], "version_angle": ["20", "15", "-20", "-15"],
             "flexion_angle": ["30", "-30", "25", "-25"]}
    own = make_prepared_dataset(tmp_path / "own", shape=(16, 16), subjects=8, attributes=attrs)
    other = make_prepared_dataset(tmp_path / "other", shape=(16, 16), subjects=4, subject_prefix="T", attributes=attrs)
    angle.train(argparse.Namespace(data=str(own), out=str(tmp_path / "aj"), epochs=1, batch_size=4, lr=1e-3,
                                   widen_factor=0.0625, seed=0))
    capsys.readouterr()
    angle.score(argparse.Namespace(judge=str(tmp_path / "aj"), real=[f"{other}:train"], samples=None,
                                   json=str(tmp_path / "angles.json")))
    result = json.loads((tmp_path / "angles.json").read_text())[f"real {other}:train"]
    assert set(result) == {"AVAF", "AVRF"} and all("version_error" in r for r in result.values())
    assert "| real " in capsys.readouterr().out
    with pytest.raises(DataError, match="were used to train"):
        angle.score(argparse.Namespace(judge=str(tmp_path / "aj"), real=[f"{own}:train"], samples=None, json=None))
    saved = torch.load(tmp_path / "aj" / angle.FILE, weights_only=True)
    assert saved["meta"]["training_subjects"]["splits"] == ["train", "val"]
    args = dict(out=str(tmp_path / "aj2"), epochs=1, batch_size=4, lr=1e-3, widen_factor=0.0625, seed=0)
    with pytest.raises(SystemExit, match="without a split"):
        angle.train(argparse.Namespace(data=f"{own}:train", **args))
    with pytest.raises(SystemExit, match="already exists"):
        angle.train(argparse.Namespace(data=str(own), **{**args, "out": str(tmp_path / "aj")}))
    wrong = make_synthetic_set(tmp_path / "wrong", np.zeros((2, 8, 8)), [{"orientation": "AVAF"}] * 2)
    with pytest.raises(SystemExit, match=r"items of shape \(1, 8, 8\), the angle judge reads 2D items of \(1, 16, 16\)"):
        angle.score(argparse.Namespace(judge=str(tmp_path / "aj"), real=[], samples=[f"w={wrong}"], json=None))
    plain = make_prepared_dataset(tmp_path / "plain", shape=(16, 16), subjects=4, subject_prefix="P")
    with pytest.raises(SystemExit, match="no column version_angle, flexion_angle"):
        angle.score(argparse.Namespace(judge=str(tmp_path / "aj"), real=[f"{plain}:train"], samples=None, json=None))


def test_kid_by_audit_splits_the_draws_by_the_audits_flags() -> None:
    """Flagged draws that copy the real items score near zero, the others far from them, and a part
    smaller than N is reported by its size, not scored."""
    import torch

    by_audit = _load("kid_by_audit")
    real = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    fake = torch.cat([real[:32], real[32:] + 3.0])            # draws 0-31 copy real items, 32-63 do not
    parts = by_audit.kid_by_part(real, fake, set(range(32)), n=32, subsets=20)
    assert abs(parts["flagged"][0]) < 0.2 * parts["unflagged"][0]
    assert parts["flagged"][0] < parts["all"][0] < parts["unflagged"][0]
    assert by_audit.kid_by_part(real, fake, {0, 1}, n=32)["flagged"] == 2


def test_paired_sets_tell_a_copy_from_a_smoothed_set_and_from_another_draw():
    import torch

    paired_sets = _load("paired_sets")
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    same = paired_sets.paired(x, x.clone())
    assert same == {"median_correlation": 1.0, "mean_abs_difference": 0.0}
    smooth = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    assert paired_sets.mean_gradient(smooth) < 0.5 * paired_sets.mean_gradient(x)
    other = paired_sets.paired(x, torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(1)))
    assert abs(other["median_correlation"]) < 0.3 and other["mean_abs_difference"] > 0.2


def test_the_judge_on_real_items_leaves_out_items_without_a_value(tmp_path):
    """An item whose attribute is empty (a myoma too small to label) is no class of its own."""
    from conftest import make_prepared_dataset

    fidelity = _load("results_fidelity")
    data = make_prepared_dataset(tmp_path / "d", shape=(16, 16), subjects=6, attributes={"myoma": ["present", "", "absent"]})
    out = fidelity.judge_on_real(lambda images: ["present"] * len(images), f"{data}:train", "myoma", [2.0], 0.2)
    assert set(out["per_class"]) <= {"present", "absent"} and out["per_class"]
    assert out["per_class"].get("present", [1.0])[0] == 1.0 and out["per_class"].get("absent", [0.0])[0] == 0.0


def test_a_studys_judge_readings_pool_the_training_seeds_of_a_combination(tmp_path, monkeypatch, capsys):
    pooled = _load("study_pooled")

    def metrics(orientation: dict, myoma: dict) -> dict:
        def fidelity(task: str, counts: dict) -> dict:
            return {"details": {"task": task, "per_class": {c: {"correct": k, "n": n} for c, (k, n) in counts.items()}}}
        return {"provenance": {}, "reference": {}, "classifier": {"task": "orientation"}, "judges": [{"task": "myoma"}],
                "sets": {"synthetic": {"metrics": {"conditioning_fidelity": fidelity("orientation", orientation),
                                                   "conditioning_fidelity_myoma": fidelity("myoma", myoma),
                                                   "kid": {"value": 0.1}}}}}

    cells = {"c-a_seed-0": metrics({"AV": (60, 64), "RV": (64, 64)}, {"present": (120, 128), "absent": (128, 128)}),
             "c-a_seed-1": metrics({"AV": (62, 64), "RV": (36, 64)}, {"present": (124, 128), "absent": (128, 128)}),
             "c-b_seed-0": metrics({"AV": (64, 64), "RV": (64, 64)}, {"present": (128, 128), "absent": (128, 128)})}
    for name, m in cells.items():
        (tmp_path / "cells" / name / "evaluation").mkdir(parents=True)
        (tmp_path / "cells" / name / "evaluation" / "metrics.json").write_text(json.dumps(m))
    (tmp_path / "cells" / "c-b_seed-1").mkdir()   # a cell that did not measure
    document = {"cells": [{"name": n, "status": "ok"} for n in cells] + [{"name": "c-b_seed-1", "status": "failed"}]}
    (tmp_path / "study.json").write_text(json.dumps(document))
    monkeypatch.setattr("sys.argv", ["study_pooled.py", str(tmp_path), "--better", "c-a", "--worse", "c-b",
                                     "--json", str(tmp_path / "pooled.json")])
    pooled.main()
    out = json.loads((tmp_path / "pooled.json").read_text())
    assert out["pooled"]["c-a"]["orientation"] == {"AV": [122, 128], "RV": [100, 128]}   # summed over the seeds
    assert out["pooled"]["c-b"]["myoma"]["present"] == [128, 128]
    gain = out["gains"]["orientation"]   # worst classes: RV 100/128 against 128/128
    assert gain["value"] == pytest.approx(100 / 128 - 1) and gain["ci_low"] < gain["value"] < gain["ci_high"]
    assert gain["reading"] == "fails" and out["gains"]["myoma"]["reading"] != "fails"
    assert "c-b_seed-1: not measured (failed)" in capsys.readouterr().out


def test_judge_readings_split_by_the_audits_flags(tmp_path, monkeypatch, capsys):
    """judge_by_audit.py: per requested class, the judge on all draws, the unflagged and the flagged ones;
    a judge that learnt from the generator's patients is refused."""
    import numpy as np

    from conftest import fake_audit, make_prepared_dataset, make_synthetic_set
    from uterosynth.core.errors import DataError
    from uterosynth.core.stats import wilson_ci
    from uterosynth.data.manifest import PreparedDataset
    from uterosynth.data.subjects import training_subjects
    from uterosynth.downstream.config import JudgeConfig
    from uterosynth.downstream.judge import train_judge

    by_audit = _load("judge_by_audit")
    parts = by_audit.reading_by_part(["a", "a", "b", "b", "a"], ["a", "b", "b", "a", "a"], {0, 3})
    assert {c: (r["correct"], r["n"]) for c, r in parts["all"].items()} == {"a": (2, 3), "b": (1, 2)}
    assert {c: (r["correct"], r["n"]) for c, r in parts["unflagged"].items()} == {"a": (1, 2), "b": (1, 1)}
    assert {c: (r["correct"], r["n"]) for c, r in parts["flagged"].items()} == {"a": (1, 1), "b": (0, 1)}
    assert parts["flagged"]["b"]["wilson95"][0] == 0.0 and "| s | x | a | 2/3 = 0.67" in by_audit.table({"s": {"x": parts}})
    with pytest.raises(ValueError, match="flags draw 7; the set has 5"):
        by_audit.reading_by_part(["a"] * 5, ["a"] * 5, {7})
    assert by_audit.reading_by_part([None, "a"], ["a", "a"], set())["all"] == {
        "a": {"correct": 1, "n": 1, "accuracy": 1.0, "wilson95": pytest.approx(list(wilson_ci(1, 1)))}}

    own = make_prepared_dataset(tmp_path / "own", shape=(16, 16), subjects=8)
    train_judge(own, JudgeConfig.model_validate({
        "seed": 0, "classifier": {"image_size": 16, "widen_factor": 0.0625}, "augment_training": False,
        "train": {"max_epochs": 1, "min_epochs": 1, "min_samples_per_epoch": 8}}), tmp_path / "judge")
    draws = make_synthetic_set(tmp_path / "syn", np.random.default_rng(0).random((6, 16, 16)).astype(np.float32),
                               [{"orientation": c} for c in ("AVAF", "AVRF", "RVAF", "RVRF", "AVAF", "AVRF")])
    audit = fake_audit(tmp_path / "audit", draws, [1, 4], 6)
    out = tmp_path / "by_audit.json"
    argv = ["judge_by_audit.py", "--judge", f"orientation={tmp_path / 'judge'}", "--set", f"s={draws}:{audit}",
            "--json", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    by_audit.main()
    read = json.loads(out.read_text())["s"]["orientation"]
    assert sum(r["n"] for r in read["unflagged"].values()) == 4 and sum(r["n"] for r in read["flagged"].values()) == 2
    assert "| s | orientation | AVAF |" in capsys.readouterr().out
    other = make_synthetic_set(tmp_path / "other", np.zeros((6, 16, 16), np.float32))
    monkeypatch.setattr("sys.argv", [*argv[:3], "--set", f"s={draws}:{fake_audit(tmp_path / 'a2', other, [], 6)}"])
    with pytest.raises(DataError, match="this audit was made for another synthetic set"):
        by_audit.main()
    monkeypatch.setattr("sys.argv", argv)
    info = json.loads((draws / "synthetic.json").read_text())   # a generator trained on the judge's own patients
    info["model"] = {"training_subjects": training_subjects(PreparedDataset.load(own, "train"))}
    (draws / "synthetic.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="were used to train"):
        by_audit.main()


def test_audit_threshold_swap_counts_each_sets_draws_above_another_audits_thresholds() -> None:
    """audit_threshold_swap.py: a set's own similarities against a lower bar count more draws, per measure and any."""
    swap = _load("audit_threshold_swap")

    def audit(ncc: list[float], ssim: list[float], bar: tuple[float, float]) -> dict:
        samples = [{"measures": {"image": {"ncc": {"similarity": a}, "ssim": {"similarity": b}}}} for a, b in zip(ncc, ssim, strict=True)]
        return {"samples": samples, "calibration": {"thresholds": {"image": {"ncc": bar[0], "ssim": bar[1]}}}}

    large = audit([0.70, 0.80, 0.86], [0.05, 0.20, 0.10], bar=(0.85, 0.19))
    small = audit([0.95, 0.60], [0.30, 0.02], bar=(0.75, 0.15))
    sims = swap.similarities(large)
    assert list(sims) == ["image/ncc", "image/ssim"] and sims["image/ncc"].tolist() == [0.70, 0.80, 0.86]
    assert swap.above(sims, swap.thresholds(large)) == {"image/ncc": 1, "image/ssim": 1, "any": 2}
    assert swap.above(sims, swap.thresholds(small)) == {"image/ncc": 2, "image/ssim": 1, "any": 2}
    assert swap.above(swap.similarities(small), swap.thresholds(large)) == {"image/ncc": 1, "image/ssim": 1, "any": 1}
    with pytest.raises(ValueError, match="share no measure"):
        swap.above(sims, {"volume/ncc": 0.5})
