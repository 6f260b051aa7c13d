"""The downstream classifier: MONAI ResNet-18 (2D or 3D) and its training loop.

Training is plain supervised learning with AdamW (Loshchilov & Hutter 2019) and cross-entropy,
class balance by a weighted sampler (each class drawn equally often) or by inverse-frequency
loss weights, BatchNorm statistics recomputed before each validation ("precise BN", Wu &
Johnson 2021, "Rethinking 'Batch' in BatchNorm"), and early stopping on the validation
balanced accuracy (the weights of the best epoch are kept) — or, with ``selection:
fixed_epochs`` (the downstream grid's default), a fixed number of epochs and no look at the
validation labels while training. Everything is seeded: the same seed gives the same weights on CPU.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..core.seeding import seed_everything
from ..core.threads import torch_threads
from ..data.image_set import ImageSet
from ..models.classifier_net import Classifier, build_resnet_classifier
from .augment import augment_batch, build_augmentation
from .config import AugmentConfig, ClassifierConfig, TrainConfig
from .metrics import classification_metrics

__all__ = ["Classifier", "TrainResult", "build_classifier", "predict_logits", "train_classifier"]


def build_classifier(cfg: ClassifierConfig, spatial_dims: int, num_classes: int, size: Sequence[int]) -> Classifier:
    """The configured ResNet-18 (:func:`~uterosynth.models.classifier_net.build_resnet_classifier`)."""
    return build_resnet_classifier(spatial_dims, num_classes, size, widen_factor=cfg.widen_factor,
                                   stem_stride=cfg.stem_stride, no_max_pool=cfg.no_max_pool)


@dataclass
class TrainResult:
    """The trained model (best validation epoch) and how training went."""

    model: Classifier
    best_epoch: int
    epochs: int
    val_balanced_accuracy: float
    val_accuracy: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, *, batch_size: int = 128, device: str = "cpu") -> torch.Tensor:
    """Logits ``(N, K)`` for images ``(N, 1, *spatial)`` (model in eval mode)."""
    was_training = model.training
    model.eval()
    out = [model(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, images.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(out)


def _batch_indices(labels: torch.Tensor, n: int, balance: str, generator: torch.Generator, num_classes: int) -> torch.Tensor:
    if balance == "sampler":
        counts = torch.bincount(labels, minlength=num_classes).float()
        weights = (1.0 / counts.clamp(min=1))[labels]
        return torch.multinomial(weights, n, replacement=True, generator=generator)
    reps = math.ceil(n / len(labels))
    return torch.cat([torch.randperm(len(labels), generator=generator) for _ in range(reps)])[:n]


@torch.no_grad()
def _precise_bn(
    model: nn.Module, train: ImageSet, cfg: TrainConfig, generator: torch.Generator, num_classes: int,
    device: torch.device,
) -> None:
    """Recompute BatchNorm running statistics on training batches ("precise BN").

    With few updates per epoch the exponential running averages lag far behind the weights
    and the eval-mode network predicts one class; averaging the statistics of the current
    weights over ``precise_bn_batches`` batches (``torch.optim.swa_utils.update_bn``) fixes it.
    """
    from torch.optim.swa_utils import update_bn

    n = min(cfg.precise_bn_batches * cfg.batch_size, max(len(train), cfg.batch_size))
    idx = _batch_indices(train.labels, n, cfg.balance, generator, num_classes)
    batches = [train.images[idx[i : i + cfg.batch_size]].to(device) for i in range(0, n, cfg.batch_size)]
    update_bn(batches, model)


def _on_configured_threads(fn):
    """Run ``fn`` on ``train_cfg.threads`` CPU threads (when set), leaving the process as it was."""

    @functools.wraps(fn)
    def wrapper(*args, train_cfg: TrainConfig, **kwargs):
        with torch_threads(train_cfg.threads):
            return fn(*args, train_cfg=train_cfg, **kwargs)

    return wrapper


@_on_configured_threads
def train_classifier(
    train: ImageSet,
    val: ImageSet,
    *,
    num_classes: int,
    spatial_dims: int,
    size: Sequence[int],
    model_cfg: ClassifierConfig,
    train_cfg: TrainConfig,
    seed: int,
    augment: AugmentConfig | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a fresh classifier on ``train``; model selection by ``train_cfg.selection``.

    ``fixed_epochs``: ``max_epochs`` epochs, the last epoch's weights; ``val`` is measured once
    at the end for the record (it may be empty). ``validation``: early stopping on ``val``
    balanced accuracy, as below.

    An epoch is ``ceil(max(len(train), min_samples_per_epoch) / batch_size)`` batches, so that
    tiny label budgets still get enough updates. Training stops after ``patience`` epochs
    without a higher validation balanced accuracy (never before ``min_epochs``); the weights kept are those of the best
    epoch (among epochs with equal balanced accuracy, the one with the lowest validation loss).

    Args:
        train: training images ``(N, 1, *size)`` and labels.
        val: validation images and labels (real data).
        augment: classical augmentation settings, or ``None`` for none.

    Returns:
        TrainResult with the model restored to its best epoch, in eval mode.
    """
    start = time.perf_counter()
    seed_everything(seed)
    device = torch.device(train_cfg.device)
    model = build_classifier(model_cfg, spatial_dims, num_classes, size).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    loss_weight = None
    if train_cfg.balance == "loss":
        counts = torch.bincount(train.labels, minlength=num_classes).float()
        loss_weight = (counts.sum() / (num_classes * counts.clamp(min=1))).to(device)
    generator = torch.Generator().manual_seed(seed)
    transform = build_augmentation(augment, spatial_dims, size, seed=seed) if augment is not None else None
    steps = math.ceil(max(len(train), train_cfg.min_samples_per_epoch) / train_cfg.batch_size)
    best = (-1.0, math.inf)
    best_state = copy.deepcopy(model.state_dict())
    best_epoch, best_val_acc, history, stale, epoch = 0, 0.0, [], 0, 0
    for epoch in range(1, train_cfg.max_epochs + 1):
        model.train()
        order = _batch_indices(train.labels, steps * train_cfg.batch_size, train_cfg.balance, generator, num_classes)
        total = 0.0
        for step in range(steps):
            idx = order[step * train_cfg.batch_size : (step + 1) * train_cfg.batch_size]
            x = train.images[idx]
            if transform is not None:
                x = augment_batch(transform, x)
            logits = model(x.to(device))
            loss = F.cross_entropy(logits, train.labels[idx].to(device), weight=loss_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        if train_cfg.precise_bn_batches:
            _precise_bn(model, train, train_cfg, generator, num_classes, device)
        if train_cfg.selection == "fixed_epochs":
            record = {"epoch": epoch, "train_loss": total / steps}
            history.append(record)
            if on_epoch is not None:
                on_epoch(epoch, record)
            continue
        val_logits = predict_logits(model, val.images, batch_size=train_cfg.eval_batch_size, device=str(device))
        val_loss = float(F.cross_entropy(val_logits, val.labels))
        m = classification_metrics(val.labels.numpy(), val_logits.argmax(1).numpy(), num_classes)
        record = {"epoch": epoch, "train_loss": total / steps, "val_loss": val_loss,
                  "val_balanced_accuracy": m["balanced_accuracy"], "val_accuracy": m["accuracy"]}
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
        improved = m["balanced_accuracy"] > best[0]
        if improved or (m["balanced_accuracy"] == best[0] and val_loss < best[1]):
            best = (m["balanced_accuracy"], val_loss)
            best_state = copy.deepcopy(model.state_dict())
            best_epoch, best_val_acc = epoch, m["accuracy"]
        stale = 0 if improved else stale + 1
        if stale >= train_cfg.patience and epoch >= train_cfg.min_epochs:
            break
    if train_cfg.selection == "fixed_epochs":
        # the last epoch's weights; validation is only measured, never used to choose
        best_epoch = epoch
        best = (float("nan"), float("nan"))
        if len(val):
            val_logits = predict_logits(model, val.images, batch_size=train_cfg.eval_batch_size, device=str(device))
            m = classification_metrics(val.labels.numpy(), val_logits.argmax(1).numpy(), num_classes)
            best, best_val_acc = (m["balanced_accuracy"], float("nan")), m["accuracy"]
    else:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        best_epoch=best_epoch,
        epochs=epoch,
        val_balanced_accuracy=best[0],
        val_accuracy=best_val_acc,
        seconds=time.perf_counter() - start,
        history=history,
    )
