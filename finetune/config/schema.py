"""The schema: the typed, frozen sections every run has, and the root :class:`TrainConfig`.

The sections of the penalty terms (BSS, DELTA, EWC, ...) are not here: each term's module declares
its own (a :class:`Section`) when it registers (``finetune.config.methods``), and the root holds
them in ``sections``, keyed by the term's name, the top-level key of its settings in YAML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from finetune.errors import ConfigError


def check(ok: bool, field_name: str, message: str) -> None:
    """Raise the one-line :class:`ConfigError` ``<field>: <message>`` unless ``ok``."""
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
        check(
            self.selection in SELECTION_METRICS,
            "data.selection",
            f"must be one of {', '.join(SELECTION_METRICS)}, got {self.selection!r}",
        )
        check(
            self.resize_size is None or self.resize_size >= self.image_size,
            "data.resize_size",
            f"must be >= data.image_size ({self.image_size}) or null, got {self.resize_size}",
        )
        check(0 < self.crop_scale_min <= 1, "data.crop_scale_min", f"must be in (0, 1], got {self.crop_scale_min}")
        check(0 <= self.val_fraction < 1, "data.val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        check(
            0.0 < self.sampling_rate <= 1.0,
            "data.sampling_rate",
            f"must be in (0, 1], got {self.sampling_rate}; use e.g. 0.15 for 15% per class",
        )
        check(self.image_size >= 16, "data.image_size", f"must be >= 16 pixels, got {self.image_size}")
        check(self.batch_size >= 2, "data.batch_size", f"must be >= 2, got {self.batch_size}")
        check(self.eval_batch_size >= 1, "data.eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")


TSVD_EVAL = ("batch", "split")
HEAD_INITS = ("normal", "default")  # the new head's start (finetune.model.Classifier)


@dataclass(frozen=True)
class ModelConfig:
    """Backbone architecture, where its pretrained weights come from, and TSVD (Eq. 10).

    ``weights`` is a torchvision weights name (``IMAGENET1K_V1``), a path to a state-dict
    file, or ``None`` for random initialisation (tests only: no transfer happens then).
    ``tsvd_r`` > 0 drops the r smallest spectral components of the batch feature matrix
    before the classifier (the paper's TSVD analysis, Fig. 3a). At evaluation ``tsvd_eval`` says of
    which matrix: ``batch`` (Eq. 10 as the paper defines it: batches of ``data.batch_size`` images,
    drawn by a fixed permutation of the split seeded by the run's seed, so the accuracy does not
    depend on the loader's order or ``eval_batch_size``; the last batch holds the remainder) or
    ``split`` (the whole evaluated split at once, per view). ``mlp_hidden``: the hidden layer
    widths of the ``mlp`` backbone (the pixels of ``data.image_size`` squared images in).
    ``head_init``: how the new classifier head starts: ``normal`` (weights N(0, 0.01), bias 0: the
    official code's) or ``default`` (``nn.Linear``'s own: Kaiming-uniform weights and a uniform bias
    within 1/sqrt(fan_in): tllib's).
    """

    backbone: str = "resnet50"
    weights: str | None = "IMAGENET1K_V1"
    tsvd_r: int = 0
    tsvd_eval: str = "split"
    mlp_hidden: tuple[int, ...] = (400, 400)
    head_init: str = "normal"

    def __post_init__(self) -> None:
        check(
            self.head_init in HEAD_INITS,
            "model.head_init",
            f"must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}",
        )
        check(self.tsvd_r >= 0, "model.tsvd_r", f"must be >= 0 (0 = off), got {self.tsvd_r}")
        check(
            self.tsvd_eval in TSVD_EVAL,
            "model.tsvd_eval",
            f"must be batch (Eq. 10: per batch of data.batch_size) or split (the whole split), got {self.tsvd_eval!r}",
        )
        check(
            len(self.mlp_hidden) >= 1 and all(units >= 1 for units in self.mlp_hidden),
            "model.mlp_hidden",
            f"must list one or more layer widths >= 1, got {list(self.mlp_hidden)}",
        )


class Section:
    """Base of a penalty term's own config section: a frozen dataclass that subclasses this, with
    the reference's defaults and units in its docstring. ``key`` (the term's name, set when the
    term registers) is its top-level key in a config; ``Cls.of(config)`` is its typed value."""

    key: ClassVar[str] = ""

    @classmethod
    def of(cls, config: TrainConfig) -> Self:
        value = config.sections.get(cls.key)
        if not isinstance(value, cls):
            raise TypeError(f"{cls.__name__} ({cls.key!r}) is not a section of this config; is its term registered?")
        return value


@dataclass(frozen=True)
class RegularizerConfig:
    """The base regulariser (any base term of ``study list``'s regularisers) and its coefficients.

    ``alpha`` and ``beta`` are the paper's coefficients; which of them act, on what, and their
    defaults are the chosen term's (its docstring; ``Method.coefficients`` / ``Method.reference``).
    Left out (null), each is the reference's value for the term, on its scale: L2 alpha 5e-4 (the
    official BSS code's SGD weight decay); L2-SP and DELTA alpha = beta = 0.01 (tllib; DELTA's beta
    on tllib's sum over the batch, ``delta.batch_reduction: sum``). The resolved config records the
    values used.
    """

    name: str = "l2"
    alpha: float | None = None
    beta: float | None = None

    def __post_init__(self) -> None:
        from finetune.config.methods import reference_coefficients

        reference = reference_coefficients(self.name)
        for key in ("alpha", "beta"):
            if getattr(self, key) is None:
                object.__setattr__(self, key, reference.get(key, 0.0))
        check(self.coefficient("alpha") >= 0, "regularizer.alpha", f"must be >= 0, got {self.alpha}")
        check(self.coefficient("beta") >= 0, "regularizer.beta", f"must be >= 0, got {self.beta}")

    def coefficient(self, name: str) -> float:
        """``alpha`` or ``beta`` as resolved (never None after construction)."""
        return float(getattr(self, name))


@dataclass(frozen=True)
class TasksConfig:
    """A sequence of tasks (incremental learning, the paper's Section 5.3) or, with ``count: 1``,
    ordinary fine-tuning on the dataset itself.

    With ``count`` >= 2, task t is the dataset's images with pixel order ``kind`` (``permuted``: a
    fixed permutation of the pixels, drawn from the run's seed and t, the same for every split; as
    permuted MNIST; the kinds are ``finetune.tasks.TASK_KINDS``) and the same labels; the run trains
    on task 1 for ``optim.epochs`` epochs, then on task 2, ..., reporting after every epoch the test
    accuracy on each task seen so far (``task_acc_<t>``) and their mean (``test_acc``).
    ``permute_first: false`` keeps task 1 in the images' own pixel order.
    """

    count: int = 1
    kind: str = "permuted"
    permute_first: bool = True

    def __post_init__(self) -> None:
        from finetune.tasks import TASK_KINDS

        check(self.count >= 1, "tasks.count", f"must be >= 1 (1: no task sequence), got {self.count}")
        TASK_KINDS.check(self.kind)


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
        check(self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")
        check(self.backbone_lr_ratio >= 0, "optim.backbone_lr_ratio", f"must be >= 0, got {self.backbone_lr_ratio}")
        check(0 <= self.momentum < 1, "optim.momentum", f"must be in [0, 1), got {self.momentum}")
        check(
            self.weight_decay == 0,
            "optim.weight_decay",
            f"must be 0, got {self.weight_decay}: the regulariser applies the penalty (exactly one mechanism "
            "per penalty); for the official code's weight decay 5e-4 set regularizer.alpha: 5.0e-4 with "
            "regularizer.name: l2",
        )
        check(self.epochs >= 1, "optim.epochs", f"must be >= 1, got {self.epochs}")
        check(
            self.steps_per_epoch is None or self.steps_per_epoch >= 1,
            "optim.steps_per_epoch",
            f"must be >= 1 or null (one pass over the data), got {self.steps_per_epoch}",
        )
        check(0 < self.lr_decay_factor <= 1, "optim.lr_decay_factor", f"must be in (0, 1], got {self.lr_decay_factor}")
        late = [e for e in self.lr_decay_epochs if not 1 <= e < self.epochs]
        check(
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

    ``sections``: each registered penalty term's own section (``finetune.config.methods``), keyed
    by its name; in YAML each is a top-level key (``bss:``, ``delta:``, ...), and ``config.bss``
    reads one (``BSSConfig.of(config)`` is the typed form). ``precision``: ``bf16`` runs forward
    passes and losses under bfloat16 autocast (the BSS singular values and DELTA's distances are
    still computed in float32), ``fp32`` does not, ``auto`` is bf16 on a GPU that supports it and
    fp32 on a CPU (bf16 training parity on CPUs differs from machine to machine; ``bf16`` opts in).
    ``channels_last``: the model's memory format; ``auto`` is on for a GPU, off on a CPU.
    ``cuda_graph``: the backbone's training forward and backward replayed as CUDA graphs
    (``finetune.cuda_graph``); ``auto`` graphs it on a GPU unless a term needs its hooks (DELTA),
    ``on`` requires it, ``off`` never. ``plugins``: modules loaded before the config is resolved
    (``finetune.plugins``), so their terms, datasets or backbones can be named in it.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    sections: dict[str, Section] = field(default_factory=dict)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    protocol: str = "custom"
    precision: str = "auto"
    channels_last: str = "auto"
    cuda_graph: str = "auto"
    plugins: tuple[str, ...] = ()  # modules that register terms, datasets, ... (``finetune.plugins``)

    def __post_init__(self) -> None:
        from finetune.config.methods import active_methods, complete_sections

        object.__setattr__(self, "sections", complete_sections(self.sections))
        check(
            self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
        )
        check(
            self.channels_last in ("auto", "on", "off"),
            "channels_last",
            f"must be auto, on or off, got {self.channels_last!r}",
        )
        check(
            self.cuda_graph in CUDA_GRAPH_MODES,
            "cuda_graph",
            f"must be one of {', '.join(CUDA_GRAPH_MODES)}, got {self.cuda_graph!r}",
        )
        for method in active_methods(self):
            check(
                not (self.cuda_graph == "on" and method.graph_unsafe),
                "cuda_graph",
                f"on, but {method.title} {method.graph_unsafe}; set cuda_graph: auto (eager with {method.title}) "
                "or off",
            )
            method.check(self)
        check(self.num_threads is None or self.num_threads >= 1, "num_threads", "must be >= 1 or null")
        self._check_tasks()
        check(
            DEVICE_PATTERN.fullmatch(self.device) is not None,
            "device",
            f"{self.device!r} is not a device; use auto, cpu, cuda or cuda:N",
        )

    def __getattr__(self, name: str) -> Any:
        """A term's section by its name (``config.bss``); untyped: ``BSSConfig.of(config)`` is typed."""
        sections: Mapping[str, Section] | None = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__} has no field or section {name!r}")

    def _check_tasks(self) -> None:
        if self.tasks.count == 1:
            return
        check(
            self.data.selection == "last",
            "data.selection",
            f"a task sequence reports its last epoch (no early stopping across tasks), got {self.data.selection!r}; "
            "set selection: last",
        )
        check(
            self.data.train_transform == "none",
            "data.train_transform",
            f"a task's pixels are permuted, so crops, flips and shifts would mix them; got "
            f"{self.data.train_transform!r}, set data.train_transform: none",
        )
        check(
            self.data.resize_size in (None, self.data.image_size),
            "data.resize_size",
            "a task permutes the pixels of the whole stored image, which must be the input: set data.resize_size: null",
        )
        check(
            not self.optim.lr_decay_epochs,
            "optim.lr_decay_epochs",
            "a task sequence keeps one learning rate for every task; set optim.lr_decay_epochs: []",
        )
        check(
            self.model.tsvd_r == 0,
            "model.tsvd_r",
            "TSVD is not defined for a task sequence (its accuracy is per task); set model.tsvd_r: 0",
        )

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole run: ``optim.epochs`` for each of ``tasks.count`` tasks."""
        return self.optim.epochs * self.tasks.count
