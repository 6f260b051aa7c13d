"""Image I/O shared by every stage: NIfTI and PNG writers, middle slices, 2D ↔ 3D.

The array convention (docs/ARCHITECTURE.md): items are ``(H, W)`` slices or ``(H, W, D)``
volumes in IPR order; on disk a 2D item is an ``(H, W, 1)`` NIfTI whose affine places the slice
in the scanner. Only the edges (writers, readers, previews) convert between the two.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import nibabel as nib
import numpy as np
from numpy.typing import DTypeLike
from PIL import Image

from .errors import DataError

__all__ = [
    "as_volume",
    "blur_in_plane",
    "figure_data_uri",
    "figure_png",
    "middle_slice",
    "png_bytes",
    "png_data_uri",
    "preview_plane",
    "read_nifti",
    "squeeze_2d",
    "to_uint8",
    "write_nifti",
    "write_png",
]

ArrayT = TypeVar("ArrayT")


def middle_slice(x: ArrayT, axis: int = -1) -> ArrayT:
    """The middle slice of ``x`` (a NumPy array or torch tensor) along ``axis``: index ``size // 2``.

    >>> middle_slice(np.arange(6).reshape(1, 2, 3)).tolist()
    [[1, 4]]
    """
    shape = x.shape  # type: ignore[attr-defined]
    index: list[Any] = [slice(None)] * len(shape)
    index[axis] = shape[axis] // 2
    return x[tuple(index)]  # type: ignore[index]


def blur_in_plane(images: np.ndarray, sigma: float) -> np.ndarray:
    """Items ``(N, H, W[, D])`` each blurred with a Gaussian of ``sigma`` pixels along the first two axes."""
    from scipy import ndimage

    spatial = (sigma, sigma) + (0.0,) * (images.ndim - 3)
    return np.stack([ndimage.gaussian_filter(x, spatial, mode="nearest") for x in images]).astype(images.dtype)


def preview_plane(image: np.ndarray) -> np.ndarray:
    """The 2D view of an item: a slice ``(H, W)`` as is, a volume ``(H, W, D)`` by its middle sagittal slice."""
    return image if image.ndim == 2 else middle_slice(image)


def as_volume(array: np.ndarray) -> np.ndarray:
    """An item as stored on disk: a slice ``(H, W)`` becomes ``(H, W, 1)``; a volume is returned as is.

    >>> as_volume(np.zeros((4, 5))).shape
    (4, 5, 1)
    """
    return array[..., None] if array.ndim == 2 else array


def squeeze_2d(array: np.ndarray) -> np.ndarray:
    """The inverse of :func:`as_volume` for a 2D item: ``(H, W, 1)`` → ``(H, W)`` (other shapes unchanged).

    >>> squeeze_2d(np.zeros((4, 5, 1))).shape
    (4, 5)
    """
    return array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array


def write_nifti(
    path: str | Path,
    array: np.ndarray,
    affine: np.ndarray | Sequence[Sequence[float]],
    *,
    dtype: DTypeLike | None = None,
    xyzt_units: tuple[str, ...] | None = None,
    dim_info: tuple[int, int, int] | None = None,
    description: str | None = None,
) -> None:
    """Write ``array`` as NIfTI-1 with ``affine`` as both qform and sform (code 1, scanner).

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        array: voxels in NIfTI order ``(i, j, k)``; write a 2D item through :func:`as_volume`.
        affine: 4x4 voxel → RAS+ millimetres.
        dtype: stored type; by default integer arrays keep theirs and everything else is float32.
        xyzt_units: header units, e.g. ``("mm",)`` or ``("mm", "sec")``; left unset when ``None``.
        dim_info: ``(freq, phase, slice)`` axes of the acquisition; left unset when ``None``.
        description: the header's ``descrip`` field (ASCII, at most 80 bytes).
    """
    if dtype is None:
        dtype = array.dtype if np.issubdtype(array.dtype, np.integer) else np.float32
    affine = np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(np.asarray(array, dtype=dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if xyzt_units is not None:
        img.header.set_xyzt_units(*xyzt_units)
    if dim_info is not None:
        freq, phase, slice_ = dim_info
        img.header.set_dim_info(freq=freq, phase=phase, slice=slice_)
    if description is not None:
        img.header["descrip"] = description.encode("ascii")
    nib.save(img, str(path))


def read_nifti(path: str | Path, *, what: str = "item") -> tuple[np.ndarray, np.ndarray]:
    """``(array, affine)`` of a NIfTI file as stored (float32, float64; a 2D item is ``(H, W, 1)``).

    Raises:
        DataError: the file cannot be read; the message names it as ``what``.
    """
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as err:  # nibabel raises many types for broken files
        raise DataError(f"{path}: cannot read {what} ({err})") from err
    return data, np.asarray(img.affine, dtype=np.float64)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Intensities in ``[0, 1]`` as 8-bit grey: clipped, scaled by 255, rounded half to even.

    >>> to_uint8(np.array([-1.0, 0.5, 2.0])).tolist()
    [0, 128, 255]
    """
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a 2D image with intensities in ``[0, 1]`` as an 8-bit grey PNG (see :func:`to_uint8`)."""
    Image.fromarray(to_uint8(image)).save(path)


def png_bytes(write: Callable[[IO[bytes]], Any]) -> bytes:
    """The PNG bytes ``write(buffer)`` produces (a PIL ``image.save`` or a matplotlib ``savefig``)."""
    buf = io.BytesIO()
    write(buf)
    return buf.getvalue()


def figure_png(fig: Any, **savefig: Any) -> bytes:
    """Render a matplotlib figure as PNG bytes (``savefig`` options passed on) and close it."""
    import matplotlib.pyplot as plt  # heavy optional library

    try:
        return png_bytes(lambda buf: fig.savefig(buf, format="png", **savefig))
    finally:
        plt.close(fig)


def figure_data_uri(fig: Any, **savefig: Any) -> str:
    """:func:`figure_png` as a ``data:`` URI for HTML reports (the figure is closed)."""
    return png_data_uri(figure_png(fig, **savefig))


def png_data_uri(data: bytes) -> str:
    """``data:image/png;base64,…`` for embedding PNG bytes in HTML.

    >>> png_data_uri(b"x")
    'data:image/png;base64,eA=='
    """
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
