"""Feature extractors: the one interface every metric and the privacy audit embed images with.

An extractor maps images ``(N, 1, *spatial)`` with intensities in ``[0, 1]`` to features
``(N, F)``. Its ``name`` and ``sha256`` identify it in every artifact, so numbers computed with
different extractors are never compared by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from ..core.artifacts import sha256_file
from ..core.errors import ConfigError, DataError

__all__ = ["FeatureExtractor", "TorchScriptExtractor", "TorchvisionExtractor", "load_torchscript_extractor"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@runtime_checkable
class FeatureExtractor(Protocol):
    """Images ``(N, 1, *spatial)`` in ``[0, 1]`` → features ``(N, F)``."""

    name: str
    sha256: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class TorchScriptExtractor:
    """A TorchScript module saved with ``torch.jit.save`` used as a feature extractor.

    Args:
        path: the ``.pt`` file.
        device: where to run it.
        batch_size: images per forward pass.
    """

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu", batch_size: int = 64) -> None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: feature extractor file not found")
        try:
            self.module = torch.jit.load(str(path), map_location=device).eval()
        except Exception as err:
            raise DataError(f"{path}: not a TorchScript module ({str(err).splitlines()[0]})") from err
        self.path = path
        self.name = path.stem
        self.sha256 = sha256_file(path)
        self.device = torch.device(device)
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        chunks = [
            self.module(images[i : i + self.batch_size].to(self.device)).float().flatten(1).cpu()
            for i in range(0, images.shape[0], self.batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.empty(0, 0)

    def __repr__(self) -> str:
        return f"TorchScriptExtractor(name={self.name!r}, sha256={self.sha256[:12]}…)"


def load_torchscript_extractor(path: str | Path, *, device: str | torch.device = "cpu") -> TorchScriptExtractor:
    """Load a TorchScript feature extractor from ``path``."""
    return TorchScriptExtractor(path, device=device)


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"{path}: cannot read weights ({str(err).splitlines()[0]})") from err
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict (name -> tensor), found {type(state).__name__}")
    return state


class TorchvisionExtractor:
    """A torchvision ImageNet backbone with weights from a local file: a comparable, non-medical extractor.

    The network is built with ``weights=None`` (nothing is downloaded) and its convolutional trunk
    (``model.features`` for AlexNet, VGG, SqueezeNet, DenseNet, MobileNet, EfficientNet, ConvNeXt;
    everything before ``fc`` for ResNets) is loaded from ``weights`` — a ``.safetensors`` or
    ``torch.save`` state dict with torchvision's key names, e.g. ``features.0.weight``. Every trunk
    tensor must be in the file; classifier-head keys may be absent. Grey images ``(N, 1, H, W)``
    in ``[0, 1]`` are repeated to three channels, resized to ``size`` (bilinear) and normalised with
    the ImageNet mean and std; features are the trunk's output averaged over space, ``(N, C)``.

    Args:
        arch: a torchvision model builder name (``alexnet``, ``resnet18`` …).
        weights: the local weight file; its sha256 identifies the extractor.

    Raises:
        ConfigError: unknown ``arch``.
        DataError: missing file, or weights that do not fit the trunk.
    """

    def __init__(self, arch: str, weights: str | Path, *, device: str | torch.device = "cpu", batch_size: int = 64,
                 size: int = 224) -> None:
        import torchvision.models as tvm

        weights = Path(weights)
        if not weights.is_file():
            raise DataError(f"{weights}: weights for torchvision '{arch}' not found (nothing is downloaded; give a "
                            "local state dict, e.g. ../shared/weights/alexnet_imagenet_features.safetensors)")
        builder = getattr(tvm, arch, None) if not arch.startswith("_") else None
        if builder is None or not callable(builder) or arch not in tvm.list_models(module=tvm):
            raise ConfigError(f"extractor.arch '{arch}': not a torchvision classification model "
                              f"(e.g. alexnet, resnet18, vgg16, squeezenet1_1)", keys=("extractor.arch",))
        net = builder(weights=None)
        if hasattr(net, "features"):
            trunk, prefix = net.features, "features."
        elif hasattr(net, "fc"):
            trunk, prefix = torch.nn.Sequential(*[m for n, m in net.named_children() if n not in ("fc", "avgpool")]), ""
        else:
            raise ConfigError(f"extractor.arch '{arch}': no 'features' trunk or 'fc' head to strip; use a TorchScript "
                              "extractor instead", keys=("extractor.arch",))
        state = _load_state(weights)
        own = net.state_dict()
        unexpected = sorted(set(state) - set(own))
        head = ("fc.",) if prefix == "" else ()
        needed = [k for k in own if k.startswith(prefix) and not k.startswith(head)] if prefix else \
            [k for k in own if not k.startswith("fc.")]
        missing = [k for k in needed if k not in state]
        if unexpected or missing:
            raise DataError(f"{weights}: does not fit torchvision '{arch}' "
                            f"(missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
                            f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''})")
        shapes = [k for k in state if state[k].shape != own[k].shape]
        if shapes:
            raise DataError(f"{weights}: tensor shapes differ from torchvision '{arch}' for {shapes[:3]}")
        net.load_state_dict(state, strict=False)
        self.module = trunk.eval().to(device)
        self.arch = arch
        self.path = weights
        self.name = f"torchvision-{arch}"
        self.sha256 = sha256_file(weights)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.size = size
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, images.shape[0], self.batch_size):
            x = images[s : s + self.batch_size].float()
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
            x = (x.repeat(1, 3, 1, 1) - self.mean) / self.std
            out.append(self.module(x.to(self.device)).float().mean(dim=(2, 3)).cpu())
        return torch.cat(out) if out else torch.empty(0, 0)

    def __repr__(self) -> str:
        return f"TorchvisionExtractor(arch={self.arch!r}, sha256={self.sha256[:12]}…)"
