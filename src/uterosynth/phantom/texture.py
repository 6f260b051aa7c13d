"""Version 2 tissue texture: two scales of smooth random modulation and fibrous septa in fat.

The multiplicative texture is ``1 + g (a_c[t] f_c + a_f[t] f_f)``, with ``f_c`` a coarse field
(~6 mm, perfusion and fibre-bundle variation) and ``f_f`` a fine one (~2 mm, the mottled,
whorled look of myometrium and leiomyomas on fast spin-echo images), ``a_c`` / ``a_f`` per-tissue
amplitudes and ``g`` the subject's ``texture_gain``. In fat, thin dark septa (connective-tissue
strands) are where a third smooth field crosses zero.
"""

from __future__ import annotations

import numpy as np

from .artifacts import Imaging
from .fields import smooth_field
from .tissues import TEXTURE, Tissue, tissue_lut

__all__ = ["FINE_TEXTURE", "texture"]

# Fine-scale amplitude per tissue (the coarse one is tissues.TEXTURE).
FINE_TEXTURE: dict[Tissue, float] = {
    Tissue.FAT: 0.04,
    Tissue.MUSCLE: 0.08,
    Tissue.MARROW: 0.15,
    Tissue.BOWEL_WALL: 0.12,
    Tissue.BOWEL_FLUID: 0.25,
    Tissue.RECTAL_CONTENT: 0.35,
    Tissue.MYOMETRIUM: 0.09,
    Tissue.JUNCTIONAL_ZONE: 0.06,
    Tissue.ENDOMETRIUM: 0.05,
    Tissue.CERVIX_OUTER: 0.08,
    Tissue.CERVIX_INNER: 0.05,
    Tissue.MYOMA: 0.18,
    Tissue.MYOMA_CORE: 0.3,
    Tissue.OVARY: 0.12,
}


def texture(rng: np.random.Generator, tissue: np.ndarray, im: Imaging, voxel_mm: float) -> np.ndarray:
    """float32 multiplicative texture (>= 0.2) for the tissue map ``tissue`` (``(H, W, D)``, IPR).

    Args:
        rng: generator (three fields are drawn from it, in a fixed order).
        tissue: uint8 tissue codes.
        im: the subject's imaging draws (``texture_gain``, ``fat_septa``).
        voxel_mm: in-plane voxel size, to keep the correlation lengths in millimetres.
    """
    shape = tissue.shape
    per_mm = 1.0 / voxel_mm
    coarse = smooth_field(rng, shape, (6.0 * per_mm, 6.0 * per_mm, 1.5))
    fine = smooth_field(rng, shape, (max(2.0 * per_mm, 1.5), max(2.0 * per_mm, 1.5), 1.0))
    septa = smooth_field(rng, shape, (8.0 * per_mm, 8.0 * per_mm, 1.5))
    g = np.float32(im.texture_gain)
    coarse *= tissue_lut(TEXTURE)[tissue] * g
    fine *= tissue_lut(FINE_TEXTURE)[tissue] * g
    coarse += fine
    coarse += 1.0
    # Septa: |field| small on a thin band around its zero set, widest ~1 mm.
    strand = np.exp(-((septa / np.float32(0.12)) ** 2))
    coarse *= 1 - np.float32(im.fat_septa) * strand * (tissue == int(Tissue.FAT))
    np.maximum(coarse, 0.2, out=coarse)
    return coarse
