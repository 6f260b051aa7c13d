"""Conditions: attribute vocabularies with null tokens, condition batches, and their embedding.

A *condition batch* is a ``dict[str, Tensor]``:

* each categorical attribute → ``LongTensor (N,)`` of vocabulary indices, where index
  ``len(values)`` is that attribute's learned **null** token (the "unconditional" value used by
  classifier-free guidance);
* each continuous attribute → ``FloatTensor (N,)`` of standardised values, ``NaN`` = null;
* ``"text"`` (when text conditioning is on) → ``LongTensor (N, L)`` token ids; the null prompt
  is the tokenisation of the empty string.

:class:`ConditionCodec` turns records (attribute dicts) into condition batches and back, builds
null / dropped / partially-kept batches for guidance; :class:`ConditionEmbedder` maps a batch
to cross-attention tokens ``(N, L, D)`` and a pooled vector ``(N, E)`` added to the time
embedding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ..config import StrictModel
from ..errors import UserError
from .text import (
    PretrainedTextEncoder,
    SmallTextEncoder,
    WordTokenizer,
    build_text_encoder,
    structured_prompt,
)

__all__ = [
    "TEXT_KEY",
    "AttributeVocab",
    "ConditionCodec",
    "ConditionEmbedder",
    "ConditioningConfig",
]

TEXT_KEY = "text"


class ConditioningConfig(StrictModel):
    """What the diffusion model is conditioned on."""

    attributes: list[str] = Field(default_factory=list, description="categorical manifest columns")
    continuous: list[str] = Field(default_factory=list, description="numeric manifest columns")
    text: Literal["none", "structured", "column"] = "none"
    text_column: str | None = None
    text_encoder: Literal["small", "pretrained"] = "small"
    text_encoder_path: Path | None = None
    embed_dim: int = Field(64, ge=8)
    max_text_tokens: int = Field(32, ge=4, le=512)
    drop_prob: float = Field(0.15, ge=0.0, le=1.0, description="per-condition drop rate for CFG")

    @model_validator(mode="after")
    def _check(self) -> ConditioningConfig:
        if self.text == "column" and not self.text_column:
            raise ValueError("text: column needs text_column (the manifest column holding free text)")
        if self.text_encoder == "pretrained" and self.text_encoder_path is None:
            raise ValueError("text_encoder: pretrained needs text_encoder_path (a local model folder)")
        overlap = set(self.attributes) & set(self.continuous)
        if overlap:
            raise ValueError(f"attribute(s) {sorted(overlap)} listed as both categorical and continuous")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.attributes or self.continuous or self.text != "none")


@dataclass(frozen=True)
class AttributeVocab:
    """Values of one categorical attribute; index ``len(values)`` is its null token."""

    name: str
    values: tuple[str, ...]

    @property
    def null_index(self) -> int:
        return len(self.values)

    def index(self, value: Any) -> int:
        text = str(value)
        try:
            return self.values.index(text)
        except ValueError:
            raise UserError(
                f"attribute '{self.name}': value '{text}' was not seen in training "
                f"(known: {', '.join(self.values)})"
            ) from None


class ConditionCodec:
    """Records ↔ condition batches; null, dropped and partial batches for guidance."""

    def __init__(
        self,
        config: ConditioningConfig,
        vocabs: Sequence[AttributeVocab],
        continuous_stats: Mapping[str, tuple[float, float]],
        text_encoder: SmallTextEncoder | PretrainedTextEncoder | None = None,
    ) -> None:
        self.config = config
        self.vocabs = {v.name: v for v in vocabs}
        self.continuous_stats = dict(continuous_stats)
        self.text_encoder = text_encoder

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def fit(cls, config: ConditioningConfig, records: Sequence[Mapping[str, Any]], *, source: str = "manifest") -> ConditionCodec:
        """Build vocabularies, continuous statistics and the text tokenizer from training records."""
        if not records:
            raise UserError(f"{source}: no training items to build condition vocabularies from")
        needed = list(config.attributes) + list(config.continuous)
        if config.text == "column" and config.text_column:
            needed.append(config.text_column)
        missing = [name for name in needed if name not in records[0]]
        if missing:
            raise UserError(
                f"{source}: condition attribute(s) {', '.join(missing)} not in the manifest "
                f"(available: {', '.join(sorted(k for k in records[0] if not k.startswith('_')))})"
            )
        vocabs = [AttributeVocab(name, tuple(sorted({str(r[name]) for r in records}))) for name in config.attributes]
        stats = {}
        for name in config.continuous:
            try:
                values = torch.tensor([float(r[name]) for r in records], dtype=torch.float64)
            except ValueError as err:
                raise UserError(f"{source}: continuous attribute '{name}' holds a non-numeric value") from err
            stats[name] = (float(values.mean()), float(values.std(unbiased=False)) or 1.0)
        codec = cls(config, vocabs, stats)
        codec.text_encoder = codec._make_text_encoder(records)
        return codec

    def _make_text_encoder(self, records: Sequence[Mapping[str, Any]]) -> SmallTextEncoder | PretrainedTextEncoder | None:
        cfg = self.config
        if cfg.text == "none":
            return None
        if cfg.text_encoder == "pretrained" and cfg.text_encoder_path is not None:
            return PretrainedTextEncoder(cfg.text_encoder_path, dim=cfg.embed_dim, max_tokens=cfg.max_text_tokens)
        tokenizer = WordTokenizer.from_prompts(self.prompts(records), max_tokens=cfg.max_text_tokens)
        return SmallTextEncoder(tokenizer, dim=cfg.embed_dim)

    # -- records → batches ----------------------------------------------------------------
    def prompts(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """The text prompt of each record (structured from attributes, or a free-text column)."""
        cfg = self.config
        if cfg.text == "column":
            return [str(r.get(cfg.text_column or "", "") or "") for r in records]
        names = list(cfg.attributes) + list(cfg.continuous)
        return [structured_prompt({n: r.get(n) for n in names if n in r}) for r in records]

    def encode(self, records: Sequence[Mapping[str, Any]], *, prompts: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Attribute dicts → condition batch. A missing attribute (or ``None``) becomes null."""
        batch: dict[str, torch.Tensor] = {}
        for name, vocab in self.vocabs.items():
            batch[name] = torch.tensor(
                [vocab.null_index if r.get(name) in (None, "") else vocab.index(r[name]) for r in records],
                dtype=torch.long,
            )
        for name, (mean, std) in self.continuous_stats.items():
            batch[name] = torch.tensor(
                [math.nan if r.get(name) in (None, "") else (float(r[name]) - mean) / std for r in records],
                dtype=torch.float32,
            )
        if self.text_encoder is not None:
            texts = list(prompts) if prompts is not None else self.prompts(records)
            batch[TEXT_KEY] = self.text_encoder.tokenize(texts)
        return batch

    def null(self, n: int) -> dict[str, torch.Tensor]:
        """A batch of ``n`` fully unconditional conditions."""
        return self.encode([{}] * n, prompts=[""] * n if self.text_encoder is not None else None)

    def keep_only(self, batch: Mapping[str, torch.Tensor], keep: Iterable[str]) -> dict[str, torch.Tensor]:
        """Copy of ``batch`` with every condition not in ``keep`` set to null."""
        keep = set(keep)
        unknown = keep - set(self.names)
        if unknown:
            raise UserError(f"condition(s) {', '.join(sorted(unknown))} unknown to this model "
                            f"(known: {', '.join(self.names) or 'none'})")
        n = next(iter(batch.values())).shape[0]
        null = self.null(n)
        return {k: (v if k in keep else null[k].to(v.device)) for k, v in batch.items()}

    def drop(self, batch: Mapping[str, torch.Tensor], p: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Independently replace each condition of each item by null with probability ``p``."""
        n = next(iter(batch.values())).shape[0]
        null = self.null(n)
        out = {}
        for key, value in batch.items():
            mask = torch.rand(n, generator=generator) < p
            shaped = mask.view(n, *([1] * (value.dim() - 1))).to(value.device)
            out[key] = torch.where(shaped, null[key].to(value.device), value)
        return out

    @property
    def names(self) -> list[str]:
        """Condition names in batch order (attributes, continuous, then ``text``)."""
        return list(self.vocabs) + list(self.continuous_stats) + ([TEXT_KEY] if self.text_encoder is not None else [])

    # -- persistence ----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "vocabularies": {n: {"values": list(v.values), "null_index": v.null_index} for n, v in self.vocabs.items()},
            "continuous_stats": {n: list(s) for n, s in self.continuous_stats.items()},
            "text_encoder": self.text_encoder.spec() if self.text_encoder is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConditionCodec:
        config = ConditioningConfig.model_validate(data["config"])
        vocabs = [AttributeVocab(n, tuple(v["values"])) for n, v in data["vocabularies"].items()]
        stats = {n: (float(s[0]), float(s[1])) for n, s in data["continuous_stats"].items()}
        text = build_text_encoder(data["text_encoder"]) if data.get("text_encoder") else None
        return cls(config, vocabs, stats, text)


class ConditionEmbedder(nn.Module):
    """Condition batch → cross-attention tokens ``(N, L, D)`` and a pooled vector ``(N, E)``.

    Each categorical attribute has its own embedding table (values + null), each continuous
    attribute a small MLP with a learned null vector; text goes through the codec's text
    encoder. Attribute tokens and text tokens are concatenated; the pooled vector (mean of the
    attribute tokens, or of the text tokens when there are none) is projected to the UNet's
    time-embedding width ``E`` and added to the time embedding.
    """

    def __init__(self, codec: ConditionCodec, *, time_embed_dim: int) -> None:
        super().__init__()
        dim = codec.config.embed_dim
        self.categorical = nn.ModuleDict(
            {name: nn.Embedding(len(v.values) + 1, dim) for name, v in codec.vocabs.items()}
        )
        self.continuous = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim)) for name in codec.continuous_stats}
        )
        self.continuous_null = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(dim)) for name in codec.continuous_stats}
        )
        self.text = codec.text_encoder
        self.pooled = nn.Sequential(nn.Linear(dim, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim))

    def forward(self, cond: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = [self.categorical[name](cond[name]) for name in self.categorical]
        for name, mlp in self.continuous.items():
            value = cond[name].float()
            isnull = torch.isnan(value)
            embedded = mlp(torch.nan_to_num(value, nan=0.0)[:, None])
            tokens.append(torch.where(isnull[:, None], self.continuous_null[name].expand_as(embedded), embedded))
        attr_tokens = torch.stack(tokens, dim=1) if tokens else None
        text_tokens = self.text(cond[TEXT_KEY]) if self.text is not None else None
        parts = [t for t in (attr_tokens, text_tokens) if t is not None]
        context = torch.cat(parts, dim=1)
        pooled_source = attr_tokens if attr_tokens is not None else text_tokens
        return context, self.pooled(pooled_source.mean(dim=1))
