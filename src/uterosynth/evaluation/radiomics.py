"""Fréchet Radiomics Distance (FRD; Konz, Osuala et al., Medical Image Analysis 2026) via ``frd-score``.

FRD is the Fréchet distance between radiomics feature distributions (PyRadiomics first-order
and texture features of the original, LoG- and wavelet-filtered image over a whole-image mask),
z-scored against the real set and log-transformed (``frd-score`` v1 defaults). It needs no
network weights and works on 2D slices and 3D volumes alike.

``frd-score`` reads image files; to bootstrap we need the per-item features, so this module uses
the package's own extractor factory, normalisation and Fréchet distance, and feeds it arrays
through the same per-image steps as its ``process_image_mask_pair`` (whole-image mask with the
corner voxel cleared, 2D images given a unit third axis). ``tests/evaluation`` checks the value
against ``frd_score.compute_frd`` on the same files.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import numpy as np

from ..core.errors import ConfigError
from ..core.imageio import as_volume
from .metrics import frechet_distance_from_features

__all__ = ["frd_available", "frd_from_features", "radiomics_features"]


def frd_available() -> bool:
    """Whether ``frd-score`` and a working PyRadiomics are importable."""
    try:
        import frd_score  # noqa: F401
        import radiomics  # noqa: F401
    except ImportError:
        return False
    return True


def _extractor(spatial_dims: int, version: str, features: Sequence[str] | None = None,
               image_types: Sequence[str] | None = None):
    from frd_score import frd

    if not frd_available():
        raise ConfigError("FRD needs the 'frd-score' and 'pyradiomics-bhklab' packages: "
                          "pip install frd-score pyradiomics-bhklab (or set frd.enabled: false)", keys=("frd.enabled",))
    frd._ensure_radiomics()
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    frd.setVerbosity(60)
    _, _, features, image_types, _ = frd._resolve_defaults(
        version, None, None, None if features is None else list(features),
        None if image_types is None else list(image_types))
    return frd.get_feature_extractor(frd_version=version, features=features, image_dim=spatial_dims,
                                     image_types=image_types)


def _features_of(array: np.ndarray, spacing: Sequence[float], extractor, version: str) -> list[float]:
    import SimpleITK as sitk

    # frd-score reads (H, W, 1) NIfTI as a 3D image; SimpleITK arrays are (z, y, x).
    vol = as_volume(array)
    sitk_arr = np.ascontiguousarray(np.transpose(vol, (2, 1, 0))).astype(np.float32)
    image = sitk.GetImageFromArray(sitk_arr)
    image.SetSpacing(tuple(float(s) for s in spacing))
    mask_arr = np.ones(sitk_arr.shape, dtype=np.uint8)
    if version != "v0":
        mask_arr[0, 0, 0] = 0  # frd-score's work-around for a PyRadiomics bug on full masks
    mask = sitk.GetImageFromArray(mask_arr)
    mask.CopyInformation(image)
    output = extractor.execute(image, mask)
    values = []
    for key, val in output.items():
        if "diagnostics" not in key:
            values.append(float(val))
        elif version == "v1":
            with contextlib.suppress(TypeError, ValueError):
                values.append(float(val))
    return values


def radiomics_features(
    arrays: np.ndarray, *, spacing: Sequence[float] = (1.0, 1.0, 1.0), version: str = "v1",
    features: Sequence[str] | None = None, image_types: Sequence[str] | None = None, num_workers: int = 1,
) -> np.ndarray:
    """Radiomics features ``(N, R)`` of items ``(N, H, W)`` or ``(N, H, W, D)``, as ``frd-score`` extracts them.

    Args:
        arrays: the items; ``spacing``: voxel size in mm (the 2D preset resamples to 2 mm).
        version: ``frd-score`` version (``v1`` default: Original + LoG + wavelet images).
        features, image_types: override the feature classes / filtered images (``None``: the
            version's defaults, which published FRD values use).
        num_workers: processes (forked) sharing the items (0: one per CPU core); the result does not
            depend on it beyond rounding (a worker's copy of an item may differ in the last bit of
            a feature, about 1e-16 relative).
    """
    if num_workers == 0:
        import os

        num_workers = os.cpu_count() or 1
    if num_workers > 1 and len(arrays) > num_workers:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        from functools import partial

        work = partial(radiomics_features, spacing=spacing, version=version, features=features,
                       image_types=image_types)
        with ProcessPoolExecutor(num_workers, mp_context=mp.get_context("fork")) as pool:
            chunks = np.array_split(arrays, min(len(arrays), 4 * num_workers))  # small chunks balance the load
            return np.concatenate(list(pool.map(work, chunks)))
    spatial_dims = arrays.ndim - 1
    extractor = _extractor(spatial_dims, version, features, image_types)
    spacing = tuple(spacing)[:3] + (1.0,) * (3 - len(tuple(spacing)[:3]))
    rows = [_features_of(a, spacing, extractor, version) for a in arrays]
    return np.asarray(rows, dtype=np.float64)


def frd_from_features(real: np.ndarray, fake: np.ndarray, *, version: str = "v1") -> float:
    """FRD from raw radiomics features, with ``frd-score``'s normalisation.

    v1: rows with NaN dropped, float32, z-score against the real set, columns with NaN/Inf
    dropped, ``log(d²)``. v0: min-max over both sets to ``[0, 7.4567]``, no log.
    """
    from frd_score import frd

    sets = [np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)]
    if version == "v1":
        sets = [s[~np.isnan(s).any(axis=1)].astype(np.float32) for s in sets]
        base = sets[0]
        normed = [frd.z_score_normalize(s, 0.0, 1.0, replace_nan=False, base_distribution=base,
                                        handle_std_zero=False) for s in sets]
        keep = ~np.zeros(normed[0].shape[1], dtype=bool)
        for s in normed:
            keep &= ~(np.isnan(s).any(axis=0) | np.isinf(s).any(axis=0))
        normed = [s[:, keep] for s in normed]
    else:
        base = np.concatenate(sets)
        normed = [frd.min_max_normalize(s, *frd.V0_DEFAULT_NORM_RANGE, base_distribution=base) for s in sets]
    # frd-score's own distance uses scipy's sqrtm; the symmetric-eigh form is the same
    # quantity (checked against compute_frd in the tests) and several times faster for the bootstrap.
    value = frechet_distance_from_features(normed[0], normed[1])
    if version == "v1":
        return float(np.log(value)) if value > 0 else float("-inf")
    return value
