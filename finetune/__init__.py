"""The fine-tuning core: typed configs, backbones, data, regularisers and the training engine.

Pure PyTorch: nothing here imports ray or mlflow. The names below are imported from their modules on
first use, so a module that needs only the configs or the errors loads no torch.
"""

from typing import TYPE_CHECKING

from finetune._front import front_door

# each public name -> its module (imported on first use: `import finetune.config` loads no torch)
_EXPORTS = {
    "Callback": "callbacks",
    "EpochMetrics": "callbacks",
    "FitResult": "callbacks",
    "PrintProgress": "callbacks",
    "BSSConfig": "config",
    "DataConfig": "config",
    "ModelConfig": "config",
    "OptimConfig": "config",
    "RegularizerConfig": "config",
    "TrainConfig": "config",
    "config_from_dict": "config",
    "config_from_yaml": "config",
    "config_to_dict": "config",
    "config_to_yaml": "config",
    "load_config": "config",
    "resolve_config": "config",
    "Trainer": "engine",
    "fit": "engine",
    "train_to_end": "engine",
    "ConfigError": "errors",
    "DataError": "errors",
    "InputError": "errors",
    "NonFiniteLossError": "errors",
    "WeightsError": "errors",
}
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
__getattr__ = front_door(__name__, _EXPORTS)

if TYPE_CHECKING:
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
