"""A study: a grid of pipeline runs over named axes, one folder per cell, one comparison table.

``uterosynth study STUDY.yaml`` reads a study file (``configs/study_*.yaml``): a base pipeline
file (:mod:`uterosynth.pipeline`), named axes whose values change it (another base pipeline and
stage overrides, as a pipeline file's ``override:``), training seeds, and an equal step budget
per training stage. Every combination of axis values (or, with ``centre``, one combination and its
departures on one axis at a time) and seeds is a *cell*: a pipeline file of its
own in ``cells/<name>/cell.yaml``, run by ``uterosynth run`` into that folder. So a cell is an
independent job:

- a finished cell (``cells/<name>/cell.json`` with status ``ok``) is never recomputed;
- a killed cell resumes stage by stage (the pipeline's own resume);
- a failed cell does not stop the others; the study fails at its end, naming it.

Cells run on an existing engine, not a home-made scheduler: locally with a thread pool
(``executor.kind: local``, ``parallel`` cells at once), or through submitit
(``executor.kind: submitit``): SLURM job arrays on a cluster, or submitit's local executor, which
runs the same code path on one machine (the tests use it). A stage that trains on several GPUs
keeps its ``launcher: torchrun`` inside the cell.

When the cells are done, :func:`summarize` reads each cell's evaluation, audit and training
summaries into ``study.json``, ``study.html`` and ``study.md`` (:mod:`uterosynth.study_report`): the comparison
table with intervals, a sample grid per cell, and a verdict per claim of the file (``supported``,
``not supported`` or ``inconclusive at this size``), decided by non-overlap of 95 % intervals in
every pair of cells that differ only on the claim's axis.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from . import __version__
from .core.artifacts import read_json, write_json
from .core.config import StrictModel, load_config, merge_config, read_config_file
from .core.errors import ConfigError, DataError, first_line
from .core.stats import difference_interval, wilson_ci
from .pipeline import pipeline_stages
from .stages import PRESETS

__all__ = ["ATTEMPT_END", "ATTEMPT_START", "CELL_FILE", "CELL_STATUS", "Cell", "GridStudyConfig", "StudyFailed", "plan", "run_cell", "run_study",
           "summarize", "verdict"]

SHARED_FILE = "shared.json"
"""A cell's stages that other cells make identically: stage -> its done mark and its store folder."""
SHARED_STORE = "stages"
"""The study's store of shared stages (``<root>/stages/<stage>-<identity>``): a folder there only
ever holds that identity, whatever happens to the cells that link to it."""
CELL_FILE = "cell.yaml"
"""A cell's pipeline file, in its folder."""
CELL_STATUS = "cell.json"
"""A cell's outcome (status, exit code, seconds over every attempt and each attempt's, log), written when its run ends."""
LOG_FILE = "run.log"
NO_TIME_LIMIT = 1_000_000.0
"""``train.max_minutes`` of a stage under a step budget: the steps, not the clock, end its training."""
_NAME = re.compile(r"^[A-Za-z0-9+][A-Za-z0-9.+-]*$")


class AxisValue(StrictModel):
    """One value of an axis: what it changes in the base pipeline."""

    pipeline: str | None = Field(None, description="another base pipeline file for cells with this value")
    override: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="stage name -> keys of its spec to change (as a pipeline file's override)")


class ExecutorConfig(StrictModel):
    """Where the cells run."""

    kind: Literal["local", "submitit"] = "local"
    parallel: int = Field(1, ge=1, description="local: cells at once")
    cluster: Literal["local", "slurm", "debug"] | None = Field(
        None, description="submitit: 'slurm', 'local' (one machine, the same code path), 'debug'; "
        "null: SLURM where it is present, else local")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="submitit's update_parameters, e.g. timeout_min, slurm_partition, "
        "gpus_per_node, cpus_per_task")


class Claim(StrictModel):
    """A comparative claim: cells with ``better`` on ``axis`` beat those with ``worse`` on ``metric``."""

    statement: str = Field(min_length=1)
    axis: str
    better: str
    worse: str
    metric: Literal["kid", "fid", "frd", "judge_worst", "audit_flagged"] = Field(
        "kid", description="kid, fid, frd: the synthetic set's distance to the real training items, lower is "
        "better (its bootstrap interval); judge_worst: the worst class's judge accuracy, higher is better (its "
        "Wilson interval, over independent units where samples share one: a volume's slices); audit_flagged: "
        "the fraction of samples the memorisation audit flags as near-copies of a training patient, lower is "
        "better (its Wilson interval over the samples)")
    attribute: str | None = Field(
        None, description="judge_worst only: the judge of this other attribute (the evaluation's classifier.others, "
        "e.g. field_strength) instead of the orientation judge")
    relation: Literal["beats", "at_least"] = Field(
        "beats", description="beats: the two cells' intervals separate; at_least: non-inferiority, the interval of "
        "the difference (better - worse, on the better side) lies above -margin")
    margin: float | None = Field(None, gt=0, description="at_least only: how much worse still counts as 'as good', "
                                 "in the metric's units, fixed before the run")

    @model_validator(mode="after")
    def _attribute_needs_a_judge_metric(self) -> Claim:
        if self.attribute is not None and self.metric != "judge_worst":
            raise ValueError(f"claim '{self.statement}': 'attribute' names a judge; it needs metric judge_worst")
        if (self.relation == "at_least") != (self.margin is not None):
            raise ValueError(f"claim '{self.statement}': relation at_least needs a margin, and only it takes one")
        return self


class GridStudyConfig(StrictModel):
    """A study file."""

    out: str = Field(description="the study folder (relative to the working directory, or ${here}/...)")
    pipeline: str = Field(description="the base pipeline file (relative to the study file, or ${presets}/...)")
    override: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="stage name -> keys of its spec to change in every cell (as a pipeline "
        "file's override), before the axis values: e.g. a GPU's sizes over a CPU pipeline; an axis value wins")
    axes: dict[str, dict[str, AxisValue]] = Field(min_length=1)
    centre: dict[str, str] | None = Field(
        None, description="one value per axis: the cells are this centre combination and every combination that "
        "departs from it on one axis only (one factor at a time), not every combination")
    exclude: list[dict[str, str]] = Field(
        default_factory=list, description="combinations left out: a cell whose values match every key of an entry")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    seed_stages: list[str] = Field(default_factory=lambda: ["diffusion"],
                                   description="stages that take the cell's seed (their --seed)")
    steps: dict[str, int] = Field(default_factory=dict,
                                  description="equal compute: train.steps of these stages in every cell")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    claims: list[Claim] = Field(default_factory=list)

    @model_validator(mode="after")
    def _centre_is_a_kept_combination(self) -> GridStudyConfig:
        if self.centre is None:
            return self
        if sorted(self.centre) != sorted(self.axes):
            raise ValueError(f"centre {self.centre}: it names axes {sorted(self.centre)}; it needs one value for "
                             f"each axis, {sorted(self.axes)}")
        for axis, value in self.centre.items():
            if value not in self.axes[axis]:
                raise ValueError(f"centre: axis '{axis}' has no value '{value}'")
        for entry in self.exclude:
            if all(self.centre.get(a) == v for a, v in entry.items()):
                raise ValueError(f"exclude entry {entry} leaves out the centre, {self.centre}")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> GridStudyConfig:
        for axis, values in self.axes.items():
            if not values:
                raise ValueError(f"axis '{axis}' has no value")
            for name in (axis, *values):
                if not _NAME.match(name):
                    raise ValueError(f"axis '{axis}': name '{name}' may hold only letters, digits, '.', '+' and '-' "
                                     "(not first '.' or '-'): it names the cell's folder")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds}: a seed is listed twice")
        if sum(any(v.pipeline for v in values.values()) for values in self.axes.values()) > 1:
            raise ValueError("only one axis may change the base pipeline")
        for entry in self.exclude:
            for axis, value in entry.items():
                if value not in self.axes.get(axis, {}):
                    raise ValueError(f"exclude entry {entry}: axis '{axis}' has no value '{value}'")
        for claim in self.claims:
            if claim.better == claim.worse:
                raise ValueError(f"claim '{claim.statement}': 'better' and 'worse' are both '{claim.better}'")
            values = self.axes.get(claim.axis)
            if values is None:
                raise ValueError(f"claim '{claim.statement}': unknown axis '{claim.axis}'")
            for value in (claim.better, claim.worse):
                if value not in values:
                    raise ValueError(f"claim '{claim.statement}': axis '{claim.axis}' has no value '{value}'")
        return self


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its folder name, axis values, seed, base pipeline and overrides."""

    name: str
    values: Mapping[str, str]
    seed: int
    pipeline: Path
    override: Mapping[str, Any]

    def document(self, folder: Path) -> dict[str, Any]:
        """The cell's pipeline file: its base, its folder and its overrides."""
        return {"base": str(self.pipeline), "out": str(folder), "override": dict(self.override)}

    @property
    def digest(self) -> str:
        """What the cell runs (base pipeline and overrides): a finished cell is reused only while it matches."""
        text = json.dumps({"base": str(self.pipeline), "override": self.override}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _resolve(path: str, here: Path) -> Path:
    """A path of the study file: ``${presets}``/``${here}`` expanded, relative to the file's folder."""
    return here / path.replace("${presets}", str(PRESETS)).replace("${here}", str(here))


def _leaves(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every value of an override by its key path. A stage's ``set`` entries are leaves whatever their
    value (a mapping given to ``--set`` replaces that section), their dotted keys split into parts."""
    out: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        if len(prefix) == 1 and key == "set" and isinstance(value, Mapping):
            out.update({(*prefix, "set", *str(k).split(".")): v for k, v in value.items()})
        elif isinstance(value, Mapping) and value:
            out.update(_leaves(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def _cell_override(cfg: GridStudyConfig, chosen: Mapping[str, AxisValue], seed: int) -> dict[str, Any]:
    """The study's own override, then the axis values' overrides laid over it and over each other,
    then the seed and the step budget.

    Raises:
        ConfigError: two axes set the same key to different values.
    """
    parts = [(f"axis '{axis}'", value.override) for axis, value in chosen.items()]
    parts += [("'seed_stages'", {stage: {"args": {"seed": seed}}}) for stage in cfg.seed_stages]
    parts += [("'steps'", {stage: {"set": {"train.steps": steps, "train.max_minutes": NO_TIME_LIMIT}}})
              for stage, steps in cfg.steps.items()]
    merged: dict[str, Any] = dict(cfg.override)  # the axes may change what it sets: no conflict with it
    owned: dict[tuple[str, ...], tuple[str, Any]] = {}  # key path -> (who set it, value)
    for who, override in parts:
        for key, leaf in _leaves(override).items():
            for other, (first, value) in owned.items():
                overlap = other[:len(key)] == key or key[:len(other)] == other  # the same key, or one inside the other
                if overlap and (other != key or value != leaf) and first != who:
                    raise ConfigError(f"{first} and {who} both set {'.'.join(min(key, other, key=len))}; "
                                      "let one of them own it")
            owned[key] = (who, leaf)
        merged = merge_config(merged, override)
    return merged


def _combinations(cfg: GridStudyConfig) -> list[tuple[tuple[str, AxisValue], ...]]:
    """The combinations of axis values to run, each as (value name, value) per axis in the axes' order:
    all of them, or with ``centre`` the centre and its departures on one axis at a time."""
    axes = list(cfg.axes.items())
    if cfg.centre is None:
        return list(itertools.product(*(list(values.items()) for _, values in axes)))
    centre = tuple((cfg.centre[axis], values[cfg.centre[axis]]) for axis, values in axes)
    combos = [centre]
    for i, (axis, values) in enumerate(axes):
        combos += [(*centre[:i], (name, value), *centre[i + 1:])
                   for name, value in values.items() if name != cfg.centre[axis]]
    return combos


def plan(study: str | Path, *, out: str | Path | None = None) -> tuple[Path, GridStudyConfig, list[Cell]]:
    """The study folder, its config and its cells, each cell's pipeline checked.

    Raises:
        ConfigError: the study file is malformed, or a cell's pipeline is (an override of an
            unknown stage, an unknown command, a conflict between axes).
    """
    study = Path(study)
    cfg = load_config(GridStudyConfig, study)
    here = study.parent.resolve()
    root = (Path(out) if out is not None else Path(cfg.out.replace("${here}", str(here)))).resolve()  # as a pipeline's out
    base = _resolve(cfg.pipeline, here).resolve()
    axes = list(cfg.axes.items())
    cells = []
    for combo in _combinations(cfg):
        chosen = {axis: value for (axis, _), (_, value) in zip(axes, combo, strict=True)}
        names = {axis: name for (axis, _), (name, _) in zip(axes, combo, strict=True)}
        if any(all(names[a] == v for a, v in entry.items()) for entry in cfg.exclude):
            continue
        pipeline = next((_resolve(v.pipeline, here).resolve() for v in chosen.values() if v.pipeline), base)
        for seed in cfg.seeds:
            label = "_".join(f"{axis}-{name}" for axis, name in names.items()) + f"_seed-{seed}"
            cells.append(Cell(label, names, seed, pipeline, _cell_override(cfg, chosen, seed)))
    if not cells:
        raise ConfigError(f"{study}: 'exclude' leaves no cell to run")
    stage_names = {p: {str(s.get("name")) for s in read_config_file(p).get("stages") or [] if isinstance(s, dict)}
                   for p in {c.pipeline for c in cells}}
    for cell in cells:  # check every cell before any folder is written
        known = stage_names[cell.pipeline]
        for key, stages in (("seed_stages", cfg.seed_stages), ("steps", cfg.steps)):
            if missing := sorted(set(stages) - known):
                raise ConfigError(f"{study}: key '{key}': cell '{cell.name}' has no stage {', '.join(missing)} "
                                  f"(the stages of {cell.pipeline.name}: {', '.join(sorted(known))})")
        try:
            _cell_stages(cell, root / "cells" / cell.name)
        except ConfigError as err:
            raise ConfigError(f"{study}: cell '{cell.name}': {err}") from err
    return root, cfg, cells


def _cell_stages(cell: Cell, folder: Path) -> tuple[list[Any], Path]:
    """The stages of ``cell`` run in ``folder``, its pipeline file checked as ``uterosynth run`` checks
    one (before the file is written there), and the folder that file was read from.

    Raises:
        ConfigError: the cell's pipeline is malformed (the message names ``cell.yaml``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CELL_FILE
        path.write_text(yaml.safe_dump(cell.document(folder), sort_keys=False))
        try:
            _, stages = pipeline_stages(path, out=folder)
        except ConfigError as err:
            raise ConfigError(str(err).replace(str(path), CELL_FILE)) from err
        return stages, Path(tmp).resolve()


def _stage_identities(folder: Path, here: Path, stages: Sequence[Any]) -> dict[str, str]:
    """Each stage's identity in a cell: a digest of its command line in which its own folder, the
    earlier stages' folders (by their identities, so equal inputs read as equal) and the cell's
    folder (``folder``, and ``here``, where its pipeline file lies) are replaced by names that do
    not depend on the cell."""
    ids: dict[str, str] = {}
    for stage in stages:
        names = {str(folder / stage.name): "<self>", **{str(folder / n): i for n, i in ids.items()},
                 str(folder): "<cell>", str(here): "<cell>"}
        pattern = "|".join(re.escape(p) for p in sorted(names, key=len, reverse=True))
        text = re.sub(f"({pattern})(?=[/:\"]|$)", lambda m, names=names: names[m.group(1)],  # whole components
                      json.dumps(list(stage.args), ensure_ascii=False))
        ids[stage.name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return ids


def _shared_stages(root: Path, cells: Sequence[Cell]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per cell, its stages that another cell makes identically (the same stage name and identity):
    stage -> its done mark and its folder in the study's store of shared stages."""
    stages_of = {}
    for cell in cells:
        folder = root / "cells" / cell.name
        stages, here = _cell_stages(cell, folder)
        ids = _stage_identities(folder, here, stages)
        stages_of[cell.name] = [(s, ids[s.name]) for s in stages]
    made = Counter((s.name, identity) for stages in stages_of.values() for s, identity in stages)
    return {name: {s.name: {"done": s.done_marker, "store": f"{SHARED_STORE}/{s.name}-{identity}"}
                   for s, identity in stages if made[(s.name, identity)] > 1}
            for name, stages in stages_of.items()}


def _shared(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        return read_json(folder / SHARED_FILE)
    except DataError:
        return {}


def _link_shared(folder: Path) -> list[str]:
    """Link each stage of the cell in ``folder`` (``root/cells/<name>``) that the study's store
    already holds finished, so the pipeline skips it. A stage the cell has begun or made itself is
    kept; a link to anything else than its own store entry, finished, is dropped. Returns the
    stages linked."""
    root = folder.parent.parent
    linked = []
    for stage, entry in _shared(folder).items():
        place, stored = folder / stage, root / entry["store"]
        if place.is_symlink():
            if place.resolve() == stored.resolve() and (stored / entry["done"]).is_file():
                linked.append(stage)
                continue
            place.unlink()
        if place.exists() or not (stored / entry["done"]).is_file():
            continue
        try:
            os.symlink(os.path.relpath(stored, folder), place, target_is_directory=True)
        except OSError:  # a file system without links: the stage runs here
            continue
        linked.append(stage)
    return linked


def _store_shared(folder: Path) -> list[str]:
    """Move each shared stage the cell made itself, finished, into the study's store (when the store
    lacks it) and link it back, so later cells reuse it. Returns the stages moved."""
    root = folder.parent.parent
    moved = []
    for stage, entry in _shared(folder).items():
        place, stored = folder / stage, root / entry["store"]
        if place.is_symlink() or not (place / entry["done"]).is_file() or stored.exists():
            continue
        stored.parent.mkdir(parents=True, exist_ok=True)
        try:
            place.rename(stored)
        except OSError:
            continue
        os.symlink(os.path.relpath(stored, folder), place, target_is_directory=True)
        moved.append(stage)
    return moved


ATTEMPT_START = "== study: cell attempt started at"
ATTEMPT_END = "== study: cell attempt ended after"
_ATTEMPT = re.compile(r"== study: cell attempt (?P<kind>started at|ended after) (?P<value>\d+(?:\.\d+)?)")


def _earlier_attempts(folder: Path) -> list[float]:
    """The seconds of each earlier attempt at the cell in ``folder``, from its log. An attempt that
    ended wrote its time; one that was killed lasted until the log's last write (progress lines come
    at most 30 s apart), which is written down now, so a later attempt still reads it. A log of an
    older version, without these marks, takes its attempts from the ``cell.json`` that version wrote
    (written into the log too, so they stay counted); without either, nothing is counted."""
    log = folder / LOG_FILE
    attempts = _logged_attempts(log)
    if not attempts and (recorded := _recorded_attempts(folder)):
        for seconds in recorded:
            _mark(log, f"{ATTEMPT_START} 0.0 (recorded in {CELL_STATUS} by an older version)")
            _mark(log, f"{ATTEMPT_END} {seconds}")
        attempts = recorded
    return attempts


def _recorded_attempts(folder: Path) -> list[float]:
    record = _status(folder)
    if record.get("attempts"):
        return [float(s) for s in record["attempts"]]
    return [float(record["seconds"])] if isinstance(record.get("seconds"), int | float) else []


def _logged_attempts(log: Path) -> list[float]:
    try:
        text = log.read_text(errors="replace")
        last_write = log.stat().st_mtime
    except OSError:
        return []
    attempts: list[float] = []
    started = None
    for line in text.splitlines():
        if (mark := _ATTEMPT.search(line)) is None:
            continue
        if mark["kind"] == "started at":
            started = float(mark["value"])
        elif started is not None:
            attempts.append(float(mark["value"]))
            started = None
    if started is not None:
        killed = round(max(0.0, last_write - started), 1)
        _mark(log, f"{ATTEMPT_END} {killed} (killed: until its last line)")
        attempts.append(killed)
    return attempts


def _mark(log: Path, line: str) -> None:
    """Append a line to a cell's log, on a line of its own even after a child killed mid-line."""
    with open(log, "a+") as out:
        out.seek(0, os.SEEK_END)
        if out.tell():
            out.seek(out.tell() - 1)
            if out.read(1) != "\n":
                out.write("\n")
        out.write(line + "\n")


def run_cell(cell_file: str, digest: str) -> dict[str, Any]:
    """Run one cell's pipeline (``uterosynth run``) in a child process; record its outcome and the
    cell's ``digest`` in ``cell.json`` beside it. Stages another cell has already made identically
    are linked from the study's store first, not recomputed; shared stages the cell made go to the
    store when it ends. The same function runs under every executor."""
    folder = Path(cell_file).parent
    linked = _link_shared(folder)
    earlier = _earlier_attempts(folder)
    t0 = time.perf_counter()
    _mark(folder / LOG_FILE, f"{ATTEMPT_START} {time.time():.1f}")
    with open(folder / LOG_FILE, "a") as log:
        code = subprocess.run([sys.executable, "-m", "uterosynth", "run", cell_file], stdout=log, stderr=subprocess.STDOUT,
                              check=False).returncode
    seconds = round(time.perf_counter() - t0, 1)
    _mark(folder / LOG_FILE, f"{ATTEMPT_END} {seconds}")
    status = {"status": "ok" if code == 0 else "failed", "exit_code": code, "digest": digest,
              **({} if code == 0 else {"error": _log_error(folder / LOG_FILE)}),
              "seconds": round(seconds + sum(earlier), 1), "attempts": [*earlier, seconds], "log": LOG_FILE,
              "uterosynth_version": __version__, "shared": linked, "stored": _store_shared(folder)}
    write_json(folder / CELL_STATUS, status)
    return status


def _status(folder: Path) -> dict[str, Any]:
    """The cell's ``cell.json`` (``{"status": "not run"}`` when there is none or it cannot be read)."""
    try:
        return read_json(folder / CELL_STATUS)
    except DataError:
        return {"status": "not run"}


def _run_submitit(files: Sequence[str], digests: Sequence[str], root: Path,
                  executor: ExecutorConfig) -> list[dict[str, Any]]:
    import submitit

    ex = submitit.AutoExecutor(folder=str(root / "submitit"), cluster=executor.cluster)
    try:
        ex.update_parameters(**executor.parameters)
        jobs = ex.map_array(run_cell, files, digests)
    except Exception as err:
        raise ConfigError(f"submitit could not submit the cells ({first_line(err)}); check 'executor' "
                          "in the study file") from err
    outcomes = []
    for file, job in zip(files, jobs, strict=True):
        try:
            outcomes.append(job.result())
        except Exception as err:  # a job the engine lost: record why and where its log is
            status = {"status": "lost", "exit_code": None, "error": first_line(err),
                      "log": str(job.paths.stderr)}
            write_json(Path(file).parent / CELL_STATUS, status)
            outcomes.append(status)
    return outcomes


class StudyFailed(DataError):
    """One or more cells failed; ``study.json`` and ``study.html`` were written for the others."""


def run_study(
    root: Path, cfg: GridStudyConfig, cells: Sequence[Cell], *,
    on_cell: Callable[[Cell, str], None] | None = None, only: Sequence[str] = (),
) -> dict[str, Any]:
    """Write each cell's pipeline file, run the unfinished cells on the configured executor, then
    :func:`summarize`. Finished cells are skipped; with ``only`` (shell patterns of cell names), so
    is every cell no pattern matches, and it is read as it stands.

    Raises:
        ConfigError: a pattern of ``only`` matches no cell.
        StudyFailed: a cell failed (after the summary of the others was written).
    """
    for pattern in only:
        if not any(fnmatch(cell.name, pattern) for cell in cells):
            raise ConfigError(f"cell pattern '{pattern}' matches no cell of the study ({', '.join(c.name for c in cells)})",
                              keys=("cell",))
    chosen = [cell for cell in cells if not only or any(fnmatch(cell.name, p) for p in only)]
    records = {cell.name: _status(root / "cells" / cell.name) for cell in cells}
    for cell in chosen:  # refuse before any cell is touched
        if records[cell.name].get("digest") not in (None, cell.digest):
            raise ConfigError(f"{root / 'cells' / cell.name / CELL_STATUS}: cell '{cell.name}' was run with another "
                              "configuration; move its folder away to rerun it, or restore the study file")
    pending = [cell for cell in chosen if records[cell.name]["status"] != "ok"]
    shared = _shared_stages(root, cells) if pending else {}
    for cell in cells:
        folder = root / "cells" / cell.name
        if cell in pending:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / CELL_FILE).write_text(yaml.safe_dump(cell.document(folder), sort_keys=False))
            write_json(folder / SHARED_FILE, shared[cell.name])
        if on_cell:
            on_cell(cell, "queued" if cell in pending else "skipped (done)" if cell in chosen else "kept (not selected)")
    files = [str(root / "cells" / c.name / CELL_FILE) for c in pending]
    digests = [c.digest for c in pending]
    if cfg.executor.kind == "submitit":
        outcomes = _run_submitit(files, digests, root, cfg.executor) if files else []
    else:
        with ThreadPoolExecutor(max_workers=cfg.executor.parallel) as pool:
            outcomes = list(pool.map(run_cell, files, digests))
    for cell, outcome in zip(pending, outcomes, strict=True):
        if on_cell:
            on_cell(cell, outcome["status"])
    summary = summarize(root, cfg, cells)
    failed = [c["name"] for c in summary["cells"] if c["status"] not in ("ok", "not run")]  # 'not run': not selected
    if failed:
        raise StudyFailed(f"{len(failed)} of {len(cells)} cell(s) failed: {', '.join(failed)} "
                          f"(their logs: cells/<name>/{CELL_STATUS} names each); the others are in {root / 'study.html'}")
    return summary


def _interval(value: float | None, low: float | None, high: float | None) -> dict[str, float | None]:
    return {"value": value, "ci_low": low, "ci_high": high}


SET_METRICS = ("kid", "fid", "fid_2.5d", "frd", "msssim_diversity", "lpips_diversity", "slice_consistency_ssim")
"""The evaluation's set metrics in the table (those it measured: 2.5D FID and slice consistency for
volumes, LPIPS diversity with LPIPS weights): each for the samples, the real-vs-real floor and the baselines."""


def _downstream_gains(downstream: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The downstream gain over real data alone of each protocol at the smallest label budget, with its
    interval (over training seeds and test subjects)."""
    gains = (downstream or {}).get("gains") or []
    if not gains:
        return []
    budget = min(g["budget"] for g in gains)
    return [{"protocol": g["protocol"], "budget": budget,
             **_interval(g["diff_vs_real"]["mean"], g["diff_vs_real"]["ci_low"], g["diff_vs_real"]["ci_high"])}
            for g in gains if g["budget"] == budget]


def _judged(classes: Sequence[Any], record: Mapping[str, Any] | None) -> dict[str, Any]:
    """A judge's accuracy per requested class (Wilson intervals, over volumes for a volume's slices:
    :attr:`ClassAccuracy.unit_interval`) and its worst class; and, from the
    judge's ``record`` in the evaluation, its accuracy on the real reference items (``real``: over
    all, intervals over subjects, and its worst class), to read its verdicts on samples against."""
    out: dict[str, Any] = {"judge": {c.cls: {"accuracy": c.accuracy, "ci": list(c.unit_interval), "n": c.n,
                                             "units": c.units} for c in classes}}
    if classes:
        worst = min(classes, key=lambda c: c.accuracy)
        out["judge_worst"] = {"class": worst.cls, **_interval(worst.accuracy, *worst.unit_interval)}
    real = (record or {}).get("on_reference") or {}
    if real.get("value") is not None:
        per_class = (real.get("details") or {}).get("per_class") or {}
        worst_real = min(per_class.items(), key=lambda kv: kv[1]["value"], default=None)
        out["real"] = {**_interval(real["value"], real.get("ci_low"), real.get("ci_high")),
                       "worst": None if worst_real is None else
                       {"class": worst_real[0], **_interval(worst_real[1]["value"], worst_real[1].get("ci_low"),
                                                            worst_real[1].get("ci_high"))}}
    return out


_SLICED = ("judge", "judge_worst", "real", "judges", "kid", "fid", "frd", "msssim_diversity", "lpips_diversity")
"""What a slice-by-slice evaluation of volumes (``volume_slices``) measures as a 2D model's samples are
measured: it replaces the volumetric evaluation's readings in the table, which are kept under
``volumetric``; 2.5D FID and slice consistency stay volumetric."""


def _evaluation_results(ev: Any) -> dict[str, Any]:
    """An evaluation's judges (the judge's per-class accuracy, worst class and real-item accuracy;
    the other judges under ``judges``) and set metrics (:data:`SET_METRICS`)."""
    from .data.evaluation_results import SYNTHETIC_SET

    out = _judged(ev.judge_accuracy(SYNTHETIC_SET) or [], ev.judge)
    out["judges"] = {j["task"]: _judged(ev.judge_accuracy(SYNTHETIC_SET, j["task"]) or [], j) for j in ev.other_judges}
    for metric in SET_METRICS:
        if rows := ev.metric_rows(metric):
            out[metric] = {r.set: {**_interval(r.value, r.ci_low, r.ci_high), "n": r.n} for r in rows}
    out.setdefault("kid", {})
    return out


def _cell_results(folder: Path) -> dict[str, Any]:
    """What a finished cell measured: judge per class and its worst class (and so for the judges of
    other attributes, ``judges``); the set metrics
    (:data:`SET_METRICS`) of the samples, the floor and the baselines; the downstream gain at the
    smallest label budget; the audit; and the training stages' steps, items/s and counted
    floating-point operations (``flops``; ``None`` for runs older than the count). A cell of volumes
    with a slice-by-slice evaluation is read on slices (:data:`_SLICED`)."""
    from .data.audit_file import AUDIT_FILE, read_audit
    from .data.evaluation_results import METRICS_FILE, read_evaluation

    _, stages = pipeline_stages(folder / CELL_FILE, out=folder)
    out: dict[str, Any] = {"training": {}, "shared": list(_status(folder).get("shared") or [])}
    sliced: dict[str, Any] | None = None
    for stage in stages:
        place = folder / stage.name
        if stage.command == "evaluate" and (place / METRICS_FILE).is_file():
            ev = read_evaluation(place)
            if (ev.metrics.get("reference") or {}).get("volume_slices"):
                sliced = _evaluation_results(ev)
            else:
                out.update(_evaluation_results(ev))
                out["downstream"] = _downstream_gains(ev.metrics.get("downstream"))
        elif stage.command == "audit" and (place / AUDIT_FILE).is_file():
            s = read_audit(place)["summary"]
            out["audit"] = {k: s.get(k) for k in ("samples", "flagged", "flagged_fraction", "training_subjects",
                                                    "training_subjects_copied")}
        elif stage.resumable and (place / "summary.json").is_file():
            s = read_json(place / "summary.json")
            out["training"][stage.name] = {"steps": s.get("steps"), "items_per_s": s.get("items_per_s"),
                                           "device": s.get("device"), "flops": s.get("train_flops")}
    expects_slices = any(stage.command == "evaluate" and (stage.options.get("overrides") or {}).get("volume_slices")
                         for stage in stages)
    if sliced is not None or expects_slices:  # volumes read slice by slice replace the volumetric readings
        out["volumetric"] = {k: out.pop(k) for k in _SLICED if k in out}
        if sliced is None:  # its slice evaluation did not finish: no reading to compare with 2D cells
            out["judged_on"] = "slices missing"
        else:
            out.update({k: v for k, v in sliced.items() if k in _SLICED}, judged_on="slices")
    return out


def _gain(b: dict[str, Any], w: dict[str, Any], lower_is_better: bool) -> tuple[float, float, float]:
    """How much better ``b`` is than ``w`` (negative: worse), with its 95 % interval from the two
    cells' intervals (independent estimates: :func:`difference_interval`)."""
    first, second = (w, b) if lower_is_better else (b, w)
    return difference_interval(first["value"], (first["ci_low"], first["ci_high"]),
                               second["value"], (second["ci_low"], second["ci_high"]))


def _measured(m: dict[str, Any] | None) -> bool:
    return bool(m) and None not in (m.get("value"), m.get("ci_low"), m.get("ci_high"))


def verdict(better: Sequence[dict[str, Any]], worse: Sequence[dict[str, Any]], *, lower_is_better: bool,
            margin: float | None = None) -> str:
    """A claim's verdict over paired measurements (each ``value``, ``ci_low``, ``ci_high``; ``None``
    for a cell that has none).

    Without ``margin`` (``beats``), a pair holds when the better cell's interval lies entirely on the
    better side of the worse cell's, and fails when the opposite holds. With ``margin``
    (``at_least``, non-inferiority), a pair holds when the interval of how much better the better
    cell is lies above ``-margin``, and fails when it lies below. ``supported``: every pair holds;
    ``not supported``: some pair fails and none holds; otherwise ``inconclusive at this size`` --
    always when there is no pair, or a pair lacks a measurement or an interval.
    """
    outcomes = []
    for b, w in zip(better, worse, strict=True):
        if not (_measured(b) and _measured(w)):
            return "inconclusive at this size"
        if margin is not None:
            _, low, high = _gain(b, w, lower_is_better)
            outcomes.append("claimed" if low > -margin else "opposite" if high < -margin else "overlap")
        elif (b["ci_high"] < w["ci_low"]) if lower_is_better else (b["ci_low"] > w["ci_high"]):
            outcomes.append("claimed")
        elif (w["ci_high"] < b["ci_low"]) if lower_is_better else (w["ci_low"] > b["ci_high"]):
            outcomes.append("opposite")
        else:
            outcomes.append("overlap")
    if outcomes and all(o == "claimed" for o in outcomes):
        return "supported"
    if "opposite" in outcomes and "claimed" not in outcomes:
        return "not supported"
    return "inconclusive at this size"


def _measure(cell: dict[str, Any], metric: str, attribute: str | None = None) -> dict[str, Any] | None:
    """The cell's measurement for a claim's ``metric`` (``attribute``: that judge's); ``None`` when the
    cell did not measure it (not run, or failed before)."""
    if cell["status"] not in MEASURED:
        return None
    if metric == "judge_worst":
        results = cell.get("results", {})
        judged = results if attribute is None else (results.get("judges") or {}).get(attribute) or {}
        return judged.get("judge_worst")
    if metric == "audit_flagged":
        return _flagged(cell.get("results", {}).get("audit") or {})
    return (cell.get("results", {}).get(metric) or {}).get("synthetic")


def _flagged(audit: dict[str, Any]) -> dict[str, Any] | None:
    """The audit's flagged fraction with its Wilson interval over the samples (``None``: no audit).
    Each audit sets its thresholds on its own training cohort, so cells of different cohorts are held
    to different bars (``benchmarks/audit_threshold_swap.py`` swaps them)."""
    n, flagged = audit.get("samples"), audit.get("flagged")
    if flagged is None and n and audit.get("flagged_fraction") is not None:
        flagged = round(audit["flagged_fraction"] * n)
    if not n or flagged is None:
        return None
    return {"value": flagged / n, "n": n, **dict(zip(("ci_low", "ci_high"), wilson_ci(flagged, n), strict=True))}


def _claims(cfg: GridStudyConfig, cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for claim in cfg.claims:
        def key(c: dict[str, Any], axis: str = claim.axis) -> tuple:
            return (c["seed"], *sorted((a, v) for a, v in c["values"].items() if a != axis))

        by_key = {}
        for c in cells:
            if c["values"][claim.axis] in (claim.better, claim.worse):
                by_key.setdefault(key(c), {})[c["values"][claim.axis]] = c
        pairs = [(p[claim.better], p[claim.worse]) for p in by_key.values() if claim.better in p and claim.worse in p]
        measured = [(_measure(b, claim.metric, claim.attribute), _measure(w, claim.metric, claim.attribute))
                    for b, w in pairs]
        lower = claim.metric != "judge_worst"
        out.append({**claim.model_dump(), "pairs": len(pairs), "measured_pairs": sum(_measured(b) and _measured(w) for b, w in measured),
                    "seeds": len({b["seed"] for b, _ in pairs}),
                    "verdict": verdict([b for b, _ in measured], [w for _, w in measured],
                                       lower_is_better=lower, margin=claim.margin),
                    "cells": [[b["name"], w["name"]] for b, w in pairs],
                    "measured": [[b, w] for b, w in measured],
                    "gains": [dict(zip(("value", "ci_low", "ci_high"), _gain(b, w, lower), strict=True))
                              if _measured(b) and _measured(w) else None for b, w in measured]})
    return out


MEASURED = ("ok", "failed")
"""The cells whose measurements are read: finished ones, and failed ones for what they measured
before the stage that failed (a release that refuses samples below the fidelity bar comes after the
evaluation and the audit)."""


def _log_error(log: Path) -> str | None:
    """The last error line of a cell's log (``uterosynth run`` names the failed stages and why)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((line.removeprefix("error: ")[:400] for line in reversed(lines) if line.startswith("error: ")), None)


def summarize(root: Path, cfg: GridStudyConfig, cells: Sequence[Cell]) -> dict[str, Any]:
    """Read every cell into ``study.json`` and write ``study.html`` and ``study.md``; returns the document."""
    from .study_report import write_study_markdown, write_study_report

    rows = []
    for cell in cells:
        folder = root / "cells" / cell.name
        status = _status(folder)
        row = {"name": cell.name, "values": dict(cell.values), "seed": cell.seed, "status": status["status"],
               "seconds": status.get("seconds"), "attempts": status.get("attempts") or []}
        if status["status"] != "ok" and (error := status.get("error") or _log_error(folder / LOG_FILE)):
            row["error"] = error
        if status["status"] in MEASURED:
            try:
                row["results"] = _cell_results(folder)
            except (DataError, ConfigError) as err:
                row["unreadable"] = str(err)
        rows.append(row)
    document = {"uterosynth_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "config": cfg.model_dump(mode="json"), "cells": rows, "claims": _claims(cfg, rows)}
    write_json(root / "study.json", document)
    write_study_report(root, document, cells)
    write_study_markdown(root, document)
    return document
