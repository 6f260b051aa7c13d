"""DICOM export of synthetic images with highdicom: secondary capture, marked synthetic, geometry kept.

Every slice becomes a Secondary Capture Image (``ImageType = DERIVED\\SECONDARY``,
``ConversionType = SYN`` = synthetic image, ``Modality = MR``) with freshly generated UIDs, no
patient identifiers, "SYNTHETIC" in ``SeriesDescription`` and ``BurnedInAnnotation = NO``.
Geometry comes from the NIfTI affine: NIfTI world coordinates are RAS, DICOM's are LPS, so
``LPS = diag(-1, -1, 1) · RAS``. For an array slice ``volume[:, :, k]`` the DICOM rows follow
array axis 0 and the columns array axis 1, hence

* ``ImageOrientationPatient`` = (unit LPS direction of axis 1, unit LPS direction of axis 0),
* ``PixelSpacing`` = (spacing along axis 0, spacing along axis 1) (row spacing first),
* ``ImagePositionPatient`` of slice ``k`` = LPS of ``affine @ (0, 0, k, 1)``.

Intensities in ``[0, 1]`` are stored as 12-bit integers (``round(4095 x)``). Every dataset
passes through :func:`uterosynth.data.deid.scrub_dataset` before it is written, so
attributes copied from an optional reference series can never carry identifiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..data.deid import scrub_dataset

__all__ = ["REFERENCE_ATTRIBUTES", "LPS_FROM_RAS", "read_reference", "reformat", "sitk_affine", "write_dicom_series"]

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
MAX_VALUE = 4095

#: Descriptive, non-identifying attributes that may be copied from a real reference series
#: so that synthetic images carry the acquisition context they were conditioned on.
REFERENCE_ATTRIBUTES: tuple[str, ...] = (
    "MagneticFieldStrength",
    "ScanningSequence",
    "SequenceVariant",
    "MRAcquisitionType",
    "RepetitionTime",
    "EchoTime",
    "BodyPartExamined",
    "PatientPosition",
)


def read_reference(path: str | Path):
    """The first readable DICOM file under ``path`` (a file or folder), for :data:`REFERENCE_ATTRIBUTES`."""
    import pydicom

    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        try:
            return pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception:  # noqa: S112 - non-DICOM files in a folder are skipped
            continue
    raise DataError(f"{path}: no readable DICOM file found for the DICOM reference", keys=("dicom_reference",))


def _letters(vector: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(vector)))
    return ("L", "P", "H")[axis] if vector[axis] > 0 else ("R", "A", "F")[axis]


def write_dicom_series(
    array: np.ndarray,
    affine: np.ndarray,
    out_dir: str | Path,
    *,
    series_description: str,
    series_number: int = 1,
    study_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    reference=None,
) -> list[Path]:
    """Write ``array`` ``(H, W)`` or ``(H, W, D)`` (intensities in [0, 1]) as one DICOM series.

    Args:
        array: the image; slices are ``array[:, :, k]``.
        affine: ``(4, 4)`` NIfTI voxel → RAS world (mm) matrix of ``array``.
        out_dir: folder for ``0001.dcm``, ``0002.dcm`` ...
        series_description: "SYNTHETIC" is prepended when absent.
        series_number: DICOM SeriesNumber.
        study_instance_uid / frame_of_reference_uid: share them between series of one item
            (e.g. its sagittal, axial and coronal reformats); fresh ones when ``None``.
        reference: optional pydicom dataset whose :data:`REFERENCE_ATTRIBUTES` are copied.

    Returns:
        The written files, in slice order.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    if array.ndim == 2:
        array = array[:, :, None]
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise DataError(f"{out_dir}: cannot write DICOM, the affine is not an invertible finite 4x4 matrix")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = LPS_FROM_RAS @ affine[:3, :3]
    spacing = np.linalg.norm(cols, axis=0)
    row_dir, col_dir = cols[:, 1] / spacing[1], cols[:, 0] / spacing[0]
    study_uid = study_instance_uid or generate_uid()
    series_uid = generate_uid()
    for_uid = frame_of_reference_uid or generate_uid()
    if "SYNTHETIC" not in series_description.upper():
        series_description = f"SYNTHETIC {series_description}"
    pixels = np.clip(np.round(np.nan_to_num(array, nan=0.0) * MAX_VALUE), 0, MAX_VALUE).astype(np.uint16)
    written = []
    uid_map: dict[str, str] = {}
    for k in range(array.shape[2]):
        sc = hd.sc.SCImage(
            pixel_array=pixels[:, :, k],
            photometric_interpretation="MONOCHROME2",
            bits_allocated=16,
            coordinate_system="PATIENT",
            study_instance_uid=study_uid,
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=generate_uid(),
            instance_number=k + 1,
            manufacturer="uterosynth",
            pixel_spacing=(float(spacing[0]), float(spacing[1])),
            patient_orientation=(_letters(row_dir), _letters(col_dir)),
        )
        if reference is not None:
            for keyword in REFERENCE_ATTRIBUTES:
                if keyword in reference:
                    setattr(sc, keyword, reference.data_element(keyword).value)
        position = LPS_FROM_RAS @ (affine @ np.array([0.0, 0.0, k, 1.0]))[:3]
        sc.Modality = "MR"
        sc.ConversionType = "SYN"
        sc.BurnedInAnnotation = "NO"
        sc.SeriesDescription = series_description[:64]
        sc.ImagePositionPatient = [float(v) for v in position]
        sc.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        sc.SliceThickness = float(spacing[2])
        sc.SpacingBetweenSlices = float(spacing[2])
        sc.FrameOfReferenceUID = for_uid
        sc.PositionReferenceIndicator = ""
        sc.WindowCenter, sc.WindowWidth = MAX_VALUE / 2, MAX_VALUE + 1
        # no real patient: keep the uids (freshly generated) and apply the profile to the rest
        kept = {kw: getattr(sc, kw) for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")}
        scrub_dataset(sc, uid_map=uid_map)
        for kw, value in kept.items():
            setattr(sc, kw, value)
        sc.file_meta.MediaStorageSOPInstanceUID = sc.SOPInstanceUID
        path = out_dir / f"{k + 1:04d}.dcm"
        sc.save_as(str(path), enforce_file_format=True)
        written.append(path)
    return written


def sitk_affine(image) -> np.ndarray:
    """The RAS ``(4, 4)`` affine of a SimpleITK image, for array axes ordered ``(x, y, z)``."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    lps = direction * np.asarray(image.GetSpacing())[None, :]
    affine = np.eye(4)
    affine[:3, :3] = LPS_FROM_RAS @ lps
    affine[:3, 3] = LPS_FROM_RAS @ np.asarray(image.GetOrigin())
    return affine


def reformat(array: np.ndarray, affine: np.ndarray, orientation: str) -> tuple[np.ndarray, np.ndarray]:
    """Reorder a sagittal volume ``(H, W, D)`` (IPR convention) so its slices are ``orientation``.

    ``sagittal`` keeps it; ``axial`` makes array axis 0 (superior-inferior) the slice axis,
    ``coronal`` array axis 1 (anterior-posterior). The affine's columns are permuted with the
    axes, so every voxel keeps its world position.
    """
    perms: dict[str, Sequence[int]] = {"sagittal": (0, 1, 2), "axial": (1, 2, 0), "coronal": (0, 2, 1)}
    perm = perms[orientation]
    out = np.eye(4)
    out[:3, :3] = np.asarray(affine)[:3, list(perm)]
    out[:3, 3] = np.asarray(affine)[:3, 3]
    return np.ascontiguousarray(np.transpose(array, perm)), out
