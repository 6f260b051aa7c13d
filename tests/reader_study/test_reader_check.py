"""Leak audit: threshold rules, cross-validation, and `reader-study check` on clean and leaky studies."""

import json

import numpy as np
import pytest
from rs_support import _root_conftest, build_study, make_prepared_dataset, run_cli

from uterosynth.reader_study.check import RULES, check_study
from uterosynth.reader_study.config import StudyConfig
from uterosynth.reader_study.create import create_study
from uterosynth.reader_study.threshold import ThresholdRule, cv_accuracy, fit_threshold


def test_fit_threshold_finds_either_direction():
    y = np.array([True, True, False, False])
    assert fit_threshold(np.array([1.0, 2.0, 3.0, 4.0]), y) == ThresholdRule(2.5, above=False)
    rule = fit_threshold(np.array([5.0, 6.0, 1.0, 2.0]), y)
    assert rule == ThresholdRule(3.5, above=True) and rule.predict(np.array([5.0, 6.0, 1.0, 2.0])).tolist() == y.tolist()


def test_cv_accuracy_separable_constant_and_noise():
    y = np.repeat([False, True], 50)
    assert cv_accuracy(np.where(y, 1.0, 0.0) + np.arange(100) * 1e-3, y) == (100, 100)
    assert cv_accuracy(np.ones(100), y) == (50, 100)  # a useless feature scores chance, not 0 %
    correct, n = cv_accuracy(np.random.default_rng(3).normal(size=100), y)
    assert n == 100 and 30 <= correct <= 70  # best threshold chosen out of fold: no optimism
    assert cv_accuracy(np.ones(3), np.array([True, False, False])) == (0, 0)  # too few to validate


def test_clean_study_passes_and_cli_writes_check_json(tmp_path, capsys):
    s = build_study(tmp_path, per_source=8, raters=["alice", "bob", "carol"], class_by=[])
    assert run_cli(["reader-study", "check", str(s.root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    written = json.loads((s.root / "check.json").read_text())
    assert written["provenance"]["uterosynth_version"] and written["rules"] == summary["rules"]
    rules = {r["rule"]: r for r in summary["rules"]}
    assert list(rules) == list(RULES)
    assert rules["position"]["n"] == 3 * 16 and rules["png_bytes"]["n"] == 16
    assert rules["n_slices"]["accuracy"] == 0.5 and not rules["n_slices"]["leaks"]  # every image has 1 slice
    lo, hi = rules["n_slices"]["ci95"]
    assert lo < 0.5 < hi
    assert run_cli(["reader-study", "check", str(s.root)]) == 0  # the table for people
    assert "position" in capsys.readouterr().out


def test_position_leak_is_found(tmp_path):
    s = build_study(tmp_path, per_source=8, raters=["alice", "bob"], class_by=[])
    info = json.loads((s.root / "study.json").read_text())
    key = json.loads((s.root / "key.json").read_text())["items"]
    for r in info["raters"]:  # the former layout: real images first
        r["assignments"].sort(key=lambda a: key[a[1]]["source"] != "real")
    (s.root / "study.json").write_text(json.dumps(info))
    position = check_study(s.root).rules[0]
    assert position.rule == "position" and position.accuracy == 1.0 and position.leaks
    assert position.fitted == "synthetic if position > 7.5"


def test_image_statistics_leak_is_found(tmp_path):
    real = make_prepared_dataset(tmp_path / "r", shape=(24, 24), subjects=8)
    arrays = np.zeros((10, 24, 24), dtype=np.float32)
    arrays[:, 8:12, 8:12] = 1.0  # synthetic images: a small square on black
    syn = _root_conftest().make_synthetic_set(tmp_path / "s", arrays)
    create_study(real, syn, tmp_path / "study", StudyConfig(per_source=10, raters=["a"], size=24, class_by=[]))
    res = check_study(tmp_path / "study")
    rules = {r.rule: r for r in res.rules}
    assert res.leaks and rules["black_share"].leaks and rules["black_share"].accuracy == 1.0
    assert rules["black_share"].ci95[0] > 0.8 and rules["black_share"].fitted.startswith("synthetic if black_share >")


def test_check_of_a_missing_study_exits_2(tmp_path, capsys):
    assert run_cli(["reader-study", "check", str(tmp_path)]) == 2
    assert "not a reader study" in capsys.readouterr().err


@pytest.mark.parametrize("n_raters", [1, 4])
def test_position_rule_counts_every_rater(tmp_path, n_raters):
    s = build_study(tmp_path, per_source=2, raters=[f"r{k}" for k in range(n_raters)], class_by=[])
    assert check_study(s.root).rules[0].n == 4 * n_raters


def test_image_rules_do_not_depend_on_the_random_item_ids(tmp_path):
    """Two studies of the same images (ids and order drawn afresh) get the same image-statistics rules."""
    noise = np.random.default_rng(0)
    real = make_prepared_dataset(tmp_path / "r", shape=(24, 24), subjects=8)
    syn = _root_conftest().make_synthetic_set(tmp_path / "s", noise.random((10, 24, 24), dtype=np.float32))
    results = []
    for name in ("one", "two"):
        create_study(real, syn, tmp_path / name, StudyConfig(per_source=10, raters=["a"], size=24, class_by=[]))
        results.append([r for r in check_study(tmp_path / name).rules if r.rule != "position"])
    assert [r.correct for r in results[0]] == [r.correct for r in results[1]]
    assert results[0] == results[1]
