"""Few-step students against their teacher and MONAI's reference pipelines, side by side, in one run.

Works on a 2D teacher (images) and a 3D one (volumes) alike.

Speed (``--speed-n`` items, the same conditions and initial noise in every row, decoding included,
on the CPU after one warm-up pass; seconds per item, an image or a volume):

- MONAI ``LatentDiffusionInferer`` (or ``DiffusionInferer``) + ``DDPMScheduler``, 1000 steps,
  driving the teacher's guided network (the reference of docs/BENCHMARKS.md, "Sampling");
- MONAI ``RFlowScheduler``, 30 steps (MAISI's default), driving the same guided network: a speed
  reference only (the teacher is not a flow model, so its images are not scored);
- uterosynth DPM-Solver++ at 10 and 20 steps on the teacher;
- each student (``uterosynth distill``) at 1, 2 and 4 Euler steps (a ``grid`` student at those of
  them its trained times hold), guidance as its input;
- with ``--decoder`` (``uterosynth train decoder``), the DPM-Solver++ 10 row and every student row
  again with the fast decoder in place of the autoencoder's.

Quality (``--per-class`` items of every class, from ``uterosynth sample``'s own path, so the
sets are what a user gets): the judge's accuracy on the requested orientation per class with
95 % Wilson intervals (a 2D judge sees each volume's central sagittal slice, as ``uterosynth
evaluate`` shows it), and KID to the real split at equal N with a jackknife interval over the
real subjects (volumes: the encoder's 2.5D features, three central planes), for the teacher's
DPM-Solver++ 20 and every student row (with ``--decoder``, each student row also with the fast
decoder).

    python benchmarks/bench_distill.py --teacher T --student S4=STUDENT --judge J --encoder E \\
        --real PREP:test --per-class 32 --speed-n 8 --out runs/bench_distill
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from bench_sampling import monai_reference

from uterosynth.core.precision import cpu_flags
from uterosynth.core.seeding import index_generator
from uterosynth.core.stats import wilson_ci
from uterosynth.data.image_set import load_prepared, load_synthetic
from uterosynth.diffusion.guidance import embedded_scales, guided_denoiser, parse_guidance
from uterosynth.diffusion.samplers import build_sampler, initial_noise
from uterosynth.downstream.judge import load_classifier, predict
from uterosynth.evaluation.equal_n import kid_at_n
from uterosynth.evaluation.features import PlanarExtractor, extract_features
from uterosynth.models.diffusion import load_diffusion
from uterosynth.models.encoder_artifact import load_encoder
from uterosynth.models.fast_decoder import fast_decoder_for
from uterosynth.models.judge import judge_view
from uterosynth.sampling.generate import SampleConfig, generate
from uterosynth.sampling.plan import plan_items


def _monai_rflow(model, x_T, denoise, steps: int) -> torch.Tensor:
    from monai.networks.schedulers import RFlowScheduler

    sched = RFlowScheduler(num_train_timesteps=model.schedule.num_train_timesteps, use_discrete_timesteps=True)
    sched.set_timesteps(steps)
    x = x_T
    ts = list(sched.timesteps) + [0]
    for t, nxt in zip(ts[:-1], ts[1:], strict=True):
        x = sched.step(denoise(x, torch.as_tensor(t).expand(x.shape[0])), int(t), x, int(nxt))[0]
    return model.decode(x).clamp(0, 1)


def _ours(model, sampler: str, steps: int, x_T, denoise, fast=None) -> torch.Tensor:
    z = build_sampler(sampler, model.schedule).sample(denoise, x_T, steps=steps)
    return (model.decode(z) if fast is None else fast(z / model.scale_factor)).clamp(0, 1)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def student_denoiser(student, cond, guidance):
    """The student's network for ``cond`` with ``--guidance`` as its input (one pass, no second branch)."""
    scales = torch.tensor(embedded_scales(student.meta["distilled"]["guidance"], guidance))
    return guided_denoiser(student.unet, cond.with_guidance(scales), student.vocab, None)


def step_counts(student) -> list[int]:
    """The step counts of 1, 2, 4 a student is sampled at: a ``grid`` student only where its trained times hold them."""
    spec = student.meta["distilled"]
    if spec.get("time_sampling") != "grid":
        return [1, 2, 4]
    return [k for k in (1, 2, 4) if int(spec["student_steps"]) % k == 0]


def speed_rows(teacher, students: dict[str, object], guidance, n: int, fast=None) -> list[dict]:
    n_classes = len(plan_items(teacher.vocab, n=None, per_class=1))
    items = plan_items(teacher.vocab, n=None, per_class=-(-n // n_classes))[:n]
    n = len(items)
    cond = teacher.codec.encode([it.condition for it in items])
    x_T = initial_noise((len(items), *teacher.sample_shape), [index_generator(0, it.index) for it in items])
    guided = guided_denoiser(teacher.unet, cond, teacher.vocab, guidance)
    decoders = {"full": None} if fast is None else {"full": None, "fast": fast}
    rows = []

    def timed_row(label: str, steps: int, decoder: str, fn) -> None:
        rows.append({"row": label, "steps": steps, "decoder": decoder, "s_per_item": _timed(fn) / n})

    with torch.inference_mode():
        _ours(teacher, "dpmpp", 2, x_T.clone(), guided)  # warm-up: one-time costs stay out of the timed rows
        if fast is not None:
            _ours(teacher, "dpmpp", 2, x_T.clone(), guided, fast)
        timed_row("MONAI DDPMScheduler (reference)", teacher.schedule.num_train_timesteps, "full",
                  lambda: monai_reference(teacher, x_T.clone(), guided))
        timed_row("MONAI RFlowScheduler (MAISI default; speed only)", 30, "full",
                  lambda: _monai_rflow(teacher, x_T.clone(), guided, 30))
        for steps in (10, 20):
            for decoder, f in decoders.items() if steps == 10 else [("full", None)]:
                timed_row("teacher, DPM-Solver++", steps, decoder,
                          lambda s=steps, f=f: _ours(teacher, "dpmpp", s, x_T.clone(), guided, f))
        for name, student in students.items():
            plain = student_denoiser(student, cond, guidance)
            for steps in step_counts(student):
                for decoder, f in decoders.items():
                    timed_row(f"student {name}, Euler", steps, decoder,
                              lambda s=steps, m=student, d=plain, f=f: _ours(m, "rflow", s, x_T.clone(), d, f))
    ref, rf = rows[0]["s_per_item"], rows[1]["s_per_item"]
    for r in rows:
        r["items_per_s"] = 1.0 / r["s_per_item"]  # images/s in 2D, volumes/s in 3D
        r["vs_monai_ddpm"] = ref / r["s_per_item"]
        r["vs_monai_rflow30"] = rf / r["s_per_item"]
    return rows


def quality_row(model_path: Path, sampler: str, steps: int, guidance, per_class: int, out: Path, judge, real,
                real_features, encoder, decoder: Path | None = None, seed: int = 100) -> dict:
    cfg = SampleConfig.model_validate({"per_class": per_class, "sampler": {"name": sampler, "steps": steps},
                                       "guidance": guidance, "seed": seed, "runtime": {"batch_size": 32},
                                       "decoder": decoder})
    generate(model_path, cfg, out, overwrite=True)
    syn = load_synthetic(out, dims=real.spatial_dims)
    wanted = [c["orientation"] for c in syn.conditions]
    got = predict(judge, judge_view(syn.images, int(judge[1]["spatial_dims"]), channels=True))
    per_class = {}
    for cls in sorted(set(wanted)):
        hits = [g == w for g, w in zip(got, wanted, strict=True) if w == cls]
        low, high = wilson_ci(sum(hits), len(hits))
        per_class[cls] = {"acc": round(float(np.mean(hits)), 3), "n": len(hits), "wilson95": [round(low, 3), round(high, 3)]}
    fake = extract_features(encoder, torch.as_tensor(syn.images))
    n = min(len(fake), len(real_features))
    k = kid_at_n(real_features, fake, n=n, groups_real=list(real.subjects), seed=0)
    return {"per_class": per_class, "worst": min(v["acc"] for v in per_class.values()),
            "kid_x1e3": round(1e3 * k.value, 2), "kid_ci_x1e3": [round(1e3 * k.ci_low, 2), round(1e3 * k.ci_high, 2)],
            "n": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--student", action="append", default=[], help="NAME=RUN (repeatable)")
    parser.add_argument("--judge", type=Path, help="the quality rows' judge (not needed with --skip-quality)")
    parser.add_argument("--encoder", type=Path, help="the quality rows' KID encoder (not needed with --skip-quality)")
    parser.add_argument("--real", help="prepared DIR:split the KID compares against (not needed with --skip-quality)")
    parser.add_argument("--decoder", type=Path, help="a fast decoder of the teacher's autoencoder: rows with it too")
    parser.add_argument("--guidance", default="orientation=5,field_strength=1.5")
    parser.add_argument("--per-class", type=int, default=32)
    parser.add_argument("--speed-n", type=int, default=8)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-teacher", action="store_true", help="no teacher quality row (choosing between students)")
    parser.add_argument("--skip-quality", action="store_true", help="speed rows only (a rerun on a quiet machine)")
    parser.add_argument("--sample-seed", type=int, default=100, help="the quality rows' draws (another for validation)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not args.skip_quality and not (args.judge and args.encoder and args.real):
        parser.error("the quality rows need --judge, --encoder and --real (or --skip-quality)")
    torch.manual_seed(0)
    guidance = parse_guidance(args.guidance)
    teacher = load_diffusion(args.teacher)
    students = {name: path for name, path in (s.split("=", 1) for s in args.student)}
    loaded = {name: load_diffusion(path) for name, path in students.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"machine": {"cpu": platform.processor() or platform.machine(), "cpu_flags": list(cpu_flags()),
                          "threads": torch.get_num_threads(), "torch": torch.__version__},
              "teacher": str(args.teacher), "students": students, "guidance": guidance,
              "item": "volume" if teacher.spatial_dims == 3 else "image"}
    if not args.skip_speed:
        fast = fast_decoder_for(args.decoder, teacher)[0] if args.decoder else None
        record["speed"] = speed_rows(teacher, loaded, guidance, args.speed_n, fast)
        print(json.dumps(record["speed"], indent=1), flush=True)
    if args.skip_quality:
        (args.out / "bench_distill.json").write_text(json.dumps(record, indent=1))
        return
    path, split = args.real.rsplit(":", 1) if ":" in args.real else (args.real, "test")
    real = load_prepared(path, split=split)
    encoder = PlanarExtractor(load_encoder(args.encoder))  # 2D items pass straight through
    real_features = extract_features(encoder, torch.as_tensor(real.images))
    judge = load_classifier(args.judge)
    runs = [] if args.skip_teacher else [("teacher DPM-Solver++ 20", args.teacher, "dpmpp", 20, None)]
    for decoder in (None, args.decoder) if args.decoder else (None,):
        runs += [(f"student {name}, Euler {k}{', fast decoder' if decoder else ''}", Path(p), "rflow", k, decoder)
                 for name, p in students.items() for k in step_counts(loaded[name])]
    record["decoder"] = str(args.decoder) if args.decoder else None
    record["sample_seed"], record["judge"] = args.sample_seed, str(args.judge)
    record["quality"] = {}
    for label, model_path, sampler, steps, decoder in runs:
        record["quality"][label] = quality_row(model_path, sampler, steps, guidance, args.per_class,
                                               args.out / "sets" / label.replace(" ", "_").replace(",", ""),
                                               judge, real, real_features, encoder, decoder, args.sample_seed)
        print(label, json.dumps(record["quality"][label]), flush=True)
    (args.out / "bench_distill.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
