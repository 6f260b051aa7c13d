"""Preview grid: mid-sagittal slices, one row per orientation class, 1.5 T and 3 T columns.

Each field strength gets two columns: the image, and the same image with the label contours
(uterine wall, cavity, myoma, Nabothian cyst). Slices are shown as radiologists read them:
head up, anterior on the left.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, DataError
from .config import FIELD_STRENGTHS, ORIENTATIONS, PhantomConfig
from .subject import generate_subject, mid_slice

__all__ = ["fill_examples", "write_preview"]

Example = tuple[np.ndarray, np.ndarray, str]  # mid-sagittal image, labels, subject id
CONTOUR_COLOURS = {1: "#ffd400", 2: "#00e5ff", 3: "#ff3b3b", 4: "#7CFC00"}


def fill_examples(cfg: PhantomConfig, examples: dict[tuple[str, str], Example]) -> dict[tuple[str, str], Example]:
    """Complete ``examples`` with one subject per (class, field strength) missing from the cohort.

    Extra subjects come from a separate seed stream (salt ``preview``) so the cohort is untouched.
    """
    out = dict(examples)
    for i, cls in enumerate(ORIENTATIONS):
        for j, fs in enumerate(FIELD_STRENGTHS):
            if (cls, fs) in out:
                continue
            _, rendered = generate_subject(cfg, 2 * i + j, orientation=cls, field_strength=fs, salt="preview")
            z = mid_slice(rendered)
            out[(cls, fs)] = (rendered.image[:, :, z], rendered.seg[:, :, z], f"extra {cls} {fs}")
    return out


def write_preview(examples: dict[tuple[str, str], Example], path: str | Path, *, panel_px: int = 180) -> Path:
    """Write the 4 × 4 PNG grid to ``path`` and return it.

    Raises:
        ConfigError: ``path`` does not end in ``.png``.
        DataError: its folder cannot be created.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"preview {path}: expected a .png file name", keys=("preview",))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"preview {path}: cannot create its folder ({err.strerror})", keys=("preview",)) from err
    dpi = 100
    fig, axes = plt.subplots(len(ORIENTATIONS), 2 * len(FIELD_STRENGTHS),
                             figsize=(4 * panel_px / dpi, 4 * panel_px / dpi * 1.04), dpi=dpi, squeeze=False)
    for i, cls in enumerate(ORIENTATIONS):
        for j, fs in enumerate(FIELD_STRENGTHS):
            image, seg, sid = examples[(cls, fs)]
            vmax = float(np.percentile(image, 99.5)) or 1.0
            for c in range(2):
                ax = axes[i, 2 * j + c]
                ax.imshow(image, cmap="gray", vmin=0, vmax=vmax, interpolation="bilinear")
                if c == 1:
                    for label, colour in CONTOUR_COLOURS.items():
                        if np.any(seg == label):
                            ax.contour(seg == label, levels=[0.5], colors=[colour], linewidths=0.6)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"{fs}{' + labels' if c else ''}", fontsize=8)
            if j == 0:
                axes[i, 0].set_ylabel(cls, fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.995, top=0.965, bottom=0.005, wspace=0.02, hspace=0.02)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    from PIL import Image

    # A 256-colour palette keeps the grid small (grey levels plus the contour colours).
    Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    return path
