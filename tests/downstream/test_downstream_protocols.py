from pathlib import Path

import pytest
import torch

from uterosynth.core.errors import ConfigError, UserError
from uterosynth.data.image_set import ImageSet
from uterosynth.downstream.config import DownstreamConfig
from uterosynth.downstream.experiment import parse_synthetic_specs
from uterosynth.downstream.protocols import (
    build_protocols,
    choose_diffusion_set,
    select_synthetic,
    synthetic_count,
    training_set,
)


def _images(n: int, source: str, labels: list[int] | None = None) -> ImageSet:
    labels = labels if labels is not None else [i % 4 for i in range(n)]
    return ImageSet(torch.rand(n, 1, 8, 8), labels=torch.tensor(labels),
                    subjects=tuple(f"S{i}" if source == "real" else "" for i in range(n)), origins=(source,) * n)


def test_protocol_grid_and_roles():
    cfg = DownstreamConfig()
    ids = [p.id for p in build_protocols(cfg, ["vae_prior", "diffusion", "recon"])]
    assert ids == ["real", "real+augment", "real+vae_prior@1:1", "real+recon@1:1", "real+diffusion@1:1",
                   "real+diffusion@1:2", "real+diffusion@1:4", "diffusion_only"]
    assert [p.id for p in build_protocols(cfg, [])] == ["real", "real+augment"]
    assert choose_diffusion_set(["a", "b"], None) == "a"
    with pytest.raises(UserError, match="diffusion_set 'c'"):
        choose_diffusion_set(["a", "b"], "c")


def test_ratio_counts_are_synthetic_to_real():
    assert synthetic_count("1:2", 10) == 5
    assert synthetic_count("4:1", 10) == 40
    with pytest.raises(ConfigError):
        from uterosynth.core.config import validate_config

        validate_config(DownstreamConfig, {"protocols": {"ratios": ["1-2"]}})


def test_synthetic_selection_is_class_balanced_and_nested():
    pool = _images(40, "diffusion", [0] * 25 + [1] * 5 + [2] * 5 + [3] * 5)
    small = select_synthetic(pool, 8, 4, seed=3)
    large = select_synthetic(pool, 20, 4, seed=3)
    assert torch.bincount(small.labels, minlength=4).tolist() == [2, 2, 2, 2]
    assert torch.bincount(large.labels, minlength=4).tolist() == [5, 5, 5, 5]
    assert set(small.images.flatten().tolist()) <= set(large.images.flatten().tolist())
    assert len(select_synthetic(pool, 100, 4, seed=3)) == 40  # capped at the set size


def test_synthetic_only_uses_only_synthetic_items():
    cfg = DownstreamConfig(protocols={"ratios": ["1:2"]})
    protocols = {p.kind: p for p in build_protocols(cfg, ["diffusion"])}
    real, pool = _images(12, "real"), _images(30, "diffusion")
    only = training_set(protocols["synthetic_only"], real, {"diffusion": pool}, num_classes=4, seed=0)
    assert len(only) == 30 and set(only.origins) == {"diffusion"} and set(only.subjects) == {""}
    mix = training_set(protocols["mix"], real, {"diffusion": pool}, num_classes=4, seed=0)
    assert mix.origins.count("real") == 12 and mix.origins.count("diffusion") == 6


def test_parse_synthetic_specs():
    sets = parse_synthetic_specs(["diffusion=/a/samples", "/b/vae_prior,recon=/c/x"])
    assert sets == {"diffusion": Path("/a/samples"), "vae_prior": Path("/b/vae_prior"), "recon": Path("/c/x")}


def test_parse_synthetic_specs_duplicate_name():
    with pytest.raises(UserError, match="two sets are named 'samples'"):
        parse_synthetic_specs(["/a/samples", "/b/samples"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("a=/x,,b=/y", "empty entry"),
        ("=/x", "expected NAME=DIR"),
        ("my set=/x", "letters, digits"),
        ("real=/x", "reserved"),
    ],
)
def test_parse_synthetic_specs_errors(spec, message):
    with pytest.raises(UserError, match=message):
        parse_synthetic_specs([spec])
