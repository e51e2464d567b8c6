"""The errors lrsearch raises on purpose.

Every error a user can cause derives from :class:`LRSearchError`; the CLI turns it into a one-line
message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "Interrupted",
    "LRSearchError",
    "ScheduleError",
    "StorageError",
]


class LRSearchError(Exception):
    """Base class of every error lrsearch raises for bad input or a failed environment."""


class ScheduleError(LRSearchError, ValueError):
    """An invalid schedule family or schedule parameter.

    Example:
        >>> raise ScheduleError("Argument `pct_start` must be in (0, 1). Received: pct_start=1.5")
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.ScheduleError: Argument `pct_start` must be in (0, 1). ...
    """


class ConfigError(LRSearchError, ValueError):
    """A study file that cannot be read or does not validate."""


class DataError(LRSearchError, ValueError):
    """A data source that cannot be loaded."""


class StorageError(LRSearchError):
    """A storage URL that is malformed or a database that cannot be reached."""


class Interrupted(LRSearchError):
    """The user pressed Ctrl-C; the interrupted trial was queued to run again."""
