"""The typed, frozen configuration tree of one fine-tuning run.

There is exactly one adapter from the flat, dotted dictionaries that Tune and Optuna
produce (``{"bss.k": 2}``) to this tree: :func:`resolve_config`. Every run's resolved
config round-trips through YAML (:func:`config_to_yaml` / :func:`config_from_yaml`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from finetune.errors import ConfigError


def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}: {message}")


# how a run's reported result is selected -> the metric that carries it (Tune, Optuna, best.yaml)
SELECTION_METRICS: dict[str, str] = {
    "best_val": "best_val_acc",  # searches: the best validation epoch; its weights are tested at the end
    "last": "test_acc",  # fixed-setting grids (the paper's tables): the last epoch's test accuracy
}


@dataclass(frozen=True)
class DataConfig:
    """Which images, how many of them, at what size, and how they are augmented.

    Images are decoded once and resized to ``resize_size`` squares (default: ``image_size``),
    kept as uint8; ``train_transform`` (``translate_flip``, ``random_resized_crop``, ``none``) and
    ``eval_transform`` (``center``: centre crop; ``ten_crop``: 4 corners + centre, each also
    flipped, logits summed) produce ``image_size`` inputs from them. Datasets without a
    validation split get one carved per class from the sampled training subset
    (``val_fraction``). ``selection`` says which epoch a run reports: ``best_val`` (the epoch of
    best validation accuracy; its weights are tested once, at the end) or ``last`` (no validation
    split at all: the run trains on exactly ceil(rate x n_c) images a class, nested across
    rates, and reports the last epoch's test accuracy, as the paper's tables do; the test split
    is evaluated after every epoch as a learning curve (centre view), never to choose one). File datasets are
    decoded once per split and size into a shared, memory-mapped cache (``decode_cache``,
    ``cache_dir``; default ``~/.cache/bss-study/images``) that every trial reads in place.
    """

    dataset: str = "embedded-fashion-mnist"
    root: str | None = None
    sampling_rate: float = 0.15
    image_size: int = 64
    resize_size: int | None = None
    batch_size: int = 32
    eval_batch_size: int = 128
    train_transform: str = "translate_flip"
    crop_scale_min: float = 0.08
    eval_transform: str = "center"
    val_fraction: float = 0.1
    skip_bad_images: bool = False
    decode_cache: bool = True
    cache_dir: str | None = None
    selection: str = "best_val"

    def __post_init__(self) -> None:
        _check(
            self.selection in SELECTION_METRICS,
            "data.selection",
            f"must be one of {', '.join(SELECTION_METRICS)}, got {self.selection!r}",
        )
        _check(
            self.resize_size is None or self.resize_size >= self.image_size,
            "data.resize_size",
            f"must be >= data.image_size ({self.image_size}) or null, got {self.resize_size}",
        )
        _check(0 < self.crop_scale_min <= 1, "data.crop_scale_min", f"must be in (0, 1], got {self.crop_scale_min}")
        _check(0 <= self.val_fraction < 1, "data.val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        _check(
            0.0 < self.sampling_rate <= 1.0,
            "data.sampling_rate",
            f"must be in (0, 1], got {self.sampling_rate}; use e.g. 0.15 for 15% per class",
        )
        _check(self.image_size >= 16, "data.image_size", f"must be >= 16 pixels, got {self.image_size}")
        _check(self.batch_size >= 2, "data.batch_size", f"must be >= 2, got {self.batch_size}")
        _check(self.eval_batch_size >= 1, "data.eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")


@dataclass(frozen=True)
class ModelConfig:
    """Backbone architecture, where its pretrained weights come from, and TSVD (Eq. 10).

    ``weights`` is a torchvision weights name (``IMAGENET1K_V1``), a path to a state-dict
    file, or ``None`` for random initialisation (tests only: no transfer happens then).
    ``tsvd_r`` > 0 drops the r smallest spectral components of the batch feature matrix
    before the classifier (the paper's TSVD analysis, Fig. 3a). ``mlp_hidden``: the hidden layer
    widths of the ``mlp`` backbone (the pixels of ``data.image_size`` squared images in).
    """

    backbone: str = "resnet50"
    weights: str | None = "IMAGENET1K_V1"
    tsvd_r: int = 0
    mlp_hidden: tuple[int, ...] = (400, 400)

    def __post_init__(self) -> None:
        _check(self.tsvd_r >= 0, "model.tsvd_r", f"must be >= 0 (0 = off), got {self.tsvd_r}")
        _check(
            len(self.mlp_hidden) >= 1 and all(units >= 1 for units in self.mlp_hidden),
            "model.mlp_hidden",
            f"must list one or more layer widths >= 1, got {list(self.mlp_hidden)}",
        )


# where each default coefficient comes from: (alpha, beta) of the reference implementation
REFERENCE_COEFFICIENTS: dict[str, dict[str, float]] = {
    "l2": {"alpha": 5e-4, "beta": 0.0},  # thuml/Batch-Spectral-Shrinkage: SGD weight_decay=5e-4 on all weights
    "l2sp": {"alpha": 0.01, "beta": 0.01},  # tllib's L2-SP defaults
    "delta": {"alpha": 0.01, "beta": 0.01},  # tllib's DELTA defaults (feature-map term summed over the batch)
}


@dataclass(frozen=True)
class RegularizerConfig:
    """The base regulariser (``l2``, ``l2sp`` or ``delta``) and its coefficients.

    ``alpha`` weighs the squared norm of the weights (all weights for ``l2``; the new head
    for ``l2sp`` and ``delta``); ``beta`` weighs the distance of the backbone to its
    pretrained weights (``l2sp``) or of its feature maps to the pretrained ones (``delta``).
    Left out (null), each is the reference's value for the regulariser, on its scale
    (``REFERENCE_COEFFICIENTS``): L2 alpha 5e-4 (the official BSS code's SGD weight decay);
    L2-SP and DELTA alpha = beta = 0.01 (tllib; DELTA's beta on tllib's sum over the batch,
    ``delta.batch_reduction: sum``). The resolved config records the values used.
    """

    name: str = "l2"
    alpha: float | None = None
    beta: float | None = None

    def __post_init__(self) -> None:
        reference = REFERENCE_COEFFICIENTS.get(self.name, {})
        for key in ("alpha", "beta"):
            if getattr(self, key) is None:
                object.__setattr__(self, key, reference.get(key, 0.0))
        _check(self.coefficient("alpha") >= 0, "regularizer.alpha", f"must be >= 0, got {self.alpha}")
        _check(self.coefficient("beta") >= 0, "regularizer.beta", f"must be >= 0, got {self.beta}")

    def coefficient(self, name: str) -> float:
        """``alpha`` or ``beta`` as resolved (never None after construction)."""
        return float(getattr(self, name))


DELTA_ATTENTION_MODES = ("supervised", "uniform")


@dataclass(frozen=True)
class DeltaConfig:
    """DELTA's channel attention (used when ``regularizer.name`` is ``delta``).

    ``supervised``: train a head on the frozen pretrained backbone (``attention_epochs``),
    then measure how much zeroing each channel of each hooked layer raises the loss over
    ``attention_batches`` non-augmented batches; per layer, softmax of the z-scored
    increases / 5 (``vectorised``: many channels per forward pass, up to ``ablation_rows``
    images; else one channel at a time, the reference method). ``uniform``: equal weights
    (a plain feature-map distance). The result is cached in ``cache_dir`` (default
    ``~/.cache/bss-study/delta``), keyed by everything it depends on, and shared by all trials.
    ``batch_reduction``: the feature-map term summed over the batch (``sum``, tllib's scale:
    beta = 0.01 is tllib's default) or averaged (``mean``: its scale does not depend on the batch
    size b; the same penalty as ``sum`` needs beta x b, e.g. 0.48 at b = 48).
    """

    attention: str = "supervised"
    attention_epochs: int = 10
    attention_batches: int = 10
    attention_batch_size: int = 32
    attention_lr: float = 0.01
    cache_dir: str | None = None
    vectorised: bool = True
    ablation_rows: int = 1024
    batch_reduction: str = "sum"

    def __post_init__(self) -> None:
        _check(
            self.attention in DELTA_ATTENTION_MODES,
            "delta.attention",
            f"must be one of {', '.join(DELTA_ATTENTION_MODES)}, got {self.attention!r}",
        )
        _check(self.attention_epochs >= 0, "delta.attention_epochs", "must be >= 0")
        _check(self.attention_batches >= 1, "delta.attention_batches", "must be >= 1")
        _check(self.attention_batch_size >= 1, "delta.attention_batch_size", "must be >= 1")
        _check(self.attention_lr > 0, "delta.attention_lr", "must be > 0")
        _check(self.ablation_rows >= 1, "delta.ablation_rows", "must be >= 1")
        reductions = "sum (tllib's scale) or mean (divided by the batch size)"
        _check(
            self.batch_reduction in ("sum", "mean"),
            "delta.batch_reduction",
            f"must be {reductions}, got {self.batch_reduction!r}",
        )


BSS_METHOD_NAMES = ("svdvals", "gram_eigvalsh", "eigvec")  # implementations in finetune/regularizers/bss.py


@dataclass(frozen=True)
class BSSConfig:
    """Batch Spectral Shrinkage (Eq. 8): eta * sum of the k smallest squared singular values.

    ``k: 0`` shrinks no singular value, which is BSS off: it resolves to ``enabled: false`` (so a
    grid over k can hold the baseline, e.g. k in {0, 1, 2, 4, 8} for Fig. 3(d) with L2 at k = 0);
    so does ``eta: 0`` (a grid over eta, e.g. {0, 0.001, 0.01, 0.1}).
    """

    enabled: bool = False
    k: int = 1
    eta: float = 1e-3
    method: str = "svdvals"

    def __post_init__(self) -> None:
        if self.k == 0 and not isinstance(self.k, bool):
            object.__setattr__(self, "enabled", False)
            object.__setattr__(self, "k", 1)
        if self.eta == 0 and not isinstance(self.eta, bool):
            object.__setattr__(self, "enabled", False)
            object.__setattr__(self, "eta", 1e-3)
        names = ", ".join(BSS_METHOD_NAMES)
        _check(self.method in BSS_METHOD_NAMES, "bss.method", f"must be one of {names}, got {self.method!r}")
        _check(
            isinstance(self.k, int) and self.k >= 1, "bss.k", f"must be an integer >= 1 (0: BSS off), got {self.k!r}"
        )
        _check(
            math.isfinite(self.eta) and self.eta > 0,
            "bss.eta",
            f"must be > 0 (0: BSS off), got {self.eta}; the paper uses 0.001",
        )


FISHER_KINDS = ("expected", "empirical")


@dataclass(frozen=True)
class EWCConfig:
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017), used in a task sequence (``tasks``).

    After each task but the last, the diagonal Fisher information F of the task is computed at the
    task's final weights theta* over ``fisher_samples`` of its (non-augmented) training images; while
    the later tasks train, the penalty is (lam / 2) sum_tasks sum_i F_i (theta_i - theta*_i)^2 over
    every trainable weight. ``fisher``: ``expected`` (the Fisher itself: squared per-image gradients
    of log p(y|x) averaged over y ~ the model's prediction, computed exactly over all classes) or
    ``empirical`` (y = the image's label). ``lam: 0`` consolidates nothing, which is EWC off: it
    resolves to ``enabled: false`` (so a grid over lam holds plain fine-tuning, as k = 0 for BSS).
    """

    enabled: bool = False
    lam: float = 100.0
    fisher: str = "expected"
    fisher_samples: int = 500
    fisher_batch_size: int = 100

    def __post_init__(self) -> None:
        _check(math.isfinite(self.lam) and self.lam >= 0, "ewc.lam", f"must be >= 0 (0: EWC off), got {self.lam}")
        if self.lam == 0:
            object.__setattr__(self, "enabled", False)
            object.__setattr__(self, "lam", 100.0)
        kinds = ", ".join(FISHER_KINDS)
        _check(self.fisher in FISHER_KINDS, "ewc.fisher", f"must be one of {kinds}, got {self.fisher!r}")
        _check(self.fisher_samples >= 1, "ewc.fisher_samples", f"must be >= 1, got {self.fisher_samples}")
        _check(self.fisher_batch_size >= 1, "ewc.fisher_batch_size", f"must be >= 1, got {self.fisher_batch_size}")


TASK_KIND_NAMES = ("permuted",)  # implementations in finetune/tasks.py


@dataclass(frozen=True)
class TasksConfig:
    """A sequence of tasks (incremental learning, the paper's Section 5.3) or, with ``count: 1``,
    ordinary fine-tuning on the dataset itself.

    With ``count`` >= 2, task t is the dataset's images with pixel order ``kind`` (``permuted``: a
    fixed permutation of the pixels, drawn from the run's seed and t, the same for every split; as
    permuted MNIST) and the same labels; the run trains on task 1 for ``optim.epochs`` epochs, then
    on task 2, ..., reporting after every epoch the test accuracy on each task seen so far
    (``task_acc_<t>``) and their mean (``test_acc``). ``permute_first: false`` keeps task 1 in the
    images' own pixel order.
    """

    count: int = 1
    kind: str = "permuted"
    permute_first: bool = True

    def __post_init__(self) -> None:
        _check(self.count >= 1, "tasks.count", f"must be >= 1 (1: no task sequence), got {self.count}")
        kinds = ", ".join(TASK_KIND_NAMES)
        _check(self.kind in TASK_KIND_NAMES, "tasks.kind", f"must be one of {kinds}, got {self.kind!r}")


@dataclass(frozen=True)
class OptimConfig:
    """SGD with the new head at ``lr`` and the pretrained backbone at ``lr * backbone_lr_ratio``."""

    lr: float = 0.01
    backbone_lr_ratio: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    epochs: int = 5
    steps_per_epoch: int | None = None
    lr_decay_epochs: tuple[int, ...] = ()
    lr_decay_factor: float = 0.1

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")
        _check(self.backbone_lr_ratio >= 0, "optim.backbone_lr_ratio", f"must be >= 0, got {self.backbone_lr_ratio}")
        _check(0 <= self.momentum < 1, "optim.momentum", f"must be in [0, 1), got {self.momentum}")
        _check(
            self.weight_decay == 0,
            "optim.weight_decay",
            f"must be 0, got {self.weight_decay}: the regulariser applies the penalty (exactly one mechanism "
            "per penalty); for the official code's weight decay 5e-4 set regularizer.alpha: 5.0e-4 with "
            "regularizer.name: l2",
        )
        _check(self.epochs >= 1, "optim.epochs", f"must be >= 1, got {self.epochs}")
        _check(
            self.steps_per_epoch is None or self.steps_per_epoch >= 1,
            "optim.steps_per_epoch",
            f"must be >= 1 or null (one pass over the data), got {self.steps_per_epoch}",
        )
        _check(0 < self.lr_decay_factor <= 1, "optim.lr_decay_factor", f"must be in (0, 1], got {self.lr_decay_factor}")
        late = [e for e in self.lr_decay_epochs if not 1 <= e < self.epochs]
        _check(
            not late,
            "optim.lr_decay_epochs",
            f"{list(self.lr_decay_epochs)}: each must be an epoch in 1..{self.epochs - 1} (after it the lr "
            f"decays; optim.epochs is {self.epochs}); drop {late} or raise optim.epochs",
        )


PRECISIONS = ("auto", "fp32", "bf16")
CUDA_GRAPH_MODES = ("auto", "on", "off")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one fine-tuning run needs; saved with every run and runnable again.

    ``precision``: ``bf16`` runs forward passes and losses under bfloat16 autocast (the BSS
    singular values and DELTA's distances are still computed in float32), ``fp32`` does not,
    ``auto`` is bf16 on a GPU that supports it and fp32 on a CPU (bf16 training parity on CPUs
    differs from machine to machine; ``bf16`` opts in). ``channels_last``: the model's memory
    format; ``auto`` is on for a GPU, off on a CPU. ``cuda_graph``: the backbone's training forward
    and backward replayed as CUDA graphs (``finetune.cuda_graph``); ``auto`` graphs it on a GPU
    unless a term needs its hooks (DELTA), ``on`` requires it, ``off`` never.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    bss: BSSConfig = field(default_factory=BSSConfig)
    delta: DeltaConfig = field(default_factory=DeltaConfig)
    ewc: EWCConfig = field(default_factory=EWCConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    protocol: str = "custom"
    precision: str = "auto"
    channels_last: str = "auto"
    cuda_graph: str = "auto"

    def __post_init__(self) -> None:
        _check(
            self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
        )
        _check(
            self.channels_last in ("auto", "on", "off"),
            "channels_last",
            f"must be auto, on or off, got {self.channels_last!r}",
        )
        _check(
            self.cuda_graph in CUDA_GRAPH_MODES,
            "cuda_graph",
            f"must be one of {', '.join(CUDA_GRAPH_MODES)}, got {self.cuda_graph!r}",
        )
        _check(
            not (self.cuda_graph == "on" and self.regularizer.name == "delta"),
            "cuda_graph",
            "on, but DELTA reads the backbone's feature maps through hooks a CUDA graph does not run; "
            "set cuda_graph: auto (eager with DELTA) or off",
        )
        if self.bss.enabled:
            _check(
                self.bss.k < self.data.batch_size,
                "bss.k",
                f"must be smaller than data.batch_size ({self.data.batch_size}), got {self.bss.k}; "
                "lower bss.k or raise data.batch_size",
            )
        _check(self.num_threads is None or self.num_threads >= 1, "num_threads", "must be >= 1 or null")
        _check(
            not (self.regularizer.name == "delta" and self.model.backbone == "mlp"),
            "regularizer.name",
            "delta needs a convolutional backbone's feature maps (model.backbone is mlp); use l2 or l2sp",
        )
        self._check_tasks()
        _check(
            DEVICE_PATTERN.fullmatch(self.device) is not None,
            "device",
            f"{self.device!r} is not a device; use auto, cpu, cuda or cuda:N",
        )

    def _check_tasks(self) -> None:
        sequence = self.tasks.count > 1
        _check(
            sequence or not self.ewc.enabled,
            "ewc.enabled",
            "EWC consolidates earlier tasks: set tasks.count >= 2 (e.g. 2: task A then task B) or ewc.enabled: false",
        )
        if not sequence:
            return
        _check(
            self.data.selection == "last",
            "data.selection",
            f"a task sequence reports its last epoch (no early stopping across tasks), got {self.data.selection!r}; "
            "set selection: last",
        )
        _check(
            self.data.train_transform == "none",
            "data.train_transform",
            f"a task's pixels are permuted, so crops, flips and shifts would mix them; got "
            f"{self.data.train_transform!r}, set data.train_transform: none",
        )
        _check(
            self.data.resize_size in (None, self.data.image_size),
            "data.resize_size",
            "a task permutes the pixels of the whole stored image, which must be the input: set data.resize_size: null",
        )
        _check(
            not self.optim.lr_decay_epochs,
            "optim.lr_decay_epochs",
            "a task sequence keeps one learning rate for every task; set optim.lr_decay_epochs: []",
        )
        _check(
            self.model.tsvd_r == 0,
            "model.tsvd_r",
            "TSVD is not defined for a task sequence (its accuracy is per task); set model.tsvd_r: 0",
        )

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole run: ``optim.epochs`` for each of ``tasks.count`` tasks."""
        return self.optim.epochs * self.tasks.count


T = TypeVar("T")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML/Tune value to the annotated type, or raise a ConfigError naming ``where``."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return build_dataclass(hint, value, where)  # type: ignore[arg-type]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: must not be null")
        inner = [a for a in args if a is not type(None)]
        for i, option in enumerate(inner):
            try:
                return _coerce(value, option, where)
            except ConfigError:
                if i == len(inner) - 1:
                    raise
        raise ConfigError(f"{where}: unexpected value {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner, _) = typing.get_args(hint)
        return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {where}")


def build_dataclass(cls: type[T], values: Mapping[str, Any], prefix: str = "") -> T:
    """Build a (nested) frozen dataclass from a mapping: unknown keys and wrong types raise
    a :class:`ConfigError` naming the dotted field; missing keys take their defaults."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"{where}: unknown key; known keys here are {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in values.items()}
    missing = [
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        where = ", ".join(f"{prefix}.{m}" if prefix else m for m in missing)
        raise ConfigError(f"{where}: required but missing")
    return cls(**kwargs)


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a nested mapping (missing keys take defaults).

    A named ``protocol`` fills in its preset first; every value given here overrides it.
    """
    from finetune.protocols import PROTOCOLS

    name = values.get("protocol", "custom")
    return build_dataclass(TrainConfig, _merge(PROTOCOLS[name].values, values))


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Nested plain-Python dict (lists instead of tuples) suitable for YAML and JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))  # type: ignore[no-any-return,unused-ignore]


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


def applicable_params(config: TrainConfig) -> dict[str, Any]:
    """The run's flat config without the settings that do not act on it: ``bss.*`` (but
    ``bss.enabled``) with BSS off, ``ewc.*`` (but ``ewc.enabled``) with EWC off, ``tasks.*`` and ``ewc.*``
    without a task sequence, ``delta.*`` unless the regulariser is DELTA, ``regularizer.beta``
    for L2. What a tracker records, so a run with BSS off does not show a k or an eta."""
    flat = flatten(config_to_dict(config))
    unused = []
    if not config.bss.enabled:
        unused.append("bss.")
    if config.tasks.count == 1:
        unused += ["tasks.", "ewc."]  # EWC acts only in a task sequence
    elif not config.ewc.enabled:
        unused.append("ewc.")
    if config.regularizer.name != "delta":
        unused.append("delta.")
    if config.regularizer.name == "l2":
        unused.append("regularizer.beta")
    if config.model.backbone != "mlp":
        unused.append("model.mlp_hidden")
    kept = ("bss.enabled", "ewc.enabled") if config.tasks.count > 1 else ("bss.enabled",)
    return {k: v for k, v in flat.items() if k in kept or not k.startswith(tuple(unused))}


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
        values = yaml.safe_load(text)
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
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--config: {path} is not a text (UTF-8) file; pass a config YAML") from None
    return config_from_yaml(text, str(path))
