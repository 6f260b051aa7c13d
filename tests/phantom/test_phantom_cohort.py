"""The written cohort: UMD layout, labels.csv, geometry, orientation recoverable from labels alone."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from uterosynth.core.seeding import numpy_rng
from uterosynth.phantom import PhantomConfig, estimate_orientation, generate_subject, write_cohort
from uterosynth.phantom.anatomy import sample_subject
from uterosynth.phantom.render import scanner_affine, to_scanner

# Same field of view as the default (256 mm) at half the in-plane resolution, fewer slices.
SMALL = {"matrix": (160, 160), "spacing": (1.6, 1.6, 4.0), "slices": 18, "supersample": 2}


def small_config(**kw) -> PhantomConfig:
    return PhantomConfig(geometry=SMALL, **kw)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "cohort"
    cfg = PhantomConfig(geometry={**SMALL, "supersample": 1}, subjects=40, seed=3, workers=2)
    write_cohort(cfg, out)
    return out


@pytest.fixture(scope="module")
def cohort_v1(tmp_path_factory) -> Path:
    """Version 1 keeps a gap around each class boundary: there the class is recoverable for every subject."""
    out = tmp_path_factory.mktemp("phantom_v1") / "cohort"
    cfg = PhantomConfig(version=1, geometry={**SMALL, "supersample": 1}, subjects=40, seed=3, workers=2)
    write_cohort(cfg, out)
    return out


def read_labels(root: Path) -> list[dict[str, str]]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_umd_layout_and_labels_csv(cohort):
    rows = read_labels(cohort)
    assert len(rows) == 40
    for col in ("subject", "orientation", "version", "flexion", "version_angle", "flexion_angle",
                "field_strength", "myoma_count", "cyst_count", "uterus_length_mm", "bladder_volume_ml",
                "fat_thickness_mm", "shift_x_mm", "rotation_x_deg"):
        assert col in rows[0], col
    for k, row in enumerate(rows):
        sid = f"UMD_240101_{k + 1:03d}"
        assert row["subject"] == sid
        assert (cohort / sid / f"{sid}_t2.nii.gz").is_file() and (cohort / sid / f"{sid}_seg.nii.gz").is_file()
        assert row["version"] == ("anteverted" if row["orientation"].startswith("AV") else "retroverted")
        assert row["flexion"] == ("anteflexed" if row["orientation"].endswith("AF") else "retroflexed")
        assert (float(row["version_angle"]) > 0) == row["orientation"].startswith("AV")
        assert (float(row["flexion_angle"]) > 0) == row["orientation"].endswith("AF")
        assert row["field_strength"] in ("1.5T", "3T")
    info = json.loads((cohort / "phantom.json").read_text())
    assert info["seed"] == 3 and info["config"]["subjects"] == 40 and "uterosynth_version" in info
    assert not list(cohort.parent.glob(".cohort.tmp-*"))


@pytest.mark.slow
def test_nifti_geometry_dtype_and_scanner_layout(cohort):
    sid = "UMD_240101_001"
    img = nib.load(str(cohort / sid / f"{sid}_t2.nii.gz"))
    seg = nib.load(str(cohort / sid / f"{sid}_seg.nii.gz"))
    assert img.get_data_dtype() == np.int16 and seg.get_data_dtype() == np.uint8
    assert img.shape == seg.shape == (160, 160, 18)  # (anterior-posterior, inferior-superior, slices)
    assert np.allclose(img.header.get_zooms(), (1.6, 1.6, 4.0))
    assert np.allclose(img.affine, seg.affine)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    assert np.allclose(img.get_qform(), img.get_sform())
    assert nib.aff2axcodes(img.affine) == ("P", "S", "R")  # not the canonical IPR layout
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2, 3, 4}


@pytest.mark.slow
def test_affine_places_landmarks_in_the_uterus(cohort):
    """The internal os (world coordinates in labels.csv) falls on uterus labels through the saved affine."""
    for row in read_labels(cohort):
        sid = row["subject"]
        seg = nib.load(str(cohort / sid / f"{sid}_seg.nii.gz"))
        data = np.asarray(seg.dataobj)
        world = np.array([float(row[f"internal_os_{a}"]) for a in "xyz"] + [1.0])
        ijk = np.round(np.linalg.inv(seg.affine) @ world)[:3].astype(int)
        assert data[tuple(ijk)] in (1, 2, 3, 4), sid
        # Six centimetres anterior of the external os is never uterus (catches a flipped axis).
        ext = np.array([float(row[f"external_os_{a}"]) for a in "xyz"]) + np.array([0, 60.0, 0])
        ijk = np.round(np.linalg.inv(seg.affine) @ np.append(ext, 1))[:3].astype(int)
        if np.all((ijk >= 0) & (ijk < data.shape)):
            assert data[tuple(ijk)] == 0, sid


def _estimates(root: Path) -> list[tuple[dict[str, str], object]]:
    out = []
    for row in read_labels(root):
        sid = row["subject"]
        seg = nib.load(str(root / sid / f"{sid}_seg.nii.gz"))
        out.append((row, estimate_orientation(np.asarray(seg.dataobj), seg.affine)))
    return out


@pytest.mark.slow
def test_orientation_recovered_from_labels_alone(cohort_v1):
    """The class estimated from each label map and its affine equals labels.csv, for every subject (version 1)."""
    found = {row["subject"]: (est.orientation, row["orientation"]) for row, est in _estimates(cohort_v1)}
    wrong = {k: v for k, v in found.items() if v[0] != v[1]}
    assert not wrong
    assert {v[1] for v in found.values()} == {"AVAF", "AVRF", "RVAF", "RVRF"}


@pytest.mark.slow
def test_orientation_from_labels_agrees_away_from_the_boundary(cohort):
    """Version 2 has near-neutral uteri; away from the class boundaries the estimate still agrees with labels.csv.

    The estimator sees no vagina, so its version rule is a fixed cervical tilt (-15 deg): version is
    checked where the cervix is 15 deg or more from that tilt, flexion where |flexion| >= 15 deg.
    """
    n_version = n_flexion = 0
    for row, est in _estimates(cohort):
        if abs(float(row["cervix_tilt"]) + 15) >= 15:
            assert est.orientation[:2] == row["orientation"][:2], row["subject"]
            n_version += 1
        if abs(float(row["flexion_angle"])) >= 15:
            assert est.orientation[2:] == row["orientation"][2:], row["subject"]
            n_flexion += 1
    assert n_version >= 20 and n_flexion >= 20


@pytest.mark.slow
def test_class_and_field_strength_proportions_follow_config():
    cfg = PhantomConfig(anatomy={"class_weights": {"AVAF": 3.0, "AVRF": 1.0}}, acquisition={"p_3t": 0.25})
    n = 200
    subjects = [sample_subject(numpy_rng(11, k), cfg, k) for k in range(n)]
    classes = [s.orientation for s in subjects]
    assert set(classes) == {"AVAF", "AVRF"}
    assert abs(classes.count("AVAF") / n - 0.75) < 0.1
    assert abs(sum(s.field_strength == "3T" for s in subjects) / n - 0.25) < 0.1
    balanced = [sample_subject(numpy_rng(12, k), PhantomConfig(), k).orientation for k in range(n)]
    for c in ("AVAF", "AVRF", "RVAF", "RVRF"):
        assert abs(balanced.count(c) / n - 0.25) < 0.1, c


@pytest.mark.slow
def test_same_seed_same_arrays_and_subject_independent_of_n(tmp_path):
    cfg = small_config(subjects=2, seed=5)
    _, a = generate_subject(cfg, 1)
    _, b = generate_subject(cfg, 1)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.seg, b.seg)
    _, other = generate_subject(small_config(subjects=2, seed=6), 1)
    assert not np.array_equal(a.image, other.image)
    write_cohort(small_config(subjects=2, seed=5), tmp_path / "two")
    write_cohort(small_config(subjects=3, seed=5, workers=2), tmp_path / "three")
    for name in ("t2", "seg"):
        x = nib.load(str(tmp_path / "two" / "UMD_240101_002" / f"UMD_240101_002_{name}.nii.gz"))
        y = nib.load(str(tmp_path / "three" / "UMD_240101_002" / f"UMD_240101_002_{name}.nii.gz"))
        assert np.array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj))
        assert np.array_equal(np.asarray(x.dataobj), to_scanner(a.image if name == "t2" else a.seg))
    two = read_labels(tmp_path / "two")
    three = read_labels(tmp_path / "three")
    assert two == three[:2]


@pytest.mark.slow
def test_default_geometry_subjects():
    """The default (clinical) geometry: 0.8 x 0.8 x 4 mm, 256 mm field of view, orientation recoverable."""
    cfg = PhantomConfig()
    for k in range(3):
        subject, r = generate_subject(cfg, k)
        assert r.image.shape == (320, 320, 28)
        assert 24 <= r.image.shape[2] <= 32 and 240 <= 0.8 * r.image.shape[0] <= 280
        est = estimate_orientation(to_scanner(r.seg), scanner_affine(r.affine, r.seg.shape))
        assert est.orientation == subject.orientation
