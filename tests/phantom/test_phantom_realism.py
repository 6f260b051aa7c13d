"""Tests that would catch an unrealistic phantom: contrast, SNR by field strength, edges, bias field.

They pin version 1 (no acquisition artefacts); version 2 is checked in test_phantom_v2.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from uterosynth.core.seeding import numpy_rng
from uterosynth.phantom import PhantomConfig, generate_subject
from uterosynth.phantom.anatomy import sample_subject
from uterosynth.phantom.render import _bias_field
from uterosynth.phantom.tissues import Tissue

SMALL = {"matrix": (160, 160), "spacing": (1.6, 1.6, 4.0), "slices": 18, "supersample": 2}
CFG = PhantomConfig(version=1, geometry=SMALL, seed=21, anatomy={"p_myoma": 1.0, "p_cyst": 1.0})


@pytest.fixture(scope="module")
def subjects():
    return [generate_subject(CFG, k) for k in range(4)]


def test_tissue_intensity_ordering(subjects):
    """Cavity brighter than wall, myoma darker than wall, urine brightest, JZ/muscle dark, bone/gas black."""
    for subject, r in subjects:
        img = r.image.astype(np.float64)
        wall, cavity, myoma = (np.median(img[r.seg == v]) for v in (1, 2, 3))
        assert cavity > 1.3 * wall and myoma < 0.7 * wall, subject.index

        def med(t: Tissue, img=img, r=r) -> float:
            sel = r.tissue == int(t)
            return float(np.median(img[sel])) if sel.sum() > 30 else np.nan

        urine = med(Tissue.URINE)
        others = [med(t) for t in Tissue if t not in (Tissue.URINE, Tissue.CSF, Tissue.NABOTHIAN_CYST, Tissue.FOLLICLE)]
        assert urine > np.nanmax(others), subject.index
        assert med(Tissue.FAT) > med(Tissue.MYOMETRIUM) > med(Tissue.JUNCTIONAL_ZONE)
        assert med(Tissue.MUSCLE) < min(0.75 * med(Tissue.MYOMETRIUM), 0.5 * med(Tissue.FAT))
        assert med(Tissue.CERVIX_INNER) < med(Tissue.CERVIX_OUTER)
        cortex = img[r.tissue == int(Tissue.CORTEX)]
        assert np.percentile(cortex, 10) < 0.15 * urine  # thin cortical rims are partial-volumed


def _snr(r) -> float:
    """Wall signal over the noise sigma estimated from air (Rayleigh: std = 0.655 sigma)."""
    air = ndimage.binary_erosion(r.tissue == int(Tissue.AIR), iterations=3)
    sigma = np.std(r.image[air].astype(np.float64)) / 0.655
    return float(np.mean(r.image[r.seg == 1]) / sigma)


def test_3t_has_higher_snr_than_15t():
    cfg = PhantomConfig(version=1, geometry=SMALL, seed=4)
    for k in range(2):
        _, r15 = generate_subject(cfg, k, field_strength="1.5T")
        _, r3 = generate_subject(cfg, k, field_strength="3T")
        assert _snr(r3) > 1.2 * _snr(r15), k


def test_bias_field_is_smooth_and_stronger_at_3t():
    cfg = PhantomConfig(version=1, geometry=SMALL, seed=4)
    s15 = sample_subject(numpy_rng(4, 0), cfg, 0, field_strength="1.5T")
    s3 = sample_subject(numpy_rng(4, 0), cfg, 0, field_strength="3T")
    b15 = _bias_field(cfg, s15, (160, 160, 18))
    b3 = _bias_field(cfg, s3, (160, 160, 18))
    assert np.std(np.log(b3)) > np.std(np.log(b15)) > 0.01
    assert np.abs(np.diff(np.log(b3), axis=0)).max() < 0.05  # smooth: < 5 % change per voxel


def test_masks_align_with_image_edges(subjects):
    """Image gradients peak on the label boundaries: shifting a mask by 3 voxels loses the edge."""
    plane = np.ones((3, 3, 1), bool)
    ratios = []
    for _, r in subjects:
        img = r.image.astype(np.float64)
        grad = np.zeros_like(img)
        for z in range(img.shape[2]):
            grad[:, :, z] = ndimage.gaussian_gradient_magnitude(img[:, :, z], 0.8)
        for mask in (r.seg > 0, r.seg == 2):
            edge = mask & ~ndimage.binary_erosion(mask, plane)
            on_edge = grad[edge].mean()
            for axis in (0, 1):
                for shift in (-3, 3):
                    ratios.append(on_edge / grad[np.roll(edge, shift, axis=axis)].mean())
    assert min(ratios) > 1.15 and np.mean(ratios) > 1.5


def test_partial_volume_mixes_values_at_edges():
    """Supersampling produces intermediate values at tissue boundaries (not a hard label image)."""
    cfg = PhantomConfig(version=1, geometry=SMALL, seed=2, acquisition={"tissue_jitter": 0.0})
    _, r = generate_subject(cfg, 0)
    urine = r.tissue == int(Tissue.URINE)
    boundary = ndimage.binary_dilation(urine, np.ones((3, 3, 1), bool)) & ~ndimage.binary_erosion(urine, np.ones((3, 3, 1), bool))
    values = r.clean[boundary]
    core = np.median(r.clean[ndimage.binary_erosion(urine, iterations=3)])
    assert np.mean((values > 0.25 * core) & (values < 0.75 * core)) > 0.2
