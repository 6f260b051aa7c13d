import json

import nibabel as nib
import numpy as np
import pytest

from uterosynth.core.errors import UserError
from uterosynth.data.synthetic import SyntheticSet, write_synthetic_set

AFFINE = np.diag([0.8, 0.8, 3.0, 1.0])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_write_then_read_synthetic_set(tmp_path, spatial_dims):
    shape = (6, 5) if spatial_dims == 2 else (6, 5, 3)
    arrays = np.random.default_rng(0).random((2, *shape)).astype(np.float32)
    out = write_synthetic_set(tmp_path / "syn", arrays, [{"orientation": "AV"}, {}], affine=AFFINE,
                              info={"kind": "prior", "seed": 4})
    info = json.loads((out / "synthetic.json").read_text())
    assert info["items"] == 2 and "count" not in info and info["dims"] == spatial_dims
    syn = SyntheticSet.load(out)
    assert len(syn) == syn.count == 2 and syn.dims == spatial_dims
    assert syn.records[0]["condition"] == {"orientation": "AV"} and syn.records[1]["seed"] == 4
    data, affine = syn.load_item(syn.records[0])
    np.testing.assert_array_equal(data, arrays[0])
    np.testing.assert_allclose(affine, AFFINE)
    header = nib.load(str(syn.item_path(syn.records[0]))).header
    assert int(header["qform_code"]) == 1 and int(header["sform_code"]) == 1
    assert (out / syn.records[1]["preview"]).is_file()


def test_reader_accepts_the_old_count_key(tmp_path):
    out = write_synthetic_set(tmp_path / "syn", np.zeros((3, 4, 4), np.float32), [{}] * 3)
    info = json.loads((out / "synthetic.json").read_text())
    info["count"] = info.pop("items")
    (out / "synthetic.json").write_text(json.dumps(info))
    assert SyntheticSet.load(out).count == 3


def test_writer_refuses_existing_folder(tmp_path):
    (tmp_path / "syn").mkdir()
    with pytest.raises(UserError, match="already exists"):
        write_synthetic_set(tmp_path / "syn", np.zeros((1, 4, 4), np.float32), [{}])
