"""Tiny raw datasets written by the tests: UMD layout with its quirks, NIfTI, DICOM series."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

# Sagittal acquisition stored in RAS voxel order: axis 0 = left→right (the slice axis, 4 mm),
# axis 1 = posterior→anterior, axis 2 = inferior→superior (in-plane 0.8 mm).
SPACING = (4.0, 0.8, 0.8)
SHAPE = (8, 48, 40)


def native_affine(spacing=SPACING, origin=(-14.0, -20.0, -16.0)) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return affine


def phantom_volume(shape=SHAPE, *, seed: int = 0, empty_label: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A noisy pelvis-like image and its label map (1 wall, 2 cavity, 3 myoma, 4 cyst)."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    centre = rng.uniform(-0.15, 0.15, size=3)
    r = np.sqrt(sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, (0.6, 0.45, 0.5), strict=True)))
    label = np.zeros(shape, dtype=np.int16)
    if not empty_label:
        label[r < 1.0] = 1
        label[r < 0.4] = 2
        myoma = np.sqrt(sum((g - c - o) ** 2 for g, c, o in zip(grid, centre, (0.0, 0.3, 0.2), strict=True)))
        label[(myoma < 0.18) & (r < 1.0)] = 3
        cyst = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, (0.0, -0.6, -0.7), strict=True)))
        label[cyst < 0.12] = 4
    image = 200.0 + 50 * rng.standard_normal(shape)
    image[label == 1] += 300
    image[label == 2] += 600
    image[label == 3] += 100
    image[label == 4] += 900
    return image.astype(np.float32), label


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray, *, fake_gz: bool = False) -> Path:
    """Write NIfTI; ``fake_gz`` writes plain NIfTI bytes under a ``.gz`` name (UMD quirk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(array, affine)
    if fake_gz:
        path.write_bytes(img.to_bytes())
    else:
        nib.save(img, str(path))
    return path


def write_dicom_series(
    folder: Path,
    array: np.ndarray,
    *,
    spacing=(0.8, 0.8, 4.0),
    origin=(10.0, -30.0, 40.0),
    direction=(0, 0, -1, 1, 0, 0, 0, -1, 0),
    patient_name: str = "DOE^JANE",
) -> Path:
    """Write ``array`` ``(X, Y, Z)`` (ITK index order) as a DICOM series with LPS geometry.

    The default direction (row-major 3x3, columns = axis directions) is a sagittal
    acquisition: columns run A→P (+y), rows S→I (-z), slices L→R (-x) in LPS.
    """
    import locale


    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer switches the C locale to "C": restore it
    try:
        return _write_dicom_series(folder, array, spacing, origin, direction, patient_name)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_series(folder, array, spacing, origin, direction, patient_name) -> Path:
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array.transpose(2, 1, 0).astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    orient = "\\".join(f"{v:.6f}" for v in (*d[:, 0], *d[:, 1]))
    series_uid = "1.2.826.0.1.3680043.2.1125.1.42"
    for k in range(image.GetDepth()):
        sl = image[:, :, k]
        for tag, value in (
            ("0010|0010", patient_name),
            ("0010|0020", "PID-12345"),
            ("0008|0060", "MR"),
            ("0020|000e", series_uid),
            ("0020|000d", series_uid + ".0"),
            ("0008|0018", f"{series_uid}.{k + 1}"),
            ("0020|0037", orient),
            ("0020|0032", "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k)))),
            ("0020|0013", str(k + 1)),
            ("0018|0050", str(spacing[2])),
        ):
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"IM{k:04d}.dcm"))
        writer.Execute(sl)
    return folder


def make_umd(root: Path, n: int = 6, *, quirks: bool = True, labels_csv: bool = True, dicom_case: bool = False) -> Path:
    """Write ``root/UMD/UMD_<date>_<NNN>/`` cases with every archive quirk when ``quirks``.

    Quirks: case 1's labels are ``*_seq.nii.gz``; case 2's image and labels are ``.gz`` files
    that are not compressed; case 3's file names carry a typo in the case number; a
    ``__MACOSX`` folder and ``._*`` AppleDouble files.
    """
    umd = root / "UMD"
    affine = native_affine()
    for i in range(n):
        case = f"UMD_221129_{i + 1:03d}"
        folder = umd / case
        image, label = phantom_volume(seed=i)
        name = case
        seg_suffix = "seg"
        fake = False
        if quirks and i == 1:
            seg_suffix = "seq"
        if quirks and i == 2:
            fake = True
        if quirks and i == 3:
            name = f"UMD_221129_{i + 11:03d}"  # typo: wrong number in the file names
        save_nifti(folder / f"{name}_t2.nii.gz", image, affine, fake_gz=fake)
        save_nifti(folder / f"{name}_{seg_suffix}.nii.gz", label, affine, fake_gz=fake)
        if quirks:
            (folder / f"._{name}_t2.nii.gz").write_bytes(b"\x00\x05\x16\x07AppleDouble junk")
        if dicom_case and i == 0:
            write_dicom_series(folder, image.transpose(2, 1, 0)[:, :, :4])  # raw slices beside the NIfTI
    if quirks:
        mac = root / "__MACOSX" / "UMD" / "UMD_221129_001"
        mac.mkdir(parents=True)
        (mac / "._UMD_221129_001_t2.nii.gz").write_bytes(b"\x00\x05\x16\x07junk")
        (umd / "__MACOSX").mkdir()
    if labels_csv:
        orientations = ["AVAF", "AVRF", "RVAF", "RVRF"]
        lines = ["subject,orientation,field_strength,myoma_count"]
        for i in range(n):
            lines.append(f"UMD_221129_{i + 1:03d},{orientations[i % 4]},{'3T' if i % 2 else '1.5T'},{i % 3}")
        (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def gz_bytes(data: bytes) -> bytes:
    return gzip.compress(data)
