from pathlib import Path

import pytest
import torch

from conftest import make_prepared_dataset
from uterosynth.core.errors import DataError
from uterosynth.data.dataset import make_loader
from uterosynth.data.manifest import PreparedDataset, label_value, parse_dataset_ref


def test_parse_dataset_ref():
    assert parse_dataset_ref("a/b:test") == (Path("a/b"), "test")
    assert parse_dataset_ref("a/b") == (Path("a/b"), None)
    assert parse_dataset_ref("C:/data") == (Path("C:/data"), None)


def test_label_value_empty_is_none_zero_is_a_value():
    assert [label_value(v) for v in (None, "", "present", 0, 3.0)] == [None, None, "present", "0", "3.0"]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_load_and_loader(tmp_path: Path, spatial_dims: int):
    shape = (16, 16) if spatial_dims == 2 else (8, 8, 4)
    root = make_prepared_dataset(tmp_path / "d", dims=spatial_dims, shape=shape)
    data = PreparedDataset.load(f"{root}:train")
    assert {r["split"] for r in data.rows} == {"train"}
    assert data.dims == spatial_dims and data.attributes == ["orientation", "field_strength"]
    batch = next(iter(make_loader(data, batch_size=3, shuffle=False)))
    assert batch["image"].shape == (3, 1, *shape) and batch["image"].dtype == torch.float32
    assert batch["orientation"][0] == "AVAF"


def test_loader_shuffle_is_seeded(prepared_2d: Path):
    data = PreparedDataset.load(prepared_2d)
    order = [next(iter(make_loader(data, batch_size=4, seed=s)))["item_id"] for s in (1, 1, 2)]
    assert order[0] == order[1] and order[0] != order[2]


def test_errors(tmp_path: Path, prepared_2d: Path):
    with pytest.raises(DataError, match="folder not found"):
        PreparedDataset.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="dataset.json"):
        PreparedDataset.load(tmp_path / "empty")
    with pytest.raises(DataError, match="unknown split"):
        PreparedDataset.load(prepared_2d, split="holdout")
