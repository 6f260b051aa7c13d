"""Classifier-free guidance with one scale, or one scale per attribute, in one batched forward.

A conditional model ``model(x_t, t, condition)`` (contract in :mod:`uterosynth.diffusion.conditions`)
becomes a sampler's ``denoise_fn(x_t, t)``:

* one scale ``w`` for all conditions (Ho & Salimans 2022, eq. 6, written as in diffusers)::

      out = out_uncond + w * (out_cond - out_uncond)

  ``w = 0`` is the unconditional model, ``w = 1`` the conditional one (no extra pass).

* one scale per name, ``{"orientation": 4.0, "field_strength": 1.5}`` — compositional guidance
  (Liu et al. 2022, "Compositional Visual Generation with Composable Diffusion Models", eq. 10)::

      out = out_base + sum_a w_a * (out_a - out_base)

  where ``out_a`` keeps only attribute ``a`` on top of ``out_base``. ``out_base`` nulls every
  guided name; names that are given but have no scale stay conditioned in every branch (they
  are followed at scale 1, unguided). With every name guided, ``out_base`` is the fully
  unconditional output, and with one name this is exactly the single-scale rule.

A distilled student (``uterosynth distill``) takes its scales as an input instead: no branches,
one forward pass; :func:`embedded_scales` turns ``--guidance`` into its input vector.

The weights sum to one over the branches, so the rule is the same whichever of eps, v or x0 the
network predicts (each is affine in the others at fixed ``x_t``). All branches run as one forward
pass of ``(1 + A) N`` items (``2N`` for a single scale).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch

from ..core.config import split_assignment
from ..core.errors import ConfigError, DataError
from .conditions import TEXT, Condition, ConditionVocabulary
from .samplers import DenoiseFn

__all__ = ["Guidance", "check_guidance", "embedded_scales", "guided_denoiser", "parse_guidance", "shadowed_by_prompt"]

Guidance = float | Mapping[str, float] | None
ConditionalModel = Callable[[torch.Tensor, torch.Tensor, Condition | None], torch.Tensor]


def parse_guidance(text: str) -> float | dict[str, float]:
    """Parse ``"3.0"`` or ``"orientation=4,field_strength=1.5"`` (the ``--guidance`` syntax).

    Raises:
        ConfigError: not a number nor ``name=number`` pairs.
    """
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    scales: dict[str, float] = {}
    for part in text.split(","):
        try:
            name, value = split_assignment(part, what="guidance", expected="name=number", empty_value=True)
            scales[name] = float(value)
        except (ConfigError, ValueError) as err:
            raise ConfigError(
                f"guidance '{text}': expected a number (3.0) or name=number pairs (orientation=4,field_strength=1.5)"
            ) from err
    return scales


def _check_scale(name: str, value: float) -> float:
    value = float(value)
    if not value >= 0:  # also rejects NaN
        raise ConfigError(f"guidance {name}={value}: expected a scale >= 0 (0 = unconditional, 1 = conditional)")
    return value


def check_guidance(vocab: ConditionVocabulary, guidance: float | Mapping[str, float], *,
                   has_condition: bool = True) -> dict[str, float]:
    """Validate guidance for a model with ``vocab``; return the scales (``{"": scale}`` for one scale).

    Raises:
        ConfigError: guidance for an unconditional model or without a condition, an empty
            mapping, an unknown name, a negative scale.
    """
    if not vocab.is_conditional:
        raise ConfigError("guidance: the model is unconditional; leave guidance unset (or train a conditional model)",
                          keys=("guidance",))
    if not has_condition:
        raise ConfigError("guidance: no condition given for the batch; build one with ConditionVocabulary.encode")
    if not isinstance(guidance, Mapping):
        return {"": _check_scale("scale", guidance)}
    if not guidance:
        raise ConfigError("guidance: empty mapping; give a scale or name=scale pairs")
    scales = {name: _check_scale(name, w) for name, w in guidance.items()}
    for name in scales:
        vocab.check_name(name, what="guidance")
    return scales


def shadowed_by_prompt(scales: Mapping[str, float], prompt_names: Iterable[str]) -> list[str]:
    """Guided names that the prompt also carries while the prompt itself is not guided.

    The base branch keeps every unguided condition, the prompt included, so such a scale guides only
    what the name's own embedding adds to a prompt that already states its value: little, or noise.
    ``scales`` as returned by :func:`check_guidance`; ``prompt_names``: the attributes a structured
    prompt is built from.
    """
    if "" in scales or TEXT in scales:
        return []
    return sorted(set(scales) & set(prompt_names))


def guided_denoiser(
    model: ConditionalModel,
    condition: Condition | None,
    vocab: ConditionVocabulary,
    guidance: Guidance = None,
) -> DenoiseFn:
    """Wrap ``model`` and a batch ``condition`` into ``denoise_fn(x_t, t)`` with guidance.

    Args:
        model: ``model(x_t, t, condition) -> output`` with ``x_t`` (N, C, *spatial), ``t`` (N,).
        condition: the batch's condition (``len == N``), or ``None`` for an unconditional model.
        vocab: the model's condition vocabulary (null tokens).
        guidance: ``None`` (no guidance: the conditional output), one scale, or ``{name: scale}``.

    Raises:
        ConfigError: guidance for an unconditional model, an unknown name, a negative scale.
        DataError: (when called) ``condition`` does not hold one entry per item of the batch.
    """
    if guidance is None:
        return lambda x, t: model(x, t, condition)
    scales = check_guidance(vocab, guidance, has_condition=condition is not None)
    if scales.get("") == 1.0:
        return lambda x, t: model(x, t, condition)

    names = set(vocab.names)
    guided = set(scales) - {""} if "" not in scales else names
    base = condition.keep_only(names - guided, vocab)
    if "" in scales:
        branches = [condition]
        weights = [scales[""]]
    else:
        branches = [condition.keep_only((names - guided) | {name}, vocab) for name in scales]
        weights = list(scales.values())
    batched = Condition.cat([base, *branches])
    k = len(branches)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(condition):
            raise DataError(f"condition: {len(condition)} items for a batch of {x.shape[0]}")
        out = model(torch.cat([x] * (k + 1)), torch.cat([t] * (k + 1)), batched)
        chunks = out.chunk(k + 1)
        result = chunks[0]
        for w, chunk in zip(weights, chunks[1:], strict=True):
            result = result + w * (chunk - chunks[0])
        return result

    return denoise


def embedded_scales(spec: Mapping[str, object], guidance: Guidance) -> list[float]:
    """The input scales of a distilled student, one per guided name, in the student's order.

    ``spec`` is the student's ``distilled.guidance`` record: ``names`` (``[""]`` for one scale),
    ``ranges`` (``{name: [low, high]}`` it was trained on) and ``default`` (``{name: scale}``).
    ``guidance`` is ``None`` (every default), one scale (a one-scale student) or ``{name: scale}``
    (names left out keep their default).

    Raises:
        ConfigError: a name the student was not distilled for, one scale for a per-name student,
            or a scale outside its trained range.
    """
    names = list(spec["names"])  # type: ignore[call-overload]
    ranges: Mapping[str, list[float]] = spec["ranges"]  # type: ignore[assignment]
    scales = {n: float(v) for n, v in spec["default"].items()}  # type: ignore[attr-defined]
    if isinstance(guidance, Mapping):
        unknown = sorted(set(guidance) - set(names))
        if unknown:
            raise ConfigError(f"guidance {', '.join(unknown)}: the student was distilled for "
                              f"{', '.join(n or 'one scale' for n in names)}", keys=("guidance",))
        scales.update({n: float(v) for n, v in guidance.items()})
    elif guidance is not None:
        if names != [""]:
            raise ConfigError(f"guidance: this student takes one scale per name ({', '.join(names)}); give "
                              "name=scale pairs", keys=("guidance",))
        scales[""] = float(guidance)
    for name in names:
        low, high = ranges[name]
        if not low <= scales[name] <= high:
            raise ConfigError(f"guidance {name or 'scale'}={scales[name]:g}: outside the range the student was "
                              f"distilled on [{low:g}, {high:g}]", keys=("guidance",))
    return [scales[n] for n in names]
