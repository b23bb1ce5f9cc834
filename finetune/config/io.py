"""The config as files and flat keys: nested dicts, YAML, and Tune / Optuna's dotted parameters.

There is exactly one adapter from the flat, dotted dictionaries that Tune and Optuna produce
(``{"bss.k": 2}``) to the tree: :func:`resolve_config`. Every run's resolved config round-trips
through YAML (:func:`config_to_yaml` / :func:`config_from_yaml`). A term's section is a top-level
key here (``bss:``) though the tree keeps it in ``TrainConfig.sections``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from finetune.config import strict_yaml
from finetune.config.convert import build_dataclass
from finetune.config.methods import protocol_coefficients, section_types
from finetune.config.schema import RegularizerConfig, TrainConfig
from finetune.errors import ConfigError

_ROOT_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "sections")


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a nested mapping (missing keys take defaults).

    A named ``protocol`` fills in its preset first; every value given here overrides it.
    """
    from finetune.plugins import load_plugins
    from finetune.protocols import PROTOCOLS

    load_plugins(values.get("plugins") or ())
    name = values.get("protocol", "custom")
    merged = _merge(PROTOCOLS[name].values, values)
    regularizer = merged.get("regularizer", {})
    if isinstance(regularizer, Mapping):  # the protocol's numbers, on the coefficients that carry them here
        term = regularizer.get("name", RegularizerConfig.name)
        merged["regularizer"] = {**protocol_coefficients(str(name), str(term)), **regularizer}
    types = section_types()
    for key in merged:
        if key not in types and key not in _ROOT_FIELDS:
            known = ", ".join(sorted((*_ROOT_FIELDS, *types)))
            raise ConfigError(f"{key}: unknown key; known keys here are {known}")
    sections = {}
    for key, cls in types.items():
        given = merged.get(key, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(given).__name__}")
        sections[key] = build_dataclass(cls, given, key)
    root = {k: v for k, v in merged.items() if k not in types}
    return build_dataclass(TrainConfig, {**root, "sections": sections})


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Nested plain-Python dict (lists instead of tuples) suitable for YAML and JSON; each term's
    section a top-level key after ``regularizer`` (by name); ``plugins`` only when there are some."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    tree = plain(dataclasses.asdict(config))
    sections = tree.pop("sections")
    if not tree["plugins"]:
        del tree["plugins"]  # no plug-ins: the same file as before plug-ins existed
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out[key] = value
        if key == "regularizer":
            out.update((name, sections[name]) for name in sorted(sections))
    return out


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"bss": {"k": 1}}`` -> ``{"bss.k": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"bss.k": 1}`` -> ``{"bss": {"k": 1}}``."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: '{part}' is a value, not a section")
        node[leaf] = value
    return nested


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_config(base: Mapping[str, Any], flat_overrides: Mapping[str, Any]) -> TrainConfig:
    """The one adapter from Tune/Optuna's flat dotted parameters onto a base config."""
    return config_from_dict(_merge(base, unflatten(flat_overrides)))


def config_to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def config_from_yaml(text: str, source: str = "<config>") -> TrainConfig:
    try:
        values = strict_yaml.load(text)
    except strict_yaml.YamlRefused as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: expected a mapping of config sections at the top level")
    return config_from_dict(values)


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: no file at {path}; pass the path of a config YAML such as <study>/best.yaml")
    if path.stat().st_size > strict_yaml.MAX_BYTES:
        raise ConfigError(f"--config: {path} has {path.stat().st_size:,} bytes; a config YAML is a few kilobytes")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--config: {path} is not a text (UTF-8) file; pass a config YAML") from None
    return config_from_yaml(text, str(path))
