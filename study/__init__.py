"""The user-facing side: CLI, spec loading and validation, the driver, tracking and results."""
