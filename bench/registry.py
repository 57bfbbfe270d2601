"""Registries: the one list of each pluggable kind (architecture, estimator, neuron, data set,
energy model), timm style. Validation, error messages, reports and sweep workers read them; no
module keeps a hand list of the same names.

One idiom registers into every registry: `REGISTRY.register(name, **meta)`, a decorator, also
called on an object that is not defined by a `def` or `class` statement:

    from bench.registry import ARCHITECTURES, DATASETS
    @ARCHITECTURES.register("my_net", spiking=True)
    def my_net(**kw): ...
    DATASETS.register("my_set", label="My set")(MyDataModule)

They live here, below everything that registers into them, so the run config can check a name
without importing the packages that read the run config. Each names its `provider`, the package
whose import registers the built-in entries: the first look-up imports it (and a look-up after a
failed import tries again). A registry remembers the module each entry came from, so a sweep's
worker processes import the same plugins.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, Generic, Iterator, TypeVar

from bench.errors import BenchError

E = TypeVar("E")  # an entry


class UnknownName(BenchError, ValueError):
    """A name no registry entry has; the message names the config key and the known names."""


class ProviderError(ImportError):
    """A registry's provider package failed to import; the message names it and the cause."""


class Registry(Generic[E]):
    """Name -> object, with per-entry metadata (a display label, an ANN twin...).

    required: metadata keys every entry must give (an architecture's `spiking`: no silent
    default). name_attr: an attribute the registered object gets its name in (an estimator's
    `name`, which a neuron built from an estimator instance records in its settings).
    """

    def __init__(self, kind: str, key: str, provider: str, *, required: tuple[str, ...] = (),
                 name_attr: str | None = None) -> None:
        self.kind, self.key = kind, key  # key: the run-config key that names an entry
        self.provider, self._provided = provider, False
        self.required, self.name_attr = required, name_attr
        self._items: dict[str, E] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    @property
    def items(self) -> dict[str, E]:
        """name -> entry, the built-in ones registered first."""
        if not self._provided:
            # marked only once the import succeeded: a failed one is tried again next look-up
            # (a look-up during the provider's own import finds it in sys.modules, no recursion)
            try:
                importlib.import_module(self.provider)  # registers the built-ins on import
            except Exception as exc:
                first = str(exc).strip().splitlines()[:1]
                raise ProviderError(f"{self.kind} registry: importing its provider "
                                    f"{self.provider} failed: {type(exc).__name__}: "
                                    f"{''.join(first)}") from exc
            self._provided = True
        return self._items

    def register(self, name: str | None = None, **meta: Any) -> Callable[[E], E]:
        """Decorator registering an object under `name` (default: its __name__) with metadata
        `meta`; returns the object unchanged. A second registration of a name replaces the first
        with a warning (re-running a notebook cell or a plugin file)."""
        missing = [k for k in self.required if k not in meta]
        if missing:
            raise TypeError(f"{self.kind} {name or ''}: register() needs the metadata "
                            f"{', '.join(missing)}")

        def add(obj: E) -> E:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._items and self._items[key] is not obj:
                warnings.warn(f"{self.kind} '{key}' registered twice; the later one replaces "
                              "the earlier", stacklevel=2)
            if self.name_attr:
                setattr(obj, self.name_attr, key)
            self._items[key] = obj
            self._meta[key] = {"module": getattr(obj, "__module__", None), **meta}
            return obj
        return add

    def __contains__(self, name: object) -> bool:
        return name in self.items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.items)

    def names(self) -> list[str]:
        return sorted(self.items)

    def get(self, name: str) -> E:
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


# spiking: whether the architecture has neurons (an ANN takes T=None, neurons=None)
ARCHITECTURES: Registry = Registry("architecture", key="arch", provider="bench.models",
                                   required=("spiking",))
ESTIMATORS: Registry = Registry("gradient estimator", key="estimator", provider="bench.neurons",
                                name_attr="name")
NEURONS: Registry = Registry("neuron", key="neuron", provider="bench.neurons")
DATASETS: Registry = Registry("data set", key="dataset", provider="bench.data")
ENERGY_MODELS: Registry = Registry("energy model", key="energy_model", provider="bench.energy")
ALL = (ARCHITECTURES, ESTIMATORS, NEURONS, DATASETS, ENERGY_MODELS)


def registered_modules() -> set[str]:
    """Every module that registered an entry in any registry (plugins included)."""
    return set().union(*(r.modules() for r in ALL))
