"""The learned copy detector: an embedding in which a copy of an image lies next to it.

Pixel measures miss copies that change the geometry: NCC searches shifts and mirror images but
not scales, so an 80–90 % crop resized back escapes it, and SSIM compares unshifted pixels. The
copy detector follows SSCD (Pizzi et al., CVPR 2022): contrastive instance discrimination
(NT-Xent, MONAI ``ContrastiveLoss``) where the two views of an item are what a copy of it
could look like — crop and resize, shift, small rotation, mirror image, elastic deformation,
intensity change, blur and noise (Kornia's batched augmentations). The descriptor is the
projection the loss sees (as in SSCD), not the backbone's features: the backbone keeps what the
augmentations change (a mirror image, a crop), the projection is trained to drop it. With probability ``other_slice`` the second
view starts from another item of the same subject, and a batch never holds two items of one
subject, so the embedding gathers a subject's slices instead of pushing them apart: a sample
that reproduces a training patient's neighbouring slice lands next to that patient.

The frozen detector is the encoder artifact (``encoder.pt`` + ``encoder.json`` with
``purpose: copy-detection``), given to ``uterosynth audit --encoder`` as the embedding
measure. It records its training subjects; the audit calibrates its threshold only on items of
other subjects (a detector trained on an item has seen it, so its similarities are not those of
a new image). Train it on a cohort of other subjects, as the demo does, and every calibration
item counts; train it on the audited model's training split, and only the held-out items do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..core.artifacts import provenance
from ..core.errors import DataError
from ..data.manifest import PreparedDataset, parse_dataset_ref
from ..data.subjects import training_subjects
from ..models.contrastive import build_backbone, fit_contrastive, save_frozen
from .config import CopyDetectorConfig

__all__ = ["PURPOSE", "copy_view", "detector_images", "subject_batches", "train_copy_detector"]

PURPOSE = "copy-detection"


def copy_view(cfg: CopyDetectorConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random copies of a batch ``(B, 1, S, S)`` in ``[0, 1]`` (Kornia's batched augmentations; torch's RNG).

    Kornia draws one transform per image and warps the whole batch with one ``grid_sample``
    instead of transforming image by image.
    """
    import kornia.augmentation as K

    size = cfg.image_size
    # Kornia's elastic displacement is in normalised coordinates: alpha 1 moves a 64 px image by about 1.7 px at most
    alpha = cfg.elastic_px * 64 / (1.7 * size)
    sigma = (0.25, max(0.25, cfg.max_blur_sigma))
    blur_kernel = 2 * int(np.ceil(3 * sigma[1])) + 1
    augment = K.AugmentationSequential(
        K.RandomHorizontalFlip(),
        K.RandomResizedCrop((size, size), scale=(cfg.min_crop**2, 1.0), ratio=(0.8, 1.25)),
        K.RandomAffine(degrees=cfg.max_rotation_deg, translate=(cfg.max_shift, cfg.max_shift), p=0.8,
                       padding_mode="border"),
        K.RandomElasticTransform(kernel_size=(33, 33), sigma=(8.0, 8.0), alpha=(alpha, alpha), p=0.5,
                                 padding_mode="border"),
        K.RandomGamma(gamma=(0.7, 1.5), p=0.5),
        K.ColorJiggle(brightness=0.05, contrast=0.2, p=0.5),
        *([K.RandomGaussianBlur((blur_kernel, blur_kernel), sigma, p=0.5)] if cfg.max_blur_sigma > 0 else []),
        *([K.RandomGaussianNoise(std=cfg.noise_std, p=0.5)] if cfg.noise_std > 0 else []),
    )

    def apply(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return augment(batch.float()).clamp(0.0, 1.0)

    return apply


def detector_images(dataset: PreparedDataset, image_size: int, *, min_std: float = 0.01) -> tuple[torch.Tensor, list[str]]:
    """Training images ``(M, 1, S, S)`` and their subjects: 2D items, or every informative sagittal slice of volumes."""
    images, subjects = [], []
    for row in dataset.rows:
        arr = torch.from_numpy(dataset.load_array(row)).float()
        planes = [arr] if arr.ndim == 2 else [p for p in arr.unbind(-1) if float(p.std()) > min_std]
        for p in planes:
            images.append(F.interpolate(p[None, None], size=(image_size, image_size), mode="bilinear",
                                        align_corners=False)[0])
            subjects.append(row["subject"])
    if not images:
        raise DataError(f"{dataset.root}: no items to train the copy detector on")
    return torch.stack(images).clamp(0, 1), subjects


def subject_batches(subjects: list[str], batch: int, other_slice: float,
                    generator: torch.Generator) -> Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]:
    """Batches of distinct subjects: an epoch visits every item at most once as the anchor.

    Each round takes one not-yet-visited item of every subject still holding one, in random
    order, cut into batches; the positive is the anchor itself or, with probability
    ``other_slice``, another item of the same subject. A batch needs a negative, so when one
    subject holds more items than all others the items it has left alone at the end of an
    epoch are skipped, and a round's remainder makes a smaller batch.
    """
    by_subject: dict[str, list[int]] = {}
    for i, s in enumerate(subjects):
        by_subject.setdefault(s, []).append(i)
    groups = list(by_subject.values())

    def epoch(_: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        queues = [[g[j] for j in torch.randperm(len(g), generator=generator)] for g in groups]
        while any(queues):
            live = [q for q in queues if q]
            order = torch.randperm(len(live), generator=generator).tolist()
            anchors = [live[k].pop() for k in order]
            for s in range(0, len(anchors) - 1, batch):  # a batch needs two items (one negative)
                a = anchors[s : s + batch]
                if len(a) < 2:
                    break
                yield torch.tensor(a), torch.tensor([_partner(i, by_subject[subjects[i]], other_slice, generator)
                                                     for i in a])

    return epoch


def _partner(i: int, group: list[int], p: float, generator: torch.Generator) -> int:
    if len(group) < 2 or float(torch.rand((), generator=generator)) >= p:
        return i
    others = [j for j in group if j != i]
    return others[int(torch.randint(len(others), (), generator=generator))]


def train_copy_detector(
    data: str | Path, out: str | Path, cfg: CopyDetectorConfig, *, overwrite: bool = False,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train the copy detector on ``data`` (``DIR`` or ``DIR:split``) and write ``out``; returns ``encoder.json``.

    Raises:
        DataError: the split holds fewer than two subjects (no negatives).
    """
    root, ref_split = parse_dataset_ref(data)
    dataset = PreparedDataset.load(root, ref_split or cfg.split)
    images, subjects = detector_images(dataset, cfg.image_size)
    if len(set(subjects)) < 2:
        raise DataError(f"{data}: split '{ref_split or cfg.split}' has {len(set(subjects))} subject(s); the copy "
                        "detector needs at least 2 (the other subjects are its negatives)")
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.layers, cfg.channels)
    view = copy_view(cfg)
    losses, head = fit_contrastive(
        images, backbone, views=(view, view),
        batches=subject_batches(subjects, cfg.batch_size, cfg.other_slice, torch.Generator().manual_seed(cfg.seed)),
        epochs=cfg.epochs, feature_dim=cfg.channels[-1], projection_dim=cfg.projection_dim,
        temperature=cfg.temperature, lr=cfg.lr, weight_decay=cfg.weight_decay, device=cfg.device, progress=progress)
    splits = {r["split"] for r in dataset.rows}
    return save_frozen(backbone, cfg.image_size, out, {
        "purpose": PURPOSE,
        "feature_dim": cfg.projection_dim,
        "image_size": cfg.image_size,
        "input": "(N, 1, H, W) float in [0, 1]; resized inside to image_size",
        "method": "SSCD-style copy detection: NT-Xent (MONAI ContrastiveLoss) between copy-augmented views (Kornia), "
                  "subject-distinct batches, on a MONAI ResNet; the descriptor is the projection; frozen, eval-mode "
                  "BatchNorm",
        "data": {"path": str(dataset.root), "split": sorted(splits), "items": len(dataset),
                 "images": int(images.shape[0]), "subjects": len(set(subjects)), "dims": dataset.dims,
                 "preprocess_hash": dataset.info.get("preprocess_hash")},
        "training": {"losses": losses, "final_loss": losses[-1] if losses else None},
        "provenance": provenance(cfg, cfg.seed),
        "mirror_symmetric": cfg.mirror_symmetric,
        "training_subjects": training_subjects(dataset, splits),
    }, head=head, mirror_symmetric=cfg.mirror_symmetric, overwrite=overwrite)
