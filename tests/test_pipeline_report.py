"""A pipeline's ``report.html`` leads with the answer, embeds each thumbnail once, stays small."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import fake_evaluation, make_prepared_dataset, make_synthetic_set
from uterosynth.core.errors import DataError
from uterosynth.pipeline import PipelineFailed, Stage, run_stages
from uterosynth.pipeline_report import MAX_REPORT_BYTES, PER_CLASS, write_report

CLASSES = ("AVAF", "RVRF")


def _stage(out: Path, name: str, command: str, **options) -> Stage:
    return Stage(name, f"stage {name}", (command, "--out", str(out / name)), "done", command=command,
                 options={"out": str(out / name), **options})


def _pipeline(out: Path, *, n: int = 8, shape: tuple[int, int] = (32, 32), force: bool = True,
              release: bool = True) -> list[Stage]:
    """Folders of a finished chain: prepared data, samples, evaluation (and a release)."""
    make_prepared_dataset(out / "prepared", shape=shape, subjects=8, items_per_subject=3,
                          attributes={"orientation": list(CLASSES)})
    rng = np.random.default_rng(0)
    conds = [{"orientation": CLASSES[i % 2]} for i in range(n)]
    syn = make_synthetic_set(out / "samples", rng.random((n, *shape)).astype(np.float32), conds)
    fake_evaluation(out / "evaluation", syn, {"AVAF": n // 2, "RVRF": n // 4}, n // 2, classes=CLASSES,
                    on_reference={"AVAF": 3, "RVRF": 4})
    stages = [
        _stage(out, "prepared", "prepare"),
        _stage(out, "samples", "sample"),
        _stage(out, "evaluation", "evaluate", real=f"{out / 'prepared'}:train", synthetic=str(syn)),
    ]
    if release:
        (out / "release").mkdir()
        (out / "release" / "DATASHEET.md").write_text("# Datasheet\n")
        stages.append(_stage(out, "release", "release", evaluation=str(out / "evaluation"), force=force))
    return stages


def _answer(page: str) -> str:
    match = re.search(r'<section id="answer">(.*?)</section>', page, re.S)
    assert match, "no answer section"
    return match.group(1)


def test_report_leads_with_the_answer(tmp_path):
    stages = _pipeline(tmp_path)
    page = write_report(tmp_path, stages, title="t").read_text()
    answer = _answer(page)
    assert page.index('id="answer"') < page.index("<h2>stage prepared</h2>")  # before every stage section
    rows = re.findall(r"<tr><td>(AVAF|RVRF)</td><td>(.*?)</td><td>(.*?)</td></tr>", answer, re.S)
    assert [r[0] for r in rows[:2]] == list(CLASSES)  # the grid: one row per requested class
    for _, synthetic, real in rows[:2]:
        assert synthetic.count("<svg") == PER_CLASS and real.count("<svg") == PER_CLASS
    assert "prepared:train" in answer  # real items of the evaluation's reference
    judge = re.findall(r"<tr><td>(AVAF|RVRF)</td><td class=\"num\">([\d.]+)</td><td class=\"num\">\[(.*?)\]</td>",
                       answer)
    assert judge == [("AVAF", "1", "0.51, 1"), ("RVRF", "0.5", "0.15, 0.85")]  # 4/4 and 2/4, Wilson 95 %
    assert "<th>on real training items</th>" in answer
    assert '<td class="num">0.75 [0, 1] (4 subjects)</td>' in answer  # the judge's reading of real AVAF items
    for label, value in [("synthetic (the model)", "0.012"), ("real vs real (noise floor)", "0.01"),
                         ("baseline: reconstruction", "0.004"), ("baseline: prior", "0.05")]:
        assert re.search(rf"<td>{re.escape(label)}</td><td class=\"num\">{value}</td>", answer), label
    assert "made with <code>--force</code>" in answer and "release/DATASHEET.md" in answer


def test_report_names_the_notice_and_a_refused_release_at_the_top(tmp_path):
    stages = _pipeline(tmp_path, force=False)
    page = write_report(tmp_path, stages, title="t", notice="Smoke run: not expected to work",
                        failures={"release": "the samples fail the fidelity bar"}).read_text()
    notice, failed = page.index('id="notice"'), page.index("Stage release failed:")
    assert notice < failed < page.index('id="answer"')
    assert "<b>Release: refused.</b> the samples fail the fidelity bar" in _answer(page)


def test_report_without_an_evaluation_shows_the_grid_only(tmp_path):
    stages = _pipeline(tmp_path, release=False)[:2]
    answer = _answer(write_report(tmp_path, stages, title="t").read_text())
    assert "Samples per class" in answer and "Does the judge" not in answer and "KID" not in answer


def test_report_stays_small_and_embeds_each_image_once(tmp_path):
    """256 samples of 256 × 256 noise (the worst case for PNG) and the linked stage pictures."""
    stages = _pipeline(tmp_path, n=256, shape=(256, 256))
    page = write_report(tmp_path, stages, title="t").read_text()
    assert len(page.encode()) < MAX_REPORT_BYTES
    embedded = re.findall(r'<image id="(\w+)"', page)
    used = re.findall(r'<use href="#(\w+)"', page)
    assert len(embedded) == len(set(embedded)) and set(used) == set(embedded)
    assert len(used) == 4 * PER_CLASS and len(page.encode()) < 400_000  # thumbnails only
    assert "samples/previews/000000.png" in page and "data:image/png;base64" not in page.split("</svg>", 1)[1]


def test_the_same_real_item_shown_twice_is_embedded_once(tmp_path):
    stages = _pipeline(tmp_path)
    manifest = tmp_path / "prepared" / "manifest.csv"
    lines = manifest.read_text().splitlines()
    first = next(line for line in lines[1:] if ",train," in line and "AVAF" in line)
    manifest.write_text("\n".join([lines[0], *[first] * 6, *lines[1:]]) + "\n")  # one item, many rows
    page = write_report(tmp_path, stages, title="t").read_text()
    embedded, used = re.findall(r'<image id="(\w+)"', page), re.findall(r'<use href="#(\w+)"', page)
    assert len(used) == 4 * PER_CLASS and len(embedded) == 3 * PER_CLASS + 1


def test_a_failed_stage_on_continue_lets_the_chain_finish_then_fails_it(tmp_path):
    stages = _pipeline(tmp_path, force=False)
    ran = []

    def fake(stage, args):
        ran.append(stage.name)
        if stage.name == "release_x":
            raise DataError("release: the samples fail the fidelity bar")

    todo = [Stage(s.name + "_x", s.title, s.args, "done", command=s.command, options=s.options,
                  on_failure="continue" if s.name == "release" else "stop") for s in stages]
    todo.append(Stage("reader", "reader study", ("reader-study", "create"), "done", command="reader-study create"))
    with pytest.raises(PipelineFailed, match="release_x") as info:
        run_stages(tmp_path, todo, title="t", run_command=fake)
    assert ran == [s.name for s in todo]  # the reader study still ran
    assert set(info.value.failures) == {"release_x"} and isinstance(info.value.timings["reader"], float)
    assert "Stage release_x failed:" in (tmp_path / "report.html").read_text()


def test_a_failed_stage_stops_the_chain_and_still_writes_the_report(tmp_path):
    ran = []

    def fake(stage, args):
        ran.append(stage.name)
        raise DataError("broken")

    todo = [Stage(name, name, (name,), "done", command="phantom") for name in ("a", "b")]
    with pytest.raises(PipelineFailed):
        run_stages(tmp_path, todo, title="t", run_command=fake)
    assert ran == ["a"] and "Stage a failed:</b> broken" in (tmp_path / "report.html").read_text()


def test_an_unreadable_artifact_is_named_not_fatal(tmp_path):
    stages = _pipeline(tmp_path)
    (tmp_path / "samples" / "metadata.jsonl").write_text("x\n")  # a stage cut short, or a broken file
    answer = _answer(write_report(tmp_path, stages, title="t").read_text())
    assert "Not shown:" in answer and "metadata.jsonl: line 1 is not valid JSON" in answer
    assert "Does the judge see the requested class?" in answer  # the rest of the answer is still there


def test_each_stage_section_states_its_time_and_training_steps(tmp_path):
    import json

    stages = _pipeline(tmp_path, release=False)
    train = Stage("train", "stage train", ("train diffusion", "--out", str(tmp_path / "train")), "summary.json",
                  resumable=True, command="train diffusion", options={"out": str(tmp_path / "train")})
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "summary.json").write_text(json.dumps({"steps": 2000}))
    timings = {"prepared": "done earlier", "samples": 12.34, "evaluation": "failed: boom", "train": 543.21}
    page = write_report(tmp_path, [*stages, train], title="t", timings=timings).read_text()
    section = {m[0]: m[1] for m in re.findall(r"<h2>stage (\w+)</h2>(.*?)(?=<h2>|</body>)", page, re.S)}
    assert "time: done earlier" in section["prepared"] and "time: 12.3 s" in section["samples"]
    assert "time:" not in section["evaluation"] and "training steps" not in section["samples"]
    assert "time: 543.2 s · 2000 training steps" in section["train"]


def test_the_phantom_preview_in_its_stage_folder_is_embedded(tmp_path):
    """The preview lies in the phantom stage's folder (a study links that folder into every cell), and
    the page carries it, so the report shows it wherever the folder came from."""
    from uterosynth.core.imageio import write_png

    stages = _pipeline(tmp_path, release=False)
    (tmp_path / "phantom").mkdir()
    write_png(tmp_path / "phantom" / "preview.png", np.linspace(0, 1, 24 * 36).reshape(24, 36))
    with_preview = [_stage(tmp_path, "phantom", "phantom", preview=str(tmp_path / "phantom" / "preview.png")), *stages]
    page = write_report(tmp_path, with_preview, title="t").read_text()
    assert re.search(r'<svg class="embedded" role="img" aria-label="phantom preview" width="540" height="360"', page)
    (tmp_path / "phantom" / "preview.png").unlink()
    assert 'aria-label="phantom preview"' not in write_report(tmp_path, with_preview, title="t").read_text()
