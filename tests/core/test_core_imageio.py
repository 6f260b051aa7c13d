import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from uterosynth.core.imageio import (
    as_volume,
    middle_slice,
    png_data_uri,
    preview_plane,
    squeeze_2d,
    to_uint8,
    write_nifti,
    write_png,
)

AFFINE = np.array([[0.0, 0.0, 1.5, -10.0], [-0.8, 0.0, 0.0, 20.0], [0.0, -0.8, 0.0, 5.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.mark.parametrize("dtype", [np.float64, np.int16, np.uint8])
def test_write_nifti_roundtrip_geometry_and_codes(tmp_path, dtype):
    array = (np.arange(4 * 5 * 3).reshape(4, 5, 3) % 7).astype(dtype)
    write_nifti(tmp_path / "x.nii.gz", array, AFFINE)
    img = nib.load(str(tmp_path / "x.nii.gz"))
    np.testing.assert_allclose(img.affine, AFFINE, atol=1e-5)
    np.testing.assert_allclose(img.header.get_qform(), AFFINE, atol=1e-5)
    np.testing.assert_allclose(img.header.get_sform(), AFFINE, atol=1e-5)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    expected = np.float32 if dtype == np.float64 else dtype
    assert img.get_data_dtype() == expected
    np.testing.assert_array_equal(np.asarray(img.dataobj), array.astype(expected))


def test_write_nifti_header_options(tmp_path):
    write_nifti(tmp_path / "x.nii", np.zeros((2, 3, 4), np.int16), AFFINE, dtype=np.float32, xyzt_units=("mm", "sec"),
                dim_info=(0, 1, 2), description="synthetic")
    header = nib.load(str(tmp_path / "x.nii")).header
    assert header.get_data_dtype() == np.float32
    assert header.get_xyzt_units() == ("mm", "sec")
    assert header.get_dim_info() == (0, 1, 2)
    assert header["descrip"].item() == b"synthetic"


def test_middle_slice_numpy_and_torch():
    x = np.arange(2 * 3 * 5).reshape(2, 3, 5)
    np.testing.assert_array_equal(middle_slice(x), x[:, :, 2])
    np.testing.assert_array_equal(middle_slice(x, 1), x[:, 1, :])
    np.testing.assert_array_equal(middle_slice(x, 0), x[1])
    t = torch.arange(24).reshape(1, 2, 3, 4)
    assert torch.equal(middle_slice(t), t[..., 2])


def test_as_volume_and_squeeze_2d_are_inverse():
    plane = np.ones((4, 5))
    assert as_volume(plane).shape == (4, 5, 1) and squeeze_2d(as_volume(plane)).shape == (4, 5)
    volume = np.ones((4, 5, 3))
    assert as_volume(volume) is volume and squeeze_2d(volume) is volume
    np.testing.assert_array_equal(preview_plane(np.arange(12).reshape(2, 2, 3)), [[1, 4], [7, 10]])


def test_write_png_values(tmp_path):
    image = np.array([[-0.5, 0.0, 0.5], [0.999, 1.0, 3.0]])
    write_png(tmp_path / "x.png", image)
    back = np.asarray(Image.open(tmp_path / "x.png"))
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, [[0, 0, 128], [255, 255, 255]])
    np.testing.assert_array_equal(back, to_uint8(image))


def test_png_data_uri_prefix():
    assert png_data_uri(b"\x89PNG").startswith("data:image/png;base64,iVBORw")
