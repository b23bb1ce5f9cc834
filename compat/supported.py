"""The supported versions of the dependencies that change under the project, in one place.

Each dependency's oldest and newest tested release, why the floor and the ceiling are where they
are, the pairings a version needs of another package, and the sets the cross-version matrix builds
(``tools/compat_matrix.py``, ``make compat``). ``pyproject.toml`` admits, for each, the minor
versions from ``min`` through ``max`` (``tests/test_compat.py`` holds the two to each other), and
every ``study`` command refuses an installed version outside them (:func:`compat.versions.check`).

Plain data, no imports of the packages it names: the CLI reads it before anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Supported:
    """``dependency`` (its distribution name) from ``min`` through ``max``, both tested releases;
    ``floor`` says what sets the floor (an API the project needs), ``ceiling`` what sets the
    ceiling; ``spec`` is how pip is asked for it (extras included)."""

    dependency: str
    min: str
    max: str
    floor: str
    ceiling: str
    spec: str = ""
    by_major: bool = False  # releases are majors (pyarrow 15.0, 16.0, ...): the range counts majors

    @property
    def requirement(self) -> str:
        """The name pip is given: ``ray[tune]`` for Ray."""
        return self.spec or self.dependency

    @property
    def range(self) -> str:
        """The admitted range, by minor version: ``>=2.44,<2.61``."""
        low, high = _minor(self.min), _minor(self.max)
        if self.by_major:
            return f">={low[0]},<{high[0] + 1}"
        return f">={low[0]}.{low[1]},<{high[0]}.{high[1] + 1}"


@dataclass(frozen=True)
class Pairing:
    """Where ``dependency`` is older than ``before``, ``other`` must be older than ``other_before``
    (a release of ``dependency`` that breaks on a newer ``other``); ``why`` names the API."""

    dependency: str
    before: str
    other: str
    other_before: str
    why: str


@dataclass(frozen=True)
class MatrixSet:
    """One combination the matrix builds: each dependency at its ``min`` or ``max`` (``pick``), with
    ``flip`` naming those taken at the other end, ``between`` a release inside the range for one
    whose ends cannot meet another's, and ``extra`` requirements such a set needs."""

    name: str
    pick: str  # "min" or "max"
    flip: tuple[str, ...] = ()
    between: tuple[tuple[str, str], ...] = field(default=())  # (dependency, release) inside its range
    extra: tuple[str, ...] = field(default=())
    why: str = ""

    def pins(self) -> dict[str, str]:
        """Each supported dependency -> the release this set takes."""
        other = "min" if self.pick == "max" else "max"
        chosen = {name: getattr(s, other if name in self.flip else self.pick) for name, s in SUPPORTED.items()}
        return chosen | dict(self.between)


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


SUPPORTED: dict[str, Supported] = {
    s.dependency: s
    for s in (
        Supported(
            "torch",
            min="2.4.1",
            max="2.14.1",
            floor="the oldest release the matrix ran, the floor the project declared before it existed; what the "
            "core needs (torch.func's functional_call, grad and vmap for EWC's per-image Fisher, "
            "torch.autocast(cache_enabled=False), CUDA graphs) is older",
            ceiling="2.15.0 is served, but no torchvision built for it is (0.29.x is built against 2.14)",
        ),
        Supported(
            "torchvision",
            min="0.19.1",
            max="0.29.1",
            floor="torch 2.4's own torchvision; the weights enums (IMAGENET1K_V1) of torchvision.models need >=0.13",
            ceiling="the torchvision of torch 2.14",
        ),
        Supported(
            "ray",
            spec="ray[tune]",
            min="2.44.1",
            max="2.60.0",
            floor="Tune's API in ray.tune (Checkpoint, RunConfig, FailureConfig, ResultGrid), the Tuner's "
            "restore and TuneController's experiment state as compat reads them; what KubeRay's charts ran "
            "before 2026 (2.46) and AWS's images (2.54-2.58) are above it",
            ceiling="the newest release served here",
        ),
        Supported(
            "optuna",
            min="4.0.0",
            max="5.1.0",
            floor="Study.set_metric_names and add_trials, RDBStorage with engine_kwargs, the 4.x storage "
            "schema; a finished trial's update raising (UpdateFinishedTrialError from 4.3, RuntimeError before)",
            ceiling="the newest release served here",
        ),
        Supported(
            "mlflow",
            min="2.21.3",
            max="3.17.2",
            floor="MlflowClient.log_inputs with Dataset/DatasetInput, log_batch, the model registry; "
            "Databricks Runtime 16.4 LTS ships 2.21. Older than 3.7: no system metrics on the parent run "
            "(the monitor cannot be bound to the study's store; one line says so); 2.x: a server's proxied "
            "artifacts need the global tracking URI for the call (compat.for_mlflow.artifacts_of); older than "
            "3.11: mlflow.pytorch.log_model without serialization_format (pickling was the default then)",
            ceiling="3.18.0 is listed but cannot be installed here: the mlflow-tracing 3.18.0 it pins is not served",
        ),
        Supported(
            "pyarrow",
            min="15.0.2",
            max="25.0.1",
            floor="pyarrow.parquet's typed tables with nullable columns and pyarrow.fs",
            ceiling="MLflow 3.17 caps pyarrow below 26",
            by_major=True,
        ),
        Supported(
            "sqlalchemy",
            min="2.0.36",
            max="2.1.9",
            floor="the 2.0 API (sqlalchemy.text, engine.connect as a context) used by the study lock and the "
            "store checks",
            ceiling="the newest release served here",
        ),
    )
}

PAIRINGS: tuple[Pairing, ...] = (
    Pairing(
        "mlflow",
        before="3.9",
        other="sqlalchemy",
        other_before="2.1",
        why="MLflow before 3.9 imports a connection-pool class that SQLAlchemy 2.1 removed",
    ),
)

SETS: tuple[MatrixSet, ...] = (
    MatrixSet("newest", pick="max", why="every dependency at its newest tested release"),
    MatrixSet("oldest", pick="min", why="every dependency at its floor"),
    MatrixSet(
        "new-ray-old-record",
        pick="min",
        flip=("ray", "torch", "torchvision"),
        # Ray 2.60's tune extra needs pyarrow >= 17 and MLflow 2.21 needs pyarrow < 20
        between=(("pyarrow", "19.0.1"),),
        why="a new Ray cluster image (its own torch) with an old managed MLflow and Optuna",
    ),
    MatrixSet(
        "old-ray-new-rest",
        pick="max",
        flip=("ray",),
        why="a cluster pinned to an older Ray, everything else current",
    ),
)
