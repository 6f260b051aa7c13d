"""Validation for diffusion training: a fixed-noise validation loss and a sample grid per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

from ..core.imageio import middle_slice
from ..core.seeding import index_generator
from ..diffusion.conditions import TEXT
from ..diffusion.generate import sample_batch
from ..diffusion.samplers import build_sampler
from ..diffusion.schedule import NoiseSchedule
from ..models.conditioning import ConditionCodec

__all__ = ["PreviewWriter", "save_class_grid"]


def save_class_grid(path: str | Path, rows: dict[str, torch.Tensor]) -> None:
    """PNG grid, one row per class: ``rows[label]`` is ``(K, 1, *spatial)``; mid-slice for 3D."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(rows)
    k = max(t.shape[0] for t in rows.values())
    fig, axes = plt.subplots(len(labels), k, figsize=(1.6 * k, 1.7 * len(labels)), squeeze=False)
    for r, label in enumerate(labels):
        images = rows[label][:, 0].float().cpu()
        if images.ndim == 4:
            images = middle_slice(images)
        for c in range(k):
            ax = axes[r, c]
            ax.axis("off")
            if c < images.shape[0]:
                ax.imshow(images[c].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(label, fontsize=8, loc="left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


class PreviewWriter:
    """``validate(trainer, step)`` for the shared loop: ``val/loss`` and ``images/step_*.png``.

    The validation loss uses fixed noise and evenly spaced timesteps, so its values are
    comparable across steps and runs. The grid samples ``per_class`` images per class of the
    preview attribute with the configured sampler and guidance (others attributes null).
    """

    def __init__(self, cfg, schedule: NoiseSchedule, codec: ConditionCodec | None, step_fn, val_set, *,
                 autoencoder: torch.nn.Module | None, seed: int, device: torch.device) -> None:
        self.cfg, self.schedule, self.codec, self.step_fn = cfg, schedule, codec, step_fn
        self.val_set, self.autoencoder, self.seed, self.device = val_set, autoencoder, seed, device

    def _model(self, trainer) -> torch.nn.Module:
        return trainer.ema.module if trainer.ema is not None else trainer.parts.raw["unet"]

    @torch.no_grad()
    def validation_loss(self, model: torch.nn.Module, max_items: int = 16) -> float:
        n = min(len(self.val_set), max_items)
        batch = default_collate([self.val_set[i] for i in range(n)])
        batch = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        gen = torch.Generator().manual_seed(self.seed)
        if "mean" in batch:
            noise = torch.randn(batch["mean"].shape, generator=gen).to(self.device)
            x0 = (batch["mean"] + batch["std"] * noise) * self.step_fn.scale_factor
        else:
            x0 = batch["image"]
        eps = torch.randn(x0.shape, generator=gen).to(self.device)
        T = self.schedule.num_train_timesteps
        t = torch.linspace(0, T - 1, n, device=self.device).round().long()
        if self.schedule.objective == "rflow":
            t = t + 1  # rflow trains on [1, T]
        x_t = self.schedule.add_noise(x0, eps, t)
        cond = self.step_fn.condition(batch, n, self.device, drop=False)
        pred = model(x_t, t, cond)
        return float((pred.float() - self.schedule.training_target(x0, eps, t).float()).pow(2).mean())

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(z / self.step_fn.scale_factor)  # type: ignore[union-attr]

    @torch.no_grad()
    def sample_grid(self, model: torch.nn.Module, sample_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        sampler = build_sampler(self.cfg.sampler, self.schedule)
        classes: list[tuple[str, dict[str, Any]]] = [("unconditional", {})]
        guidance = None
        categorical = self.codec.vocab.categorical if self.codec is not None else {}
        if categorical:
            attr = self.cfg.attribute or next(iter(categorical))
            classes = [(f"{attr}={v}", {attr: v}) for v in categorical[attr]]
            guidance = {attr if attr in self.codec.vocab.attributes else TEXT: self.cfg.guidance}
        decode = self._decode if self.autoencoder is not None else None
        rows = {}
        for row, (label, record) in enumerate(classes):
            k = self.cfg.per_class
            gens = [index_generator(self.seed, row * k + i, salt="preview") for i in range(k)]
            cond = self.codec.encode([record] * k, device=self.device) if self.codec is not None else None
            rows[label] = sample_batch(
                model, sampler, sample_shape, gens, steps=self.cfg.steps, condition=cond,
                vocab=self.codec.vocab if self.codec is not None else None, guidance=guidance,
                prepare=lambda x: x.to(self.device), decode=decode,
            )
        return rows

    def __call__(self, trainer, step: int) -> dict[str, float]:
        model = self._model(trainer)
        was_training = model.training
        model.eval()
        try:
            loss = self.validation_loss(model)
            sample_shape = tuple(int(s) for s in trainer.model_meta["sample_shape"])
            save_class_grid(trainer.out / "images" / f"step_{step:07d}.png", self.sample_grid(model, sample_shape))
        finally:
            model.train(was_training)
        return {"val/loss": loss}
