"""Published numbers to print beside a study's own (``study/references.yaml``: the paper's Table 2
and tllib's benchmark, with their sources and protocols)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REFERENCES_FILE = Path(__file__).with_name("references.yaml")


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    protocol: str  # in words
    protocols: tuple[str, ...]  # the study protocols (``finetune.protocols``) its numbers stand for
    settings: dict[str, Any]  # the published BSS settings (flat keys) a +BSS cell must have

    @property
    def settings_text(self) -> str:
        return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.settings.items())


@functools.cache
def _data() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(REFERENCES_FILE.read_text(encoding="utf-8"))
    return loaded


def sources() -> list[Source]:
    return [
        Source(name, s["title"], s["protocol"], tuple(s["protocols"]), dict(s.get("settings") or {}))
        for name, s in _data()["sources"].items()
    ]


def _has_settings(source: Source, method: str, config: Mapping[str, Any]) -> bool:
    """A +BSS method's config has the source's published BSS settings (a method without BSS has none to match)."""
    if not method.endswith("+BSS"):
        return True
    return all(key in config and float(config[key]) == float(value) for key, value in source.settings.items())


def published(
    dataset: str, backbone: str, method: str, rate: float, protocol: str, config: Mapping[str, Any] | None = None
) -> dict[str, float]:
    """Source name -> published accuracy (a fraction) for this dataset, backbone, method and rate,
    from the sources whose protocols include ``protocol`` and whose published settings ``config``
    (flat keys) has; empty where nothing published matches."""
    data = _data()
    if backbone != data["backbone"]:
        return {}
    rates = [float(r) for r in data["rates"]]
    matches = [i for i, r in enumerate(rates) if abs(r - rate) < 1e-9]
    if not matches:
        return {}
    found = {}
    for source in sources():
        if protocol not in source.protocols or not _has_settings(source, method, config or {}):
            continue
        values = data["tables"][source.name].get(dataset, {}).get(method)
        if values is not None:
            found[source.name] = float(values[matches[0]]) / 100
    return found
