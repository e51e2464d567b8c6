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

import difflib
from collections.abc import Callable, Iterable

__all__ = [
    "ConfigError",
    "DataError",
    "Interrupted",
    "LRSearchError",
    "ReportedError",
    "ScheduleError",
    "SettingError",
    "StorageError",
    "StorageURLError",
    "UsageError",
    "did_you_mean",
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


class ReportedError(LRSearchError):
    """A failure already reported to the user (a worker process printed its error line); the
    CLI exits with :attr:`exit_code` and prints nothing more."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for ``exc`` by the rule above (2, 130 or 1).

    Example:
        >>> exit_code_for(ConfigError("x")), exit_code_for(StorageError("y"))
        (2, 1)
    """
    if isinstance(exc, Interrupted | KeyboardInterrupt):
        return 130
    if isinstance(exc, ReportedError):
        return exc.exit_code
    return 2 if isinstance(exc, UsageError) else 1


def did_you_mean(
    name: str, choices: Iterable[str], *, quote: str | Callable[[str], str] = repr
) -> str:
    """The hint `` Did you mean 'x'?`` for the choice closest to ``name``, or ``""`` if none is.

    The one "did you mean" of lrsearch's messages: append it right after the sentence naming the
    unknown ``name`` (it starts with a space). Closeness is :func:`difflib.get_close_matches`
    with its default cutoff; only the best match is named.

    Args:
        name: What the user wrote.
        choices: The valid names (any iterable of strings, e.g. a registry dict).
        quote: How to show the suggestion: :func:`repr` (default), a one-character string put on
            both sides (``"`"`` for backticks, ``"'"`` for plain single quotes), or a function
            that returns the whole suggestion (to add text such as the rest of a source string).

    Returns:
        `` Did you mean <suggestion>?`` or ``""``.

    Raises:
        ValueError: ``quote`` is a string of more or less than one character.

    Example:
        >>> did_you_mean("cosin", ["cosine", "plateau"], quote="`")
        ' Did you mean `cosine`?'
        >>> did_you_mean("zzz", ["cosine", "plateau"])
        ''
    """
    if isinstance(quote, str) and len(quote) != 1:
        raise ValueError(f"quote must be one character or a function. Received: {quote=}")
    close = difflib.get_close_matches(name, list(choices), n=1)
    if not close:
        return ""
    shown = f"{quote}{close[0]}{quote}" if isinstance(quote, str) else quote(close[0])
    return f" Did you mean {shown}?"
