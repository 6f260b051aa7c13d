"""The condition a diffusion model takes: attribute indices with per-attribute null tokens, text.

Contract for every conditional diffusion network in uterosynth (the trainer builds it, the
sampler feeds it)::

    model(x_t, t, condition) -> Tensor        # same shape as x_t, in the schedule's prediction type

``condition`` is a :class:`Condition` (or ``None`` for an unconditional model):

* ``attributes``: ``{name: LongTensor (N,)}`` — index into that attribute's vocabulary
  ``values``; the index ``len(values)`` is the attribute's **null token** (learned embedding,
  used when the attribute is dropped in training and for the unconditional branch of
  classifier-free guidance). Each attribute therefore needs an embedding table of
  ``len(values) + 1`` rows.
* ``continuous``: ``{name: FloatTensor (N,)}`` — ``NaN`` means dropped (the model maps it to its
  learned null embedding).
* ``text``: ``LongTensor (N, L)`` token ids, or ``None``; a dropped prompt is the tokenised
  empty prompt ``ConditionVocabulary.text_null_tokens``.

The vocabulary is saved in ``model.json`` so that sampling needs only the checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from pydantic import Field, model_validator

from ..core.config import StrictModel
from ..core.errors import ConfigError, DataError

__all__ = ["Condition", "ConditionVocabulary", "TEXT", "condition_device"]

TEXT = "text"
"""Name under which the prompt takes part in guidance scales (``{"text": 3.0}``)."""


class ConditionVocabulary(StrictModel):
    """What a model was trained on: categorical values per attribute, continuous names, text.

    Attributes:
        attributes: ``{name: [value, ...]}``; the null index of ``name`` is ``len(values)``.
        continuous: names of continuous attributes (null = ``NaN``).
        text_null_tokens: token ids of the empty prompt (length ``L``) if the model takes text.
        prompt_attributes: ``{name: [value, ...]}`` of categorical attributes the model sees only
            through its prompt (no embedding): a sampling plan balances over them, an item's
            prompt names them, and guidance reaches them through ``text``.
    """

    attributes: dict[str, list[str]] = Field(default_factory=dict)
    continuous: list[str] = Field(default_factory=list)
    prompt_attributes: dict[str, list[str]] = Field(default_factory=dict)
    text_null_tokens: list[int] | None = None

    @model_validator(mode="after")
    def _check(self) -> ConditionVocabulary:
        for name, values in {**self.attributes, **self.prompt_attributes}.items():
            if not values:
                raise ValueError(f"attribute '{name}' has no values")
            if len(set(values)) != len(values):
                raise ValueError(f"attribute '{name}' lists a value twice")
        clash = (set(self.attributes) & set(self.continuous)) | (set(self.prompt_attributes) & set(self.names))
        if self.prompt_attributes and self.text_null_tokens is None:
            raise ValueError(f"prompt attributes {sorted(self.prompt_attributes)} need a model that takes text")
        if clash or TEXT in self.attributes or TEXT in self.continuous or TEXT in self.prompt_attributes:
            raise ValueError(f"condition names must be unique and not '{TEXT}': {sorted(clash) or TEXT}")
        return self

    @property
    def is_conditional(self) -> bool:
        return bool(self.attributes or self.continuous or self.text_null_tokens is not None)

    @property
    def names(self) -> list[str]:
        """Every name guidance scales may refer to (attributes, continuous, ``text``)."""
        return [*self.attributes, *self.continuous, *([TEXT] if self.text_null_tokens is not None else [])]

    def null_index(self, name: str) -> int:
        return len(self.attributes[name])

    def num_embeddings(self, name: str) -> int:
        """Rows of the embedding table for ``name``: its values plus the null token."""
        return len(self.attributes[name]) + 1

    @property
    def categorical(self) -> dict[str, list[str]]:
        """Every categorical attribute a sample can be asked for: embedded ones, then those of the prompt
        (an empty value, "not known", is not one: models trained before it was left out list it)."""
        return {name: [v for v in values if v != ""] for name, values in {**self.attributes, **self.prompt_attributes}.items()}

    def check_name(self, name: str, *, what: str = "condition") -> None:
        """Raise unless ``name`` is a condition (``what="condition"``: prompt attributes too) or a guidance name."""
        known = self.names + (list(self.prompt_attributes) if what == "condition" else [])
        if name not in known:
            listed = ", ".join(known) or "none (the model is unconditional)"
            hint = (f" (guide {', '.join(self.prompt_attributes)} through '{TEXT}')"
                    if what == "guidance" and name in self.prompt_attributes else "")
            raise ConfigError(f"{what} '{name}': the model was not trained on it{hint}; known: {listed}")

    def encode(
        self,
        conditions: Sequence[Mapping[str, str | float]],
        *,
        text: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> Condition:
        """Turn ``[{"orientation": "AVAF", ...}, ...]`` (one mapping per item) into a :class:`Condition`.

        Attributes an item leaves out get their null token (continuous: ``NaN``). Prompt attributes
        are checked against their values and otherwise left to the prompt (``text``).

        Raises:
            ConfigError: a name or a value the model was not trained on.
        """
        n = len(conditions)
        attrs = {name: torch.full((n,), self.null_index(name), dtype=torch.long) for name in self.attributes}
        cont = {name: torch.full((n,), math.nan) for name in self.continuous}
        categorical = self.categorical
        for i, item in enumerate(conditions):
            for name, value in item.items():
                self.check_name(name)
                if name in categorical:
                    values = categorical[name]
                    if str(value) not in values:
                        raise ConfigError(
                            f"condition {name}={value}: not a value the model was trained on; "
                            f"choose one of {', '.join(values)}"
                        )
                    if name in attrs:
                        attrs[name][i] = values.index(str(value))
                elif name in cont:
                    try:
                        cont[name][i] = float(value)
                    except (TypeError, ValueError) as err:
                        raise ConfigError(f"condition {name}={value}: expected a number") from err
                else:
                    raise ConfigError(f"condition '{name}': give the prompt as text tokens, not as a condition")
        if text is not None and self.text_null_tokens is None:
            raise ConfigError("prompt given but the model takes no text: drop the prompt", keys=("prompt",))
        if text is not None and (text.ndim != 2 or text.shape != (n, len(self.text_null_tokens or []))):
            raise DataError(
                f"text tokens: expected shape ({n}, {len(self.text_null_tokens or [])}) (items, the model's "
                f"prompt length), got {tuple(text.shape)}"
            )
        if text is None and self.text_null_tokens is not None:
            text = torch.tensor(self.text_null_tokens, dtype=torch.long).expand(n, -1).clone()
        return Condition(attrs, cont, text).to(device)

    def null(self, n: int, *, device: torch.device | str = "cpu") -> Condition:
        """The fully unconditional condition for ``n`` items."""
        return self.encode([{}] * n, device=device)


@dataclass(frozen=True)
class Condition:
    """A batch of conditions; see the module docstring for the contract.

    Attributes:
        attributes: ``{name: LongTensor (N,)}`` vocabulary indices (null = ``len(values)``).
        continuous: ``{name: FloatTensor (N,)}`` (null = ``NaN``).
        text: ``LongTensor (N, L)`` token ids or ``None``.
        guidance: ``FloatTensor (N, G)`` guidance scales a distilled model takes as input (one
            column per guided name, :func:`~uterosynth.diffusion.guidance.embedded_scales`), or ``None``.
    """

    attributes: dict[str, torch.Tensor] = field(default_factory=dict)
    continuous: dict[str, torch.Tensor] = field(default_factory=dict)
    text: torch.Tensor | None = None
    guidance: torch.Tensor | None = None

    def __len__(self) -> int:
        for tensor in (*self.attributes.values(), *self.continuous.values()):
            return int(tensor.shape[0])
        return 0 if self.text is None else int(self.text.shape[0])

    def to(self, device: torch.device | str) -> Condition:
        return Condition(
            {k: v.to(device) for k, v in self.attributes.items()},
            {k: v.to(device) for k, v in self.continuous.items()},
            None if self.text is None else self.text.to(device),
            None if self.guidance is None else self.guidance.to(device),
        )

    def with_guidance(self, scales: torch.Tensor) -> Condition:
        """A copy that carries guidance scales ``(N, G)`` (or ``(G,)``, the same for every item)."""
        scales = torch.as_tensor(scales, dtype=torch.float32)
        if scales.ndim == 1:
            scales = scales.expand(len(self), -1)
        return replace(self, guidance=scales.to(condition_device(self)))

    def keep_only(self, keep: Iterable[str], vocab: ConditionVocabulary) -> Condition:
        """A copy where every name not in ``keep`` is replaced by its null token."""
        keep = set(keep)
        n = len(self)
        attrs = {
            k: v if k in keep else torch.full_like(v, vocab.null_index(k)) for k, v in self.attributes.items()
        }
        cont = {k: v if k in keep else torch.full_like(v, math.nan) for k, v in self.continuous.items()}
        text = self.text
        if text is not None and TEXT not in keep:
            null = torch.tensor(vocab.text_null_tokens or [], dtype=text.dtype, device=text.device)
            text = null.expand(n, -1).clone()
        return Condition(attrs, cont, text, self.guidance)

    def select(self, index: torch.Tensor | slice) -> Condition:
        """Items ``index`` of the batch."""
        return Condition(
            {k: v[index] for k, v in self.attributes.items()},
            {k: v[index] for k, v in self.continuous.items()},
            None if self.text is None else self.text[index],
            None if self.guidance is None else self.guidance[index],
        )

    @staticmethod
    def cat(conditions: Sequence[Condition]) -> Condition:
        """Concatenate batches (same names in each) along the batch dimension."""
        first = conditions[0]
        return Condition(
            {k: torch.cat([c.attributes[k] for c in conditions]) for k in first.attributes},
            {k: torch.cat([c.continuous[k] for c in conditions]) for k in first.continuous},
            None if first.text is None else torch.cat([c.text for c in conditions]),  # type: ignore[misc]
            None if first.guidance is None else torch.cat([c.guidance for c in conditions]),  # type: ignore[misc]
        )


def condition_device(cond: Condition) -> torch.device:
    """The device of a condition batch's tensors (the CPU for an empty one)."""
    for tensor in (*cond.attributes.values(), *cond.continuous.values(), cond.text):
        if tensor is not None:
            return tensor.device
    return torch.device("cpu")
