"""How hard is the phantom's orientation task? Linear probes on coarse and anatomical features.

    python benchmarks/phantom_difficulty.py [--subjects 100] [--workers 2] [--write]

For phantom versions 1 and 2 (and version 2 at difficulty 0), a cohort is generated at a
modest grid (160 × 160 × 9 sagittal voxels at 1.6 × 1.6 × 4 mm, no supersampling). From each
subject the sagittal slice holding most of the uterus is cut to a 96 × 96-pixel (154 mm)
window centred on the uterus and scaled by its 99th percentile. Multinomial logistic regression
(L2, standardised features) is scored by 4-class balanced accuracy in subject-grouped 5-fold
cross-validation (one slice per subject, so the folds are disjoint in subjects) on:

- ``thumb16``: the window averaged to 16 × 16 pixels (the coarse layout);
- ``blur8``: the window blurred with a Gaussian of σ = 8 px, then 16 × 16 (layout only);
- ``hog``: histogram-of-oriented-gradients features of the full window (edge directions:
  the anatomy, e.g. the uterine axes).

A phantom whose classes are visible only in the anatomy, not in the coarse layout, scores
``blur8`` well below ``hog``. ``--write`` replaces the ``## Phantom difficulty`` section of
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.feature import hog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from uterosynth.phantom import ORIENTATIONS, PhantomConfig, generate_subject  # noqa: E402
from uterosynth.phantom.subject import mid_slice  # noqa: E402

GRID = {"matrix": (160, 160), "spacing": (1.6, 1.6, 4.0), "slices": 9, "supersample": 1}
WINDOW = 96
VARIANTS = {"v1": {"version": 1}, "v2 difficulty 0": {"version": 2, "anatomy": {"difficulty": 0.0}},
            "v2": {"version": 2}}


def _window(args: tuple[str, int]) -> tuple[np.ndarray, str, float, float]:
    cfg_json, k = args
    cfg = PhantomConfig.model_validate_json(cfg_json)
    subject, r = generate_subject(cfg, k)
    z = mid_slice(r)
    img, seg = r.image[:, :, z].astype(np.float32), r.seg[:, :, z]
    c = np.round(ndimage.center_of_mass(seg > 0)).astype(int) if seg.any() else np.array(img.shape) // 2
    pad = np.pad(img, WINDOW)
    w = pad[c[0] + WINDOW // 2: c[0] + 3 * WINDOW // 2, c[1] + WINDOW // 2: c[1] + 3 * WINDOW // 2]
    w = w / max(float(np.percentile(w, 99)), 1.0)
    return w, subject.orientation, subject.version_angle, subject.flexion_angle


def features(windows: np.ndarray) -> dict[str, np.ndarray]:
    n = len(windows)
    b = WINDOW // 16
    thumb = windows.reshape(n, 16, b, 16, b).mean((2, 4)).reshape(n, -1)
    blur = np.stack([ndimage.gaussian_filter(w, 8.0) for w in windows])
    blur = blur.reshape(n, 16, b, 16, b).mean((2, 4)).reshape(n, -1)
    hogs = np.stack([hog(w, orientations=9, pixels_per_cell=(12, 12), cells_per_block=(2, 2)) for w in windows])
    return {"thumb16": thumb, "blur8": blur, "hog": hogs}


def _fit_predict(x_tr, y_tr, x_te, weight_decay: float) -> np.ndarray:
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    xt = torch.tensor((x_tr - mu) / sd, dtype=torch.float64)
    xe = torch.tensor((x_te - mu) / sd, dtype=torch.float64)
    y = torch.tensor(y_tr)
    lin = torch.nn.Linear(xt.shape[1], len(ORIENTATIONS)).double()
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), y) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return lin(xe).argmax(1).numpy()


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def cv_score(x: np.ndarray, y: np.ndarray, *, folds: int = 5, weight_decay: float = 1e-2, seed: int = 0) -> float:
    """Balanced accuracy of out-of-fold predictions, folds stratified by class (one item per subject)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = np.arange(len(idx)) % folds
    pred = np.empty_like(y)
    for f in range(folds):
        te = fold == f
        pred[te] = _fit_predict(x[~te], y[~te], x[te], weight_decay)
    return balanced_accuracy(y, pred)


def run_variant(overrides: dict, subjects: int, workers: int, seed: int) -> dict:
    cfg = PhantomConfig(geometry=GRID, seed=seed, subjects=subjects, **overrides)
    jobs = [(cfg.model_dump_json(), k) for k in range(subjects)]
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            out = pool.map(_window, jobs, chunksize=4)
    else:
        out = [_window(j) for j in jobs]
    windows = np.stack([o[0] for o in out])
    y = np.array([ORIENTATIONS.index(o[1]) for o in out])
    va, fa = np.array([o[2] for o in out]), np.array([o[3] for o in out])
    scores = {name: cv_score(x, y, seed=seed) for name, x in features(windows).items()}
    return {**scores, "near_neutral": float(np.mean((np.abs(va) < 10) | (np.abs(fa) < 10))),
            "min_abs_version": float(np.abs(va).min()), "min_abs_flexion": float(np.abs(fa).min())}


def section(results: dict[str, dict], subjects: int, seconds: float, command: str) -> str:
    rows = "".join(
        f"| {name} | {r['thumb16']:.2f} | {r['blur8']:.2f} | {r['hog']:.2f} | {r['near_neutral']:.0%} | "
        f"{r['min_abs_version']:.1f} / {r['min_abs_flexion']:.1f} |\n" for name, r in results.items())
    load = os.getloadavg()[0]
    return (
        "## Phantom difficulty\n\n"
        f"How visible the orientation class is, per phantom version: {subjects} subjects each, the uterus-centred "
        "96 × 96-pixel (154 mm) window of the slice holding most of the uterus (160 × 160 × 9 grid at "
        "1.6 × 1.6 × 4 mm), multinomial logistic regression, 4-class balanced accuracy in 5-fold cross-validation "
        "(one slice per subject, so folds are disjoint in subjects; chance 0.25). `thumb16`: 16 × 16 thumbnail; "
        "`blur8`: Gaussian blur σ = 8 px, then 16 × 16 (coarse layout only); `hog`: oriented-gradient features "
        "of the full window (anatomy). Near-neutral: |version| or |flexion| < 10°.\n\n"
        "| phantom | thumb16 | blur8 | hog | near-neutral | min abs version / flexion (°) |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
        f"{rows}\n"
        f"Machine: {os.cpu_count()}-core CPU, no GPU, shared with other jobs (1-min load average {load:.1f}); "
        f"{seconds:.0f} s in all. Command: `{command}`.\n"
    )


def write_section(text: str, path: Path = ROOT / "docs" / "BENCHMARKS.md") -> None:
    old = path.read_text()
    pattern = re.compile(r"^## Phantom difficulty\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(text + "\n", old)
    else:  # right after the "## Phantom" section
        anchor = re.compile(r"(^## Phantom\n.*?)(?=^## |\Z)", re.S | re.M)
        new = anchor.sub(lambda m: m.group(1) + text + "\n", old, count=1)
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results = {}
    for name, overrides in VARIANTS.items():
        results[name] = run_variant(overrides, args.subjects, args.workers, args.seed)
        print(name, {k: round(v, 3) for k, v in results[name].items()}, flush=True)
    command = f"python benchmarks/phantom_difficulty.py --subjects {args.subjects} --workers {args.workers}"
    text = section(results, args.subjects, time.perf_counter() - t0, command)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
