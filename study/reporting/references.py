"""Published numbers to print beside a study's own (``study/references.yaml``: the paper's Table 2
and tllib's benchmark, with their sources and protocols)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REFERENCES_FILE = Path(__file__).with_name("references.yaml")


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    protocol: str


@functools.cache
def _data() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(REFERENCES_FILE.read_text(encoding="utf-8"))
    return loaded


def sources() -> list[Source]:
    return [Source(name, s["title"], s["protocol"]) for name, s in _data()["sources"].items()]


def published(dataset: str, backbone: str, method: str, rate: float) -> dict[str, float]:
    """Source name -> published accuracy (a fraction) for this dataset, backbone, method and rate;
    empty where nothing published matches."""
    data = _data()
    if backbone != data["backbone"]:
        return {}
    rates = [float(r) for r in data["rates"]]
    matches = [i for i, r in enumerate(rates) if abs(r - rate) < 1e-9]
    if not matches:
        return {}
    found = {}
    for source, table in data["tables"].items():
        values = table.get(dataset, {}).get(method)
        if values is not None:
            found[source] = float(values[matches[0]]) / 100
    return found
