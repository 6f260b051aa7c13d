"""Release of synthetic datasets and models: filtering, formats, geometry, cards, checksums."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import fake_audit, make_synthetic_set
from uterosynth.cli import main
from uterosynth.core.artifacts import sha256_file
from uterosynth.core.errors import DataError
from uterosynth.release.checksums import verify_sha256sums
from uterosynth.release.dicom import reformat, sitk_affine, write_dicom_series


def _run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    return 0 if info.value.code is None else info.value.code


def _oblique_affine() -> np.ndarray:
    th = 0.3
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.array([[0, 0, 4.0], [0, -0.8, 0], [-0.7, 0, 0]])
    affine[:3, 3] = [12.0, -30.0, 45.0]
    return affine


def test_release_drops_flagged_and_writes_everything(tmp_path):
    rng = np.random.default_rng(0)
    conds = [{"orientation": "AVAF" if i % 2 else "RVRF"} for i in range(5)]
    syn = make_synthetic_set(tmp_path / "syn", rng.random((5, 16, 20)).astype(np.float32), conds)
    audit = fake_audit(tmp_path / "audit", syn, [1, 3], 5)
    out = tmp_path / "rel"
    assert _run(["release", "--synthetic", str(syn), "--audit", str(audit), "--out", str(out), "--licence", "CC-BY-NC-4.0"]) == 0
    assert sorted(p.name for p in (out / "nifti").iterdir()) == [f"synthetic_00000{i}.nii.gz" for i in (0, 2, 4)]
    assert len(list((out / "png").iterdir())) == 3
    rows = list(csv.DictReader((out / "metadata.csv").read_text().splitlines()))
    assert [int(r["index"]) for r in rows] == [0, 2, 4] and rows[0]["condition_orientation"] == "RVRF"
    assert rows[0]["similarity_image_ncc"] == "0.5"
    img = nib.load(str(out / "nifti" / "synthetic_000000.nii.gz"))
    np.testing.assert_allclose(img.affine, nib.load(str(syn / "items" / "000000.nii.gz")).affine)
    sheet = (out / "DATASHEET.md").read_text()
    assert "CC-BY-NC-4.0" in sheet and "| orientation | RVRF | 3 |" in sheet and "2 dropped" in sheet
    assert "NO MEMORISATION AUDIT" not in sheet and "0.99 quantile" in sheet
    assert "200 items of 50 subjects" in sheet and "(40 held-out, 160 training, against the other subjects)" in sheet
    assert "flagged near-copy among the samples: 2 of 40" in sheet
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == len([p for p in out.rglob("*") if p.is_file()]) - 1
    (out / "metadata.csv").write_text("tampered")
    assert verify_sha256sums(out) == ["metadata.csv"]


def test_release_refuses_without_audit(tmp_path):
    syn = make_synthetic_set(tmp_path / "syn", np.zeros((1, 8, 8), np.float32))
    assert _run(["release", "--synthetic", str(syn), "--out", str(tmp_path / "rel")]) == 2
    assert not (tmp_path / "rel").exists()


def test_release_no_audit_is_written_loudly(tmp_path):
    syn = make_synthetic_set(tmp_path / "syn", np.zeros((2, 8, 8), np.float32))
    assert _run(["release", "--synthetic", str(syn), "--no-audit", "--out", str(tmp_path / "rel")]) == 0
    sheet = (tmp_path / "rel" / "DATASHEET.md").read_text()
    assert sheet.count("NO MEMORISATION AUDIT") >= 2  # at the top and in the audit section


def test_release_refuses_audit_and_no_audit_together(tmp_path):
    syn = make_synthetic_set(tmp_path / "syn", np.zeros((1, 8, 8), np.float32))
    audit = fake_audit(tmp_path / "audit", syn, [], 1)
    assert _run(["release", "--synthetic", str(syn), "--audit", str(audit), "--no-audit", "--out", str(tmp_path / "r")]) == 2


def test_release_refuses_audit_of_another_set(tmp_path):
    syn = make_synthetic_set(tmp_path / "syn", np.zeros((2, 8, 8), np.float32))
    other = make_synthetic_set(tmp_path / "other", np.ones((2, 8, 8), np.float32), [{"a": "x"}, {"a": "y"}])
    audit = fake_audit(tmp_path / "audit", other, [], 2)
    assert _run(["release", "--synthetic", str(syn), "--audit", str(audit), "--out", str(tmp_path / "rel")]) == 2


def test_release_refuses_unusable_affine(tmp_path):
    syn = make_synthetic_set(tmp_path / "syn", np.zeros((1, 8, 8), np.float32))
    bad = nib.Nifti1Image(np.zeros((8, 8, 1), np.float32), np.eye(4))
    bad.set_qform(None, code=0)
    bad.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)  # singular: no usable geometry
    nib.save(bad, str(syn / "items" / "000000.nii.gz"))
    from uterosynth.release.release import release_dataset

    with pytest.raises(DataError, match="affine"):
        release_dataset(syn, None, tmp_path / "rel", no_audit=True)


def _dicom_matches_nifti(series_dir: Path, array: np.ndarray, affine: np.ndarray) -> None:
    """Every voxel read back by SimpleITK sits where the NIfTI affine puts the same value."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series_dir)))
    image = reader.Execute()
    got = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # (x, y, z)
    back = sitk_affine(image)
    stored = np.round(array * 4095).astype(int)
    for idx in np.ndindex(*got.shape):
        (i, j, k), = np.argwhere(stored == got[idx])
        np.testing.assert_allclose(back @ np.array([*idx, 1.0]), affine @ np.array([i, j, k, 1.0]), atol=1e-3)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_dicom_geometry_matches_nifti_affine(spatial_dims, tmp_path):
    shape = (6, 5) if spatial_dims == 2 else (6, 5, 4)
    array = (np.arange(np.prod(shape)).reshape(shape) + 1) / (np.prod(shape) + 1)
    affine = _oblique_affine()
    orientations = ["sagittal"] if spatial_dims == 2 else ["sagittal", "axial", "coronal"]
    for o in orientations:
        arr, aff = (array, affine) if spatial_dims == 2 else reformat(array, affine, o)
        files = write_dicom_series(arr, aff, tmp_path / o, series_description=f"{o} T2W")
        _dicom_matches_nifti(tmp_path / o, arr if arr.ndim == 3 else arr[:, :, None], aff)
        ds = pydicom.dcmread(str(files[0]))
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] and ds.ConversionType == "SYN"
        assert "SYNTHETIC" in ds.SeriesDescription and ds.Modality == "MR"
        assert str(ds.PatientName) == "" and ds.PatientID == "" and ds.PatientIdentityRemoved == "YES"
        uids = {pydicom.dcmread(str(f)).SOPInstanceUID for f in files}
        assert len(uids) == len(files)


def test_reformat_keeps_world_positions():
    array = np.random.default_rng(0).random((6, 5, 4))
    affine = _oblique_affine()
    for o in ("axial", "coronal"):
        arr, aff = reformat(array, affine, o)
        for idx in [(0, 0, 0), (1, 2, 3), (4, 3, 2)]:
            (i, j, k), = np.argwhere(array == arr[idx])
            np.testing.assert_allclose(aff @ np.array([*idx, 1.0]), affine @ np.array([i, j, k, 1.0]))


@pytest.mark.slow
def test_release_3d_with_dicom_and_reformats(tmp_path):
    rng = np.random.default_rng(1)
    syn = make_synthetic_set(tmp_path / "syn", rng.random((2, 10, 9, 5)).astype(np.float32), dims=3)
    assert _run(["release", "--synthetic", str(syn), "--no-audit", "--dicom", "--out", str(tmp_path / "rel")]) == 0
    rel = tmp_path / "rel"
    for o in ("axial", "coronal"):
        img = nib.load(str(rel / "nifti" / f"synthetic_000000_{o}.nii.gz"))
        arr, aff = reformat(np.asarray(nib.load(str(syn / "items" / "000000.nii.gz")).dataobj), nib.load(
            str(syn / "items" / "000000.nii.gz")).affine, o)
        np.testing.assert_allclose(img.affine, aff, atol=1e-5)
        np.testing.assert_allclose(np.asarray(img.dataobj), arr)
    series = sorted(p.name for p in (rel / "dicom" / "synthetic_000000").iterdir())
    assert series == ["axial", "coronal", "sagittal"]
    studies = {pydicom.dcmread(str(next((rel / "dicom" / "synthetic_000000" / s).iterdir()))).StudyInstanceUID for s in series}
    assert len(studies) == 1
    assert len(list((rel / "dicom" / "synthetic_000000" / "sagittal").iterdir())) == 5
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=rel).returncode == 0


def test_release_model_writes_card_and_checksums(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "model.json").write_text(json.dumps({"kind": "ldm", "spatial_dims": 2, "network": {"channels": [8]}}))
    (model / "train_state.pt").write_bytes(b"optimiser")
    syn = make_synthetic_set(tmp_path / "syn", np.zeros((2, 8, 8), np.float32))
    audit = fake_audit(tmp_path / "audit", syn, [1], 2)
    out = tmp_path / "rel"
    assert _run(["release-model", "--model", str(model), "--audit", str(audit), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "SHA256SUMS", "model.json", "model.safetensors"]
    card = (out / "MODEL_CARD.md").read_text()
    assert sha256_file(model / "model.safetensors") in card and "flagged as near-copies: 1" in card
    assert "| image | ncc | 0.9 | 1 |" in card and "`ldm`" in card
    assert verify_sha256sums(out) == []
    assert _run(["release-model", "--model", str(model), "--out", str(tmp_path / "r2")]) == 2


def test_release_model_needs_model_json(tmp_path):
    (tmp_path / "m").mkdir()
    assert _run(["release-model", "--model", str(tmp_path / "m"), "--no-audit", "--out", str(tmp_path / "r")]) == 2


def test_a_set_decoded_by_a_fast_decoder_is_refused_unless_forced(tmp_path):
    from uterosynth.release.release import release_dataset

    syn = make_synthetic_set(tmp_path / "syn", np.random.default_rng(0).random((3, 8, 8)))
    info = json.loads((syn / "synthetic.json").read_text())
    info["decoder"] = {"kind": "fast", "path": "runs/fast_decoder/checkpoint", "sha256": "ab" * 32, "psnr_to_full_db": 31.4}
    (syn / "synthetic.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="fast decoder"):
        release_dataset(syn, None, tmp_path / "rel", no_audit=True)
    assert not (tmp_path / "rel").exists()
    release_dataset(syn, None, tmp_path / "rel", no_audit=True, force=True)
    sheet = (tmp_path / "rel" / "DATASHEET.md").read_text()
    assert "WARNING: DECODED BY A FAST DECODER" in sheet and "PSNR 31.4 dB" in sheet
