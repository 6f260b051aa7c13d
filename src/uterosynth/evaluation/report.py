"""The self-contained HTML report: metric tables with intervals, plots and image grids.

Everything is inlined (base64 PNG, inline CSS), so ``report.html`` opens offline and can be
mailed or archived alone; each distinct picture is embedded once
(:class:`~uterosynth.core.html_images.EmbeddedImages`) and grid tiles are thumbnails of at most
``THUMBNAIL`` pixels a side. The page is a Jinja2 template (``templates/report.html.j2``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.html_images import EmbeddedImages, png_size
from ..core.imageio import figure_png, png_bytes, preview_plane
from ..data.evaluation_results import JUDGE_CEILING
from ..data.image_set import ImageSet
from .config import ReportConfig

__all__ = ["THUMBNAIL", "image_grid_png", "render_report"]

TEMPLATES = Path(__file__).parent / "templates"

LABELS = {
    "kid": "KID", "fid": "FID at N", "fid_inf": "FID∞ (bias-corrected)", "fid_2.5d": "FID (2.5D) at N",
    "fid_2.5d_inf": "FID∞ (2.5D, bias-corrected)", "precision": "Precision", "recall": "Recall",
    "density": "Density", "coverage": "Coverage", "frd": "FRD", "msssim_diversity": "MS-SSIM within set",
    "lpips_diversity": "LPIPS within set", "slice_consistency_ssim": "Adjacent-slice SSIM",
    "slice_consistency_corr": "Adjacent-slice correlation", "conditioning_fidelity": "Conditioning fidelity",
}


def _label(metric: str) -> str:
    """A metric's name in the report (another attribute's judge: its attribute in brackets)."""
    if metric.startswith("conditioning_fidelity_"):
        return f"{LABELS['conditioning_fidelity']} ({metric.removeprefix('conditioning_fidelity_')})"
    return LABELS.get(metric, metric)


THUMBNAIL = 128
"""Largest side (pixels) of one tile of an image grid; larger items are shrunk."""


def _thumb(plane: np.ndarray, max_side: int) -> np.ndarray:
    if max(plane.shape) <= max_side:
        return plane
    from PIL import Image

    scale = max_side / max(plane.shape)
    size = (max(1, round(plane.shape[1] * scale)), max(1, round(plane.shape[0] * scale)))
    return np.asarray(Image.fromarray(np.asarray(plane, dtype=np.float32), mode="F").resize(size, Image.BOX))


def image_grid_png(images: Sequence[np.ndarray], *, columns: int = 4, pad: int = 2,
                   max_side: int = THUMBNAIL) -> bytes:
    """Tile items ``(1, *spatial)`` (their preview plane, shrunk to ``max_side``) into one grey PNG; ``b""``: none."""
    from PIL import Image

    planes = [_thumb(preview_plane(np.asarray(im)[0]), max_side) for im in images]
    if not planes:
        return b""
    h, w = planes[0].shape
    rows = math.ceil(len(planes) / columns)
    canvas = np.ones((rows * (h + pad) - pad, min(columns, len(planes)) * (w + pad) - pad), dtype=np.float32)
    for k, p in enumerate(planes):
        r, c = divmod(k, columns)
        canvas[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = p
    img = Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8))
    return png_bytes(lambda buf: img.save(buf, format="PNG", optimize=True))


def _grids(sets: list[ImageSet], group_by: str | None, per_class: int, images: EmbeddedImages) -> dict[str, Any]:
    values = {s.name: (s.attribute(group_by) if group_by else [None] * len(s)) for s in sets}
    seen = list(dict.fromkeys(v for s in sets for v in values[s.name]))  # each class once
    classes = sorted(c for c in seen if c is not None) + ([None] if None in seen else [])
    rows = []
    for cls in classes:
        cells = []
        for s in sets:
            idx = [i for i, v in enumerate(values[s.name]) if v == cls]
            png = image_grid_png([s.images[i].numpy() for i in idx[:per_class]])
            label = cls if cls is not None else "all"
            zoom = max(1, THUMBNAIL // max(s.images.shape[2:4]))  # small items shown enlarged, tiles alike
            cells.append({"set": s.name, "n": len(idx),
                          "img": images.show(png, alt=f"{s.name} {label}", height=png_size(png)[1] * zoom,
                                             pixelated=True) if png else ""})
        label = cls if cls is not None else ("all items" if not group_by else f"(no {group_by})")
        rows.append({"cls": label, "cells": cells})
    return {"rows": rows, "sets": [s.name for s in sets]}


def _metric_plot(metrics: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(metrics["sets"])
    names = list(dict.fromkeys(n for s in sets for n in metrics["sets"][s]["metrics"]))
    if not names:
        return b""
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 0.45 * len(sets) * rows + 1.2 * rows), squeeze=False)
    colours = {"synthetic": "tab:red", "real_vs_real": "tab:green"}
    for ax, name in zip(axes.flat, names, strict=False):
        for y, s in enumerate(sets):
            m = metrics["sets"][s]["metrics"].get(name)
            if not m or m["value"] is None:
                continue
            lo, hi = m["ci_low"], m["ci_high"]
            colour = colours.get(s, "tab:blue")
            if lo is not None and hi is not None:  # the interval need not contain the point (bootstrap bias)
                ax.plot([lo, hi], [y, y], color=colour, lw=2, solid_capstyle="butt")
                ax.plot([lo, hi], [y, y], "|", color=colour, ms=8)
            ax.plot([m["value"]], [y], "o", color=colour)
            real = m.get("details", {}).get("real_value")
            if real is not None:
                ax.axvline(real, color="tab:gray", ls="--", lw=1)
        ax.set_yticks(range(len(sets)), sets, fontsize=8)
        ax.set_ylim(-0.7, len(sets) - 0.3)
        ax.set_title(_label(name), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return figure_png(fig, dpi=90)


def _pca_plot(features: dict[str, Any], max_points: int, seed: int = 0) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = np.asarray(features["reference"], dtype=np.float64)
    if ref.shape[0] < 3 or ref.shape[1] < 2:
        return b""
    mean = ref.mean(0)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    basis = vt[:2].T
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, f in features.items():
        f = np.asarray(f, dtype=np.float64)
        pick = rng.permutation(len(f))[:max_points]
        xy = (f[pick] - mean) @ basis
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.5, label=f"{name} ({len(f)})")
    ax.set_xlabel("PC 1 of the real features")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return figure_png(fig, dpi=90)


def _fmt(v: float | None) -> str:
    if v is None:
        return "–"
    a = abs(v)
    return f"{v:.3g}" if a >= 1000 or a < 0.01 and a != 0 else f"{v:.3f}"


def render_report(metrics: dict[str, Any], data: dict[str, Any], cfg: ReportConfig,
                  extra_sections: Sequence[str] = ()) -> str:
    """The HTML page for ``metrics.json`` content and the loaded sets/features.

    ``extra_sections``: self-contained HTML fragments appended before the warnings (the
    downstream experiment's section, for one).
    """
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    env.globals["judge_ceiling"] = JUDGE_CEILING
    env.filters["fmt"] = _fmt
    sets = list(metrics["sets"])
    names = list(dict.fromkeys(n for s in sets for n in metrics["sets"][s]["metrics"]))
    table = []
    for name in names:
        base = name.removesuffix("_comparable")
        label = _label(base) + (" (comparable extractor)" if base != name else "")
        row = {"name": name, "label": label, "cells": [], "better": None}
        for s in sets:
            m = metrics["sets"][s]["metrics"].get(name)
            row["cells"].append(m)
            if m:
                row["better"] = m["better"]
        table.append(row)
    per_class = []
    judges = [("", metrics.get("classifier") or {})] + [(f", {j['task']} judge", j) for j in metrics.get("judges") or []]
    for suffix, judge in judges:
        on_reference = judge.get("on_reference")
        if on_reference:  # what the judge reads on real items: the ceiling a faithful generator can reach
            per_class.append({"set": f"reference (real){suffix}", "classes": on_reference["details"]["per_class"]})
        key = f"conditioning_fidelity_{judge['task']}" if suffix else "conditioning_fidelity"
        for s in sets:
            fid_ = metrics["sets"][s]["metrics"].get(key)
            if fid_:
                per_class.append({"set": s + suffix, "classes": fid_["details"]["per_class"]})
    images = EmbeddedImages()
    grids = _grids([data["reference"], *data["sets"]], data.get("group_by"), cfg.grid_per_class, images)
    metric_plot, pca_plot = _metric_plot(metrics), _pca_plot(data["features"], cfg.pca_points)
    return env.get_template("report.html.j2").render(
        m=metrics, sets=sets, table=table, per_class=per_class, grids=grids, group_by=data.get("group_by"),
        metric_plot=images.show(metric_plot, alt="metrics with confidence intervals") if metric_plot else "",
        pca_plot=images.show(pca_plot, alt="PCA of features") if pca_plot else "",
        extra_sections=list(extra_sections), image_defs=images.defs(),
    )
