"""``uterosynth run``: pipeline files parse, name real options, run and resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import typer.main

from uterosynth.cli import app, main
from uterosynth.core.errors import ConfigError
from uterosynth.pipeline import pipeline_stages

PIPELINES = sorted(Path("configs").glob("pipeline_*.yaml"))


def _command(args):
    """The click command an argument list reaches, and the rest of the arguments."""
    cmd = typer.main.get_command(app)
    args = list(args)
    while hasattr(cmd, "commands") and args and args[0] in cmd.commands:
        cmd = cmd.commands[args.pop(0)]
    return cmd, args


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_every_stage_uses_options_its_command_has(path, tmp_path):
    assert len(PIPELINES) >= 2
    root, stages = pipeline_stages(path, out=tmp_path)
    assert stages and all(s.args[s.args.index("--out") + 1] == str(tmp_path / s.name)
                          for s in stages if "--out" in s.args)
    for stage in stages:
        cmd, rest = _command(stage.args)
        known = {opt for p in cmd.params for opt in p.opts}
        used = {a for a in rest if a.startswith("--")}
        assert used <= known, f"{path.name}: stage {stage.name} uses {sorted(used - known)}"
        for value in rest:
            assert "${" not in value, f"{stage.name}: unresolved {value}"


def _write(path: Path, stages: list[dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"out": str(path.parent / "out"), "stages": stages}))
    return path


def test_unknown_stage_reference_is_a_config_error(tmp_path):
    bad = _write(tmp_path / "p.yaml", [{"name": "a", "command": "phantom", "args": {"subjects": 1}, "done": "x"},
                                       {"name": "b", "command": "prepare", "args": {"input": "${nope}"}, "done": "y"}])
    with pytest.raises(ConfigError, match=r"\$\{nope\}"):
        pipeline_stages(bad)


def test_duplicate_stage_names_are_refused(tmp_path, capsys):
    bad = _write(tmp_path / "p.yaml", [{"name": "a", "command": "phantom", "done": "x"}] * 2)
    with pytest.raises(SystemExit) as info:
        main(["run", str(bad)])
    assert info.value.code == 2 and "unique" in capsys.readouterr().err


def test_a_skipped_stage_is_left_out_until_a_variant_switches_it_on(tmp_path):
    import yaml

    stages = [{"name": "a", "command": "phantom", "done": "x"},
              {"name": "b", "command": "prepare", "args": {"input": "${a}"}, "skip": True, "done": "y"},
              {"name": "c", "command": "phantom", "done": "z"}]
    base = _write(tmp_path / "base.yaml", stages)
    assert [s.name for s in pipeline_stages(base, numbered=True)[1]] == ["01_a", "02_c"]
    variant = tmp_path / "variant.yaml"
    variant.write_text(yaml.safe_dump({"base": "base.yaml", "override": {"b": {"skip": False}}}))
    assert [s.name for s in pipeline_stages(variant, numbered=True)[1]] == ["01_a", "02_b", "03_c"]
    # a kept stage may not refer to a skipped one
    stages[2]["args"] = {"out": "${b}/more"}
    with pytest.raises(ConfigError, match=r"\$\{b\} is not an earlier stage"):
        pipeline_stages(_write(tmp_path / "base.yaml", stages))


def test_run_resume_and_report(tmp_path, capsys):
    path = _write(tmp_path / "p.yaml", [
        {"name": "cohort", "command": "phantom", "args": {"subjects": 2, "seed": 1, "workers": 1},
         "set": {"geometry.matrix": [64, 64], "geometry.slices": 8}, "done": "labels.csv"},
        {"name": "prepared", "command": "prepare", "args": {"source": "umd", "input": "${cohort}"},
         "set": {"preprocess.output.shape": [32, 32], "split.train": 0.5, "split.val": 0.5, "split.test": 0.0},
         "done": "manifest.csv"},
    ])
    with pytest.raises(SystemExit) as info:
        main(["run", str(path), "--json"])
    assert info.value.code in (0, None)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    out = Path(summary["out"])
    assert (out / "prepared" / "manifest.csv").is_file() and isinstance(summary["stages"]["prepared"], float)
    assert "prepared/manifest.csv" in (out / "report.html").read_text()
    with pytest.raises(SystemExit):
        main(["run", str(path), "--json"])
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(again["stages"].values()) == {"done earlier"}


def test_run_shows_every_stage_summary(tmp_path, capsys):
    path = _write(tmp_path / "p.yaml", [
        {"name": "cohort", "command": "phantom", "args": {"subjects": 2, "seed": 1, "workers": 1},
         "set": {"geometry.matrix": [32, 32], "geometry.slices": 4}, "done": "labels.csv"},
    ])
    with pytest.raises(SystemExit) as info:
        main(["run", str(path)])
    assert info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "phantom cohort" in out and "subjects_per_second" in out  # the stage's own summary table


def test_run_stage_hands_the_job_to_run_job(tmp_path):
    from uterosynth.pipeline import run_stage
    from uterosynth.stages.data import PhantomJob

    path = _write(tmp_path / "p.yaml", [{"name": "cohort", "command": "phantom", "args": {"subjects": 3}}])
    (stage,) = pipeline_stages(path)[1]
    seen = []
    run_stage(stage, list(stage.args), run_job=lambda command, job: seen.append((command, job)))
    assert [(c, type(j), j.subjects, j.out) for c, j in seen] == [
        ("phantom", PhantomJob, 3, tmp_path / "out" / "cohort")]


def test_a_torchrun_stage_runs_its_command_under_torchrun_and_a_failure_names_it(tmp_path):
    """``launcher: torchrun``: the stage's command runs in torchrun's worker processes (one here, on the
    CPU), its folder made as in process; a command that fails there fails the stage with its exit code."""
    from uterosynth.core.errors import DataError
    from uterosynth.pipeline import run_stage

    path = _write(tmp_path / "p.yaml", [
        {"name": "cohort", "command": "phantom", "launcher": "torchrun", "nproc": 1,
         "args": {"subjects": 2, "seed": 1, "workers": 1},
         "set": {"geometry.matrix": [32, 32], "geometry.slices": 4}, "done": "labels.csv"},
        {"name": "prepared", "command": "prepare", "launcher": "torchrun",
         "args": {"source": "umd", "input": str(tmp_path / "nowhere")}, "done": "manifest.csv"},
    ])
    cohort, prepared = pipeline_stages(path)[1]
    run_stage(cohort, list(cohort.args), run_job=lambda command, job: pytest.fail("ran in process"))
    assert len((tmp_path / "out" / "cohort" / "labels.csv").read_text().splitlines()) == 3  # header + 2 subjects
    with pytest.raises(DataError, match=r"stage 'prepared' \(torchrun uterosynth prepare\) failed \(exit code [1-9]"):
        run_stage(prepared, list(prepared.args))
    assert not (tmp_path / "out" / "prepared" / "manifest.csv").exists()


def _by_name(path: Path, tmp_path: Path) -> dict:
    """Stage name (without the demo's number) → stage, of the pipeline file ``path``."""
    return {s.name: s for s in pipeline_stages(path, out=tmp_path)[1]}


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_judge_and_encoder_learn_from_a_reference_cohort_prepared_alike(path, tmp_path):
    """Evaluate refuses a judge or an extractor trained on the evaluated subjects: every pipeline
    trains them on a second cohort, prepared exactly as the data the generator learns from."""
    stages = _by_name(path, tmp_path)
    data, reference = stages["prepared"], stages["prepared_reference"]
    assert reference.options["input"] == str(tmp_path / "phantom_reference") != data.options["input"]
    same = {k: v for k, v in data.options.items() if k not in ("input", "out")}
    assert {k: v for k, v in reference.options.items() if k not in ("input", "out")} == same
    assert stages["encoder"].options["data"] == str(tmp_path / "prepared_reference")
    if "prepared_reference_slices" in stages:  # a 3D chain's judge is 2D: the same cohort's central slices
        slices = stages["prepared_reference_slices"]
        assert slices.options["input"] == reference.options["input"]
        window = slices.options["overrides"]["preprocess.roi.window_mm"]
        assert window == data.options["overrides"]["preprocess.roi.window_mm"][:2]
        assert stages["judge"].options["data"] == str(tmp_path / "prepared_reference_slices")
    else:
        assert stages["judge"].options["data"] == str(tmp_path / "prepared_reference")
    names = list(stages)
    assert names.index("prepared_reference") < names.index("judge") < names.index("evaluation")
    assert stages["evaluation"].options["real"].startswith(str(tmp_path / "prepared") + ":")


def _subject_hashes(stage) -> set[str]:
    from uterosynth.data.subjects import hash_subject
    from uterosynth.phantom import PhantomConfig
    from uterosynth.phantom.cohort import subject_id
    from uterosynth.stages.base import stage_config

    options = stage.options
    cfg = stage_config(PhantomConfig, options.get("config"), options.get("overrides", {}),
                       subjects=options.get("subjects"), seed=options.get("seed"))
    return {hash_subject(subject_id(cfg, k)) for k in range(cfg.subjects)}


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_the_reference_cohort_shares_no_subject_id_with_the_data(path, tmp_path):
    """Phantom subject ids do not depend on the seed (UMD_<study_date>_<NNN>): the reference
    cohort draws other subjects (another seed) under other ids (another study date)."""
    from uterosynth.phantom import PhantomConfig
    from uterosynth.phantom.cohort import subject_id

    assert subject_id(PhantomConfig(seed=1000), 0) == subject_id(PhantomConfig(seed=0), 0)  # why a date is needed
    stages = _by_name(path, tmp_path)
    reference = stages["phantom_reference"]
    ids = _subject_hashes(reference)
    assert reference.command == "phantom" and len(ids) == reference.options["subjects"]
    if "phantom" in stages:
        assert reference.options["seed"] != stages["phantom"].options["seed"]
        assert ids.isdisjoint(_subject_hashes(stages["phantom"]))
    else:  # the GPU file's own data: at least not the ids of a default phantom cohort
        default_date = dataclasses.replace(reference, options={**reference.options, "overrides": {}})
        assert ids.isdisjoint(_subject_hashes(default_date))
