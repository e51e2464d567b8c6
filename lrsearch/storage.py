"""Storage URLs to Optuna storages, with errors a person can act on.

Any SQLAlchemy URL Optuna accepts works; the URL comes from ``--storage``, else the environment
variable ``LRSEARCH_STORAGE``, else ``sqlite:///lrsearch.db`` in the current directory. Studies
are written in Optuna's own schema, so ``optuna`` CLI and optuna-dashboard read them as they are.
Passwords never appear in what lrsearch prints: :func:`mask_url` hides them in a URL,
:func:`mask_text` in any text (error messages that may echo a URL).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from lrsearch.exceptions import StorageError, StorageURLError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "DEFAULT_STORAGE",
    "ENV_VAR",
    "RETRY_SECONDS",
    "check_storage_url",
    "describe_storage_error",
    "is_storage_error",
    "mask_text",
    "mask_url",
    "open_storage",
    "resolve_storage_url",
]

_log = logging.getLogger("lrsearch")

RETRY_SECONDS = 300.0
"""How long a storage call keeps retrying while the database is unreachable or busy."""

DEFAULT_STORAGE = "sqlite:///lrsearch.db"
ENV_VAR = "LRSEARCH_STORAGE"

_HIDDEN = "***"
_SCHEME = re.compile(r"[A-Za-z][\w+.-]*://")
_SPACE = re.compile(r"\s")
_SECRET_KEY = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)
# password=... as in libpq connection strings and URL queries; a quoted value may hold spaces.
_KEY_VALUE = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd)\s*=\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)",
    re.IGNORECASE,
)
# user:password@host written without a scheme.
_BARE_CREDENTIALS = re.compile(r"(?<![\w/:@.+-])(?P<user>[\w.+-]+):(?P<pw>[^\s@/:]+)@(?=[\w\[])")


def resolve_storage_url(url: str | None = None) -> str:
    """``url``, else ``$LRSEARCH_STORAGE``, else ``sqlite:///lrsearch.db``."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_STORAGE


# --- masking ------------------------------------------------------------------------------------


def _parse(url: str) -> URL | None:
    """``url`` parsed by SQLAlchemy, or ``None`` when it does not parse unambiguously.

    SQLAlchemy ends the password at the first ``@``; a password with an unencoded ``@`` leaves
    the rest of it in the host or the database name, so a password followed by another ``@`` is
    treated as unparseable (nothing of it is shown).
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.password is not None and "@" in f"{parsed.host or ''}{parsed.database or ''}":
        return None
    return parsed


def _secrets(url: str) -> list[str]:
    """The password and secret query values of ``url``: decoded, and percent-encoded."""
    parsed = _parse(url)
    if parsed is None:
        return []
    found = [str(parsed.password)] if parsed.password is not None else []
    for key, value in parsed.query.items():
        if _SECRET_KEY.search(key):
            found += [value] if isinstance(value, str) else list(value)
    return [form for secret in found for form in {secret, quote(secret, safe="")} if secret]


def mask_url(url: str) -> str:
    """``url`` with its password and any secret query parameter replaced by ``***``.

    A string that does not parse as a URL is shown only up to its scheme, or not at all when it
    has none: it may be a URL whose password broke the parsing.

    Example:
        >>> mask_url("postgresql://bob:s3cret@db:5432/optuna?password=s3cret")
        'postgresql://bob:***@db:5432/optuna?password=***'
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        return _HIDDEN
    parsed = _parse(url)
    if parsed is None:
        return scheme.group() + _HIDDEN
    hidden = {k: _HIDDEN for k in parsed.query if _SECRET_KEY.search(k)}
    if parsed.password is None and not hidden:
        return url  # as written: rendering would re-encode and reorder it
    if hidden:
        parsed = parsed.update_query_dict(hidden)
    shown = parsed.render_as_string(hide_password=True)
    return shown.replace(quote(_HIDDEN, safe=""), _HIDDEN)


def _mask_urls_in(text: str) -> str:
    """Hides the password of every ``scheme://user:password@...`` in ``text``.

    A password ends at the last ``@`` of its word; a word that ends before any ``@`` while in
    ``user:...`` may be the first part of a password with a space, which then ends at the next
    ``@`` on the line. Over-masking is accepted, leaking is not.
    """
    out: list[str] = []
    pos = 0
    for match in _SCHEME.finditer(text):
        body = match.end()
        if match.start() < pos:
            continue
        line_end = text.find("\n", body)
        line_end = len(text) if line_end < 0 else line_end
        space = _SPACE.search(text, body, line_end)
        word_end = space.start() if space else line_end
        token = text[body:word_end]
        at = token.rfind("@")
        if at >= 0:
            colon = token.find(":", 0, at)
            if colon >= 0:
                out += [text[pos : body + colon + 1], _HIDDEN]
                pos = body + at
            continue
        authority = re.split(r"[/?]", token, maxsplit=1)[0]
        colon = authority.find(":")
        if colon < 0:
            continue
        after = authority[colon + 1 :]
        in_authority = authority == token  # the word ended before any path: a space may follow
        if after.isdigit() and not in_authority:
            continue  # host:port/...
        later = text.find("@", word_end, line_end)
        if later >= 0 and "://" not in text[word_end:later]:
            out += [text[pos : body + colon + 1], _HIDDEN]
            pos = later
        elif not after.isdigit():
            out += [text[pos : body + colon + 1], _HIDDEN]
            pos = body + len(authority)
    out.append(text[pos:])
    return "".join(out)


def mask_text(text: str) -> str:
    """``text`` with the password of every URL in it, and every ``password=...``, hidden.

    For free text such as a driver's error message; a whole URL is better masked by
    :func:`mask_url`, which also hides what it cannot parse.

    Example:
        >>> mask_text("no postgresql://bob:s3cret@db/optuna; dsn: password=s3cret host=db")
        'no postgresql://bob:***@db/optuna; dsn: password=*** host=db'
    """
    text = _mask_urls_in(text)
    text = _KEY_VALUE.sub(lambda m: m["key"] + _HIDDEN, text)
    return _BARE_CREDENTIALS.sub(lambda m: f"{m['user']}:{_HIDDEN}@", text)


def _scrub(text: str, url: str) -> str:
    """:func:`mask_text` of ``text``, and no occurrence of ``url``'s password either."""
    text = mask_text(text)
    for secret in sorted(_secrets(url), key=len, reverse=True):
        if len(secret) >= 4:  # a shorter one would hide letters all over the message
            text = text.replace(secret, _HIDDEN)
    return text


def _first_line(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a database error raised by a storage call (Optuna's or SQLAlchemy's)."""
    import optuna
    import sqlalchemy.exc

    return isinstance(exc, optuna.exceptions.StorageInternalError | sqlalchemy.exc.SQLAlchemyError)


def describe_storage_error(exc: BaseException, url: str = "") -> str:
    """One line saying what went wrong in a storage call, without any password.

    For an error a storage call raised at once (e.g. Optuna's ``StorageInternalError`` for a
    study name longer than the database column): its root database error, masked.

    Example:
        >>> describe_storage_error(RuntimeError("no route to postgresql://u:pw@db/x"))
        'The database refused the request: no route to postgresql://u:***@db/x'
    """
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    return f"The database refused the request: {_scrub(_first_line(root), url)}"


def _explain(url: str, exc: Exception) -> str:
    first = _scrub(_first_line(exc), url)
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
    return f"Cannot open storage {mask_url(url)}: {first} ({hint})."


# --- which errors are worth waiting out ---------------------------------------------------------

# PostgreSQL SQLSTATEs: connection exceptions (class 08), the server shutting down, crashed or
# starting up (57P01-57P03), idle-session timeout (57P05), too many connections (53300),
# serialization failure, deadlock (40001, 40P01), lock timeout (55P03).
_PG_TRANSIENT = {"57P01", "57P02", "57P03", "57P05", "53300", "40001", "40P01", "55P03"}
# MySQL/MariaDB error codes: can't connect (2002, 2003), server gone or connection lost (2006,
# 2013, 2055), too many connections (1040), lock wait timeout (1205), deadlock (1213), server
# shutting down (1053), connection killed (1927, MariaDB) or closed for inactivity (4031).
_MYSQL_TRANSIENT = {2002, 2003, 2006, 2013, 2055, 1040, 1205, 1213, 1053, 1927, 4031}
# libpq reports connection failures without a SQLSTATE; these are the ones that heal.
_TRANSIENT_TEXT = re.compile(
    r"connection refused|server closed the connection|connection reset|connection timed out"
    r"|timeout expired|could not (?:receive|send) data|no connection to the server"
    r"|connection (?:is|was) (?:lost|closed)|terminating connection"
    r"|the database system is (?:starting up|shutting down|in recovery mode|not yet accepting)"
    r"|is not currently accepting connections"  # ALTER DATABASE ... ALLOW_CONNECTIONS false
    r"|too many (?:clients|connections)|remaining connection slots|ssl connection has been closed",
    re.IGNORECASE,
)


def _transient_driver_error(exc: BaseException) -> bool:
    driver = type(exc).__module__.split(".")[0]
    if driver in ("psycopg", "psycopg2"):
        state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if state:
            return state.startswith("08") or state in _PG_TRANSIENT
        return bool(_TRANSIENT_TEXT.search(str(exc)))
    if driver in ("pymysql", "MySQLdb"):
        if type(exc).__name__ == "InterfaceError":
            return True  # raised for a connection that is already closed
        code = exc.args[0] if exc.args else None
        return isinstance(code, int) and code in _MYSQL_TRANSIENT
    if driver == "sqlite3":
        return "is locked" in str(exc)  # database is locked, database table is locked
    return type(exc).__name__ == "OperationalError" and bool(_TRANSIENT_TEXT.search(str(exc)))


def _transient_error(exc: BaseException) -> BaseException | None:
    """The error behind ``exc`` that waiting can heal (a lost connection, a lock), if any.

    Walks the chain of causes, as Optuna raises ``StorageInternalError`` from SQLAlchemy's error.
    """
    import sqlalchemy.exc

    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        if isinstance(seen, sqlalchemy.exc.TimeoutError):
            return seen  # every pooled connection is in use: one is given back soon
        if isinstance(seen, sqlalchemy.exc.DBAPIError):
            orig = seen.orig
            if seen.connection_invalidated or (orig is not None and _transient_driver_error(orig)):
                return seen
        elif _transient_driver_error(seen):
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
                cause = _transient_error(exc)
                if cause is None or time.monotonic() > deadline:
                    raise
                if not warned:
                    _log.warning(
                        "lost the database connection or the database is busy (%s); "
                        "retrying for up to %.0fs",
                        mask_text(_first_line(cause)),
                        self.retry_seconds,
                    )
                    warned = True
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    return call


def _retried_methods(base: type) -> list[str]:
    import optuna

    names = [
        n
        for n in dir(optuna.storages.BaseStorage)
        if not n.startswith("_") and callable(getattr(base, n, None))
    ]
    names += ["_get_stale_trial_ids", "record_heartbeat"]
    # Optuna wraps an RDBStorage in a _CachedStorage, which calls these private methods directly
    # (study.get_trials, ask, suggest_*, best_trial): they must wait out a restart too.
    names += ["_get_trials", "_create_new_trial", "_set_trial_param", "_get_best_trial_id"]
    return [n for n in names if hasattr(base, n)]


@functools.cache
def _resilient_class() -> type:
    """:class:`ResilientRDBStorage`, made on first use so that importing lrsearch.storage does
    not import Optuna (``lrsearch --help`` stays fast)."""
    from optuna.storages import RDBStorage

    class ResilientRDBStorage(RDBStorage):
        """An ``RDBStorage`` whose calls wait and retry while the database is away or busy.

        Only errors that waiting can heal are retried (see ``_transient_error``); any other
        error is raised at once. Picklable: ``lrsearch.storage.ResilientRDBStorage`` names it.
        """

        retry_seconds = RETRY_SECONDS

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            """Optuna's stale trials, plus RUNNING trials that never sent a heartbeat and
            started longer than the grace period ago (a worker that died between ``ask()``
            and its first beat): without them a worker waiting for the budget waits forever."""
            return RDBStorage._get_stale_trial_ids(self, study_id) + _never_beat(self, study_id)

    for name in _retried_methods(RDBStorage):
        method = getattr(ResilientRDBStorage, name)
        setattr(ResilientRDBStorage, name, _retrying(method))
    ResilientRDBStorage.__module__ = __name__
    ResilientRDBStorage.__qualname__ = "ResilientRDBStorage"
    return ResilientRDBStorage


def _never_beat(storage: Any, study_id: int) -> list[int]:
    """Ids of the study's RUNNING trials with no heartbeat row, started over a grace period ago.

    ``datetime_start`` is written by the worker's clock (``datetime.now()``), so it is compared
    with this machine's clock: as naive UTC since Optuna 5 (column ``_datetime_start_utc``),
    as naive local time before.
    """
    import datetime

    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from optuna.trial import TrialState

    grace = datetime.timedelta(seconds=storage.grace_period or 2 * storage.heartbeat_interval)
    trial: Any = models.TrialModel
    started = getattr(trial, "_datetime_start_utc", None)
    if started is not None:
        cutoff = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - grace
    else:  # Optuna 4: local naive time in the datetime_start column
        started, cutoff = trial.datetime_start, datetime.datetime.now() - grace
    with _create_scoped_session(storage.scoped_session) as session:
        rows = (
            session.query(trial.trial_id)
            .filter(trial.study_id == study_id)
            .filter(trial.state == TrialState.RUNNING)
            .filter(started < cutoff)
            .filter(~trial.heartbeats.any())
            .all()
        )
    return [int(row[0]) for row in rows]


def __getattr__(name: str) -> Any:
    # The class is a module attribute (pickle finds it by name) built when first asked for.
    if name == "ResilientRDBStorage":
        return _resilient_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- opening ------------------------------------------------------------------------------------


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several local workers may write at once: wait for the lock instead of failing.
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 1800}


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    import sqlite3

    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL").fetchall()
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc):
            raise
        # A read-only file (or mode=ro) keeps its journal mode; reading it works all the same.
    finally:
        cursor.close()


def _sqlite_file(parsed: URL) -> str | None:
    """The file of a SQLite URL, or ``None`` for an in-memory database."""
    database = parsed.database or ""
    uri = str(parsed.query.get("uri", "")).lower() in ("true", "1")
    if uri and database.startswith("file:"):
        if parsed.query.get("mode") == "memory":
            return None
        database = database[len("file:") :]
        if database.startswith("//"):
            database = "/" + database[2:].partition("/")[2]
        database = unquote(database)
    return None if database in ("", ":memory:") else database


def _check_sqlite(parsed: URL, url: str, create: bool, source: str) -> None:
    path = _sqlite_file(parsed)
    if path is None:
        raise StorageURLError(
            f"Storage {mask_url(url)}{source} is an in-memory SQLite database: it would vanish "
            "when this process ends, so workers could not share it and the study could not be "
            "resumed; use a file, e.g. sqlite:///lrsearch.db."
        )
    if not create and not os.path.exists(path):
        raise StorageURLError(
            f"No database at {path} ({mask_url(url)}{source}); run lrsearch start first or give "
            "--storage."
        )


def check_storage_url(url: str | None = None, *, create: bool = True) -> str:
    """The resolved storage URL, if it is a usable one; no connection is made.

    Cheap enough to call before any slow work, so that a mistyped ``--storage`` is reported at
    once. :func:`open_storage` makes the same checks.

    Example:
        >>> check_storage_url("sqlite://")
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.StorageURLError: Storage sqlite:// is an in-memory SQLite database: ...

    Raises:
        StorageURLError: a URL that is not one, is malformed, names an unknown dialect or driver,
            an in-memory SQLite database, or a SQLite file that does not exist (``create=False``).
    """
    import sqlalchemy.exc

    resolved = resolve_storage_url(url)
    source = f" (from ${ENV_VAR})" if not url and os.environ.get(ENV_VAR) else ""
    if _SCHEME.match(resolved) is None:
        raise StorageURLError(
            f"Storage {mask_url(resolved)!r}{source} is not a URL; use e.g. "
            "sqlite:///lrsearch.db or postgresql+psycopg://user@host/db."
        )
    parsed = _parse(resolved)
    if parsed is None:
        raise StorageURLError(
            f"Storage URL {mask_url(resolved)!r}{source} is malformed: it does not parse as "
            "scheme://user:password@host:port/database (write @ in a password as %40, : as "
            "%3A, / as %2F)."
        )
    try:
        parsed.get_dialect()
    except sqlalchemy.exc.ArgumentError as exc:  # unknown dialect or driver name
        raise StorageURLError(
            f"Storage URL {mask_url(resolved)!r}{source} is malformed: "
            f"{_scrub(_first_line(exc), resolved)}"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite(parsed, resolved, create, source)
    return resolved


_SCHEMA_RACE = re.compile(
    r"already exists|duplicate key|duplicate entry|unique constraint failed|"
    r"pg_type_typname_nsp_index|table .* exists",
    re.IGNORECASE,
)


def _create_schema_once(url: str, kwargs: dict[str, Any]) -> Any:
    """``ResilientRDBStorage(url)``, which creates Optuna's tables on an empty database.

    Several processes started at the same instant on an empty database all see no tables and
    all create them; all but one then fail on the database's catalog ("duplicate key value
    violates unique constraint pg_type_typname_nsp_index", "UNIQUE constraint failed:
    alembic_version.version_num", "Table ... already exists"). Such a loser tries again after
    a short random pause and finds the winner's schema.
    """
    import random

    import sqlalchemy.exc

    attempts = 8
    for attempt in range(attempts):
        try:
            return _resilient_class()(url, engine_kwargs=_engine_kwargs(url), **kwargs)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raced = _SCHEMA_RACE.search(_first_line(exc)) is not None
            if not raced or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("unreachable")


_READ_KWARGS = frozenset({"heartbeat_interval", "grace_period", "heartbeat_stale_trial_callback"})


def _read_version(engine: Any) -> str | None:
    """The Alembic revision of Optuna's schema, read with one ``SELECT``: what Alembic's
    ``MigrationContext.get_current_revision()`` reads, without importing Alembic (~0.15 s, all
    its dialect modules). ``None`` when the table holds no revision or several."""
    import sqlalchemy

    with engine.connect() as conn:
        found = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).all()
    return str(found[0][0]) if len(found) == 1 else None


class _ReadVersions:
    """Stands in for Optuna's ``_VersionManager`` on a storage opened for reading.

    ``get_current_version()`` is :func:`_read_version`; anything else (``get_head_version``,
    ``upgrade``, ... as ``optuna storage upgrade`` or optuna-dashboard call them) is delegated
    to Optuna's own ``_VersionManager``, made on first use (it imports Alembic and, on a
    database without a revision, stamps one, as Optuna's opening would have).

    Example:
        >>> storage = open_storage("sqlite:///lrsearch.db", create=False)  # doctest: +SKIP
        >>> storage.get_current_version()  # one SELECT, no Alembic  # doctest: +SKIP
        'v3.2.0.a'
    """

    def __init__(self, storage: Any) -> None:
        self._storage = storage
        self._manager: Any = None

    def _optuna(self) -> Any:
        if self._manager is None:
            from optuna.storages._rdb.storage import _VersionManager

            s = self._storage
            self._manager = _VersionManager(s.url, s.engine, s.scoped_session)
        return self._manager

    def get_current_version(self) -> str:
        version = _read_version(self._storage.engine)
        return version if version is not None else str(self._optuna().get_current_version())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not Optuna's API (and no recursion before __init__ ran)
            raise AttributeError(name)
        return getattr(self._optuna(), name)


def _open_read_only(url: str, kwargs: dict[str, Any]) -> Any:
    """A ``ResilientRDBStorage`` of ``url`` set up as ``RDBStorage.__init__`` sets one up with
    ``skip_table_creation=True, skip_compatibility_check=True``, but without constructing
    Optuna's ``_VersionManager``: its constructor imports Alembic to read the revision, which
    is most of opening a storage in a fresh process (``lrsearch status``). The instance is
    filled in as unpickling fills one; ``tests/test_queries.py`` checks that it has exactly
    the attributes Optuna's constructor sets, so an Optuna that adds one fails there.
    """
    import sqlalchemy.orm

    cls: Any = _resilient_class()
    storage = cls.__new__(cls)
    engine_kwargs = _engine_kwargs(url)
    cls._set_default_engine_kwargs_for_mysql(url, engine_kwargs)
    storage.engine_kwargs = engine_kwargs
    storage.url = cls._fill_storage_url_template(url)
    storage.skip_compatibility_check = True
    storage.heartbeat_interval = kwargs.get("heartbeat_interval")
    storage.grace_period = kwargs.get("grace_period")
    storage.heartbeat_stale_trial_callback = kwargs.get("heartbeat_stale_trial_callback")
    storage.failed_trial_callback = storage.heartbeat_stale_trial_callback
    storage.engine = sqlalchemy.create_engine(storage.url, **engine_kwargs)
    storage.scoped_session = sqlalchemy.orm.scoped_session(
        sqlalchemy.orm.sessionmaker(bind=storage.engine)
    )
    storage._version_manager = _ReadVersions(storage)
    return storage


def _plain_read_kwargs(kwargs: dict[str, Any]) -> bool:
    """Whether :func:`_open_read_only` takes ``kwargs`` as Optuna's constructor would: the
    heartbeat settings, valid; anything else goes to Optuna's constructor (and its errors)."""
    if not set(kwargs) <= _READ_KWARGS:
        return False
    positive = ("heartbeat_interval", "grace_period")
    return all(kwargs.get(k) is None or kwargs[k] > 0 for k in positive)


def _open_existing(url: str, kwargs: dict[str, Any]) -> Any | None:
    """The storage of a database Optuna has set up, opened for reading, or ``None`` if it has no
    tables or no schema revision yet (Optuna's own opening then sets them up).

    Optuna's own opening creates any missing tables, imports Alembic to read the schema
    revision and compares it with the newest one, which parses every migration script: most of
    a read command's time. A revision lrsearch's queries know
    (:data:`lrsearch.queries.KNOWN_SCHEMA_VERSIONS`) needs none of it (:func:`_open_read_only`,
    one ``SELECT`` of the revision); any other goes through Optuna's check, with its advice.
    """
    import sqlalchemy.exc

    from lrsearch.queries import KNOWN_SCHEMA_VERSIONS

    storage = None
    try:
        if _plain_read_kwargs(kwargs):
            storage = _open_read_only(url, kwargs)
        else:
            storage = _resilient_class()(
                url,
                engine_kwargs=_engine_kwargs(url),
                skip_compatibility_check=True,
                skip_table_creation=True,
                **kwargs,
            )
        current = _read_version(storage.engine)
    except (sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError):
        if storage is not None:
            storage.engine.dispose()
        if _is_missing_table(url):
            return None  # an empty database: Optuna sets it up
        raise
    if current is None:
        storage.engine.dispose()
        return None
    if current not in KNOWN_SCHEMA_VERSIONS and current != storage.get_head_version():
        storage.engine.dispose()
        raise StorageError(
            f"The Optuna tables in {mask_url(url)} have schema version {current!r}, which this "
            f"Optuna ({_optuna_version()}) does not read: upgrade them with `optuna storage "
            f"upgrade --storage URL`, or install the Optuna that wrote them."
        )
    return storage


def _optuna_version() -> str:
    import optuna

    return str(optuna.__version__)


def _is_missing_table(url: str) -> bool:
    """True when the database has no Optuna tables yet (nothing to read, nothing wrong)."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        names = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    return not {"version_info", "alembic_version"} <= names


def open_storage(url: str | None = None, *, create: bool = True, **kwargs: Any) -> Any:
    """Opens (and creates the schema of) the Optuna RDB storage at ``url``.

    Storage calls wait and retry (with backoff, up to :data:`RETRY_SECONDS`) while the database
    is unreachable, restarting, overloaded or locked, so workers survive a database restart; any
    other database error is raised at once.

    Example:
        >>> storage = open_storage("sqlite:///lrsearch.db")  # doctest: +SKIP

    Args:
        url: A SQLAlchemy URL; ``None`` resolves as :func:`resolve_storage_url`.
        create: If false, a SQLite file that does not exist is an error instead of being created
            (for commands that only read).
        **kwargs: Passed to :class:`optuna.storages.RDBStorage` (e.g. ``heartbeat_interval``).

    Raises:
        StorageURLError: as :func:`check_storage_url`.
        StorageError: missing driver package, unreachable server, bad credentials.
    """
    import sqlalchemy.exc

    resolved = check_storage_url(url, create=create)
    try:
        storage = None if create else _open_existing(resolved, kwargs)
        if storage is None:
            storage = _create_schema_once(resolved, kwargs)
        if resolved.startswith("sqlite"):
            # WAL lets readers (dashboard, status) and several local workers work side by side;
            # the setting is stored in the database file.
            sqlalchemy.event.listen(storage.engine, "connect", _sqlite_wal)
            storage.engine.dispose()  # connections made from now on run _sqlite_wal
        return storage
    except sqlalchemy.exc.ArgumentError as exc:
        raise StorageURLError(
            f"Storage URL {mask_url(resolved)!r} is malformed: "
            f"{_scrub(_first_line(exc), resolved)}"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise StorageError(_explain(resolved, exc)) from None
