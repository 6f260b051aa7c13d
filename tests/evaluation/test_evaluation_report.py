"""The evaluation report stays small: one grid row per class, thumbnails, each distinct image embedded once."""

from __future__ import annotations

import base64
import re
from collections import Counter

import numpy as np
import pytest
import torch

from uterosynth.core.html_images import EmbeddedImages, png_size, thumbnail_png
from uterosynth.data.image_set import ImageSet
from uterosynth.evaluation.config import ReportConfig
from uterosynth.evaluation.report import THUMBNAIL, render_report

DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _metrics(sets: list[str]) -> dict:
    return {"provenance": {"created": "now", "uterosynth_version": "test", "seed": 0},
            "reference": {"source": "prepared:train", "n": 40, "dims": 2, "shape": [256, 256]},
            "extractor": {"name": "x", "kind": "torchscript", "feature_dim": 4, "sha256": "0" * 64},
            "comparable_extractor": None, "classifier": None,
            "equal_n": {"n": 20, "draws": 1, "unit": "subject", "radiomics_n": None},
            "sets": {s: {"kind": "synthetic", "n": 20, "shape": [256, 256], "source": s, "metrics": {}} for s in sets},
            "notes": [], "warnings": [], "timings_s": {}}


def _set(images: torch.Tensor, name: str, classes: list[str]) -> ImageSet:
    return ImageSet(images, conditions=tuple({"orientation": c} for c in classes), name=name,
                    kind="real" if name == "reference" else "synthetic")


def test_report_embeds_each_image_once_as_thumbnails_one_row_per_class():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((40, 1, 256, 256), dtype=np.float32))  # noise: incompressible PNGs
    classes = ["AVAF", "RVRF"] * 20
    reference = _set(images, "reference", classes)
    copy = _set(images.clone(), "synthetic", classes)  # the same items: the same grids
    other = _set(images.flip(-1), "other", classes)
    features = {n: torch.from_numpy(rng.standard_normal((40, 4), dtype=np.float32)) for n in
                ("reference", "synthetic", "other")}
    html = render_report(_metrics(["synthetic", "other"]), {"reference": reference, "sets": [copy, other],
                                                           "features": features, "group_by": "orientation"},
                         ReportConfig(grid_per_class=8))
    payloads = Counter(DATA_URI.findall(html))
    assert payloads and max(payloads.values()) == 1  # identical images embedded once
    # a grid per class and set (reference and synthetic grids identical) and the PCA plot
    assert len(payloads) == 2 * 2 + 1 and html.count("<use href=") == 3 * 2 + 1
    assert html.count("<td>AVAF</td>") == 1 and html.count("<td>RVRF</td>") == 1
    sizes = Counter(png_size(base64.b64decode(data)) for data in payloads)
    assert sizes[(4 * THUMBNAIL + 3 * 2, 2 * THUMBNAIL + 2)] == 4  # 8 items of 256² in 4 columns, as thumbnails
    assert len(html.encode()) < 1_000_000  # the 40 noise images alone are 2.6 MB of raw 8-bit pixels


def test_embedded_images_reuse_and_thumbnail():
    images = EmbeddedImages()
    png = thumbnail_png(np.linspace(0, 1, 300 * 200).reshape(300, 200), max_side=64)
    assert png_size(png) == (43, 64)
    a, b = images.show(png, alt="a"), images.show(png, alt="b", height=128)
    assert len(images) == 1 and 'href="#im0"' in a and 'height="128"' in b and 'width="86"' in b
    assert images.defs().count("data:image/png") == 1
    with pytest.raises(ValueError):
        png_size(b"not a png")
