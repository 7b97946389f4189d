"""The one registry mechanism: schedulers, backends and workload sources are looked up by name here.

An entry is registered by a decorator in the module that defines it, or lazily by an import path
("module:attr", as vLLM names its executors) so that a heavy dependency loads only when chosen. A
name that is not registered yet is looked for, in order, in the `plugin` module the config names
(a user's own file) and in the registry's home package, whose modules are imported on demand: a
new policy, backend or source is one new file plus one config file.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

from mosaic.core.errors import ConfigError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    def __init__(self, what: str, field: str, package: str | None = None):
        self._what, self._field, self._package = what, field, package
        self._items: dict[str, F] = {}
        self._lazy: dict[str, str] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            if name in self._items and self._items[name] is not fn:
                raise ValueError(f"{self._what} '{name}' registered twice")
            self._items[name] = fn
            return fn
        return deco

    def register_lazy(self, name: str, target: str) -> None:
        """`target` = "module:attr", imported on first use of `name`."""
        self._lazy[name] = target

    def _discover(self) -> None:
        if self._discovered or self._package is None:
            return
        self._discovered = True
        pkg = importlib.import_module(self._package)
        for info in pkgutil.iter_modules(pkg.__path__, self._package + "."):
            importlib.import_module(info.name)

    def available(self) -> list[str]:
        self._discover()
        return sorted({*self._items, *self._lazy})

    def get(self, name: str, plugin: str | None = None) -> F:
        if plugin:
            try:
                importlib.import_module(plugin)
            except ImportError as e:
                raise ConfigError(f"{self._field.rsplit('.', 1)[0]}.plugin: cannot import '{plugin}' ({e}); "
                                  "set it to an importable module that registers this "
                                  f"{self._what}") from None
        fn = self._resolve(name)
        if plugin:
            self._check_plugin(name, plugin)
        return fn

    def _resolve(self, name: str) -> F:
        if name not in self._items and name not in self._lazy:
            self._discover()
        if name in self._items:
            return self._items[name]
        if name in self._lazy:
            module, attr = self._lazy[name].split(":")
            try:
                self._items[name] = getattr(importlib.import_module(module), attr)
            except ImportError as e:
                raise ConfigError(f"{self._field}={name} cannot be loaded ({e}); install it, e.g. "
                                  "`bash scripts/install_vllm_cpu.sh` for vLLM on CPU") from None
            return self._items[name]
        raise ConfigError(f"{self._field}: unknown {self._what} '{name}'; choose one of {self.available()}")

    def _check_plugin(self, name: str, plugin: str) -> None:
        """A plugin given beside a name it does not define was imported for nothing: the run would
        use the built-in entry while the config says the plugin's (found by a user who set the
        plugin and forgot the name)."""
        def inside(module: str) -> bool:
            return module == plugin or module.startswith(plugin + ".")

        theirs = sorted({n for n, f in self._items.items() if inside(getattr(f, "__module__", None) or "")}
                        | {n for n, t in self._lazy.items() if inside(t.split(":")[0])})
        if name in theirs:
            return
        base = self._field.rsplit(".", 1)[0]
        if theirs:
            raise ConfigError(f"{base}.plugin={plugin} registers {', '.join(theirs)}, not {self._field}={name}; "
                              f"set {self._field} to its {self._what}, or remove {base}.plugin")
        raise ConfigError(f"{base}.plugin={plugin} registers no {self._what}, and {self._field}={name} is built in; "
                          f"remove {base}.plugin, or name a module that registers one")
