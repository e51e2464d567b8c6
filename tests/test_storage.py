from __future__ import annotations

import pickle
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import psycopg
import pymysql
import pytest

from lrsearch.exceptions import StorageError, StorageURLError
from lrsearch.storage import (
    DEFAULT_STORAGE,
    ENV_VAR,
    _transient_error,
    check_storage_url,
    describe_storage_error,
    mask_text,
    mask_url,
    open_storage,
    resolve_storage_url,
)
from tests.servers import server_url


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def storage_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/contract.db"
    return server_url(request.param)


def test_resolve_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_storage_url(None) == DEFAULT_STORAGE == "sqlite:///lrsearch.db"
    monkeypatch.setenv(ENV_VAR, "sqlite:///env.db")
    assert resolve_storage_url(None) == "sqlite:///env.db"
    assert resolve_storage_url("sqlite:///flag.db") == "sqlite:///flag.db"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://bob:s3cret@db:5432/optuna", "postgresql://bob:***@db:5432/optuna"),
        ("mysql+pymysql://root:p%40ss@h/db", "mysql+pymysql://root:***@h/db"),
        ("postgresql://bob@db/optuna", "postgresql://bob@db/optuna"),
        ("sqlite:///lrsearch.db", "sqlite:///lrsearch.db"),
    ],
)
def test_mask_url(text: str, masked: str) -> None:
    assert mask_url(text) == masked


@pytest.mark.parametrize(
    ("url", "needle", "bad_url"),
    [
        ("notaurl", "is not a URL", True),
        ("postgresql+nosuchdriver://u:pw@127.0.0.1/db", "malformed", True),
        ("http://u:topsecret@host/x", "malformed", True),
        ("sqlite:////nonexistent-dir/sub/x.db", "folder of the SQLite file must exist", False),
        (
            "postgresql+psycopg://u:topsecret@127.0.0.1:1/db",
            "is the database server running",
            False,
        ),
    ],
)
def test_open_storage_errors_are_clear_and_masked(url: str, needle: str, bad_url: bool) -> None:
    """A bad URL is a StorageURLError (bad input, exit 2); a failing database is not (exit 1)."""
    with pytest.raises(StorageError) as info:
        open_storage(url)
    message = str(info.value)
    assert needle in message
    assert "topsecret" not in message and "\n" not in message
    assert isinstance(info.value, StorageURLError) is bad_url


def test_a_bad_url_from_the_environment_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "garbage s3cretpw")
    with pytest.raises(StorageURLError) as info:
        open_storage(None)
    assert str(info.value).startswith("Storage '***' (from $LRSEARCH_STORAGE) is not a URL")


def test_wrong_password_on_a_real_server() -> None:
    url = server_url("mysql").replace("root@", "root:wrongpass@")
    with pytest.raises(StorageError) as info:
        open_storage(url)
    assert "check the user name and password" in str(info.value)
    assert "wrongpass" not in str(info.value)


def test_storage_contract(storage_url: str) -> None:
    """Schema creation, a study with trials and attributes, read back through a new storage."""
    name = f"contract-{uuid.uuid4().hex[:8]}"
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    try:
        study.set_user_attr("lrsearch.config", {"study": {"name": name}})
        for i in range(3):
            trial = study.ask({"family": optuna.distributions.CategoricalDistribution(["a", "b"])})
            trial.report(0.1 * i, 1)
            trial.report(float("nan"), 2)
            trial.set_user_attr("history", {"loss": [1.0, None]})
            study.tell(trial, 0.5 + i / 10)
        again = optuna.load_study(study_name=name, storage=open_storage(storage_url))
        assert [t.value for t in again.trials] == pytest.approx([0.5, 0.6, 0.7])
        assert again.best_trial.number == 2
        assert again.user_attrs["lrsearch.config"]["study"]["name"] == name
        last = again.trials[-1]
        assert last.user_attrs["history"] == {"loss": [1.0, None]}
        assert last.intermediate_values[1] == pytest.approx(0.2)
        assert last.intermediate_values[2] != last.intermediate_values[2]  # NaN kept
    finally:
        optuna.delete_study(study_name=name, storage=storage)


# --- passwords are never printed ----------------------------------------------------------------

# The password is always s3cretpw (split as s3c + something + retpw where it has an @ or a space):
# neither half may appear in anything printed.
LEAKY = {
    "user-password": "postgresql+psycopg://u:s3cretpw@127.0.0.1:1/db",
    "mysql": "mysql+pymysql://root:s3cretpw@127.0.0.1:1/db",
    "query": "postgresql+psycopg://u@127.0.0.1:1/db?password=s3cretpw",
    "query-and-user": "postgresql+psycopg://u:s3cretpw@127.0.0.1:1/db?sslmode=disable&password=s3cretpw",
    "no-scheme": "postgres:s3cretpw@127.0.0.1/db",
    "at-inside": "postgresql+psycopg://u:s3c@retpw@127.0.0.1:1/db",
    "space-inside": "postgresql+psycopg://u:s3c retpw@127.0.0.1:1/db",
    "percent-encoded": "postgresql+psycopg://u:%73%33c%72etpw@127.0.0.1:1/db",
    "percent-encoded-at": "postgresql+psycopg://u:s3c%40retpw@127.0.0.1:1/db",
    "unparseable": "postgresql+psycopg://u:s3cretpw@127.0.0.1:notaport/db",
}


def assert_no_secret(text: str) -> None:
    assert "s3c" not in text and "retpw" not in text, text


@pytest.mark.parametrize("url", LEAKY.values(), ids=LEAKY.keys())
def test_mask_url_hides_the_password_in_every_position(url: str) -> None:
    assert_no_secret(mask_url(url))


@pytest.mark.parametrize("url", LEAKY.values(), ids=LEAKY.keys())
def test_mask_text_hides_the_password_of_urls_in_free_text(url: str) -> None:
    masked = mask_text(f"could not connect to {url}: Connection refused\nsecond line")
    assert_no_secret(masked)
    assert masked.startswith("could not connect to ") and masked.endswith("\nsecond line")


@pytest.mark.parametrize("url", LEAKY.values(), ids=LEAKY.keys())
def test_open_storage_errors_never_contain_the_password(url: str) -> None:
    with pytest.raises(StorageError) as info:
        open_storage(url)
    assert_no_secret(str(info.value))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql+psycopg://u@h/db?sslmode=disable&password=s3cretpw",
            "postgresql+psycopg://u@h/db?password=***&sslmode=disable",
        ),
        ("postgresql+psycopg://u:p%40ss@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
        ("postgresql+psycopg://u:s3c retpw@h/db", "postgresql+psycopg://u:***@h/db"),
        ("postgresql+psycopg://u:s3c@retpw@h/db", "postgresql+psycopg://***"),
        ("postgresql+psycopg://u:pw@h:notaport/db", "postgresql+psycopg://***"),
        ("postgres:s3cretpw@host/db", "***"),
        ("sqlite:///file:/tmp/x.db?mode=ro&uri=true", "sqlite:///file:/tmp/x.db?mode=ro&uri=true"),
    ],
)
def test_mask_url_keeps_what_is_safe_to_show(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("host=db user=bob password=s3cretpw dbname=x", "host=db user=bob password=*** dbname=x"),
        ("password='s3c retpw' host=db", "password=*** host=db"),
        ("error at postgresql://a:b@h/d: boom", "error at postgresql://a:***@h/d: boom"),
        ("error at postgresql://a:b@h:5432/d: boom", "error at postgresql://a:***@h:5432/d: boom"),
        (
            "at postgresql://h:5432/d for bob@corp.example",
            "at postgresql://h:5432/d for bob@corp.example",
        ),
        ("login postgres:s3cretpw@host/db failed", "login postgres:***@host/db failed"),
    ],
)
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    ("url", "echoed"),
    [
        ("postgresql+psycopg://u:s3cretpw@h:1/db", "s3cretpw"),
        ("postgresql+psycopg://u@h:1/db?password=s3cretpw", "s3cretpw"),
        ("postgresql+psycopg://u:s3c%40retpw@h:1/db", "s3c@retpw s3c%40retpw"),
        ("postgresql+psycopg://u:s3c retpw@h:1/db", "'s3c retpw' s3c%20retpw"),
    ],
)
def test_a_driver_message_echoing_the_password_is_scrubbed(url: str, echoed: str) -> None:
    """Should a driver repeat the password (decoded or encoded) in its message, it is hidden."""
    message = describe_storage_error(RuntimeError(f"login failed: {echoed}"), url)
    assert (
        message.startswith("The database refused the request: login failed: ") and "***" in message
    )
    assert_no_secret(message)


def test_ambiguous_at_in_the_password_is_refused_with_the_fix() -> None:
    with pytest.raises(StorageURLError, match="%40"):
        open_storage("postgresql+psycopg://u:s3c@retpw@127.0.0.1:1/db")


# --- only transient errors are retried ----------------------------------------------------------


def test_in_memory_sqlite_is_refused_at_once() -> None:
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"):
        started = time.monotonic()
        with pytest.raises(StorageURLError) as info:
            open_storage(url)
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert "in-memory" in message and "sqlite:///lrsearch.db" in message, message
        assert "\n" not in message


@pytest.fixture
def read_only_sqlite(tmp_path: Path) -> str:
    """A SQLite study database that SQLite itself opens read-only.

    Tests run as root here, and root writes through ``chmod 0444`` (and a read-only folder), so
    permission bits cannot make the file read-only. ``mode=ro`` in a URI filename makes SQLite
    refuse every write with the very error a non-root user gets on a 0444 file: "attempt to write
    a readonly database". The database is made by plain Optuna (rollback journal, not WAL) so
    that opening it does not need to write either.
    """
    path = tmp_path / "ro.db"
    optuna.create_study(storage=f"sqlite:///{path}", study_name="existing")
    return f"sqlite:///file:{path}?mode=ro&uri=true"


@pytest.mark.timeout(60)  # before the fix this retried for 300 s
def test_read_only_sqlite_reads_and_fails_writes_at_once(read_only_sqlite: str) -> None:
    storage = open_storage(read_only_sqlite)
    assert optuna.load_study(study_name="existing", storage=storage).trials == []
    started = time.monotonic()
    with pytest.raises(optuna.exceptions.StorageInternalError) as info:
        optuna.create_study(storage=storage, study_name="new")
    assert time.monotonic() - started < 10
    assert describe_storage_error(info.value) == (
        "The database refused the request: attempt to write a readonly database"
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_over_long_study_name_fails_at_once(kind: str) -> None:
    storage = open_storage(server_url(kind))
    started = time.monotonic()
    with pytest.raises(optuna.exceptions.StorageInternalError) as info:
        optuna.create_study(storage=storage, study_name="x" * 600)  # the column is VARCHAR(512)
    assert time.monotonic() - started < 10
    assert _transient_error(info.value) is None
    assert describe_storage_error(info.value).count("\n") == 0
    storage.engine.dispose()


def _real_errors(kind: str) -> list[tuple[str, BaseException, bool]]:
    """(what, exception as Optuna's storage raises it, transient?) from real servers."""
    import sqlalchemy

    url = sqlalchemy.engine.make_url(server_url(kind))
    out: list[tuple[str, BaseException, bool]] = []
    for what, bad, transient in [
        ("refused", url.set(port=1), True),
        ("no such database", url.set(database="no_such_db_lrsearch"), False),
    ]:
        engine = sqlalchemy.create_engine(bad)
        try:
            with engine.connect():
                pass
        except sqlalchemy.exc.SQLAlchemyError as exc:
            out.append((f"{kind} {what}", exc, transient))
        finally:
            engine.dispose()
    return out


def test_transient_errors_from_real_servers_and_files(tmp_path: Path) -> None:
    import sqlalchemy

    cases = _real_errors("postgresql") + _real_errors("mysql")
    # SQLite: a write while another connection holds the write lock; a read-only file.
    path = tmp_path / "lock.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT * FROM t"))
    except sqlalchemy.exc.OperationalError as exc:
        cases.append(("sqlite locked", exc, True))
    holder.execute("ROLLBACK")
    holder.close()
    engine.dispose()
    ro = sqlalchemy.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with ro.begin() as conn:
            conn.execute(sqlalchemy.text("INSERT INTO t VALUES (1)"))
    except sqlalchemy.exc.OperationalError as exc:
        cases.append(("sqlite read-only", exc, False))
    ro.dispose()
    assert len(cases) == 6, [what for what, _, _ in cases]
    for what, exc, transient in cases:
        # Optuna's storage raises StorageInternalError from the SQLAlchemy error.
        wrapped = optuna.exceptions.StorageInternalError("commit failed")
        wrapped.__cause__ = exc
        assert (_transient_error(wrapped) is not None) is transient, what
        assert (_transient_error(exc) is not None) is transient, what


def _driver(orig: Exception, transient: bool) -> Any:
    code = getattr(orig, "sqlstate", None) or (
        orig.args[0] if isinstance(orig.args[0], int) else ""
    )
    name = f"{type(orig).__module__.split('.')[0]}-{type(orig).__name__}-{code}".rstrip("-")
    return pytest.param(orig, transient, id=name)


@pytest.mark.parametrize(
    ("orig", "transient"),
    [
        # What the drivers raise, including conditions a test cannot cheaply produce on a
        # shared server (shutdown, too many connections, deadlock).
        _driver(
            psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
            True,
        ),
        _driver(psycopg.errors.CrashShutdown("terminating connection because of crash"), True),
        _driver(psycopg.errors.CannotConnectNow("the database system is starting up"), True),
        _driver(psycopg.errors.TooManyConnections("sorry, too many clients already"), True),
        _driver(psycopg.errors.SerializationFailure("could not serialize access"), True),
        _driver(psycopg.errors.DeadlockDetected("deadlock detected"), True),
        _driver(psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), True),
        _driver(psycopg.errors.ConnectionFailure("connection failure"), True),
        _driver(
            psycopg.OperationalError(
                "connection failed: FATAL: the database system is starting up"
            ),
            True,
        ),
        _driver(
            psycopg.OperationalError(
                'connection failed: FATAL:  database "test" is not currently accepting connections'
            ),
            True,
        ),
        _driver(
            psycopg.OperationalError(
                "consuming input failed: server closed the connection unexpectedly"
            ),
            True,
        ),
        _driver(
            psycopg.errors.StringDataRightTruncation(
                "value too long for type character varying(512)"
            ),
            False,
        ),
        _driver(psycopg.errors.UndefinedTable('relation "studies" does not exist'), False),
        _driver(psycopg.errors.InvalidPassword("password authentication failed"), False),
        _driver(
            psycopg.errors.ReadOnlySqlTransaction(
                "cannot execute INSERT in a read-only transaction"
            ),
            False,
        ),
        _driver(
            pymysql.err.OperationalError(2002, "Can't connect to local server through socket"),
            True,
        ),
        _driver(pymysql.err.OperationalError(2003, "Can't connect to MySQL server"), True),
        _driver(pymysql.err.OperationalError(2006, "MySQL server has gone away"), True),
        _driver(
            pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
            True,
        ),
        _driver(pymysql.err.OperationalError(1040, "Too many connections"), True),
        _driver(pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), True),
        _driver(
            pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"), True
        ),
        _driver(pymysql.err.OperationalError(1053, "Server shutdown in progress"), True),
        _driver(
            pymysql.err.DataError(1406, "Data too long for column 'study_name' at row 1"), False
        ),
        _driver(
            pymysql.err.OperationalError(1406, "Data too long for column 'study_name' at row 1"),
            False,
        ),
        _driver(pymysql.err.OperationalError(1045, "Access denied for user"), False),
        _driver(pymysql.err.OperationalError(1049, "Unknown database 'x'"), False),
        _driver(pymysql.err.ProgrammingError(1146, "Table 'test.studies' doesn't exist"), False),
        _driver(sqlite3.OperationalError("database is locked"), True),
        _driver(sqlite3.OperationalError("database table is locked"), True),
        _driver(sqlite3.OperationalError("attempt to write a readonly database"), False),
        _driver(sqlite3.OperationalError("no such table: studies"), False),
        _driver(sqlite3.OperationalError("unable to open database file"), False),
    ],
)
def test_which_driver_errors_are_transient(orig: Exception, transient: bool) -> None:
    import sqlalchemy.exc

    base = {"psycopg": psycopg.Error, "pymysql": pymysql.err.Error, "sqlite3": sqlite3.Error}
    dbapi_error = base[type(orig).__module__.split(".")[0]]
    wrapper = sqlalchemy.exc.DBAPIError.instance("INSERT ...", {}, orig, dbapi_error)
    assert isinstance(wrapper, sqlalchemy.exc.DBAPIError) and wrapper.orig is orig
    assert (_transient_error(wrapper) is not None) is transient


# --- pickling, and read commands that must not create a database --------------------------------


def test_storage_pickles_and_the_copy_reads_the_same_study(storage_url: str) -> None:
    name = f"pickle-{uuid.uuid4().hex[:8]}"
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name=name)
    try:
        study.tell(study.ask(), 0.25)
        copy = pickle.loads(pickle.dumps(storage))
        assert type(copy) is type(storage) and copy.retry_seconds == storage.retry_seconds
        again = optuna.load_study(study_name=name, storage=copy)
        assert [t.value for t in again.trials] == [0.25]
        copy.engine.dispose()
    finally:
        optuna.delete_study(study_name=name, storage=storage)
        storage.engine.dispose()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (None, "No database at lrsearch.db (sqlite:///lrsearch.db)"),
        ("sqlite:///sub/x.db", "No database at sub/x.db (sqlite:///sub/x.db)"),
        ("sqlite:///file:ro.db?mode=ro&uri=true", "No database at ro.db"),
    ],
)
def test_open_storage_without_create_makes_no_database(
    url: str | None, shown: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(StorageURLError) as info:
        open_storage(url, create=False)
    message = str(info.value)
    assert message.startswith(shown) and "lrsearch start" in message and "--storage" in message
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["sub"]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_open_storage_without_create_opens_an_existing_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    optuna.create_study(storage=open_storage("sqlite:///made.db"), study_name="s")
    storage = open_storage("sqlite:///made.db", create=False, heartbeat_interval=5)
    assert storage.heartbeat_interval == 5
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["s"]


def test_check_storage_url_connects_to_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL to a closed port passes (no connection is tried); bad URLs fail as in open_storage."""
    monkeypatch.chdir(tmp_path)
    refused = "postgresql+psycopg://u:pw@127.0.0.1:1/db"
    assert check_storage_url(refused) == refused
    assert check_storage_url("sqlite:///new.db") == "sqlite:///new.db"
    for bad in ("notaurl", "sqlite://", "http://u:s3cretpw@h/x", "postgresql+nosuchdriver://h/d"):
        with pytest.raises(StorageURLError) as info:
            check_storage_url(bad)
        assert_no_secret(str(info.value))
    with pytest.raises(StorageURLError, match="No database at new.db"):
        check_storage_url("sqlite:///new.db", create=False)
    assert list(tmp_path.iterdir()) == []
