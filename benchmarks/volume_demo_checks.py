"""Checks behind the 3D demo's recipe (docs/BENCHMARKS.md, "3D demo: a volume model at the 2D demo's cost").

``x0-error``: how well a diffusion model recovers the clean item from a noised one, by timestep: the
mean squared x0 error of its prediction on the first ``--items`` training items, beside the error of
taking the noisy input itself. A model that does not learn to denoise stays near the latter.

``central-kid``: KID (x1e3) of synthetic volumes' central sagittal slices to the training volumes'
central slices, in the features of an in-domain 2D encoder trained on other subjects
(``uterosynth evaluate train-encoder``), at the smaller set's N.

``central-match``: per subject, the correlation between a volume's central sagittal slice
(``[..., D // 2]``, what a 2D judge sees) and the middle slice of the same subject's 2D
``central`` items, prepared from the same scans in the same window; min, mean and max.

    python benchmarks/volume_demo_checks.py x0-error --model RUN --data PREP
    python benchmarks/volume_demo_checks.py central-kid --encoder ENCODER --data PREP3D SAMPLES [SAMPLES ...]
    python benchmarks/volume_demo_checks.py central-match --volumes PREP3D --slices PREP2D
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def x0_errors(model_dir: str, data: str, items: int, timesteps: list[int], seed: int = 0) -> list[dict]:
    from torch.utils.data import DataLoader

    from uterosynth.data.dataset import ImageDataset
    from uterosynth.data.manifest import PreparedDataset
    from uterosynth.models.diffusion import load_diffusion

    torch.manual_seed(seed)
    model = load_diffusion(model_dir)
    batch = next(iter(DataLoader(ImageDataset(PreparedDataset.load(data).split("train")), batch_size=items)))
    x0 = batch["image"].float()
    cond = None
    if model.codec is not None:
        names = [*model.codec.vocab.categorical, *model.codec.vocab.continuous]
        cond = model.codec.encode([{k: batch[k][i] for k in names if k in batch} for i in range(len(x0))])
    model.unet.eval()
    rows = []
    with torch.no_grad():
        for step in timesteps:
            t = torch.full((len(x0),), step)
            x_t = model.schedule.add_noise(x0, torch.randn_like(x0), t)
            pred = model.schedule.predict_x0(model.unet(x_t, t, cond), x_t, t)
            rows.append({"t": step, "x0_error": round(float((pred - x0).pow(2).mean()), 4),
                         "noisy_input_error": round(float((x_t - x0).pow(2).mean()), 4)})
    return rows


def central_kid(encoder: str, data: str, sample_sets: list[str]) -> dict[str, float]:
    from demo_recipe_sweep import extract_features, load_encoder

    from uterosynth.data.dataset import ImageDataset
    from uterosynth.data.manifest import PreparedDataset
    from uterosynth.data.synthetic import SyntheticSet
    from uterosynth.evaluation.metrics import kid

    net = load_encoder(encoder)
    features = lambda images: extract_features(net, torch.as_tensor(images))  # noqa: E731
    train_set = ImageDataset(PreparedDataset.load(data).split("train"))
    volumes = np.stack([train_set[i]["image"][0].numpy() for i in range(len(train_set))])
    centre = volumes.shape[-1] // 2
    train = features(volumes[:, None, :, :, centre])
    out = {}
    for folder in sample_sets:
        fake = features(SyntheticSet.load(folder).stack()[:, None, :, :, centre])
        n = min(len(fake), len(train))
        out[folder] = round(1e3 * kid(train, fake[:n], subset_size=n, seed=0)[0], 2)
    return out


def central_match(volumes: str, slices: str) -> dict[str, float]:
    from collections import defaultdict

    from uterosynth.data.manifest import PreparedDataset

    flat = PreparedDataset.load(slices)
    by_subject = defaultdict(list)
    for row in flat.rows:
        by_subject[row["subject"]].append(row)
    data = PreparedDataset.load(volumes)
    r = []
    for row in data.rows:
        middle = sorted(by_subject[row["subject"]], key=lambda x: int(x["slice_index"]))
        middle = flat.load_item(middle[len(middle) // 2])[0]
        volume = data.load_item(row)[0]
        r.append(np.corrcoef(volume[..., volume.shape[-1] // 2].ravel(), middle.ravel())[0, 1])
    return {"subjects": len(r), "min": round(float(min(r)), 4), "mean": round(float(np.mean(r)), 4), "max": round(float(max(r)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    err = sub.add_parser("x0-error")
    err.add_argument("--model", required=True)
    err.add_argument("--data", required=True)
    err.add_argument("--items", type=int, default=16)
    err.add_argument("--timesteps", default="50,200,600,950")
    k = sub.add_parser("central-kid")
    k.add_argument("--encoder", required=True)
    k.add_argument("--data", required=True)
    k.add_argument("samples", nargs="+")
    m = sub.add_parser("central-match")
    m.add_argument("--volumes", required=True)
    m.add_argument("--slices", required=True)
    args = parser.parse_args()
    if args.command == "x0-error":
        for row in x0_errors(args.model, args.data, args.items, [int(t) for t in args.timesteps.split(",")]):
            print(row)
    elif args.command == "central-match":
        print(central_match(args.volumes, args.slices))
    else:
        for folder, value in central_kid(args.encoder, args.data, args.samples).items():
            print(f"{folder}: KID x1e3 {value}")


if __name__ == "__main__":
    main()
