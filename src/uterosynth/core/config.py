"""Typed configuration: pydantic models loaded from YAML with errors that name file and key.

Every stage has one pydantic model (``frozen=True, extra="forbid"``). ``load_config`` reads a
YAML file, applies command-line overrides given as dotted keys (``train.lr=1e-4``) and
validates; any problem becomes a :class:`~uterosynth.core.errors.ConfigError` naming the file, the
key and the reason.

A YAML file may start from another one: ``base: ldm2d_demo.yaml`` (a path relative to the file
that names it) loads that file first and lays this file's keys over it, section by section
(mappings merge key by key; lists and scalars replace). ``base`` may list several files, laid
over each other in order; bases may have bases; a cycle is refused.

Every ``NAME=VALUE`` text of the command line and of pipeline files is split by
:func:`split_assignment`, the one parser of that syntax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

__all__ = [
    "StrictModel", "config_hash", "load_config", "merge_config", "parse_overrides", "read_config_file", "repeated",
    "split_assignment", "validate_config",
]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every configuration model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    extra = f" (and {len(err.errors()) - 1} more problem(s))" if len(err.errors()) > 1 else ""
    return f"{source}: key '{key}': {msg}{extra}"


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def split_assignment(
    text: str, *, what: str = "override", expected: str = "KEY=VALUE, e.g. train.steps=100",
    empty_value: bool = False, keys: tuple[str, ...] = (),
) -> tuple[str, str]:
    """Split ``NAME=VALUE`` at the first ``=``: the stripped name and the value as given.

    Args:
        text: the assignment, e.g. ``"orientation=AVAF"``.
        what: what the text is, for the message (``"conditions"``).
        expected: the form expected, with an example, for the message.
        empty_value: whether ``NAME=`` (an empty value) is accepted.
        keys: the parameters or config keys the text was given as (the error's ``keys``).

    Raises:
        ConfigError: no ``=``, an empty name, or an empty value where none is accepted.

    >>> split_assignment("train.steps=100")
    ('train.steps', '100')
    """
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not (empty_value or value.strip()):
        raise ConfigError(f"{what} '{text}': expected {expected}", keys=keys)
    return name.strip(), value


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key.sub=value`` strings; values are read as YAML scalars (``1e-4``, ``true``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, raw = split_assignment(item, empty_value=True)
        if raw == "":  # ``key=``: not given (``key=null`` sets null)
            continue
        try:
            out[key] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override '{item}': value is not valid YAML ({err})") from err
    return out


def merge_config(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` laid over ``base``: mappings merge key by key, anything else in ``top`` replaces.

    >>> merge_config({"train": {"lr": 1, "steps": 2}}, {"train": {"steps": 3}})
    {'train': {'lr': 1, 'steps': 3}}
    """
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return loaded


def read_config_file(path: str | Path, *, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The keys of the YAML file ``path``, laid over its ``base:`` file (recursively), if it names one.

    ``base`` is a path relative to the folder of the file that names it, or a list of such paths
    (laid over each other in order).

    Raises:
        ConfigError: a file is missing, not YAML or not a mapping, ``base`` is not a path, or the
            bases form a cycle (the message lists the files of the cycle).
    """
    path = Path(path)
    data = _read_yaml_mapping(path)
    if "base" not in data:
        return data
    bases = data.pop("base")
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) and b.strip() for b in bases):
        raise ConfigError(f"{path}: key 'base': expected the path of another config file (or a list), got {bases!r}")
    chain = (*_chain, path.resolve())
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = (path.parent / base).resolve()
        if base_path in chain:
            cycle = " -> ".join(str(p) for p in (*chain[chain.index(base_path):], base_path))
            raise ConfigError(f"{path}: key 'base': the bases form a cycle ({cycle}); remove one 'base'")
        merged = merge_config(merged, read_config_file(base_path, _chain=chain))
    return merge_config(merged, data)


def validate_config(model: type[M], data: Mapping[str, Any], *, source: str = "config") -> M:
    """Validate a mapping against ``model``; errors name ``source`` and the key."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from err


def load_config(
    model: type[M],
    path: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> M:
    """Load ``path`` (YAML) into ``model``, with dotted-key ``overrides`` applied on top.

    Args:
        model: the pydantic model of the stage.
        path: a YAML file (laid over its ``base:`` file, if any), or ``None`` for the model's defaults.
        overrides: ``{"train.lr": 1e-4}``; a ``None`` value sets the key to null (``--set train.ema_decay=null``
            turns EMA off); callers leave out flags that were not given.

    Raises:
        ConfigError: the file (or a base) is missing or not YAML, the bases form a cycle, or a
            key is unknown / of the wrong type / out of range.
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        data = read_config_file(path)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return validate_config(model, data, source=source)


def repeated(values: Sequence[str]) -> list[str]:
    """The values that occur more than once, sorted (for "names must be unique" checks)."""
    return sorted({v for v in values if values.count(v) > 1})


def config_hash(cfg: BaseModel, salt: str = "") -> str:
    """A short stable hash of a configuration (sha256 of ``salt`` + its canonical JSON)."""
    import hashlib

    return hashlib.sha256((salt + cfg.model_dump_json()).encode()).hexdigest()[:16]
