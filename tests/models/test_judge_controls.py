"""The judge's shortcut controls: blur keeps only the layout, bands flip a judge that reads them."""

from __future__ import annotations

import numpy as np
import pytest

from uterosynth.core.imageio import blur_in_plane
from uterosynth.models.judge_controls import edge_bands, judge_controls, with_bands


def _images(n: int = 12, size: int = 32) -> tuple[np.ndarray, list[str]]:
    """Class "fine" carries a checkerboard in the centre, class "flat" a smooth blob of equal mean."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    checker = ((yy // 2 + xx // 2) % 2).astype(np.float32)
    images, labels = [], []
    for i in range(n):
        im = np.full((size, size), 0.5, np.float32) + rng.normal(0, 0.01, (size, size)).astype(np.float32)
        c = slice(size // 4, 3 * size // 4)
        im[c, c] = checker[c, c] if i % 2 == 0 else 0.5
        images.append(np.clip(im, 0, 1))
        labels.append("fine" if i % 2 == 0 else "flat")
    return np.stack(images), labels


def _texture_judge(images: np.ndarray) -> list[str]:
    """Reads high-frequency texture in the centre (the anatomy, in this toy)."""
    c = slice(images.shape[1] // 4, 3 * images.shape[1] // 4)
    detail = np.abs(np.diff(images[:, c, c], axis=2)).mean((1, 2))
    return ["fine" if d > 0.2 else "flat" for d in detail]


def _band_judge(images: np.ndarray) -> list[str]:
    """Reads the top rows (a padding-band shortcut)."""
    return ["fine" if im[:3].mean() < 0.2 else "flat" for im in images]


def test_with_bands_fills_two_bands_with_each_items_minimum() -> None:
    images = np.random.default_rng(1).uniform(0.2, 1.0, (3, 20, 10)).astype(np.float32)
    rows = with_bands(images, "rows", 0.2)
    assert np.array_equal(rows[:, :4], np.broadcast_to(images.min((1, 2))[:, None, None], (3, 4, 10)))
    assert np.array_equal(rows[:, -4:], rows[:, :4]) and np.array_equal(rows[:, 4:-4], images[:, 4:-4])
    cols = with_bands(images, "columns", 0.2)
    assert np.array_equal(cols[:, :, 2:-2], images[:, :, 2:-2]) and (cols[:, :, :2] == cols[:, :1, :1]).all()
    assert np.array_equal(images, np.random.default_rng(1).uniform(0.2, 1.0, (3, 20, 10)).astype(np.float32))


def test_occlusion_bands_take_each_items_mean() -> None:
    images = np.random.default_rng(2).uniform(0.2, 1.0, (2, 10, 10)).astype(np.float32)
    out = with_bands(images, "rows", 0.2, fill="mean")
    assert np.allclose(out[:, 0], images.mean((1, 2))[:, None]) and np.array_equal(out[:, 2:-2], images[:, 2:-2])


@pytest.mark.parametrize(("side", "fraction", "fill"),
                         [("diagonal", 0.2, "min"), ("rows", 0.5, "min"), ("rows", 0.0, "min"), ("rows", 0.2, "max")])
def test_with_bands_rejects_bad_arguments(side: str, fraction: float, fill: str) -> None:
    with pytest.raises(ValueError, match="side|fraction|fill"):
        with_bands(np.zeros((1, 8, 8), np.float32), side, fraction, fill=fill)


def test_blur_removes_the_texture_a_judge_of_detail_needs() -> None:
    images, labels = _images()
    out = judge_controls(_texture_judge, images, labels, blur_sigmas=(0.5, 3.0))
    assert out["correct"].all()
    assert out["blur"][3.0].mean() == pytest.approx(0.5)  # every "fine" item now reads as "flat"
    assert blur_in_plane(images, 3.0).shape == images.shape and blur_in_plane(images, 3.0).dtype == images.dtype


def test_bands_flip_a_judge_that_reads_them_and_not_one_that_reads_the_centre() -> None:
    images, labels = _images()
    anatomy = judge_controls(_texture_judge, images, labels)
    assert not anatomy["band_flips"]["rows"].any() and not anatomy["band_flips"]["columns"].any()
    shortcut = judge_controls(_band_judge, images, labels)
    # the checkerboard items' minimum is 0: their bands are dark, and every one of them flips
    assert shortcut["band_flips"]["rows"].mean() == pytest.approx(0.5)
    assert not shortcut["occlusion_flips"]["rows"].any()  # the same area at the mean changes nothing
    assert not shortcut["band_flips"]["columns"].any()


def test_controls_take_2d_items_only() -> None:
    with pytest.raises(ValueError, match="2D items"):
        judge_controls(_texture_judge, np.zeros((2, 8, 8, 8), np.float32), ["a", "b"])


def test_edge_bands_finds_a_padding_band_at_any_edge_and_not_a_dark_image_without_one() -> None:
    rng = np.random.default_rng(3)
    images = rng.uniform(0.2, 1.0, (6, 24, 20)).astype(np.float32)
    images[1, :6] = images[1].min()                         # top band
    images[2, :, -7:] = images[2].min() + 0.02              # right band, within the tolerance
    images[3, -5:] = images[3].min()                        # too narrow a band
    images[4, :6, :-1] = images[4].min()                    # one pixel of the band breaks it
    images[5, :6] = images[5].min() + 0.05                  # too far from the minimum
    assert edge_bands(images).tolist() == [False, True, True, False, False, False]
    assert edge_bands(images, width=5).tolist() == [False, True, True, True, False, False]
    assert edge_bands(np.zeros((2, 8, 8), np.float32)).all()  # a constant item is all band
    with pytest.raises(ValueError, match="2D items"):
        edge_bands(np.zeros((2, 4, 8, 8), np.float32))
