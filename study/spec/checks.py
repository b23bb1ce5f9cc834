"""Every check of a spec that can be made before Ray starts, each failing with one line naming the field
(:class:`study.spec.StudyError`); the output folder's and the inputs' checks among them."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from finetune import ConfigError, InputError, ModelConfig, config_from_dict, resolve_config
from finetune.config import SELECTION_METRICS
from study.spec.errors import StudyError
from study.spec.model import HELD_FIXED, SCHEDULERS, BudgetSpec, StudySpec, held_fixed
from study.spec.uris import OPTUNA_SCHEMES, TRACKING_SCHEMES, check_uri
from trainables.storage import StorageError
from trainables.storage import check_uri as check_storage_uri


def _fail(field_name: str, message: str) -> StudyError:
    return StudyError(f"{field_name}: {message}")


def validate(spec: StudySpec) -> None:
    """Every check that can be made before Ray starts; raises StudyError naming the field."""
    if not spec.name or not spec.name.replace("-", "").replace("_", "").isalnum():
        raise _fail("name", f"{spec.name[:80]!r} must be letters, digits, '-' or '_'")
    if len(spec.name) > NAME_MAX_CHARS:
        raise _fail(
            "name", f"has {len(spec.name)} characters; keep it to {NAME_MAX_CHARS} (it names the MLflow experiment)"
        )
    _check_space(spec)
    _check_selection(spec)
    _check_scheduling(spec)
    check_uri(spec.tracking_uri, "tracking_uri", TRACKING_SCHEMES, "an MLflow tracking URI")
    check_uri(spec.optuna_storage, "optuna_storage", OPTUNA_SCHEMES, "an Optuna storage URL")
    _check_storage(spec)
    _check_base(spec)
    _check_held_fixed(spec)
    _check_confirm(spec)
    check_budget(spec.budget, "budget")
    _check_warm_start(spec)
    _check_proposals(spec)


def _check_storage(spec: StudySpec) -> None:
    if spec.storage is None:
        return
    if not isinstance(spec.storage, str):
        raise _fail("storage", f"must be an s3://BUCKET/PREFIX URI or null, got {spec.storage!r}")
    try:
        check_storage_uri(spec.storage, "storage")
    except StorageError as exc:
        raise StudyError(str(exc)) from None


def check_budget(budget: BudgetSpec, where: str) -> None:
    """Each limit of a budget is a positive number of hours, or null."""
    for name in ("gpu_hours", "wall_hours"):
        value = getattr(budget, name)
        if value is not None and (isinstance(value, bool) or not math.isfinite(value) or value <= 0):
            raise _fail(f"{where}.{name}", f"must be hours > 0 (e.g. 2.5) or null (no limit), got {value!r}")


def _check_warm_start(spec: StudySpec) -> None:
    if spec.warm_start.source is None:
        return
    if not spec.warm_start.source.strip():
        raise _fail("warm_start.from", "is empty; name an earlier study's folder or an MLflow experiment")
    if spec.space.grid is not None:
        raise _fail(
            "warm_start",
            f"{spec.space.name!r} is a grid, which samples nothing: a warm start seeds a search's sampler "
            "(remove warm_start)",
        )


def _check_confirm(spec: StudySpec) -> None:
    if spec.confirm.top < 0:
        raise _fail("confirm.top", f"must be >= 0 (0: no confirmation), got {spec.confirm.top}")
    if not spec.confirm.top:
        return
    if spec.space.grid is not None:
        raise _fail(
            "confirm",
            f"{spec.space.name!r} is a grid, which selects nothing: its cells are already the numbers; "
            "confirm re-runs a search's selected configurations (set confirm.top: 0)",
        )
    if spec.confirm.seeds < 3:
        raise _fail(
            "confirm.seeds",
            f"must be >= 3 (a 95% interval needs 3 values), got {spec.confirm.seeds}; the example is 5",
        )
    if spec.confirm.top > spec.num_samples:
        raise _fail("confirm.top", f"{spec.confirm.top} is more than the {spec.num_samples} trials of the search")


def _check_held_fixed(spec: StudySpec) -> None:
    from search_spaces import sample_params

    if spec.held_fixed not in HELD_FIXED:
        raise _fail("held_fixed", f"must be steps or epochs, got {spec.held_fixed!r}")
    actual = held_fixed(spec.base_config)
    if actual != spec.held_fixed:
        fix = "set base.optim.steps_per_epoch" if spec.held_fixed == "steps" else "set base.optim.steps_per_epoch: null"
        raise _fail("held_fixed", f"{spec.held_fixed}, but the base config holds {actual} fixed; {fix}")
    for seed in range(8):
        params = sample_params(spec.space, seed=seed)
        if "optim.steps_per_epoch" in params and (params["optim.steps_per_epoch"] is None) != (actual == "epochs"):
            raise _fail(
                "search_space",
                f"proposes optim.steps_per_epoch {params['optim.steps_per_epoch']}: held_fixed is {actual}",
            )


def _check_space(spec: StudySpec) -> None:
    """The search space exists (or parses), and a grid has at least ``num_samples`` points."""
    from search_spaces import SPACES
    from search_spaces.declarative import SpaceError, parse_space

    if isinstance(spec.search_space, dict):
        try:
            parse_space(spec.search_space)
        except SpaceError as exc:
            raise StudyError(str(exc)) from None
    elif spec.search_space not in SPACES:
        names = ", ".join(sorted(SPACES))
        raise _fail("search_space", f"unknown space {spec.search_space!r}; choose one of {names} or declare one")
    if spec.num_samples < 1:
        raise _fail("num_samples", f"must be >= 1, got {spec.num_samples}")
    grid = spec.space.grid_size
    if grid is not None and spec.num_samples > grid:
        raise _fail("num_samples", f"{spec.search_space!r} is a grid of {grid} points; set num_samples <= {grid}")


def _check_selection(spec: StudySpec) -> None:
    """What a trial reports fits the space: test accuracy only from a grid, and the metric follows."""
    if spec.selection not in SELECTION_METRICS:
        raise _fail("selection", f"must be one of {', '.join(SELECTION_METRICS)}, got {spec.selection!r}")
    if spec.selection == "last" and spec.space.grid is None:
        raise _fail(
            "selection",
            f"last reports test accuracy, and {spec.space.name!r} is a search that would then choose "
            "hyperparameters on the test set; use selection: best_val (or a grid space)",
        )
    if spec.metric != SELECTION_METRICS[spec.selection]:
        raise _fail(
            "metric",
            f"selection {spec.selection} reports {SELECTION_METRICS[spec.selection]}, got {spec.metric!r}; "
            "leave metric out",
        )


def _check_scheduling(spec: StudySpec) -> None:
    """Concurrency, retries, the scheduler and what each trial reserves."""
    if spec.max_concurrent < 1:
        raise _fail("max_concurrent", f"must be >= 1, got {spec.max_concurrent}")
    if spec.max_failures < 0:
        raise _fail(
            "max_failures", f"must be >= 0 (retries of a crashed trial from its checkpoint), got {spec.max_failures}"
        )
    if spec.scheduler.name not in SCHEDULERS:
        raise _fail(
            "scheduler.name", f"unknown scheduler {spec.scheduler.name!r}; choose one of {', '.join(SCHEDULERS)}"
        )
    if spec.space.grid is not None and spec.scheduler.name != "fifo":
        raise _fail(
            "scheduler",
            f"{spec.scheduler.name} stops trials early, and a grid ({spec.space.name!r}) is a table of fixed "
            "settings that needs every trial to its end; set scheduler: {name: fifo}",
        )
    if spec.scheduler.grace_period < 1 or spec.scheduler.reduction_factor < 2:
        raise _fail("scheduler", "grace_period must be >= 1 and reduction_factor >= 2")
    if spec.resources.cpu <= 0:
        raise _fail("resources.cpu", f"must be > 0 (CPUs each trial reserves), got {spec.resources.cpu:g}")
    if spec.resources.gpu < 0:
        raise _fail("resources.gpu", f"must be >= 0 (GPUs or a fraction of one per trial), got {spec.resources.gpu:g}")
    if spec.ray_num_cpus is not None and spec.ray_num_cpus < 1:
        raise _fail("ray_num_cpus", f"must be >= 1 (CPUs of the local Ray cluster) or null, got {spec.ray_num_cpus}")


def _check_base(spec: StudySpec) -> None:
    """The base config resolves, names a known regulariser, dataset and weights, and its dataset's
    folder and list files are there (no image is decoded here)."""
    from finetune.backbones import check_weights_name
    from finetune.data import DATASETS, check_dataset_name
    from finetune.regularizers import check_regularizer_name

    try:
        base = config_from_dict(spec.base)
        check_regularizer_name(base.regularizer.name)
        check_dataset_name(base.data.dataset)
        check_weights_name(base.model)
    except ConfigError as exc:
        raise StudyError(f"base.{exc}") from None
    if base.data.selection != spec.selection:
        raise _fail(
            "base.data.selection",
            f"{base.data.selection} differs from the spec's selection ({spec.selection}); "
            "set selection at the top of the spec only",
        )
    if base.device.startswith("cuda") and spec.resources.gpu <= 0 and not spec.cluster_address:
        raise _fail("resources.gpu", f"base.device is {base.device!r} but trials reserve no GPU; set resources.gpu")
    try:
        DATASETS[base.data.dataset](base.data)
    except InputError as exc:
        raise StudyError(f"base.{exc}") from None


def _check_proposals(spec: StudySpec) -> None:
    """Every parameter the space suggests is a real config field with a valid value (8 draws)."""
    from finetune.regularizers import check_regularizer_name
    from search_spaces import sample_params

    for seed in range(8):
        params = sample_params(spec.space, seed=seed)
        try:
            resolved = resolve_config(spec.base, params)
            check_regularizer_name(resolved.regularizer.name)
        except InputError as exc:
            raise StudyError(
                f"search_space: {spec.space.name!r} proposes {params}, which the base config rejects ({exc})"
            ) from None


def check_inputs(spec: StudySpec) -> None:
    """What only a launch or a resume needs, reading the data's lists and the weights file: the
    sampled training set fills a batch (also as the space proposes it), a weights file fits the
    backbone. Not run by read-only commands (``status`` of a copied study needs neither)."""
    from finetune.data import check_batch_fits, split_sizes
    from search_spaces import sample_params

    base = spec.base_config
    try:
        check_batch_fits(base.data, split_sizes(base.data, base.seed))
        check_weights_file(base.model, base.data.image_size)
    except InputError as exc:
        raise StudyError(f"base.{exc}") from None
    for seed in range(8):
        params = sample_params(spec.space, seed=seed)
        resolved = resolve_config(spec.base, params)
        try:
            check_batch_fits(resolved.data, split_sizes(resolved.data, resolved.seed))
        except InputError as exc:
            raise StudyError(
                f"search_space: {spec.space.name!r} proposes {params}, which the base config rejects ({exc})"
            ) from None


def check_weights_file(model: ModelConfig, image_size: int = 224) -> None:
    """A weights file must be a state dict that fits the backbone (a name is checked by torchvision
    when the trial loads it, downloading or verifying the cached copy)."""
    from finetune.backbones import build_classifier

    if model.weights is not None and Path(model.weights).is_file():
        build_classifier(model, num_classes=2, image_size=image_size)


NAME_MAX_CHARS = 100

SYSTEM_DIRS = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys",
    "/usr", "/var/lib", "/var/log", "/var/cache", "/var/spool", "/var/run", "/snap",
)  # fmt: skip


def check_output_path(text: str) -> None:
    """``output_dir`` as written: no NUL byte, no ``..`` (where it ends up would depend on links and
    the working directory), no name longer than a file system allows."""
    if "\0" in text:
        raise _fail("output_dir", "contains a NUL byte; write a plain folder path")
    if ".." in Path(text).parts:
        raise _fail(
            "output_dir", f"{text[:200]!r} contains '..'; write the folder's path without it (absolute or below here)"
        )
    long = [part for part in Path(text).parts if len(part.encode()) > 255]
    if long:
        raise _fail("output_dir", f"a name of {len(long[0].encode())} bytes is longer than a file system allows (255)")


def check_not_system(out: Path) -> None:
    """A resolved study folder is not the file system's root nor inside a system folder."""
    if out == Path(out.anchor) or any(out == Path(d) or Path(d) in out.parents for d in SYSTEM_DIRS):
        raise _fail("output_dir", f"{out} is a system folder; choose a folder of your own (e.g. runs/<name>)")


def escaping_links(folder: Path) -> list[tuple[Path, Path]]:
    """(link, target) of every symbolic link inside ``folder`` that leads outside it."""
    root = folder.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                target = path.resolve()
                if target != root and root not in target.parents:
                    found.append((path, target))
    return found


def check_links(folder: Path, field_name: str) -> None:
    """Nothing a study writes into its folder can land outside it through a symbolic link."""
    links = escaping_links(folder) if folder.is_dir() else []
    if links:
        link, target = links[0]
        raise _fail(
            field_name,
            f"{link} is a symbolic link to {target}, outside the study folder; remove it (a study writes only "
            "inside its own folder)",
        )


def check_output_dir(spec: StudySpec) -> None:
    """The study folder can be created and written, checked by creating and removing a probe folder
    beside it (nothing is left behind); no link inside it leads outside."""
    out = spec.study_dir
    check_links(out, "output_dir")
    if out.exists() and not out.is_dir():
        raise _fail("output_dir", f"{out} is a file; choose a folder path")
    parent = out
    while not parent.exists():
        parent = parent.parent
    try:
        probe = Path(tempfile.mkdtemp(prefix=".bss-study-probe-", dir=parent))
        probe.rmdir()
    except OSError as exc:
        raise _fail("output_dir", f"cannot create {out} ({exc.strerror or exc}); choose a writable folder") from None


def check_local_resources(spec: StudySpec, cpus: int, gpus: int) -> None:
    """A local Ray cluster has this machine's CPUs (or ray_num_cpus) and GPUs: a trial that asks for
    more would wait PENDING forever. Not checked when joining a cluster (ray_address, RAY_ADDRESS)."""
    if spec.cluster_address:
        return
    have_cpus = spec.ray_num_cpus or cpus
    if spec.resources.cpu > have_cpus:
        raise _fail(
            "resources.cpu",
            f"each trial asks for {spec.resources.cpu:g} CPUs but the local Ray cluster has {have_cpus}; "
            "lower resources.cpu (or raise ray_num_cpus), or join a cluster with ray_address",
        )
    if spec.resources.gpu > gpus:
        raise _fail(
            "resources.gpu",
            f"each trial asks for {spec.resources.gpu:g} GPUs but this machine has {gpus}; "
            "lower resources.gpu or join a GPU cluster with ray_address",
        )
