from dataclasses import replace

import numpy as np
import pytest
import torch

from uterosynth.data.image_set import ImageSet
from uterosynth.downstream.classifier import train_classifier
from uterosynth.downstream.config import ClassifierConfig, JudgeConfig, TrainConfig
from uterosynth.downstream.experiment import summarise
from uterosynth.downstream.protocols import Protocol
from uterosynth.downstream.stats import adjust_pvalues, benjamini_hochberg, hierarchical_bootstrap_diff, holm


def test_holm_and_bh_match_hand_computed_values():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max
    assert holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted p * 4 / rank -> 0.02, 0.02, 0.04, 0.04; running min from the top
    assert benjamini_hochberg(p).tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])


def test_adjust_pvalues_skips_missing_and_rejects_unknown_method():
    assert adjust_pvalues([0.01, None, 0.02]) == pytest.approx([0.02, None, 0.02])
    with pytest.raises(ValueError, match="expected 'holm' or 'bh'"):
        adjust_pvalues([0.1], "bonferoni")


def _predictions(rng, labels, subjects, accuracy_by_subject):
    out = []
    for y, s in zip(labels, subjects, strict=True):
        out.append(y if rng.uniform() < accuracy_by_subject[s] else (y + 1) % 4)
    return out


def test_hierarchical_bootstrap_detects_a_real_gain_and_not_a_null_one():
    rng = np.random.default_rng(0)
    subjects = [f"t{k // 5}" for k in range(200)]
    labels = [k // 5 % 4 for k in range(200)]
    hard = {f"t{k}": rng.uniform(0.3, 1.0) for k in range(40)}
    better = {s: min(1.0, a + 0.2) for s, a in hard.items()}
    real = {seed: _predictions(rng, labels, subjects, hard) for seed in range(3)}
    gain = {seed: _predictions(rng, labels, subjects, better) for seed in range(3)}
    d = hierarchical_bootstrap_diff(gain, real, labels, subjects, 4, n_boot=1000)
    assert d["ci_low"] <= d["mean"] <= d["ci_high"] and d["ci_low"] > 0 and d["p_value"] < 0.01
    assert d["n"] == 3 and d["n_test_subjects"] == 40
    same = hierarchical_bootstrap_diff(real, real, labels, subjects, 4, n_boot=200)
    assert same["mean"] == 0 and same["p_value"] == 1.0


def test_hierarchical_bootstrap_is_wider_over_subjects_than_over_items():
    rng = np.random.default_rng(1)
    labels = [k % 4 for k in range(240)]
    subjects = [f"t{k // 8}" for k in range(240)]
    per_subject = {f"t{k}": rng.choice([0.2, 1.0]) for k in range(30)}
    real = {s: _predictions(rng, labels, subjects, {k: 0.6 for k in per_subject}) for s in range(3)}
    other = {s: _predictions(rng, labels, subjects, per_subject) for s in range(3)}
    by_subject = hierarchical_bootstrap_diff(other, real, labels, subjects, 4, n_boot=1000)
    by_item = hierarchical_bootstrap_diff(other, real, labels, [str(k) for k in range(240)], 4, n_boot=1000)
    assert by_subject["ci_high"] - by_subject["ci_low"] > 1.5 * (by_item["ci_high"] - by_item["ci_low"])


def test_hierarchical_bootstrap_errors():
    with pytest.raises(ValueError, match="no seed"):
        hierarchical_bootstrap_diff({0: [0]}, {1: [0]}, [0], ["a"], 2)
    with pytest.raises(ValueError, match="2 predictions for 1"):
        hierarchical_bootstrap_diff({0: [0, 1]}, {0: [0, 1]}, [0], ["a"], 2)


def _run(protocol, budget, seed, preds, labels):
    correct = np.mean(np.asarray(preds) == np.asarray(labels))
    return {"protocol": protocol, "budget": budget, "seed": seed, "n_train_items": 10, "n_synthetic_items": 0,
            "predictions": preds,
            "metrics": {"accuracy": correct, "balanced_accuracy": correct, "macro_f1": correct,
                        "per_class_recall": {"a": correct, "b": correct}}}


def test_summarise_adjusts_across_the_grid():
    rng = np.random.default_rng(2)
    labels = [k % 2 for k in range(120)]
    subjects = [f"t{k // 3}" for k in range(120)]
    flip = lambda p: [y if rng.uniform() < p else 1 - y for y in labels]  # noqa: E731
    runs = []
    for seed in range(3):
        for b in (0.1, 1.0):
            runs.append(_run("real", b, seed, flip(0.6), labels))
            runs.append(_run("good", b, seed, flip(0.95), labels))
            runs.append(_run("null", b, seed, flip(0.6), labels))
    protocols = [Protocol("real", "real"), Protocol("good", "mix"), Protocol("null", "mix")]
    rows = summarise(runs, protocols, [0.1, 1.0], ["a", "b"], test={"labels": labels, "subjects": subjects},
                     n_boot=500)
    cells = {(r["protocol"], r["budget"]): r["diff_vs_real"] for r in rows}
    assert cells[("real", 0.1)] is None
    for b in (0.1, 1.0):
        good, null = cells[("good", b)]["balanced_accuracy"], cells[("null", b)]["balanced_accuracy"]
        assert good["n_comparisons"] == 4 and good["correction"] == "holm"
        assert good["p_adjusted"] >= good["p_value"] and good["significant"]
        assert not null["significant"]
        assert "hierarchical bootstrap" in good["method"]
        assert cells[("good", b)]["macro_f1"]["method"] == "paired t over seeds"


def _bars(n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.rand(n, 1, 12, 12, generator=g) * 0.2
    images[labels == 1, :, :, 4:8] += 0.8
    return ImageSet(images, labels=labels, subjects=tuple(f"s{k}" for k in range(n)), origins=("real",) * n)


def test_fixed_epoch_selection_never_uses_validation():
    cfg = TrainConfig(max_epochs=3, min_samples_per_epoch=16, batch_size=8)
    assert cfg.selection == "fixed_epochs"
    model_cfg = ClassifierConfig(image_size=12, widen_factor=0.0625)
    train, val = _bars(16, 0), _bars(8, 1)
    flipped = replace(val, labels=1 - val.labels)  # a validation set that lies
    a = train_classifier(train, val, num_classes=2, spatial_dims=2, size=(12, 12), model_cfg=model_cfg,
                         train_cfg=cfg, seed=0)
    b = train_classifier(train, flipped, num_classes=2, spatial_dims=2, size=(12, 12), model_cfg=model_cfg,
                         train_cfg=cfg, seed=0)
    assert a.epochs == a.best_epoch == 3 and len(a.history) == 3
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)  # the validation labels did not choose anything


def test_judge_keeps_early_stopping_on_validation():
    assert JudgeConfig().train.selection == "validation"
    assert JudgeConfig.model_validate({"train": {"max_epochs": 5}}).train.selection == "validation"
    assert JudgeConfig.model_validate({"train": {"selection": "fixed_epochs"}}).train.selection == "fixed_epochs"


def test_report_section_marks_significant_gains(tmp_path):
    from uterosynth.downstream.report import write_report_section

    def row(protocol, significant):
        diff = {"mean": 0.05, "ci_low": 0.01, "ci_high": 0.09, "p_adjusted": 0.01 if significant else 0.4,
                "significant": significant, "correction": "holm"}
        return {"protocol": protocol, "budget": 1.0, "balanced_accuracy": {"mean": 0.7, "std": 0.01},
                "diff_vs_real": {"balanced_accuracy": diff}}

    results = {"budgets": [1.0], "protocols": [{"id": "a"}, {"id": "b"}], "summary": [row("a", True), row("b", False)],
               "confidence_interval": {"level": 0.95}, "synthetic": {}, "task": "orientation", "spatial_dims": 2,
               "real": {"n_items": {"test": 4}, "n_subjects": {"test": 2}}, "classes": ["x", "y"], "seeds": [0]}
    plot = tmp_path / "p.png"
    plot.write_bytes(b"png")
    write_report_section(results, tmp_path / "s.html", plot=plot)
    text = (tmp_path / "s.html").read_text()
    assert text.count("] *</small>") == 1 and "after holm" in text
