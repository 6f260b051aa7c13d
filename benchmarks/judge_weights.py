"""Give a judge written before portable weights existed its ``classifier.safetensors`` and ``network`` record.

A judge saved by an earlier version holds only TorchScript (``classifier.pt``), which an older torch
cannot read. This copies the judge to OUT, rebuilds the same network, loads the TorchScript module's
weights into it, checks that both give the same logits, and records the safetensors weights beside it
(the judge itself is unchanged: ``classifier.pt`` and its sha256 stay as they were).

    python benchmarks/judge_weights.py runs/judge2 runs/judge2p
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from uterosynth.models.classifier_net import build_resnet_classifier
from uterosynth.models.judge import (
    META_FILE,
    WEIGHTS_FILE,
    network_record,
    read_classifier,
    save_weights,
    write_classifier_meta,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("judge", type=Path)
    p.add_argument("out", type=Path)
    args = p.parse_args()
    shutil.copytree(args.judge, args.out, dirs_exist_ok=True)
    scripted = read_classifier(args.out).module
    meta = json.loads((args.out / META_FILE).read_text())
    arch = {k: meta["provenance"]["config"]["classifier"][k] for k in ("widen_factor", "stem_stride", "no_max_pool")}
    size = meta["model_input_shape"]
    net = build_resnet_classifier(len(size), len(meta["classes"]), size, **arch).eval()
    net.load_state_dict(scripted.state_dict())
    x = torch.rand(8, 1, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (net(x) - scripted(x)).abs().max().item()
    if diff > 1e-5:
        raise SystemExit(f"{args.judge}: the rebuilt network differs from the TorchScript module (max logit diff {diff:.2e})")
    meta["weights"] = {"file": WEIGHTS_FILE, "sha256": save_weights(net, args.out / WEIGHTS_FILE)}
    meta["network"] = network_record(net, **arch)
    write_classifier_meta(args.out, meta)
    print(f"{args.out}: {WEIGHTS_FILE} written; same logits as the TorchScript module (max diff {diff:.1e})")


if __name__ == "__main__":
    main()
