"""``SHA256SUMS``: one ``<sha256>  <relative path>`` line per file, verifiable with ``sha256sum -c``."""

from __future__ import annotations

from pathlib import Path

from ..core.artifacts import sha256_file
from ..core.errors import DataError

__all__ = ["write_sha256sums", "verify_sha256sums"]


def write_sha256sums(root: str | Path, name: str = "SHA256SUMS") -> Path:
    """Checksum every file under ``root`` (except the sums file itself), sorted by path."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != name)
    lines = [f"{sha256_file(p)}  {p.relative_to(root).as_posix()}" for p in files]
    out = root / name
    out.write_text("\n".join(lines) + "\n")
    return out


def verify_sha256sums(root: str | Path, name: str = "SHA256SUMS") -> list[str]:
    """Paths whose checksum does not match (empty when the folder is intact)."""
    root = Path(root)
    sums = root / name
    if not sums.is_file():
        raise DataError(f"{sums}: not found")
    bad = []
    for line in sums.read_text().splitlines():
        digest, rel = line.split("  ", 1)
        path = root / rel
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(rel)
    return bad
