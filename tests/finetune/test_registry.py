"""One registry shape: duplicates refused, unknown names are one ConfigError line, `study list`."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

from finetune import ConfigError
from finetune.registry import Registry
from study.cli import main
from study.cli.reading import registries
from tests.conftest import REPO


def test_duplicate_names_are_refused_and_unknown_names_list_the_choices() -> None:
    colours: Registry[int] = Registry("colour", "paint.colour")
    colours.add("red", 1, "warm")
    colours.register("blue", "cold")(2)
    with pytest.raises(ValueError, match="colour 'red' is registered already"):
        colours.add("red", 3)
    assert colours["red"] == 1 and dict(colours) == {"red": 1, "blue": 2}
    with pytest.raises(ConfigError) as caught:
        colours["green"]
    assert str(caught.value) == "paint.colour: unknown colour 'green'; choose one of blue, red"
    assert isinstance(caught.value, KeyError)  # mapping-style callers keep working
    assert colours.describe() == [("blue", "cold"), ("red", "warm")]


def test_every_registry_is_one_shape_with_a_description_for_every_entry() -> None:
    fields = {registry.field for registry in registries()}
    assert {"search_space", "protocol", "data.dataset", "model.backbone", "regularizer.name"} <= fields
    for registry in registries():
        assert isinstance(registry, Registry) and len(registry) > 0
        assert all(description for _, description in registry.describe()), registry.field


PROBE = """
import json
from study.cli.reading import registries
from tests.conftest import REPO
print(json.dumps([[r.field, r.kind, [list(pair) for pair in r.describe()]] for r in registries()]))
"""


@functools.cache
def live_catalog() -> str:
    """Every registry's field, kind, names and descriptions as a fresh process loads them (JSON): the
    registries of this process may hold the entries other tests registered."""
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def assert_catalog_matches(live: list) -> None:
    from finetune.catalog import CATALOG

    catalog = [[field, kind, [list(pair) for pair in entries]] for field, kind, entries in CATALOG]
    assert live == catalog, "finetune/catalog.py is stale: run `make catalog` (python tools/write_catalog.py)"


def test_study_list_prints_what_each_registry_offers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for field, kind, entries in json.loads(live_catalog()):
        assert f"{field} ({kind}):" in out
        assert all(name in out for name, _ in entries)
    assert "fig3d-small" in out and "embedded-fashion-mnist" in out and "resnet50" in out


def test_the_catalog_study_list_prints_is_what_the_registries_hold() -> None:
    """``study list`` prints ``finetune.catalog`` (no torch); it must be the registries' own."""
    assert_catalog_matches(json.loads(live_catalog()))


def test_a_stale_catalog_is_caught() -> None:
    live = json.loads(live_catalog())
    backbones = next(entries for field, _, entries in live if field == "model.backbone")
    backbones.append(["resnet-new", "a backbone added without rewriting the catalog"])
    with pytest.raises(AssertionError, match=r"catalog\.py is stale"):
        assert_catalog_matches(live)
