import nibabel as nib
import numpy as np
import pytest

from uterosynth.evaluation.equal_n import frd_at_n
from uterosynth.evaluation.radiomics import frd_available, frd_from_features, radiomics_features

pytestmark = pytest.mark.skipif(not frd_available(), reason="frd-score / pyradiomics-bhklab not installed")


def _blobs(n, shape, seed, width=0.2):
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    out = []
    for _ in range(n):
        c = rng.uniform(-0.3, 0.3, len(shape))
        r2 = sum((g - ci) ** 2 for g, ci in zip(grid, c, strict=True))
        out.append(np.exp(-r2 / width) + 0.05 * rng.standard_normal(shape))
    return np.clip(np.asarray(out, dtype=np.float32), 0, 1)


@pytest.mark.slow
def test_frd_matches_frd_score_compute_frd(tmp_path):
    from frd_score import compute_frd

    sets = [_blobs(30, (32, 32), 0), _blobs(30, (32, 32), 1, width=0.4)]
    paths = []
    for k, arrays in enumerate(sets):
        files = []
        for i, a in enumerate(arrays):
            f = tmp_path / f"s{k}" / f"{i:03d}.nii.gz"
            f.parent.mkdir(exist_ok=True)
            nib.save(nib.Nifti1Image(a[..., None], np.eye(4)), str(f))
            files.append(str(f))
        paths.append(files)
    kw = {"features": ["firstorder"], "image_types": ["Original"]}
    expected = compute_frd(paths, num_workers=1, **kw)
    feats = [radiomics_features(a, spacing=(1.0, 1.0, 1.0), **kw) for a in sets]
    assert frd_from_features(*feats) == pytest.approx(float(expected), rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_frd_ranks_a_different_set_higher(spatial_dims):
    shape = (24, 24) if spatial_dims == 2 else (12, 12, 8)
    kw = {"features": ["firstorder", "glcm"], "image_types": ["Original"]}
    real = radiomics_features(_blobs(16, shape, 0), **kw)
    faithful = radiomics_features(_blobs(16, shape, 1), **kw)
    noised = radiomics_features(np.clip(_blobs(16, shape, 2) + 0.3 * np.random.default_rng(3).standard_normal((16, *shape)),
                                        0, 1).astype(np.float32), **kw)
    good = frd_at_n(real, faithful, n=12, n_blocks=4)
    bad = frd_at_n(real, noised, n=12, n_blocks=4)
    assert bad.value > good.value and bad.details["log_transformed"]
    assert good.n == {"real": 12, "synthetic": 12} and good.ci_low <= good.value <= good.ci_high


def test_radiomics_features_do_not_depend_on_the_number_of_processes():
    import torch

    torch.ones(64, 64) @ torch.ones(64, 64)  # a parent whose torch threads have started, as in `evaluate`
    arrays = _blobs(6, (12, 12, 8), 4)
    kw = {"features": ["firstorder", "glcm"], "image_types": ["Original"]}
    one = radiomics_features(arrays, **kw)
    two = radiomics_features(arrays, num_workers=2, **kw)
    # equal to rounding: a worker's copy of an item lies at another memory alignment, and the SIMD sums
    # inside the feature code may then differ in the last bit (seen: 1e-16 relative)
    assert one.shape[0] == 6 and np.array_equal(np.isnan(one), np.isnan(two))
    np.testing.assert_allclose(one, two, rtol=1e-12, atol=0, equal_nan=True)
    assert not np.allclose(one, radiomics_features(arrays[::-1].copy(), **kw), equal_nan=True)  # order matters
