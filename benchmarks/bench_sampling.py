"""Sampling speed and quality against MONAI's reference pipeline, on one trained diffusion model.

Reference (i): MONAI ``DiffusionInferer`` / ``LatentDiffusionInferer`` with ``DDPMScheduler``
at 1000 steps, as in MONAI's generative tutorials. Then uterosynth's samplers at few steps.
All runs sample the same conditions from the same initial noise with the same denoiser (the
network, with classifier-free guidance at ``--guidance`` when given: MONAI's inferer then calls
the guided network), so the ratio compares samplers only. A model trained with the rectified-flow
objective is sampled with ``rflow`` instead (MONAI's reference then runs RFlow at 1000 steps).

Quality: mean absolute per-pixel error of each deterministic sampler against a 1000-step DDIM
reference from the same noise (the ODE solution they all approximate), and, when
``--classifier`` is given (``uterosynth downstream train-classifier``), the fraction of
samples classified as the class they were generated for.

    python benchmarks/bench_sampling.py --model runs/ldm2d --n 16 [--guidance 3] [--classifier runs/classifier] [--write]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

RUNS = {"ddpm": [("ddim", 50), ("dpmpp", 20), ("dpmpp", 10), ("unipc", 10)],
        "rflow": [("rflow", 50), ("rflow", 20), ("rflow", 10)]}


class _MonaiAdapter(torch.nn.Module):
    """Lets MONAI's inferer call the (guided) denoiser with a fixed condition batch."""

    def __init__(self, denoise):
        super().__init__()
        self.denoise = denoise

    def forward(self, x, timesteps, context=None, class_labels=None, **_):
        return self.denoise(x, timesteps.reshape(-1).expand(x.shape[0]))


def monai_reference(model, x_T, denoise) -> torch.Tensor:
    from monai.inferers import DiffusionInferer, LatentDiffusionInferer
    from monai.networks.schedulers import DDPMScheduler, RFlowScheduler

    cfg = model.schedule.config
    if model.schedule.objective == "rflow":
        if model.schedule.network_output != "flow":
            raise SystemExit("MONAI's RFlowScheduler steps on a velocity; this rflow model outputs x0 "
                             "(prediction_type: sample)")
        scheduler = RFlowScheduler(num_train_timesteps=cfg.num_train_timesteps, use_discrete_timesteps=False)
    else:
        scheduler = DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, clip_sample=False,
                                  prediction_type=cfg.prediction_type)
        scheduler.betas = model.schedule.betas.clone()
        scheduler.alphas = 1.0 - scheduler.betas
        scheduler.alphas_cumprod = model.schedule.alphas_cumprod.clone()
    scheduler.set_timesteps(cfg.num_train_timesteps)
    net = _MonaiAdapter(denoise)
    if model.autoencoder is None:
        return DiffusionInferer(scheduler).sample(x_T, net, scheduler, verbose=False)
    inferer = LatentDiffusionInferer(scheduler, scale_factor=model.scale_factor)
    return inferer.sample(x_T, model.autoencoder, net, scheduler, verbose=False)


def ours(model, name, steps, x_T, denoise, gens) -> torch.Tensor:
    from uterosynth.diffusion.samplers import build_sampler

    sampler = build_sampler(name, model.schedule)
    z = sampler.sample(denoise, x_T, steps=steps, generators=gens)
    return model.decode(z).clamp(0, 1)


def accuracy(classifier: Path | None, images: torch.Tensor, wanted: list[str]) -> float | None:
    if classifier is None:
        return None
    from uterosynth.downstream.judge import predict

    got = predict(classifier, images[:, 0].numpy())
    return sum(g == w for g, w in zip(got, wanted, strict=True)) / len(wanted)


def main() -> None:
    from uterosynth.core.seeding import index_generator
    from uterosynth.diffusion.samplers import initial_noise
    from uterosynth.models.diffusion import load_diffusion
    from uterosynth.sampling.plan import plan_items

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--n", type=int, default=8, help="items per run")
    parser.add_argument("--classifier", type=Path)
    parser.add_argument("--attribute", default="orientation")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale for every run")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_diffusion(args.model)
    if model.distilled is not None:
        parser.error(f"{args.model}: a distilled student (guidance is its input); compare it with bench_distill.py")
    vocab = model.vocab
    if args.attribute in vocab.attributes:
        values = vocab.attributes[args.attribute]
        items = plan_items(vocab, n=None, per_class=max(1, args.n // len(values)),
                           conditions={k: v[0] for k, v in vocab.attributes.items() if k != args.attribute})
    else:
        items = plan_items(vocab, n=args.n, per_class=None)
    wanted = [it.condition.get(args.attribute, "") for it in items]
    cond = model.codec.encode([it.condition for it in items]) if model.codec else None
    from uterosynth.diffusion.guidance import guided_denoiser

    denoise = guided_denoiser(model.unet, cond, model.vocab, args.guidance)
    gens = [index_generator(0, it.index) for it in items]
    x_T = initial_noise((len(items), *model.sample_shape), gens)
    rows = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        ref_monai = monai_reference(model, x_T.clone(), denoise).clamp(0, 1)
        monai_s = (time.perf_counter() - t0) / len(items)
        rows.append({"sampler": f"MONAI {'RFlow' if model.schedule.objective == 'rflow' else 'DDPM'} (reference)", "steps": model.schedule.num_train_timesteps, "s_per_image": monai_s,
                     "speedup": 1.0, "error_vs_ode": None, "accuracy": accuracy(args.classifier, ref_monai, wanted)})
        full = model.schedule.num_train_timesteps
        ode_sampler = "rflow" if model.schedule.objective == "rflow" else "ddim"
        ode = ours(model, ode_sampler, full, x_T.clone(), denoise, [index_generator(0, it.index) for it in items])
        for name, steps in [(n, min(k, full)) for n, k in RUNS[model.schedule.objective]]:
            t0 = time.perf_counter()
            images = ours(model, name, steps, x_T.clone(), denoise, [index_generator(0, it.index) for it in items])
            seconds = (time.perf_counter() - t0) / len(items)
            rows.append({"sampler": name, "steps": steps, "s_per_image": seconds, "speedup": monai_s / seconds,
                         "error_vs_ode": float((images - ode).abs().mean()),
                         "accuracy": accuracy(args.classifier, images, wanted)})
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    lines = ["| sampler | steps | s/image | speed-up vs MONAI | mean abs error vs 1000-step ODE | class accuracy |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        err = "—" if r["error_vs_ode"] is None else f"{r['error_vs_ode']:.4f}"
        acc = "—" if r["accuracy"] is None else f"{100 * r['accuracy']:.0f} %"
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['s_per_image']:.3f} | {r['speedup']:.1f}× | {err} | {acc} |")
    table = "\n".join(lines)
    print(json.dumps(rows, indent=1))
    print(table)
    if args.write:
        from benchmarks_common import update_section

        update_section("docs/BENCHMARKS.md", "Sampling (trained model)",
                       f"Model `{args.model}` ({model.meta.get('space')} {model.spatial_dims}D), {len(items)} items, "
                       f"guidance {args.guidance or 'off'}, "
                       f"machine: {machine}.\n\n{table}\n\nCommand: `python benchmarks/bench_sampling.py --model "
                       f"{args.model} --n {args.n}{' --guidance ' + str(args.guidance) if args.guidance else ''}"
                       f"{' --classifier ' + str(args.classifier) if args.classifier else ''} --write`")


if __name__ == "__main__":
    main()
