"""Database servers for the storage tests: URLs from the environment, local defaults.

Under ``CI`` a server that does not answer is a test failure, not a skip.
"""

from __future__ import annotations

import os

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
