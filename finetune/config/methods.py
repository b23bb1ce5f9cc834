"""The registry of penalty terms: each entry declares everything about its term.

A term (a base regulariser chosen by ``regularizer.name``, or an add-on such as BSS that its own
section switches on) registers one :class:`Method`: its config section, which coefficients act,
their reference values, the setting that scales it, when its settings act at all, its cross-field
checks, and how it is built. The config, the tracker's parameters, the trainer and ``study list``
read it from here, so adding a term is one module (see ``finetune/regularizers/bss.py``, or the toy
term in ``tests/finetune/test_plugin_method.py``); the built-ins register on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from finetune.errors import ConfigError
from finetune.registry import Registry

if TYPE_CHECKING:
    from finetune.config.schema import Section, TrainConfig

COEFFICIENTS = ("alpha", "beta")  # the fields of ``regularizer`` a base term may read


def _always(_config: TrainConfig) -> bool:
    return True


def _nothing(_config: TrainConfig) -> None:
    return None


@dataclass(frozen=True)
class Method:
    """One penalty term.

    ``build(context) -> Regularizer``: the term for a run (``finetune.regularizers.base``).
    ``term``: its class (its docstring holds the formula; ``graph_unsafe`` says why it cannot run
    under a CUDA graph). ``base``: chosen by ``regularizer.name`` (else an add-on, on when its
    section's ``enabled`` is). ``section``: its own settings, the top-level config key ``name``.
    ``coefficients``: which of ``regularizer.alpha`` / ``beta`` it reads (base terms);
    ``reference``: their defaults, the reference implementation's values;
    ``protocol_coefficients``: per named protocol (``finetune.protocols``), the coefficients that
    carry that protocol's reference numbers for this term (what is not named takes ``reference``).
    ``knob``: the setting
    that scales the term, named when a run diverges. ``applies(config)``: whether its section can
    act in this run at all (EWC's only in a task sequence); ``check(config)``: cross-field checks
    while it is on, raising :class:`ConfigError`.
    """

    name: str
    title: str
    description: str
    build: Callable[[Any], Any]
    term: type
    base: bool
    section: type[Section] | None = None
    coefficients: tuple[str, ...] = ()
    reference: Mapping[str, float] = field(default_factory=dict)
    knob: str = ""
    applies: Callable[[TrainConfig], bool] = _always
    check: Callable[[TrainConfig], None] = _nothing
    protocol_coefficients: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        named = [c for values in self.protocol_coefficients.values() for c in values]
        unknown = [c for c in (*self.coefficients, *self.reference, *named) if c not in COEFFICIENTS]
        if unknown:
            raise ValueError(f"{self.name}: coefficients {unknown} are not among {COEFFICIENTS}")
        if not self.base and self.section is None:
            raise ValueError(f"{self.name}: an add-on term needs a section with an 'enabled' field")

    @property
    def graph_unsafe(self) -> str:
        return str(getattr(self.term, "graph_unsafe", ""))

    def is_on(self, config: TrainConfig) -> bool:
        if self.base:
            return config.regularizer.name == self.name
        return bool(getattr(config.sections[self.name], "enabled", False))


METHODS: Registry[Method] = Registry("regulariser", "regularizer.name", providers=("finetune.regularizers",))


def method_registry() -> Registry[Method]:
    """Every registered term, the built-ins first: they register when ``finetune.regularizers`` loads,
    which the registry does the first time it is read (it is a leaf they fill)."""
    return METHODS


def add_method(method: Method) -> Method:
    if method.section is not None:
        method.section.key = method.name
    return METHODS.add(method.name, method, method.description)


def base_names() -> list[str]:
    return sorted(name for name, method in method_registry().items() if method.base)


def check_base_name(name: str) -> None:
    if name not in method_registry() or not METHODS[name].base:
        raise ConfigError(f"regularizer.name: unknown regulariser {name!r}; choose one of {', '.join(base_names())}")


def reference_coefficients(name: str) -> Mapping[str, float]:
    """The reference's coefficients of base term ``name`` (empty for an unknown name)."""
    method = method_registry().get(name)
    return method.reference if method is not None else {}


def protocol_coefficients(protocol: str, name: str) -> Mapping[str, float]:
    """The coefficients protocol ``protocol`` gives base term ``name`` (empty: the term's reference)."""
    method = method_registry().get(name)
    return method.protocol_coefficients.get(protocol, {}) if method is not None else {}


def section_types() -> dict[str, type[Section]]:
    """Every term's section class by its config key, in registration order."""
    return {name: m.section for name, m in method_registry().items() if m.section is not None}


def complete_sections(given: Mapping[str, Section]) -> dict[str, Section]:
    """``given`` with every registered section that is missing at its defaults, in registry order."""
    types = section_types()
    for key, value in given.items():
        if key not in types:
            raise ConfigError(f"{key}: unknown section; known sections are {', '.join(types)}")
        if not isinstance(value, types[key]):
            raise TypeError(f"section {key!r} must be a {types[key].__name__}, got {type(value).__name__}")
    return {key: given[key] if key in given else cls() for key, cls in types.items()}


def active_methods(config: TrainConfig) -> list[Method]:
    """The terms a config switches on: the base regulariser (if registered), then add-ons in registry order."""
    chosen = method_registry()
    base = [chosen[config.regularizer.name]] if config.regularizer.name in chosen else []
    return [m for m in base if m.base] + [m for m in chosen.values() if not m.base and m.is_on(config)]
