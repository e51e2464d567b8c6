"""Storage URLs to Optuna storages, with errors a person can act on.

Any SQLAlchemy URL Optuna accepts works; the URL comes from ``--storage``, else the environment
variable ``LRSEARCH_STORAGE``, else ``sqlite:///lrsearch.db`` in the current directory. Studies
are written in Optuna's own schema, so ``optuna`` CLI and optuna-dashboard read them as they are.
Passwords never appear in what lrsearch prints: :func:`mask_url` hides them.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from lrsearch.exceptions import StorageError

__all__ = [
    "DEFAULT_STORAGE",
    "ENV_VAR",
    "RETRY_SECONDS",
    "mask_url",
    "open_storage",
    "resolve_storage_url",
]

_log = logging.getLogger("lrsearch")

RETRY_SECONDS = 300.0
"""How long a storage call keeps retrying while the database is unreachable."""

DEFAULT_STORAGE = "sqlite:///lrsearch.db"
ENV_VAR = "LRSEARCH_STORAGE"

_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)")


def resolve_storage_url(url: str | None = None) -> str:
    """``url``, else ``$LRSEARCH_STORAGE``, else ``sqlite:///lrsearch.db``."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_STORAGE


def mask_url(text: str) -> str:
    """Replaces the password of every URL in ``text`` with ``***``.

    Example:
        >>> mask_url("postgresql://bob:s3cret@db:5432/optuna")
        'postgresql://bob:***@db:5432/optuna'
    """
    return _PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}", text)


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several local workers may write at once: wait for the lock instead of failing.
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 1800}


def _explain(url: str, exc: Exception) -> str:
    masked = mask_url(url)
    reason = mask_url(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
    first = reason[0] if reason else type(exc).__name__
    lowered = first.lower()
    if "password authentication failed" in lowered or "access denied" in lowered:
        hint = "check the user name and password in the URL"
    elif "could not translate host" in lowered or "name or service not known" in lowered:
        hint = "check the host name in the URL"
    elif "connection refused" in lowered or "can't connect" in lowered or "timeout" in lowered:
        hint = "is the database server running and reachable at that host and port?"
    elif "unable to open database file" in lowered:
        hint = "the folder of the SQLite file must exist and be writable"
    elif "does not exist" in lowered or "unknown database" in lowered:
        hint = "create the database first (e.g. createdb NAME)"
    elif isinstance(exc, ModuleNotFoundError | ImportError):
        hint = "install the driver: pip install 'lrsearch[postgres]' or 'lrsearch[mysql]'"
    else:
        hint = "see the URL forms in the README (Storage section)"
    return f"Cannot open storage {masked}: {first} ({hint})."


def _connection_error(exc: BaseException) -> BaseException | None:
    """The lost or refused database connection behind ``exc`` (or what caused it), if any."""
    import sqlalchemy.exc

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return seen
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        delay, deadline, warned = 0.5, time.monotonic() + self.retry_seconds, False
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                cause = _connection_error(exc)
                if cause is None or time.monotonic() > deadline:
                    raise
                if not warned:
                    reason = str(getattr(cause, "orig", None) or cause).strip().splitlines()
                    _log.warning(
                        "lost the database connection (%s); retrying for up to %.0fs",
                        mask_url(reason[0] if reason else type(cause).__name__),
                        self.retry_seconds,
                    )
                    warned = True
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    return call


@functools.cache
def _resilient_class() -> type:
    """An ``RDBStorage`` whose calls wait and retry while the database is away."""
    import optuna

    base = optuna.storages.RDBStorage
    names = [
        n
        for n in dir(optuna.storages.BaseStorage)
        if not n.startswith("_") and callable(getattr(base, n, None))
    ]
    names += ["_get_stale_trial_ids", "record_heartbeat"]
    # Optuna wraps an RDBStorage in a _CachedStorage, which calls these private methods directly
    # (study.get_trials, ask, suggest_*, best_trial): they must wait out a restart too.
    names += ["_get_trials", "_create_new_trial", "_set_trial_param", "_get_best_trial_id"]
    attrs: dict[str, Any] = {"retry_seconds": RETRY_SECONDS, "__module__": __name__}
    for name in names:
        if hasattr(base, name):
            attrs[name] = _retrying(getattr(base, name))
    return type("ResilientRDBStorage", (base,), attrs)


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL").fetchall()
    finally:
        cursor.close()


def open_storage(url: str | None = None, **kwargs: Any) -> Any:
    """Opens (and creates the schema of) the Optuna RDB storage at ``url``.

    Every storage call waits and retries (with backoff, up to :data:`RETRY_SECONDS`) while the
    database is unreachable, so workers survive a database restart.

    Args:
        url: A SQLAlchemy URL; ``None`` resolves as :func:`resolve_storage_url`.
        **kwargs: Passed to :class:`optuna.storages.RDBStorage` (e.g. ``heartbeat_interval``).

    Raises:
        StorageError: malformed URL, missing driver, unreachable server, bad credentials.
    """
    import sqlalchemy.exc

    resolved = resolve_storage_url(url)
    if "://" not in resolved:
        raise StorageError(
            f"Storage {mask_url(resolved)!r} is not a URL; use e.g. sqlite:///lrsearch.db or "
            "postgresql+psycopg://user@host/db."
        )
    try:
        storage = _resilient_class()(resolved, engine_kwargs=_engine_kwargs(resolved), **kwargs)
        if resolved.startswith("sqlite"):
            # WAL lets readers (dashboard, status) and several local workers work side by side;
            # the setting is stored in the database file.
            sqlalchemy.event.listen(storage.engine, "connect", _sqlite_wal)
            storage.engine.dispose()  # connections made from now on run _sqlite_wal
        return storage
    except sqlalchemy.exc.ArgumentError as exc:
        raise StorageError(
            f"Storage URL {mask_url(resolved)!r} is malformed: {mask_url(str(exc))}"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise StorageError(_explain(resolved, exc)) from None
