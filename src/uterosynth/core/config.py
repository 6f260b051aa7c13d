"""Typed configuration: pydantic models loaded from YAML with errors that name file and key.

Every stage has one pydantic model (``frozen=True, extra="forbid"``). ``load_config`` reads a
YAML file, applies command-line overrides given as dotted keys (``train.lr=1e-4``) and
validates; any problem becomes a :class:`~uterosynth.core.errors.ConfigError` naming the file, the
key and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

__all__ = ["StrictModel", "load_config", "parse_overrides", "validate_config", "config_hash"]

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


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key.sub=value`` strings; values are read as YAML scalars (``1e-4``, ``true``)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected KEY=VALUE, e.g. train.steps=100")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override '{item}': value is not valid YAML ({err})") from err
    return out


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
        path: a YAML file, or ``None`` for the model's defaults.
        overrides: ``{"train.lr": 1e-4}``; ``None`` values are ignored (unset CLI flags).

    Raises:
        ConfigError: the file is missing or not YAML, or a key is unknown / of the wrong
            type / out of range.
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
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
        data = loaded
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    return validate_config(model, data, source=source)


def config_hash(cfg: BaseModel) -> str:
    """A short stable hash of a configuration (sha256 of its canonical JSON)."""
    import hashlib

    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16]
