"""The errors lrsearch raises on purpose, and the one rule for exit codes.

Every error a user can cause derives from :class:`LRSearchError`; the CLI turns it into a one-line
message and a non-zero exit, never a traceback:

* exit **2**, :class:`UsageError` and its subclasses: something the user typed is wrong (a flag,
  a study-file field, an environment variable, a malformed storage URL); fix the input.
* exit **1**, every other :class:`LRSearchError`: the input is well formed but the world did not
  cooperate (an unreachable database, an unreadable data file, trials that keep failing).
* exit **130**, :class:`Interrupted`: Ctrl-C.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "Interrupted",
    "LRSearchError",
    "ScheduleError",
    "SettingError",
    "StorageError",
    "StorageURLError",
    "UsageError",
    "exit_code_for",
]


class LRSearchError(Exception):
    """Base class of every error lrsearch raises for bad input or a failed environment."""


class UsageError(LRSearchError, ValueError):
    """Bad input: a flag, a study-file field, an environment variable or a URL (exit code 2)."""


class ScheduleError(UsageError):
    """An invalid schedule family or schedule parameter.

    Example:
        >>> raise ScheduleError("Argument `pct_start` must be in (0, 1). Received: pct_start=1.5")
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.ScheduleError: Argument `pct_start` must be in (0, 1). ...
    """


class ConfigError(UsageError):
    """A study file that cannot be read or does not validate."""


class SettingError(UsageError):
    """An environment variable (``LRSEARCH_*``) with a value lrsearch refuses."""


class DataError(LRSearchError, ValueError):
    """A data source that cannot be loaded."""


class StorageError(LRSearchError):
    """A database that cannot be reached or used (exit code 1)."""


class StorageURLError(StorageError, UsageError):
    """A storage URL that is malformed or names no usable database (exit code 2)."""


class Interrupted(LRSearchError):
    """The user pressed Ctrl-C; the interrupted trial was queued to run again."""


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for ``exc`` by the rule above (2, 130 or 1).

    Example:
        >>> exit_code_for(ConfigError("x")), exit_code_for(StorageError("y"))
        (2, 1)
    """
    if isinstance(exc, Interrupted | KeyboardInterrupt):
        return 130
    return 2 if isinstance(exc, UsageError) else 1
