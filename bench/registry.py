"""Registries: the one list of each pluggable kind (architecture, estimator, neuron, data set,
energy model), timm style. Validation, error messages, reports and sweep workers read them; no
module keeps a hand list of the same names.

    from bench.registry import ARCHITECTURES
    @ARCHITECTURES.register("my_net", spiking=True)
    def my_net(**kw): ...

They live here, below everything that registers into them, so the run config can check a name
without importing the packages that read the run config. Each names its `provider`, the package
whose import registers the built-in entries: the first look-up imports it. A registry remembers
the module each entry came from, so a sweep's worker processes import the same plugins.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, Generic, Iterator, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class UnknownName(BenchError, ValueError):
    """A name no registry entry has; the message names the config key and the known names."""


class Registry(Generic[T]):
    """Name -> object, with per-entry metadata (a display label, an ANN twin...)."""

    def __init__(self, kind: str, key: str, provider: str) -> None:
        self.kind, self.key = kind, key  # key: the run-config key that names an entry
        self.provider, self._provided = provider, False
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    @property
    def items(self) -> dict[str, T]:
        """name -> entry, the built-in ones registered first."""
        if not self._provided:
            self._provided = True
            importlib.import_module(self.provider)  # registers the built-ins on import
        return self._items

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
        return name in self.items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.items)

    def names(self) -> list[str]:
        return sorted(self.items)

    def get(self, name: str) -> T:
        """The entry, or UnknownName (a BenchError) naming the config key and the known names."""
        try:
            return self.items[name]
        except (KeyError, TypeError):
            raise UnknownName(self.unknown(name)) from None

    def unknown(self, name: object) -> str:
        return (f"config key '{self.key}': {name!r} is not a registered {self.kind} "
                f"(known: {', '.join(self.names())})")

    def meta(self, name: str, field: str, default: Any = None) -> Any:
        """A metadata field of an entry (default for an unknown entry or field)."""
        return self._meta.get(name, {}).get(field, default) if name in self else default

    def names_with(self, field: str) -> list[str]:
        """The entries whose metadata `field` is true."""
        return [n for n in self.names() if self._meta[n].get(field)]

    def modules(self) -> set[str]:
        """The modules that registered entries (plugins included)."""
        return {m["module"] for m in self._meta.values() if m.get("module")}


ARCHITECTURES: Registry = Registry("architecture", key="arch", provider="bench.models")
ESTIMATORS: Registry = Registry("gradient estimator", key="estimator", provider="bench.neurons")
NEURONS: Registry = Registry("neuron", key="neuron", provider="bench.neurons")
DATASETS: Registry = Registry("data set", key="dataset", provider="bench.data")
ENERGY_MODELS: Registry = Registry("energy model", key="energy_model", provider="bench.energy")
ALL = (ARCHITECTURES, ESTIMATORS, NEURONS, DATASETS, ENERGY_MODELS)


def registered_modules() -> set[str]:
    """Every module that registered an entry in any registry (plugins included)."""
    return set().union(*(r.modules() for r in ALL))
