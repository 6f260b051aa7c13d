import json

import pytest
import torch

from uterosynth.core.errors import UserError
from uterosynth.evaluation.classifier import fidelity_result, load_classifier, predict_labels


class Brightness:
    """Calls an image 'bright' when its mean exceeds 0.5."""

    task, classes, name, sha256 = "tone", ["dark", "bright"], "brightness", "0" * 64

    def __call__(self, images):
        m = images.flatten(1).mean(1)
        return torch.stack([0.5 - m, m - 0.5], 1)


def test_fidelity_per_class_and_overall():
    images = torch.cat([torch.full((6, 1, 4, 4), 0.9), torch.full((4, 1, 4, 4), 0.1)])
    predicted = predict_labels(Brightness(), images)
    requested = ["bright"] * 6 + ["bright"] * 2 + ["dark"] * 2
    r = fidelity_result(requested, predicted, Brightness.classes, task="tone", n_boot=200)
    assert r.details["per_class"]["bright"]["value"] == pytest.approx(6 / 8)
    assert r.details["per_class"]["dark"]["value"] == 1.0
    assert r.value == pytest.approx((0.75 + 1.0) / 2) and r.details["micro"] == pytest.approx(0.8)
    assert any("noisy" in w for w in r.warnings)
    assert r.details["answers"] == ["bright"] * 6 + ["dark"] * 4   # each item's answer, in the set's order


def test_fidelity_intervals_resample_subjects_when_grouped():
    """Ten slices of one subject are one observation: the interval must be as wide as 6 subjects allow."""
    subject_hit = [1, 1, 1, 0, 1, 0]
    requested = ["bright"] * 60
    predicted = [("bright" if h else "dark") for h in subject_hit for _ in range(10)]
    groups = [f"s{k}" for k in range(6) for _ in range(10)]
    by_item = fidelity_result(requested, predicted, Brightness.classes, task="tone", n_boot=500)
    by_subject = fidelity_result(requested, predicted, Brightness.classes, task="tone", groups=groups, n_boot=500)
    item, subj = by_item.details["per_class"]["bright"], by_subject.details["per_class"]["bright"]
    assert item["value"] == subj["value"] == pytest.approx(4 / 6)
    assert (item["n"], item["units"]) == (60, 60) and (subj["n"], subj["units"]) == (60, 6)
    assert subj["ci_low"] <= subj["value"] <= subj["ci_high"]
    assert subj["ci_high"] - subj["ci_low"] > 2.5 * (item["ci_high"] - item["ci_low"])
    assert by_subject.ci_high - by_subject.ci_low > 2.5 * (by_item.ci_high - by_item.ci_low)
    assert any("only 6 subjects" in w for w in by_subject.warnings)


def test_fidelity_none_without_conditions():
    assert fidelity_result([None, None], ["dark", "bright"], ["dark", "bright"], task="tone") is None


def _write_classifier(folder, info):
    folder.mkdir()
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))
    net(torch.rand(1, 1, 4, 4))
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 1, 4, 4)), str(folder / "classifier.pt"))
    (folder / "classifier.json").write_text(json.dumps(info))
    return folder


def test_torchscript_classifier_contract(tmp_path):
    clf = load_classifier(_write_classifier(tmp_path / "c", {"task": "orientation", "classes": ["AV", "RV"]}))
    assert clf.task == "orientation" and clf.classes == ["AV", "RV"] and len(clf.sha256) == 64
    assert clf.spatial_dims is None  # not recorded: images are passed as they are
    assert set(predict_labels(clf, torch.rand(3, 1, 4, 4))) <= {"AV", "RV"}


def test_a_2d_classifier_judges_a_volumes_central_slice(tmp_path):
    clf = load_classifier(_write_classifier(tmp_path / "c", {"task": "orientation", "classes": ["AV", "RV"],
                                                             "spatial_dims": 2}))
    volumes = torch.rand(3, 1, 4, 4, 5)
    assert torch.equal(clf(volumes), clf(volumes[..., 2]))
    assert clf(volumes).shape == (3, 2)


def test_classifier_json_needs_task_and_classes(tmp_path):
    folder = _write_classifier(tmp_path / "c", {"classes": ["AV"]})
    with pytest.raises(UserError, match="task"):
        load_classifier(folder)


def test_classifier_missing_file(tmp_path):
    with pytest.raises(UserError, match="classifier.pt"):
        load_classifier(tmp_path)


def test_classifier_wrong_logit_shape():
    class Bad(Brightness):
        classes = ["a", "b", "c"]

    with pytest.raises(UserError, match="logits"):
        predict_labels(Bad(), torch.rand(2, 1, 4, 4))


class _Tone(torch.nn.Module):
    """'3T' when an image's mean exceeds 0.5."""

    def forward(self, x):
        m = x.flatten(1).mean(1)
        return torch.stack([0.5 - m, m - 0.5], 1)


class _Features:
    name, sha256 = "means", "m" * 64

    def __call__(self, images):
        return torch.nn.functional.adaptive_avg_pool2d(images.float(), 4).flatten(1)


def test_a_judge_of_another_attribute_scores_every_set_and_the_real_items(tmp_path):
    import numpy as np

    from conftest import make_prepared_dataset, make_synthetic_set
    from uterosynth.core.errors import ConfigError
    from uterosynth.evaluation.config import EvaluationConfig
    from uterosynth.evaluation.runner import run_evaluation

    folder = tmp_path / "fs_judge"
    folder.mkdir()
    torch.jit.save(torch.jit.trace(_Tone(), torch.rand(1, 1, 4, 4)), str(folder / "classifier.pt"))
    (folder / "classifier.json").write_text(json.dumps({"task": "field_strength", "classes": ["1.5T", "3T"]}))
    root = make_prepared_dataset(tmp_path / "real", subjects=8, items_per_subject=2,
                                 attributes={"orientation": ["AV", "RV"], "field_strength": ["1.5T", "3T"]})
    strengths = ["1.5T", "3T"] * 8
    tone = np.stack([np.full((32, 32), 0.2 if f == "1.5T" else 0.8, np.float32) for f in strengths])
    tone += np.random.default_rng(0).uniform(0, 0.05, tone.shape).astype(np.float32)
    faithful = make_synthetic_set(tmp_path / "faithful", tone, [{"field_strength": f} for f in strengths])
    swapped = make_synthetic_set(tmp_path / "swapped", tone, [{"field_strength": f} for f in reversed(strengths)])
    cfg = EvaluationConfig.model_validate({"frd": {"enabled": False}, "bootstrap": {"n": 10},
                                           "kid": {"subsets": 3, "bootstrap_subsets": 1},
                                           "classifier": {"others": [str(folder)]}})
    metrics, _ = run_evaluation(root, faithful, cfg, baselines={"swapped": swapped}, extractor=_Features())
    (judge,) = metrics["judges"]
    assert judge["task"] == "field_strength" and judge["on_reference"]["details"]["per_class"]
    fidelity = {name: s["metrics"].get("conditioning_fidelity_field_strength") for name, s in metrics["sets"].items()}
    assert fidelity["synthetic"]["value"] == 1.0 and fidelity["swapped"]["value"] == 0.0
    assert fidelity["synthetic"]["details"]["per_class"]["3T"]["n"] == 8
    assert "conditioning_fidelity" not in metrics["sets"]["synthetic"]["metrics"]  # no orientation judge given

    twice = cfg.model_copy(update={"classifier": cfg.classifier.model_copy(update={"others": [folder, folder]})})
    with pytest.raises(ConfigError, match="classifier.others: two classifiers judge the same attribute"):
        run_evaluation(root, faithful, twice, extractor=_Features())

    from uterosynth.core.errors import DataError
    from uterosynth.data.manifest import PreparedDataset
    from uterosynth.data.subjects import training_subjects

    trained_on = training_subjects(PreparedDataset.load(root))  # a judge trained on the evaluated subjects
    (folder / "classifier.json").write_text(json.dumps({"task": "field_strength", "classes": ["1.5T", "3T"],
                                                        "training_subjects": trained_on}))
    with pytest.raises(DataError, match="judge of field_strength"):
        run_evaluation(root, faithful, cfg, extractor=_Features())


def test_volumes_judged_and_measured_slice_by_slice(tmp_path):
    """``volume_slices``: each volume's central slices are 2D items for the 2D judge and metrics,
    and the judge's intervals resample volumes, not slices."""
    import numpy as np

    from conftest import make_prepared_dataset, make_synthetic_set
    from uterosynth.core.errors import ConfigError
    from uterosynth.core.stats import wilson_ci, wilson_interval
    from uterosynth.data.evaluation_results import ClassAccuracy, read_evaluation
    from uterosynth.evaluation.config import EvaluationConfig
    from uterosynth.evaluation.runner import evaluate, run_evaluation

    judge = tmp_path / "judge"
    judge.mkdir()
    torch.jit.save(torch.jit.trace(_Tone(), torch.rand(1, 1, 16, 16)), str(judge / "classifier.pt"))
    (judge / "classifier.json").write_text(json.dumps({"task": "field_strength", "classes": ["1.5T", "3T"],
                                                       "spatial_dims": 2}))
    root = make_prepared_dataset(tmp_path / "real", dims=3, shape=(16, 16, 8), subjects=8, items_per_subject=1,
                                 attributes={"field_strength": ["1.5T", "3T"]})
    strengths = ["1.5T", "3T"] * 6
    volumes = np.stack([np.full((16, 16, 8), 0.2 if f == "1.5T" else 0.8, np.float32) for f in strengths])
    volumes[0, :, :, :4] = 0.9  # volume 0 (1.5 T) reads 3 T on its slices 2 and 3 of the central 4..5: 2 of 12
    volumes[1, :, :, 6:] = 0.1  # outside the central slices 2..5: never seen
    synthetic = make_synthetic_set(tmp_path / "synthetic", volumes, [{"field_strength": f} for f in strengths], dims=3)
    cfg = EvaluationConfig.model_validate({"frd": {"enabled": False}, "bootstrap": {"n": 20}, "volume_slices": 4,
                                           "kid": {"subsets": 3, "bootstrap_subsets": 1},
                                           "classifier": {"path": str(judge)}})
    metrics = evaluate(root, synthetic, tmp_path / "eval", cfg, extractor=_Features())
    assert metrics["reference"]["dims"] == 2 and metrics["reference"]["volume_slices"]["slices"] == [2, 3, 4, 5]
    assert metrics["classifier"]["view"] == "each of the 4 central sagittal slices of a volume"
    per_class = metrics["sets"]["synthetic"]["metrics"]["conditioning_fidelity"]["details"]["per_class"]
    assert per_class["1.5T"] == {**per_class["1.5T"], "n": 24, "units": 6, "correct": 22}
    assert per_class["3T"]["correct"] == 24 and metrics["sets"]["synthetic"]["shape"] == [16, 16]
    assert "kid" in metrics["sets"]["synthetic"]["metrics"]
    # the study reads the judge's interval over volumes (Wilson, 6 units), not the narrower one over 24 slices
    (worst,) = [c for c in read_evaluation(tmp_path / "eval").judge_accuracy() if c.cls == "1.5T"]
    assert worst.units == 6 and worst.unit_interval == pytest.approx(wilson_interval(22 / 24, 6))
    low, high = worst.unit_interval
    assert high - low > worst.interval[1] - worst.interval[0] and low <= 22 / 24 <= high
    assert ClassAccuracy("x", 3, 4, units=4).unit_interval == ClassAccuracy("x", 3, 4).interval == wilson_ci(3, 4)
    # a release that drops volume 0 reads the judge's answers on the other volumes' slices only
    kept = {str(i): f for i, f in enumerate(strengths) if i != 0}
    recount = {c.cls: (c.correct, c.n, c.units) for c in read_evaluation(tmp_path / "eval").judge_accuracy(requested=kept)}
    assert recount == {"1.5T": (20, 20, 5), "3T": (24, 24, 6)}

    flat = make_prepared_dataset(tmp_path / "flat", subjects=4, items_per_subject=2)
    with pytest.raises(ConfigError, match="volume_slices: .* holds 2D items"):
        run_evaluation(flat, None, cfg, extractor=_Features())
    with pytest.raises(ConfigError, match="volume_slices: .*9 central slices asked of volumes of 8 slices"):
        run_evaluation(root, synthetic, cfg.model_copy(update={"volume_slices": 9}), extractor=_Features())
