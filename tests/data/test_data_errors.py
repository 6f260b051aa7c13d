"""One test per remaining error of the data pipeline (the CLI-level ones are in test_data_prepare)."""

from pathlib import Path

import numpy as np
import pytest
from umd_fixtures import make_umd, native_affine, phantom_volume, save_nifti

from uterosynth.core.errors import ConfigError, DataError
from uterosynth.data.config import PrepareConfig, PreprocessConfig
from uterosynth.data.io import Scan, read_scan
from uterosynth.data.prepare import prepare_dataset
from uterosynth.data.preprocess import preprocess_subject
from uterosynth.data.sources import discover, discover_folder, read_label_table


def test_missing_file(tmp_path: Path):
    with pytest.raises(DataError, match=r"gone\.nii\.gz: file not found"):
        read_scan(tmp_path / "gone.nii.gz")


def test_4d_image(tmp_path: Path):
    path = save_nifti(tmp_path / "4d.nii.gz", np.zeros((4, 4, 4, 3), np.float32), native_affine())
    with pytest.raises(DataError, match=r"4d\.nii\.gz: 4D image"):
        read_scan(path)


def test_singular_affine(tmp_path: Path):
    import nibabel as nib

    affine = native_affine()
    affine[:3, 2] = 0
    image, _ = phantom_volume()
    img = nib.Nifti1Image(image, native_affine())
    img.set_qform(None, code=0)
    img.set_sform(affine, code=2)  # a singular sform (only an sform can hold one)
    path = tmp_path / "sing.nii"
    path.write_bytes(img.to_bytes())
    with pytest.raises(DataError, match="invalid geometry"):
        read_scan(path)


def test_unreadable_mha(tmp_path: Path):
    (tmp_path / "bad.mha").write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_FLOAT\n")
    with pytest.raises(DataError, match=r"bad\.mha: cannot read image"):
        read_scan(tmp_path / "bad.mha")


def test_folder_without_dicom_series(tmp_path: Path):
    (tmp_path / "x.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(DataError, match="no DICOM series found"):
        read_scan(tmp_path)


def test_unknown_source(tmp_path: Path):
    with pytest.raises(DataError, match="unknown source 'pacs'"):
        discover("pacs", tmp_path)


def test_folder_with_two_images_is_a_problem(tmp_path: Path):
    image, _ = phantom_volume()
    save_nifti(tmp_path / "s1" / "a.nii.gz", image, native_affine())
    save_nifti(tmp_path / "s1" / "b.nii.gz", image, native_affine())
    (record,) = discover_folder(tmp_path)
    assert "several images" in record.problem


def test_folder_with_two_label_maps_is_a_problem(tmp_path: Path):
    image, label = phantom_volume()
    save_nifti(tmp_path / "s1" / "t2.nii.gz", image, native_affine())
    save_nifti(tmp_path / "s1" / "seg.nii.gz", label, native_affine())
    save_nifti(tmp_path / "s1" / "t2_mask.nii.gz", label, native_affine())
    (record,) = discover_folder(tmp_path)
    assert "several label maps" in record.problem


def test_labels_file_not_found(tmp_path: Path):
    with pytest.raises(DataError, match="labels file not found"):
        read_label_table(tmp_path / "nope.csv")


def test_labels_require_row(tmp_path: Path):
    raw = make_umd(tmp_path / "raw", n=2, quirks=False, labels_csv=False)
    (raw / "labels.csv").write_text("subject,orientation\nUMD_221129_001,AVAF\n")
    cfg = PrepareConfig.model_validate({"labels": {"require": True}})
    with pytest.raises(DataError, match="no row for subject 'UMD_221129_002'"):
        prepare_dataset("umd", raw, tmp_path / "out", cfg)
    assert not (tmp_path / "out").exists()


def test_no_usable_subject(tmp_path: Path):
    raw = make_umd(tmp_path / "raw", n=1, quirks=False)
    path = raw / "UMD" / "UMD_221129_001" / "UMD_221129_001_t2.nii.gz"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="no usable subject found"):
        prepare_dataset("umd", raw, tmp_path / "out", PrepareConfig(), skip_bad=True)


def test_no_slice_with_enough_uterus():
    image, label = phantom_volume()
    affine = native_affine()
    cfg = PreprocessConfig.model_validate(
        {"roi": {"mode": "uterus"}, "output": {"slices": "uterus", "min_uterus_voxels": 10**6, "shape": (16, 16)}}
    )
    with pytest.raises(DataError, match="no sagittal slice holds"):
        preprocess_subject(cfg, Scan(image, affine), Scan(label, affine))


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"output": {"dims": 3, "shape": [8, 8]}}, "output"),
        ({"roi": {"mode": "box"}}, "roi"),
        ({"normalize": {"percentiles": [99, 1]}}, "normalize"),
        ({"resample": {"spacing": [0.8, -1]}}, "resample"),
    ],
)
def test_config_rejects_bad_combinations(data, key):
    from uterosynth.core.config import validate_config

    with pytest.raises(ConfigError, match=key):
        validate_config(PreprocessConfig, data, source="prep.yaml")


def test_split_fractions_must_sum_to_one():
    from uterosynth.core.config import validate_config

    with pytest.raises(ConfigError, match="split"):
        validate_config(PrepareConfig, {"split": {"train": 0.5, "val": 0.1, "test": 0.1}}, source="p.yaml")
