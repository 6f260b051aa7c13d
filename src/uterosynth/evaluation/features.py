"""Feature extractors for the distribution metrics, all implementing :class:`FeatureExtractor`.

Three kinds, chosen by ``extractor.kind`` in the evaluation config:

* ``encoder`` — the project's in-domain encoder (``uterosynth evaluate train-encoder``): a
  frozen TorchScript ``encoder.pt`` with ``encoder.json`` beside it (provenance and sha256).
* ``inception`` — the FID Inception-v3 (Heusel et al. 2017; TF ``2015-12-05`` graph ported by
  pytorch-fid) from a local state-dict file such as ``pt_inception-2015-12-05-6726825d.pth``;
  never downloaded.
* ``torchscript`` — any TorchScript module ``(N, 1, H, W) -> (N, F)``.
* ``torchvision`` — a torchvision ImageNet backbone (``extractor.arch``, e.g. ``alexnet``) with a
  local weight file: a comparable, non-medical extractor to report beside the in-domain one.

Volumes get **2.5D features**: :class:`PlanarExtractor` runs the 2D extractor on
``slices_per_plane`` slices around the centre of each of the three orthogonal planes
(axial-like ``x[:, :, :, :, k]`` is the sagittal plane of our IPR arrays, then the other two),
**averages** the features of the slices of one plane and **concatenates** the three planes:
``F_3d = 3 F``. Averaging keeps the dimension (and the N needed for a stable covariance) low;
concatenating keeps which plane a feature came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..core.artifacts import sha256_file
from ..core.errors import ConfigError, DataError
from ..models.encoder_artifact import load_encoder
from ..models.extractor import FeatureExtractor, TorchvisionExtractor
from .config import ExtractorConfig

__all__ = [
    "InceptionExtractor",
    "PlanarExtractor",
    "build_extractor",
    "extractor_identity",
    "extract_features",
]

def _fid_inception(path: Path) -> torch.nn.Module:
    from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
    from torchvision.models.inception import inception_v3

    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as err:
        raise DataError(f"{path}: not an FID Inception-v3 state dict (pt_inception-2015-12-05 layout expected: "
                        f"{str(err).splitlines()[0]})") from err
    net.fc = torch.nn.Identity()
    net.dropout = torch.nn.Identity()
    return net.eval()


class InceptionExtractor:
    """FID Inception-v3 pool3 features ``(N, 2048)`` from a local weight file.

    Grey images are repeated to 3 channels, resized to 299×299 (bilinear) and scaled to
    ``[-1, 1]`` as in pytorch-fid.

    Raises:
        DataError: the weight file is missing (it is never downloaded) or does not fit.
    """

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu", batch_size: int = 32) -> None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: Inception-v3 FID weights not found (nothing is downloaded; put the "
                            "pt_inception-2015-12-05-6726825d.pth state dict there or use extractor.kind: encoder)")
        self.path = path
        self.name = "inception-v3-fid"
        self.sha256 = sha256_file(path)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.module = _fid_inception(path).to(self.device)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, images.shape[0], self.batch_size):
            x = images[s : s + self.batch_size].float().to(self.device)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
            out.append(self.module(2 * x - 1).flatten(1).cpu())
        return torch.cat(out) if out else torch.empty(0, 2048)


class PlanarExtractor:
    """2.5D wrapper: 2D features of volumes from the three orthogonal planes (see module doc).

    2D images ``(N, 1, H, W)`` pass straight to the wrapped extractor; volumes
    ``(N, 1, H, W, D)`` give ``(N, 3 F)``.
    """

    def __init__(self, inner: FeatureExtractor, *, slices_per_plane: int = 3, slice_spacing: int = 2) -> None:
        self.inner = inner
        self.slices_per_plane = slices_per_plane
        self.slice_spacing = slice_spacing
        self.sha256 = inner.sha256
        self.name = inner.name
        self.path = getattr(inner, "path", None)
        self.training_subjects = getattr(inner, "training_subjects", None)

    def planes(self, volumes: torch.Tensor) -> list[list[torch.Tensor]]:
        """For each plane (slice axis D, then W, then H), the list of 2D slices ``(N, 1, a, b)``."""
        out = []
        for axis in (4, 3, 2):
            size = volumes.shape[axis]
            centre = size // 2
            offsets = [(k - (self.slices_per_plane - 1) / 2) * self.slice_spacing for k in range(self.slices_per_plane)]
            idx = sorted({min(max(int(round(centre + o)), 0), size - 1) for o in offsets})
            out.append([volumes.select(axis, i) for i in idx])
        return out

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 4:
            return self.inner(images)
        per_plane = [torch.stack([self.inner(s) for s in slices]).mean(0) for slices in self.planes(images)]
        return torch.cat(per_plane, dim=1)


def build_extractor(cfg: ExtractorConfig, *, device: str = "cpu") -> PlanarExtractor:
    """The extractor the config names, wrapped for 2.5D use on volumes.

    Raises:
        ConfigError: ``extractor.path`` is unset.
        DataError: the file is missing or unusable.
    """
    if cfg.path is None:
        raise ConfigError(f"extractor.path: no {cfg.kind} path given; set extractor.path in the config",
                          keys=("extractor.path",))
    if cfg.kind == "encoder":
        inner: FeatureExtractor = load_encoder(cfg.path, device=device, batch_size=cfg.batch_size)
    elif cfg.kind == "inception":
        inner = InceptionExtractor(cfg.path, device=device, batch_size=cfg.batch_size)
    elif cfg.kind == "torchvision":
        inner = TorchvisionExtractor(str(cfg.arch), cfg.path, device=device, batch_size=cfg.batch_size,
                                     size=cfg.input_size)
    else:  # a TorchScript file; an encoder.json beside it is checked and read (training subjects)
        inner = load_encoder(cfg.path, device=device, batch_size=cfg.batch_size, require_info=False)
    return PlanarExtractor(inner, slices_per_plane=cfg.slices_per_plane, slice_spacing=cfg.slice_spacing)


def extract_features(extractor: FeatureExtractor, images: torch.Tensor, *, batch_size: int = 256,
                     progress: Any = None) -> torch.Tensor:
    """Features ``(N, F)`` of images ``(N, 1, *spatial)``, in chunks (``progress`` gets ``advance(n)``)."""
    out = []
    for s in range(0, images.shape[0], batch_size):
        chunk = images[s : s + batch_size]
        out.append(extractor(chunk).float().flatten(1))
        if progress is not None:
            progress(chunk.shape[0])
    return torch.cat(out)


def extractor_identity(extractor: FeatureExtractor, cfg: ExtractorConfig, spatial_dims: int) -> dict[str, Any]:
    """What ``metrics.json`` records about the extractor: name, sha256, kind, path, 2.5D settings."""
    ident: dict[str, Any] = {"name": extractor.name, "sha256": extractor.sha256, "kind": cfg.kind,
                             "path": str(cfg.path) if cfg.path else None,
                             "sha256_of": "weights file" if cfg.kind in ("inception", "torchvision") else "TorchScript file"}
    if cfg.kind == "torchvision":
        ident.update({"arch": cfg.arch, "input_size": cfg.input_size, "pretraining": "ImageNet (local weights)",
                      "features": "trunk output averaged over space"})
    if spatial_dims == 3:
        ident["2.5d"] = {"planes": 3, "slices_per_plane": cfg.slices_per_plane, "slice_spacing": cfg.slice_spacing,
                         "combine": "mean over slices, concatenated over planes"}
    return ident
