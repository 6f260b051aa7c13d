"""``uterosynth run``: pipeline files parse, name real options, run and resume."""

from __future__ import annotations

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
