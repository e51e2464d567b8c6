"""Database servers for the storage tests: URLs from the environment, local defaults.

Under ``CI`` a server that does not answer is a test failure, not a skip.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_URL = os.environ.get(
    "LRSEARCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("LRSEARCH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def server_url(kind: str) -> str:
    """The URL of a reachable server of ``kind`` ("postgresql" or "mysql"), or skip/fail."""
    import sqlalchemy

    url = POSTGRES_URL if kind == "postgresql" else MYSQL_URL
    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        message = f"{kind} server at {url} is not reachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@contextlib.contextmanager
def server_database(kind: str, prefix: str) -> Iterator[str]:
    """The URL of a new, uniquely named database on the ``kind`` server; dropped afterwards."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    url = sqlalchemy.engine.make_url(server_url(kind))
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_url = url.set(database="postgres") if kind == "postgresql" else url
    # CREATE DATABASE cannot run inside a transaction on PostgreSQL.
    admin = sqlalchemy.create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
        if kind == "postgresql":
            # Commits need not wait for the disk: a test database, and much faster.
            conn.execute(sqlalchemy.text(f"ALTER DATABASE {name} SET synchronous_commit = off"))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        force = " WITH (FORCE)" if kind == "postgresql" else ""
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()
