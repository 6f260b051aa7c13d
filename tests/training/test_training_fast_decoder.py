"""The fast decoder: shapes, batch independence, distillation toward the full decoder, sampling with it, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_prepared_dataset
from uterosynth.core.config import load_config
from uterosynth.core.errors import ConfigError
from uterosynth.models.fast_decoder import FastDecoder, FastDecoderConfig, load_fast_decoder
from uterosynth.models.latent import LatentCache, encode_dataset, load_autoencoder
from uterosynth.sampling.generate import SampleConfig, generate
from uterosynth.training.autoencoder import AutoencoderTrainConfig, train_autoencoder
from uterosynth.training.diffusion import DiffusionTrainConfig, train_diffusion
from uterosynth.training.fast_decoder import FastDecoderTrainConfig, psnr_to_full, train_fast_decoder
from uterosynth.training.latents import LatentDataset


@pytest.fixture(scope="module")
def latents(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fast_decoder")
    data = make_prepared_dataset(root / "data", dims=2, shape=(16, 16), subjects=6, items_per_subject=2)
    ae_cfg = load_config(AutoencoderTrainConfig, "configs/ae2d_cpu.yaml", overrides={
        "train.steps": 2, "train.val_every": 100, "loss.adv_weight": 0.0, "perceptual.network": "none"})
    train_autoencoder(ae_cfg, data, root / "ae", progress=False)
    encode_dataset(root / "ae", data, root / "latents")
    cfg = FastDecoderTrainConfig.model_validate({"network": {"width": 16, "min_width": 8}, "train": {
        "steps": 60, "batch_size": 4, "val_every": 30, "checkpoint_every": 30, "device": "cpu"}, "optimizer": {"lr": 3e-3}})
    train_fast_decoder(cfg, root / "latents", root / "decoder", progress=False)
    return {"data": data, "ae": root / "ae", "latents": root / "latents", "decoder": root / "decoder", "root": root}


@pytest.mark.parametrize(("dims", "shape"), [(2, (3, 8, 8)), (3, (3, 4, 4, 4))])
def test_shapes_and_batch_independence(dims, shape):
    decoder = FastDecoder(dims, 3, 4, FastDecoderConfig(width=8, min_width=4)).eval()
    z = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = decoder(z)
        alone = decoder(z[1:2])
    assert out.shape == (3, 1, *[4 * s for s in shape[1:]])
    torch.testing.assert_close(alone, out[1:2], rtol=1e-5, atol=1e-6)  # no normalisation across the batch
    with pytest.raises(ValueError, match="power of two"):
        FastDecoder(dims, 3, 3, FastDecoderConfig())


def test_distillation_approaches_the_full_decoder(latents):
    decoder, meta = load_fast_decoder(latents["decoder"])
    autoencoder, ae_meta, _ = load_autoencoder(latents["ae"])
    assert meta["autoencoder"]["sha256"] == ae_meta["sha256"] and meta["factor"] == 2
    held_out = LatentDataset(LatentCache.load(latents["latents"]), "val")
    z = torch.stack([held_out[i]["mean"] for i in range(len(held_out))])
    untrained = FastDecoder(2, int(meta["latent_channels"]), 2, FastDecoderConfig.model_validate(meta["network"])).eval()
    trained = psnr_to_full(decoder, autoencoder, z)
    assert trained == pytest.approx(meta["psnr_to_full_db"], abs=0.01)
    assert trained > psnr_to_full(untrained, autoencoder, z) + 0.5  # distillation moved it toward the teacher
    assert meta["training_subjects"]["ids"]


def test_sampling_with_the_fast_decoder_records_it(latents, tmp_path):
    ldm = load_config(DiffusionTrainConfig, "configs/ldm2d_cpu.yaml", overrides={
        "autoencoder": str(latents["ae"]), "latents": str(latents["latents"]), "train.steps": 1, "preview.steps": 1,
        "preview.per_class": 1, "train.val_every": 100})
    train_diffusion(ldm, latents["data"], tmp_path / "ldm", progress=False)
    base = {"n": 2, "sampler": {"name": "ddim", "steps": 2}, "runtime": {"device": "cpu", "batch_size": 2}}
    generate(tmp_path / "ldm", SampleConfig.model_validate(base), tmp_path / "full")
    generate(tmp_path / "ldm", SampleConfig.model_validate({**base, "decoder": str(latents["decoder"])}), tmp_path / "fast")
    full = json.loads((tmp_path / "full" / "synthetic.json").read_text())
    fast = json.loads((tmp_path / "fast" / "synthetic.json").read_text())
    assert full["decoder"] == {"kind": "full"}
    assert fast["decoder"]["kind"] == "fast" and fast["decoder"]["psnr_to_full_db"] > 0
    assert fast["image_shape"] == full["image_shape"]
    other = tmp_path / "other_ae"
    ae_cfg = load_config(AutoencoderTrainConfig, "configs/ae2d_cpu.yaml", overrides={
        "train.steps": 1, "train.val_every": 100, "loss.adv_weight": 0.0, "perceptual.network": "none", "seed": 5})
    train_autoencoder(ae_cfg, latents["data"], other, progress=False)
    encode_dataset(other, latents["data"], tmp_path / "other_latents")
    train_fast_decoder(FastDecoderTrainConfig.model_validate({"train": {"steps": 1, "batch_size": 4, "device": "cpu"}}),
                       tmp_path / "other_latents", tmp_path / "other_decoder", progress=False)
    with pytest.raises(ConfigError, match="distilled from autoencoder"):
        generate(tmp_path / "ldm", SampleConfig.model_validate({**base, "decoder": str(tmp_path / "other_decoder")}),
                 tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_a_pixel_model_takes_no_decoder(latents, tmp_path):
    pixel = load_config(DiffusionTrainConfig, "configs/ddpm2d_cpu.yaml", overrides={"train.steps": 1, "train.val_every": 100})
    train_diffusion(pixel, latents["data"], tmp_path / "ddpm", progress=False)
    with pytest.raises(ConfigError, match="give one of decoder and decode_memory_mb"):
        generate(tmp_path / "ddpm", SampleConfig.model_validate({"n": 1, "decoder": str(latents["decoder"]),
                                                                 "decode_memory_mb": 100}), tmp_path / "syn")
    with pytest.raises(ConfigError, match="samples pixels"):
        generate(tmp_path / "ddpm", SampleConfig.model_validate({"n": 1, "decoder": str(latents["decoder"]),
                                                                 "runtime": {"device": "cpu"}}), tmp_path / "syn")


def test_the_fast_path_decodes_the_latents_the_full_path_decodes(latents, tmp_path, monkeypatch):
    """With the autoencoder's own decoder standing in for the fast one, both paths give the same images
    (so the fast path gets the latents at the autoencoder's scale)."""
    import nibabel as nib

    import uterosynth.models.fast_decoder as gen  # the loader sampling calls through fast_decoder_for

    ldm = load_config(DiffusionTrainConfig, "configs/ldm2d_cpu.yaml", overrides={
        "autoencoder": str(latents["ae"]), "latents": str(latents["latents"]), "train.steps": 1, "preview.steps": 1,
        "preview.per_class": 1, "train.val_every": 100})
    train_diffusion(ldm, latents["data"], tmp_path / "ldm", progress=False)
    autoencoder, _, _ = load_autoencoder(latents["ae"])
    real_load = gen.load_fast_decoder

    def own_decoder(path, device="cpu"):
        _, meta = real_load(path, device=device)
        return autoencoder.decode, meta

    monkeypatch.setattr(gen, "load_fast_decoder", own_decoder)
    base = {"n": 2, "sampler": {"name": "ddim", "steps": 2}, "runtime": {"device": "cpu", "batch_size": 2,
                                                                         "precision": "fp32"}}
    generate(tmp_path / "ldm", SampleConfig.model_validate(base), tmp_path / "full")
    generate(tmp_path / "ldm", SampleConfig.model_validate({**base, "decoder": str(latents["decoder"])}), tmp_path / "fast")
    for name in ("000000.nii.gz", "000001.nii.gz"):
        full = nib.load(tmp_path / "full" / "items" / name).get_fdata()
        fast = nib.load(tmp_path / "fast" / "items" / name).get_fdata()
        assert abs(full - fast).max() < 1e-5


def test_the_distillation_benchmark_times_and_scores_both_decoders(latents, tmp_path):
    """benchmarks/bench_distill.py --decoder: the DPM-Solver++ 10 row and every student row also with the
    fast decoder, and a student quality row sampled through it."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_distill import quality_row, speed_rows

    from uterosynth.data.image_set import load_prepared
    from uterosynth.distill import DistillConfig, distill
    from uterosynth.downstream.config import JudgeConfig
    from uterosynth.downstream.judge import load_classifier, train_judge
    from uterosynth.models.diffusion import load_diffusion

    ldm = load_config(DiffusionTrainConfig, "configs/ldm2d_cpu.yaml", overrides={
        "autoencoder": str(latents["ae"]), "latents": str(latents["latents"]), "train.steps": 1, "preview.steps": 1,
        "preview.per_class": 1, "train.val_every": 100})
    train_diffusion(ldm, latents["data"], tmp_path / "ldm", progress=False)
    distill(DistillConfig.model_validate({
        "pairs": 4, "student_steps": 2, "teacher_sampler": {"name": "ddim", "steps": 2}, "teacher_batch_size": 4,
        "guidance": {"orientation": [2.0, 4.0]}, "runtime": {"device": "cpu"},
        "train": {"steps": 1, "batch_size": 4, "device": "cpu"}}), tmp_path / "ldm", tmp_path / "s2", progress=False)
    teacher, student = load_diffusion(tmp_path / "ldm"), load_diffusion(tmp_path / "s2")
    fast, _ = load_fast_decoder(latents["decoder"])
    rows = speed_rows(teacher, {"S2": student}, {"orientation": 3.0}, 2, fast)
    got = {(r["row"], r["steps"], r["decoder"]) for r in rows}
    assert {("teacher, DPM-Solver++", 10, "fast"), ("teacher, DPM-Solver++", 20, "full"),
            ("student S2, Euler", 2, "full"), ("student S2, Euler", 2, "fast")} <= got
    assert ("teacher, DPM-Solver++", 20, "fast") not in got and all(r["s_per_item"] > 0 for r in rows)
    assert rows[0]["row"] == "MONAI DDPMScheduler (reference)" and rows[0]["vs_monai_ddpm"] == 1.0
    real = load_prepared(latents["data"], split="train")
    train_judge(latents["data"], JudgeConfig.model_validate({
        "classifier": {"image_size": 16, "widen_factor": 0.0625}, "augment_training": False,
        "train": {"max_epochs": 1, "min_epochs": 1, "min_samples_per_epoch": 16}}), tmp_path / "judge")
    flat = lambda x: x.flatten(1)  # noqa: E731 -- features for KID; a flattening stand-in keeps the test light
    row = quality_row(tmp_path / "s2", "rflow", 2, {"orientation": 3.0}, 1, tmp_path / "q", load_classifier(tmp_path / "judge"),
                      real, flat(torch.as_tensor(real.images)), flat, latents["decoder"])
    assert json.loads((tmp_path / "q" / "synthetic.json").read_text())["decoder"]["kind"] == "fast"
    assert row["n"] == 8 and sum(v["n"] for v in row["per_class"].values()) == 8  # one per orientation x field strength


def test_a_3d_fast_decoder_decodes_volumes_with_the_full_decoders_geometry(tmp_path):
    """The 3D preset's decoder, trained on a volume autoencoder's latents, samples volumes of the full
    decoder's shape and voxel geometry, and the set records it."""
    import nibabel as nib

    data = make_prepared_dataset(tmp_path / "vol", dims=3, shape=(16, 16, 8), subjects=8, items_per_subject=1)
    ae_cfg = load_config(AutoencoderTrainConfig, "configs/ae3d_cpu.yaml", overrides={
        "train.steps": 1, "train.batch_size": 2, "train.val_every": 100, "loss.adv_weight": 0.0, "perceptual.network": "none"})
    train_autoencoder(ae_cfg, data, tmp_path / "ae", progress=False)
    encode_dataset(tmp_path / "ae", data, tmp_path / "latents")
    cfg = load_config(FastDecoderTrainConfig, "configs/fast_decoder3d.yaml", overrides={
        "train.steps": 2, "train.batch_size": 2, "train.val_every": 2, "train.device": "cpu"})
    train_fast_decoder(cfg, tmp_path / "latents", tmp_path / "decoder", progress=False)
    _, meta = load_fast_decoder(tmp_path / "decoder")
    assert meta["spatial_dims"] == 3 and meta["network"]["min_width"] == 8 and meta["psnr_to_full_db"] > 0

    ldm = load_config(DiffusionTrainConfig, "configs/ldm2d_cpu.yaml", overrides={
        "spatial_dims": 3, "autoencoder": str(tmp_path / "ae"), "latents": str(tmp_path / "latents"),
        "train.steps": 1, "train.batch_size": 2, "preview.steps": 1, "preview.per_class": 1,
        "train.val_every": 100})
    train_diffusion(ldm, data, tmp_path / "ldm", progress=False)
    base = {"n": 1, "sampler": {"name": "ddim", "steps": 2}, "runtime": {"device": "cpu", "batch_size": 1}}
    generate(tmp_path / "ldm", SampleConfig.model_validate(base), tmp_path / "full")
    generate(tmp_path / "ldm", SampleConfig.model_validate({**base, "decoder": str(tmp_path / "decoder")}),
             tmp_path / "fast")
    full = nib.load(tmp_path / "full" / "items" / "000000.nii.gz")
    fast = nib.load(tmp_path / "fast" / "items" / "000000.nii.gz")
    assert fast.shape == full.shape == (16, 16, 8)
    assert (fast.affine == full.affine).all()
    assert json.loads((tmp_path / "fast" / "synthetic.json").read_text())["decoder"]["kind"] == "fast"
