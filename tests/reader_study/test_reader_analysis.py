import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rs_support import build_study, run_cli

from uterosynth.reader_study.analysis import (
    Answer,
    agreement,
    analyze,
    auc_from_scores,
    cohen_kappa,
    detection_metrics,
    fleiss_kappa,
    realism_test,
)
from uterosynth.reader_study.main import create_app
from uterosynth.reader_study.report import roc_points
from uterosynth.reader_study.settings import Settings


def A(rater, item, truth, choice, conf=3, realism=3, cls=""):
    return Answer(rater, item, truth, choice, conf, realism, cls)


def test_detection_metrics_counts_and_rates():
    answers = ([A("a", f"s{i}", "synthetic", "synthetic") for i in range(6)]
               + [A("a", f"t{i}", "synthetic", "real") for i in range(2)]
               + [A("a", f"r{i}", "real", "real") for i in range(3)]
               + [A("a", f"q{i}", "real", "synthetic") for i in range(5)])
    m = detection_metrics(answers)
    assert (m["tp"], m["fn"], m["tn"], m["fp"]) == (6, 2, 3, 5)
    assert m["accuracy"] == pytest.approx(9 / 16)
    assert m["sensitivity"] == pytest.approx(6 / 8) and m["specificity"] == pytest.approx(3 / 8)
    lo, hi = m["accuracy_ci95"]
    assert lo < 9 / 16 < hi


def test_binomial_test_against_chance():
    perfect = [A("a", f"s{i}", "synthetic", "synthetic") for i in range(5)] + \
              [A("a", f"r{i}", "real", "real") for i in range(5)]
    assert detection_metrics(perfect)["binomial_p"] == pytest.approx(2 * 0.5**10)
    coin = [A("a", f"s{i}", "synthetic", "synthetic" if i % 2 else "real") for i in range(10)]
    assert detection_metrics(coin)["binomial_p"] == pytest.approx(1.0)


def test_auc_from_signed_confidence():
    assert auc_from_scores([5, 4, 3], [-5, -1, 2]) == 1.0
    assert auc_from_scores([1, 1], [1, 1]) == 0.5
    assert auc_from_scores([3, -2], [1, -4]) == pytest.approx(0.75)
    assert auc_from_scores([], [1]) is None
    # a confident wrong call ranks below a hesitant one
    answers = [A("a", "s1", "synthetic", "synthetic", 5), A("a", "s2", "synthetic", "real", 1),
               A("a", "r1", "real", "real", 5), A("a", "r2", "real", "synthetic", 2)]
    assert detection_metrics(answers)["auc"] == pytest.approx(0.75)
    fpr, tpr = roc_points(answers)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)


def test_cohen_kappa_textbook_example():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["y", "n"], ["y", "n"]) == pytest.approx(1.0)
    assert cohen_kappa(["y", "y"], ["y", "y"]) is None
    with pytest.raises(ValueError, match="differ in length"):
        cohen_kappa(["y"], ["y", "n"])


def test_fleiss_kappa_worked_example():
    # Fleiss (1971) style worked example: 10 items, 14 raters, 5 categories -> kappa 0.210
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)
    assert fleiss_kappa(np.array([[3, 0], [0, 3]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.array([[3, 0], [1, 1]]))


def test_agreement_picks_cohen_or_fleiss():
    two = [A(r, f"i{k}", "real", "real" if (k + (r == "b")) % 3 else "synthetic") for r in "ab" for k in range(9)]
    res = agreement(two)
    assert res["method"] == "cohen" and res["n_items"] == 9
    three = [A(r, f"i{k}", "real", "real" if k % 2 else "synthetic") for r in "abc" for k in range(6)]
    res = agreement(three)
    assert res["method"] == "fleiss" and res["kappa"] == pytest.approx(1.0)
    # items not rated by everyone are left out
    res = agreement(three + [A("a", "extra", "real", "real")])
    assert res["n_items"] == 6
    assert agreement([A("a", "i", "real", "real")])["method"] is None


def test_realism_mann_whitney():
    answers = [A("a", f"r{i}", "real", "real", realism=5) for i in range(6)] + \
              [A("a", f"s{i}", "synthetic", "real", realism=2) for i in range(6)]
    res = realism_test(answers)
    assert res["median_real"] == 5 and res["median_synthetic"] == 2
    assert res["u"] == 0.0 and res["p"] < 0.01
    assert res["histogram_real"] == [0, 0, 0, 0, 6] and res["histogram_synthetic"] == [0, 6, 0, 0, 0]


def test_analyze_per_rater_and_per_class():
    answers = [A(r, f"i{k}", "real" if k < 4 else "synthetic", "real", cls="c1" if k % 2 else "c2")
               for r in "ab" for k in range(8)]
    res = analyze(answers, ["a", "b", "c"])
    assert set(res["per_rater"]) == {"a", "b", "c"} and res["per_rater"]["c"]["n"] == 0
    assert res["pooled"]["specificity"] == 1.0 and res["pooled"]["sensitivity"] == 0.0
    assert set(res["per_class"]) == {"c1", "c2"} and res["per_class"]["c1"]["n"] == 8


def test_analyze_cli_writes_results_and_report(tmp_path):
    study = build_study(tmp_path, per_source=4, raters=["alice", "bob", "carol"])
    db = f"sqlite:///{tmp_path / 'answers.sqlite'}"
    app = create_app(Settings(study_dir=study.root, db_url=db))
    with TestClient(app) as c:
        for name, token in study.tokens.items():
            h = {"Authorization": f"Bearer {token}"}
            for k, item in enumerate(c.get("/api/rater/items", headers=h).json()):
                body = {"assignment_id": item["id"], "choice": "synthetic" if (k + len(name)) % 2 else "real",
                        "confidence": 1 + k % 5, "realism": 1 + (k * 3) % 5}
                if name == "alice":  # alice zooms every image 2x
                    body["display"] = {"window_center": 127.5, "window_width": 255, "zoom": 2}
                assert c.post("/api/rater/ratings", json=body, headers=h).status_code == 201
    app.state.engine.dispose()
    out = tmp_path / "analysis"
    assert run_cli(["reader-study", "analyze", str(study.root), "--db-url", db, "--out", str(out), "--json"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n_answers"] == 24 and results["agreement"]["method"] == "fleiss"
    assert results["provenance"]["uterosynth_version"] and results["study_id"]
    assert set(results["per_rater"]) == {"alice", "bob", "carol"}
    assert all(results["per_rater"][r]["n"] == 8 for r in results["per_rater"])
    assert len(results["per_class"]) == 4 and results["realism"]["pooled"]["p"] is not None
    display = results["display"]
    assert display["per_rater"]["alice"]["zoomed"] == 1.0 and display["per_rater"]["alice"]["window_changed"] == 0.0
    assert display["per_rater"]["bob"]["n_without"] == 8 and display["pooled"]["n_with"] == 8
    html = (out / "report.html").read_text()
    assert "Viewer use" in html and html.count("data:image/png;base64,") == 3 and "Fleiss" in html and "http://" not in html
    # a second run into the same folder needs --overwrite
    assert run_cli(["reader-study", "analyze", str(study.root), "--db-url", db, "--out", str(out)]) == 2


def test_analyze_missing_study_exits_2(tmp_path, capsys):
    assert run_cli(["reader-study", "analyze", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a reader study" in capsys.readouterr().err


def test_analyze_a_study_without_answers(tmp_path):
    study = build_study(tmp_path, per_source=2, raters=["alice", "bob"])
    out = tmp_path / "empty"
    assert run_cli(["reader-study", "analyze", str(study.root), "--db-url",
                    f"sqlite:///{tmp_path / 'none.sqlite'}", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n_answers"] == 0 and results["pooled"]["accuracy"] is None
    assert results["agreement"]["kappa"] is None and (out / "report.html").stat().st_size > 1000
    assert results["provenance"]["config"]["database"].endswith("none.sqlite")
