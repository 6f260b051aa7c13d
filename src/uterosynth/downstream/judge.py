"""The frozen classifier checkpoint: the independent judge of conditioning fidelity.

The artifact's writer and reader live in :mod:`uterosynth.models.judge`.

``train-classifier`` trains one classifier on the full real training split (early stopping on
val), tests it on the real test split and writes:

``classifier.pt``
    TorchScript module: images ``(N, 1, *spatial)`` with intensities in ``[0, 1]`` → logits
    ``(N, K)``; any spatial size is accepted (resized inside to ``model_input_shape``).
``classifier.safetensors``
    the same network's weights, from which a torch that cannot read the TorchScript rebuilds it.
``classifier.json``
    ``task, classes, spatial_dims, input_shape, model_input_shape, intensity_range,
    val_balanced_accuracy, val_accuracy, test_accuracy, test_balanced_accuracy,
    test_per_class_recall, n_train_items, format, file, sha256, weights, network, provenance``.

Logit ``k`` belongs to ``classes[k]``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..core.artifacts import atomic_output_dir, check_output_free, provenance
from ..core.errors import DataError
from ..data.subjects import training_subjects
from ..models.judge import (
    CLASSIFIER_FILE,
    META_FILE,
    WEIGHTS_FILE,
    network_record,
    read_classifier,
    save_torchscript,
    save_weights,
    write_classifier_meta,
)
from .classifier import predict_logits, train_classifier
from .config import JudgeConfig
from .data import load_task_data
from .metrics import classification_metrics

__all__ = ["CLASSIFIER_FILE", "META_FILE", "LoadedClassifier", "load_classifier", "predict", "predict_logits_judge",
           "save_torchscript", "train_judge"]

LoadedClassifier = tuple[torch.nn.Module, dict]


def train_judge(data_dir: str | Path, cfg: JudgeConfig, out: str | Path, *, overwrite: bool = False) -> dict:
    """Train, test and freeze the judge classifier; returns the ``classifier.json`` content.

    Raises:
        ConfigError: unknown task attribute.
        DataError: an empty split, an existing output folder.
    """
    t0 = time.perf_counter()
    out = Path(out)
    check_output_free(out, overwrite=overwrite)
    data, classes, shape, size, splits = load_task_data(data_dir, cfg.task, cfg.classifier.image_size)
    result = train_classifier(
        splits["train"], splits["val"], num_classes=len(classes), spatial_dims=data.dims, size=size,
        model_cfg=cfg.classifier, train_cfg=cfg.train, seed=cfg.seed,
        augment=cfg.augment if cfg.augment_training else None,
    )
    model = result.model.cpu().eval()
    test = splits["test"]
    pred = predict_logits(model, test.images).argmax(1)
    m = classification_metrics(test.labels.numpy(), pred.numpy(), len(classes))
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        digest = save_torchscript(model, tmp / CLASSIFIER_FILE)
        weights_digest = save_weights(model, tmp / WEIGHTS_FILE)
        meta = {
            "task": cfg.task,
            "classes": classes,
            "spatial_dims": data.dims,
            "input_shape": list(shape),
            "model_input_shape": list(size),
            "intensity_range": [0.0, 1.0],
            "val_balanced_accuracy": result.val_balanced_accuracy,
            "val_accuracy": result.val_accuracy,
            "test_accuracy": m["accuracy"],
            "test_balanced_accuracy": m["balanced_accuracy"],
            "test_per_class_recall": dict(zip(classes, m["per_class_recall"], strict=True)),
            "n_train_items": len(splits["train"]),
            "n_test_items": len(test),
            "best_epoch": result.best_epoch,
            "epochs": result.epochs,
            "format": "torchscript",
            "file": CLASSIFIER_FILE,
            "sha256": digest,
            "weights": {"file": WEIGHTS_FILE, "sha256": weights_digest},
            "network": network_record(model, widen_factor=cfg.classifier.widen_factor,
                                      stem_stride=cfg.classifier.stem_stride, no_max_pool=cfg.classifier.no_max_pool),
            "seconds": round(time.perf_counter() - t0, 2),
            "provenance": provenance(cfg, cfg.seed, data=str(data.root)),
            "training_subjects": training_subjects(data, ("train", "val")),
        }
        write_classifier_meta(tmp, meta)
    return meta


def load_classifier(path: str | Path, *, device: str | torch.device = "cpu") -> LoadedClassifier:
    """Load ``(module, meta)`` from a ``train-classifier`` folder, checking the sha256.

    Raises:
        DataError: files missing, ``classifier.pt`` differs from its sha256, or it cannot be read
            nor rebuilt from its portable weights.
    """
    loaded = read_classifier(path, device=device, required=("task", "classes", "spatial_dims", "sha256"))
    return loaded.module, loaded.meta


def _as_batch(arrays: np.ndarray | torch.Tensor | Sequence[np.ndarray], spatial_dims: int) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(arrays) if not isinstance(arrays, torch.Tensor) else arrays).float()
    if x.ndim == spatial_dims + 1:
        x = x[:, None]
    if x.ndim != spatial_dims + 2 or x.shape[1] != 1:
        raise DataError(
            f"predict: expected images (N, *spatial) or (N, 1, *spatial) with {spatial_dims} spatial axes, "
            f"got shape {tuple(x.shape)}"
        )
    return x


@torch.inference_mode()
def predict_logits_judge(
    classifier: str | Path | LoadedClassifier, arrays: np.ndarray | torch.Tensor, *, batch_size: int = 64
) -> torch.Tensor:
    """Logits ``(N, K)`` of the judge for images ``(N, *spatial)`` or ``(N, 1, *spatial)`` in [0, 1]."""
    module, meta = load_classifier(classifier) if isinstance(classifier, str | Path) else classifier
    x = _as_batch(arrays, int(meta["spatial_dims"]))
    device = next(iter(module.parameters())).device
    chunks = [module(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0, len(meta["classes"]))


def predict(
    classifier: str | Path | LoadedClassifier, arrays: np.ndarray | torch.Tensor, *, batch_size: int = 64
) -> list[str]:
    """Class names predicted by the judge (a folder or a ``load_classifier`` result) for ``arrays``."""
    loaded = load_classifier(classifier) if isinstance(classifier, str | Path) else classifier
    logits = predict_logits_judge(loaded, arrays, batch_size=batch_size)
    classes = loaded[1]["classes"]
    return [classes[i] for i in logits.argmax(1).tolist()]
