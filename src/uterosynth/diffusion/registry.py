"""A small name → object registry for extensible choices (``@SAMPLERS.register("ddim")``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ..core.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects registered under names; an unknown name is a :class:`~uterosynth.core.errors.ConfigError` listing the known ones."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator storing its argument under ``name`` (a name may be registered once)."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} '{name}' is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"{self.what} '{name}': unknown; choose one of {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.what}: {', '.join(self.names())})"
