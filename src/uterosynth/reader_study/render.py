"""Render real and synthetic items identically: one resampling, one window, one PNG encoder.

Everything a rater could use to tell the two sources apart other than the pixels themselves
is removed here: both sources go through exactly the same code path (resampling to one
display shape, a per-image percentile window, 8-bit greyscale PNG with no ancillary chunks,
no text, no timestamps, no physical size).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np

__all__ = ["display_shape", "window", "resample", "render_slices", "encode_png", "png_chunks"]


def display_shape(shape: Sequence[int], size: int) -> tuple[int, ...]:
    """Display shape for items of ``shape`` ``(H, W[, D])``: in-plane long side = ``size``.

    The slice axis of a volume (axis 2) keeps its length; only rows and columns are scaled.
    """
    h, w = int(shape[0]), int(shape[1])
    scale = size / max(h, w)
    out = (max(1, round(h * scale)), max(1, round(w * scale)))
    return out + tuple(int(s) for s in shape[2:3])


def resample(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Linear resampling (with anti-aliasing when shrinking) of ``(H, W[, D])`` to ``shape``."""
    from skimage.transform import resize

    array = np.nan_to_num(np.asarray(array, dtype=np.float32))
    if tuple(array.shape) == tuple(shape):
        return array
    return resize(array, tuple(shape), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)


def window(array: np.ndarray, low_pct: float, high_pct: float) -> np.ndarray:
    """Map the ``[low_pct, high_pct]`` percentile window of the whole item to ``uint8`` 0–255.

    The window is computed per item over all its voxels, the same way for real and
    synthetic items, so neither source keeps a tell-tale intensity range.
    """
    lo, hi = np.percentile(array, [low_pct, high_pct])
    if not np.isfinite(hi - lo) or hi - lo <= 1e-12:
        return np.zeros(array.shape, dtype=np.uint8)
    scaled = (np.clip(array, lo, hi) - lo) / (hi - lo)
    return np.round(scaled * 255.0).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """Encode a ``(H, W)`` ``uint8`` image as greyscale PNG with only IHDR/IDAT/IEND chunks."""
    from PIL import Image

    buf = io.BytesIO()
    # No pnginfo, no dpi, no icc profile: PIL then writes the critical chunks only.
    Image.fromarray(np.ascontiguousarray(image), mode="L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def render_slices(
    array: np.ndarray, shape: Sequence[int], *, low_pct: float = 0.5, high_pct: float = 99.5
) -> list[bytes]:
    """Render an item ``(H, W)`` or ``(H, W, D)`` to PNG bytes, one per slice along axis 2.

    Args:
        array: the item as loaded from a prepared dataset or synthetic set.
        shape: display shape from :func:`display_shape` (2 or 3 entries, matching ``array``).
        low_pct, high_pct: percentile window applied per item.

    Returns:
        One PNG per displayed slice (one for a 2D item).
    """
    image = window(resample(array, shape), low_pct, high_pct)
    if image.ndim == 2:
        return [encode_png(image)]
    return [encode_png(image[:, :, k]) for k in range(image.shape[2])]


def png_chunks(data: bytes) -> list[str]:
    """Chunk types of a PNG file in order (used to check that no metadata is written)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        crc = data[pos + 8 + length : pos + 12 + length]
        if zlib.crc32(kind + data[pos + 8 : pos + 8 + length]).to_bytes(4, "big") != crc:
            raise ValueError(f"bad CRC in chunk {kind!r}")
        chunks.append(kind.decode("ascii"))
        pos += 12 + length
    return chunks
