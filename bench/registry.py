"""Registries: the one list of each pluggable kind (architecture, estimator, neuron, data set,
energy model), timm style. Validation, error messages, reports and sweep workers read them; no
module keeps a hand list of the same names.

    ARCHITECTURES = Registry("architecture", key="arch")
    @ARCHITECTURES.register("my_net", spiking=True)
    def my_net(**kw): ...

A registry remembers the module each entry came from, so a sweep can make its worker processes
import the same plugins (bench.plugins).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Generic, Iterator, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class UnknownName(BenchError, ValueError):
    """A name no registry entry has; the message names the config key and the known names."""


class Registry(Generic[T]):
    """Name -> object, with per-entry metadata (a display label, an ANN twin...)."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind, self.key = kind, key  # key: the run-config key that names an entry
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator; `name` defaults to the object's __name__. A second registration of a name
        replaces the first with a warning (re-running a notebook cell or a plugin file)."""
        def add(obj: T) -> T:
            self.add(name or obj.__name__, obj, **meta)  # type: ignore[attr-defined]
            return obj
        return add

    def add(self, name: str, obj: T, **meta: Any) -> None:
        if name in self._items and self._items[name] is not obj:
            warnings.warn(f"{self.kind} '{name}' registered twice; the later one replaces the "
                          "earlier", stacklevel=3)
        self._items[name] = obj
        self._meta[name] = {"module": getattr(obj, "__module__", None), **meta}

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> T:
        """The entry, or UnknownName (a BenchError) naming the config key and the known names."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownName(self.unknown(name)) from None

    def unknown(self, name: object) -> str:
        return (f"config key '{self.key}': {name!r} is not a registered {self.kind} "
                f"(known: {', '.join(self.names())})")

    def meta(self, name: str, field: str, default: Any = None) -> Any:
        """A metadata field of an entry (default for an unknown entry or field)."""
        return self._meta.get(name, {}).get(field, default)

    def names_with(self, field: str) -> list[str]:
        """The entries whose metadata `field` is true."""
        return [n for n in self._items if self._meta[n].get(field)]

    def modules(self) -> set[str]:
        """The modules that registered entries (plugins included)."""
        return {m["module"] for m in self._meta.values() if m.get("module")}

