"""Study specs: a YAML file read strictly and turned into a typed, validated :class:`StudySpec`, with no
side effects. The one loader: :func:`load_spec` for a user's file, :func:`load_folder_spec` for the
spec a study folder keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from finetune import ConfigError, InputError, config_from_dict
from finetune.config import SELECTION_METRICS, build_dataclass, strict_yaml
from study.spec.checks import _fail, check_not_system, check_output_path, validate
from study.spec.errors import StudyError
from study.spec.model import StudySpec, held_fixed


def _warm_start_source(values: dict[str, Any], relative_to: Path) -> dict[str, Any]:
    """``warm_start.from`` (YAML) is the field ``source``; a folder's path (relative to ``relative_to``,
    as ``output_dir``) is made absolute."""
    warm = values.get("warm_start")
    if not isinstance(warm, dict):
        return values
    warm = dict(warm)
    if "from" in warm:
        if "source" in warm:
            raise _fail("warm_start", "give from (or source), not both")
        warm["source"] = warm.pop("from")
    source = warm.get("source")
    if isinstance(source, str) and source.strip():
        path = Path(source).expanduser()
        path = path if path.is_absolute() else relative_to / path
        if path.is_dir():
            warm["source"] = str(path.resolve())
    return {**values, "warm_start": warm}


def spec_from_mapping(values: Any, source: str, relative_to: Path, output_dir: Path | None = None) -> StudySpec:
    """A validated spec; ``output_dir`` (a study folder's own path) replaces the recorded one."""
    if not isinstance(values, dict):
        raise StudyError(f"{source}: expected a mapping of study settings at the top level")
    if output_dir is not None:
        values = {**values, "output_dir": str(output_dir)}
    values = _warm_start_source(values, relative_to)
    try:
        spec = build_dataclass(StudySpec, values)
    except ConfigError as exc:
        raise StudyError(str(exc)) from None
    check_output_path(spec.output_dir)
    out = Path(spec.output_dir).expanduser()
    out = (relative_to / out).resolve() if not out.is_absolute() else out.resolve()
    check_not_system(out)
    spec = StudySpec(**{**spec.__dict__, "output_dir": str(out)})
    return with_selection(spec)


def with_selection(spec: StudySpec) -> StudySpec:
    """The spec with its selection resolved and validated. Unset, the selection follows ``metric``
    when that is set (specs written before ``selection`` existed), else the space: a grid reports
    the last epoch, a search its best validation epoch. The trials get it as ``data.selection``;
    ``metric`` becomes the selection's."""
    selection = spec.selection
    if selection is None:
        grid = _is_grid(spec)
        by_metric = {metric: name for name, metric in SELECTION_METRICS.items()}.get(spec.metric or "")
        selection = by_metric if by_metric and (grid or by_metric == "best_val") else "last" if grid else "best_val"
    base = spec.base
    data = base.get("data", {})
    if isinstance(data, dict) and "selection" not in data:
        base = {**base, "data": {**data, "selection": selection}}
    metric = spec.metric or SELECTION_METRICS.get(selection)
    fixed = spec.held_fixed
    if fixed is None:
        try:
            fixed = held_fixed(config_from_dict(base))
        except InputError:
            fixed = None  # validate names the base's error
    spec = StudySpec(**{**spec.__dict__, "selection": selection, "metric": metric, "base": base, "held_fixed": fixed})
    validate(spec)
    return spec


def _is_grid(spec: StudySpec) -> bool:
    """Whether the spec's space is a grid; False for a space ``validate`` will reject."""
    from search_spaces.declarative import SpaceError

    try:
        return spec.space.grid is not None
    except (KeyError, SpaceError):
        return False


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file's content; a missing, binary, oversized or malformed file, a duplicate key, an
    anchor or alias, or a tag is one line naming it (``finetune.config.strict_yaml``)."""
    if not path.is_file():
        raise StudyError(f"{what}: no file at {path}; pass a study YAML such as studies/demo.yaml")
    if path.stat().st_size > strict_yaml.MAX_BYTES:
        raise StudyError(
            f"{path}: {path.stat().st_size:,} bytes, over the {strict_yaml.MAX_BYTES:,} a spec may have; "
            "a study spec is a few kilobytes (is this the right file?)"
        )
    try:
        return strict_yaml.load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise StudyError(f"{path}: not a text (UTF-8) file; pass a YAML file") from None
    except strict_yaml.YamlRefused as exc:
        raise StudyError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


SPEC_FILE = "spec.yaml"  # the spec a study folder keeps, as launched


def load_spec(path: str | Path, relative_to: Path | None = None, output_dir: Path | None = None) -> StudySpec:
    """Read and validate a study YAML. ``output_dir`` is resolved against ``relative_to`` (cwd),
    unless given (a study folder's spec.yaml is loaded with the folder's own path)."""
    path = Path(path)
    return spec_from_mapping(read_yaml(path, "SPEC"), str(path), relative_to or Path.cwd(), output_dir)


def spec_to_yaml(spec: StudySpec) -> str:
    from dataclasses import asdict

    return yaml.safe_dump(asdict(spec), sort_keys=False)


def load_folder_spec(folder: Path) -> StudySpec:
    """The spec a study folder keeps (``spec.yaml``), its ``output_dir`` being the folder itself
    (wherever it was launched: a study folder can be moved or copied)."""
    return load_spec(folder / SPEC_FILE, output_dir=folder)


def saved_settings(folder: Path) -> dict[str, Any]:
    """The settings a study folder keeps in ``spec.yaml``, as its launch resolved, checked and wrote
    them, read without checking them again: what ``study status`` needs (the name, ``num_samples``,
    the metric), with none of the fine-tuning core's imports that the checks take."""
    values = read_yaml(folder / SPEC_FILE, "STUDY_DIR")
    if not isinstance(values, dict):
        raise StudyError(f"{folder / SPEC_FILE}: expected a mapping of study settings at the top level")
    return values
