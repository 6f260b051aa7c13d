import hashlib
from pathlib import Path

import pytest

from uterosynth import __version__
from uterosynth.core.artifacts import atomic_output_dir, provenance, read_json, sha256_file, write_json
from uterosynth.core.errors import UserError


def test_atomic_dir_renames_on_success(tmp_path: Path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("x")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_leaves_nothing_on_failure(tmp_path: Path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_existing_unless_overwrite(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(UserError, match="already exists"), atomic_output_dir(out):
        pass
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new"]


def test_json_roundtrip_with_provenance(tmp_path: Path):
    data = {"provenance": provenance({"a": 1}, seed=3), "path": tmp_path}
    write_json(tmp_path / "x.json", data)
    back = read_json(tmp_path / "x.json")
    assert back["provenance"]["uterosynth_version"] == __version__
    assert back["provenance"]["seed"] == 3 and back["provenance"]["config"] == {"a": 1}
    assert back["path"] == str(tmp_path)


def test_read_json_errors(tmp_path: Path):
    with pytest.raises(UserError, match="not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_sha256(tmp_path: Path):
    (tmp_path / "f").write_bytes(b"abc" * 1000)
    assert sha256_file(tmp_path / "f", chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
