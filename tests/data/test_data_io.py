from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from umd_fixtures import native_affine, phantom_volume, save_nifti, write_dicom_series

from uterosynth.core.errors import DataError
from uterosynth.core.imageio import write_nifti
from uterosynth.data.io import read_scan, reorient

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@pytest.mark.parametrize("variant", ["nii", "nii.gz", "fake.gz"])
def test_read_nifti_variants(tmp_path: Path, variant: str):
    image, _ = phantom_volume()
    affine = native_affine()
    name = "scan.nii" if variant == "nii" else "scan.nii.gz"
    path = save_nifti(tmp_path / name, image, affine, fake_gz=variant == "fake.gz")
    if variant == "fake.gz":
        assert path.read_bytes()[:2] != b"\x1f\x8b"  # really not compressed
    scan = read_scan(path)
    assert scan.array.dtype == np.float32 and scan.shape == image.shape
    np.testing.assert_allclose(scan.array, image)
    np.testing.assert_allclose(scan.affine, affine)
    assert scan.spacing == pytest.approx((4.0, 0.8, 0.8))


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_read_itk_formats_lps_to_ras(tmp_path: Path, suffix: str):
    import SimpleITK as sitk

    array = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)  # (X, Y, Z)
    img = sitk.GetImageFromArray(array.transpose(2, 1, 0))
    img.SetSpacing((0.5, 0.7, 3.0))
    img.SetOrigin((10.0, 20.0, 30.0))
    sitk.WriteImage(img, str(tmp_path / f"v{suffix}"))
    scan = read_scan(tmp_path / f"v{suffix}")
    np.testing.assert_array_equal(scan.array, array)
    # LPS (10, 20, 30) is RAS (-10, -20, 30); +x index goes left (RAS -x)
    np.testing.assert_allclose(scan.affine[:3, 3], [-10, -20, 30])
    np.testing.assert_allclose(scan.affine[:3, :3], np.diag([-0.5, -0.7, 3.0]))


@pytest.mark.parametrize("handed", ["right", "left"])
def test_dicom_series_geometry(tmp_path: Path, handed: str):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 1000, size=(12, 10, 5)).astype(np.float32)  # (cols, rows, slices)
    # left-handed: slices stacked against the row x column normal (the reader re-sorts them)
    direction = (0, 0, -1, 1, 0, 0, 0, -1, 0) if handed == "right" else (0, 0, 1, 1, 0, 0, 0, -1, 0)
    spacing, origin = (0.8, 0.8, 4.0), np.array([10.0, -30.0, 40.0])
    folder = write_dicom_series(tmp_path / "dcm", array, spacing=spacing, origin=tuple(origin), direction=direction)
    (folder / "._IM0000.dcm").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble junk is ignored
    scan = read_scan(folder)
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    for index in [(0, 0, 0), (11, 9, 4), (3, 7, 2), (5, 1, 3)]:
        lps = origin + d @ (np.asarray(spacing) * np.asarray(index))
        voxel = np.linalg.solve(scan.affine[:3, :3], LPS_TO_RAS @ lps - scan.affine[:3, 3])
        np.testing.assert_allclose(voxel, np.round(voxel), atol=1e-3)
        assert scan.array[tuple(int(v) for v in np.round(voxel))] == array[index]
    if handed == "right":
        np.testing.assert_array_equal(scan.array, array)
        assert scan.axcodes == ("P", "I", "R")  # sagittal: columns → posterior, rows → inferior
        canonical = reorient(scan)
        assert canonical.axcodes == ("I", "P", "R")
        np.testing.assert_array_equal(canonical.array[:, :, 0], array[:, :, 0].T)


def test_reorient_keeps_world_coordinates():
    rng = np.random.default_rng(1)
    affine = np.array([[0, 0, -4.0, 30], [0.7, 0, 0, -10], [0, -0.7, 0, 5], [0, 0, 0, 1]])
    from uterosynth.data.io import Scan

    scan = Scan(array=rng.random((6, 7, 8)).astype(np.float32), affine=affine)
    out = reorient(scan)
    assert out.axcodes == ("I", "P", "R") and out.shape == (7, 6, 8)
    for _ in range(5):
        idx = tuple(int(rng.integers(0, n)) for n in out.shape)
        world = out.world(idx)
        src = np.linalg.solve(affine[:3, :3], world - affine[:3, 3])
        src_idx = tuple(int(round(v)) for v in src)
        np.testing.assert_allclose(src, src_idx, atol=1e-9)
        assert out.array[idx] == scan.array[src_idx]


def test_write_nifti_roundtrip(tmp_path: Path):
    affine = native_affine()
    array = np.random.default_rng(0).random((4, 5, 1)).astype(np.float32)
    write_nifti(tmp_path / "x.nii.gz", array, affine)
    img = nib.load(str(tmp_path / "x.nii.gz"))
    np.testing.assert_allclose(img.affine, affine)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(np.asarray(img.dataobj), array)


def test_error_empty_nifti(tmp_path: Path):
    (tmp_path / "e.nii.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"e\.nii\.gz: empty file"):
        read_scan(tmp_path / "e.nii.gz")


@pytest.mark.parametrize("compressed", [True, False])
def test_error_truncated_nifti(tmp_path: Path, compressed: bool):
    image, _ = phantom_volume()
    path = save_nifti(tmp_path / ("t.nii.gz" if compressed else "t.nii"), image, native_affine())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"t\.nii(\.gz)?: truncated or corrupt"):
        read_scan(path)


@pytest.mark.parametrize("name", ["notes.nii.gz", "notes.txt"])
def test_error_not_an_image(tmp_path: Path, name: str):
    (tmp_path / name).write_text("this is not an image " * 40)
    with pytest.raises(DataError, match=rf"{name.replace('.', '[.]')}: not (a NIfTI image|an image file)"):
        read_scan(tmp_path / name)


def test_error_nan(tmp_path: Path):
    image, _ = phantom_volume()
    image[2, 3, 4] = np.nan
    image[0, 0, 0] = np.inf
    path = save_nifti(tmp_path / "nan.nii.gz", image, native_affine())
    with pytest.raises(DataError, match=r"nan\.nii\.gz: image contains 2 NaN/Inf"):
        read_scan(path)


def test_error_2d_image(tmp_path: Path):
    path = save_nifti(tmp_path / "flat.nii.gz", np.zeros((16, 16, 1), np.float32), native_affine())
    with pytest.raises(DataError, match=r"flat\.nii\.gz: image is 2D \(shape 16x16x1\)"):
        read_scan(path)
    assert read_scan(path, require_3d=False).shape == (16, 16, 1)
