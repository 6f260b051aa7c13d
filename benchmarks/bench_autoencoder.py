"""Autoencoder training throughput: the shared loop vs a plain MONAI-tutorial loop, same networks.

The reference loop follows MONAI's generative tutorials (``generation/2d_ldm`` /
``2d_autoencoderkl``): Adam, fp32, ``zero_grad(set_to_none=True)``, generator update with L1 +
perceptual + KL + adversarial, then a discriminator update on ``(fake.detach(), real)``. Both
loops use the same ``AutoencoderKL``/``PatchDiscriminator``, the same LPIPS network (random
backbone: throughput does not depend on the weights) and the same data in memory.

    PYTHONPATH=src python benchmarks/bench_autoencoder.py [--steps 8] [--write]
"""

from __future__ import annotations

import argparse
import platform
import re
import tempfile
import time
from pathlib import Path

import torch

from uterosynth.core.similarity import LPIPSDistance
from uterosynth.models.autoencoder import (
    AutoencoderConfig,
    DiscriminatorConfig,
    build_autoencoder,
    build_discriminator,
)
from uterosynth.training.autoencoder import AutoencoderLossConfig, AutoencoderStep, kl_divergence
from uterosynth.training.config import LoopConfig, OptimizerConfig
from uterosynth.training.loop import OptimGroup, Trainer, make_adamw

CASES = {
    "2D 128x128": dict(shape=(128, 128), batch=2, channels=(32, 64, 64), disc=32),
    "3D 48x48x24": dict(shape=(48, 48, 24), batch=1, channels=(16, 32, 32), disc=16),
}
LOSS = AutoencoderLossConfig(perceptual_weight=0.001, kl_weight=1e-6, adv_weight=0.01, adv_warmup_steps=0)


class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int, shape: tuple[int, ...]):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 1, *shape, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i]}


def _nets(case: dict):
    sd = len(case["shape"])
    torch.manual_seed(0)
    cfg = AutoencoderConfig(spatial_dims=sd, channels=case["channels"], attention_levels=(False,) * 3,
                            num_res_blocks=1, latent_channels=3, norm_num_groups=16)
    ae = build_autoencoder(cfg)
    disc = build_discriminator(DiscriminatorConfig(channels=case["disc"], num_layers_d=3), spatial_dims=sd)
    return ae, disc, LPIPSDistance(sd, slice_fraction=0.25)


def plain_loop(case: dict, steps: int, warmup: int) -> float:
    """The tutorial loop; returns items/s after ``warmup`` steps."""
    from monai.losses import PatchAdversarialLoss

    ae, disc, perceptual = _nets(case)
    data = _Images(8 * case["batch"], case["shape"])
    loader = torch.utils.data.DataLoader(data, batch_size=case["batch"], shuffle=True, drop_last=True)
    opt_g = torch.optim.Adam(ae.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(disc.parameters(), lr=5e-4)
    adv = PatchAdversarialLoss(criterion="least_squares")
    l1 = torch.nn.L1Loss()
    ae.train(), disc.train()
    done, t0 = 0, None
    while done < steps:
        for batch in loader:
            if done == warmup:
                t0 = time.perf_counter()
            images = batch["image"]
            opt_g.zero_grad(set_to_none=True)
            reconstruction, z_mu, z_sigma = ae(images)
            loss_g = l1(reconstruction.float(), images.float()) + LOSS.kl_weight * kl_divergence(z_mu, z_sigma)
            loss_g = loss_g + LOSS.perceptual_weight * perceptual(reconstruction.float(), images.float()).mean()
            logits_fake = disc(reconstruction.contiguous().float())[-1]
            loss_g = loss_g + LOSS.adv_weight * adv(logits_fake, target_is_real=True, for_discriminator=False)
            loss_g.backward()
            opt_g.step()
            opt_d.zero_grad(set_to_none=True)
            logits_fake = disc(reconstruction.contiguous().detach())[-1]
            loss_d_fake = adv(logits_fake, target_is_real=False, for_discriminator=True)
            logits_real = disc(images.contiguous().detach())[-1]
            loss_d_real = adv(logits_real, target_is_real=True, for_discriminator=True)
            (LOSS.adv_weight * 0.5 * (loss_d_fake + loss_d_real)).backward()
            opt_d.step()
            done += 1
            if done == steps:
                break
    return (steps - warmup) * case["batch"] / (time.perf_counter() - t0)


def shared_loop(case: dict, steps: int, warmup: int, **options) -> float:
    """The project's loop with ``options`` (LoopConfig fields); returns items/s after ``warmup`` steps."""
    ae, disc, perceptual = _nets(case)
    cfg = LoopConfig(steps=steps, batch_size=case["batch"], device="cpu", log_every=10**6, val_every=10**6,
                     checkpoint_every=10**6, deterministic=False, **options)
    dev = torch.device("cpu")
    groups = [OptimGroup("generator", make_adamw(ae.parameters(), OptimizerConfig(lr=1e-4), device=dev), ("autoencoder",)),
              OptimGroup("discriminator", make_adamw(disc.parameters(), OptimizerConfig(lr=5e-4), device=dev),
                         ("discriminator",))]
    stamps: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer({"autoencoder": ae, "discriminator": disc}, groups, AutoencoderStep(LOSS, perceptual),
                          _Images(8 * case["batch"], case["shape"]), cfg=cfg, out=Path(out), seed=0,
                          export="autoencoder", model_meta={"kind": "autoencoder"}, progress=False,
                          on_step_end=lambda t, s: stamps.__setitem__(s, time.perf_counter()))
        trainer.save_checkpoint = lambda: None  # measure training, not disk writes
        trainer.fit()
    return (steps - warmup) * case["batch"] / (stamps[steps] - stamps[warmup])


def run(steps: int, warmup: int, variants: dict[str, dict], cases: list[str]) -> list[tuple[str, str, float]]:
    rows = []
    for name in cases:
        case = CASES[name]
        base = plain_loop(case, steps, warmup)
        rows.append((name, "MONAI-tutorial loop (fp32, Adam)", base))
        print(f"{name}: tutorial loop {base:.3f} items/s", flush=True)
        for label, opts in variants.items():
            ips = shared_loop(case, steps, warmup, **opts)
            rows.append((name, label, ips))
            print(f"{name}: {label} {ips:.3f} items/s  ratio {ips / base:.2f}", flush=True)
    return rows


def write_section(path: Path, text: str) -> None:
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## Autoencoder\n.*?(?=^## |\Z)", re.S | re.M)
    doc = pattern.sub(text, doc) if pattern.search(doc) else doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--cases", nargs="*", default=list(CASES), help="subset of: " + ", ".join(CASES))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="update '## Autoencoder' in docs/BENCHMARKS.md")
    parser.add_argument("--contended", action="store_true", help="note that the machine was shared while measuring")
    args = parser.parse_args()
    variants = {
        "shared loop, fp32": {},
        "shared loop, fp32, channels_last": {"channels_last": True},
        "shared loop, bf16 autocast": {"precision": "bf16"},
    }
    rows = run(args.steps, args.warmup, variants, args.cases)
    base = {name: ips for name, label, ips in rows if label.startswith("MONAI")}
    lines = [
        "## Autoencoder",
        "",
        "Training throughput (items/s, generator + discriminator step with L1, 2.5D/2D LPIPS, KL and",
        "adversarial terms) of the shared loop against a plain loop written as in MONAI's generative",
        "tutorials, same networks, same run. "
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, no GPU"
        + (", **contended** (other jobs were running: absolute numbers are low and noisy)." if args.contended else "."),
        "",
        f"Command: `PYTHONPATH=src python benchmarks/bench_autoencoder.py --steps {args.steps} --warmup {args.warmup}"
        + (" --contended" if args.contended else "") + " --write`",
        "",
        "| case | loop | items/s | ratio vs tutorial |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {name} | {label} | {ips:.3f} | {ips / base[name]:.2f} |" for name, label, ips in rows]
    lines += [
        "",
        "What the shared loop does differently: AdamW with the fused kernel, gradients of the",
        "discriminator's weights not computed during the generator phase (only its input gradient is",
        "needed), optional channels_last / bf16 / torch.compile. On a CPU without native bf16",
        "(AVX2 only) bf16 autocast is much slower, so CPU presets use fp32; GPU presets use fp16 +",
        "GradScaler (not measured here: no GPU).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md", text)


if __name__ == "__main__":
    main()
