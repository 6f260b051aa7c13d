"""``uterosynth demo``: the whole mission on the digital phantom, as a chain of stages.

The chain is ``configs/pipeline_cpu.yaml``; ``--quick`` and ``--dims 3`` choose its variants
(``pipeline_cpu_quick.yaml``, ``pipeline_cpu_3d.yaml``, ``pipeline_cpu_3d_quick.yaml``: the base
file plus overrides). Every stage reads the previous stage's artifact and writes its own into
``<out>/<NN_stage>`` (atomically; training stages resume from their last checkpoint), so
re-running the demo skips finished stages and Ctrl-C never leaves a half-written one. The stages
run through :mod:`uterosynth.pipeline`, whose ``report.html`` leads with the answer (samples per
class beside real ones, the judge's accuracy per class, KID against the floor and the baselines)
and links every artifact and picture.

``--quick`` is a smoke run: it says so on the console and at the top of the report
(:data:`QUICK_NOTICE`), and its release goes out with ``--force``, its datasheet stating that the
samples failed the fidelity bar. The default demo releases without force: when its samples fail
the bar the release stage is refused, the reader study still runs, the report is written (the
refusal at its top) and the demo exits with code 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from .core.errors import ConfigError, DataError
from .pipeline import PRESETS, PipelineFailed, Stage, pipeline_stages, run_stage, run_stages

__all__ = ["QUICK_NOTICE", "demo_pipeline", "demo_stages", "run_demo"]

QUICK_NOTICE = (
    "Smoke run (--quick): a tiny cohort, tiny models and a few training steps, only to check that every stage "
    "runs. Its model is not expected to work: the judge will not recognise the requested classes, KID will not "
    "beat the baselines, and the release is forced past its fidelity bar (its datasheet says it failed). Run "
    "'uterosynth demo' without --quick for a model meant to work."
)


def demo_pipeline(*, quick: bool, dims: int = 2) -> Path:
    """The pipeline file of the demo: ``pipeline_cpu.yaml`` or its ``--quick`` / ``--dims 3`` variant.

    Raises:
        ConfigError: ``dims`` is not 2 or 3.
        DataError: the file is missing from the installation.
    """
    if dims not in (2, 3):
        raise ConfigError(f"dims: expected 2 or 3, got {dims}", keys=("dims",))
    path = PRESETS / f"pipeline_cpu{'_3d' if dims == 3 else ''}{'_quick' if quick else ''}.yaml"
    if not path.is_file():
        raise DataError(f"{path}: demo preset not found (the uterosynth installation is incomplete; reinstall it)")
    return path


def demo_stages(out: Path, *, quick: bool, dims: int = 2) -> list[Stage]:
    """The demo's stages; ``quick`` shrinks cohort, models and step counts to a smoke run."""
    return pipeline_stages(demo_pipeline(quick=quick, dims=dims), out=out, numbered=True)[1]


def run_demo(
    out: str | Path,
    *,
    quick: bool = False,
    dims: int = 2,
    run_command: Callable[[Stage, Sequence[str]], None] = run_stage,
    on_stage: Callable[[int, int, Stage, str], None] | None = None,
) -> dict:
    """Run (or resume) every stage into ``out``; returns a summary with per-stage seconds.

    ``report.html`` and ``demo.json`` are written also when a stage fails.

    Raises:
        PipelineFailed: a stage failed (``on_stage`` was told its message).
    """
    out = Path(out)
    stages = demo_stages(out, quick=quick, dims=dims)
    title = "uterosynth demo on the digital phantom" + (" (smoke run)" if quick else "")
    failed: PipelineFailed | None = None
    try:
        timings = run_stages(out, stages, title=title, run_command=run_command, on_stage=on_stage,
                             notice=QUICK_NOTICE if quick else None)
    except PipelineFailed as err:
        failed, timings = err, err.timings
    summary = {"out": str(out), "quick": quick, "dims": dims, "report": str(out / "report.html"), "stages": timings,
               "seconds": round(sum(t for t in timings.values() if isinstance(t, float)), 1)}
    if quick:
        summary["smoke_run"] = QUICK_NOTICE
    if failed is not None:
        summary["failed"] = failed.failures
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    if failed is not None:
        raise failed
    return summary
