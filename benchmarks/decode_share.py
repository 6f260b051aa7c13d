"""Seconds per item of a latent teacher's decoder alone and of one pass of its student's network.

The part of a few-step student's time that no fewer steps can remove (the decode), beside one step's
network pass, on the same items and conditions as ``bench_distill.py``'s speed rows:

    python benchmarks/decode_share.py --teacher T --student S --guidance 3 --n 4

``--fast-config WIDTH/MIN_WIDTH/BLOCKS`` (repeatable) also times an untrained fast decoder of that
size on the same latents, with its time as a share of the full decoder's: a choice of fast-decoder
size by cost alone, before any training.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from bench_distill import student_denoiser

from uterosynth.core.precision import cpu_flags
from uterosynth.diffusion.guidance import parse_guidance
from uterosynth.models.diffusion import load_diffusion
from uterosynth.models.fast_decoder import FastDecoder, FastDecoderConfig
from uterosynth.sampling.plan import plan_items


def seconds_per_item(fn, n: int, repeats: int) -> dict:
    """Median and every timing of ``fn`` (after one warm-up call), per item."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / n)
    return {"median": sorted(times)[len(times) // 2], "all": [round(t, 4) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--guidance", default="3")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fast-config", action="append", default=[], help="WIDTH/MIN_WIDTH/BLOCKS (repeatable)")
    args = parser.parse_args()
    teacher, student = load_diffusion(args.teacher), load_diffusion(args.student)
    items = plan_items(teacher.vocab, n=None, per_class=1)[: args.n]
    cond = teacher.codec.encode([it.condition for it in items])
    z = torch.randn(len(items), *teacher.sample_shape, generator=torch.Generator().manual_seed(0))
    network = student_denoiser(student, cond, parse_guidance(args.guidance))
    t = torch.full((len(items),), teacher.schedule.num_train_timesteps - 1)
    with torch.inference_mode():
        record = {"cpu_flags": list(cpu_flags()), "threads": torch.get_num_threads(), "n": len(items),
                  "decode_s_per_item": seconds_per_item(lambda: teacher.decode(z), len(items), args.repeats),
                  "student_pass_s_per_item": seconds_per_item(lambda: network(z, t), len(items), args.repeats)}
        factor = teacher.decode(z[:1]).shape[-1] // z.shape[-1]
        for spec in args.fast_config:
            width, min_width, blocks = (int(v) for v in spec.split("/"))
            size = FastDecoderConfig(width=width, min_width=min_width, blocks=blocks)
            fast = FastDecoder(teacher.spatial_dims, z.shape[1], factor, size).eval()
            timing = seconds_per_item(lambda f=fast: f(z), len(items), args.repeats)
            timing["share_of_full"] = timing["median"] / max(record["decode_s_per_item"]["median"], 1e-12)
            record.setdefault("fast_decode_s_per_item", {})[spec] = timing
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
