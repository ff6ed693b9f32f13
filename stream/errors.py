"""The base of every configuration problem: the CLI turns these into a one-line message, exit 2."""


class ConfigurationError(ValueError):
    pass
