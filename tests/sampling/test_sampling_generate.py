"""``uterosynth sample``: balanced plans, per-index reproducibility, sharding, geometry, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import make_prepared_dataset
from uterosynth.cli import main
from uterosynth.core.config import load_config
from uterosynth.core.errors import UserError
from uterosynth.data.manifest import PreparedDataset
from uterosynth.data.subjects import training_subjects
from uterosynth.data.synthetic import SyntheticSet
from uterosynth.diffusion.conditions import ConditionVocabulary
from uterosynth.models.diffusion import DiffusionModel, load_diffusion
from uterosynth.sampling.generate import SampleConfig, generate
from uterosynth.sampling.plan import plan_items
from uterosynth.training.diffusion import DiffusionTrainConfig, train_diffusion


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    data = make_prepared_dataset(root / "data", dims=2, shape=(16, 16), subjects=6, items_per_subject=1)
    cfg = load_config(DiffusionTrainConfig, "configs/ddpm2d_cpu.yaml", overrides={"train.steps": 2, "train.val_every": 100})
    train_diffusion(cfg, data, root / "cond", progress=False)
    uncond = load_config(DiffusionTrainConfig, "configs/ddpm2d_cpu.yaml", overrides={
        "train.steps": 1, "train.val_every": 100, "conditioning.attributes": [], "conditioning.text": "none"})
    train_diffusion(uncond, data, root / "uncond", progress=False)
    return {"cond": root / "cond", "uncond": root / "uncond", "data": data}


VOCAB = ConditionVocabulary(attributes={"orientation": ["AVAF", "AVRF", "RVAF", "RVRF"], "field_strength": ["1.5T", "3T"]})


def test_plan_balanced_and_interleaved():
    items = plan_items(VOCAB, n=None, per_class=2, conditions={"field_strength": "3T"})
    assert len(items) == 8 and [it.index for it in items] == list(range(8))
    assert [it.condition["orientation"] for it in items[:4]] == ["AVAF", "AVRF", "RVAF", "RVRF"]
    assert all(it.condition["field_strength"] == "3T" for it in items)
    assert len(plan_items(VOCAB, n=None, per_class=1)) == 8  # every orientation × field strength


def test_plan_balances_over_prompt_attributes_of_a_text_only_model():
    vocab = ConditionVocabulary(prompt_attributes={"orientation": ["AVAF", "RVRF"]}, text_null_tokens=[2, 0])
    items = plan_items(vocab, n=None, per_class=2)
    assert [it.condition["orientation"] for it in items] == ["AVAF", "RVRF", "AVAF", "RVRF"]
    assert plan_items(vocab, n=3, per_class=None, conditions={"orientation": "RVRF"})[2].condition == {
        "orientation": "RVRF"}
    with pytest.raises(ValueError, match="need a model that takes text"):
        ConditionVocabulary(prompt_attributes={"orientation": ["AVAF"]})
    assert plan_items(vocab, n=2, per_class=None, prompt="orientation: AVAF")[0].prompt == "orientation: AVAF"
    for planned in ({"per_class": 1}, {"n": 1, "conditions": {"orientation": "RVRF"}}):
        # a free prompt would replace the one built from the planned class, and the records would lie
        with pytest.raises(UserError, match="reads orientation from its prompt"):
            plan_items(vocab, **{"n": None, "per_class": None, **planned}, prompt="orientation: AVAF")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": None, "per_class": None}, "exactly one of"),
        ({"n": 3, "per_class": 1}, "exactly one of"),
        ({"n": 2, "conditions": {"colour": "red"}}, "condition 'colour'"),
        ({"n": 2, "prompt": "a uterus"}, "takes no text"),
        ({"n": None, "per_class": 1, "conditions": {"orientation": "AVAF", "field_strength": "3T"}}, "use n"),
    ],
)
def test_plan_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        plan_items(VOCAB, **{"n": None, "per_class": None, **kwargs})


def _cfg(**kw) -> SampleConfig:
    base = {"sampler": {"name": "ddim", "steps": 3}, "runtime": {"device": "cpu", "batch_size": 4}}
    return SampleConfig.model_validate({**base, **kw})


def test_generate_writes_a_synthetic_set_in_training_geometry(tmp_path, models):
    summary = generate(models["cond"], _cfg(per_class=1, conditions={"field_strength": "3T"}, guidance=2.0),
                       tmp_path / "syn")
    syn = SyntheticSet.load(tmp_path / "syn")
    assert summary["items"] == len(syn) == 4 and syn.dims == 2
    assert [r["condition"]["orientation"] for r in syn.records] == ["AVAF", "AVRF", "RVAF", "RVRF"]
    first = syn.records[0]
    assert first["sampler"] == "ddim" and first["steps"] == 3 and first["guidance"] == 2.0
    assert first["prompt"].startswith("sagittal T2-weighted pelvic MRI, anteverted anteflexed uterus")
    assert len(first["model_hash"]) == 64 and first["seconds"] > 0
    img = nib.load(str(syn.item_path(first)))
    dataset_affine = np.asarray(json.loads((models["data"] / "dataset.json").read_text())["affine"])
    assert img.shape == (16, 16, 1) and np.allclose(img.affine, dataset_affine)
    assert not np.allclose(img.affine, np.eye(4))
    array = syn.load_array(first)
    assert array.shape == (16, 16) and array.min() >= 0 and array.max() <= 1
    assert (tmp_path / "syn" / first["preview"]).is_file()
    info = json.loads((tmp_path / "syn" / "synthetic.json").read_text())
    assert info["uterosynth_version"] and info["seed"] == 0 and info["config"]["sampler"]["name"] == "ddim"
    # the precision the network ran in, as 'auto' resolved on this machine
    import torch

    from uterosynth.core.precision import resolve_precision

    assert info["precision"] == resolve_precision(info["config"]["runtime"]["precision"], torch.device("cpu"),
                                                  spatial_dims=2) in ("bf16", "fp32")
    # the generator's training subjects, hashed, for the overlap checks of evaluate and downstream
    train = PreparedDataset.load(models["data"], "train")
    assert info["model"]["training_subjects"] == training_subjects(train, ("train",))


def test_a_scale_for_an_attribute_the_prompt_states_is_warned(tmp_path, models, caplog):
    """The model's structured prompt names the orientation: a per-name scale for it leaves the prompt in
    the base branch and is warned; one scale, or the prompt guided with it, is not."""
    with caplog.at_level("WARNING", logger="uterosynth.sampling.generate"):
        generate(models["cond"], _cfg(per_class=1, guidance={"orientation": 3.0}), tmp_path / "a")
        assert "also states orientation" in caplog.text
        caplog.clear()
        generate(models["cond"], _cfg(per_class=1, guidance=3.0), tmp_path / "b")
        generate(models["cond"], _cfg(per_class=1, guidance={"orientation": 3.0, "text": 3.0}), tmp_path / "c")
        assert "also states" not in caplog.text


def test_a_text_only_model_trains_and_samples_each_requested_class(tmp_path, models):
    cfg = load_config(DiffusionTrainConfig, "configs/ddpm2d_cpu.yaml", overrides={
        "train.steps": 1, "train.val_every": 100, "conditioning.attributes": [],
        "conditioning.text_attributes": ["orientation"], "conditioning.text": "structured"})
    train_diffusion(cfg, models["data"], tmp_path / "text_only", progress=False)
    model = load_diffusion(tmp_path / "text_only")
    assert model.vocab.attributes == {} and list(model.vocab.prompt_attributes) == ["orientation"]
    generate(tmp_path / "text_only", _cfg(per_class=1, guidance={"text": 2.0}), tmp_path / "syn")
    records = SyntheticSet.load(tmp_path / "syn").records
    assert [r["condition"]["orientation"] for r in records] == ["AVAF", "AVRF", "RVAF", "RVRF"]
    assert "retroverted retroflexed uterus" in records[3]["prompt"]
    with pytest.raises(UserError, match="through 'text'"):
        generate(tmp_path / "text_only", _cfg(per_class=1, guidance={"orientation": 2.0}), tmp_path / "bad")


def test_a_latent_models_training_subjects_include_its_autoencoders():
    data = PreparedDataset(root="p", rows=[{"subject": s, "split": sp} for s, sp in [("a", "train"), ("b", "val")]],
                           info={})  # type: ignore[arg-type]
    ldm, ae = training_subjects(data, ("train",)), training_subjects(data, ("val",))
    model = DiffusionModel(None, None, None, {"training_subjects": ldm}, Path("m"),  # type: ignore[arg-type]
                           autoencoder_subjects=ae)
    assert model.training_subjects["ids"] == sorted(ldm["ids"] + ae["ids"])
    assert DiffusionModel(None, None, None, {"training_subjects": ldm}, Path("m")).training_subjects["ids"] == \
        ldm["ids"]  # type: ignore[arg-type]


@pytest.mark.parametrize("sampler", ["ddpm", "dpmpp"])
def test_item_is_the_same_alone_or_in_any_batch(tmp_path, models, sampler):
    kw = {"sampler": {"name": sampler, "steps": 3}, "conditions": {"orientation": "RVRF"}, "guidance": 2.0}
    generate(models["cond"], _cfg(n=3, **kw), tmp_path / "batch3")
    generate(models["cond"], _cfg(n=3, **{**kw, "runtime": {"device": "cpu", "batch_size": 1}}), tmp_path / "batch1")
    generate(models["cond"], _cfg(n=1, **kw), tmp_path / "alone")
    b3, b1, alone = (SyntheticSet.load(tmp_path / d).stack() for d in ("batch3", "batch1", "alone"))
    np.testing.assert_allclose(b3, b1, atol=1e-5)
    np.testing.assert_allclose(b3[:1], alone, atol=1e-5)
    assert not np.allclose(b3[0], b3[1])  # different items get different noise


@pytest.mark.slow
def test_torchrun_shards_form_one_set(tmp_path, models):
    args = ["--model", str(models["cond"]), "-n", "4", "--sampler", "ddim", "--steps", "2", "--device", "cpu",
            "--condition", "orientation=AVRF", "--batch-size", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                    "-m", "uterosynth", "sample", *args, "--out", str(tmp_path / "ddp")],
                   check=True, env=env, capture_output=True, timeout=300)
    main_args = ["sample", *args, "--out", str(tmp_path / "single")]
    with pytest.raises(SystemExit) as info:
        main(main_args)
    assert info.value.code == 0
    ddp, single = SyntheticSet.load(tmp_path / "ddp"), SyntheticSet.load(tmp_path / "single")
    assert [r["index"] for r in ddp.records] == [0, 1, 2, 3]
    assert json.loads((tmp_path / "ddp" / "synthetic.json").read_text())["world_size"] == 2
    np.testing.assert_allclose(ddp.stack(), single.stack(), atol=1e-5)
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sampler", "euler"], "euler"),
        (["--steps", "0"], "sampler.steps"),
        (["--condition", "orientation=SIDEWAYS"], "SIDEWAYS"),
        (["--condition", "colour=red"], "colour"),
        (["--condition", "orientation"], "expected NAME=VALUE"),
        (["--batch-size", "many"], "--batch-size"),
    ],
)
def test_cli_errors(tmp_path, models, capsys, extra, message):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--model", str(models["cond"]), "--n", "1", "--out", str(tmp_path / "o"), *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_guidance_on_unconditional_model_and_existing_out(tmp_path, models, capsys):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--model", str(models["uncond"]), "--n", "1", "--guidance", "3", "--out", str(tmp_path / "o")])
    assert info.value.code == 2 and "unconditional" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    with pytest.raises(SystemExit) as info:
        main(["sample", "--model", str(models["uncond"]), "--n", "1", "--out", str(tmp_path / "exists")])
    assert info.value.code == 2 and "already exists" in capsys.readouterr().err


def test_a_student_refuses_items_without_their_prompt_attributes():
    from types import SimpleNamespace

    from uterosynth.sampling.generate import _student_inputs

    vocab = ConditionVocabulary(prompt_attributes={"orientation": ["AVAF", "RVRF"]}, text_null_tokens=[2, 0])
    student = SimpleNamespace(vocab=vocab, distilled={})
    # distilled on whole classes of the prompt: an item with no orientation is a prompt it never saw
    with pytest.raises(UserError, match="give orientation"):
        _student_inputs(None, student, plan_items(vocab, n=1, per_class=None), sampler=None)
