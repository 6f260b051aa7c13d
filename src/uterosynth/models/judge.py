"""The frozen classifier artifact (the judge): ``classifier.pt`` + ``classifier.json``, writer and reader.

Written by the downstream stage's ``train-classifier`` command, read by that stage and by the
evaluation's conditioning fidelity::

    classifier.pt           TorchScript module: images (N, 1, *spatial) in [0, 1] → logits (N, K)
    classifier.safetensors  the same network's weights, readable by any torch version
    classifier.json         task (the condition attribute), classes (logit k is classes[k]),
                            spatial_dims, …, file, sha256 (of classifier.pt), weights (file and
                            sha256 of the safetensors), network (how to rebuild it), provenance

The reader checks ``classifier.pt`` against the sha256 recorded in ``classifier.json``. A torch
older than the one that wrote ``classifier.pt`` may not read TorchScript; the reader then rebuilds
the network from ``network`` and the safetensors weights. A 2D judge shown volumes judges their
central sagittal slice (:func:`judge_view`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.artifacts import read_json, sha256_file, write_json
from ..core.errors import DataError, first_line
from .classifier_net import Classifier, build_resnet_classifier

__all__ = ["CLASSIFIER_FILE", "META_FILE", "WEIGHTS_FILE", "ClassifierArtifact", "judge_view", "network_record",
           "read_classifier", "save_torchscript", "save_weights", "write_classifier_meta"]

CLASSIFIER_FILE = "classifier.pt"
WEIGHTS_FILE = "classifier.safetensors"
META_FILE = "classifier.json"
_WRITTEN_BY = ("the downstream stage's train-classifier command writes classifier.pt, classifier.safetensors and "
               "classifier.json")


@dataclass(frozen=True)
class ClassifierArtifact:
    """A loaded classifier: the ``module`` (eval mode), ``classifier.json`` and ``classifier.pt``'s sha256."""

    module: torch.nn.Module
    meta: dict[str, Any]
    file: Path
    sha256: str


def save_torchscript(model: torch.nn.Module, path: str | Path) -> str:
    """Script ``model`` (moved to CPU, eval mode), save it to ``path`` and return the file's sha256."""
    with warnings.catch_warnings():  # torch.jit is marked deprecated but remains the portable format
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model.cpu().eval())
        scripted.save(str(path))
    return sha256_file(path)


def save_weights(model: torch.nn.Module, path: str | Path) -> str:
    """Save ``model``'s weights as safetensors (readable by any torch) and return the file's sha256."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
    return sha256_file(path)


def write_classifier_meta(folder: str | Path, meta: Mapping[str, Any]) -> None:
    """Write ``classifier.json`` into ``folder`` (``meta`` carries ``file`` and ``sha256`` of the module)."""
    write_json(Path(folder) / META_FILE, meta)


def read_classifier(
    path: str | Path, *, device: str | torch.device = "cpu", required: Sequence[str] = ("task", "classes"),
) -> ClassifierArtifact:
    """Load a classifier from its folder (or from ``classifier.pt`` itself), checking its sha256.

    Args:
        path: the ``train-classifier`` output folder, or the ``.pt`` file inside it.
        device: where the module goes.
        required: keys ``classifier.json`` must hold (``task`` and ``classes`` are always checked).

    Raises:
        DataError: a file is missing; ``classifier.json`` lacks a required key or holds no class;
            ``classifier.pt`` differs from the recorded sha256, or this torch cannot read it and
            there are no portable weights to rebuild it from.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    info_path = folder / META_FILE
    if not info_path.is_file():
        raise DataError(f"{info_path}: file not found ({_WRITTEN_BY})")
    meta = read_json(info_path)
    for key in dict.fromkeys(("task", "classes", *required)):
        if key not in meta:
            raise DataError(f"{info_path}: key '{key}' missing (write it with 'uterosynth downstream train-classifier')")
    task, classes = meta["task"], meta["classes"]
    if not isinstance(task, str) or not isinstance(classes, list) or not classes:
        raise DataError(f"{info_path}: expected keys 'task' (attribute name) and 'classes' (non-empty list), "
                        f"found task={task!r}, classes={classes!r}")
    weights = path if not path.is_dir() else folder / meta.get("file", CLASSIFIER_FILE)
    if not weights.is_file():
        raise DataError(f"{weights}: classifier file not found ({_WRITTEN_BY})")
    digest = sha256_file(weights)
    if meta.get("sha256") is not None and digest != meta["sha256"]:
        raise DataError(f"{weights}: sha256 {digest[:12]}… does not match {META_FILE} ({meta['sha256'][:12]}…); "
                        "the checkpoint was changed, retrain it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(weights), map_location="cpu")
    except Exception as err:
        module = _rebuild(weights, meta, err)
    return ClassifierArtifact(module.to(device).eval(), meta, weights, digest)


def network_record(model: Classifier, *, widen_factor: float, stem_stride: int, no_max_pool: bool) -> dict[str, Any]:
    """``classifier.json``'s ``network``: what :func:`build_resnet_classifier` needs to rebuild ``model``."""
    return {"kind": "monai resnet18", "spatial_dims": len(model.size), "num_classes": int(model.net.fc.out_features),
            "size": list(model.size), "widen_factor": widen_factor, "stem_stride": stem_stride,
            "no_max_pool": no_max_pool}


def _rebuild(scripted: Path, meta: Mapping[str, Any], err: Exception) -> torch.nn.Module:
    """The network rebuilt from ``classifier.json``'s ``network`` and the safetensors weights."""
    reason = first_line(err)
    spec, net = meta.get("weights"), meta.get("network")
    if not isinstance(spec, Mapping) or not isinstance(net, Mapping):
        raise DataError(f"{scripted}: torch {torch.__version__} cannot read this TorchScript module ({reason}), and "
                        f"{META_FILE} records no portable weights to rebuild it from; retrain the classifier") from err
    from safetensors.torch import load_file

    path = scripted.parent / str(spec.get("file", WEIGHTS_FILE))
    if not path.is_file():
        raise DataError(f"{path}: weights file not found ({_WRITTEN_BY})") from err
    if sha256_file(path) != spec.get("sha256"):
        raise DataError(f"{path}: sha256 does not match {META_FILE}; the weights were changed, retrain it") from err
    try:
        model = build_resnet_classifier(int(net["spatial_dims"]), int(net["num_classes"]), net["size"],
                                        widen_factor=float(net["widen_factor"]), stem_stride=int(net["stem_stride"]),
                                        no_max_pool=bool(net["no_max_pool"]))
        model.load_state_dict(load_file(str(path)))
    except (KeyError, TypeError, ValueError, RuntimeError) as rebuild_err:
        raise DataError(f"{path}: cannot rebuild the classifier from {META_FILE}'s network "
                        f"({first_line(rebuild_err)}); retrain it") from rebuild_err
    warnings.warn(f"{scripted}: torch {torch.__version__} cannot read this TorchScript module ({reason}); "
                  f"rebuilt the network from {path.name}", stacklevel=3)
    return model



def judge_view(images, judge_dims: int, *, channels: bool = False):
    """What a judge of ``judge_dims`` spatial axes sees of ``images`` ``(N, *spatial)``.

    Volumes shown to a 2D judge are judged on their central sagittal slice ``[..., D // 2]``;
    anything else is passed through unchanged. ``channels``: the images are ``(N, 1, *spatial)``.
    Works on NumPy arrays and torch tensors.
    """
    if images.ndim - 1 - int(channels) == 3 and judge_dims == 2:
        return images[..., images.shape[-1] // 2]
    return images
