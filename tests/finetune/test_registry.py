"""One registry shape: duplicates refused, unknown names are one ConfigError line, `study list`."""

from __future__ import annotations

import pytest

from finetune import ConfigError
from finetune.registry import Registry
from study.cli import main
from study.cli.reading import registries


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


def test_study_list_prints_what_each_registry_offers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for registry in registries():
        assert f"{registry.field} ({registry.kind}):" in out
        assert all(name in out for name in registry)
    assert "fig3d-small" in out and "embedded-fashion-mnist" in out and "resnet50" in out


def test_the_catalog_study_list_prints_is_what_the_registries_hold() -> None:
    """``study list`` prints ``finetune.catalog`` (no torch); it must be the registries' own."""
    from finetune.catalog import CATALOG

    live = tuple((r.field, r.kind, tuple(r.describe())) for r in registries())
    assert live == CATALOG, "finetune/catalog.py is stale: run `make catalog` (python tools/write_catalog.py)"


def test_a_stale_catalog_is_caught() -> None:
    from finetune.backbones import BACKBONES

    BACKBONES.add("resnet-new", object(), "a backbone added without rewriting the catalog")
    try:
        with pytest.raises(AssertionError, match=r"catalog\.py is stale"):
            test_the_catalog_study_list_prints_is_what_the_registries_hold()
    finally:
        BACKBONES.remove("resnet-new")
