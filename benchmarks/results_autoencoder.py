"""Reconstruction quality of the autoencoder on subjects it never saw.

Trains ``configs/ae{2,3}d_cpu.yaml`` (overridable) for at most ``--minutes`` of wall-clock
time per dimensionality on ``--data`` (2D) / ``--data3d`` (3D), or takes an autoencoder trained
elsewhere (``--run2d`` / ``--run3d``), then reports PSNR, SSIM and MS-SSIM of ``decode(μ(x))`` (and
LPIPS when ``--lpips-weights`` is given) on the test split or on ``--test2d`` / ``--test3d``
(``DIR:split``, e.g. a fresh cohort), with 95 % intervals over subjects. A test set holding the
autoencoder's training subjects is refused. ``--write`` updates ``## Autoencoder`` (``--section``) in
docs/RESULTS.md.

    PYTHONPATH=src python benchmarks/results_autoencoder.py --data PHANTOM2D --data3d PHANTOM3D \\
        --minutes 20 --lpips-weights ../shared/weights/alexnet_imagenet_features.safetensors --write
    PYTHONPATH=src python benchmarks/results_autoencoder.py --run2d AE2D --test2d FRESH2D:train --write
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from uterosynth.core.config import load_config
from uterosynth.core.similarity import LPIPSDistance
from uterosynth.data.dataset import make_loader
from uterosynth.data.manifest import PreparedDataset
from uterosynth.models.latent import load_autoencoder
from uterosynth.training.autoencoder import AutoencoderTrainConfig, train_autoencoder

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


def evaluate(run: Path, ref: str, lpips_weights: Path | None) -> dict:
    """Per-item PSNR/SSIM/MS-SSIM (and LPIPS) of ``decode(μ(x))`` on ``ref`` (``DIR:split``), as means
    with 95 % intervals over subjects; refuses subjects the autoencoder was trained on."""
    from uterosynth.data.manifest import parse_dataset_ref
    from uterosynth.data.subjects import check_disjoint
    from uterosynth.evaluation.resampling import cluster_bootstrap_mean
    from uterosynth.training.metrics import reconstruction_metrics

    model, meta, _ = load_autoencoder(run)
    root, split = parse_dataset_ref(ref)
    test = PreparedDataset.load(root, split)  # DIR alone: all its items
    if not meta.get("training_subjects"):
        raise SystemExit(f"{run}: the autoencoder records no training subjects, so its test set cannot be checked")
    check_disjoint(meta["training_subjects"], test.subjects(), what=f"autoencoder {run} vs {ref}")
    lpips = LPIPSDistance(meta["spatial_dims"], weights=lpips_weights) if lpips_weights else None
    values: dict[str, list[torch.Tensor]] = {}
    model.eval()
    with torch.inference_mode():
        for batch in make_loader(test, batch_size=8, shuffle=False):
            x = batch["image"]
            recon = model.decode(model.encode(x)[0]).float()
            metrics = reconstruction_metrics(recon, x, spatial_dims=meta["spatial_dims"], data_range=meta["data_range"])
            if lpips is not None:
                scale = meta["data_range"]
                metrics["lpips"] = lpips(recon.clamp(0, scale) / scale, x / scale).float()
            for k, v in metrics.items():
                values.setdefault(k, []).append(v.flatten())
    subjects = [r["subject"] for r in test.rows]
    out = {k: list(cluster_bootstrap_mean(torch.cat(v).numpy(), subjects, n_boot=2000, seed=0)[:3])
           for k, v in values.items()}
    return {**out, "items": len(subjects), "subjects": len(set(subjects))}


def _cell(m: dict, key: str, digits: int) -> str:
    if key not in m:
        return "–"
    mean, lo, hi = m[key]
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _trained_run(run: Path) -> tuple[int, str]:
    """Steps and description of an autoencoder trained elsewhere (its run folder or its checkpoint folder)."""
    record = run / "model.json" if (run / "model.json").is_file() else run / "checkpoint" / "model.json"
    return int(json.loads(record.read_text())["step"]), f"`{run}` (`uterosynth train autoencoder`)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="prepared 2D dataset (trained on its train split)")
    parser.add_argument("--data3d", type=Path, help="prepared 3D dataset")
    parser.add_argument("--run2d", type=Path, help="a trained 2D autoencoder to evaluate instead of training one")
    parser.add_argument("--run3d", type=Path, help="a trained 3D autoencoder to evaluate instead of training one")
    parser.add_argument("--test2d", help="DIR:split the 2D row is evaluated on (default: --data's test split)")
    parser.add_argument("--test3d", help="DIR:split the 3D row is evaluated on (default: --data3d's test split)")
    parser.add_argument("--minutes", type=float, default=10.0, help="CPU training budget per dimensionality")
    parser.add_argument("--steps", type=int, default=100000, help="upper bound on steps")
    parser.add_argument("--config2d", type=Path, default=ROOT / "configs" / "ae2d_cpu.yaml")
    parser.add_argument("--config3d", type=Path, default=ROOT / "configs" / "ae3d_cpu.yaml")
    parser.add_argument("--lpips-weights", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--note", default="", help="e.g. 'phantom cohort, 40 subjects'")
    parser.add_argument("--command", default="", help="the commands to print under the table (default: this one)")
    parser.add_argument("--section", default="Autoencoder", help="the docs/RESULTS.md section --write replaces")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    from uterosynth.core.config import parse_overrides

    overrides = {"train.steps": args.steps, "train.val_every": 10**6, "train.checkpoint_every": 10**6,
                 "train.log_every": 50, **parse_overrides(args.set)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dims, data, cfg, run, test in ((2, args.data, args.config2d, args.run2d, args.test2d),
                                           (3, args.data3d, args.config3d, args.run3d, args.test3d)):
            if run is not None:
                steps, cfg = _trained_run(run)
            elif data is not None:
                run = Path(tmp) / f"run{dims}"
                steps = train_for(cfg, data, run, args.minutes, overrides)
                cfg = f"`{Path(cfg).relative_to(ROOT) if Path(cfg).is_relative_to(ROOT) else cfg}`, {args.minutes:g} min"
            else:
                continue
            if test is None and data is None:
                parser.error(f"--run{dims}d needs --test{dims}d (or --data{'3d' if dims == 3 else ''}) to evaluate on")
            ref = test or f"{data}:test"
            m = evaluate(run, ref, args.lpips_weights)
            rows.append((dims, ref, cfg, steps, m))
            print(f"{dims}D: {steps} steps, {m}", flush=True)
    threads = torch.get_num_threads()
    command = args.command or ("PYTHONPATH=src python benchmarks/results_autoencoder.py " + " ".join(sys.argv[1:]))
    lines = [
        f"Reconstruction quality of `decode(μ(x))` on {platform.machine()} CPU ({threads} thread{'s' * (threads != 1)}, "
        "no GPU): means over items with 95 % intervals over subjects (cluster bootstrap); every test set holds "
        "subjects the autoencoder never saw (checked against its training-subject record). " + (args.note or ""),
        "",
        "| dims | test set | autoencoder | steps | items (subjects) | PSNR (dB) | SSIM | MS-SSIM | LPIPS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for dims, ref, cfg, steps, m in rows:
        lines.append(f"| {dims}D | `{ref}` | {cfg} | {steps} | {m['items']} ({m['subjects']}) | {_cell(m, 'psnr', 2)} "
                     f"| {_cell(m, 'ssim', 3)} | {_cell(m, 'ms_ssim', 3)} | {_cell(m, 'lpips', 3)} |")
    lines += ["", f"Command:\n\n```bash\n{command}\n```"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        sys.path.insert(0, str(Path(__file__).parent))
        from benchmarks_common import update_section

        update_section(ROOT / "docs" / "RESULTS.md", args.section, text)


if __name__ == "__main__":
    main()
