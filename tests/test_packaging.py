"""The built wheel carries what an installed uterosynth needs outside the source tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from uterosynth.demo import demo_stages
from uterosynth.pipeline import PRESETS

REPO = Path(__file__).resolve().parents[1]


def test_repository_configs_are_the_packaged_presets():
    assert (REPO / "configs").resolve() == PRESETS
    assert (PRESETS / "ldm2d_demo.yaml").is_file()


@pytest.mark.slow
def test_wheel_ships_every_preset_the_demo_uses(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    wheel, = (tmp_path / "dist").glob("uterosynth-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "uterosynth/templates/pipeline_report.html.j2" in names  # the pipeline report's page
    shipped = {Path(n).name for n in names if n.startswith("uterosynth/configs/")}
    assert {p.name for p in PRESETS.glob("*.yaml")} <= shipped
    used = {Path(a).name for dims in (2, 3) for stage in demo_stages(tmp_path / "demo", quick=False, dims=dims)
            for a in stage.args if a.endswith(".yaml")}
    assert used and used <= shipped
