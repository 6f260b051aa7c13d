"""A pipeline: a chain of stages (:mod:`uterosynth.stages`), each writing one folder, resumable.

``uterosynth run pipeline.yaml`` reads the chain from a file a user copies for their own data
(``configs/pipeline_*.yaml``); ``uterosynth demo`` is ``configs/pipeline_cpu*.yaml``. A pipeline
file may start from another one (``base:``) and change some of its stages through ``override:``
(stage name → the keys of its spec to change; ``null`` removes an option or a ``set`` key; a
stage marked ``skip: true`` is left out, so a base may hold a stage only its variants run).
Stages run through :func:`run_stages`, which calls each stage's ``run`` in this process (or the
``uterosynth`` command under ``torchrun`` for ``launcher: torchrun``): a stage whose ``done`` file exists is skipped, a training stage whose folder
exists unfinished is resumed (``--resume``), every other command writes its folder atomically,
so Ctrl-C never leaves a half-written stage. ``report.html`` (:mod:`uterosynth.pipeline_report`)
leads with the answer (samples per class, judge accuracy, KID against floor and baselines) and
links every stage's files and pictures; it is written even when a stage fails.

In a pipeline file, strings may refer to ``${out}`` (the pipeline folder), ``${here}`` (the
folder of the pipeline file), ``${presets}`` (uterosynth's ``configs/`` folder) and ``${NAME}``
(the folder of stage ``NAME``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .core.config import StrictModel, load_config, merge_config, repeated, validate_config
from .core.errors import DataError, UserError
from .pipeline_report import DONE_EARLIER, write_report
from .stages import PRESETS
from .stages import stage as find_stage

__all__ = ["PRESETS", "PipelineConfig", "PipelineFailed", "RunJob", "Stage", "StageSpec", "pipeline_stages", "run_stages",
           "write_report"]

_REF = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")


@dataclass(frozen=True)
class Stage:
    """One step: a folder name, what it is, the command line that makes it, and its done mark.

    ``command`` and ``options`` are the stage (:data:`uterosynth.stages.STAGES`) and the fields of
    its job; ``args`` the same as ``uterosynth`` arguments (shown in the report, and run under
    ``launcher='torchrun'`` in ``nproc`` processes, one per GPU). ``resumable`` stages resume
    when their folder exists unfinished. ``on_failure='continue'``: when the stage fails, the
    later stages still run (the chain fails at its end).
    """

    name: str
    title: str
    args: tuple[str, ...]
    done_marker: str
    resumable: bool = False
    launcher: str = "inprocess"
    nproc: int | str = 1
    command: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    on_failure: str = "stop"


class StageSpec(StrictModel):
    """One stage of a pipeline file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="stage folder under 'out'")
    title: str | None = None
    command: str = Field(min_length=1, description="uterosynth command, e.g. 'train diffusion'")
    args: dict[str, Any] = Field(default_factory=dict, description="--key value; true: a flag; list: repeated")
    set: dict[str, Any] = Field(default_factory=dict, description="config overrides (--set key=value)")
    out_option: str | None = Field("--out", description="the option that receives the stage folder")
    done: str | None = Field(None, min_length=1, description="file in the stage folder that marks it finished "
                             "(default: the stage's own mark)")
    launcher: Literal["inprocess", "torchrun"] = "inprocess"
    nproc: int | Literal["auto"] = Field(1, description="torchrun processes on this node; auto: one per visible GPU")
    on_failure: Literal["stop", "continue"] = Field(
        "stop", description="continue: when this stage fails, run the later stages anyway and fail at the end "
        "(e.g. a release refused below its fidelity bar); the report is written either way")
    skip: bool = Field(False, description="leave this stage out of the chain (a file that starts from this one "
                       "may switch it on with 'override: {NAME: {skip: false}}')")

    @field_validator("nproc")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("nproc must be >= 1 or 'auto'")
        return v


class PipelineConfig(StrictModel):
    """A pipeline file: where it writes, and its stages in order."""

    out: str
    stages: list[StageSpec] = Field(min_length=1)
    override: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="stage name -> keys of its spec to change (files that start from a base)")

    @model_validator(mode="before")
    @classmethod
    def _apply_overrides(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("override") or not isinstance(data.get("stages"), list):
            return data
        changes = dict(data["override"])
        stages = []
        for spec in data["stages"]:
            name = spec.get("name") if isinstance(spec, dict) else None
            stages.append(merge_config(spec, changes.pop(name)) if name in changes else spec)
        if changes:
            raise ValueError(f"override of unknown stage(s): {', '.join(sorted(changes))}")
        return {**data, "stages": stages}

    @field_validator("stages")
    @classmethod
    def _known_commands(cls, stages: list[StageSpec]) -> list[StageSpec]:
        for spec in stages:
            find_stage(spec.command)
        return stages

    @field_validator("stages")
    @classmethod
    def _unique(cls, stages: list[StageSpec]) -> list[StageSpec]:
        if dupes := repeated([s.name for s in stages]):
            raise ValueError(f"stage names must be unique: {', '.join(dupes)}")
        return stages

    @field_validator("stages")
    @classmethod
    def _drop_skipped(cls, stages: list[StageSpec]) -> list[StageSpec]:
        kept = [s for s in stages if not s.skip]
        if not kept:
            raise ValueError("every stage is skipped")
        return kept

    @model_validator(mode="after")
    def _refs_known(self) -> PipelineConfig:
        known = {"out", "here", "presets"}
        for stage in self.stages:
            known.add(stage.name)  # a stage may place its own folder among its args
            for ref in _REF.findall(json.dumps(stage.model_dump(mode="json"))):
                if ref not in known:
                    raise ValueError(f"stage '{stage.name}': ${{{ref}}} is not an earlier stage, out, here or presets")
        return self


def _option_args(args: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in args.items():
        flag = key if key.startswith("-") else f"--{key.replace('_', '-')}"
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is True:
                out.append(flag)
            elif v is not False and v is not None:
                out += [flag, str(v)]
    for key, value in overrides.items():
        if value is None:
            continue
        text = json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict | bool) else value
        out += ["--set", f"{key}={text}"]
    return out


def _option_name(key: str) -> str:
    return key.lstrip("-").replace("-", "_")


def pipeline_stages(
    path: str | Path, *, out: str | Path | None = None, numbered: bool = False,
) -> tuple[Path, list[Stage]]:
    """The output folder and the stages of the pipeline file ``path`` (``out`` overrides its ``out``).

    ``numbered`` names the stage folders ``01_<name>``, ``02_<name>``, ... (the demo's layout).

    Raises:
        ConfigError: the file is missing, malformed, names an unknown command, or refers to an
            unknown stage.
    """
    path = Path(path)
    cfg = load_config(PipelineConfig, path)
    root = Path(out) if out is not None else Path(cfg.out.replace("${here}", str(path.parent.resolve())))
    folders = {s.name: f"{i + 1:02d}_{s.name}" if numbered else s.name for i, s in enumerate(cfg.stages)}
    places = {"out": str(root), "here": str(path.parent.resolve()), "presets": str(PRESETS),
              **{name: str(root / folder) for name, folder in folders.items()}}

    def resolve(value: Any) -> Any:
        if isinstance(value, str):
            return _REF.sub(lambda m: places[m.group(1)], value)
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    stages = []
    for spec in cfg.stages:
        definition = find_stage(spec.command)
        folder = folders[spec.name]
        args = [*spec.command.split(), *_option_args(spec.args, spec.set)]
        options = {_option_name(k): resolve(v) for k, v in spec.args.items() if v is not None}
        options["overrides"] = {k: resolve(v) for k, v in spec.set.items() if v is not None}
        if spec.out_option and _option_name(spec.out_option) not in options:
            args += [spec.out_option, str(root / folder)]
            options[_option_name(spec.out_option)] = str(root / folder)
        stages.append(Stage(folder, spec.title or spec.name, tuple(resolve(a) for a in args),
                            spec.done or definition.done, resumable=definition.resumable, launcher=spec.launcher,
                            nproc=spec.nproc, command=definition.command, options=options,
                            on_failure=spec.on_failure))
    return root, stages


RunJob = Callable[[str, Any], Any]
"""How a stage is run on its job: ``run_job(command, job)``; the command line passes one that shows
progress bars and the stage's summary."""


def _run_plain(command: str, job: Any) -> Any:
    return find_stage(command).run(job)


def _in_process(stage: Stage, resume: bool, run_job: RunJob) -> None:
    """Run ``stage``'s ``run`` function on its job."""
    definition = find_stage(stage.command)
    options = dict(stage.options)
    if "overrides" not in definition.job.model_fields and not options.get("overrides"):
        options.pop("overrides", None)
    if resume:
        options["resume"] = True
    run_job(definition.command, validate_config(definition.job, options, source=f"stage '{stage.name}'"))


def _torchrun(stage: Stage, args: Sequence[str]) -> None:
    """Run ``uterosynth`` with ``args`` in ``stage.nproc`` torchrun worker processes on this node."""
    nproc = stage.nproc
    if nproc == "auto":
        import torch

        nproc = max(1, torch.cuda.device_count())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "uterosynth", *args]
    code = subprocess.run(cmd, check=False).returncode
    if code != 0:
        raise DataError(f"stage '{stage.name}' (torchrun uterosynth {stage.command}) failed (exit code {code}); "
                        "its own message is above")


def run_stage(stage: Stage, args: Sequence[str], *, run_job: RunJob = _run_plain) -> None:
    """Run one stage in this process through ``run_job``, or its command under torchrun
    (``--resume`` in ``args``: resume it)."""
    if stage.launcher == "torchrun":
        _torchrun(stage, args)
    else:
        _in_process(stage, "--resume" in args, run_job)


class PipelineFailed(DataError):
    """One or more stages failed; ``report.html`` was written. ``timings`` holds every stage's outcome,
    ``failures`` each failed stage's message."""

    def __init__(self, message: str, timings: dict[str, float | str], failures: dict[str, str]) -> None:
        super().__init__(message)
        self.timings, self.failures = timings, failures


def run_stages(
    out: str | Path,
    stages: Sequence[Stage],
    *,
    title: str,
    run_command: Callable[[Stage, Sequence[str]], None] = run_stage,
    on_stage: Callable[[int, int, Stage, str], None] | None = None,
    notice: str | None = None,
) -> dict[str, float | str]:
    """Run (or resume) every stage into ``out``; write ``report.html``; per-stage seconds.

    A failing stage stops the chain, unless its ``on_failure`` is ``continue``; either way
    ``report.html`` is written (naming the failure at its top) before the error is raised.
    ``notice`` opens the report (the quick demo's "smoke run").

    Raises:
        PipelineFailed: a stage failed (the stage's own DataError or ConfigError, or a DataError for a
            torchrun stage, whose message it printed itself); ``on_stage`` was told its message.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float | str] = {}
    failures: dict[str, str] = {}
    for i, stage in enumerate(stages):
        folder = out / stage.name
        if (folder / stage.done_marker).is_file():
            timings[stage.name] = DONE_EARLIER
            if on_stage:
                on_stage(i, len(stages), stage, "skipped (done)")
            continue
        args = list(stage.args)
        resuming = stage.resumable and folder.is_dir()
        if resuming:
            args.append("--resume")
        if on_stage:
            on_stage(i, len(stages), stage, "resuming" if resuming else "running")
        t0 = time.perf_counter()
        try:
            run_command(stage, args)
        except UserError as err:
            failures[stage.name] = str(err)
            timings[stage.name] = f"failed: {err}"
            if on_stage:
                on_stage(i, len(stages), stage, f"failed: {err}")
            if stage.on_failure != "continue":
                break
            continue
        timings[stage.name] = round(time.perf_counter() - t0, 1)
    write_report(out, stages, title=title, notice=notice, failures=failures, timings=timings)
    if failures:
        names = ", ".join(failures)
        first = next(iter(failures.values()))
        raise PipelineFailed(f"stage(s) {names} failed ({first}); report: {out / 'report.html'}", timings, failures)
    return timings
