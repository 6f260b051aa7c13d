"""Sampling throughput and peak memory of one trained model under each fast-path setting.

Each variant runs ``uterosynth.sampling.generate`` in a fresh process (so peak memory is its
own): first a warm-up batch (CUDA kernels, ``torch.compile``), then ``--n`` items timed.
Variants: ``default`` (the ``auto`` settings), ``fp32``, ``bf16``, ``channels_last``,
``no_channels_last``, ``compile``, ``tiled`` (latent decoding in sliding windows under
``--budget-mb``). With ``--decode-size`` the script also decodes one latent of that (larger)
spatial size with the model's autoencoder, at once and in tiles, to show what the memory
budget buys on clinical-size volumes.

    python benchmarks/bench_sampling_runtime.py --model runs/ldm3d --n 8 --steps 20 \
        --variants default,fp32,bf16,tiled --decode-size 64,64,16 --budget-mb 512 [--write]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = {
    "default": {},
    "fp32": {"runtime": {"precision": "fp32"}},
    "bf16": {"runtime": {"precision": "bf16"}},
    "channels_last": {"runtime": {"channels_last": True}},
    "no_channels_last": {"runtime": {"channels_last": False}},
    "compile": {"runtime": {"compile": True}},
    "tiled": {"tiled": True},
}


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def child_generate(spec: dict) -> dict:
    """One variant: warm up on one batch, then time ``n`` items (in this process)."""
    from uterosynth.sampling.generate import SampleConfig, generate
    from uterosynth.sampling.runtime import resolve_device

    runtime = {"batch_size": spec["batch"], **spec["variant"].get("runtime", {})}
    base = {"sampler": {"name": spec["sampler"], "steps": spec["steps"]}, "runtime": runtime, "seed": 0}
    if spec["variant"].get("tiled"):
        base["decode_memory_mb"] = spec["budget_mb"]
    device = resolve_device(SampleConfig.model_validate(base).runtime)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate(spec["model"], SampleConfig.model_validate({**base, "n": spec["batch"]}), Path(tmp) / "warm")
        warm_s = time.perf_counter() - t0
        _reset_peak(device)
        t0 = time.perf_counter()
        summary = generate(spec["model"], SampleConfig.model_validate({**base, "n": spec["n"]}), Path(tmp) / "run")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        items = [json.loads(line) for line in (Path(tmp) / "run" / "metadata.jsonl").read_text().splitlines()]
    sampling_s = sum(r["seconds"] for r in items)
    return {"items_per_s": len(items) / sampling_s, "wall_items_per_s": len(items) / seconds,
            "warmup_s": warm_s, "peak_mb": _peak_mb(device), "device": str(device), "summary_items": summary.get("items")}


def child_decode(spec: dict) -> dict:
    """Decode one random latent of ``decode_size`` image voxels, at once or in tiles."""
    from uterosynth.models.diffusion import load_diffusion

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_diffusion(spec["model"], device=device)
    factor = 2 ** (len(model.autoencoder_config.channels) - 1)
    latent = [s // factor for s in spec["decode_size"]]
    z = torch.randn(1, model.sample_shape[0], *latent, device=device)
    budget = spec["budget_mb"] if spec["tiled"] else None
    with torch.inference_mode():
        model.decode(z * model.scale_factor, memory_budget_mb=budget)  # warm-up
        _reset_peak(device)
        t0 = time.perf_counter()
        out = model.decode(z * model.scale_factor, memory_budget_mb=budget)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return {"seconds": time.perf_counter() - t0, "peak_mb": _peak_mb(device), "shape": list(out.shape[2:])}


def _in_child(kind: str, spec: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sampler", default="dpmpp")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", default="default,fp32,bf16,channels_last,no_channels_last,tiled")
    parser.add_argument("--budget-mb", type=float, default=512.0)
    parser.add_argument("--decode-size", help="image size decoded at once vs in tiles, e.g. 256,256,64")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    if args.child:
        kind, spec = args.child
        print(json.dumps((child_generate if kind == "generate" else child_decode)(json.loads(spec))))
        return
    if args.model is None:
        parser.error("--model is required")
    base = {"model": str(args.model), "n": args.n, "batch": args.batch, "sampler": args.sampler,
            "steps": args.steps, "budget_mb": args.budget_mb}
    rows = []
    for name in args.variants.split(","):
        result = _in_child("generate", {**base, "variant": VARIANTS[name]})
        rows.append({"variant": name, **result})
        print(json.dumps(rows[-1]), flush=True)
    decode_rows = []
    if args.decode_size:
        size = [int(s) for s in args.decode_size.split(",")]
        for tiled in (False, True):
            result = _in_child("decode", {**base, "decode_size": size, "tiled": tiled})
            decode_rows.append({"decoding": f"tiles, budget {args.budget_mb:.0f} MB" if tiled else "at once", **result})
            print(json.dumps(decode_rows[-1]), flush=True)
    device = next((r["device"] for r in rows if "device" in r), "?")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    machine = gpu or f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    lines = ["| variant | items/s (sampling) | items/s (wall, with writing) | warm-up s | peak memory MB |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error'][:80]} | | | |")
        else:
            lines.append(f"| {r['variant']} | {r['items_per_s']:.3f} | {r['wall_items_per_s']:.3f} | "
                         f"{r['warmup_s']:.1f} | {r['peak_mb']:.0f} |")
    if decode_rows:
        lines += ["", "| decoding | image size | seconds | peak memory MB |", "| --- | --- | --- | --- |"]
        for r in decode_rows:
            if "error" in r:
                lines.append(f"| {r['decoding']} | failed: {r['error'][:80]} | | |")
            else:
                lines.append(f"| {r['decoding']} | {'×'.join(map(str, r['shape']))} | {r['seconds']:.2f} | {r['peak_mb']:.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        sys.path.insert(0, str(Path(__file__).parent))
        from benchmarks_common import update_section

        command = " ".join(["python benchmarks/bench_sampling_runtime.py", *sys.argv[1:]])
        update_section("docs/BENCHMARKS.md", f"Sampling fast path ({device}, {args.model.name})",
                       f"Model `{args.model}`, sampler {args.sampler} {args.steps} steps, batch {args.batch}, "
                       f"{args.n} items per variant; machine: {machine}, torch {torch.__version__}. Peak memory: "
                       f"CUDA allocator peak on GPU, process peak RSS on CPU.\n\n{table}\n\nCommand: `{command}`")


if __name__ == "__main__":
    main()
