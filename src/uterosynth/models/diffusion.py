"""A trained diffusion model as sampling needs it, rebuilt from its checkpoint folder alone.

``model.json`` of a diffusion checkpoint (``kind: diffusion``) holds: ``space`` (pixel or
latent), ``spatial_dims``, ``in_channels``, ``sample_shape`` (what the UNet denoises),
``image_shape``, ``network`` (the UNet config), ``schedule``, ``conditioning`` (the codec:
vocabularies with null tokens, continuous statistics, text encoder), ``scale_factor`` and
``autoencoder`` ({path, sha256}) for latent models, and ``geometry`` (spacing, reference affine
of the training data) so synthetic items are written in the training data's space. A distilled
student (``uterosynth distill``) adds ``distilled``: its method, teacher, sampling steps and the
guidance it takes as input (names, trained ranges, default scales).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checkpoint import load_model_json, load_weights
from ..core.errors import DataError
from ..core.precision import network_dims
from ..data.subjects import merge_subjects
from ..diffusion.conditions import Condition, ConditionVocabulary
from ..diffusion.guidance import embedded_scales
from ..diffusion.schedule import NoiseSchedule, NoiseScheduleConfig
from .autoencoder import AutoencoderConfig
from .conditioning import ConditionCodec
from .diffusion_unet import ConditionedUNet, UNetConfig
from .latent import decode_tiled, load_autoencoder

__all__ = ["DiffusionModel", "embedded_guidance_names", "load_diffusion"]


@dataclass
class DiffusionModel:
    """Denoiser, schedule, condition codec and (for LDMs) the autoencoder that decodes."""

    unet: ConditionedUNet
    schedule: NoiseSchedule
    codec: ConditionCodec | None
    meta: dict[str, Any]
    checkpoint: Path
    autoencoder: nn.Module | None = None
    autoencoder_config: AutoencoderConfig | None = None
    autoencoder_subjects: dict[str, Any] | None = None

    @property
    def training_subjects(self) -> dict[str, Any] | None:
        """Hashed subjects of every trained part: the denoiser and, for LDMs, the decoding autoencoder."""
        return merge_subjects(diffusion=self.meta.get("training_subjects"), autoencoder=self.autoencoder_subjects)

    @property
    def vocab(self) -> ConditionVocabulary:
        return self.codec.vocab if self.codec is not None else ConditionVocabulary()

    @property
    def spatial_dims(self) -> int:
        return int(self.meta["spatial_dims"])

    @property
    def network_dims(self) -> int:
        """Dimensions of the UNet's convolutions: 2 for volumes whose slices it folds into channels."""
        return network_dims(self.meta) or self.spatial_dims

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """``(C, *spatial)`` of what the UNet denoises (image or latent)."""
        return tuple(int(s) for s in self.meta["sample_shape"])

    @property
    def scale_factor(self) -> float:
        return float(self.meta.get("scale_factor") or 1.0)

    @property
    def sha256(self) -> str:
        return str(self.meta.get("sha256", ""))

    @property
    def distilled(self) -> dict[str, Any] | None:
        """The ``distilled`` record of a student (``uterosynth distill``), or ``None``."""
        return self.meta.get("distilled")

    def guided_condition(self, cond: Condition | None, guidance: Any = None) -> Condition | None:
        """``cond`` with a student's input scales for ``guidance`` (its defaults for ``None``); unchanged for other models."""
        if self.distilled is None or cond is None:
            return cond
        return cond.with_guidance(torch.tensor(embedded_scales(self.distilled["guidance"], guidance)))

    def decode(self, z: torch.Tensor, *, memory_budget_mb: float | None = None) -> torch.Tensor:
        """Images ``(N, 1, *image_spatial)`` from denoised samples (identity for pixel models).

        With ``memory_budget_mb`` the latents are decoded in tiles; on a GPU the one whole-size
        pass that measures the decoder's GroupNorm statistics runs on the CPU, so the budget
        bounds GPU memory. On the CPU that pass is the peak: tiling does not lower host memory.
        """
        if self.autoencoder is None:
            return z

        stats_device = "cpu" if memory_budget_mb is not None and z.device.type != "cpu" else None
        return decode_tiled(self.autoencoder, z / self.scale_factor, memory_budget_mb=memory_budget_mb,
                            config=self.autoencoder_config, stats_device=stats_device)


def embedded_guidance_names(meta: dict[str, Any]) -> list[str]:
    """The guided names a distilled model takes as input (``model.json`` ``distilled.guidance``); empty otherwise."""
    return list((meta.get("distilled") or {}).get("guidance", {}).get("names", []))


def load_diffusion(path: str | Path, *, device: str | torch.device = "cpu") -> DiffusionModel:
    """Rebuild a diffusion model (and its autoencoder, for LDMs) from a checkpoint or run folder.

    Raises:
        DataError: no checkpoint, not a diffusion model, or its autoencoder is missing or differs
            (sha256) from the one it was trained with.
    """

    ckpt, meta = load_model_json(path)
    if meta.get("kind") != "diffusion":
        raise DataError(f"{ckpt / 'model.json'}: kind is {meta.get('kind')!r}, expected 'diffusion'")
    codec = ConditionCodec.from_json(meta["conditioning"]) if meta.get("conditioning") else None
    unet = ConditionedUNet(int(meta["spatial_dims"]), int(meta["in_channels"]),
                           UNetConfig.model_validate(meta["network"]), codec, guidance_names=embedded_guidance_names(meta))
    unet.load_state_dict(load_weights(ckpt))
    model = DiffusionModel(unet.to(device).eval(), NoiseSchedule(NoiseScheduleConfig.model_validate(meta["schedule"])),
                           codec, meta, ckpt)
    if meta.get("space") == "latent":

        ae_ref = meta["autoencoder"]
        ae_path = Path(ae_ref["path"])
        if not ae_path.is_absolute() and not ae_path.exists():
            ae_path = ckpt / ae_path
        autoencoder, ae_meta, _ = load_autoencoder(ae_path, device=device)
        if ae_meta.get("sha256") != ae_ref["sha256"]:
            raise DataError(
                f"{ae_path}: autoencoder sha256 {str(ae_meta.get('sha256'))[:12]}… differs from the "
                f"{ae_ref['sha256'][:12]}… this model was trained with"
            )
        model.autoencoder = autoencoder
        model.autoencoder_config = AutoencoderConfig.model_validate(ae_meta["network"])
        model.autoencoder_subjects = ae_meta.get("training_subjects")
    return model
