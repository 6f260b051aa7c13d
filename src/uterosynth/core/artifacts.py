"""Writing artifacts safely: atomic output folders, provenance-stamped JSON, checksums.

Every stage writes into a temporary sibling folder and renames it into place only when the
work is complete, so an interrupted or failed command never leaves a half-written artifact.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from .errors import DataError

__all__ = [
    "atomic_output_dir",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_free",
    "provenance",
    "read_json",
    "replace_dir",
    "sha256_file",
    "write_json",
]


def check_output_free(out: str | Path, *, overwrite: bool = False) -> None:
    """Refuse an existing output folder ``out`` unless ``overwrite`` is set.

    Raises:
        DataError: ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out}: output folder already exists; choose another output folder or set overwrite "
                        "to replace it", keys=("out", "overwrite"))


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` when the block finishes without error.

    Raises:
        DataError: ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    check_output_free(out, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out)


def replace_dir(src: str | Path, out: str | Path) -> None:
    """Move the complete folder ``src`` to ``out`` by renames, replacing any folder there.

    An existing ``out`` is first renamed to ``.<name>.old-<pid>`` and removed only once ``src``
    is in place, so a kill between the two renames leaves a complete folder under one of the
    names (:func:`uterosynth.core.checkpoint.find_checkpoint` recovers it for checkpoints).
    """
    src, out = Path(src), Path(out)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        src.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        src.rename(out)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def provenance(config: Any = None, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """The block every JSON artifact carries: package version, config, seed, time, platform."""
    import torch

    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    return {
        "uterosynth_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "config": config,
        "python": platform.python_version(),
        "torch": torch.__version__,
        **extra,
    }


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON artifact; a missing or broken file is a :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
