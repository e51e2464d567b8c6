"""``lrsearch dashboard``: optuna-dashboard served on a study, read-only refusing changes."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from lrsearch.dashboard import is_loopback
from tests.helpers import free_port, start


def make_study(path: Path) -> str:
    url = f"sqlite:///{path}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="dash", storage=url, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    return url


def request(url: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, object]]:
    url = make_study(tmp_path / "x.db")
    port = free_port()
    proc = start(["--storage", url, *request.param], port)
    try:
        yield {"url": url, "base": f"http://127.0.0.1:{port}", "proc": proc}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def study_id(url: str) -> int:
    return optuna.load_study(study_name="dash", storage=url)._study_id


@pytest.mark.parametrize("served", [["--read-only"]], indirect=True)
def test_read_only_serves_pages_and_refuses_a_delete(served: dict[str, object]) -> None:
    base, url = str(served["base"]), str(served["url"])
    status, body = request(f"{base}/api/studies")
    assert status == 200 and b"dash" in body
    assert request(f"{base}/dashboard/studies/{study_id(url)}")[0] == 200
    status, body = request(f"{base}/api/studies/{study_id(url)}", method="DELETE")
    assert status == 403 and b"read-only" in body
    assert request(f"{base}/api/studies", method="POST")[0] == 403
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["dash"]


@pytest.mark.parametrize("served", [[]], indirect=True)
def test_without_read_only_a_delete_goes_through(served: dict[str, object]) -> None:
    base, url = str(served["base"]), str(served["url"])
    status, _ = request(f"{base}/api/studies/{study_id(url)}", method="DELETE")
    assert status in (200, 204)
    assert optuna.get_all_study_summaries(url) == []


def test_binding_beyond_loopback_warns_loudly(tmp_path: Path) -> None:
    url = make_study(tmp_path / "x.db")
    port = free_port()
    proc = start(["--storage", url, "--host", "0.0.0.0"], port)
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert "WARNING: the dashboard listens on 0.0.0.0" in err
    assert "--read-only" in err


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert not is_loopback("example.org")


@pytest.mark.parametrize("served", [[]], indirect=True)
def test_pages_get_the_wrapping_rule_and_the_api_is_untouched(served: dict[str, object]) -> None:
    from lrsearch.dashboard import WRAP_CSS

    base = str(served["base"])
    req = urllib.request.Request(f"{base}/dashboard")
    with urllib.request.urlopen(req, timeout=10) as response:
        page = response.read()
        assert int(response.headers["Content-Length"]) == len(page)
    assert page.count(WRAP_CSS) == 1 and page.index(WRAP_CSS) < page.index(b"</head>")
    status, body = request(f"{base}/api/studies")
    assert status == 200 and b"lrsearch: wrap" not in body
    assert request(f"{base}/dashboard", method="HEAD")[0] == 200
