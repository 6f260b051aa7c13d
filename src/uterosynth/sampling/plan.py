"""Which items a sampling run makes: index → condition record and prompt, balanced over classes."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ConfigError
from ..diffusion.conditions import ConditionVocabulary

__all__ = ["PlannedItem", "plan_items"]


@dataclass(frozen=True)
class PlannedItem:
    """Item ``index`` of a run: the condition it is generated for and its prompt (if any)."""

    index: int
    condition: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None


def plan_items(
    vocab: ConditionVocabulary,
    *,
    n: int | None,
    per_class: int | None,
    conditions: Mapping[str, str] | None = None,
    prompt: str | None = None,
) -> list[PlannedItem]:
    """Plan a run's items.

    With ``per_class``, items cycle through every combination of the categorical attributes
    not fixed by ``conditions`` (``per_class`` items each, classes interleaved so any prefix of
    the run stays balanced); otherwise ``n`` items share ``conditions``.

    Raises:
        ConfigError: neither or both of ``n`` / ``per_class``; ``per_class`` for an unconditional
            model; a condition or prompt the model was not trained on; a free prompt where the
            model's prompt is built from planned attribute values.
    """
    conditions = dict(conditions or {})
    for name in conditions:
        vocab.check_name(name)
    if prompt is not None and vocab.text_null_tokens is None:
        raise ConfigError("prompt: the model takes no text; drop the prompt", keys=("prompt",))
    built = per_class is not None or bool(set(conditions) & set(vocab.prompt_attributes))
    if prompt is not None and vocab.prompt_attributes and built:
        # a free prompt would replace the prompt built from the planned values, and the records would lie
        raise ConfigError(f"prompt: the model reads {', '.join(vocab.prompt_attributes)} from its prompt, which "
                          "conditions and per_class build; drop the prompt or the conditions",
                          keys=("prompt", "per_class" if per_class is not None else "conditions"))
    if (n is None) == (per_class is None):
        raise ConfigError("give exactly one of n (items) or per_class (items per class)", keys=("n", "per_class"))
    if n is not None:
        if n < 1:
            raise ConfigError(f"n: expected at least 1 item, got {n}", keys=("n",))
        return [PlannedItem(i, dict(conditions), prompt) for i in range(n)]
    if per_class is None or per_class < 1:
        raise ConfigError(f"per_class: expected at least 1, got {per_class}", keys=("per_class",))
    categorical = vocab.categorical
    free = [name for name in categorical if name not in conditions]
    if not free:
        raise ConfigError(
            "per_class needs a categorical attribute to balance over; the model has none left "
            "(unconditional model, or every attribute fixed by conditions): use n", keys=("n",)
        )
    classes = list(itertools.product(*(categorical[name] for name in free)))
    items = []
    for k in range(per_class * len(classes)):
        values = classes[k % len(classes)]
        items.append(PlannedItem(k, {**conditions, **dict(zip(free, values, strict=True))}, prompt))
    return items
