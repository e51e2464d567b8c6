"""The environment variables lrsearch reads, each read and checked in one place.

A bad value stops the command with one line naming the variable and the fix
(:class:`~lrsearch.exceptions.SettingError`, exit code 2), never a traceback.

| variable | meaning | default |
|---|---|---|
| ``LRSEARCH_STORAGE`` | storage URL when ``--storage`` is not given | ``sqlite:///lrsearch.db`` |
| ``LRSEARCH_ARTIFACTS`` | artifact store when ``--artifacts`` is not given | beside SQLite |
| ``LRSEARCH_HEARTBEAT_INTERVAL`` | seconds between a running trial's heartbeats | 30 |
| ``LRSEARCH_GRACE_PERIOD`` | seconds without heartbeat before a trial is stale | 4 x interval |
| ``LRSEARCH_RECYCLE_MB`` | memory growth (MB) after which a worker process is replaced | 128 |

Example:
    >>> import os
    >>> os.environ["LRSEARCH_HEARTBEAT_INTERVAL"] = "5"
    >>> heartbeat_interval()
    5
    >>> del os.environ["LRSEARCH_HEARTBEAT_INTERVAL"]
"""

from __future__ import annotations

import os

from lrsearch.exceptions import SettingError

__all__ = [
    "ARTIFACTS",
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "RECYCLE_MB",
    "STORAGE",
    "env_text",
    "grace_period",
    "heartbeat_interval",
    "recycle_mb",
    "shown",
]

STORAGE = "LRSEARCH_STORAGE"
ARTIFACTS = "LRSEARCH_ARTIFACTS"
HEARTBEAT_INTERVAL = "LRSEARCH_HEARTBEAT_INTERVAL"
GRACE_PERIOD = "LRSEARCH_GRACE_PERIOD"
RECYCLE_MB = "LRSEARCH_RECYCLE_MB"

_MAX_SHOWN = 60


def shown(value: str, limit: int = _MAX_SHOWN) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters.

    Example:
        >>> shown("x" * 100, limit=10)
        "'xxxxxxxxxx...' (100 characters)"
    """
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}"[:-1] + f"...' ({len(value)} characters)"


def env_text(name: str) -> str | None:
    """The variable's value with surrounding spaces removed; ``None`` when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or None


def _env_int(name: str, default: int, *, minimum: int, maximum: int, unit: str) -> int:
    text = env_text(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SettingError(
            f"Environment variable {name}={shown(text)} is not a whole number of {unit}; "
            f"set it to an integer between {minimum} and {maximum}, or unset it "
            f"(default {default})."
        ) from None
    if not minimum <= value <= maximum:
        raise SettingError(
            f"Environment variable {name}={value} is out of range; set it to an integer "
            f"between {minimum} and {maximum}, or unset it (default {default})."
        )
    return value


def heartbeat_interval() -> int:
    """``$LRSEARCH_HEARTBEAT_INTERVAL``: seconds between heartbeats of a running trial."""
    return _env_int(HEARTBEAT_INTERVAL, 30, minimum=1, maximum=86_400, unit="seconds")


def grace_period(interval: int | None = None) -> int:
    """``$LRSEARCH_GRACE_PERIOD``: seconds a trial may go without a heartbeat.

    It must exceed the heartbeat interval, or every running trial would look stale.
    """
    interval = heartbeat_interval() if interval is None else interval
    default = max(4 * interval, 10)
    grace = _env_int(GRACE_PERIOD, default, minimum=1, maximum=7 * 86_400, unit="seconds")
    if grace <= interval:
        raise SettingError(
            f"Environment variable {GRACE_PERIOD}={grace} must be larger than "
            f"{HEARTBEAT_INTERVAL} ({interval}); a few intervals is usual (default {default})."
        )
    return grace


def recycle_mb() -> int:
    """``$LRSEARCH_RECYCLE_MB``: a worker process whose memory grew by more is replaced."""
    return _env_int(RECYCLE_MB, 128, minimum=1, maximum=1_000_000, unit="megabytes")
