import pytest
import torch

from uterosynth.core.errors import DataError
from uterosynth.data.image_set import ImageSet, stack_arrays


def _set(n=6):
    return ImageSet(torch.arange(n * 4, dtype=torch.float32).reshape(n, 1, 2, 2), ids=[f"i{k}" for k in range(n)],
                    subjects=[f"S{k // 2}" for k in range(n)], conditions=[{"c": str(k % 2)} for k in range(n)],
                    labels=torch.arange(n) % 2, name="reference")


def test_defaults_and_views():
    s = ImageSet(torch.zeros(3, 1, 4, 5), name="synthetic", kind="synthetic")
    assert s.ids == ("0", "1", "2") and s.subjects == ("", "", "") and s.origins == ("synthetic",) * 3
    assert s.planes().shape == (3, 4, 5) and s.spatial_dims == 2


def test_subset_keeps_items_together():
    s = _set().subset([4, 1])
    assert s.ids == ("i4", "i1") and s.subjects == ("S2", "S0") and s.labels.tolist() == [0, 1]
    assert s.attribute("c") == ["0", "1"] and s.images[0, 0, 0, 0] == 16


def test_subsample_is_seeded_and_ordered():
    a, b = _set().subsample(3, 7), _set().subsample(3, 7)
    assert a.ids == b.ids and list(a.ids) == sorted(a.ids) and a.info["subsampled_from"] == 6
    assert _set().subsample(10, 0).ids == _set().ids


def test_concat_and_length_checks():
    both = ImageSet.concat([_set(2), _set(3)])
    assert len(both) == 5 and both.labels.tolist() == [0, 1, 0, 1, 0]
    with pytest.raises(ValueError, match="subjects"):
        ImageSet(torch.zeros(2, 1, 2, 2), subjects=["a"])


def test_stack_arrays_refuses_mixed_shapes_and_nan():
    import numpy as np

    with pytest.raises(DataError, match="different shapes"):
        stack_arrays([np.zeros((2, 2)), np.zeros((3, 2))], "x")
    with pytest.raises(DataError, match="NaN"):
        stack_arrays([np.full((2, 2), np.nan)], "x")
    assert stack_arrays([np.full((2, 2), 2.0)], "x").max() == 1.0
    assert stack_arrays([np.full((2, 2), 2.0)], "x", clip=False).max() == 2.0


def test_central_slices_are_the_2d_central_rule_and_keep_each_volume_one_unit():
    depth = 8
    volumes = torch.arange(depth, dtype=torch.float32).expand(2, 1, 4, 4, depth).clone()  # voxel value = slice index
    volumes[1] += 100
    real = ImageSet(volumes, ids=("a", "b"), subjects=("S1", "S2"), conditions=({"o": "AV"}, {"o": "RV"}))
    sliced = real.central_slices(3)
    assert sliced.images.shape == (6, 1, 4, 4) and sliced.spatial_dims == 2
    # the 2D preparation's 'central' rule: D // 2 - k // 2 onwards
    assert [float(x) for x in sliced.images[:, 0, 0, 0]] == [3.0, 4.0, 5.0, 103.0, 104.0, 105.0]
    assert sliced.ids == ("a#3", "a#4", "a#5", "b#3", "b#4", "b#5")
    assert sliced.attribute("o") == ["AV"] * 3 + ["RV"] * 3 and sliced.info["volume_slices"]["slices"] == [3, 4, 5]
    assert sliced.units() == ("S1",) * 3 + ("S2",) * 3  # real slices: their subject
    synthetic = ImageSet(volumes, kind="synthetic", name="synthetic").central_slices(2).subsample(3, seed=0)
    assert set(synthetic.units()) <= {"volume 0", "volume 1"}  # synthetic slices: one unit per volume
    assert ImageSet(volumes[:, :, :, :, :1], kind="synthetic").central_slices(1).images.shape == (2, 1, 4, 4)
    with pytest.raises(ValueError, match="9 central slices asked of volumes of 8 slices"):
        real.central_slices(9)
    with pytest.raises(ValueError, match="needs volumes"):
        sliced.central_slices(1)
    assert ImageSet(volumes[:, :, :, :, 0]).units() == ("", "")  # 2D items without subject: independent
