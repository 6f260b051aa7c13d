"""``uterosynth release`` and ``uterosynth release-model``: publishable dataset and model folders."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import app
from .options import stage_command

if TYPE_CHECKING:
    from ..stages.base import Job

Out = Annotated[Path, typer.Option("--out", help="Release folder to write.")]
NoAudit = Annotated[bool, typer.Option("--no-audit", help="Release without an audit (stated loudly in the datasheet).")]
Licence = Annotated[str, typer.Option("--licence", help="Licence written into the datasheet / model card.")]


@stage_command(app.command("release"), "release", shared=("config", "overrides"))
def release(
    *,
    synthetic: Annotated[Path, typer.Option("--synthetic", help="Synthetic set folder.")],
    out: Out,
    audit: Path = typer.Option(None, "--audit", help="Audit folder (from 'uterosynth audit'); flagged samples are dropped."),
    no_audit: NoAudit = False,
    dicom: bool = typer.Option(False, "--dicom", help="Also write DICOM series (secondary capture, marked synthetic)."),
    dicom_reference: Path = typer.Option(
        None, "--dicom-reference", help="Real DICOM file/folder whose acquisition descriptors (field strength, "
        "sequence, TR/TE) are copied into the DICOM files; identifiers are never copied. Implies --dicom."),
    licence: Licence = "CC-BY-4.0",
    evaluation: Path = typer.Option(
        None, "--evaluation", help="Evaluation folder of this set (from 'uterosynth evaluate', with metrics.json): "
        "its judge accuracy per class, KID and the audit go into DATASHEET.md, and the samples must pass the "
        "fidelity bar (config 'quality')."),
    force: bool = typer.Option(False, "--force", help="Release samples that fail the fidelity bar (stated at the top "
                               "of DATASHEET.md)."),
    **shared: Any,
) -> Job:
    """Release the audited synthetic samples as NIfTI, PNG (and DICOM) with metadata.csv, DATASHEET.md, SHA256SUMS."""
    from ..stages.release import ReleaseJob

    return ReleaseJob(synthetic=synthetic, out=out, audit=audit, no_audit=no_audit, dicom=dicom,
                      dicom_reference=dicom_reference, licence=licence, evaluation=evaluation, force=force, **shared)


@stage_command(app.command("release-model"), "release-model", shared=())
def release_model(
    *,
    model: Annotated[Path, typer.Option("--model", help="Model checkpoint folder (model.safetensors + model.json).")],
    out: Out,
    audit: Annotated[Path | None, typer.Option(
        "--audit", help="Audit of samples of this model (results go into MODEL_CARD.md).")] = None,
    no_audit: NoAudit = False,
    include_train_state: bool = typer.Option(False, "--include-train-state", help="Also copy train_state.pt."),
    licence: Licence = "CC-BY-4.0",
    **shared: Any,
) -> Job:
    """Release a model checkpoint with MODEL_CARD.md (including its audit results) and SHA256SUMS."""
    from ..stages.release import ReleaseModelJob

    return ReleaseModelJob(model=model, out=out, audit=audit, no_audit=no_audit,
                           include_train_state=include_train_state, licence=licence, **shared)
