"""Building conditions from data: vocabularies, prompts, CFG dropout, and their embedding.

The condition a network takes is :class:`uterosynth.diffusion.conditions.Condition` (attribute
indices with per-attribute null tokens, continuous values with ``NaN`` as null, text token
ids). This module fits a :class:`ConditionCodec` on the training records — the
:class:`~uterosynth.diffusion.conditions.ConditionVocabulary`, the statistics that standardise
continuous attributes, and the text encoder with its tokenizer — and provides
:class:`ConditionEmbedder`, which maps a condition to cross-attention tokens ``(N, L, D)`` and a
pooled vector ``(N, E)`` for the UNet's time embedding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ..core.config import StrictModel
from ..core.errors import DataError
from ..data.manifest import label_value
from ..diffusion.conditions import Condition, ConditionVocabulary, condition_device
from .text import (
    PretrainedTextEncoder,
    SmallTextEncoder,
    WordTokenizer,
    build_text_encoder,
    structured_prompt,
)

__all__ = ["ConditionCodec", "ConditionEmbedder", "ConditioningConfig", "GuidanceEmbedder"]


class ConditioningConfig(StrictModel):
    """What the diffusion model is conditioned on."""

    attributes: list[str] = Field(default_factory=list, description="categorical manifest columns")
    text_attributes: list[str] = Field(
        default_factory=list, description="categorical manifest columns named only in the structured prompt, with no "
        "class embedding of their own (a text-only model when attributes is empty); sampling plans by their values")
    continuous: list[str] = Field(default_factory=list, description="numeric manifest columns")
    text: Literal["none", "structured", "column"] = "none"
    text_column: str | None = None
    text_encoder: Literal["small", "pretrained"] = "small"
    text_encoder_path: Path | None = None
    embed_dim: int = Field(64, ge=8)
    max_text_tokens: int = Field(32, ge=4, le=512)
    drop_prob: float = Field(0.15, ge=0.0, le=1.0, description="per-condition drop rate for CFG")
    drop_all_prob: float = Field(
        0.0, ge=0.0, le=1.0, description="rate at which every condition of an item is dropped at once: the "
        "unconditional branch of one-scale guidance, which independent drops alone reach rarely (0.15 per "
        "condition, three conditions: 0.3 % of items)")

    @model_validator(mode="after")
    def _check(self) -> ConditioningConfig:
        if self.text == "column" and not self.text_column:
            raise ValueError("text: column needs text_column (the manifest column holding free text)")
        if self.text_encoder == "pretrained" and self.text_encoder_path is None:
            raise ValueError("text_encoder: pretrained needs text_encoder_path (a local model folder)")
        overlap = set(self.attributes) & set(self.continuous)
        if overlap:
            raise ValueError(f"attribute(s) {sorted(overlap)} listed as both categorical and continuous")
        twice = set(self.text_attributes) & (set(self.attributes) | set(self.continuous))
        if twice:
            raise ValueError(f"text_attributes {sorted(twice)} are also in attributes or continuous: list each once")
        if self.text_attributes and self.text != "structured":
            raise ValueError("text_attributes need text: structured (the prompt is built from them)")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.attributes or self.continuous or self.text != "none")

    @property
    def prompt_names(self) -> list[str]:
        """The columns a structured prompt states (none for ``text: none`` or a free-text column)."""
        if self.text != "structured":
            return []
        return [*self.attributes, *self.text_attributes, *self.continuous]


class ConditionCodec:
    """Records (attribute dicts) → :class:`Condition`; null and dropped conditions for guidance.

    Args:
        config: what to condition on.
        vocab: categorical values per attribute, continuous names, the null prompt.
        continuous_stats: ``{name: (mean, std)}`` of the training values (the embedder
            standardises with them).
        text_encoder: tokenizer + network for prompts, or ``None``.
    """

    def __init__(
        self,
        config: ConditioningConfig,
        vocab: ConditionVocabulary,
        continuous_stats: Mapping[str, tuple[float, float]],
        text_encoder: SmallTextEncoder | PretrainedTextEncoder | None = None,
    ) -> None:
        self.config = config
        self.vocab = vocab
        self.continuous_stats = dict(continuous_stats)
        self.text_encoder = text_encoder

    @classmethod
    def fit(
        cls, config: ConditioningConfig, records: Sequence[Mapping[str, Any]], *, source: str = "manifest"
    ) -> ConditionCodec:
        """Build vocabularies, continuous statistics and the text tokenizer from training records.

        Raises:
            DataError: no records, or a configured attribute the records lack / a non-numeric
                continuous value.
        """
        if not records:
            raise DataError(f"{source}: no training items to build condition vocabularies from")
        needed = list(config.attributes) + list(config.continuous) + list(config.text_attributes)
        if config.text == "column" and config.text_column:
            needed.append(config.text_column)
        missing = [name for name in needed if name not in records[0]]
        if missing:
            available = ", ".join(sorted(k for k in records[0] if not k.startswith("_")))
            raise DataError(
                f"{source}: condition attribute(s) {', '.join(missing)} not in the manifest (available: {available})"
            )
        stats = {}
        for name in config.continuous:
            try:
                values = torch.tensor([float(r[name]) for r in records], dtype=torch.float64)
            except ValueError as err:
                raise DataError(f"{source}: continuous attribute '{name}' holds a non-numeric value") from err
            stats[name] = (float(values.mean()), float(values.std(unbiased=False)) or 1.0)
        text_encoder = cls._make_text_encoder(config, records)

        def known(name: str) -> list[str]:  # an empty value is "not known": null, not a class
            return sorted({v for r in records if (v := label_value(r[name])) is not None})

        vocab = ConditionVocabulary(
            attributes={name: known(name) for name in config.attributes},
            continuous=list(config.continuous),
            prompt_attributes={name: known(name) for name in config.text_attributes},
            text_null_tokens=text_encoder.tokenize([""])[0].tolist() if text_encoder is not None else None,
        )
        return cls(config, vocab, stats, text_encoder)

    @staticmethod
    def _make_text_encoder(
        config: ConditioningConfig, records: Sequence[Mapping[str, Any]]
    ) -> SmallTextEncoder | PretrainedTextEncoder | None:
        if config.text == "none":
            return None
        if config.text_encoder == "pretrained" and config.text_encoder_path is not None:
            return PretrainedTextEncoder(config.text_encoder_path, dim=config.embed_dim, max_tokens=config.max_text_tokens)
        prompts = [prompt_for(config, r) for r in records]
        return SmallTextEncoder(WordTokenizer.from_prompts(prompts, max_tokens=config.max_text_tokens), dim=config.embed_dim)

    @property
    def names(self) -> list[str]:
        """Condition names guidance may refer to (attributes, continuous, ``text``)."""
        return self.vocab.names

    def prompts(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """The text prompt of each record (structured from attributes, or a free-text column)."""
        return [prompt_for(self.config, r) for r in records]

    def encode(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        prompts: Sequence[str] | None = None,
        device: torch.device | str = "cpu",
    ) -> Condition:
        """Attribute dicts → :class:`Condition`; a missing (or empty) attribute becomes null.

        Keys of a record that are not conditions of this model are ignored (records are
        manifest rows), so a manifest can carry more columns than the model uses.
        """
        names = set(self.vocab.attributes) | set(self.vocab.continuous) | set(self.vocab.prompt_attributes)
        items = [{k: v for k, v in r.items() if k in names and label_value(v) is not None} for r in records]
        text = None
        if self.text_encoder is not None:
            text = self.text_encoder.tokenize(list(prompts) if prompts is not None else self.prompts(records))
        return self.vocab.encode(items, text=text, device=device)

    def null(self, n: int, *, device: torch.device | str = "cpu") -> Condition:
        """The fully unconditional condition for ``n`` items."""
        return self.vocab.null(n, device=device)

    def drop(self, cond: Condition, p: float, generator: torch.Generator | None = None, *,
             p_all: float = 0.0) -> Condition:
        """Independently replace each condition of each item by its null with probability ``p``, and
        every condition of an item at once with probability ``p_all``.

        The classifier-free guidance training of Ho & Salimans 2022, per attribute so that
        per-attribute guidance scales have an unconditional branch for every attribute; ``p_all``
        trains the fully unconditional branch that one-scale guidance subtracts.
        """
        n = len(cond)
        null = self.null(n, device=condition_device(cond))
        every = torch.rand(n, generator=generator) < p_all if p_all > 0 else torch.zeros(n, dtype=torch.bool)

        def mask(like: torch.Tensor) -> torch.Tensor:
            drop = (torch.rand(n, generator=generator) < p) | every
            return drop.to(like.device).view(n, *([1] * (like.dim() - 1)))

        attributes = {k: torch.where(mask(v), null.attributes[k], v) for k, v in cond.attributes.items()}
        continuous = {k: torch.where(mask(v), null.continuous[k], v) for k, v in cond.continuous.items()}
        text = None if cond.text is None else torch.where(mask(cond.text), null.text, cond.text)
        return Condition(attributes, continuous, text, cond.guidance)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "vocabulary": self.vocab.model_dump(mode="json"),
            "continuous_stats": {n: list(s) for n, s in self.continuous_stats.items()},
            "text_encoder": self.text_encoder.spec() if self.text_encoder is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConditionCodec:
        config = ConditioningConfig.model_validate(data["config"])
        vocab = ConditionVocabulary.model_validate(data["vocabulary"])
        stats = {n: (float(s[0]), float(s[1])) for n, s in data["continuous_stats"].items()}
        text = build_text_encoder(data["text_encoder"]) if data.get("text_encoder") else None
        return cls(config, vocab, stats, text)


def prompt_for(config: ConditioningConfig, record: Mapping[str, Any]) -> str:
    """One record's prompt: its free-text column, or a structured prompt from its attributes."""
    if config.text == "column":
        return str(record.get(config.text_column or "", "") or "")
    return structured_prompt({n: record.get(n) for n in config.prompt_names if n in record})


class ConditionEmbedder(nn.Module):
    """:class:`Condition` → cross-attention tokens ``(N, L, D)`` and a pooled vector ``(N, E)``.

    Each categorical attribute has its own embedding table (values + null), each continuous
    attribute a small MLP over its standardised value with a learned null vector; text goes
    through the codec's text encoder. Attribute tokens and text tokens are concatenated; the
    pooled vector (mean of the attribute tokens, or of the text tokens when there are none) is
    projected to the UNet's time-embedding width ``E``.
    """

    def __init__(self, codec: ConditionCodec, *, time_embed_dim: int) -> None:
        super().__init__()
        dim = codec.config.embed_dim
        vocab = codec.vocab
        self.categorical = nn.ModuleDict({n: nn.Embedding(vocab.num_embeddings(n), dim) for n in vocab.attributes})
        self.continuous = nn.ModuleDict(
            {n: nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim)) for n in vocab.continuous}
        )
        self.continuous_null = nn.ParameterDict({n: nn.Parameter(torch.zeros(dim)) for n in vocab.continuous})
        stats = torch.tensor([codec.continuous_stats[n] for n in vocab.continuous], dtype=torch.float32)
        self.register_buffer("continuous_stats", stats.reshape(-1, 2))
        self.text = codec.text_encoder
        self.pooled = nn.Sequential(nn.Linear(dim, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim))

    def forward(self, cond: Condition) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = [self.categorical[name](cond.attributes[name]) for name in self.categorical]
        for i, (name, mlp) in enumerate(self.continuous.items()):
            mean, std = self.continuous_stats[i]
            value = (cond.continuous[name].float() - mean) / std
            isnull = torch.isnan(value)
            embedded = mlp(torch.nan_to_num(value, nan=0.0)[:, None])
            tokens.append(torch.where(isnull[:, None], self.continuous_null[name].expand_as(embedded), embedded))
        attr_tokens = torch.stack(tokens, dim=1) if tokens else None
        text_tokens = self.text(cond.text) if self.text is not None and cond.text is not None else None
        parts = [t for t in (attr_tokens, text_tokens) if t is not None]
        context = torch.cat(parts, dim=1)
        pooled_source = attr_tokens if attr_tokens is not None else text_tokens
        return context, self.pooled(pooled_source.mean(dim=1))


class GuidanceEmbedder(nn.Module):
    """Guidance scales ``(N, G)`` → a vector ``(N, E)`` added to the pooled condition.

    A distilled student takes the classifier-free guidance scale as an input instead of running
    the conditional and unconditional branches (Meng et al. 2023, "On Distillation of Guided
    Diffusion Models"): each scale gets a sinusoidal embedding (MONAI's timestep embedding of
    ``1000 · w``), the embeddings are concatenated and mapped by an MLP whose last layer starts at
    zero, so a student initialised from its teacher starts with the teacher's conditioning.
    """

    def __init__(self, n_scales: int, *, time_embed_dim: int, dim: int = 64) -> None:
        super().__init__()
        self.n_scales, self.dim = n_scales, dim
        self.mlp = nn.Sequential(nn.Linear(n_scales * dim, time_embed_dim), nn.SiLU(),
                                 nn.Linear(time_embed_dim, time_embed_dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, scales: torch.Tensor) -> torch.Tensor:
        from monai.networks.nets.diffusion_model_unet import get_timestep_embedding

        if scales.ndim != 2 or scales.shape[1] != self.n_scales:
            raise ValueError(f"guidance scales: expected shape (N, {self.n_scales}), got {tuple(scales.shape)}")
        n = scales.shape[0]
        embedded = get_timestep_embedding(1000.0 * scales.float().reshape(-1), self.dim).reshape(n, -1)
        return self.mlp(embedded.to(self.mlp[0].weight.dtype))
