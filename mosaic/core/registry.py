"""A name -> implementation registry whose lookup errors name the config field and the choices."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from mosaic.core.errors import ConfigError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    def __init__(self, what: str, field: str):
        self._what, self._field = what, field
        self._items: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            if name in self._items:
                raise ValueError(f"{self._what} '{name}' registered twice")
            self._items[name] = fn
            return fn
        return deco

    def available(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> F:
        if name not in self._items:
            raise ConfigError(f"{self._field}: unknown {self._what} '{name}'; choose one of {self.available()}")
        return self._items[name]
