"""`uterosynth study`: the grid of cells, their pipelines, the executors, resume, failure isolation, claims."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from uterosynth.cli import main
from uterosynth.core.errors import ConfigError
from uterosynth.study import (
    ATTEMPT_END,
    ATTEMPT_START,
    CELL_STATUS,
    NO_TIME_LIMIT,
    StudyFailed,
    plan,
    run_study,
    summarize,
    verdict,
)

PIPELINE = {"out": "unused", "stages": [
    {"name": "cohort", "command": "phantom", "args": {"subjects": 2, "seed": 1, "workers": 1},
     "set": {"geometry.matrix": [32, 32], "geometry.slices": 4}, "done": "labels.csv"},
    {"name": "prepared", "command": "prepare", "args": {"source": "umd", "input": "${cohort}"},
     "set": {"preprocess.output.shape": [32, 32], "split.train": 0.5, "split.val": 0.5, "split.test": 0.0},
     "done": "manifest.csv"},
]}


def _study(tmp_path: Path, **changes) -> Path:
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(PIPELINE))
    study = {"out": "${here}/study_out", "pipeline": "pipeline.yaml", "seed_stages": ["cohort"], "seeds": [0],
             "axes": {"size": {"small": {"override": {"prepared": {"set": {"preprocess.output.shape": [16, 16]}}}},
                               "large": {}}},
             "executor": {"kind": "local"}, **changes}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_the_grid_is_every_axis_value_times_every_seed_with_its_overrides(tmp_path):
    path = _study(tmp_path, seeds=[0, 1], steps={"prepared": 7},
                  axes={"size": {"small": {"override": {"prepared": {"set": {"preprocess.output.shape": [16, 16]}}}},
                                 "large": {}},
                        "cohort": {"two": {}, "three": {"override": {"cohort": {"args": {"subjects": 3}}}}}})
    root, _, cells = plan(path)
    assert root == tmp_path / "study_out"
    assert [c.name for c in cells][:3] == ["size-small_cohort-two_seed-0", "size-small_cohort-two_seed-1",
                                           "size-small_cohort-three_seed-0"]
    assert len(cells) == 8
    three = next(c for c in cells if c.name == "size-large_cohort-three_seed-1")
    assert three.override == {"cohort": {"args": {"subjects": 3, "seed": 1}},
                              "prepared": {"set": {"train.steps": 7, "train.max_minutes": NO_TIME_LIMIT}}}
    assert dict(three.values) == {"size": "large", "cohort": "three"} and three.pipeline == tmp_path / "pipeline.yaml"
    _, _, kept = plan(_study(tmp_path, axes={"size": {"small": {}, "large": {}}, "cohort": {"two": {}, "three": {}}},
                             exclude=[{"size": "large", "cohort": "three"}]))
    assert [c.name for c in kept] == ["size-small_cohort-two_seed-0", "size-small_cohort-three_seed-0",
                                      "size-large_cohort-two_seed-0"]


def test_a_centre_combination_gives_it_and_its_departures_on_one_axis_at_a_time(tmp_path):
    axes = {"size": {"small": {}, "large": {}, "huge": {}}, "cohort": {"two": {}, "three": {}},
            "split": {"even": {}, "odd": {}}}
    claims = [{"statement": "large beats small", "axis": "size", "better": "large", "worse": "small"},
              {"statement": "three beats two", "axis": "cohort", "better": "three", "worse": "two"}]
    _, _, cells = plan(_study(tmp_path, axes=axes, centre={"size": "large", "cohort": "two", "split": "even"},
                              claims=claims, exclude=[{"size": "huge"}]))
    assert [c.name for c in cells] == ["size-large_cohort-two_split-even_seed-0", "size-small_cohort-two_split-even_seed-0",
                                       "size-large_cohort-three_split-even_seed-0", "size-large_cohort-two_split-odd_seed-0"]
    rows = [{"name": c.name, "values": dict(c.values), "seed": c.seed, "status": "not run"} for c in cells]
    from uterosynth.study import GridStudyConfig, _claims
    cfg = GridStudyConfig(out="o", pipeline="p", axes=axes, claims=claims)
    assert [claim["cells"] for claim in _claims(cfg, rows)] == [   # each claim: the one pair that differs on its axis
        [["size-large_cohort-two_split-even_seed-0", "size-small_cohort-two_split-even_seed-0"]],
        [["size-large_cohort-three_split-even_seed-0", "size-large_cohort-two_split-even_seed-0"]]]
    _, _, seeded = plan(_study(tmp_path, axes=axes, centre={"size": "large", "cohort": "two", "split": "even"},
                               seeds=[0, 1]))
    assert len(seeded) == 2 * 5 and [c.seed for c in seeded[:2]] == [0, 1]   # each combination once per seed
    between = {"statement": "small beats huge", "axis": "size", "better": "small", "worse": "huge"}
    rows = [{"name": c.name, "values": dict(c.values), "seed": c.seed, "status": "not run"} for c in seeded]
    pairs = _claims(GridStudyConfig(out="o", pipeline="p", axes=axes, claims=[between]), rows)[0]["cells"]
    assert pairs == [[f"size-small_cohort-two_split-even_seed-{s}", f"size-huge_cohort-two_split-even_seed-{s}"]
                     for s in (0, 1)]   # two departures pair with each other, once per seed
    with pytest.raises(ConfigError, match=r"leaves out the centre"):
        plan(_study(tmp_path, axes=axes, centre={"size": "huge", "cohort": "two", "split": "even"},
                    exclude=[{"size": "huge"}]))
    for centre, message in [({"size": "large"}, r"it needs one value for each axis"),
                            ({"size": "tiny", "cohort": "two", "split": "even"}, r"centre: axis 'size' has no value")]:
        with pytest.raises(ConfigError, match=message):
            plan(_study(tmp_path, axes=axes, centre=centre))


def test_a_cells_attempts_are_read_from_its_log_a_killed_one_until_its_last_line(tmp_path):
    from uterosynth.study import _earlier_attempts

    log = tmp_path / "run.log"
    assert _earlier_attempts(tmp_path) == []   # no log yet
    log.write_text("stage 1/2 a: running\n")   # a log of an older version, and no record: nothing to count
    assert _earlier_attempts(tmp_path) == []
    log.write_text(f"{ATTEMPT_START} 1000.0\nstage 1/2 a: running\n{ATTEMPT_END} 12.5\n"
                   f"{ATTEMPT_START} 2000.0\ntrain: 5/10 (50 %) after 3 s · loss=0.1")   # killed mid-line
    os.utime(log, (2030.0, 2030.0))
    assert _earlier_attempts(tmp_path) == [12.5, 30.0]
    assert log.read_text().endswith(f"loss=0.1\n{ATTEMPT_END} 30.0 (killed: until its last line)\n")
    assert _earlier_attempts(tmp_path) == [12.5, 30.0]   # the killed attempt is read back, not measured again


def test_an_older_versions_record_keeps_counting_after_a_retry(tmp_path):
    """A cell an older version ran (no marks in its log, its seconds in cell.json) and then retried:
    its first attempt's seconds are carried into the log, so every later attempt still counts them."""
    from uterosynth.study import _earlier_attempts

    (tmp_path / "run.log").write_text("stage 1/2 a: running\nerror: release failed\n")
    (tmp_path / CELL_STATUS).write_text(json.dumps({"status": "failed", "seconds": 2344.2}))
    assert _earlier_attempts(tmp_path) == [2344.2]
    with open(tmp_path / "run.log", "a") as log:   # the retry, as run_cell marks it
        log.write(f"{ATTEMPT_START} 5000.0\n{ATTEMPT_END} 2.3\n")
    (tmp_path / CELL_STATUS).write_text(json.dumps({"status": "failed", "seconds": 2346.5, "attempts": [2344.2, 2.3]}))
    assert _earlier_attempts(tmp_path) == [2344.2, 2.3]
    (tmp_path / CELL_STATUS).unlink()   # the log alone holds them now
    assert _earlier_attempts(tmp_path) == [2344.2, 2.3]


def test_the_studys_own_override_reaches_every_cell_and_an_axis_value_wins_over_it(tmp_path):
    root, _, cells = plan(_study(tmp_path, override={
        "cohort": {"args": {"subjects": 3}},
        "prepared": {"set": {"preprocess.output.shape": [24, 24], "split.val": 0.25}}}))
    small, large = cells
    assert small.override["cohort"] == large.override["cohort"] == {"args": {"subjects": 3, "seed": 0}}
    assert small.override["prepared"]["set"] == {"preprocess.output.shape": [16, 16], "split.val": 0.25}  # the axis wins
    assert large.override["prepared"]["set"] == {"preprocess.output.shape": [24, 24], "split.val": 0.25}
    _, _, plain = plan(_study(tmp_path))
    assert small.digest != plain[0].digest  # a finished cell of the plain study is not reused for this one
    with pytest.raises(ConfigError, match="override of unknown stage"):
        plan(_study(tmp_path, override={"nosuchstage": {"args": {"k": 1}}}))


@pytest.mark.parametrize(("changes", "message"), [
    ({"axes": {"a": {"x": {"override": {"cohort": {"args": {"subjects": 3}}}}},
               "b": {"y": {"override": {"cohort": {"args": {"subjects": 4}}}}}}},
     r"axis 'a' and axis 'b' both set cohort\.args\.subjects"),
    ({"axes": {"a": {"x": {"override": {"prepared": {"set": {"preprocess.output.shape": [8, 8]}}}}},
               "b": {"y": {"override": {"prepared": {"set": {"preprocess": {"output": {"shape": [9, 9]}}}}}}}}},
     r"axis 'a' and axis 'b' both set prepared\.set\.preprocess;"),
    ({"axes": {"a": {"x": {"override": {"prepared": {"set": {"preprocess.output.shape": [8, 8]}}}}},
               "b": {"y": {"override": {"prepared": {"set": {"preprocess.output": {"slices": "central"}}}}}}}},
     r"axis 'a' and axis 'b' both set prepared\.set\.preprocess\.output"),
    ({"axes": {"a": {"x": {"override": {"cohort": {"args": {"seed": 5}}}}}}},
     r"axis 'a' and 'seed_stages' both set cohort\.args\.seed"),
    ({"seed_stages": ["nosuch"]}, r"key 'seed_stages': cell 'size-small_seed-0' has no stage nosuch"),
    ({"axes": {"a": {"x_y": {}}}}, r"name 'x_y' may hold only"),
    ({"axes": {"..": {"x": {}}}}, r"name '\.\.' may hold only"),
    ({"seeds": [0, 0]}, "a seed is listed twice"),
    ({"claims": [{"statement": "s", "axis": "size", "better": "small", "worse": "small"}]}, "are both 'small'"),
    ({"axes": {"a": {"x": {"override": {"nosuchstage": {"args": {"k": 1}}}}}}},
     r"cell 'a-x_seed-0': .*override of unknown stage\(s\): nosuchstage"),
    ({"claims": [{"statement": "s", "axis": "size", "better": "small", "worse": "huge"}]},
     r"axis 'size' has no value 'huge'"),
    ({"axes": {"a": {"x": {"pipeline": "p.yaml"}}, "b": {"y": {"pipeline": "q.yaml"}}}},
     "only one axis may change the base pipeline"),
    ({"exclude": [{"size": "medium"}]}, r"exclude entry .*axis 'size' has no value 'medium'"),
    ({"exclude": [{"size": "small"}, {"size": "large"}]}, "'exclude' leaves no cell to run"),
])
def test_a_bad_study_file_is_refused_before_anything_is_written(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        plan(_study(tmp_path, **changes))
    assert not (tmp_path / "study_out").exists()


@pytest.mark.parametrize(("better", "worse", "lower", "expected"), [
    ([{"value": 1, "ci_low": 0.5, "ci_high": 1.5}], [{"value": 3, "ci_low": 2, "ci_high": 4}], True, "supported"),
    ([{"value": 3, "ci_low": 2, "ci_high": 4}], [{"value": 1, "ci_low": 0.5, "ci_high": 1.5}], True, "not supported"),
    ([{"value": 1, "ci_low": 0.5, "ci_high": 2.5}], [{"value": 3, "ci_low": 2, "ci_high": 4}], True,
     "inconclusive at this size"),
    ([{"value": 0.95, "ci_low": 0.9, "ci_high": 0.98}, {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95}],
     [{"value": 0.7, "ci_low": 0.6, "ci_high": 0.8}, {"value": 0.85, "ci_low": 0.8, "ci_high": 0.9}], False,
     "inconclusive at this size"),   # one pair separates, the other overlaps
    ([], [], True, "inconclusive at this size"),
    ([{"value": 1, "ci_low": None, "ci_high": None}], [{"value": 3, "ci_low": 2, "ci_high": 4}], True,
     "inconclusive at this size"),
])
def test_a_claim_needs_every_pair_of_intervals_to_separate(better, worse, lower, expected):
    assert verdict(better, worse, lower_is_better=lower) == expected


def test_cells_run_through_submitit_resume_and_fail_alone(tmp_path):
    broken = {"override": {"prepared": {"args": {"input": str(tmp_path / "nowhere")}}}}
    path = _study(tmp_path, executor={"kind": "submitit", "cluster": "local", "parameters": {"timeout_min": 10}},
                  axes={"size": {"small": {"override": {"prepared": {"set": {"preprocess.output.shape": [16, 16]}}}},
                                 "large": {}, "broken": broken}},
                  claims=[{"statement": "smaller is better", "axis": "size", "better": "small", "worse": "large"}])
    root, cfg, cells = plan(path)
    seen: list[tuple[str, str]] = []
    with pytest.raises(StudyFailed, match=r"1 of 3 cell\(s\) failed: size-broken_seed-0"):
        run_study(root, cfg, cells, on_cell=lambda cell, state: seen.append((cell.name, state)))
    assert ("size-small_seed-0", "ok") in seen and ("size-broken_seed-0", "failed") in seen
    small = root / "cells" / "size-small_seed-0"
    assert (small / "prepared" / "manifest.csv").is_file() and (small / "report.html").is_file()
    assert (root / "submitit").is_dir()  # submitit's own job folder: the engine ran the cells
    document = json.loads((root / "study.json").read_text())
    assert [c["status"] for c in document["cells"]] == ["ok", "ok", "failed"]
    assert document["claims"][0]["pairs"] == 1 and document["claims"][0]["verdict"] == "inconclusive at this size"
    assert "smaller is better" in (root / "study.html").read_text()

    done_at = (small / CELL_STATUS).stat().st_mtime_ns
    seen.clear()
    with pytest.raises(StudyFailed):
        run_study(root, cfg, cells, on_cell=lambda cell, state: seen.append((cell.name, state)))
    assert ("size-small_seed-0", "skipped (done)") in seen and ("size-large_seed-0", "skipped (done)") in seen
    assert ("size-broken_seed-0", "failed") in seen
    assert (small / CELL_STATUS).stat().st_mtime_ns == done_at

    # a cell killed after its first stage: the rerun keeps that stage and runs the rest, and its
    # seconds count the killed attempt until the log's last line
    large = root / "cells" / "size-large_seed-0"
    shutil.rmtree(large / "prepared")
    (large / CELL_STATUS).unlink()
    log = large / "run.log"
    lines = log.read_text().splitlines()
    assert lines[0].startswith(ATTEMPT_START) and lines[-1].startswith(ATTEMPT_END)
    log.write_text("\n".join(lines[:-1]) + "\n")   # killed: no end line
    started = float(lines[0].split()[-1])
    os.utime(log, (started + 42.0, started + 42.0))
    cohort_at = (large / "cohort" / "labels.csv").stat().st_mtime_ns
    with pytest.raises(StudyFailed, match="size-broken_seed-0$|size-broken_seed-0 "):
        run_study(root, cfg, cells)
    record = json.loads((large / CELL_STATUS).read_text())
    assert (large / "prepared" / "manifest.csv").is_file() and record["status"] == "ok"
    assert record["attempts"][0] == 42.0 and len(record["attempts"]) == 2
    assert record["seconds"] == pytest.approx(42.0 + record["attempts"][1], abs=0.11)
    assert "ended after 42.0 (killed" in log.read_text()
    assert (large / "cohort" / "labels.csv").stat().st_mtime_ns == cohort_at

    # the study file changed under a finished cell: refused, its record untouched
    edited = yaml.safe_load(path.read_text())
    edited["axes"]["size"]["small"]["override"]["prepared"]["set"]["preprocess.output.shape"] = [24, 24]
    path.write_text(yaml.safe_dump(edited, sort_keys=False))
    before = (small / "cell.yaml").read_text()
    with pytest.raises(ConfigError, match="cell 'size-small_seed-0' was run with another configuration"):
        run_study(*plan(path))
    assert (small / "cell.yaml").read_text() == before


def test_only_the_selected_cells_run_and_the_others_are_read_as_they_stand(tmp_path):
    broken = {"override": {"prepared": {"args": {"input": str(tmp_path / "nowhere")}}}}
    path = _study(tmp_path, axes={"size": {"small": {}, "large": {}, "broken": broken}})
    root, cfg, cells = plan(path)
    with pytest.raises(StudyFailed, match=r"1 of 3 cell\(s\) failed: size-broken_seed-0"):
        run_study(root, cfg, cells, only=["size-broken*"])
    broken_record = (root / "cells" / "size-broken_seed-0" / CELL_STATUS).read_text()
    seen: list[tuple[str, str]] = []
    with pytest.raises(StudyFailed, match=r"1 of 3 cell\(s\) failed: size-broken_seed-0"):  # still failed: not retried
        run_study(root, cfg, cells, only=["size-s*"], on_cell=lambda cell, state: seen.append((cell.name, state)))
    assert seen == [("size-small_seed-0", "queued"), ("size-large_seed-0", "kept (not selected)"),
                    ("size-broken_seed-0", "kept (not selected)"), ("size-small_seed-0", "ok")]
    assert not (root / "cells" / "size-large_seed-0").exists()
    assert (root / "cells" / "size-broken_seed-0" / CELL_STATUS).read_text() == broken_record
    document = json.loads((root / "study.json").read_text())
    assert [c["status"] for c in document["cells"]] == ["ok", "not run", "failed"]
    with pytest.raises(ConfigError, match=r"cell pattern 'size-huge\*' matches no cell of the study"):
        run_study(root, cfg, cells, only=["size-huge*"])
    with pytest.raises(SystemExit) as info:
        main(["study", str(path), "--cell", "size-l*"])
    assert info.value.code == 2  # the broken cell, kept as it stands, still fails the study
    assert json.loads((root / "study.json").read_text())["cells"][1]["status"] == "ok"


def test_a_stage_is_shared_only_between_cells_that_make_it_from_equal_inputs(tmp_path):
    from uterosynth.study import _shared_stages

    root, _, cells = plan(_study(tmp_path, axes={
        "size": {"small": {"override": {"prepared": {"set": {"preprocess.output.shape": [16, 16]}}}}, "large": {}},
        "cohort": {"two": {}, "three": {"override": {"cohort": {"args": {"subjects": 3}}}}}}))
    shared = _shared_stages(root, cells)
    (cohort,) = shared["size-small_cohort-two_seed-0"].values()
    assert list(shared["size-small_cohort-two_seed-0"]) == ["cohort"] and cohort["done"] == "labels.csv"
    assert shared["size-large_cohort-two_seed-0"]["cohort"] == cohort
    assert cohort["store"].startswith("stages/cohort-")
    # the same 'prepared' settings on another cohort are another stage: nothing but the cohort is shared
    assert set(shared["size-large_cohort-three_seed-0"]) == {"cohort"}
    assert shared["size-large_cohort-three_seed-0"]["cohort"] != cohort
    _, _, seeded = plan(_study(tmp_path, seeds=[0, 1]))  # the cohort takes the seed: shared within a seed only
    by_seed = {name: entry["cohort"]["store"] for name, entry in _shared_stages(root, seeded).items()}
    assert by_seed["size-small_seed-0"] == by_seed["size-large_seed-0"] != by_seed["size-small_seed-1"]


def test_two_stages_made_alike_under_different_names_are_not_taken_for_each_other(tmp_path):
    from uterosynth.study import _shared_stages

    twice = {**PIPELINE, "stages": [*PIPELINE["stages"], {**PIPELINE["stages"][1], "name": "again"}]}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(twice))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"out": "${here}/s", "pipeline": "pipeline.yaml", "seed_stages": ["cohort"],
                                    "axes": {"size": {
        "small": {"override": {"prepared": {"set": {"preprocess.output.shape": [16, 16]}}}}, "large": {}}}}))
    root, _, cells = plan(path)
    shared = _shared_stages(root, cells)
    # large's 'prepared' is made like both cells' 'again', but only the stage of the same name is its twin
    assert set(shared["size-small_seed-0"]) == {"cohort", "again"} == set(shared["size-large_seed-0"])


def test_a_finished_shared_stage_is_stored_once_and_linked_into_the_cells_that_need_it(tmp_path):
    import os

    root, cfg, cells = plan(_study(tmp_path, seed_stages=["prepared"]))  # both cells: the same cohort
    run_study(root, cfg, cells)
    small, large = (root / "cells" / c.name for c in cells)
    (stored,) = (root / "stages").iterdir()
    assert stored.name.startswith("cohort-") and (stored / "labels.csv").is_file()
    for cell in (small, large):
        assert (cell / "cohort").is_symlink() and not os.path.isabs(os.readlink(cell / "cohort"))
        assert (cell / "cohort").resolve() == stored.resolve()
    assert not (large / "prepared").is_symlink() and (large / "prepared" / "manifest.csv").is_file()
    records = [json.loads((c / CELL_STATUS).read_text()) for c in (small, large)]
    assert [(r["shared"], r["stored"]) for r in records] == [([], ["cohort"]), (["cohort"], [])]
    document = json.loads((root / "study.json").read_text())
    assert [c["results"]["shared"] for c in document["cells"]] == [[], ["cohort"]]
    assert "stages made by another cell, not counted: cohort" in (root / "study.html").read_text()

    shutil.move(small, tmp_path / "moved")  # the cell that made it is moved away: the store keeps it
    (large / CELL_STATUS).unlink()
    run_study(root, cfg, cells)
    for cell in (small, large):
        assert (cell / "cohort").resolve() == stored.resolve()
        assert json.loads((cell / CELL_STATUS).read_text())["shared"] == ["cohort"]


def test_an_unfinished_store_entry_is_not_linked_and_a_stage_the_cell_began_is_kept(tmp_path):
    from uterosynth.study import SHARED_FILE, _link_shared

    root = tmp_path / "study"
    cell = root / "cells" / "c"
    cell.mkdir(parents=True)
    (cell / SHARED_FILE).write_text(json.dumps({
        "cohort": {"done": "labels.csv", "store": "stages/cohort-1"},
        "prepared": {"done": "manifest.csv", "store": "stages/prepared-1"}}))
    (root / "stages" / "cohort-1").mkdir(parents=True)      # begun by another cell, not finished
    (root / "stages" / "prepared-1").mkdir()
    (root / "stages" / "prepared-1" / "manifest.csv").write_text("done")
    (cell / "prepared").mkdir()                              # this cell's own run, unfinished
    assert _link_shared(cell) == []
    assert not (cell / "cohort").exists() and not (cell / "prepared").is_symlink()
    (root / "stages" / "cohort-1" / "labels.csv").write_text("done")
    (cell / "prepared").rmdir()
    assert _link_shared(cell) == ["cohort", "prepared"]
    assert (cell / "prepared" / "manifest.csv").read_text() == "done"


def test_the_report_only_option_runs_no_cell_and_writes_the_report(tmp_path, capsys):
    path = _study(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["study", str(path), "--report-only", "--json"])
    assert info.value.code in (0, None)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    root = Path(summary["out"])
    document = json.loads((root / "study.json").read_text())
    assert [c["status"] for c in document["cells"]] == ["not run", "not run"]
    assert (root / "study.md").is_file() and (root / "study.html").is_file()
    assert not (root / "cells").exists()   # no cell folder made, nothing run

def test_the_command_lists_cells_and_refuses_a_bad_file_in_one_line(tmp_path, capsys):
    path = _study(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["study", str(path), "--dry-run"])
    assert info.value.code in (0, None)
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == ["size-small_seed-0",
                                                                                     "size-large_seed-0"]
    bad = _study(tmp_path, axes={"size": {}})
    with pytest.raises(SystemExit) as info:
        main(["study", str(bad)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "study.yaml" in err and "size" in err


@pytest.mark.parametrize("preset", sorted((Path(__file__).resolve().parents[1] / "src/uterosynth/configs").glob("study_*.yaml")),
                         ids=lambda p: p.name)
def test_every_study_preset_plans_cells_whose_pipelines_are_valid(preset, tmp_path):
    root, cfg, cells = plan(preset, out=tmp_path / "s")
    assert cells and root == tmp_path / "s" and cfg.claims
    names = {c.name for c in cells}
    for claim in cfg.claims:  # every claim has at least one pair of cells to compare
        assert any(c.values[claim.axis] == claim.better and
                   c.name.replace(f"{claim.axis}-{claim.better}", f"{claim.axis}-{claim.worse}") in names for c in cells)


def test_a_study_built_on_another_by_base_adds_an_axis_and_keeps_that_studys_cells():
    """configs/study_budget_cpu.yaml is the conditioning study plus a budget axis, with the other
    conditionings excluded: its 2000-step cells run what that study's labels + text cells run."""
    presets = Path(__file__).resolve().parents[1] / "src/uterosynth/configs"
    _, _, budget = plan(presets / "study_budget_cpu.yaml")
    _, _, conditioning = plan(presets / "study_conditioning_cpu.yaml")
    assert sorted(c.name for c in budget) == sorted(
        f"conditioning-labels+text_ldm-steps-{steps}_seed-{seed}" for steps in (2000, 8000) for seed in (0, 1, 2))
    same = {c.seed: c.digest for c in conditioning if c.values["conditioning"] == "labels+text"}
    assert {c.seed: c.digest for c in budget if c.values["ldm-steps"] == "2000"} == same
    longer = [c for c in budget if c.values["ldm-steps"] == "8000"]
    assert all(c.override["diffusion"]["set"]["train.steps"] == 8000 and c.digest not in same.values() for c in longer)


def test_the_cohort_study_keeps_the_budget_studys_8000_step_cells_and_changes_only_the_cohort_size():
    """configs/study_cohort_cpu.yaml: its 240-subject cells run what the budget study's 8000-step
    cells run; its 720-subject cells differ from them in the phantom's subjects alone."""
    presets = Path(__file__).resolve().parents[1] / "src/uterosynth/configs"
    _, cfg, cohort = plan(presets / "study_cohort_cpu.yaml")
    _, _, budget = plan(presets / "study_budget_cpu.yaml")
    longer = {c.seed: c for c in budget if c.values["ldm-steps"] == "8000"}
    assert sorted((c.values["subjects"], c.seed) for c in cohort) == [(n, s) for n in ("240", "720") for s in (0, 1, 2)]
    for cell in cohort:
        same = longer[cell.seed]
        if cell.values["subjects"] == "240":
            assert cell.digest == same.digest
        else:
            assert cell.override == {**same.override, "phantom": {"args": {"subjects": 720}}}
    assert [c.axis for c in cfg.claims] == ["subjects"] * 4
    assert {c.metric for c in cfg.claims} == {"judge_worst", "audit_flagged"}


@pytest.mark.slow
def test_the_table_reads_each_cells_judge_kid_audit_and_samples(tmp_path, monkeypatch):
    """One real cell (the quick demo's chain); its copy stands for a second value of the axis."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "out": "${here}/s", "pipeline": "${presets}/pipeline_cpu_quick.yaml",
        "override": {"judge_field_strength": {"skip": False},
                     "evaluation": {"set": {"classifier.others": ["${judge_field_strength}"]}}},
        "axes": {"variant": {"a": {}, "b": {}}},
        "claims": [{"statement": "a beats b", "axis": "variant", "better": "a", "worse": "b", "metric": "judge_worst"},
                   {"statement": "a has lower KID", "axis": "variant", "better": "a", "worse": "b"}]}))
    root, cfg, cells = plan(path)
    run_study(root, cfg, cells[:1])
    a, b = (root / "cells" / c.name for c in cells)
    assert json.loads((a / CELL_STATUS).read_text())["status"] == "ok"
    shutil.copytree(a, b)
    document = summarize(root, cfg, cells)
    results = document["cells"][0]["results"]
    assert set(results["judge"]) == {"AVAF", "AVRF", "RVAF", "RVRF"}
    strength = results["judges"]["field_strength"]  # the second judge, of the other conditioned attribute
    assert len(strength["judge"]) == 2 and strength["judge_worst"]["ci_low"] <= strength["judge_worst"]["value"]
    worst = results["judge_worst"]
    assert worst["ci_low"] <= worst["value"] <= worst["ci_high"]
    assert {"synthetic", "real_vs_real"} <= set(results["kid"]) and results["kid"]["synthetic"]["n"] > 0
    for metric in ("fid", "msssim_diversity"):
        m = results[metric]["synthetic"]
        assert m["ci_low"] <= m["value"] <= m["ci_high"], metric
    assert "frd" not in results  # the quick chain does not measure it
    gains = results["downstream"]
    assert gains and len({g["budget"] for g in gains}) == 1
    assert all(g["ci_low"] <= g["value"] <= g["ci_high"] for g in gains)
    assert 0 <= results["audit"]["flagged_fraction"] <= 1 and results["training"]["diffusion"]["steps"] == 20
    trained = results["training"]["diffusion"]   # its counted compute, shown in the table
    assert trained["flops"] > 0 and f"diffusion 20 steps, {trained['flops']:.2g} FLOP" in (root / "study.md").read_text()
    assert [c["verdict"] for c in document["claims"]] == ["inconclusive at this size"] * 2  # identical cells
    page = (root / "study.html").read_text()
    assert page.count("<use ") >= 8 and "cells/variant-a_seed-0/report.html" in page  # a grid per cell
    assert "FID [95 % CI]" in page and "field_strength: " in page and f"budget {gains[0]['budget']:g}" in page
    for judged in (results, strength):   # each judge's accuracy on real reference items, beside what it reads
        real = judged["real"]
        assert real["ci_low"] <= real["value"] <= real["ci_high"] and real["worst"]["value"] <= real["value"]
    assert "on real items" in page
    claim = document["claims"][0]
    assert claim["measured"] == [[worst, worst]]   # the copy measures as its original
    # a cell that failed after its evaluation (its release refused the samples) is still measured
    (b / CELL_STATUS).write_text(json.dumps({**json.loads((b / CELL_STATUS).read_text()), "status": "failed"}))
    with open(b / "run.log", "a") as log:
        log.write("error: stage(s) release failed (release: the samples fail the fidelity bar); report: r.html\n")
    document = summarize(root, cfg, cells)
    failed = document["cells"][1]
    assert failed["status"] == "failed" and failed["error"].startswith("stage(s) release failed")
    assert failed["results"]["judge_worst"] == worst and document["claims"][0]["measured"] == [[worst, worst]]
    assert "failed at release" in (root / "study.html").read_text()
    markdown = (root / "study.md").read_text()
    assert "| b | 0 | failed at release |" in markdown
    assert "| a beats b | variant: a vs b | judge_worst |" in markdown and "inconclusive at this size" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| a | 0 | ok |")]
    assert len(table) == 1 and f"{worst['class']} " in table[0]   # the judges' part: one row per cell
    assert markdown.count("\n| b | 0 |") == 3   # each cell in each of the three parts


def test_a_claim_with_an_unmeasured_pair_stays_inconclusive_and_a_cell_failed_after_measuring_counts():
    from uterosynth.study import GridStudyConfig, _claims

    cfg = GridStudyConfig.model_validate({
        "out": "o", "pipeline": "p.yaml", "seeds": [0, 1], "axes": {"m": {"a": {}, "b": {}}},
        "claims": [{"statement": "a beats b", "axis": "m", "better": "a", "worse": "b"}]})

    def cell(value: str, seed: int, kid: float, status: str = "ok") -> dict:
        return {"name": f"m-{value}_seed-{seed}", "values": {"m": value}, "seed": seed, "status": status,
                "results": {"kid": {"synthetic": {"value": kid, "ci_low": kid - 0.1, "ci_high": kid + 0.1}}}}

    separated = [cell("a", 0, 1.0), cell("b", 0, 2.0), cell("a", 1, 1.0), cell("b", 1, 2.0)]
    assert _claims(cfg, separated)[0]["verdict"] == "supported" and _claims(cfg, separated)[0]["seeds"] == 2
    before_evaluation = {**cell("b", 1, 2.0, status="failed"), "results": {}}   # failed before it measured
    for broken in (before_evaluation, cell("b", 1, 2.0, status="lost"), cell("b", 1, 2.0, status="not run")):
        (claim,) = _claims(cfg, [*separated[:3], broken])
        assert (claim["pairs"], claim["measured_pairs"], claim["verdict"]) == (2, 1, "inconclusive at this size")
    (claim,) = _claims(cfg, [*separated[:3], cell("b", 1, 2.0, status="failed")])   # failed after it measured
    assert (claim["measured_pairs"], claim["verdict"]) == (2, "supported")


def test_the_downstream_column_keeps_every_protocol_at_the_smallest_budget():
    from uterosynth.study import _downstream_gains

    def gain(protocol: str, budget: float, mean: float) -> dict:
        return {"protocol": protocol, "budget": budget,
                "diff_vs_real": {"mean": mean, "ci_low": mean - 0.05, "ci_high": mean + 0.05}}

    gains = _downstream_gains({"gains": [gain("real+diffusion@1:1", 1.0, 0.01), gain("real+diffusion@1:1", 0.25, 0.04),
                                         gain("real+augment", 0.25, 0.02)]})
    assert [(g["protocol"], g["budget"], g["value"]) for g in gains] == [("real+diffusion@1:1", 0.25, 0.04),
                                                                         ("real+augment", 0.25, 0.02)]
    assert _downstream_gains(None) == [] and _downstream_gains({"gains": []}) == []


@pytest.mark.parametrize("metric", ["fid", "frd"])
def test_a_distance_claim_reads_its_own_metric_with_lower_as_better(metric):
    from uterosynth.study import GridStudyConfig, _claims

    cfg = GridStudyConfig.model_validate({
        "out": "o", "pipeline": "p.yaml", "axes": {"m": {"a": {}, "b": {}}},
        "claims": [{"statement": "a beats b", "axis": "m", "better": "a", "worse": "b", "metric": metric}]})

    def cell(value: str, distance: float) -> dict:
        other = {"kid": {"synthetic": {"value": 9.0, "ci_low": 8.9, "ci_high": 9.1}}}  # never read
        return {"name": f"m-{value}_seed-0", "values": {"m": value}, "seed": 0, "status": "ok",
                "results": {**other, metric: {"synthetic": {"value": distance, "ci_low": distance - 1,
                                                            "ci_high": distance + 1}}}}

    assert _claims(cfg, [cell("a", 10.0), cell("b", 20.0)])[0]["verdict"] == "supported"
    assert _claims(cfg, [cell("a", 20.0), cell("b", 10.0)])[0]["verdict"] == "not supported"


def test_a_volume_cells_row_shows_its_2_5d_fid_and_slice_consistency_beside_the_real_items():
    from uterosynth.study_report import _row

    def m(value: float) -> dict:
        return {"value": value, "ci_low": value * 0.9, "ci_high": value * 1.1, "n": 64}

    cell = {"name": "c", "values": {"model": "3d"}, "seed": 0, "status": "ok", "results": {
        "kid": {"synthetic": m(0.1)}, "fid_2.5d": {"synthetic": m(50.0)},   # a volume cell: FID on 2.5D features only
        "msssim_diversity": {"synthetic": m(0.2), "real_vs_real": m(0.25)},
        "slice_consistency_ssim": {"synthetic": m(0.8), "real_vs_real": m(0.9)}}}
    row = _row(cell, ["model"])
    assert row["fid"] == "2.5D 50 [45, 55]"
    both = _row({**cell, "results": {**cell["results"], "fid": {"synthetic": m(40.0)}}}, ["model"])
    assert both["fid"] == "40 [36, 44]; 2.5D 50 [45, 55]"   # a cell with both keeps them apart
    assert row["slices"] == "0.8 [0.72, 0.88] (real 0.9)"
    assert row["diversity"] == "MS-SSIM 0.2 [0.18, 0.22] (real 0.25)" and row["frd"] == "–"
    assert row["seconds"] == "–" and _row({**cell, "seconds": 123456.7, "attempts": [1.0, 123455.7]}, ["model"])["seconds"] == \
        "123456.7 (2 attempts)"
    plain = _row({**cell, "results": {"kid": {"synthetic": m(0.1)}}}, ["model"])
    assert (plain["fid"], plain["slices"], plain["downstream"]) == ("–", "–", "–")
    unconditional = _row({**cell, "results": {"judges": {"field_strength": {
        "judge": {}, "real": {"accuracy": m(0.8)}}}}}, ["model"])  # drawn without classes: nothing to read per class
    assert unconditional["judge_worst"] == "–" and unconditional["other_judges"].startswith("field_strength: no class requested; on real")


def test_a_claim_on_another_attributes_judge_reads_that_judge():
    from uterosynth.study import GridStudyConfig, _claims

    cfg = GridStudyConfig.model_validate({
        "out": "o", "pipeline": "p.yaml", "axes": {"m": {"a": {}, "b": {}}},
        "claims": [{"statement": "a holds field strength", "axis": "m", "better": "a", "worse": "b",
                    "metric": "judge_worst", "attribute": "field_strength"},
                   {"statement": "a holds orientation", "axis": "m", "better": "a", "worse": "b", "metric": "judge_worst"}]})

    def worst(v: float) -> dict:
        return {"class": "3T", "value": v, "ci_low": v - 0.02, "ci_high": v + 0.02}

    def cell(value: str, orientation: float, strength: float) -> dict:
        return {"name": f"m-{value}_seed-0", "values": {"m": value}, "seed": 0, "status": "ok",
                "results": {"judge_worst": worst(orientation), "judges": {"field_strength": {"judge_worst": worst(strength)}}}}

    strength, orientation = _claims(cfg, [cell("a", 0.5, 0.9), cell("b", 0.9, 0.5)])
    assert strength["verdict"] == "supported" and orientation["verdict"] == "not supported"
    (unjudged,) = _claims(cfg.model_copy(update={"claims": cfg.claims[:1]}),
                          [cell("a", 0.5, 0.9), {**cell("b", 0.9, 0.5), "results": {"judge_worst": worst(0.9)}}])
    assert unjudged["verdict"] == "inconclusive at this size"  # a cell without that judge
    with pytest.raises(ValueError, match="'attribute' names a judge"):
        GridStudyConfig.model_validate({"out": "o", "pipeline": "p.yaml", "axes": {"m": {"a": {}, "b": {}}},
                                        "claims": [{"statement": "s", "axis": "m", "better": "a", "worse": "b",
                                                    "attribute": "field_strength"}]})


@pytest.mark.slow
def test_a_volume_cell_is_read_slice_by_slice_like_a_2d_cell(tmp_path, monkeypatch):
    """A 3D cell (the quick 3D chain) in the table: its judge and KID from the slice-by-slice
    evaluation, intervals over volumes; the volumetric readings kept beside them."""
    from uterosynth.core.stats import wilson_interval
    from uterosynth.study_report import _row

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"out": "${here}/s", "pipeline": "${presets}/pipeline_cpu_3d_quick.yaml",
                                    "axes": {"model": {"3d": {}}}}))
    root, cfg, cells = plan(path)
    document = run_study(root, cfg, cells)
    results = document["cells"][0]["results"]
    assert results["judged_on"] == "slices"
    sliced = json.loads((root / "cells" / cells[0].name / "evaluation_slices" / "metrics.json").read_text())
    per_class = sliced["sets"]["synthetic"]["metrics"]["conditioning_fidelity"]["details"]["per_class"]
    worst = results["judge_worst"]
    assert worst["value"] == min(c["value"] for c in per_class.values())
    units = per_class[worst["class"]]["units"]   # Wilson over volumes, not over their 5 slices each
    assert (worst["ci_low"], worst["ci_high"]) == pytest.approx(wilson_interval(worst["value"], units))
    assert all(results["judge"][c]["units"] * 5 == results["judge"][c]["n"] for c in results["judge"])
    assert results["kid"]["synthetic"]["value"] == sliced["sets"]["synthetic"]["metrics"]["kid"]["value"]
    assert {"judge_worst", "kid"} <= set(results["volumetric"]) and results["volumetric"]["kid"] != results["kid"]
    assert "slice_consistency_ssim" in results and "fid_2.5d" in results   # volumetric only
    row = _row(document["cells"][0], ["model"])
    assert row["judge_worst"].endswith("(central slices)") and row["kid"].endswith("(central slices)")
    # without its slice evaluation the cell is not read on its central slice instead, silently
    (root / "cells" / cells[0].name / "evaluation_slices" / "metrics.json").unlink()
    missing = summarize(root, cfg, cells)["cells"][0]["results"]
    assert missing["judged_on"] == "slices missing" and "judge_worst" not in missing and "kid" not in missing
    assert missing["volumetric"]["judge_worst"] == results["volumetric"]["judge_worst"]
    assert _row(summarize(root, cfg, cells)["cells"][0], ["model"])["judge_worst"] == "– (central slices: not measured)"


@pytest.mark.parametrize(("better", "worse", "expected"), [
    (0.94, 0.95, "supported"),                   # a point worse, but surely within the margin
    (0.80, 0.95, "not supported"),               # surely more than the margin worse
    (0.91, 0.95, "inconclusive at this size"),   # the interval of the difference straddles -margin
])
def test_an_at_least_claim_reads_the_interval_of_the_difference_against_its_margin(better, worse, expected):
    def m(v: float) -> dict:
        return {"value": v, "ci_low": v - 0.02, "ci_high": v + 0.02}

    assert verdict([m(better)], [m(worse)], lower_is_better=False, margin=0.05) == expected
    assert verdict([m(1 - better)], [m(1 - worse)], lower_is_better=True, margin=0.05) == expected  # a distance


def test_a_distance_claims_gain_pairs_each_end_with_the_right_cells_interval():
    from uterosynth.study import _gain

    better, worse = {"value": 0.05, "ci_low": 0.04, "ci_high": 0.08}, {"value": 0.07, "ci_low": 0.05, "ci_high": 0.09}
    gain = _gain(better, worse, lower_is_better=True)   # worse - better, each end from the ends that bound it
    assert gain == pytest.approx((0.02, 0.02 - (0.02 ** 2 + 0.03 ** 2) ** 0.5, 0.02 + (0.02 ** 2 + 0.01 ** 2) ** 0.5))
    assert gain[1] == pytest.approx(-0.016, abs=1e-3) and gain[2] == pytest.approx(0.042, abs=1e-3)


def test_an_at_least_claim_needs_a_margin_and_reports_each_pairs_gain(tmp_path):
    from uterosynth.study import GridStudyConfig, _claims
    from uterosynth.study_report import _claim_view, write_study_markdown

    claim = {"statement": "a is as good as b", "axis": "m", "better": "a", "worse": "b", "metric": "judge_worst"}
    with pytest.raises(ValueError, match="at_least needs a margin"):
        GridStudyConfig.model_validate({"out": "o", "pipeline": "p.yaml", "axes": {"m": {"a": {}, "b": {}}},
                                        "claims": [{**claim, "relation": "at_least"}]})
    with pytest.raises(ValueError, match="only it takes one"):
        GridStudyConfig.model_validate({"out": "o", "pipeline": "p.yaml", "axes": {"m": {"a": {}, "b": {}}},
                                        "claims": [{**claim, "margin": 0.05}]})
    cfg = GridStudyConfig.model_validate({"out": "o", "pipeline": "p.yaml", "axes": {"m": {"a": {}, "b": {}}},
                                          "claims": [{**claim, "relation": "at_least", "margin": 0.05}]})

    def cell(value: str, v: float) -> dict:
        return {"name": f"m-{value}_seed-0", "values": {"m": value}, "seed": 0, "status": "ok",
                "results": {"judge_worst": {"class": "AVAF", "value": v, "ci_low": v - 0.03, "ci_high": v + 0.04}}}

    (result,) = _claims(cfg, [cell("a", 0.9), cell("b", 0.92)])
    (gain,) = result["gains"]
    assert gain["value"] == pytest.approx(-0.02) and gain["ci_low"] < -0.05 < gain["ci_high"]
    assert result["verdict"] == "inconclusive at this size"
    write_study_markdown(tmp_path, {"config": cfg.model_dump(mode="json"), "cells": [], "claims": [result],
                                    "uterosynth_version": "0", "created": "now"})
    line = next(x for x in (tmp_path / "study.md").read_text().splitlines() if x.startswith("| a is as good as b"))
    assert "judge_worst, at least as good within 0.05" in line and "gain -0.02 [" in line
    assert _claim_view(result)["gain_text"].startswith("-0.02 [")   # the page's claims table


def test_an_audit_claim_reads_the_flagged_fraction_with_lower_as_better_and_its_wilson_interval():
    from uterosynth.core.stats import wilson_ci
    from uterosynth.study import GridStudyConfig, _claims

    cfg = GridStudyConfig.model_validate({
        "out": "o", "pipeline": "p.yaml", "axes": {"m": {"a": {}, "b": {}}},
        "claims": [{"statement": "a copies less than b", "axis": "m", "better": "a", "worse": "b",
                    "metric": "audit_flagged"}]})

    def cell(value: str, flagged: int, count_kept: bool = True) -> dict:
        audit = {"samples": 256, "flagged_fraction": round(flagged / 256, 6)}
        return {"name": f"m-{value}_seed-0", "values": {"m": value}, "seed": 0, "status": "ok",
                "results": {"audit": {**audit, "flagged": flagged} if count_kept else audit}}

    (claim,) = _claims(cfg, [cell("a", 10), cell("b", 180)])
    assert claim["verdict"] == "supported" and claim["gains"][0]["value"] == pytest.approx(170 / 256)
    assert claim["measured"][0][0] == {"value": 10 / 256, "n": 256, "ci_low": wilson_ci(10, 256)[0],
                                       "ci_high": wilson_ci(10, 256)[1]}
    assert _claims(cfg, [cell("a", 180), cell("b", 10)])[0]["verdict"] == "not supported"
    assert _claims(cfg, [cell("a", 100), cell("b", 110)])[0]["verdict"] == "inconclusive at this size"
    (older,) = _claims(cfg, [cell("a", 180, count_kept=False), cell("b", 10)])   # the count read from the fraction
    assert older["measured"][0][0]["value"] == 180 / 256 and older["verdict"] == "not supported"
    no_audit = {**cell("a", 10), "results": {}}
    assert _claims(cfg, [no_audit, cell("b", 10)])[0]["verdict"] == "inconclusive at this size"
