"""``uterosynth phantom``: outputs, preview, JSON summary and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from uterosynth.cli import main
from uterosynth.core.errors import ConfigError, DataError, UserError
from uterosynth.phantom import PhantomConfig, estimate_orientation, write_cohort
from uterosynth.phantom.fields import smooth_field
from uterosynth.phantom.shapes import Ellipsoid, Grid, Tube

SMALL = {"geometry": {"matrix": [96, 96], "spacing": [2.6, 2.6, 4.0], "slices": 12, "supersample": 1}}


@pytest.fixture
def small_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0)


@pytest.mark.slow
def test_cli_writes_cohort_preview_and_json(tmp_path, small_yaml, capsys):
    out, png = tmp_path / "cohort", tmp_path / "prev" / "grid.png"
    code = run(["phantom", "--out", str(out), "--subjects", "2", "--seed", "7", "--config", str(small_yaml),
                "--preview", str(png), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["subjects"] == 2 and sum(summary["classes"].values()) == 2
    assert sorted(p.name for p in out.iterdir()) == ["UMD_240101_001", "UMD_240101_002", "labels.csv", "phantom.json"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg

    grid = mpimg.imread(png)
    assert grid.shape[0] > 600 and grid.shape[1] > 600 and grid[..., :3].std() > 0.1


def test_cli_existing_out_is_one_line_error(tmp_path, small_yaml, capsys):
    out = tmp_path / "cohort"
    out.mkdir()
    assert run(["phantom", "--out", str(out), "--subjects", "1", "--config", str(small_yaml)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err and "--overwrite" in err
    assert run(["phantom", "--out", str(out), "--subjects", "1", "--config", str(small_yaml), "--overwrite"]) == 0
    assert (out / "labels.csv").is_file()


def test_cli_bad_config_key_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("geometry:\n  matrx: [64, 64]\n")
    assert run(["phantom", "--out", str(tmp_path / "o"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "geometry.matrx" in err and "unknown key" in err
    assert not (tmp_path / "o").exists()


def test_cli_bad_override_value(tmp_path, small_yaml, capsys):
    assert run(["phantom", "--out", str(tmp_path / "o"), "--config", str(small_yaml),
                "--set", "geometry.supersample=9"]) == 2
    assert "geometry.supersample" in capsys.readouterr().err


def test_preview_must_be_png(tmp_path):
    with pytest.raises(UserError, match="expected a .png"):
        write_cohort(PhantomConfig(subjects=1, **SMALL), tmp_path / "o", preview=tmp_path / "grid.jpg")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "bad",
    [
        {"anatomy": {"class_weights": {"AVAF": 0.0}}},
        {"anatomy": {"class_weights": {"XXXX": 1.0}}},
        {"anatomy": {"fat_thickness_mm": [30.0, 10.0]}},
        {"anatomy": {"bladder_filling": [0.0, 1.5]}},
        {"acquisition": {"snr_3t": [40.0, 30.0]}},
        {"acquisition": {"snr_15t": [-1.0, 20.0]}},
        {"geometry": {"matrix": [8, 320]}},
        {"geometry": {"spacing": [0.8, 0.8, 0.0]}},
        {"study_date": "2024-01-01"},
    ],
)
def test_config_rejects_bad_values(bad):
    from uterosynth.core.config import validate_config

    with pytest.raises(ConfigError):
        validate_config(PhantomConfig, bad)


def test_orientation_needs_a_uterus():
    with pytest.raises(DataError, match="labels 1-2"):
        estimate_orientation(np.zeros((8, 8, 8), np.uint8), np.eye(4))


def test_ellipsoid_and_tube_volumes_match_geometry():
    grid = Grid((120, 120, 60), np.array([-30.0, -30.0, -30.0]), np.diag([0.5, 0.5, 1.0]))
    tissue = np.zeros(grid.shape, np.uint8)
    Ellipsoid([0, 0, 0], (20, 10, 8), [(0, 1), (3, 2)]).paint(tissue, grid)
    voxel = 0.5 * 0.5 * 1.0
    assert abs((tissue > 0).sum() * voxel / (4 / 3 * np.pi * 20 * 10 * 8) - 1) < 0.03
    assert abs((tissue == 2).sum() * voxel / (4 / 3 * np.pi * 17 * 7 * 5) - 1) < 0.05
    tissue[:] = 0
    pts = np.array([[0, 0, -20.0], [0, 0, 0.0], [0, 0, 20.0]])  # straight capsule along the grid's third axis
    Tube(pts, np.full((1, 3, 2), 6.0), [5]).paint(tissue, Grid((120, 120, 60), np.array([-30.0, -30.0, -30.0]),
                                                                np.diag([0.5, 0.5, 1.0])))
    expected = np.pi * 36 * 40 + 4 / 3 * np.pi * 216
    assert abs((tissue == 5).sum() * voxel / expected - 1) < 0.04
    far = np.zeros(grid.shape, np.uint8)
    Ellipsoid([500, 0, 0], (5, 5, 5), [(0, 1)]).paint(far, grid)  # outside the grid: nothing painted
    assert not far.any()


def test_smooth_field_unit_variance_and_deterministic():
    a = smooth_field(np.random.default_rng(0), (64, 64, 16), (6.0, 6.0, 2.0))
    b = smooth_field(np.random.default_rng(0), (64, 64, 16), (6.0, 6.0, 2.0))
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert 0.7 < a.std() < 1.3 and abs(np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]) > 0.8
