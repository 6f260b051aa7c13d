from pathlib import Path

import numpy as np
import pytest
from umd_fixtures import make_umd, native_affine, phantom_volume, save_nifti, write_dicom_series

from uterosynth.core.errors import DataError
from uterosynth.data.io import read_scan
from uterosynth.data.sources import (
    discover,
    discover_folder,
    discover_umd,
    find_label_table,
    read_label_table,
)


def test_umd_quirks(tmp_path: Path):
    root = make_umd(tmp_path / "raw", n=5, dicom_case=True)
    records = {r.subject: r for r in discover_umd(root)}
    assert sorted(records) == [f"UMD_221129_{i:03d}" for i in range(1, 6)]  # no __MACOSX subject
    assert records["UMD_221129_002"].label.name.endswith("_seq.nii.gz")  # *_seq labels accepted
    typo = records["UMD_221129_004"]  # file names say 014: paired by folder
    assert typo.image.name == "UMD_221129_014_t2.nii.gz" and typo.label.name == "UMD_221129_014_seg.nii.gz"
    assert records["UMD_221129_001"].image.name.endswith("_t2.nii.gz")  # NIfTI preferred over raw .dcm
    assert not any(r.image.name.startswith("._") for r in records.values())
    assert all(not r.problem for r in records.values())
    fake = records["UMD_221129_003"]  # .gz files that are not compressed
    assert fake.image.read_bytes()[:2] != b"\x1f\x8b"
    image, label = read_scan(fake.image), read_scan(fake.label, label=True)
    assert image.shape == label.shape and set(np.unique(label.array)) <= {0, 1, 2, 3, 4}
    assert records["UMD_221129_001"].source_path == "UMD/UMD_221129_001/UMD_221129_001_t2.nii.gz"


def test_umd_accepts_umd_folder_itself(tmp_path: Path):
    root = make_umd(tmp_path / "raw", n=2, quirks=False)
    assert [r.subject for r in discover_umd(root / "UMD")] == ["UMD_221129_001", "UMD_221129_002"]


def test_umd_dicom_only_case(tmp_path: Path):
    image, _ = phantom_volume()
    write_dicom_series(tmp_path / "UMD" / "UMD_230101_001", image[:, :, :6])
    (record,) = discover("umd", tmp_path)
    assert record.image.is_dir() and record.label is None and not record.problem


def test_umd_case_without_image_is_a_problem(tmp_path: Path):
    (tmp_path / "UMD" / "UMD_230101_009").mkdir(parents=True)
    (record,) = discover_umd(tmp_path)
    assert "no image found" in record.problem


def test_umd_error_no_cases(tmp_path: Path):
    with pytest.raises(DataError, match="no UMD case folders"):
        discover_umd(tmp_path)


def test_discover_error_missing_input(tmp_path: Path):
    with pytest.raises(DataError, match="input folder not found"):
        discover("folder", tmp_path / "nope")


def test_folder_adapter_rules(tmp_path: Path):
    image, label = phantom_volume()
    affine = native_affine()
    save_nifti(tmp_path / "alice.nii.gz", image, affine)
    save_nifti(tmp_path / "alice_seg.nii.gz", label, affine)
    save_nifti(tmp_path / "bob.nii", image, affine)  # no label
    save_nifti(tmp_path / "carol" / "t2.nii.gz", image, affine)
    save_nifti(tmp_path / "carol" / "seg.nii.gz", label, affine)
    write_dicom_series(tmp_path / "dave" / "series1", image[:, :, :4])
    (tmp_path / "._alice.nii.gz").write_bytes(b"junk")
    (tmp_path / "__MACOSX").mkdir()
    records = {r.subject: r for r in discover_folder(tmp_path)}
    assert sorted(records) == ["alice", "bob", "carol", "dave"]
    assert records["alice"].label.name == "alice_seg.nii.gz"
    assert records["bob"].label is None
    assert records["carol"].image.name == "t2.nii.gz" and records["carol"].label.name == "seg.nii.gz"
    assert records["dave"].image == tmp_path / "dave" / "series1"


def test_folder_error_duplicate_subject(tmp_path: Path):
    image, _ = phantom_volume()
    save_nifti(tmp_path / "eve.nii.gz", image, native_affine())
    save_nifti(tmp_path / "eve" / "t2.nii.gz", image, native_affine())
    with pytest.raises(DataError, match="subject 'eve' appears twice"):
        discover_folder(tmp_path)


def test_folder_error_empty(tmp_path: Path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="no scans found"):
        discover_folder(tmp_path)


def test_label_table(tmp_path: Path):
    path = tmp_path / "labels.csv"
    path.write_text("subject;orientation;field_strength\nS1;AVAF;3T\nS2;RVRF;1.5T\n")
    table = read_label_table(path)
    assert table.columns == ["orientation", "field_strength"]
    assert table.attributes_for("S2", {"orientation": ["AVAF", "RVRF"]}) == {"orientation": "RVRF", "field_strength": "1.5T"}
    assert table.attributes_for("S9", {}) is None
    assert find_label_table(tmp_path) == path


def test_label_table_error_missing_subject_column(tmp_path: Path):
    path = tmp_path / "labels.csv"
    path.write_text("case,orientation\nS1,AVAF\n")
    with pytest.raises(DataError, match=r"labels\.csv: labels table has no 'subject' column \(found: case, orientation\)"):
        read_label_table(path)


def test_label_table_error_unknown_value(tmp_path: Path):
    path = tmp_path / "labels.csv"
    path.write_text("subject,orientation\nS1,SIDEWAYS\n")
    table = read_label_table(path)
    with pytest.raises(DataError, match="subject 'S1' has unknown orientation 'SIDEWAYS'"):
        table.attributes_for("S1", {"orientation": ["AVAF", "AVRF", "RVAF", "RVRF"]})


def test_label_table_error_declared_column_missing(tmp_path: Path):
    path = tmp_path / "labels.csv"
    path.write_text("subject,version\nS1,AV\n")
    with pytest.raises(DataError, match="lacks attribute column"):
        read_label_table(path, required=("orientation",))


def test_label_table_error_duplicate_subject(tmp_path: Path):
    path = tmp_path / "labels.csv"
    path.write_text("subject,orientation\nS1,AVAF\nS1,RVRF\n")
    with pytest.raises(DataError, match="line 3: subject 'S1' listed twice"):
        read_label_table(path)


def test_umd_layout_with_other_case_names(tmp_path: Path):
    image, label = phantom_volume()
    save_nifti(tmp_path / "UMD" / "PH_0001" / "PH_0001_t2.nii.gz", image, native_affine())
    save_nifti(tmp_path / "UMD" / "PH_0001" / "PH_0001_seg.nii.gz", label, native_affine())
    (tmp_path / "UMD" / "notes").mkdir()
    (record,) = discover_umd(tmp_path)
    assert record.subject == "PH_0001" and record.label.name == "PH_0001_seg.nii.gz"
