"""Diffusion training: conditioned pixel DDPM runs, checkpoints what sampling needs, resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_prepared_dataset
from uterosynth.core.checkpoint import load_train_state, load_weights
from uterosynth.core.config import load_config
from uterosynth.core.errors import ConfigError, UserError
from uterosynth.core.seeding import index_generator
from uterosynth.diffusion.guidance import guided_denoiser
from uterosynth.diffusion.samplers import build_sampler, initial_noise
from uterosynth.models.diffusion import load_diffusion
from uterosynth.models.diffusion_unet import fold_depth, unfold_depth
from uterosynth.training.diffusion import DiffusionTrainConfig, train_diffusion

CPU = "configs/ddpm2d_cpu.yaml"


def _cfg(**over) -> DiffusionTrainConfig:
    return load_config(DiffusionTrainConfig, CPU, overrides=over)


def _losses(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "model/total" in r]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_prepared_dataset(tmp_path / "p2", dims=2, shape=(16, 16), subjects=6, items_per_subject=2)


def test_train_writes_everything_sampling_needs(tmp_path, data):
    summary = train_diffusion(_cfg(), data, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    meta = json.loads((run / "checkpoint" / "model.json").read_text())
    assert meta["kind"] == "diffusion" and meta["space"] == "pixel" and summary["steps"] == 4
    assert summary["flops_per_step"] > 0 and summary["train_flops"] == 4 * summary["flops_per_step"]  # the compute
    assert meta["sample_shape"] == [1, 16, 16] and meta["geometry"]["spacing"] == [0.8, 0.8, 4.0]
    vocab = meta["conditioning"]["vocabulary"]
    assert vocab["attributes"]["orientation"] == ["AVAF", "AVRF", "RVAF", "RVRF"]
    assert vocab["text_null_tokens"][0] == 2  # the [NULL] token
    assert meta["schedule"]["prediction_type"] == "v_prediction" and meta["weights"] == "ema"
    assert len(_losses(run)) == 4 and all(r["model/total"] > 0 for r in _losses(run))
    assert [p.name for p in sorted((run / "images").glob("*.png"))] == ["step_0000002.png", "step_0000004.png"]
    val = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val/loss" in r]
    assert len(val) == 2 and all(r["val/loss"] > 0 for r in val)

    model = load_diffusion(run)
    assert model.vocab.names == ["orientation", "field_strength", "text"]
    cond = model.codec.encode([{"orientation": "RVRF"}] * 2)
    x_T = initial_noise((2, *model.sample_shape), [index_generator(0, i) for i in range(2)])
    denoise = guided_denoiser(model.unet, cond, model.vocab, {"orientation": 3.0})
    out = build_sampler("dpmpp", model.schedule).sample(denoise, x_T, steps=3)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, data):
    cfg = _cfg(**{"train.steps": 5, "train.val_every": 100})
    train_diffusion(cfg, data, tmp_path / "full", progress=False)

    def kill(trainer, step: int) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_diffusion(cfg, data, tmp_path / "cut", progress=False, on_step_end=kill)
    assert load_train_state(tmp_path / "cut" / "checkpoint")["step"] == 2
    resumed = train_diffusion(cfg, data, tmp_path / "cut", resume=True, progress=False)
    assert resumed["resumed_from"] == 2 and "schedule_changed_on_resume" not in resumed  # the same schedule
    full, cut = _losses(tmp_path / "full"), _losses(tmp_path / "cut")
    for a, b in zip(full, cut, strict=True):
        a.pop("items_per_s"), b.pop("items_per_s")
        assert a == b
    wa, wb = load_weights(tmp_path / "full" / "checkpoint"), load_weights(tmp_path / "cut" / "checkpoint")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_unconditional_rflow(tmp_path, data):
    cfg = _cfg(**{"conditioning.attributes": [], "conditioning.text": "none", "schedule.objective": "rflow",
                  "schedule.rescale_zero_terminal_snr": False, "preview.sampler": "rflow", "train.steps": 2})
    train_diffusion(cfg, data, tmp_path / "run", progress=False)
    model = load_diffusion(tmp_path / "run")
    assert model.codec is None and not model.unet.conditioned and model.schedule.objective == "rflow"


def test_patched_pixel_model_trains_and_samples_at_full_resolution(tmp_path, data):
    train_diffusion(_cfg(**{"unet.patch_size": 4, "train.steps": 2}), data, tmp_path / "run", progress=False)
    model = load_diffusion(tmp_path / "run")
    assert model.meta["network"]["patch_size"] == 4 and model.unet.unet.conv_in.conv.in_channels == 16
    cond = model.codec.null(2)
    x = build_sampler("ddim", model.schedule).sample(lambda z, t: model.unet(z, t, cond), torch.randn(2, 1, 16, 16),
                                                      steps=3)
    assert x.shape == (2, 1, 16, 16) and torch.isfinite(x).all()


def test_fold_and_unfold_depth_are_inverse():
    x = torch.arange(2 * 1 * 4 * 6 * 3, dtype=torch.float32).reshape(2, 1, 4, 6, 3)
    folded = fold_depth(x)
    assert folded.shape == (2, 3, 4, 6) and torch.equal(folded[:, 2], x[:, 0, ..., 2])  # slice k is channel k
    assert torch.equal(unfold_depth(folded, x.shape), x)


def test_depth_folded_volume_model_is_a_2d_network(tmp_path, prepared_3d):
    cfg = _cfg(**{"spatial_dims": 3, "unet.fold_depth": 8, "unet.patch_size": 2, "train.steps": 2})
    train_diffusion(cfg, prepared_3d, tmp_path / "run", progress=False)
    model = load_diffusion(tmp_path / "run")
    conv_in = model.unet.unet.conv_in.conv
    assert model.network_dims == 2 and model.spatial_dims == 3 and isinstance(conv_in, torch.nn.Conv2d)
    assert conv_in.in_channels == 8 * 2 * 2  # eight slices of 2 x 2 patches
    cond = model.codec.null(2)
    x = build_sampler("ddim", model.schedule).sample(lambda z, t: model.unet(z, t, cond),
                                                      torch.randn(2, 1, 16, 16, 8), steps=3)
    assert x.shape == (2, 1, 16, 16, 8) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="folds 8 slices into channels"):
        model.unet(torch.randn(1, 1, 16, 16, 4), torch.tensor([10]), model.codec.null(1))


def test_fold_depth_must_be_the_number_of_slices(tmp_path, data, prepared_3d):
    with pytest.raises(ConfigError, match="unet.fold_depth=4 must be the slices"):
        train_diffusion(_cfg(**{"spatial_dims": 3, "unet.fold_depth": 4}), prepared_3d, tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="unet.fold_depth=8 must be the slices"):
        train_diffusion(_cfg(**{"unet.fold_depth": 8}), data, tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_patch_size_must_divide_the_image(tmp_path, data):
    with pytest.raises(ConfigError, match="unet.patch_size=3 with 2 UNet levels"):
        train_diffusion(_cfg(**{"unet.patch_size": 3}), data, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_attribute_missing_from_manifest(tmp_path, data):
    with pytest.raises(UserError, match="pathology not in the manifest"):
        train_diffusion(_cfg(**{"conditioning.attributes": ["pathology"]}), data, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_balance_by_weights_each_class_equally(tmp_path, data):
    from uterosynth.training.diffusion import class_balanced_weights

    records = [{"orientation": o} for o in ["AVAF", "AVAF", "RVRF", "RVRF", "RVRF", "RVRF"]]
    weights = class_balanced_weights(records, "orientation", source="m")
    assert weights == [0.5, 0.5, 0.25, 0.25, 0.25, 0.25]  # each value half of the draws
    # an empty value is not a class: those items keep their share, the values split the rest equally
    myoma = [{"myoma": v} for v in ["present", "absent", "absent", "absent", "", ""]]
    weights = class_balanced_weights(myoma, "myoma", source="m")
    assert weights[:4] == [1.0, 1 / 3, 1 / 3, 1 / 3] and weights[4] == weights[5] == 0.5
    assert sum(weights[4:]) / sum(weights) == pytest.approx(2 / 6)
    with pytest.raises(UserError, match="balance_by column 'pathology' not in the manifest"):
        train_diffusion(_cfg(balance_by="pathology"), data, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    assert train_diffusion(_cfg(balance_by="orientation"), data, tmp_path / "ok", progress=False)["steps"] == 4
    train_diffusion(_cfg(), data, tmp_path / "plain", progress=False)
    # the weighted draw reaches the data order: same seed, different batches, different losses
    assert [r["model/mse"] for r in _losses(tmp_path / "ok")] != [r["model/mse"] for r in _losses(tmp_path / "plain")]


def test_dimensionality_mismatch(tmp_path, data):
    with pytest.raises(ConfigError, match="holds 2D items"):
        train_diffusion(_cfg(spatial_dims=3), data, tmp_path / "run", progress=False)


def test_latent_space_needs_autoencoder():
    with pytest.raises(ConfigError, match="needs 'autoencoder'"):
        _cfg(space="latent")


def test_augmentation_changes_what_a_pixel_model_sees_and_is_refused_for_latents(tmp_path, data):
    for name, augment in (("plain", False), ("aug", True)):
        train_diffusion(_cfg(**{"train.steps": 2, "train.augment": augment}), data, tmp_path / name, progress=False)
    plain, aug = (load_weights(tmp_path / name / "checkpoint") for name in ("plain", "aug"))
    assert any(not torch.equal(plain[k], aug[k]) for k in plain)  # same seed, other images
    again = tmp_path / "aug2"
    train_diffusion(_cfg(**{"train.steps": 2, "train.augment": True}), data, again, progress=False)
    assert all(torch.equal(aug[k], w) for k, w in load_weights(again / "checkpoint").items())  # reproducible
    with pytest.raises(ConfigError, match="train.augment works on images"):
        _cfg(space="latent", autoencoder="ae", latents="lat", **{"train.augment": True})


def test_existing_output_refused(tmp_path, data):
    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match="already exists"):
        train_diffusion(_cfg(), data, tmp_path / "run", progress=False)


def _ddp_worker(rank: int, world: int, port: int, data: str, out: str, dump: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from uterosynth.core.distributed import shutdown_distributed

    cfg = _cfg(**{"train.steps": 2, "train.batch_size": 2, "train.val_every": 100, "train.checkpoint_every": 100})

    def grab(trainer, step: int) -> None:
        if step == cfg.train.steps:
            torch.save({k: v.detach().clone() for k, v in trainer.parts.raw["unet"].named_parameters()},
                       Path(dump) / f"rank{rank}.pt")

    try:
        train_diffusion(cfg, data, out, progress=False, on_step_end=grab)
    finally:
        shutdown_distributed()


@pytest.mark.slow
def test_two_cpu_processes_end_with_identical_weights(tmp_path, data):
    """DDP with attribute + text conditioning: no unused-parameter error, identical replicas."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(data), str(tmp_path / "run"), str(tmp_path)), nprocs=2, join=True)
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert set(w0) == set(w1) and any(".text." in k for k in w0)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert [r["step"] for r in _losses(tmp_path / "run")] == [1, 2]


@pytest.fixture
def autoencoder_and_latents(tmp_path, data) -> tuple[Path, Path]:
    from uterosynth.models.latent import encode_dataset
    from uterosynth.training.autoencoder import AutoencoderTrainConfig, train_autoencoder

    ae_cfg = load_config(AutoencoderTrainConfig, "configs/ae2d_cpu.yaml", overrides={
        "train.steps": 1, "train.val_every": 100, "loss.adv_weight": 0.0, "perceptual.network": "none"})
    train_autoencoder(ae_cfg, data, tmp_path / "ae", progress=False)
    encode_dataset(tmp_path / "ae", data, tmp_path / "latents")
    return tmp_path / "ae", tmp_path / "latents"


def _ldm_cfg(ae: Path, latents: Path, **over) -> DiffusionTrainConfig:
    return load_config(DiffusionTrainConfig, "configs/ldm2d_cpu.yaml", overrides={
        "autoencoder": str(ae), "latents": str(latents), "train.steps": 2, "preview.steps": 2,
        "preview.per_class": 1, **over})


@pytest.mark.slow
def test_latent_diffusion_end_to_end(tmp_path, data, autoencoder_and_latents):
    from uterosynth.data.synthetic import SyntheticSet
    from uterosynth.sampling.generate import SampleConfig, generate

    ae, latents = autoencoder_and_latents
    train_diffusion(_ldm_cfg(ae, latents), data, tmp_path / "ldm", progress=False)
    meta = json.loads((tmp_path / "ldm" / "checkpoint" / "model.json").read_text())
    cache = json.loads((latents / "latents.json").read_text())
    assert meta["space"] == "latent" and meta["scale_factor"] == pytest.approx(cache["scale_factor"])
    assert meta["sample_shape"] == cache["latent_shape"] == [2, 8, 8]
    assert meta["autoencoder"]["sha256"] == cache["autoencoder"]["sha256"]
    cfg = SampleConfig.model_validate({"per_class": 1, "conditions": {"field_strength": "1.5T"}, "guidance": 2.0,
                                       "sampler": {"name": "unipc", "steps": 3},
                                       "runtime": {"device": "cpu", "batch_size": 4}})
    generate(tmp_path / "ldm", cfg, tmp_path / "syn")
    syn = SyntheticSet.load(tmp_path / "syn")
    assert len(syn) == 4 and syn.load_array(syn.records[0]).shape == (16, 16)


def test_latents_from_another_autoencoder_are_refused(tmp_path, data, autoencoder_and_latents):
    ae, latents = autoencoder_and_latents
    info = json.loads((latents / "latents.json").read_text())
    info["autoencoder"]["sha256"] = "0" * 64
    (latents / "latents.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="latents were encoded with autoencoder 000000000000"):
        train_diffusion(_ldm_cfg(ae, latents), data, tmp_path / "ldm", progress=False)


def test_autoencoder_of_wrong_dimensionality(tmp_path, data, autoencoder_and_latents):
    ae, latents = autoencoder_and_latents
    model_json = ae / "checkpoint" / "model.json"
    meta = json.loads(model_json.read_text())
    meta["spatial_dims"] = 3
    model_json.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="is 3D but the config trains a 2D model"):
        train_diffusion(_ldm_cfg(ae, latents), data, tmp_path / "ldm", progress=False)
