"""Classifier-free guidance: scales 0/1, per-attribute composition, batching, the condition contract."""

from __future__ import annotations

import pytest
import torch

from uterosynth.core.errors import UserError
from uterosynth.core.seeding import index_generator
from uterosynth.diffusion.analytic import GaussianMixtureDenoiser
from uterosynth.diffusion.conditions import Condition, ConditionVocabulary
from uterosynth.diffusion.guidance import guided_denoiser, parse_guidance, shadowed_by_prompt
from uterosynth.diffusion.samplers import build_sampler, initial_noise
from uterosynth.diffusion.schedule import NoiseSchedule, NoiseScheduleConfig

VOCAB = ConditionVocabulary(
    attributes={"orientation": ["AVAF", "AVRF", "RVAF"], "field_strength": ["1.5T", "3T"]},
    continuous=["flexion"],
    text_null_tokens=[0, 0, 0],
)


class ToyModel:
    """A nonlinear conditional network stand-in that counts its forward calls."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.emb = {name: torch.randn(VOCAB.num_embeddings(name), generator=g) for name in VOCAB.attributes}
        self.calls: list[int] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        self.calls.append(x.shape[0])
        shift = torch.zeros(x.shape[0])
        if cond is not None:
            for name, idx in cond.attributes.items():
                shift = shift + self.emb[name][idx] * (1.0 + 0.5 * len(name))
            flex = cond.continuous["flexion"]
            shift = shift + torch.where(flex.isnan(), torch.zeros_like(flex), 0.1 * flex)
            shift = shift + 0.01 * cond.text.sum(1)
        shift = shift.reshape(-1, *([1] * (x.ndim - 1)))
        return torch.tanh(x * (1 + t.reshape(-1, *([1] * (x.ndim - 1))) / 1000) + shift)


def _inputs(spatial_dims: int, n: int = 3):
    g = torch.Generator().manual_seed(1)
    x = torch.randn((n, 1) + (4,) * spatial_dims, generator=g)
    t = torch.full((n,), 500)
    cond = VOCAB.encode(
        [{"orientation": "AVRF", "field_strength": "3T", "flexion": 20.0}] * n, text=torch.tensor([[5, 6, 7]] * n)
    )
    return x, t, cond


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_scale_zero_is_unconditional_and_scale_one_is_conditional(spatial_dims):
    x, t, cond = _inputs(spatial_dims)
    model = ToyModel()
    uncond = model(x, t, VOCAB.null(len(cond)))
    conditional = model(x, t, cond)
    assert not torch.allclose(uncond, conditional)
    assert torch.equal(guided_denoiser(model, cond, VOCAB, 0.0)(x, t), uncond)
    assert torch.equal(guided_denoiser(model, cond, VOCAB, 1.0)(x, t), conditional)
    assert torch.equal(guided_denoiser(model, cond, VOCAB, None)(x, t), conditional)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_single_scale_follows_the_formula_in_one_batched_call(spatial_dims):
    x, t, cond = _inputs(spatial_dims)
    model = ToyModel()
    expected_u, expected_c = model(x, t, VOCAB.null(3)), model(x, t, cond)
    model.calls.clear()
    out = guided_denoiser(model, cond, VOCAB, 3.0)(x, t)
    assert model.calls == [6]  # conditional and unconditional passes batched: one call of 2N
    torch.testing.assert_close(out, expected_u + 3.0 * (expected_c - expected_u))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_per_attribute_scales_follow_compositional_guidance(spatial_dims):
    x, t, cond = _inputs(spatial_dims)
    model = ToyModel()
    scales = {"orientation": 4.0, "field_strength": 1.5}
    # flexion and text have no scale: they stay conditioned in every branch
    base = model(x, t, cond.keep_only({"flexion", "text"}, VOCAB))
    only_o = model(x, t, cond.keep_only({"flexion", "text", "orientation"}, VOCAB))
    only_f = model(x, t, cond.keep_only({"flexion", "text", "field_strength"}, VOCAB))
    model.calls.clear()
    out = guided_denoiser(model, cond, VOCAB, scales)(x, t)
    assert model.calls == [9]  # base + one branch per guided attribute, one call
    torch.testing.assert_close(out, base + 4.0 * (only_o - base) + 1.5 * (only_f - base))


def test_per_attribute_scales_over_every_name_use_the_unconditional_base():
    x, t, cond = _inputs(2)
    model = ToyModel()
    scales = dict.fromkeys(VOCAB.names, 2.0)
    uncond = model(x, t, VOCAB.null(3))
    branches = [model(x, t, cond.keep_only({name}, VOCAB)) for name in VOCAB.names]
    expected = uncond + sum(2.0 * (b - uncond) for b in branches)
    torch.testing.assert_close(guided_denoiser(model, cond, VOCAB, scales)(x, t), expected)


def test_one_attribute_scale_equals_the_single_scale_rule_for_a_one_attribute_model():
    vocab = ConditionVocabulary(attributes={"orientation": ["AVAF", "RVRF"]})
    cond = vocab.encode([{"orientation": "RVRF"}] * 2)
    x, t = torch.randn(2, 1, 3, 3), torch.tensor([10, 10])

    def model(x, t, c):
        return torch.sin(x + c.attributes["orientation"].float().reshape(-1, 1, 1, 1))

    torch.testing.assert_close(
        guided_denoiser(model, cond, vocab, {"orientation": 2.5})(x, t), guided_denoiser(model, cond, vocab, 2.5)(x, t)
    )


def test_guided_sampling_with_an_exact_class_conditional_model():
    """Scale 1 samples only the requested class; scale 0 samples the whole mixture."""
    vocab = ConditionVocabulary(attributes={"orientation": ["AVAF", "RVRF"]})
    schedule = NoiseSchedule(NoiseScheduleConfig(prediction_type="v_prediction", rescale_zero_terminal_snr=True))
    means = torch.stack([torch.full((1, 4, 4), -1.0), torch.full((1, 4, 4), 1.0)])
    model = GaussianMixtureDenoiser(schedule, means, torch.full_like(means, 0.3), labels={"orientation": [0, 1]}, vocab=vocab)
    n = 64
    cond = vocab.encode([{"orientation": "AVAF"}] * n)
    x_T = initial_noise((n, 1, 4, 4), [index_generator(2, i) for i in range(n)])
    sampler = build_sampler("dpmpp", schedule)
    conditional = sampler.sample(guided_denoiser(model, cond, vocab, 1.0), x_T, steps=15)
    assert (conditional.flatten(1).mean(1) < 0).all()
    unconditional = sampler.sample(guided_denoiser(model, cond, vocab, 0.0), x_T, steps=15)
    assert 0.3 < (unconditional.flatten(1).mean(1) < 0).float().mean() < 0.7


def test_guidance_on_an_unconditional_model_is_a_user_error():
    with pytest.raises(UserError, match="guidance: the model is unconditional"):
        guided_denoiser(lambda x, t, c: x, None, ConditionVocabulary(), 3.0)


def test_guidance_without_a_condition_is_a_user_error():
    with pytest.raises(UserError, match="guidance: no condition given for the batch"):
        guided_denoiser(ToyModel(), None, VOCAB, 3.0)


def test_guidance_for_an_unknown_attribute_is_a_user_error():
    _, _, cond = _inputs(2)
    with pytest.raises(UserError, match="guidance 'pathology': the model was not trained on it; known: orientation"):
        guided_denoiser(ToyModel(), cond, VOCAB, {"pathology": 2.0})


def test_negative_guidance_is_a_user_error():
    _, _, cond = _inputs(2)
    with pytest.raises(UserError, match="expected a scale >= 0"):
        guided_denoiser(ToyModel(), cond, VOCAB, -1.0)


def test_empty_guidance_mapping_is_a_user_error():
    _, _, cond = _inputs(2)
    with pytest.raises(UserError, match="empty mapping"):
        guided_denoiser(ToyModel(), cond, VOCAB, {})


def test_condition_batch_mismatch_is_a_user_error():
    x, t, cond = _inputs(2)
    with pytest.raises(UserError, match="condition: 3 items for a batch of 2"):
        guided_denoiser(ToyModel(), cond, VOCAB, 2.0)(x[:2], t[:2])


def test_parse_guidance():
    assert parse_guidance("3") == 3.0
    assert parse_guidance("orientation=4,field_strength=1.5") == {"orientation": 4.0, "field_strength": 1.5}


def test_parse_guidance_rejects_garbage():
    with pytest.raises(UserError, match="expected a number \\(3.0\\) or name=number pairs"):
        parse_guidance("orientation=high")


def test_encode_gives_indices_and_null_tokens():
    cond = VOCAB.encode([{"orientation": "RVAF"}, {"field_strength": "3T", "flexion": 12.5}])
    assert cond.attributes["orientation"].tolist() == [2, 3]  # 3 = null index = len(values)
    assert cond.attributes["field_strength"].tolist() == [2, 1]
    assert cond.continuous["flexion"][0].isnan() and cond.continuous["flexion"][1] == 12.5
    assert cond.text.tolist() == [[0, 0, 0], [0, 0, 0]]  # the empty prompt
    assert VOCAB.num_embeddings("orientation") == 4


def test_encode_unknown_attribute_is_a_user_error():
    with pytest.raises(UserError, match="condition 'pathology': the model was not trained on it"):
        VOCAB.encode([{"pathology": "fibroid"}])


def test_encode_unknown_value_is_a_user_error():
    with pytest.raises(UserError, match="condition orientation=XYZ: not a value the model was trained on; choose one of AVAF, AVRF, RVAF"):
        VOCAB.encode([{"orientation": "XYZ"}])


def test_encode_non_numeric_continuous_value_is_a_user_error():
    with pytest.raises(UserError, match="condition flexion=steep: expected a number"):
        VOCAB.encode([{"flexion": "steep"}])


def test_encode_prompt_for_a_model_without_text_is_a_user_error():
    vocab = ConditionVocabulary(attributes={"orientation": ["AVAF"]})
    with pytest.raises(UserError, match="prompt given but the model takes no text"):
        vocab.encode([{}], text=torch.tensor([[1, 2]]))


def test_vocabulary_round_trips_through_json():
    assert ConditionVocabulary.model_validate_json(VOCAB.model_dump_json()) == VOCAB


def test_encode_prompt_of_the_wrong_length_is_a_user_error():
    with pytest.raises(UserError, match="text tokens: expected shape \\(1, 3\\)"):
        VOCAB.encode([{}], text=torch.tensor([[1, 2]]))


def test_vocabulary_with_a_repeated_value_is_a_config_error():
    from uterosynth.core.config import validate_config
    from uterosynth.core.errors import ConfigError

    with pytest.raises(ConfigError, match="lists a value twice"):
        validate_config(ConditionVocabulary, {"attributes": {"orientation": ["AVAF", "AVAF"]}}, source="model.json")


def test_a_guided_name_the_unguided_prompt_states_is_shadowed():
    prompt = ["orientation", "field_strength"]
    assert shadowed_by_prompt({"orientation": 5.0, "field_strength": 1.5}, prompt) == ["field_strength", "orientation"]
    assert shadowed_by_prompt({"orientation": 5.0, "text": 5.0}, prompt) == []  # the prompt is guided too
    assert shadowed_by_prompt({"": 3.0}, prompt) == []  # one scale: every condition
    assert shadowed_by_prompt({"flexion": 2.0}, prompt) == []
