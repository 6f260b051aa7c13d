"""The closing stages: ``audit`` (memorisation), ``release`` / ``release-model`` and the reader study."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import ConfiguredJob, EmbeddingJob, Job

__all__ = ["AnalyzeJob", "AuditJob", "CopyDetectorJob", "MembershipJob", "ReleaseJob", "ReleaseModelJob", "StudyJob",
           "run_analyze", "run_audit", "run_copy_detector", "run_membership", "run_release", "run_release_model",
           "run_study"]


class AuditJob(ConfiguredJob):
    """A calibrated memorisation audit (``audit.json`` marks it finished)."""

    train: str
    synthetic: Path
    holdout: str | None = None
    encoder: Path | None = None
    controls: Path | None = None
    quantile: float | None = None


def run_audit(job: AuditJob) -> dict[str, Any]:
    """Audit the synthetic set; returns the audit summary (with ``flagged_indices``)."""
    from ..privacy.config import AuditConfig
    from ..privacy.report import write_audit

    cfg = job.settings(AuditConfig, holdout=job.holdout, quantile=job.quantile)
    return write_audit(job.train, str(job.synthetic), str(job.out), config=cfg,
                       encoder=None if job.encoder is None else str(job.encoder),
                       controls=None if job.controls is None else str(job.controls), overwrite=job.overwrite)


class CopyDetectorJob(EmbeddingJob):
    """The learned copy detector (``encoder.json`` marks it finished)."""


def run_copy_detector(job: CopyDetectorJob, *, on_start: Callable[[int], None] | None = None,
                      progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train and freeze the copy detector; returns ``encoder.json``'s content."""
    from ..privacy.config import CopyDetectorConfig
    from ..privacy.copy_detector import train_copy_detector

    return job.train(CopyDetectorConfig, train_copy_detector, on_start=on_start, progress=progress)


class MembershipJob(ConfiguredJob):
    """A membership-inference attack on a diffusion model (``membership.json`` marks it finished)."""

    model: Path
    members: str
    nonmembers: str
    seed: int | None = None


def run_membership(job: MembershipJob) -> dict[str, Any]:
    """Score the model's training subjects against unseen ones by its denoising error; returns the summary."""
    from ..privacy.membership import MembershipConfig, write_membership

    cfg = job.settings(MembershipConfig, seed=job.seed)
    return write_membership(str(job.model), job.members, job.nonmembers, str(job.out), config=cfg,
                            overwrite=job.overwrite)


class ReleaseJob(ConfiguredJob):
    """A released synthetic dataset (``SHA256SUMS`` marks it finished)."""

    synthetic: Path
    audit: Path | None = None
    no_audit: bool = False
    dicom: bool = False
    dicom_reference: Path | None = None
    licence: str = "CC-BY-4.0"
    evaluation: Path | None = None
    force: bool = False


def run_release(job: ReleaseJob) -> dict[str, Any]:
    """Release the audited samples (held to the fidelity bar with an evaluation); returns the release summary."""
    from ..release.config import ReleaseConfig
    from ..release.release import release_dataset

    cfg = job.settings(ReleaseConfig)
    return release_dataset(job.synthetic, job.audit, job.out, no_audit=job.no_audit, dicom=job.dicom,
                           dicom_reference=job.dicom_reference, licence=job.licence, overwrite=job.overwrite,
                           evaluation_dir=job.evaluation, config=cfg, force=job.force)


class ReleaseModelJob(Job):
    """A released model checkpoint (``SHA256SUMS`` marks it finished)."""

    model: Path
    audit: Path | None = None
    no_audit: bool = False
    include_train_state: bool = False
    licence: str = "CC-BY-4.0"


def run_release_model(job: ReleaseModelJob) -> dict[str, Any]:
    """Release the checkpoint with its model card; returns the release summary."""
    from ..release.release import release_model

    return release_model(job.model, job.audit, job.out, no_audit=job.no_audit, licence=job.licence,
                         include_train_state=job.include_train_state, overwrite=job.overwrite)


class StudyJob(ConfiguredJob):
    """A blinded reader study, ready to serve (``study.json`` marks it finished)."""

    real: str
    synthetic: Path
    per_source: int | None = None
    raters: str | list[str] | None = None
    size: int | None = None
    class_by: str | list[str] | None = None
    base_url: str | None = None
    title: str | None = None
    seed: int | None = None


def _names(value: str | list[str] | None, *, none_word: bool) -> list[str] | None:
    if value is None or isinstance(value, list):
        return value
    if none_word and value.strip().lower() == "none":
        return []
    return [v.strip() for v in value.split(",") if v.strip() or not none_word]


def run_study(job: StudyJob, *, on_item: Callable[[int, int], None] | None = None):
    """Create the study; returns :func:`~uterosynth.reader_study.create.create_study`'s result (links, tokens)."""
    from ..reader_study.check import CHECK_FILE, check_study, write_check
    from ..reader_study.config import StudyConfig
    from ..reader_study.create import create_study

    cfg = job.settings(StudyConfig, per_source=job.per_source, seed=job.seed, size=job.size, base_url=job.base_url,
                       title=job.title, raters=_names(job.raters, none_word=False),
                       class_by=_names(job.class_by, none_word=True))
    created = create_study(job.real, job.synthetic, job.out, cfg, overwrite=job.overwrite, on_item=on_item)
    # the leak audit of what raters receive, beside the study, before any link is sent
    write_check(check_study(job.out), job.out / CHECK_FILE, study_dir=job.out)
    return created


class AnalyzeJob(Job):
    """The analysis of a reader study's answers (``results.json`` marks it finished)."""

    study: Path
    db_url: str | None = None


def run_analyze(job: AnalyzeJob):
    """Analyse the answers; returns the analysis result."""
    from ..reader_study.report import run_analysis

    return run_analysis(job.study, job.out, db_url=job.db_url, overwrite=job.overwrite)
