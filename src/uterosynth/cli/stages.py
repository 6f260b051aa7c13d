"""Every stage run for people: its progress display and its summary.

A command builds its stage's job and calls :func:`show_stage`; ``uterosynth demo`` and
``uterosynth run`` hand :func:`show_stage` to the pipeline runner, so a stage shows the same
progress bars and summary whether it runs alone or in a pipeline. The stage's work itself is its
``run`` function in :mod:`uterosynth.stages`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from ..stages import stage
from .common import console, emit_summary, err_console, progress_bar

__all__ = ["show_stage"]

_Shown = Callable[[Any, bool], "dict[str, Any] | None"]
_SHOWN: dict[str, tuple[str, _Shown]] = {}
_TITLES = {"train autoencoder": "autoencoder", "train diffusion": "diffusion", "train decoder": "fast decoder"}
"""Titles of the stages shown as their ``run`` returns them (training draws its own progress bar)."""


def _shows(command: str, title: str) -> Callable[[_Shown], _Shown]:
    def register(fn: _Shown) -> _Shown:
        _SHOWN[command] = (title, fn)
        return fn

    return register


def show_stage(command: str, job: Any, *, as_json: bool = False) -> None:
    """Run stage ``command`` on ``job`` with its progress display, then print its summary.

    Under torchrun only rank 0 prints the summary.
    """
    command = stage(command).command
    if command in _SHOWN:
        title, shown = _SHOWN[command]
        summary = shown(job, as_json)
    else:
        title, summary = _TITLES.get(command, command), stage(command).run(job)
    if summary is not None and int(os.environ.get("RANK", "0")) == 0:
        emit_summary(summary, as_json=as_json, title=title)


@contextlib.contextmanager
def _counted(label: str) -> Iterator[Callable[[int, int], None]]:
    """A transient progress bar fed by ``(done, total)`` callbacks."""
    with progress_bar(transient=True) as progress:
        task = progress.add_task(label, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


@_shows("phantom", "phantom cohort")
def _phantom(job, as_json):
    from ..stages.data import run_phantom

    with progress_bar(transient=True) as bar:
        task = bar.add_task("phantom", total=None)
        return run_phantom(job, on_start=lambda n: bar.update(task, total=n),
                           progress=lambda n: bar.advance(task, n))


@_shows("prepare", "prepared dataset")
def _prepare(job, as_json):
    from ..stages.data import run_prepare

    with progress_bar(transient=True) as progress:
        task = progress.add_task("prepare", total=None)
        return run_prepare(
            job, on_start=lambda n: progress.update(task, total=n),
            on_subject=lambda subject: progress.update(task, advance=1, description=f"prepare {subject}"))


@_shows("encode", "encode")
def _encode(job, as_json):
    from ..stages.training import run_encode

    with _counted("encode") as on_batch:
        return run_encode(job, on_batch=on_batch)


@_shows("distill", "distilled student")
def _distill(job, as_json):
    from ..stages.training import run_distill

    with _counted("teacher couplings") as on_batch:
        return run_distill(job, on_couplings=on_batch)


@_shows("sample", "sample")
def _sample(job, as_json):
    from ..stages.sampling import run_sample

    with _counted("sample") as on_item:
        return run_sample(job, on_item=on_item)


@_shows("downstream train-classifier", "train-classifier")
def _judge(job, as_json):
    from ..stages.downstream import run_judge

    meta = run_judge(job)
    return {"out": str(job.out), "task": meta["task"], "classes": meta["classes"],
            "val_balanced_accuracy": round(meta["val_balanced_accuracy"], 4),
            "test_accuracy": round(meta["test_accuracy"], 4), "sha256": meta["sha256"]}


def _embedding(run: Callable[..., dict[str, Any]], job: Any, label: str) -> dict[str, Any]:
    with progress_bar() as progress:
        task = progress.add_task(label, total=None)
        info = run(
            job, on_start=lambda epochs: progress.update(task, total=epochs),
            progress=lambda epoch, loss: progress.update(task, completed=epoch, description=f"loss {loss:.3f}"))
    return {"out": str(job.out), "name": info["name"], "sha256": info["sha256"], "feature_dim": info["feature_dim"],
            "images": info["data"]["images"], "final_loss": info["training"]["final_loss"]}


@_shows("evaluate train-encoder", "encoder")
def _encoder(job, as_json):
    from ..stages.evaluation import run_encoder

    return _embedding(run_encoder, job, "train encoder")


@_shows("audit train-encoder", "copy detector")
def _copy_detector(job, as_json):
    from ..stages.release import run_copy_detector

    return _embedding(run_copy_detector, job, "train copy detector")


@_shows("evaluate baselines", "baselines")
def _baselines(job, as_json):
    from ..stages.evaluation import run_baselines

    made = run_baselines(job)
    return {"out": str(job.out), **{name: str(path) for name, path in made.items()},
            "use": " ".join(f"--baseline {name}={path}" for name, path in made.items())}


@_shows("downstream", "downstream")
def _downstream(job, as_json):
    from ..stages.downstream import run_downstream_grid

    with progress_bar() as bar:
        task = bar.add_task("downstream", total=None)
        results = run_downstream_grid(
            job, progress=lambda desc, done, total: bar.update(task, completed=done, total=total, description=desc))
    low = min(results["budgets"])
    headline = {
        r["protocol"]: round(r["balanced_accuracy"]["mean"], 4)
        for r in results["summary"] if r["budget"] == low and r["balanced_accuracy"]["mean"] is not None
    }
    return {"out": str(job.out), "task": results["task"], "runs": len(results["runs"]), "seconds": results["seconds"],
            f"balanced_accuracy@{low:g}": headline}


@_shows("evaluate", "evaluation")
def _evaluate(job, as_json):
    from ..stages.evaluation import run_evaluate

    metrics = run_evaluate(job, log=lambda line: err_console.print(f"[dim]{line}[/]"))
    summary = {"out": str(job.out), "extractor": metrics["extractor"]["name"], "warnings": len(metrics["warnings"])}
    for name, s in metrics["sets"].items():
        for key in ("fid", "fid_2.5d", "kid", "frd", "conditioning_fidelity"):
            if key in s["metrics"]:
                summary[f"{name}.{key}"] = s["metrics"][key]["value"]
    return summary


@_shows("audit", "audit")
def _audit(job, as_json):
    from ..stages.release import run_audit

    summary = run_audit(job)
    if not as_json:
        summary.pop("flagged_indices", None)
    return summary


@_shows("reader-study create", "reader study")
def _study(job, as_json):
    from ..stages.release import run_study

    with _counted("rendering") as on_item:
        made = run_study(job, on_item=on_item)
    summary = {"study": str(made.root), "items": made.n_items, "per_class": made.classes,
               "links": made.links, "admin_token": made.admin_token}
    if as_json:
        return summary
    console.print(f"[bold]study[/] {made.root}: {made.n_items} images, {len(made.links)} raters")
    console.print("Secret links (shown only now; only their hashes are stored):")
    for name, link in made.links.items():
        console.print(f"  {name}: {link}", soft_wrap=True, highlight=False)
    console.print(f"Admin token: {made.admin_token}", soft_wrap=True, highlight=False)
    return None


@_shows("reader-study analyze", "reader study")
def _analyze(job, as_json):
    from ..stages.release import run_analyze

    res = run_analyze(job)
    pooled = res.results["pooled"]
    return {"out": str(res.out), "answers": res.results["n_answers"], "accuracy": pooled["accuracy"],
            "auc": pooled["auc"], "binomial_p": pooled["binomial_p"], "kappa": res.results["agreement"]["kappa"]}
