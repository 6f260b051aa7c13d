"""De-identification: the PS3.15 scrub, and no identifier in any file the privacy/release commands write."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from conftest import assert_no_identifiers, make_anatomy_dataset, make_anatomy_subject, make_synthetic_set
from uterosynth.cli import main
from uterosynth.data.deid import REMOVE_ATTRIBUTES, find_identifiers, scrub_dataset

IDENTIFIERS = {
    "PatientName": "DOEXAMPLE^JANEQUINN",
    "PatientID": "PID-98765-Q",
    "PatientBirthDate": "19650412",
    "InstitutionName": "St Examplewick Hospital",
    "AccessionNumber": "ACC-55501-Z",
    "StudyDate": "20210304",
    "SeriesDate": "20210305",
    "AcquisitionDate": "20210306",
    "ContentDate": "20210307",
    "ReferringPhysicianName": "SMITHSONQ^JOHNATHAN",
}
# every value, plus the name parts on their own
STRINGS = [*IDENTIFIERS.values(), "DOEXAMPLE", "JANEQUINN", "SMITHSONQ"]


def write_identified_series(folder: Path, volume: np.ndarray) -> Path:
    """A sagittal MR DICOM series ``(H, W, D)`` carrying identifiers in public and private tags."""
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.MagneticFieldStrength, ds.SeriesDescription = "MR", 3.0, "T2 SAG"
        for key, value in IDENTIFIERS.items():
            setattr(ds, key, value)
        ds.OtherPatientIDs = IDENTIFIERS["PatientID"]
        ds.add_new(0x00191010, "LO", IDENTIFIERS["PatientName"])  # private tag
        ds.ImagePositionPatient = [float(4.0 * k), 0.0, 0.0]
        ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], 4.0
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = volume.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = (volume[:, :, k] * 1000).astype(np.uint16).tobytes()
        ds.save_as(str(folder / f"IM{k:04d}.dcm"), enforce_file_format=True)
    return folder


def test_scrub_dataset_removes_identifiers_and_replaces_uids(tmp_path):
    series = write_identified_series(tmp_path / "raw", np.random.default_rng(0).random((8, 8, 2)))
    uid_map: dict[str, str] = {}
    first, second = (pydicom.dcmread(str(p)) for p in sorted(series.iterdir()))
    old_study = first.StudyInstanceUID
    seq_item = Dataset()
    seq_item.PatientName, seq_item.StudyDate = IDENTIFIERS["PatientName"], IDENTIFIERS["StudyDate"]
    first.ReferencedStudySequence = [seq_item]
    for ds in (first, second):
        scrub_dataset(ds, uid_map=uid_map)
    assert first.StudyInstanceUID == second.StudyInstanceUID != old_study
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.PatientName == "" and first.PatientID == "" and first.PatientIdentityRemoved == "YES"
    assert "InstitutionName" not in first and "SeriesDate" not in first and (0x0019, 0x1010) not in first
    assert first.MagneticFieldStrength == 3.0  # technical attributes stay
    (tmp_path / "scan").mkdir()
    first.save_as(str(tmp_path / "scan" / "out.dcm"))
    assert find_identifiers(tmp_path / "scan", STRINGS) == []
    assert "InstitutionName" in REMOVE_ATTRIBUTES and "AccessionNumber" not in REMOVE_ATTRIBUTES  # emptied instead


def test_find_identifiers_sees_inside_gzip(tmp_path):
    import gzip

    (tmp_path / "a.nii.gz").write_bytes(gzip.compress(b"header DOEXAMPLE^JANEQUINN"))
    hits = find_identifiers(tmp_path, ["doexample"])
    assert hits == [(str(tmp_path / "a.nii.gz"), "doexample")]


@pytest.mark.slow
def test_no_identifier_reaches_any_written_file(tmp_path):
    """A DICOM series with identifiers feeds the training data and the DICOM reference of the
    release; nothing that audit, release and release-model write may contain them."""
    volume = np.moveaxis(make_anatomy_subject(np.random.default_rng(7), (24, 24), 3), 0, -1)
    raw = write_identified_series(tmp_path / "DOEXAMPLE_JANEQUINN_PID-98765-Q" / "T2_SAG", volume)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(raw)))
    from_dicom = sitk.GetArrayFromImage(reader.Execute()).astype(np.float32) / 1000.0  # (slices, rows, cols)

    # a prepared dataset whose first training items come from that series (as 'prepare' would),
    # with the identifying source path recorded in the manifest
    prep = make_anatomy_dataset(tmp_path / "prep", subjects={"train": 10, "val": 1, "test": 8}, slices_per_subject=3,
                                shape=(24, 24))
    import nibabel as nib

    rows = list(csv.DictReader((prep / "manifest.csv").read_text().splitlines()))
    for k in range(3):
        nib.save(nib.Nifti1Image(from_dicom[k][..., None], np.diag([0.8, 0.8, 4.0, 1.0])), str(prep / rows[k]["path"]))
        rows[k]["source_path"] = str(raw)
    with open(prep / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    new = np.concatenate([make_anatomy_subject(np.random.default_rng([8, i]), (24, 24), 1) for i in range(3)])
    syn = make_synthetic_set(tmp_path / "syn", np.concatenate([new, from_dicom[:1]]), [{"orientation": "AVAF"}] * 4)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "model.json").write_text(json.dumps({"kind": "ldm", "spatial_dims": 2}))

    outs = [tmp_path / "audit", tmp_path / "release", tmp_path / "model_release"]
    commands = [
        ["audit", "--train", str(prep), "--synthetic", str(syn), "--out", str(outs[0]), "--quantile", "0.9"],
        ["release", "--synthetic", str(syn), "--audit", str(outs[0]), "--out", str(outs[1]), "--dicom-reference", str(raw)],
        ["release-model", "--model", str(model), "--audit", str(outs[0]), "--out", str(outs[2])],
    ]
    for args in commands:
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code in (0, None), args
    audit = json.loads((outs[0] / "audit.json").read_text())
    assert 3 in audit["summary"]["flagged_indices"]  # the copy of the DICOM-derived training slice
    dicoms = sorted((outs[1] / "dicom").rglob("*.dcm"))
    assert dicoms and pydicom.dcmread(str(dicoms[0])).MagneticFieldStrength == 3.0  # the reference was used
    assert find_identifiers(raw, STRINGS)  # the check can fail: the input does carry them
    for out in outs:
        assert_no_identifiers(out, STRINGS)


def test_prepare_writes_no_identifier_from_dicom_attributes(tmp_path):
    """'prepare' reads only pixels and geometry from a DICOM series: no attribute value reaches
    its output (subject ids come from folder names, which users name themselves)."""
    volume = np.moveaxis(make_anatomy_subject(np.random.default_rng(3), (32, 32), 6), 0, -1)
    raw = tmp_path / "scans"
    for case in ("case01", "case02", "case03"):
        write_identified_series(raw / case, volume)
    assert find_identifiers(raw, STRINGS)  # the input does carry them
    out = tmp_path / "prepared"
    args = ["prepare", "--source", "folder", "--input", str(raw), "--out", str(out),
            "--set", "preprocess.roi.mode=full", "--set", "preprocess.output.slices=central",
            "--set", "preprocess.output.shape=[32,32]", "--set", "split.train=0.34", "--set", "split.val=0.33",
            "--set", "split.test=0.33"]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code in (0, None)
    assert list((out / "items").glob("*.nii.gz"))
    assert_no_identifiers(out, STRINGS)
