"""A release states its quality: judge accuracy per class (Wilson interval), KID against the floor and
the baselines, the audit; it refuses samples that fail the fidelity bar unless forced."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import fake_audit, fake_evaluation, make_synthetic_set
from uterosynth.cli import main
from uterosynth.core.artifacts import sha256_file
from uterosynth.core.errors import DataError
from uterosynth.core.stats import wilson_ci
from uterosynth.data.evaluation_results import METRICS_FILE, read_evaluation
from uterosynth.evaluation.classifier import fidelity_result
from uterosynth.release.config import ReleaseConfig
from uterosynth.release.release import release_dataset

CLASSES = ("AVAF", "RVRF")


def _syn(tmp_path: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    conds = [{"orientation": CLASSES[i % 2]} for i in range(2 * n)]
    return make_synthetic_set(tmp_path / "syn", rng.random((2 * n, 16, 20)).astype(np.float32), conds)


def _run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    return 0 if info.value.code is None else info.value.code


def test_datasheet_states_judge_accuracy_kid_and_audit(tmp_path):
    syn = _syn(tmp_path, n=40)
    ev = fake_evaluation(tmp_path / "ev", syn, {"AVAF": 40, "RVRF": 39}, 40)
    out = tmp_path / "rel"
    summary = release_dataset(syn, None, out, no_audit=True, evaluation_dir=ev)
    assert summary["quality"] == "passed"
    sheet = (out / "DATASHEET.md").read_text()
    quality = sheet[sheet.index("## Quality"):sheet.index("## Privacy audit")]
    lo, hi = wilson_ci(39, 40)
    assert f"| RVRF | 0.97 | [{lo:.2f}, {hi:.2f}] | 39 / 40 | pass | 1.00 (40 / 40) |" in quality
    assert "**passed**" in quality and "FAILED" not in sheet
    assert "| synthetic (this release) | 0.012 |" in quality and "| real vs real (noise floor) | 0.01 |" in quality
    assert "| baseline: reconstruction | 0.004 |" in quality and "| baseline: prior | 0.05 |" in quality
    assert "Memorisation audit: **none**" in quality and sha256_file(ev / METRICS_FILE) in quality


def test_datasheet_puts_the_judge_on_real_training_items_beside_the_samples(tmp_path):
    syn = _syn(tmp_path, n=40)
    ev = fake_evaluation(tmp_path / "ev", syn, {"AVAF": 40, "RVRF": 39}, 40, on_reference={"AVAF": 30, "RVRF": 40})
    out = tmp_path / "rel"
    release_dataset(syn, None, out, no_audit=True, evaluation_dir=ev)
    sheet = (out / "DATASHEET.md").read_text()
    lo, hi = wilson_ci(40, 40)
    assert (f"| AVAF | 1.00 | [{lo:.2f}, {hi:.2f}] | 40 / 40 | pass | 0.75 [0.00, 1.00] (30 / 40, 40 subjects) "
            "| 1.00 (40 / 40) |") in sheet
    assert "judge on real training items" in sheet and "cannot be expected to read above it" in sheet


def test_release_refuses_samples_below_the_bar_in_one_line(tmp_path, capsys):
    syn = _syn(tmp_path, n=20)
    ev = fake_evaluation(tmp_path / "ev", syn, {"AVAF": 20, "RVRF": 18}, 20)  # RVRF 0.90, but Wilson low 0.70
    out = tmp_path / "rel"
    assert _run(["release", "--synthetic", str(syn), "--no-audit", "--evaluation", str(ev), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    lo, hi = wilson_ci(18, 20)
    assert len(err.splitlines()) == 1 and "fidelity bar" in err and f"RVRF 0.90 [{lo:.2f}, {hi:.2f}] (18/20)" in err
    assert "AVAF" not in err.split("):", 1)[1].split("(from")[0] and err.endswith("(command line: --force)")
    assert not out.exists() and not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".rel*"))


def test_forced_release_says_it_failed_at_the_top(tmp_path):
    syn = _syn(tmp_path)
    ev = fake_evaluation(tmp_path / "ev", syn, {"AVAF": 1, "RVRF": 0}, 4)
    out = tmp_path / "rel"
    assert _run(["release", "--synthetic", str(syn), "--no-audit", "--evaluation", str(ev), "--out", str(out),
                 "--force"]) == 0
    sheet = (out / "DATASHEET.md").read_text()
    first = sheet.split("## Summary")[0]
    assert "THIS RELEASE FAILED ITS FIDELITY BAR" in first and "RVRF 0.00 [0.00, 0.49] (0/4)" in first
    assert "Quality: failed (forced)" in sheet and "| RVRF | 0.00 |" in sheet and "**fail**" in sheet


def test_bar_is_configurable(tmp_path):
    syn = _syn(tmp_path, n=10)
    ev = fake_evaluation(tmp_path / "ev", syn, {"AVAF": 10, "RVRF": 9}, 10)  # 10/10 has Wilson low 0.72
    assert _run(["release", "--synthetic", str(syn), "--no-audit", "--evaluation", str(ev), "--out",
                 str(tmp_path / "rel"), "--set", "quality.min_wilson_low=0.5"]) == 0
    (tmp_path / "bar.yaml").write_text("quality: {min_accuracy: 1.0, min_wilson_low: 0.0}\n")
    with pytest.raises(DataError, match="RVRF"):
        release_dataset(syn, None, tmp_path / "rel2", no_audit=True, evaluation_dir=ev,
                        config=ReleaseConfig.model_validate({"quality": {"min_accuracy": 1.0, "min_wilson_low": 0}}))
    assert _run(["release", "--synthetic", str(syn), "--no-audit", "--evaluation", str(ev), "--out",
                 str(tmp_path / "rel3"), "--config", str(tmp_path / "bar.yaml")]) == 2


def test_without_evaluation_the_datasheet_says_quality_was_not_evaluated(tmp_path):
    syn = _syn(tmp_path)
    summary = release_dataset(syn, None, tmp_path / "rel", no_audit=True)
    sheet = (tmp_path / "rel" / "DATASHEET.md").read_text()
    assert summary["quality"] == "not evaluated" and "**Quality was not evaluated.**" in sheet
    assert "FIDELITY BAR" not in sheet


def test_release_refuses_an_evaluation_of_another_set_or_without_a_judge(tmp_path):
    syn = _syn(tmp_path)
    other = make_synthetic_set(tmp_path / "other", np.zeros((2, 16, 20), np.float32), [{"orientation": "AVAF"}] * 2)
    ev = fake_evaluation(tmp_path / "ev", other, {"AVAF": 4, "RVRF": 4}, 4)
    with pytest.raises(DataError, match="another synthetic set"):
        release_dataset(syn, None, tmp_path / "rel", no_audit=True, evaluation_dir=ev)
    no_judge = fake_evaluation(tmp_path / "ev2", syn, {}, 4, judge=False)
    with pytest.raises(DataError, match="no judge accuracy"):
        release_dataset(syn, None, tmp_path / "rel", no_audit=True, evaluation_dir=no_judge)
    summary = release_dataset(syn, None, tmp_path / "rel", no_audit=True, evaluation_dir=no_judge, force=True)
    assert summary["quality"] == "failed (forced)"
    assert "Judge accuracy: not measured" in (tmp_path / "rel" / "DATASHEET.md").read_text()
    assert not (tmp_path / "missing").exists()
    with pytest.raises(DataError, match="metrics.json"):
        release_dataset(syn, None, tmp_path / "rel4", no_audit=True, evaluation_dir=tmp_path / "missing")


def test_reader_counts_what_the_evaluation_writes(tmp_path):
    requested = ["AVAF"] * 5 + ["RVRF"] * 3
    predicted = ["AVAF", "AVAF", "RVRF", "AVAF", "AVAF", "RVRF", "AVAF", "RVRF"]
    result = fidelity_result(requested, predicted, list(CLASSES), task="orientation", n_boot=10)
    syn = _syn(tmp_path)
    ev = fake_evaluation(tmp_path / "ev", syn, {"AVAF": 0}, 1)
    doc = json.loads((ev / METRICS_FILE).read_text())
    doc["sets"]["synthetic"]["metrics"]["conditioning_fidelity"] = result.to_json()
    (ev / METRICS_FILE).write_text(json.dumps(doc))
    classes = {c.cls: c for c in read_evaluation(ev).judge_accuracy()}
    assert (classes["AVAF"].correct, classes["AVAF"].n) == (4, 5) and (classes["RVRF"].correct, classes["RVRF"].n) == (2, 3)
    assert classes["AVAF"].interval == wilson_ci(4, 5)


def test_metrics_file_name_lives_in_one_module():
    """Only the evaluation artifact's module spells the file name; the writer imports it."""
    root = Path(__file__).resolve().parents[2] / "src" / "uterosynth"
    spelled = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == METRICS_FILE:
                spelled.append(path.relative_to(root).as_posix())
    assert spelled == ["data/evaluation_results.py"]
    assert "METRICS_FILE" in (root / "evaluation" / "runner.py").read_text()


def test_release_holds_the_judges_of_other_attributes_to_the_same_bar(tmp_path, capsys):
    syn = _syn(tmp_path, n=40)
    ev = fake_evaluation(tmp_path / "ev", syn, {"AVAF": 40, "RVRF": 39}, 40)   # orientation passes
    doc = json.loads((ev / METRICS_FILE).read_text())
    myoma = fidelity_result(["present"] * 40 + ["absent"] * 40, ["absent"] * 25 + ["present"] * 15 + ["absent"] * 40,
                            ("absent", "present"), task="myoma").to_json()
    doc["judges"] = [{"name": "judge_myoma", "sha256": "m" * 64, "task": "myoma", "classes": ["absent", "present"]}]
    doc["sets"]["synthetic"]["metrics"]["conditioning_fidelity_myoma"] = myoma
    (ev / METRICS_FILE).write_text(json.dumps(doc))
    out = tmp_path / "rel"
    assert _run(["release", "--synthetic", str(syn), "--no-audit", "--evaluation", str(ev), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "myoma present 0.38" in err and "(15/40)" in err and "AVAF" not in err
    assert not out.exists()
    summary = release_dataset(syn, None, out, no_audit=True, evaluation_dir=ev, force=True)
    assert summary["quality"] == "failed (forced)"
    sheet = (out / "DATASHEET.md").read_text()
    assert "| myoma | present | 0.38 |" in sheet and "| myoma | absent | 1.00 |" in sheet and "**fail**" in sheet


def test_the_bar_reads_the_released_draws_not_the_whole_set(tmp_path, capsys):
    """A set can pass as a whole and fail once its near-copies are dropped: the release holds the
    draws it releases to the bar, from the judge's answer on each draw."""
    syn = _syn(tmp_path, n=40)   # 80 draws, AVAF at even indices, RVRF at odd ones
    requested = [CLASSES[i % 2] for i in range(80)]
    answers = list(requested)
    answers[78] = "RVRF"         # one AVAF draw misread: AVAF 39/40 in the whole set, which passes
    ev = fake_evaluation(tmp_path / "ev", syn, {"AVAF": 39, "RVRF": 40}, 40)
    doc = json.loads((ev / METRICS_FILE).read_text())
    doc["sets"]["synthetic"]["metrics"]["conditioning_fidelity"] = fidelity_result(
        requested, answers, CLASSES, task="orientation", ids=[str(i) for i in range(80)]).to_json()
    (ev / METRICS_FILE).write_text(json.dumps(doc))
    assert release_dataset(syn, None, tmp_path / "whole", no_audit=True, evaluation_dir=ev)["quality"] == "passed"
    copies = fake_audit(tmp_path / "audit", syn, list(range(0, 60, 2)), 80)   # 30 AVAF draws flagged, all read right
    out = tmp_path / "rel"
    assert _run(["release", "--synthetic", str(syn), "--audit", str(copies), "--evaluation", str(ev),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    lo, hi = wilson_ci(9, 10)
    assert len(err.splitlines()) == 1 and f"AVAF 0.90 [{lo:.2f}, {hi:.2f}] (9/10)" in err and not out.exists()
    summary = release_dataset(syn, copies, out, evaluation_dir=ev, force=True)
    assert summary["released"] == 50 and summary["quality"] == "failed (forced)"
    sheet = (out / "DATASHEET.md").read_text()
    assert "| AVAF | 0.90 |" in sheet and "The judges are read on the 50 draws released" in sheet
    assert "| synthetic (every draw evaluated, near-copies included) | 0.012 |" in sheet
    few = fake_audit(tmp_path / "audit_few", syn, [0, 1], 80)   # one draw of each class dropped: still passes
    assert release_dataset(syn, few, tmp_path / "rel_few", evaluation_dir=ev)["quality"] == "passed"


def test_an_evaluation_without_answers_per_draw_cannot_vouch_for_a_part_of_the_set(tmp_path):
    syn = _syn(tmp_path, n=40)
    ev = fake_evaluation(tmp_path / "ev", syn, {"AVAF": 40, "RVRF": 40}, 40)   # counts only, as older versions wrote
    with pytest.raises(DataError, match=r"metrics.json: conditioning_fidelity keeps no answer per draw"):
        release_dataset(syn, fake_audit(tmp_path / "audit", syn, [0], 80), tmp_path / "rel", evaluation_dir=ev)
    assert not (tmp_path / "rel").exists()
    assert release_dataset(syn, fake_audit(tmp_path / "none", syn, [], 80), tmp_path / "rel",
                           evaluation_dir=ev)["quality"] == "passed"   # nothing dropped: the whole set is released


def test_a_volume_read_slice_by_slice_is_recounted_as_one_unit_of_several_items(tmp_path):
    syn = _syn(tmp_path, n=2)   # 4 draws: AVAF, RVRF, AVAF, RVRF
    ev = fake_evaluation(tmp_path / "ev", syn, {"AVAF": 2, "RVRF": 2}, 2)
    doc = json.loads((ev / METRICS_FILE).read_text())
    ids = [f"{i}#{j}" for i in range(4) for j in range(3)]   # three slices of each draw
    answers = ["AVAF"] * 3 + ["RVRF"] * 3 + ["AVAF", "RVRF", "RVRF"] + ["RVRF"] * 3
    requested = [CLASSES[int(i.split("#")[0]) % 2] for i in ids]
    doc["sets"]["synthetic"]["metrics"]["conditioning_fidelity"] = fidelity_result(
        requested, answers, CLASSES, task="orientation", ids=ids).to_json()
    (ev / METRICS_FILE).write_text(json.dumps(doc))
    evaluation = read_evaluation(ev)
    kept = evaluation.judge_accuracy(requested={"1": "RVRF", "2": "AVAF", "3": "RVRF"})   # draw 0 dropped
    assert [(c.cls, c.correct, c.n, c.units) for c in kept] == [("AVAF", 1, 3, 1), ("RVRF", 6, 6, 2)]
    assert evaluation.judge_accuracy(requested={"0": None, "1": "RVRF"})[0].n == 3   # no class: not counted
