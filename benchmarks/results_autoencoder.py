"""Reconstruction quality of the autoencoder on a prepared dataset's test split after a CPU budget.

Trains ``configs/ae{2,3}d_cpu.yaml`` (overridable) for at most ``--minutes`` of wall-clock
time per dimensionality on ``--data`` (2D) / ``--data3d`` (3D), then reports test-split PSNR,
SSIM and MS-SSIM of ``decode(μ(x))`` (and LPIPS when ``--lpips-weights`` is given), and with
``--write`` updates ``## Autoencoder`` in docs/RESULTS.md.

    PYTHONPATH=src python benchmarks/results_autoencoder.py --data PHANTOM2D --data3d PHANTOM3D \\
        --minutes 20 --lpips-weights ../shared/weights/alexnet_imagenet_features.safetensors --write
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import re
import tempfile
import time
from pathlib import Path

import torch

from uterosynth.core.config import load_config
from uterosynth.core.similarity import LPIPSDistance
from uterosynth.data.dataset import make_loader
from uterosynth.data.manifest import PreparedDataset
from uterosynth.models.latent import load_autoencoder
from uterosynth.training.autoencoder import AutoencoderTrainConfig, evaluate_reconstruction, train_autoencoder

ROOT = Path(__file__).resolve().parents[1]


class _Budget(Exception):
    pass


def train_for(cfg_path: Path, data: Path, out: Path, minutes: float, overrides: dict) -> int:
    """Train until ``cfg.train.steps`` or the time budget; returns the steps done."""
    cfg = load_config(AutoencoderTrainConfig, cfg_path, overrides=overrides)
    start = time.perf_counter()
    state = {"step": 0}

    def stop(trainer, step: int) -> None:
        state["step"] = step
        if time.perf_counter() - start > minutes * 60:
            trainer.save_checkpoint()
            raise _Budget

    with contextlib.suppress(_Budget):
        train_autoencoder(cfg, data, out, progress=False, on_step_end=stop)
    return state["step"]


def evaluate(run: Path, data: Path, lpips_weights: Path | None) -> dict[str, float]:
    model, meta, _ = load_autoencoder(run)
    test = PreparedDataset.load(data, split="test")
    lpips = LPIPSDistance(meta["spatial_dims"], weights=lpips_weights) if lpips_weights else None
    metrics, _ = evaluate_reconstruction(model, make_loader(test, batch_size=4, shuffle=False),
                                         spatial_dims=meta["spatial_dims"], device=torch.device("cpu"),
                                         data_range=meta["data_range"], lpips=lpips)
    metrics["items"] = len(test)
    return metrics


def write_section(path: Path, text: str) -> None:
    doc = path.read_text() if path.exists() else "# Results\n"
    pattern = re.compile(r"^## Autoencoder\n.*?(?=^## |\Z)", re.S | re.M)
    doc = pattern.sub(text, doc) if pattern.search(doc) else doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="prepared 2D dataset")
    parser.add_argument("--data3d", type=Path, help="prepared 3D dataset")
    parser.add_argument("--minutes", type=float, default=10.0, help="CPU training budget per dimensionality")
    parser.add_argument("--steps", type=int, default=100000, help="upper bound on steps")
    parser.add_argument("--config2d", type=Path, default=ROOT / "configs" / "ae2d_cpu.yaml")
    parser.add_argument("--config3d", type=Path, default=ROOT / "configs" / "ae3d_cpu.yaml")
    parser.add_argument("--lpips-weights", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--note", default="", help="e.g. 'phantom cohort, 40 subjects'")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    from uterosynth.core.config import parse_overrides

    overrides = {"train.steps": args.steps, "train.val_every": 10**6, "train.checkpoint_every": 10**6,
                 "train.log_every": 50, **parse_overrides(args.set)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dims, data, cfg in ((2, args.data, args.config2d), (3, args.data3d, args.config3d)):
            if data is None:
                continue
            run = Path(tmp) / f"run{dims}"
            steps = train_for(cfg, data, run, args.minutes, overrides)
            m = evaluate(run, data, args.lpips_weights)
            rows.append((dims, data, cfg, steps, m))
            print(f"{dims}D: {steps} steps, {m}", flush=True)
    lines = [
        "## Autoencoder",
        "",
        f"Reconstruction quality of `decode(μ(x))` on the test split after at most {args.minutes:g} min of "
        f"training per row on {platform.machine()} CPU ({torch.get_num_threads()} threads, no GPU). "
        + (args.note or ""),
        "",
        "Command: `PYTHONPATH=src python benchmarks/results_autoencoder.py "
        + " ".join(f"{k} {v}" for k, v in (("--data", args.data), ("--data3d", args.data3d)) if v)
        + f" --minutes {args.minutes:g}" + (f" --lpips-weights {args.lpips_weights}" if args.lpips_weights else "")
        + "".join(f" --set {s}" for s in args.set) + " --write`",
        "",
        "| dims | dataset | config | steps | test items | PSNR (dB) | SSIM | MS-SSIM | LPIPS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for dims, data, cfg, steps, m in rows:
        lp = f"{m['lpips']:.4f}" if "lpips" in m else "–"
        lines.append(f"| {dims}D | `{data}` | `{Path(cfg).relative_to(ROOT) if Path(cfg).is_relative_to(ROOT) else cfg}` "
                     f"| {steps} | {m['items']} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['ms_ssim']:.4f} | {lp} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(ROOT / "docs" / "RESULTS.md", text)


if __name__ == "__main__":
    main()
