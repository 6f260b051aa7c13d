"""Tissue classes of the phantom, their T2-weighted signal and their segmentation label.

The internal tissue map holds one :class:`Tissue` code per voxel. The written ``*_seg.nii.gz``
keeps only the UMD labels (0 background, 1 uterine wall, 2 uterine cavity, 3 myoma,
4 Nabothian cyst) through :data:`SEG_LABEL`.

Relative T2-weighted (fast spin echo) signal, urine = 1, after the descriptions in
Hricak et al., "Normal uterine zonal anatomy" (Radiology 1983), Brown et al., "Uterine
junctional zone" (AJR 1991) and Nougaret et al., "Leiomyoma imaging" (Radiographics 2016):
fluid brightest, fat and endometrium bright, outer myometrium intermediate, junctional zone,
inner cervical stroma, skeletal muscle and leiomyomas dark, cortical bone, gas and flow voids
black.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = ["Tissue", "SEG_LABEL", "T2_SIGNAL", "TEXTURE", "tissue_lut", "seg_lut"]


class Tissue(IntEnum):
    """Tissue codes of the internal tissue map (uint8)."""

    AIR = 0
    FAT = 1
    SKIN = 2
    MUSCLE = 3
    CORTEX = 4
    MARROW = 5
    DISC_ANNULUS = 6
    DISC_NUCLEUS = 7
    CSF = 8
    CARTILAGE = 9
    BOWEL_WALL = 10
    BOWEL_FLUID = 11
    GAS = 12
    BLADDER_WALL = 13
    URINE = 14
    URETHRA = 15
    URETHRA_LUMEN = 16
    RECTAL_WALL = 17
    RECTAL_CONTENT = 18
    VAGINAL_WALL = 19
    VAGINAL_LUMEN = 20
    MYOMETRIUM = 21
    JUNCTIONAL_ZONE = 22
    ENDOMETRIUM = 23
    CERVIX_OUTER = 24
    CERVIX_INNER = 25
    CERVICAL_CANAL = 26
    MYOMA = 27
    MYOMA_CORE = 28
    NABOTHIAN_CYST = 29
    OVARY = 30
    FOLLICLE = 31
    VESSEL = 32


N_TISSUES = len(Tissue)

# UMD segmentation label of each tissue (everything not listed is background 0).
SEG_LABEL: dict[Tissue, int] = {
    Tissue.MYOMETRIUM: 1,
    Tissue.JUNCTIONAL_ZONE: 1,
    Tissue.CERVIX_OUTER: 1,
    Tissue.CERVIX_INNER: 1,
    Tissue.ENDOMETRIUM: 2,
    Tissue.CERVICAL_CANAL: 2,
    Tissue.MYOMA: 3,
    Tissue.MYOMA_CORE: 3,
    Tissue.NABOTHIAN_CYST: 4,
}

# Relative T2 signal at 1.5 T (urine = 1).
T2_SIGNAL: dict[Tissue, float] = {
    Tissue.AIR: 0.0,
    Tissue.FAT: 0.68,
    Tissue.SKIN: 0.38,
    Tissue.MUSCLE: 0.19,
    Tissue.CORTEX: 0.02,
    Tissue.MARROW: 0.52,
    Tissue.DISC_ANNULUS: 0.16,
    Tissue.DISC_NUCLEUS: 0.62,
    Tissue.CSF: 0.95,
    Tissue.CARTILAGE: 0.22,
    Tissue.BOWEL_WALL: 0.38,
    Tissue.BOWEL_FLUID: 0.62,
    Tissue.GAS: 0.0,
    Tissue.BLADDER_WALL: 0.16,
    Tissue.URINE: 1.0,
    Tissue.URETHRA: 0.20,
    Tissue.URETHRA_LUMEN: 0.55,
    Tissue.RECTAL_WALL: 0.20,
    Tissue.RECTAL_CONTENT: 0.40,
    Tissue.VAGINAL_WALL: 0.24,
    Tissue.VAGINAL_LUMEN: 0.60,
    Tissue.MYOMETRIUM: 0.45,
    Tissue.JUNCTIONAL_ZONE: 0.20,
    Tissue.ENDOMETRIUM: 0.84,
    Tissue.CERVIX_OUTER: 0.36,
    Tissue.CERVIX_INNER: 0.14,
    Tissue.CERVICAL_CANAL: 0.72,
    Tissue.MYOMA: 0.12,
    Tissue.MYOMA_CORE: 0.30,
    Tissue.NABOTHIAN_CYST: 0.92,
    Tissue.OVARY: 0.36,
    Tissue.FOLLICLE: 0.90,
    Tissue.VESSEL: 0.04,
}

# Amplitude of the smooth multiplicative texture (relative signal variation) per tissue.
TEXTURE: dict[Tissue, float] = {
    Tissue.FAT: 0.05,
    Tissue.MUSCLE: 0.10,
    Tissue.MARROW: 0.22,
    Tissue.BOWEL_WALL: 0.15,
    Tissue.BOWEL_FLUID: 0.30,
    Tissue.RECTAL_CONTENT: 0.35,
    Tissue.MYOMETRIUM: 0.07,
    Tissue.ENDOMETRIUM: 0.06,
    Tissue.CERVIX_OUTER: 0.08,
    Tissue.MYOMA: 0.10,
    Tissue.MYOMA_CORE: 0.25,
    Tissue.OVARY: 0.12,
    Tissue.URINE: 0.01,
}


def tissue_lut(values: dict[Tissue, float], default: float = 0.0) -> np.ndarray:
    """A float32 lookup table ``lut[tissue_code]`` from a tissue → value mapping."""
    lut = np.full(N_TISSUES, default, dtype=np.float32)
    for tissue, value in values.items():
        lut[int(tissue)] = value
    return lut


def seg_lut() -> np.ndarray:
    """uint8 lookup table tissue code → UMD segmentation label."""
    lut = np.zeros(N_TISSUES, dtype=np.uint8)
    for tissue, label in SEG_LABEL.items():
        lut[int(tissue)] = label
    return lut
