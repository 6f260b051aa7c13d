"""Exact search, SSIM and the SSIM shortlist against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from conftest import make_anatomy_subject
from uterosynth.core.errors import UserError
from uterosynth.privacy.similarity import (
    _zoom_size,
    alignments,
    cosine_search,
    dense_zoom_scales,
    ncc_search,
    ssim_pairs,
    ssim_search,
    to_working_grid,
    zoom_alignment,
    zoom_refine,
    zoom_search,
)


def _anatomy(n_subjects: int, slices: int, shape=(40, 40), seed=0) -> np.ndarray:
    return np.concatenate([make_anatomy_subject(np.random.default_rng([seed, s]), shape, slices) for s in range(n_subjects)])


def _brute_ncc(q: np.ndarray, r: np.ndarray, max_shift: int, flip_axes) -> np.ndarray:
    dims = q.ndim - 1
    out = np.full((len(q), len(r)), -np.inf)
    crop = tuple(slice(max_shift, s - max_shift) for s in r.shape[1:])
    for a in alignments(dims, max_shift, flip_axes):
        qq = q if a.flip_axis is None else np.flip(q, a.flip_axis + 1)
        win = tuple(slice(max_shift + d, s - max_shift + d) for s, d in zip(q.shape[1:], a.shift, strict=True))
        for i in range(len(q)):
            for j in range(len(r)):
                u = qq[i][win].ravel() - qq[i][win].mean()
                v = r[j][crop].ravel() - r[j][crop].mean()
                out[i, j] = max(out[i, j], float(u @ v / np.sqrt((u @ u) * (v @ v))))
    return out


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_ncc_search_equals_brute_force(spatial_dims):
    rng = np.random.default_rng(1)
    shape = (12, 12) if spatial_dims == 2 else (10, 10, 8)
    r = rng.random((7, *shape)).astype(np.float32)
    q = np.concatenate([rng.random((3, *shape)), np.flip(np.roll(r[:2], 1, axis=1), 2)]).astype(np.float32)
    flips = (1,) if spatial_dims == 2 else (1, 2)
    res = ncc_search(torch.from_numpy(q), torch.from_numpy(r), k=3, max_shift=1, flip_axes=flips, block_elements=1 << 16)
    bf = _brute_ncc(q, r, 1, flips)
    np.testing.assert_allclose(res.values.numpy(), -np.sort(-bf, axis=1)[:, :3], atol=1e-5)
    assert (res.indices[:, 0].numpy() == bf.argmax(axis=1)).all()
    assert res.values[3, 0] > 0.9 and res.indices[3, 0] == 0  # shifted + mirrored copy found
    assert alignments(spatial_dims, 1, flips)[res.transforms[3, 0]].flip_axis == 1


def _brute_zoom(q: np.ndarray, r: np.ndarray, scales, flip_axes) -> np.ndarray:
    """Best NCC of the area-shrunk query (and mirrors) against every window of each reference, by loops."""
    out = np.full((len(q), len(r)), -np.inf)
    for c in scales:
        size = tuple(max(2, round(c * g)) for g in q.shape[1:])
        for axis in (None, *flip_axes):
            qq = q if axis is None else np.flip(q, axis + 1)
            small = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(qq.copy())[:, None], size)[:, 0].numpy()
            for y in range(q.shape[1] - size[0] + 1):
                for x in range(q.shape[2] - size[1] + 1):
                    for i in range(len(q)):
                        for j in range(len(r)):
                            u = small[i].ravel() - small[i].mean()
                            w = r[j, y : y + size[0], x : x + size[1]]
                            v = w.ravel() - w.mean()
                            out[i, j] = max(out[i, j], float(u @ v / np.sqrt((u @ u) * (v @ v))))
    return out


def test_zoom_search_equals_brute_force_and_finds_an_enlarged_crop():
    rng = np.random.default_rng(3)
    r = torch.from_numpy(_anatomy(4, 1, shape=(16, 16)).astype(np.float32))
    crop = r[2, 3:15, 1:13].flip(1)  # a mirrored 75 % crop of reference 2, corner (3, 1) before mirroring
    enlarged = torch.nn.functional.interpolate(crop[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0]
    q = torch.cat([enlarged, torch.from_numpy(rng.random((2, 16, 16)).astype(np.float32))])
    res = zoom_search(q, r, scales=(0.75, 0.9), k=2, flip_axes=(1,), block_elements=1 << 16)
    bf = _brute_zoom(q.numpy(), r.numpy(), (0.75, 0.9), (1,))
    np.testing.assert_allclose(res.values.numpy(), -np.sort(-bf, axis=1)[:, :2], atol=1e-5)
    assert res.indices[0, 0] == 2 and res.values[0, 0] > 0.9
    plain = ncc_search(q, r, max_shift=2, flip_axes=(1,))  # shifts without zoom see the crop less well
    assert plain.values[0, 0] < res.values[0, 0] - 0.1
    assert zoom_alignment(int(res.transforms[0, 0]), grid=(16, 16), scales=(0.75, 0.9), flip_axes=(1,)) == {
        "scale": 0.75, "flip_axis": 1, "corner": [3, 1]}
    assert len(set(res.indices[0].tolist())) == 2  # distinct references, each at its best scale
    grouped = zoom_search(q, r, scales=(0.75,), query_groups=[2, 0, 0], reference_groups=[0, 1, 2, 3])
    assert grouped.indices[0, 0] != 2  # its own subject is never its neighbour
    with pytest.raises(UserError, match="zoom_scales"):
        zoom_search(q, r, scales=(1.0,))


def test_zoom_refine_scores_the_candidates_as_the_full_search_does():
    rng = np.random.default_rng(4)
    r = torch.from_numpy(rng.random((6, 12, 12)).astype(np.float32))
    q = torch.from_numpy(rng.random((3, 12, 12)).astype(np.float32))
    full = zoom_search(q, r, scales=(0.75, 0.9), k=6, flip_axes=(1,))
    cand = torch.tensor([[2, 5, -1], [0, 0, 1], [4, 3, 2]])
    refined = zoom_refine(q, r, cand, scales=(0.75, 0.9), flip_axes=(1,), block_pairs=4)
    for i in range(3):
        pos = {int(j): float(v) for j, v in zip(full.indices[i], full.values[i], strict=True)}
        best = max((c for c in cand[i].tolist() if c >= 0), key=lambda c: pos[c])
        assert refined.indices[i, 0] == best and refined.values[i, 0].item() == pytest.approx(pos[best], abs=1e-5)
    top = zoom_refine(q, r, full.indices[:, :1], scales=(0.75, 0.9), flip_axes=(1,))
    assert torch.equal(top.transforms[:, 0], full.transforms[:, 0])  # the same window, scale and mirror
    small = zoom_refine(q, r, cand, scales=(0.75, 0.9), flip_axes=(1,), block_pairs=4, block_elements=1)
    assert torch.equal(small.indices, refined.indices) and torch.equal(small.transforms, refined.transforms)
    torch.testing.assert_close(small.values, refined.values)  # one pair at a time: the same answer
    none = zoom_refine(q, r, torch.tensor([[0, 1], [-1, -1], [2, 3]]), scales=(0.75,), block_pairs=2)
    assert none.indices[1, 0] == -1 and torch.isinf(none.values[1, 0]) and (none.indices[[0, 2], 0] >= 0).all()


def test_zoom_refine_matches_the_full_search_on_volumes_and_flat_windows():
    rng = np.random.default_rng(5)
    r = torch.from_numpy(rng.random((4, 10, 10, 8)).astype(np.float32))
    r[1, :6, :6, :6] = 0.3  # constant windows score 0, as in the full search, not noise over a zero norm
    q = torch.from_numpy(rng.random((2, 10, 10, 8)).astype(np.float32))
    full = zoom_search(q, r, scales=(0.6, 0.8), k=4, flip_axes=(1,))
    refined = zoom_refine(q, r, full.indices, scales=(0.6, 0.8), flip_axes=(1,))
    torch.testing.assert_close(refined.values[:, 0], full.values[:, 0], atol=1e-5, rtol=0)
    assert torch.equal(refined.transforms[:, 0], full.transforms[:, 0])


def test_dense_zoom_scales_score_a_crop_between_the_listed_scales_as_a_copy():
    dense32 = dense_zoom_scales((0.7, 0.8, 0.9), (32, 32))
    assert [_zoom_size((32, 32), s) for s in dense32] == [(n, n) for n in range(22, 30)]  # every side 22..29
    assert 0.8 in dense32  # a listed scale names its own window shape
    assert len(dense_zoom_scales((0.5, 0.75), (16, 16, 4))) == 5  # one scale per window shape: 8..12 of 16
    anisotropic = dense_zoom_scales((0.7, 0.9), (32, 32, 5))  # the listed shapes stay, e.g. 0.7 -> (22, 22, 4)
    assert {_zoom_size((32, 32, 5), s) for s in (0.7, 0.9)} <= {_zoom_size((32, 32, 5), s) for s in anisotropic}
    image = torch.from_numpy(_anatomy(1, 1, shape=(32, 32)).astype(np.float32))[0]
    crop = image[2:29, 3:30]  # 27 of 32: between the listed 0.8 (26) and 0.9 (29)
    copy = torch.nn.functional.interpolate(crop[None, None], size=(32, 32), mode="area")[0]
    listed = zoom_refine(copy, image[None], torch.tensor([[0]]), scales=(0.7, 0.8, 0.9))
    dense = zoom_refine(copy, image[None], torch.tensor([[0]]), scales=dense_zoom_scales((0.7, 0.8, 0.9), (32, 32)))
    assert dense.values[0, 0] > 0.97 and dense.values[0, 0] > listed.values[0, 0] + 0.03  # 0.976 against 0.937
    assert zoom_alignment(int(dense.transforms[0, 0]), grid=(32, 32), flip_axes=(),
                          scales=dense_zoom_scales((0.7, 0.8, 0.9), (32, 32))) == {
        "scale": 27 / 32, "flip_axis": None, "corner": [2, 3]}


def test_ncc_search_skips_same_group():
    x = torch.rand(4, 16, 16)
    res = ncc_search(x, x, k=1, max_shift=0, query_groups=[0, 1, 2, 3], reference_groups=[0, 1, 2, 3])
    assert (res.indices[:, 0] != torch.arange(4)).all() and (res.values[:, 0] < 0.99).all()


def test_cosine_search_equals_brute_force():
    q, r = torch.randn(9, 5), torch.randn(20, 5)
    res = cosine_search(q, r, k=4, block_elements=1 << 16)
    bf = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(r, dim=1).T
    torch.testing.assert_close(res.values, bf.topk(4, dim=1).values)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_ssim_pairs_equals_skimage(spatial_dims):
    rng = np.random.default_rng(2)
    shape = (24, 20) if spatial_dims == 2 else (12, 11, 9)
    x = rng.random((3, *shape)).astype(np.float32)
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    ours = ssim_pairs(torch.from_numpy(x), torch.from_numpy(y), window=7).numpy()
    ref = [structural_similarity(x[i], y[i], data_range=1.0, win_size=7) for i in range(3)]
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_ssim_shortlist_finds_brute_force_nearest_neighbour():
    """The SSIM of the NCC shortlist equals brute-force SSIM over all training items."""
    train = _anatomy(12, 3)
    rng = np.random.default_rng(3)
    new = _anatomy(10, 1, seed=99)
    copies = np.stack([train[0], np.clip(train[4] + rng.normal(0, 0.03, train[4].shape), 0, 1), train[7][:, ::-1],
                       ndimage.shift(train[10], (2, -2), order=1, mode="nearest"),
                       ndimage.rotate(train[20], 4, reshape=False, order=1, mode="nearest"), 0.8 * train[30] + 0.1])
    q = torch.from_numpy(np.concatenate([new, copies]).astype(np.float32))
    r = torch.from_numpy(train)
    gq, gr = to_working_grid(q, 32), to_working_grid(r, 32)
    ncc = ncc_search(gq, gr, k=5, max_shift=2, flip_axes=(1,))
    unshifted = ncc_search(gq, gr, k=5, max_shift=0, flip_axes=(1,))
    short = ssim_search(q, r, torch.cat([ncc.indices, unshifted.indices], dim=1), flip_axes=(1,))
    brute = ssim_search(q, r, torch.arange(len(r)).expand(len(q), len(r)), flip_axes=(1,))
    np.testing.assert_allclose(short.values[-6:].numpy(), brute.values[-6:].numpy(), atol=1e-6)  # every copy exact
    assert (short.indices[-6:, 0] == torch.tensor([0, 4, 7, 10, 20, 30])).all()
    # genuinely new samples: a shortlist can only under-estimate, and only slightly
    deficit = (brute.values - short.values)[:, 0]
    assert (deficit >= -1e-6).all()
    assert deficit[:10].mean() < 0.03, deficit


def test_ncc_search_shape_mismatch_raises():
    with pytest.raises(UserError, match="differ in shape"):
        ncc_search(torch.rand(2, 16, 16), torch.rand(2, 16, 12))


def test_ncc_search_grid_too_small_raises():
    with pytest.raises(UserError, match="too small"):
        ncc_search(torch.rand(2, 4, 4), torch.rand(2, 4, 4), max_shift=2)


def test_cosine_search_feature_mismatch_raises():
    with pytest.raises(UserError, match="feature sizes differ"):
        cosine_search(torch.rand(2, 3), torch.rand(2, 4))


def test_ssim_search_shape_mismatch_raises():
    with pytest.raises(UserError, match="differ in shape"):
        ssim_search(torch.rand(2, 16, 16), torch.rand(3, 12, 16), torch.zeros(2, 1, dtype=torch.long))
