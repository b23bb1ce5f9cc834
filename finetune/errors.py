"""Errors the core raises for bad input, each with a message that names the field and the fix."""


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


class DataError(ValueError):
    """A dataset folder, file or split is missing or unusable."""


class WeightsError(ValueError):
    """Pretrained weights could not be found, verified or loaded."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""
