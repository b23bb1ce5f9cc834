"""The fine-tuning core: typed configs, backbones, data, regularisers and the training engine.

Pure PyTorch: nothing here imports ray or mlflow.
"""

# the registries are leaves that these modules fill as they load (the regularisers, the datasets)
import finetune.datasets
import finetune.regularizers  # noqa: F401
from finetune.callbacks import Callback, EpochMetrics, FitResult, PrintProgress
from finetune.config import (
    BSSConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RegularizerConfig,
    TrainConfig,
    config_from_dict,
    config_from_yaml,
    config_to_dict,
    config_to_yaml,
    load_config,
    resolve_config,
)
from finetune.engine import Trainer, fit, train_to_end
from finetune.errors import ConfigError, DataError, InputError, NonFiniteLossError, WeightsError

__all__ = [
    "BSSConfig",
    "Callback",
    "ConfigError",
    "DataConfig",
    "DataError",
    "EpochMetrics",
    "FitResult",
    "InputError",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "PrintProgress",
    "RegularizerConfig",
    "TrainConfig",
    "Trainer",
    "WeightsError",
    "config_from_dict",
    "config_from_yaml",
    "config_to_dict",
    "config_to_yaml",
    "fit",
    "load_config",
    "resolve_config",
    "train_to_end",
]
