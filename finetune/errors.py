"""Errors the core raises for bad input, each with a message that names the field and the fix."""


class InputError(ValueError):
    """Bad input of any kind (config, data, weights, study spec or folder): retrying cannot help."""


class ConfigError(InputError):
    """A configuration value is missing, unknown or out of range."""


class DataError(InputError):
    """A dataset folder, file or split is missing or unusable."""


class WeightsError(InputError):
    """Pretrained weights could not be found, verified or loaded."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""
