"""``uterosynth distill``: couplings from the teacher, a student with guidance as input, resume, sampling, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_prepared_dataset
from uterosynth.core.config import load_config
from uterosynth.core.errors import ConfigError, DataError
from uterosynth.data.image_set import load_synthetic
from uterosynth.diffusion.conditions import ConditionVocabulary
from uterosynth.diffusion.guidance import embedded_scales, guided_denoiser
from uterosynth.diffusion.samplers import build_sampler
from uterosynth.distill import DEFAULT_RANGE, Couplings, DistillConfig, distill, merge_shards
from uterosynth.models.diffusion import load_diffusion
from uterosynth.models.diffusion_unet import ConditionedUNet, UNetConfig
from uterosynth.sampling.generate import SampleConfig, generate
from uterosynth.training.diffusion import DiffusionTrainConfig, train_diffusion

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("teacher")
    data = make_prepared_dataset(root / "data", dims=2, shape=(16, 16), subjects=6, items_per_subject=1)
    cfg = load_config(DiffusionTrainConfig, "configs/ddpm2d_cpu.yaml", overrides={"train.steps": 2, "train.val_every": 100})
    train_diffusion(cfg, data, root / "run", progress=False)
    return root / "run"


def _cfg(**kw) -> DistillConfig:
    base = {"pairs": 8, "student_steps": 2, "teacher_sampler": {"name": "ddim", "steps": 3}, "teacher_batch_size": 4,
            "guidance": {"orientation": [2.0, 4.0], "field_strength": [1.0, 2.0]},
            "runtime": {"device": "cpu", "precision": "fp32"},  # the coupling check re-runs the teacher in fp32
            "train": {"steps": 3, "batch_size": 4, "device": "cpu", "log_every": 1},
            "optimizer": {"lr": 1e-2}}
    return DistillConfig.model_validate({**base, **kw})


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory) -> Path:
    """A velocity student (a latent teacher's default; test_an_x0_student... covers the pixel default)."""
    out = tmp_path_factory.mktemp("student") / "run"
    distill(_cfg(prediction="v_prediction"), teacher, out, progress=False)
    return out


def test_student_records_its_teacher_schedule_and_guidance(teacher, student):
    t, s = load_diffusion(teacher), load_diffusion(student)
    d = s.meta["distilled"]
    assert s.schedule.objective == "rflow" and s.schedule.num_train_timesteps == t.schedule.num_train_timesteps
    assert d["method"] == "reflow" and d["student_steps"] == 2 and d["pairs"] == 8
    assert d["teacher"]["sha256"] == t.sha256
    assert d["guidance"] == {"names": ["orientation", "field_strength"],
                             "ranges": {"orientation": [2.0, 4.0], "field_strength": [1.0, 2.0]},
                             "default": {"orientation": 2.0, "field_strength": 1.0}}  # 1 where the range holds it
    # the student inherits the subjects its teacher learned from, so evaluation's overlap checks still apply
    assert s.training_subjects == t.training_subjects and s.training_subjects
    assert s.sample_shape == t.sample_shape and s.meta["geometry"] == t.meta["geometry"]
    assert s.unet.guidance_names == ["orientation", "field_strength"]


def test_student_provenance_is_its_own(teacher, tmp_path):
    """The student's model.json records the distillation's config and seed; the teacher's go under distilled.teacher."""
    distill(_cfg(seed=7, train={"steps": 1, "batch_size": 4, "device": "cpu"}), teacher, tmp_path / "s", progress=False)
    meta = json.loads((tmp_path / "s" / "checkpoint" / "model.json").read_text())
    t = load_diffusion(teacher)
    assert meta["seed"] == 7 and meta["config"]["method"] == "reflow" and meta["config"]["student_steps"] == 2
    assert meta["distilled"]["teacher"]["seed"] == t.meta["seed"] and meta["distilled"]["teacher"]["config"] == t.meta["config"]


def test_refused_teachers_and_samplers(teacher, student, tmp_path):
    with pytest.raises(ConfigError, match="already a distilled student"):
        distill(_cfg(teacher_sampler={"name": "rflow", "steps": 2}), student, tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="stochastic sampler"):
        distill(_cfg(teacher_sampler={"name": "ddpm", "steps": 2}), teacher, tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize(("kw", "message"), [
    ({"n": 2, "conditions": {"orientation": "AVAF"}}, "give field_strength too"),
    ({"per_class": 1, "sampler": {"name": "rflow", "steps": 3}}, r"distilled for 2 Euler steps \(times 100, 50\)"),
])
def test_student_runs_outside_its_training_are_refused(student, tmp_path, kw, message):
    cfg = SampleConfig.model_validate({"sampler": {"name": "rflow", "steps": 2}, "runtime": {"device": "cpu"}, **kw})
    with pytest.raises(ConfigError, match=message):
        generate(student, cfg, tmp_path / "syn")
    assert not (tmp_path / "syn").exists()


def test_one_step_on_a_two_step_grid_and_membership_of_a_student(student, teacher, tmp_path):
    cfg = SampleConfig.model_validate({"per_class": 1, "sampler": {"name": "rflow", "steps": 1}, "runtime": {"device": "cpu"}})
    assert generate(student, cfg, tmp_path / "syn")["items"] == 8
    from uterosynth.data.manifest import PreparedDataset
    from uterosynth.privacy.membership import MembershipConfig, denoising_errors

    data = PreparedDataset.load(load_diffusion(teacher).meta["dataset"])
    errors = denoising_errors(load_diffusion(student), data, MembershipConfig(timesteps=[0.1, 0.5], draws=1))
    assert errors.shape == (len(data.rows), 2) and (errors > 0).all()


def test_an_x0_student_records_its_output_and_samples_like_any_model(teacher, tmp_path):
    """prediction: auto gives the student the clean sample to learn (the sampler derives the velocity), for a
    pixel-space and a latent teacher alike."""
    model = load_diffusion(teacher)
    assert _cfg().for_teacher(model).prediction == "sample"
    model.meta["space"] = "latent"
    assert _cfg().for_teacher(model).prediction == "sample"
    assert _cfg(prediction="v_prediction").for_teacher(load_diffusion(teacher)).prediction == "v_prediction"
    out = tmp_path / "x0"
    distill(_cfg(), teacher, out, progress=False)
    s = load_diffusion(out)
    assert s.schedule.objective == "rflow" and s.schedule.prediction_type == "sample"
    assert json.loads((out / "checkpoint" / "model.json").read_text())["schedule"]["prediction_type"] == "sample"
    cfg = SampleConfig.model_validate({"per_class": 1, "sampler": {"name": "rflow", "steps": 2}, "runtime": {"device": "cpu"}})
    assert generate(out, cfg, tmp_path / "syn")["items"] == 8


def test_couplings_are_the_teachers_own_samples(teacher, student):
    """Coupling i is what the teacher's sampler makes from coupling i's noise, condition and scales."""
    t = load_diffusion(teacher)
    c = Couplings.load(student / "couplings", _cfg().for_teacher(t).digest(t.sha256))
    assert c is not None and len(c) == 8
    assert {r["orientation"] for r in c.conditions} == set(t.vocab.attributes["orientation"])  # balanced classes
    first = slice(0, 4)  # one teacher batch: one draw of the scales
    assert torch.equal(c.guidance[0].expand(4, -1), c.guidance[first]) and not torch.equal(c.guidance[0], c.guidance[4])
    w = dict(zip(["orientation", "field_strength"], c.guidance[0].tolist(), strict=True))
    assert 2 <= w["orientation"] <= 4 and 1 <= w["field_strength"] <= 2
    cond = t.codec.encode(c.conditions[first])
    sampler = build_sampler("ddim", t.schedule)
    with torch.no_grad():
        again = sampler.sample(guided_denoiser(t.unet, cond, t.vocab, w), c.noise[first], steps=3)
    torch.testing.assert_close(again, c.sample[first], rtol=1e-4, atol=1e-5)


def test_student_samples_with_one_pass_per_step(student, teacher, tmp_path, monkeypatch):
    calls: list[int] = []
    forward = ConditionedUNet.forward

    def counting(self, x, t, cond=None):
        calls.append(x.shape[0])
        return forward(self, x, t, cond)

    monkeypatch.setattr(ConditionedUNet, "forward", counting)
    runtime = {"device": "cpu", "batch_size": 8}
    summary = generate(student, SampleConfig.model_validate({"per_class": 1, "sampler": {"name": "rflow", "steps": 2},
                                                             "guidance": {"orientation": 3.5}, "runtime": runtime}),
                       tmp_path / "syn")
    assert summary["items"] == 8
    assert calls == [8, 8]  # 8 items x 2 steps, one pass each: no guidance branches
    records = [json.loads(line) for line in (tmp_path / "syn" / "metadata.jsonl").read_text().splitlines()]
    assert records[0]["guidance"] == {"orientation": 3.5, "field_strength": 1.0} and records[0]["steps"] == 2
    calls.clear()
    generate(teacher, SampleConfig.model_validate({"per_class": 1, "sampler": {"name": "ddim", "steps": 2},
                                                   "guidance": {"orientation": 3.5, "field_strength": 1.5},
                                                   "runtime": runtime}), tmp_path / "teacher_syn")
    assert calls == [3 * 8] * 2  # the teacher: a base branch and one per guided name, at each step


def test_student_guidance_input_changes_the_output(student):
    s = load_diffusion(student)
    cond = s.codec.encode([{"orientation": "AVAF", "field_strength": "3T"}] * 2)
    x, t = torch.randn(2, *s.sample_shape, generator=torch.Generator().manual_seed(0)), torch.full((2,), 50)
    with torch.no_grad():
        low = s.unet(x, t, cond.with_guidance(torch.tensor([2.0, 1.0])))
        high = s.unet(x, t, cond.with_guidance(torch.tensor([4.0, 2.0])))
    assert not torch.allclose(low, high)
    with pytest.raises(ValueError, match="takes its guidance scales"):
        s.unet(x, t, cond)


def test_guidance_embedding_starts_as_the_teacher(teacher):
    """Zero-initialised: before training, the student's output does not depend on the scales."""
    t = load_diffusion(teacher)
    unet = ConditionedUNet(2, 1, UNetConfig.model_validate(t.meta["network"]), t.codec, guidance_names=["orientation"])
    unet.load_state_dict(t.unet.state_dict(), strict=False)
    cond = t.codec.encode([{"orientation": "RVRF"}])
    x, ts = torch.randn(1, *t.sample_shape), torch.tensor([10])
    with torch.no_grad():
        a = unet(x, ts, cond.with_guidance(torch.tensor([1.0])))
        b = unet(x, ts, cond.with_guidance(torch.tensor([6.0])))
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, t.unet(x, ts, cond))


def test_resume_reuses_couplings_and_refuses_other_ones(teacher, tmp_path):
    out = tmp_path / "run"
    distill(_cfg(train={"steps": 2, "batch_size": 4, "device": "cpu"}), teacher, out, progress=False)
    stamp = (out / "couplings" / "couplings.safetensors").stat().st_mtime_ns
    summary = distill(_cfg(train={"steps": 4, "batch_size": 4, "device": "cpu"}), teacher, out, resume=True,
                      progress=False)
    assert summary["steps"] == 4 and summary["resumed_from"] == 2
    assert (out / "couplings" / "couplings.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="couplings of another config"):
        distill(_cfg(pairs=4, train={"steps": 6, "batch_size": 4, "device": "cpu"}), teacher, out, resume=True,
                progress=False)
    with pytest.raises(DataError, match="already exists"):
        distill(_cfg(), teacher, out, progress=False)
    # a resumed student keeps what it learned to output
    assert summary["prediction"] == "sample"
    with pytest.raises(DataError, match=r"\['sample', 2, 'grid'\], not \['v_prediction', 2, 'grid'\]"):
        distill(_cfg(prediction="v_prediction", train={"steps": 6, "batch_size": 4, "device": "cpu"}), teacher, out,
                resume=True, progress=False)


def test_default_guidance_covers_every_attribute(teacher):
    cfg = DistillConfig().for_teacher(load_diffusion(teacher))
    assert cfg.guidance == {"orientation": DEFAULT_RANGE, "field_strength": DEFAULT_RANGE}
    with pytest.raises(ConfigError, match="colour"):
        _cfg(guidance={"colour": [1, 2]}).for_teacher(load_diffusion(teacher))


@pytest.mark.parametrize(("guidance", "expected"), [
    (None, [3.0, 1.5]),
    ({"orientation": 4.0}, [4.0, 1.5]),
    ({"orientation": 2.0, "field_strength": 2.0}, [2.0, 2.0]),
])
def test_embedded_scales(guidance, expected):
    spec = {"names": ["orientation", "field_strength"], "ranges": {"orientation": [2, 4], "field_strength": [1, 2]},
            "default": {"orientation": 3.0, "field_strength": 1.5}}
    assert embedded_scales(spec, guidance) == expected


@pytest.mark.parametrize(("guidance", "message"), [
    ({"orientation": 5.0}, r"orientation=5: outside the range the student was distilled on \[2, 4\]"),
    ({"colour": 1.0}, "colour: the student was distilled for orientation, field_strength"),
    (3.0, "one scale per name"),
])
def test_embedded_scales_errors(guidance, message):
    spec = {"names": ["orientation", "field_strength"], "ranges": {"orientation": [2, 4], "field_strength": [1, 2]},
            "default": {"orientation": 3.0, "field_strength": 1.5}}
    with pytest.raises(ConfigError, match=message):
        embedded_scales(spec, guidance)


def test_one_scale_student_takes_a_number():
    spec = {"names": [""], "ranges": {"": [1, 5]}, "default": {"": 3.0}}
    assert embedded_scales(spec, 4.5) == [4.5] and embedded_scales(spec, None) == [3.0]


def test_condition_carries_guidance_through_batching():
    vocab = ConditionVocabulary(attributes={"orientation": ["AVAF", "RVRF"]})
    cond = vocab.encode([{"orientation": "AVAF"}, {"orientation": "RVRF"}]).with_guidance(torch.tensor([2.0]))
    assert cond.guidance.shape == (2, 1)
    both = type(cond).cat([cond, cond.keep_only([], vocab)])
    assert both.guidance.shape == (4, 1) and both.select(slice(1, 2)).guidance.tolist() == [[2.0]]


def test_config_errors():
    with pytest.raises(ValueError, match="low <= high"):
        _cfg(guidance={"orientation": [4, 2]})
    with pytest.raises(ValueError, match="not both"):
        _cfg(guidance={"": [1, 2], "orientation": [1, 2]})
    with pytest.raises(ValueError, match="train.augment"):
        _cfg(train={"augment": True})


def _cli(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "uterosynth", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=600)


@pytest.mark.slow
def test_cli_distill_then_sample(teacher, tmp_path):
    out = tmp_path / "student"
    res = _cli(["distill", "--teacher", str(teacher), "--out", str(out), "--steps", "1", "--set", "pairs=4",
                "--set", "teacher_sampler.name=ddim", "--set", "teacher_sampler.steps=2", "--set", "train.steps=2",
                "--set", "train.batch_size=4", "--set", "train.device=cpu", "--set", "runtime.device=cpu", "--json"],
               tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["student_steps"] == 1 and summary["pairs"] == 4
    assert (out / "summary.json").is_file()
    res = _cli(["sample", "--model", str(out), "--out", str(tmp_path / "syn"), "--per-class", "1", "--sampler", "rflow",
                "--steps", "1", "--guidance", "orientation=9", "--device", "cpu"], tmp_path)
    assert res.returncode == 2 and "outside the range" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "syn").exists()
    res = _cli(["distill", "--teacher", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s2")], tmp_path)
    assert res.returncode == 2 and "nowhere" in res.stderr and not (tmp_path / "s2").exists()


def _ddp_distill(rank: int, world: int, port: int, teacher: str, out: str, dump: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from uterosynth.core.distributed import shutdown_distributed

    def grab(trainer, step: int) -> None:
        if step == 3:
            torch.save({k: v.detach().clone() for k, v in trainer.parts.raw["unet"].named_parameters()},
                       Path(dump) / f"rank{rank}.pt")

    try:
        distill(_cfg(), teacher, out, progress=False, on_step_end=grab)
    finally:
        shutdown_distributed()


def test_merge_shards_restores_item_order():
    def shard(indices):
        t = torch.tensor(indices, dtype=torch.float32)
        return Couplings(t[:, None], t[:, None], t[:, None], [{"i": i} for i in indices])

    merged = merge_shards([shard([0, 1, 4, 5, 8]), shard([2, 3, 6, 7])], block=2)
    assert merged.noise[:, 0].tolist() == list(range(9)) and [c["i"] for c in merged.conditions] == list(range(9))


@pytest.mark.slow
def test_two_processes_sample_the_same_couplings_and_end_with_identical_weights(teacher, student, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_distill, args=(2, port, str(teacher), str(tmp_path / "run"), str(tmp_path)), nprocs=2, join=True)
    t = load_diffusion(teacher)
    digest = _cfg().for_teacher(t).digest(t.sha256)
    one, two = Couplings.load(student / "couplings", digest), Couplings.load(tmp_path / "run" / "couplings", digest)
    assert one.conditions == two.conditions and torch.equal(one.guidance, two.guidance)
    torch.testing.assert_close(two.noise, one.noise, rtol=0, atol=0)
    torch.testing.assert_close(two.sample, one.sample, rtol=1e-5, atol=1e-6)
    assert not list(tmp_path.joinpath("run").glob(".couplings.rank*"))  # the shards are merged and removed
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(w0[k], w1[k]) for k in w0) and any(k.startswith("guidance_embedder.") for k in w0)


def _run_bench(teacher: Path, student: Path, judged: Path, real: Path, out: Path) -> dict:
    """benchmarks/bench_distill.py with a tiny judge and encoder trained on ``judged``; its record."""
    from uterosynth.downstream.config import JudgeConfig
    from uterosynth.downstream.judge import train_judge
    from uterosynth.evaluation.config import EncoderTrainConfig
    from uterosynth.evaluation.contrastive import train_encoder

    train_judge(judged, JudgeConfig.model_validate({"classifier": {"image_size": 16, "widen_factor": 0.0625},
                                                    "train": {"max_epochs": 1, "min_epochs": 1, "min_samples_per_epoch": 16},
                                                    "augment_training": False}), out / "judge")
    train_encoder(f"{judged}:train", out / "enc", EncoderTrainConfig.model_validate(
        {"image_size": 16, "epochs": 1, "batch_size": 4, "channels": [4, 4, 8, 8]}))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO / 'benchmarks'}"}
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_distill.py"), "--teacher", str(teacher),
                          "--student", f"S2={student}", "--judge", str(out / "judge"), "--encoder", str(out / "enc"),
                          "--real", f"{real}:train", "--guidance", "orientation=3,field_strength=1.5",
                          "--per-class", "1", "--speed-n", "2", "--out", str(out / "bench")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads((out / "bench" / "bench_distill.json").read_text())


@pytest.mark.slow
def test_the_side_by_side_benchmark_runs_and_reports_every_row(teacher, student, tmp_path):
    """benchmarks/bench_distill.py on the tiny teacher and student: speed rows against both MONAI
    references, and judge accuracy per class with KID intervals for the teacher and each step count."""
    data = Path(load_diffusion(teacher).meta["dataset"])
    record = _run_bench(teacher, student, data, data, tmp_path)
    rows = {(r["row"], r["steps"]) for r in record["speed"]}
    assert ("MONAI DDPMScheduler (reference)", 100) in rows and ("student S2, Euler", 2) in rows
    assert ("student S2, Euler", 4) not in rows  # a 2-step grid student is not run off its grid
    assert all(r["s_per_item"] > 0 and r["vs_monai_ddpm"] > 0 for r in record["speed"])
    assert all(r["items_per_s"] == pytest.approx(1 / r["s_per_item"]) for r in record["speed"])
    assert set(record["quality"]) == {"teacher DPM-Solver++ 20", "student S2, Euler 1", "student S2, Euler 2"}
    q = record["quality"]["student S2, Euler 2"]
    assert set(q["per_class"]) == {"AVAF", "AVRF", "RVAF", "RVRF"} and q["kid_ci_x1e3"][0] <= q["kid_x1e3"] <= q["kid_ci_x1e3"][1]
    assert record["machine"]["threads"] >= 1 and record["item"] == "image"


@pytest.mark.slow
def test_a_3d_teacher_distils_and_the_benchmark_reads_its_volumes(tmp_path):
    """A volume teacher gets a volume student; the benchmark judges each volume's central slice with a
    2D judge and scores KID on 2.5D features, per volume."""
    volumes = make_prepared_dataset(tmp_path / "vol", dims=3, shape=(16, 16, 8), subjects=6, items_per_subject=1)
    slices = make_prepared_dataset(tmp_path / "sl", dims=2, shape=(16, 16), subjects=6, items_per_subject=1,
                                   subject_prefix="R")
    cfg = load_config(DiffusionTrainConfig, "configs/ddpm2d_cpu.yaml",
                      overrides={"spatial_dims": 3, "train.steps": 2, "train.val_every": 100})
    train_diffusion(cfg, volumes, tmp_path / "teacher", progress=False)
    distill(_cfg(prediction="sample"), tmp_path / "teacher", tmp_path / "student", progress=False)
    student = load_diffusion(tmp_path / "student")
    assert student.spatial_dims == 3 and student.sample_shape == load_diffusion(tmp_path / "teacher").sample_shape

    record = _run_bench(tmp_path / "teacher", tmp_path / "student", slices, volumes, tmp_path)
    assert record["item"] == "volume" and {r["steps"] for r in record["speed"] if r["row"] == "student S2, Euler"} == {1, 2}
    q = record["quality"]["student S2, Euler 1"]
    assert sum(v["n"] for v in q["per_class"].values()) == 8 and q["kid_ci_x1e3"][0] <= q["kid_x1e3"] <= q["kid_ci_x1e3"][1]
    assert load_synthetic(tmp_path / "bench" / "sets" / "student_S2_Euler_1", dims=3).images.shape[1:] == (1, 16, 16, 8)


def test_decode_share_times_the_decoder_and_one_student_pass(teacher, student):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO / 'benchmarks'}"}
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "decode_share.py"), "--teacher", str(teacher),
                          "--student", str(student), "--guidance", "orientation=3,field_strength=1.5", "--n", "2",
                          "--repeats", "3", "--fast-config", "8/4/1"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    record = json.loads(run.stdout)
    assert record["n"] == 2 and len(record["decode_s_per_item"]["all"]) == 3
    fast = record["fast_decode_s_per_item"]["8/4/1"]
    assert fast["median"] > 0 and fast["share_of_full"] == pytest.approx(fast["median"] / record["decode_s_per_item"]["median"])
    assert record["student_pass_s_per_item"]["median"] > 0 and record["decode_s_per_item"]["median"] >= 0
