import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from umd_fixtures import make_umd, native_affine, phantom_volume, save_nifti, write_dicom_series

from uterosynth.cli import main
from uterosynth.data.config import SplitConfig
from uterosynth.data.dataset import make_loader
from uterosynth.data.manifest import CORE_COLUMNS, PAD_COLUMNS, PreparedDataset, read_manifest
from uterosynth.data.prepare import assign_splits

REPO = Path(__file__).resolve().parents[2]
PRESET = {2: REPO / "configs" / "prepare2d.yaml", 3: REPO / "configs" / "prepare3d.yaml"}
SMALL = {
    2: ["--set", "preprocess.output.shape=[32,32]", "--set", "preprocess.output.min_uterus_voxels=1"],
    3: ["--set", "preprocess.output.shape=[32,32,8]"],
}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


def prepare_args(raw: Path, out: Path, spatial_dims: int = 2, *extra: str) -> list[str]:
    return ["prepare", "--source", "umd", "--input", raw, "--out", out, "--config", PRESET[spatial_dims],
            *SMALL[spatial_dims], *extra]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_prepare_umd_end_to_end(tmp_path: Path, capsys, spatial_dims: int):
    raw = make_umd(tmp_path / "raw", n=6, dicom_case=True)
    out = tmp_path / "prepared"
    code, stdout, _ = run(capsys, *prepare_args(raw, out, spatial_dims, "--json", "--seed", "3"))
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["subjects"] == 6 and summary["skipped"] == []
    assert sum(s["subjects"] for s in summary["splits"].values()) == 6

    rows = read_manifest(out / "manifest.csv")
    with open(out / "manifest.csv") as fh:
        header = fh.readline().strip().split(",")
    assert header == [*CORE_COLUMNS, *PAD_COLUMNS, "orientation", "field_strength", "myoma_count", "myoma", "myoma_voxels"]
    info = json.loads((out / "dataset.json").read_text())
    assert info["dims"] == spatial_dims and info["seed"] == 3
    assert info["attributes"] == ["orientation", "field_strength", "myoma_count", "myoma", "myoma_voxels"]
    assert info["attribute_types"]["myoma_count"] == "numeric"
    assert info["attribute_types"]["orientation"] == "categorical"
    assert info["config"]["preprocess"]["roi"]["mode"] == "window" and info["uterosynth_version"]
    assert np.asarray(info["affine"]).shape == (4, 4) and len(info["spacing"]) == 3
    assert info["unlabelled_subjects"] == [] and info["splits"] == summary["splits"]

    # subject-level splits: every subject in exactly one split
    by_subject: dict[str, set[str]] = {}
    for row in rows:
        by_subject.setdefault(row["subject"], set()).add(row["split"])
    assert all(len(s) == 1 for s in by_subject.values()) and len(by_subject) == 6
    assert {r["orientation"] for r in rows} == {"AVAF", "AVRF", "RVAF", "RVRF"}
    assert len({r["prep_hash"] for r in rows}) == len(rows)

    data = PreparedDataset.load(out)
    array, affine = data.load_item(data.rows[0])
    assert array.shape == ((32, 32) if spatial_dims == 2 else (32, 32, 8))
    assert array.min() >= 0.0 and array.max() <= 1.0 and array.max() > 0.5
    assert nib.aff2axcodes(affine) == ("I", "P", "R")
    pad = data.load_pad(data.rows[0])
    assert pad is not None and pad.shape == array.shape
    assert abs(float(pad.mean()) - float(data.rows[0]["pad_fraction"])) < 1e-5
    if spatial_dims == 2:
        assert all(r["item_id"] == f"{r['subject']}_{int(r['slice_index']):03d}" for r in rows)

    loader = make_loader(data.split("train"), batch_size=2, seed=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 1, *array.shape) and len(batch["orientation"]) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".prepared")]


@pytest.mark.slow  # imports MONAI's transforms
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_loader_with_monai_augmentation(tmp_path: Path, capsys, spatial_dims: int):
    import torch

    raw = make_umd(tmp_path / "raw", n=3, quirks=False)
    out = tmp_path / "prepared"
    assert run(capsys, *prepare_args(raw, out, spatial_dims))[0] == 0
    data = PreparedDataset.load(out)
    plain = next(iter(make_loader(data, batch_size=2, shuffle=False)))["image"]
    augmented = [next(iter(make_loader(data, batch_size=2, shuffle=False, augment=True, seed=s)))["image"] for s in (0, 0)]
    assert augmented[0].shape == plain.shape == (2, 1, *((32, 32) if spatial_dims == 2 else (32, 32, 8)))
    assert torch.equal(augmented[0], augmented[1])  # seeded
    assert not torch.equal(augmented[0], plain)


def test_prepare_is_deterministic(tmp_path: Path, capsys):
    raw = make_umd(tmp_path / "raw", n=6)
    for name in ("a", "b"):
        assert run(capsys, *prepare_args(raw, tmp_path / name, 2, "--seed", "7"))[0] == 0
    assert (tmp_path / "a" / "manifest.csv").read_text() == (tmp_path / "b" / "manifest.csv").read_text()
    item = sorted((tmp_path / "a" / "items").iterdir())[0].name
    a = nib.load(str(tmp_path / "a" / "items" / item))
    b = nib.load(str(tmp_path / "b" / "items" / item))
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_assign_splits_by_seed():
    subjects = [f"S{i:02d}" for i in range(20)]
    cfg = SplitConfig(train=0.7, val=0.15, test=0.15)
    first = assign_splits(subjects, cfg, seed=1)
    assert first == assign_splits(list(reversed(subjects)), cfg, seed=1)  # order-independent
    assert first != assign_splits(subjects, cfg, seed=2)
    counts = {s: list(first.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 14, "val": 3, "test": 3}
    small = assign_splits(["a", "b", "c"], SplitConfig(), seed=0)
    assert sorted(small.values()) == ["test", "train", "val"]


def test_folder_source_dicom_without_identifiers(tmp_path: Path, capsys):
    raw = tmp_path / "scans"
    image, label = phantom_volume()
    save_nifti(raw / "alice.nii.gz", image, native_affine())
    save_nifti(raw / "alice_seg.nii.gz", label, native_affine())
    write_dicom_series(raw / "bob", image.transpose(2, 1, 0), patient_name="SECRET^NAME")
    labels = tmp_path / "attrs.csv"
    labels.write_text("subject,field_strength\nalice,3T\nbob,1.5T\n")
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "prepare", "--source", "folder", "--input", raw, "--out", out, "--labels", labels,
                          "--set", "preprocess.output.shape=[32,32]", "--set", "preprocess.output.k=2", "--json")
    assert code == 0, stdout
    rows = read_manifest(out / "manifest.csv")
    assert {r["subject"]: r["field_strength"] for r in rows} == {"alice": "3T", "bob": "1.5T"}
    assert sum(r["subject"] == "bob" for r in rows) == 2
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            assert b"SECRET" not in data and b"PID-12345" not in data


# --- bad input: one line naming the file, exit code 2, no output folder ---------------------------------


def _case(raw: Path, i: int = 2) -> Path:
    return raw / "UMD" / f"UMD_221129_{i:03d}"


def _truncate(raw: Path) -> str:
    path = _case(raw) / "UMD_221129_002_t2.nii.gz"
    path.write_bytes(path.read_bytes()[:300])
    return path.name


def _not_image(raw: Path) -> str:
    path = _case(raw) / "UMD_221129_002_t2.nii.gz"
    path.write_text("<html>download failed</html>" * 20)
    return path.name


def _empty(raw: Path) -> str:
    path = _case(raw) / "UMD_221129_002_t2.nii.gz"
    path.write_bytes(b"")
    return path.name


def _nan(raw: Path) -> str:
    image, _ = phantom_volume(seed=1)
    image[3, 10, 10] = np.nan
    return save_nifti(_case(raw) / "UMD_221129_002_t2.nii.gz", image, native_affine()).name


def _flat(raw: Path) -> str:
    image, label = phantom_volume(seed=1)
    save_nifti(_case(raw) / "UMD_221129_002_seg.nii.gz", label[3:4], native_affine())
    return save_nifti(_case(raw) / "UMD_221129_002_t2.nii.gz", image[3:4], native_affine()).name


def _label_shape(raw: Path) -> str:
    _, label = phantom_volume(seed=1)
    return save_nifti(_case(raw) / "UMD_221129_002_seg.nii.gz", label[:, :, :-2], native_affine()).name


def _label_geometry(raw: Path) -> str:
    _, label = phantom_volume(seed=1)
    return save_nifti(_case(raw) / "UMD_221129_002_seg.nii.gz", label, native_affine(origin=(0, 0, 5))).name


def _label_empty(raw: Path) -> str:
    _, label = phantom_volume(seed=1, empty_label=True)
    return save_nifti(_case(raw) / "UMD_221129_002_seg.nii.gz", label, native_affine()).name


BREAKERS = {
    "truncated": (_truncate, "truncated or corrupt"),
    "empty": (_empty, "empty file"),
    "not_image": (_not_image, "not a NIfTI image"),
    "nan": (_nan, "NaN/Inf"),
    "2d": (_flat, "image is 2D"),
    "label_shape": (_label_shape, "label map shape"),
    "label_geometry": (_label_geometry, "label map geometry differs"),
    "label_empty": (_label_empty, "no uterus voxels"),
}


@pytest.mark.parametrize("problem", list(BREAKERS))
def test_bad_subject_fails_cleanly(tmp_path: Path, capsys, problem: str):
    raw = make_umd(tmp_path / "raw", n=3, quirks=False)
    breaker, message = BREAKERS[problem]
    name = breaker(raw)
    out = tmp_path / "out"
    code, _, err = run(capsys, *prepare_args(raw, out))
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert name in lines[0] and message in lines[0] and lines[0].startswith("error:")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_skip_bad_lists_reasons(tmp_path: Path, capsys):
    raw = make_umd(tmp_path / "raw", n=4, quirks=False)
    _nan(raw)
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, *prepare_args(raw, out, 2, "--skip-bad", "--json"))
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["subjects"] == 3
    assert [s["subject"] for s in summary["skipped"]] == ["UMD_221129_002"]
    assert "NaN/Inf" in summary["skipped"][0]["reason"]
    info = json.loads((out / "dataset.json").read_text())
    assert info["skipped"] == summary["skipped"]
    assert "UMD_221129_002" not in {r["subject"] for r in read_manifest(out / "manifest.csv")}


def test_error_labels_csv_without_subject_column(tmp_path: Path, capsys):
    raw = make_umd(tmp_path / "raw", n=3, quirks=False)
    (raw / "labels.csv").write_text("case,orientation\nUMD_221129_001,AVAF\n")
    code, _, err = run(capsys, *prepare_args(raw, tmp_path / "out"))
    assert code == 2 and "labels.csv: labels table has no 'subject' column" in err
    assert not (tmp_path / "out").exists()


def test_error_labels_csv_unknown_value(tmp_path: Path, capsys):
    raw = make_umd(tmp_path / "raw", n=3, quirks=False)
    (raw / "labels.csv").write_text("subject,orientation\nUMD_221129_001,AVAF\nUMD_221129_002,UPSIDE\n")
    code, _, err = run(capsys, *prepare_args(raw, tmp_path / "out", 2,
                                             "--set", "labels.attributes={orientation: [AVAF, AVRF, RVAF, RVRF]}"))
    assert code == 2 and "labels.csv: subject 'UMD_221129_002' has unknown orientation 'UPSIDE'" in err
    assert not (tmp_path / "out").exists()


def test_error_output_exists(tmp_path: Path, capsys):
    raw = make_umd(tmp_path / "raw", n=3, quirks=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run(capsys, *prepare_args(raw, out))
    assert code == 2 and "output folder already exists" in err and (out / "keep.txt").exists()
    assert run(capsys, *prepare_args(raw, out, 2, "--overwrite"))[0] == 0
    assert not (out / "keep.txt").exists() and (out / "manifest.csv").is_file()


def test_error_bad_config_key(tmp_path: Path, capsys):
    raw = make_umd(tmp_path / "raw", n=3, quirks=False)
    code, _, err = run(capsys, *prepare_args(raw, tmp_path / "out", 2, "--set", "preprocess.roi.mode=liver"))
    assert code == 2 and "preprocess.roi.mode" in err


def test_worker_returns_rows_or_reason(tmp_path: Path):
    """The function run by parallel workers (``--workers N``) reports errors instead of raising."""
    from uterosynth.data.config import PrepareConfig
    from uterosynth.data.prepare import _worker
    from uterosynth.data.sources import discover_umd

    raw = make_umd(tmp_path / "raw", n=2, quirks=False, labels_csv=False)
    _nan(raw)
    (tmp_path / "out" / "items").mkdir(parents=True)
    good, bad = discover_umd(raw)
    cfg = PrepareConfig()
    subject, rows, reason = _worker((good, cfg, tmp_path / "out", "umd", None))
    assert subject == good.subject and reason == "" and len(rows) == 5
    assert (tmp_path / "out" / rows[0]["path"]).is_file()
    subject, rows, reason = _worker((bad, cfg, tmp_path / "out", "umd", None))
    assert rows is None and "NaN/Inf" in reason


def test_assign_splits_stratified():
    subjects = [f"S{i:02d}" for i in range(40)]
    groups = {s: ("AV" if i % 4 else "RV") for i, s in enumerate(subjects)}  # 30 AV, 10 RV
    cfg = SplitConfig(train=0.8, val=0.1, test=0.1, stratify="orientation")
    out = assign_splits(subjects, cfg, seed=0, groups=groups)
    assert out == assign_splits(subjects, cfg, seed=0, groups=groups)
    per = {(g, sp): 0 for g in ("AV", "RV") for sp in ("train", "val", "test")}
    for s, sp in out.items():
        per[(groups[s], sp)] += 1
    assert per[("RV", "train")] == 8 and per[("RV", "val")] == 1 and per[("RV", "test")] == 1
    assert per[("AV", "train")] == 24 and per[("AV", "val")] == 3 and per[("AV", "test")] == 3


def test_error_stratify_unknown_column(tmp_path: Path, capsys):
    raw = make_umd(tmp_path / "raw", n=3, quirks=False)
    code, _, err = run(capsys, *prepare_args(raw, tmp_path / "out", 2, "--set", "split.stratify=flexion"))
    assert code == 2 and "split.stratify 'flexion': no such column" in err


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("sizes", [(5, 8, 14, 5), (4, 4, 4, 4), (3, 9, 2, 30), (1, 6, 6, 6)])
def test_stratified_splits_hold_every_class_when_counts_allow(sizes, seed: int):
    """Split sizes follow the fractions; every split holds every class that has a subject to
    spare for it (class size >= number of splits) once the split has room for all classes."""
    subjects = [f"S{i:03d}" for i in range(sum(sizes))]
    classes = [c for c, n in zip("ABCD", sizes, strict=True) for _ in range(n)]
    groups = dict(zip(subjects, classes, strict=True))
    cfg = SplitConfig(train=0.7, val=0.1, test=0.2)
    out = assign_splits(subjects, cfg, seed=seed, groups=groups)
    unstratified = assign_splits(subjects, cfg, seed=seed)
    for name in ("train", "val", "test"):  # same split sizes as without strata
        assert sum(v == name for v in out.values()) == sum(v == name for v in unstratified.values())
        present = {groups[s] for s, v in out.items() if v == name}
        if sum(v == name for v in out.values()) >= 4:
            assert present >= {c for c, n in zip("ABCD", sizes, strict=True) if n >= 3}, (name, present)


def test_prepare_stratifies_by_orientation_by_default(tmp_path: Path, capsys):
    raw = make_umd(tmp_path / "raw", n=8, quirks=False)
    assert run(capsys, *prepare_args(raw, tmp_path / "out", 2, "--set", "split.val=0.25", "--set", "split.test=0.25",
                                     "--set", "split.train=0.5"))[0] == 0
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["stratify"] == "orientation"
    rows = read_manifest(tmp_path / "out" / "manifest.csv")
    by_subject = {r["subject"]: (r["split"], r["orientation"]) for r in rows}
    for name, per_class in info["split_counts"].items():
        assert per_class == {c: sum(v == (name, c) for v in by_subject.values()) for c in per_class}
    assert sum(sum(p.values()) for p in info["split_counts"].values()) == 8


def test_segmentation_attributes_count_the_items_label_voxels():
    from uterosynth.data.config import LabelsConfig
    from uterosynth.data.prepare import segmentation_attributes

    cfg = LabelsConfig(from_segmentation={"myoma": [3], "cyst": [4]}, segmentation_min_voxels=3)
    label = np.zeros((8, 8), dtype=np.int16)
    label[0, :3] = 3
    label[5, 5] = 4
    assert segmentation_attributes(label, cfg) == {"myoma": "present", "myoma_voxels": "3",
                                                   "cyst": "absent", "cyst_voxels": "1"}
    assert segmentation_attributes(None, cfg) == {"myoma": "", "myoma_voxels": "", "cyst": "", "cyst_voxels": ""}


def test_too_few_segmentation_voxels_can_leave_an_item_without_a_value():
    from uterosynth.data.config import LabelsConfig
    from uterosynth.data.prepare import segmentation_attributes

    label = np.zeros((8, 8), dtype=np.int16)
    label[0, :2] = 3  # two myoma voxels: fewer than the three that make "present"
    label[5, :4] = 4
    cfg = LabelsConfig(from_segmentation={"myoma": [3], "cyst": [4], "other": [5]}, segmentation_min_voxels=3)
    assert segmentation_attributes(label, cfg)["myoma"] == "absent"  # the default
    unsure = cfg.model_copy(update={"segmentation_few_voxels": "empty"})
    assert {k: v for k, v in segmentation_attributes(label, unsure).items() if not k.endswith("_voxels")} == {
        "myoma": "", "cyst": "present", "other": "absent"}


def test_prepare_reads_myoma_presence_per_item(tmp_path: Path, capsys):
    """2D items hold the myoma or not, slice by slice; a labels-table column of the same name wins."""
    raw = make_umd(tmp_path / "raw", n=4)
    fine = ("--set", "preprocess.roi.window_mm=[32,32]")  # 1 mm pixels: the fixture's myoma is about 7 mm
    code, _, _ = run(capsys, *prepare_args(raw, tmp_path / "p2", 2, *fine))
    assert code == 0
    rows = read_manifest(tmp_path / "p2" / "manifest.csv")
    assert {r["myoma"] for r in rows} == {"present", "absent"}  # the myoma spans some uterus slices, not all
    info = json.loads((tmp_path / "p2" / "dataset.json").read_text())
    assert info["attributes_from_segmentation"] == {"myoma": [3]} and info["attribute_types"]["myoma"] == "categorical"
    assert info["attribute_types"]["myoma_voxels"] == "numeric"  # each item's myoma size, beside its label
    assert all((int(r["myoma_voxels"]) >= 8) == (r["myoma"] == "present") for r in rows)
    code, _, _ = run(capsys, *prepare_args(raw, tmp_path / "none", 2, *fine, "--set", "labels.from_segmentation={}"))
    assert code == 0 and "myoma" not in read_manifest(tmp_path / "none" / "manifest.csv")[0]
    table = raw / "labels.csv"
    lines = table.read_text().splitlines()
    # every subject but the last has a row: the table's column wins for all, the row-less subject gets no value
    table.write_text("\n".join([lines[0] + ",myoma", *(line + ",yes" for line in lines[1:-1])]) + "\n")
    code, _, _ = run(capsys, *prepare_args(raw, tmp_path / "table", 2, *fine))
    assert code == 0 and {r["myoma"] for r in read_manifest(tmp_path / "table" / "manifest.csv")} == {"yes", ""}
    assert "myoma_voxels" not in read_manifest(tmp_path / "table" / "manifest.csv")[0]
    assert json.loads((tmp_path / "table" / "dataset.json").read_text())["attributes_from_segmentation"] == {}


def test_a_labels_column_named_like_a_manifest_column_cannot_overwrite_it(tmp_path: Path, capsys):
    """The phantom's labels table records each scan's 'shape': the manifest keeps the item's own."""
    raw = make_umd(tmp_path / "raw", n=3, quirks=False)
    subjects = sorted(p.name for p in raw.iterdir() if p.is_dir())
    (raw / "labels.csv").write_text("subject,orientation,shape,split\n"
                                    + "".join(f"{s},AVAF,320x320x28,train\n" for s in subjects))
    out = tmp_path / "out"
    code, _, _ = run(capsys, *prepare_args(raw, out))
    assert code == 0
    rows = read_manifest(out / "manifest.csv")
    assert rows and {r["shape"] for r in rows} == {"32x32"}
    assert {r["split"] for r in rows} != {"train"}  # the subject-level split, not the table's column
    assert "shape" not in json.loads((out / "dataset.json").read_text())["attributes"]
