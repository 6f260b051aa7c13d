"""The demo-identity check sets aside time and location, and nothing else."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_identity.py"
spec = importlib.util.spec_from_file_location("demo_identity", SCRIPT)
demo_identity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo_identity)


def _tree(root: Path, *, created: str, value: float, study_id: str, preset_root: str) -> Path:
    (root / "11_evaluation").mkdir(parents=True)
    (root / "11_evaluation" / "metrics.json").write_text(json.dumps(
        {"provenance": {"created": created, "out": str(root)}, "kid": {"value": value}, "timings_s": {"x": value}}
    ))
    (root / "report.html").write_text(
        f"<p>made {created} in 3.2 s</p><code>--config {preset_root}/uterosynth/configs/ae.yaml</code>"
    )
    (root / "14_reader_study").mkdir()
    (root / "14_reader_study" / "study.json").write_text(json.dumps({"study_id": study_id, "n": 8}))
    (root / "items.bin").write_bytes(b"\x00\x01")
    return root


def test_runs_that_differ_in_time_location_and_random_ids_are_identical(tmp_path):
    a = _tree(tmp_path / "a", created="2026-01-01T10:00:00+00:00", value=0.5, study_id="ab" * 16,
              preset_root="/x/src")
    b = _tree(tmp_path / "b", created="2026-02-02T11:11:11+00:00", value=0.5, study_id="cd" * 16,
              preset_root="/y/site-packages")
    assert demo_identity.compare(a, b) == []


def test_a_changed_value_or_file_is_reported(tmp_path):
    a = _tree(tmp_path / "a", created="2026-01-01T10:00:00+00:00", value=0.5, study_id="ab" * 16, preset_root="/x")
    b = _tree(tmp_path / "b", created="2026-01-01T10:00:00+00:00", value=0.25, study_id="ab" * 16, preset_root="/x")
    (b / "items.bin").write_bytes(b"\x00\x02")
    (b / "extra.txt").write_text("new")
    problems = demo_identity.compare(a, b)
    assert "differs: 11_evaluation/metrics.json" in problems
    assert "differs: items.bin" in problems
    assert any(p.startswith("only in") and p.endswith("extra.txt") for p in problems)


def test_reader_study_files_are_compared_apart_from_their_random_draw(tmp_path):
    """Ids, tokens, presentation order and the position rule follow the study's random draw; long
    decimals are numbers, not ids."""
    def study(root: Path, ids: list[str], position_correct: int, ci: float) -> Path:
        folder = root / "16_reader_study"
        folder.mkdir(parents=True)
        entries = [{"source": "real", "origin": "a.nii.gz"}, {"source": "synthetic", "origin": "b.nii.gz"}]
        (folder / "key.json").write_text(json.dumps({"items": dict(zip(ids, entries, strict=True))}))
        (folder / "check.json").write_text(json.dumps({"study_id": ids[0], "rules": [
            {"rule": "position", "correct": position_correct}, {"rule": "png_bytes", "correct": 5, "ci95": [ci, 0.9]}]}))
        return root

    a = study(tmp_path / "a", ["ab" * 16, "cd" * 16], 7, 0.30283093372222634)
    b = study(tmp_path / "b", ["ef" * 16, "0a" * 16][::-1], 4, 0.30283093372222634)
    assert demo_identity.compare(a, b) == []
    c = study(tmp_path / "c", ["ab" * 16, "cd" * 16], 7, 0.10182067491213048)
    assert demo_identity.compare(a, c) == ["differs: 16_reader_study/check.json"]
