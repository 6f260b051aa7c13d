import numpy as np
import pytest
from downstream_fixtures import bar_arrays, make_bar_dataset

from conftest import make_prepared_dataset, make_synthetic_set
from uterosynth.core.errors import DataError, UserError
from uterosynth.data.manifest import PreparedDataset
from uterosynth.downstream.config import DownstreamConfig
from uterosynth.downstream.data import load_synthetic, task_classes
from uterosynth.downstream.experiment import run_downstream

CLASSES = ["AVAF", "AVRF", "RVAF", "RVRF"]


def test_unknown_task_attribute(prepared_2d):
    with pytest.raises(UserError, match="task 'pathology' is not an attribute.*orientation, field_strength"):
        task_classes(PreparedDataset.load(prepared_2d), "pathology")


def test_any_categorical_attribute_is_a_task(prepared_2d):
    assert task_classes(PreparedDataset.load(prepared_2d), "field_strength") == ["1.5T", "3T"]


def test_task_with_a_single_value(tmp_path):
    root = make_prepared_dataset(tmp_path / "d", attributes={"orientation": ["AVAF"]})
    with pytest.raises(UserError, match="1 distinct value"):
        task_classes(PreparedDataset.load(root), "orientation")


def test_synthetic_set_without_labels_for_task(tmp_path):
    arrays, _ = bar_arrays(4, (16, 16))
    syn = make_synthetic_set(tmp_path / "s", arrays, [{"field_strength": "3T"}] * 4)
    with pytest.raises(DataError, match="item 0 of synthetic set 's' has no 'orientation'"):
        load_synthetic(syn, "s", "orientation", CLASSES, (16, 16), spatial_dims=2)


def test_synthetic_set_without_conditions(tmp_path):
    arrays, _ = bar_arrays(2, (16, 16))
    syn = make_synthetic_set(tmp_path / "s", arrays)
    with pytest.raises(DataError, match="has no 'orientation'"):
        load_synthetic(syn, "s", "orientation", CLASSES, (16, 16), spatial_dims=2)


def test_unknown_class_value_in_synthetic_conditions(tmp_path):
    arrays, cond = bar_arrays(4, (16, 16))
    cond[2] = {"orientation": "SIDEWAYS"}
    syn = make_synthetic_set(tmp_path / "s", arrays, cond)
    with pytest.raises(DataError, match="item 2 .* orientation='SIDEWAYS', which is not a class"):
        load_synthetic(syn, "s", "orientation", CLASSES, (16, 16), spatial_dims=2)


def test_synthetic_set_of_other_dimensionality(tmp_path):
    arrays, cond = bar_arrays(2, (16, 16))
    syn = make_synthetic_set(tmp_path / "s", np.repeat(arrays[..., None], 4, axis=-1), cond, dims=3)
    with pytest.raises(DataError, match="is 3D but the real data is 2D"):
        load_synthetic(syn, "s", "orientation", CLASSES, (16, 16), spatial_dims=2)


def test_budget_too_small_is_caught_before_training(tmp_path):
    real = make_bar_dataset(tmp_path / "real", shape=(16, 16), items_per_subject=1)  # 16 training subjects
    cfg = DownstreamConfig(budgets=[0.05, 1.0])
    with pytest.raises(UserError, match="budget 0.05 of the 16 subjects .* is 1 subject"):
        run_downstream(real, {}, cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
