"""Every stage as a typed function, and the one registry of stages.

A stage is a command that reads artifacts and writes one artifact folder. Each exports a job
model (its inputs, output folder, config file, overrides and options) and ``run(job)``, which
returns the stage's summary; the file that marks its folder finished is in :data:`STAGES`. The
command line and the pipeline runner both build a job and call ``run``; neither calls the other.

>>> STAGES["train diffusion"].done
'summary.json'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import PRESETS, Job
from .data import PhantomJob, PrepareJob, run_phantom, run_prepare
from .downstream import DownstreamJob, JudgeJob, run_downstream_grid, run_judge
from .evaluation import BaselinesJob, EncoderJob, EvaluateJob, run_baselines, run_encoder, run_evaluate
from .release import (
    AnalyzeJob,
    AuditJob,
    CopyDetectorJob,
    MembershipJob,
    ReleaseJob,
    ReleaseModelJob,
    StudyJob,
    run_analyze,
    run_audit,
    run_copy_detector,
    run_membership,
    run_release,
    run_release_model,
    run_study,
)
from .sampling import SampleJob, run_sample
from .training import (
    DistillJob,
    EncodeJob,
    TrainJob,
    run_distill,
    run_encode,
    run_train_autoencoder,
    run_train_decoder,
    run_train_diffusion,
)

__all__ = ["PRESETS", "STAGES", "Job", "StageDef", "stage"]


@dataclass(frozen=True)
class StageDef:
    """One stage: its command, job model, run function and the file that marks its folder finished.

    ``resumable`` stages continue an unfinished folder (``resume=True``) instead of refusing it.
    """

    command: str
    job: type[Job]
    run: Callable[[Any], Any]
    done: str
    resumable: bool = False


STAGES: dict[str, StageDef] = {s.command: s for s in (
    StageDef("phantom", PhantomJob, run_phantom, "labels.csv"),
    StageDef("prepare", PrepareJob, run_prepare, "manifest.csv"),
    StageDef("train autoencoder", TrainJob, run_train_autoencoder, "summary.json", resumable=True),
    StageDef("encode", EncodeJob, run_encode, "latents.json"),
    StageDef("audit membership", MembershipJob, run_membership, "membership.json"),
    StageDef("audit train-encoder", CopyDetectorJob, run_copy_detector, "encoder.json"),
    StageDef("train diffusion", TrainJob, run_train_diffusion, "summary.json", resumable=True),
    StageDef("train decoder", TrainJob, run_train_decoder, "summary.json", resumable=True),
    StageDef("distill", DistillJob, run_distill, "summary.json", resumable=True),
    StageDef("sample", SampleJob, run_sample, "metadata.jsonl"),
    StageDef("downstream train-classifier", JudgeJob, run_judge, "classifier.json"),
    StageDef("evaluate train-encoder", EncoderJob, run_encoder, "encoder.json"),
    StageDef("evaluate baselines", BaselinesJob, run_baselines, "prior/metadata.jsonl"),
    StageDef("downstream", DownstreamJob, run_downstream_grid, "results.json"),
    StageDef("evaluate", EvaluateJob, run_evaluate, "report.html"),
    StageDef("audit", AuditJob, run_audit, "audit.json"),
    StageDef("release", ReleaseJob, run_release, "SHA256SUMS"),
    StageDef("release-model", ReleaseModelJob, run_release_model, "SHA256SUMS"),
    StageDef("reader-study create", StudyJob, run_study, "study.json"),
    StageDef("reader-study analyze", AnalyzeJob, run_analyze, "results.json"),
)}


def stage(command: str) -> StageDef:
    """The stage run by ``command`` (``"train diffusion"``).

    Raises:
        ConfigError: no stage has that command.
    """
    from ..core.errors import ConfigError

    key = " ".join(command.split())
    if key not in STAGES:
        raise ConfigError(f"command '{command}' is not a stage; stages: {', '.join(STAGES)}")
    return STAGES[key]
