"""Which configuration model each shipped preset is read into (shared by the preset tests)."""

from __future__ import annotations

from pydantic import BaseModel


def preset_model(name: str) -> type[BaseModel]:
    """The pydantic model of the preset file ``name`` (e.g. ``ldm2d_demo.yaml``)."""
    from uterosynth.data.config import PrepareConfig
    from uterosynth.distill import DistillConfig
    from uterosynth.downstream.config import DownstreamConfig
    from uterosynth.evaluation.config import EncoderTrainConfig, EvaluationConfig
    from uterosynth.phantom import PhantomConfig
    from uterosynth.pipeline import PipelineConfig
    from uterosynth.privacy.config import AuditConfig, CopyDetectorConfig
    from uterosynth.reader_study.config import StudyConfig
    from uterosynth.release.config import ReleaseConfig
    from uterosynth.study import GridStudyConfig
    from uterosynth.training.autoencoder import AutoencoderTrainConfig
    from uterosynth.training.diffusion import DiffusionTrainConfig
    from uterosynth.training.fast_decoder import FastDecoderTrainConfig

    by_prefix: list[tuple[str, type[BaseModel]]] = [
        ("ae", AutoencoderTrainConfig), ("ddpm", DiffusionTrainConfig), ("ldm", DiffusionTrainConfig),
        ("audit", AuditConfig), ("copy_detector", CopyDetectorConfig), ("downstream", DownstreamConfig), ("encoder", EncoderTrainConfig),
        ("evaluate", EvaluationConfig), ("phantom", PhantomConfig), ("pipeline", PipelineConfig),
        ("prepare", PrepareConfig), ("reader_study", StudyConfig), ("release", ReleaseConfig),
        ("study_", GridStudyConfig), ("distill", DistillConfig), ("fast_decoder", FastDecoderTrainConfig),
    ]
    for prefix, model in by_prefix:
        if name.startswith(prefix):
            return model
    raise KeyError(f"{name}: no configuration model known for this preset")


# What a preset needs on top to validate (the command line supplies it).
PRESET_OVERRIDES: dict[str, dict] = {"reader_study.yaml": {"raters": ["reader1"]}}
