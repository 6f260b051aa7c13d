"""Reading and writing scans with their geometry: NIfTI, DICOM series, MHA/NRRD.

Every reader returns a :class:`Scan`: a float32 array in NIfTI voxel order ``(i, j, k)`` and
a 4x4 affine mapping voxel indices to RAS+ world millimetres (the NIfTI convention). DICOM and
ITK formats (MHA/NRRD) are read with SimpleITK, whose geometry is in LPS; it is converted to
RAS (``diag(-1, -1, 1)``) so every source ends up in one convention.

NIfTI files are recognised by their bytes, not their names: files named ``.gz`` that are not
actually gzip-compressed (a known quirk of the UMD archive) are read as plain NIfTI.

Nothing from DICOM headers other than pixel data and geometry is kept, so no identifying
attribute can leak into prepared outputs.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from ..core.errors import DataError

__all__ = [
    "CANONICAL",
    "IMAGE_SUFFIXES",
    "Scan",
    "is_dicom_file",
    "is_image_file",
    "read_scan",
    "reorient",
]

#: Canonical orientation of prepared items (see docs/ARCHITECTURE.md): axis 0 superior →
#: inferior, axis 1 anterior → posterior, axis 2 left → right (the sagittal slice axis).
CANONICAL: tuple[str, str, str] = ("I", "P", "R")

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
_GZIP_MAGIC = b"\x1f\x8b"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Scan:
    """A volume and its geometry.

    Attributes:
        array: ``(X, Y, Z)`` float32 (labels: integer) voxels in NIfTI order.
        affine: ``(4, 4)`` float64 voxel → RAS+ world (mm).
        path: where the scan was read from (for error messages).
    """

    array: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    digest: str = field(default="", compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size along each array axis (mm), from the affine's column norms."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def axcodes(self) -> tuple[str, ...]:
        return tuple(nib.aff2axcodes(self.affine))

    def world(self, index: np.ndarray | tuple[float, ...]) -> np.ndarray:
        """World (RAS mm) coordinates of voxel ``index`` ``(..., 3)``."""
        idx = np.asarray(index, dtype=np.float64)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]


def _name(path: Path) -> str:
    return path.name.lower()


def is_image_file(path: Path) -> bool:
    """A NIfTI/MHA/NRRD file by name (AppleDouble ``._*`` files excluded)."""
    name = _name(path)
    return path.is_file() and not name.startswith("._") and name.endswith(IMAGE_SUFFIXES)


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part-10 file (``DICM`` at byte 128) or a file named ``.dcm``."""
    if not path.is_file() or path.name.startswith("._"):
        return False
    if _name(path).endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
    return h.hexdigest()


def _read_nifti(path: Path, *, label: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    raw = path.read_bytes()
    if not raw:
        raise DataError(f"{path}: empty file (0 bytes); re-export or remove the scan")
    digest = _digest(raw)  # of the file's bytes: cheaper than hashing the decoded voxels
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise DataError(f"{path}: truncated or corrupt gzip data ({err}); re-download the file") from err
    if len(raw) < 348:
        raise DataError(f"{path}: not a NIfTI image (only {len(raw)} bytes; a NIfTI header alone is 348)")
    sizeof_hdr = int.from_bytes(raw[:4], "little")
    if sizeof_hdr not in (348, 540):
        sizeof_hdr = int.from_bytes(raw[:4], "big")
    klass = {348: nib.Nifti1Image, 540: nib.Nifti2Image}.get(sizeof_hdr)
    if klass is None:
        raise DataError(f"{path}: not a NIfTI image (no valid NIfTI header); expected a .nii/.nii.gz scan")
    try:
        img = klass.from_bytes(raw)
        unscaled = getattr(img.dataobj, "slope", 1.0) == 1.0 and getattr(img.dataobj, "inter", 0.0) == 0.0
        integer = label and np.issubdtype(img.get_data_dtype(), np.integer) and unscaled
        array = np.asarray(img.dataobj) if integer else np.asarray(img.dataobj, dtype=np.float32)
    except Exception as err:  # nibabel raises many types for damaged files
        msg = str(err).splitlines()[0]
        raise DataError(f"{path}: truncated or corrupt NIfTI ({msg}); re-export or remove the scan") from err
    return array, np.asarray(img.affine, dtype=np.float64), digest


def _sitk_to_array_affine(image) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK image (LPS geometry, array ``(z, y, x)``) → NIfTI-order array + RAS affine."""
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{image.GetNumberOfComponentsPerPixel()} components per voxel; expected a scalar image")
    dim = image.GetDimension()
    array = sitk.GetArrayViewFromImage(image).astype(np.float32).transpose(tuple(range(dim))[::-1])
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    if dim == 2:  # embed in 3D so geometry stays expressible as a NIfTI affine
        direction = np.block([[direction, np.zeros((2, 1))], [np.zeros((1, 2)), np.ones((1, 1))]])
        spacing, origin = np.append(spacing, 1.0), np.append(origin, 0.0)
    elif dim != 3:
        raise ValueError(f"{dim}D image; expected 3D")
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(spacing)
    affine[:3, 3] = _LPS_TO_RAS @ origin
    return array, affine


def _read_itk(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    import SimpleITK as sitk

    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); re-export or remove the scan")
    try:
        array, affine = _sitk_to_array_affine(sitk.ReadImage(str(path)))
    except (RuntimeError, ValueError) as err:
        msg = str(err).strip().splitlines()[-1][:200]
        raise DataError(f"{path}: cannot read image ({msg}); expected a scalar MHA/NRRD volume") from err
    return array, affine, _digest(affine.tobytes(), memoryview(np.ascontiguousarray(array)).cast("B"))


def _read_dicom_series(folder: Path) -> tuple[np.ndarray, np.ndarray, str]:
    import locale

    saved = locale.setlocale(locale.LC_ALL)  # GDCM may switch the process locale to "C"
    try:
        return _read_dicom_series_impl(folder)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _read_dicom_series_impl(folder: Path) -> tuple[np.ndarray, np.ndarray, str]:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    try:
        series = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as err:
        raise DataError(f"{folder}: cannot scan for DICOM series ({err})") from err
    if not series:
        raise DataError(f"{folder}: no DICOM series found (expected a folder of .dcm slices)")
    files_per_series = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series}
    files = max(files_per_series.values(), key=len)  # the series with the most slices
    files = [f for f in files if not Path(f).name.startswith("._")]
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOff()  # pixel data + geometry only: no header values kept
    try:
        array, affine = _sitk_to_array_affine(reader.Execute())
    except (RuntimeError, ValueError) as err:
        msg = str(err).strip().splitlines()[-1][:200]
        raise DataError(f"{folder}: cannot read DICOM series ({msg})") from err
    return array, affine, _digest(affine.tobytes(), memoryview(np.ascontiguousarray(array)).cast("B"))


def read_scan(path: str | Path, *, require_3d: bool = True, label: bool = False) -> Scan:
    """Read a NIfTI file, an MHA/NRRD file or a DICOM series folder, keeping its geometry.

    Args:
        path: a ``.nii``/``.nii.gz`` (compressed or not, whatever the name says),
            ``.mha``/``.mhd``/``.nrrd``/``.nhdr`` file, or a folder of DICOM slices.
        require_3d: reject any image that is not a volume (fewer than three axes longer
            than one voxel).
        label: the file is a label map: values are rounded to integers (``int16``).

    Returns:
        A :class:`Scan` with ``array`` ``(X, Y, Z)`` and its RAS affine.

    Raises:
        DataError: file missing, empty, truncated, not an image, 2D when 3D is needed,
            or containing NaN/Inf.
    """
    path = Path(path)
    if path.is_dir():
        array, affine, digest = _read_dicom_series(path)
    elif not path.exists():
        raise DataError(f"{path}: file not found")
    elif _name(path).endswith(ITK_SUFFIXES):
        array, affine, digest = _read_itk(path)
    elif _name(path).endswith(NIFTI_SUFFIXES) or _name(path).endswith(".gz"):
        array, affine, digest = _read_nifti(path, label=label)
    else:
        raise DataError(
            f"{path}: not an image file (expected .nii, .nii.gz, .mha, .mhd, .nrrd or a folder of DICOM slices)"
        )
    while array.ndim > 3 and array.shape[-1] == 1:  # (X, Y, Z, 1) time/component axis
        array = array[..., 0]
    if array.ndim > 3:
        raise DataError(f"{path}: {array.ndim}D image of shape {array.shape}; expected one 3D volume")
    if array.ndim < 3:
        array = array.reshape(array.shape + (1,) * (3 - array.ndim))
    if require_3d and sum(s > 1 for s in array.shape) < 3:
        shape = "x".join(map(str, array.shape))
        raise DataError(f"{path}: image is 2D (shape {shape}); a 3D volume with several slices is needed")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise DataError(f"{path}: image contains {bad} NaN/Inf voxel(s); fix or remove the scan")
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{path}: invalid geometry (singular or non-finite affine); check the header")
    if label:
        array = array.astype(np.int16) if array.dtype.kind in "iu" else np.rint(array).astype(np.int16)
    return Scan(array=array, affine=affine, path=path, digest=digest)


def reorient(scan: Scan, axcodes: tuple[str, str, str] = CANONICAL) -> Scan:
    """Permute/flip the array so its axes point along ``axcodes``, updating the affine.

    Uses nibabel's orientation tools (``io_orientation`` → ``ornt_transform`` →
    ``apply_orientation``; the affine is right-multiplied by ``inv_ornt_aff``), so every voxel
    keeps its world position. No interpolation happens.
    """
    current = nio.io_orientation(scan.affine)
    target = nio.axcodes2ornt(axcodes)
    transform = nio.ornt_transform(current, target)
    if np.array_equal(transform, nio.axcodes2ornt(("R", "A", "S"))):  # identity
        return scan
    array = nio.apply_orientation(scan.array, transform)
    affine = scan.affine @ nio.inv_ornt_aff(transform, scan.array.shape)
    return Scan(array=np.ascontiguousarray(array), affine=affine, path=scan.path, digest=scan.digest)
