"""Errors a user can fix. The command line prints their message and exits with status 2."""


class HarnessError(Exception):
    """Base class: bad input that the user can correct (config, data file, flag)."""


class ConfigError(HarnessError, ValueError):
    """A config value, key or type is not allowed."""


class StoreError(HarnessError):
    """A stored run is damaged or busy: the message says which run and what to do."""


class DataError(HarnessError):
    """A dataset is unknown, missing, corrupt or too small for the request."""
