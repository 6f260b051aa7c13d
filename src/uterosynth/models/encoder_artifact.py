"""The frozen in-domain encoder artifact: ``encoder.pt`` + ``encoder.json``, writer and reader.

Written by ``uterosynth evaluate train-encoder`` (:mod:`uterosynth.evaluation.contrastive`),
read by the evaluation's feature extractor and by the memorisation audit's embedding measure::

    encoder.pt     TorchScript module: images (N, 1, H, W) in [0, 1] → features (N, F)
    encoder.json   name, sha256 (of encoder.pt), feature_dim, image_size, data, training,
                   provenance

The reader checks ``encoder.pt`` against the sha256 recorded in ``encoder.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..core.artifacts import read_json, sha256_file, write_json
from ..core.errors import DataError
from .extractor import TorchScriptExtractor

__all__ = ["ENCODER_FILE", "ENCODER_INFO", "load_encoder", "write_encoder"]

ENCODER_FILE = "encoder.pt"
ENCODER_INFO = "encoder.json"


def write_encoder(folder: str | Path, module: torch.jit.ScriptModule, info: Mapping[str, Any]) -> dict[str, Any]:
    """Save ``module`` as ``encoder.pt`` in ``folder`` and ``encoder.json`` beside it.

    ``name`` (unless ``info`` gives one) and ``sha256`` are derived from the saved file and
    come first in ``encoder.json``.

    Returns:
        The ``encoder.json`` content.
    """
    folder = Path(folder)
    torch.jit.save(module, str(folder / ENCODER_FILE))
    digest = sha256_file(folder / ENCODER_FILE)
    body = {"name": info.get("name", f"uterosynth-encoder-{digest[:12]}"), "sha256": digest,
            **{k: v for k, v in info.items() if k not in ("name", "sha256")}}
    write_json(folder / ENCODER_INFO, body)
    return body


def load_encoder(
    path: str | Path, *, device: str = "cpu", batch_size: int = 64, require_info: bool = True
) -> TorchScriptExtractor:
    """Load the in-domain encoder from its folder (or ``encoder.pt``) and check its recorded hash.

    Args:
        path: the encoder folder or its ``encoder.pt``.
        device: where to run it.
        batch_size: images per forward pass.
        require_info: refuse a module without ``encoder.json``; ``False`` accepts any
            TorchScript extractor file (checked against ``encoder.json`` when one lies beside it).

    Raises:
        DataError: ``encoder.pt``/``encoder.json`` missing, or the file's sha256 differs from
            the one recorded at training time (the encoder was changed: numbers would not be
            comparable).
    """
    path = Path(path)
    pt = path / ENCODER_FILE if path.is_dir() else path
    info_path = pt.with_name(ENCODER_INFO)
    if not pt.is_file():
        if not require_info:
            raise DataError(f"{pt}: feature extractor file not found")
        raise DataError(f"{pt}: encoder not found (train one with 'uterosynth evaluate train-encoder', or a copy detector "
                        "with 'uterosynth audit train-encoder')")
    if not require_info and not info_path.is_file():
        return TorchScriptExtractor(pt, device=device, batch_size=batch_size)
    info = read_json(info_path)
    extractor = TorchScriptExtractor(pt, device=device, batch_size=batch_size)
    if info.get("sha256") != extractor.sha256:
        raise DataError(f"{pt}: sha256 {extractor.sha256[:12]}… differs from {str(info.get('sha256'))[:12]}… "
                        f"recorded in {info_path}; the encoder was modified, retrain or restore it")
    extractor.name = str(info.get("name", "uterosynth-encoder"))
    extractor.info = info  # type: ignore[attr-defined]
    extractor.training_subjects = info.get("training_subjects")  # type: ignore[attr-defined]
    return extractor
