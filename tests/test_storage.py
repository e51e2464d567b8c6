from __future__ import annotations

import uuid

import optuna
import pytest

from lrsearch.exceptions import StorageError
from lrsearch.storage import DEFAULT_STORAGE, ENV_VAR, mask_url, open_storage, resolve_storage_url
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
        ("error at postgresql://a:b@h/d: boom", "error at postgresql://a:***@h/d: boom"),
    ],
)
def test_mask_url(text: str, masked: str) -> None:
    assert mask_url(text) == masked


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("notaurl", "is not a URL"),
        ("postgresql+nosuchdriver://u:pw@127.0.0.1/db", "malformed"),
        ("sqlite:////nonexistent-dir/sub/x.db", "folder of the SQLite file must exist"),
        ("postgresql+psycopg://u:topsecret@127.0.0.1:1/db", "is the database server running"),
    ],
)
def test_open_storage_errors_are_clear_and_masked(url: str, needle: str) -> None:
    with pytest.raises(StorageError) as info:
        open_storage(url)
    message = str(info.value)
    assert needle in message
    assert "topsecret" not in message and "\n" not in message


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
