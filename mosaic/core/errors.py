"""The one exception type users see for bad input."""


class ConfigError(ValueError):
    """Bad configuration or input. The message names the field and says how to fix it."""
