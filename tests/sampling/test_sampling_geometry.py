"""Synthetic items carry exactly the geometry of the prepared training items (window crops).

A phantom cohort goes through ``prepare`` with the shipped window presets at output shapes whose
spacing (``window_mm / shape``) is not a round number; a tiny model trained for one step samples
two items. Every sampled item must carry the training items' pixel spacing, axis
directions and the dataset's reference affine, in the NIfTI header as in ``dataset.json``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from uterosynth.core.config import load_config
from uterosynth.data.config import PrepareConfig
from uterosynth.data.manifest import PreparedDataset
from uterosynth.data.prepare import prepare_dataset
from uterosynth.data.synthetic import SyntheticSet
from uterosynth.phantom import PhantomConfig, write_cohort
from uterosynth.sampling.generate import SampleConfig, generate
from uterosynth.training.diffusion import DiffusionTrainConfig, train_diffusion

PRESETS = Path(__file__).resolve().parents[2] / "src" / "uterosynth" / "configs"
SMALL = {"matrix": (160, 160), "spacing": (1.6, 1.6, 4.0), "slices": 18, "supersample": 1}
CASES = {
    # 128 mm / 48 = 2.666... mm in-plane; the slice axis keeps the acquired 4 mm
    2: {"preprocess.output.shape": [48, 48], "preprocess.output.slices": "central", "preprocess.output.k": 1},
    # 150 mm / 24 = 6.25 mm, 144 mm / 24 = 6 mm, 56 mm / 12 = 4.666... mm
    3: {"preprocess.output.shape": [24, 24, 12], "preprocess.roi.window_mm": [150.0, 144.0, 56.0]},
}
TINY_UNET = {"unet.channels": [8, 8], "unet.attention_levels": [False, False],
             "train.steps": 1, "train.val_every": 100, "train.batch_size": 2,
             "conditioning.attributes": [], "conditioning.text": "none"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("geometry_cohort")
    write_cohort(PhantomConfig(geometry=SMALL, subjects=4, seed=1, workers=1), root / "cohort")
    return root / "cohort"


def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


@pytest.mark.parametrize("dims", [2, 3])
def test_sampled_items_carry_the_training_geometry(tmp_path, cohort, dims):
    cfg = load_config(PrepareConfig, PRESETS / f"prepare{dims}d.yaml", overrides=CASES[dims])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prepare_dataset("umd", cohort, tmp_path / "prepared", cfg)
    data = PreparedDataset.load(tmp_path / "prepared")
    train = [nib.load(str(data.root / row["path"])) for row in data.rows]
    assert train, "no prepared items"
    model_cfg = load_config(DiffusionTrainConfig, PRESETS / "ddpm2d_cpu.yaml",
                            overrides={**TINY_UNET, "spatial_dims": dims})
    train_diffusion(model_cfg, tmp_path / "prepared", tmp_path / "model", progress=False)
    generate(tmp_path / "model", SampleConfig.model_validate(
        {"n": 2, "sampler": {"name": "ddim", "steps": 1},
         "runtime": {"device": "cpu", "batch_size": 4}}), tmp_path / "synthetic")
    syn = SyntheticSet.load(tmp_path / "synthetic")
    assert len(syn) == 2

    expected_spacing = cfg.preprocess.window_spacing()
    reference = np.asarray(data.info["affine"])
    for img in train:  # the training items: one spacing (window / shape), IPR axes
        assert np.allclose(_spacing(img.affine)[:dims], expected_spacing, rtol=0, atol=1e-6)
        assert nib.aff2axcodes(img.affine) == ("I", "P", "R")
    train_spacing = _spacing(train[0].affine)
    train_axes = nib.aff2axcodes(train[0].affine)
    assert np.allclose(data.info["spacing"], train_spacing, rtol=0, atol=1e-6)
    assert np.allclose(_spacing(reference), train_spacing, rtol=0, atol=1e-6)
    stored = reference.astype(np.float32).astype(np.float64)  # NIfTI keeps the sform as float32
    for record in syn.records:
        img = nib.load(str(syn.item_path(record)))
        assert img.shape[:dims] == tuple(data.info["shape"])
        assert np.array_equal(img.affine, stored), "the dataset's reference affine, to the last stored bit"
        assert np.array_equal(img.header.get_zooms()[:3], train[0].header.get_zooms()[:3])
        assert np.allclose(_spacing(img.affine), train_spacing, rtol=0, atol=1e-6)
        assert np.allclose(img.header.get_zooms()[:3], train[0].header.get_zooms()[:3], rtol=0, atol=1e-6)
        assert nib.aff2axcodes(img.affine) == train_axes
        # the direction cosines of every axis are those of the training items
        directions = img.affine[:3, :3] / _spacing(img.affine)
        assert np.allclose(directions, train[0].affine[:3, :3] / train_spacing, atol=1e-6)
