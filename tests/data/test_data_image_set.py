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
