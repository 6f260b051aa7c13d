"""Seconds per item of a latent teacher's decoder alone and of one pass of its student's network.

The part of a few-step student's time that no fewer steps can remove (the decode), beside one step's
network pass, on the same items and conditions as ``bench_distill.py``'s speed rows:

    python benchmarks/decode_share.py --teacher T --student S --guidance 3 --n 4
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
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
