"""lrsearch.queries: the same answers from SQL (SQLite, PostgreSQL, MariaDB) and Optuna's API.

Every test builds its studies with Optuna (``ask``/``report``/``tell``, attributes written by
:class:`lrsearch.records.TrialRecord`) on each storage: the three RDB backends read through SQL,
and Optuna's in-memory and journal storages read through the public-API fallback. On the RDB
backends the fallback is also run on the same study and must give identical answers. Each server
backend gets its own database for the module (dropped at the end), so ``study_rows`` sees only
this module's studies.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import pickle
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import optuna
import pytest
from optuna.samplers import PartialFixedSampler, RandomSampler
from optuna.storages._rdb.models import TrialModel
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from lrsearch import queries
from lrsearch._optuna import storage_of, study_id
from lrsearch.queries import FamilyStats, StudyRow
from lrsearch.records import StudyRecord, TrialRecord, stored_names
from lrsearch.storage import open_storage
from lrsearch.study import StudyHandle, heartbeat_settings
from tests.servers import server_database

KINDS = ["sqlite", "postgresql", "mysql", "memory", "journal"]
SQL_KINDS = {"sqlite", "postgresql", "mysql"}
CHOICES = ["cosine", "cyclic", "onecycle", "plateau", "polynomial", "wsd", "step"]
OUTCOME, LEGACY_OUTCOME = stored_names(TrialRecord, "outcome")

optuna.logging.set_verbosity(optuna.logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture(scope="module", params=KINDS)
def kind_and_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str | None]]:
    kind = request.param
    if kind in ("memory", "journal"):
        yield kind, None
    elif kind == "sqlite":
        yield kind, f"sqlite:///{tmp_path_factory.mktemp('queries') / 'queries.db'}"
    else:
        with server_database(kind, "lrsearch_queries") as url:
            yield kind, url


@pytest.fixture
def kind(kind_and_url: tuple[str, str | None]) -> str:
    return kind_and_url[0]


@pytest.fixture
def storage(kind_and_url: tuple[str, str | None], tmp_path: Any) -> Iterator[Any]:
    """A fresh storage object of the backend (the server databases live for the module)."""
    kind, url = kind_and_url
    if kind == "memory":
        yield optuna.storages.InMemoryStorage()
    elif kind == "journal":
        backend = JournalFileBackend(str(tmp_path / "journal.log"))
        yield optuna.storages.JournalStorage(backend)
    else:
        assert url is not None
        opened = open_storage(url)
        yield opened
        opened.engine.dispose()


@pytest.fixture
def make_study(storage: Any) -> Iterator[Callable[..., optuna.Study]]:
    """Creates studies with fresh names on ``storage``; deletes them after the test."""
    names: list[str] = []

    def make(**kwargs: Any) -> optuna.Study:
        names.append(f"queries-{uuid.uuid4().hex[:10]}")
        return optuna.create_study(study_name=names[-1], storage=storage, **kwargs)

    yield make
    for name in names:
        optuna.delete_study(study_name=name, storage=storage)


def _ask(study: optuna.Study, family: str | None = None) -> optuna.Trial:
    """A new trial whose ``family`` parameter is ``family`` (none when ``None``)."""
    if family is None:
        study.sampler = RandomSampler(seed=0)
        return study.ask()
    study.sampler = PartialFixedSampler({"family": family}, RandomSampler(seed=0))
    trial = study.ask()
    trial.suggest_categorical("family", CHOICES)
    return trial


def _report(trial: optuna.Trial, values: dict[int, float]) -> None:
    for step, value in values.items():
        trial.report(value, step)


# (number, state, value, family, diverged, last intermediate) of the study _build_maximize makes.
EXPECTED_ROWS = [
    (0, "COMPLETE", 0.8, "cosine", False, 0.8),
    (1, "COMPLETE", 0.9, "cosine", False, 0.9),
    (2, "COMPLETE", 0.9, "onecycle", False, None),
    (3, "PRUNED", 0.4, "wsd", False, 0.4),
    (4, "PRUNED", 0.2, "wsd", True, 0.2),
    (5, "PRUNED", 0.25, "polynomial", True, 0.25),
    (6, "PRUNED", 0.35, "polynomial", False, 0.35),
    (7, "FAIL", None, "plateau", False, 0.1),
    (8, "RUNNING", None, "plateau", False, 0.2),
    (9, "FAIL", None, None, False, None),
    (10, "COMPLETE", 0.5, "cyclic", False, None),
    (11, "WAITING", None, "cyclic", False, None),
    (12, "WAITING", None, None, False, None),
]
EXPECTED_COUNTS = {
    "running": 1,
    "waiting": 2,
    "complete": 4,
    "pruned": 2,
    "diverged": 2,
    "fail": 2,
}


def _build_maximize(make_study: Callable[..., optuna.Study]) -> optuna.Study:
    """Every kind of trial lrsearch leaves in a study (see EXPECTED_ROWS)."""
    study = make_study(direction="maximize")
    StudyRecord(n_trials=40, config={"study": {"metric": "val_accuracy"}}).write(study)

    t = _ask(study, "cosine")  # 0: steps reported out of order; the largest step is last
    _report(t, {0: 0.5, 7: 0.8, 3: 0.7})
    TrialRecord(outcome="complete").write(t)
    study.tell(t, 0.8)
    t = _ask(study, "cosine")  # 1
    _report(t, {0: 0.6, 1: 0.9})
    study.tell(t, 0.9)
    study.tell(_ask(study, "onecycle"), 0.9)  # 2: ties cosine's best, better median
    t = _ask(study, "wsd")  # 3: pruned
    _report(t, {0: 0.3, 1: 0.4})
    TrialRecord(outcome="pruned").write(t)
    study.tell(t, state=TrialState.PRUNED)
    t = _ask(study, "wsd")  # 4: diverged
    _report(t, {0: 0.2})
    TrialRecord(outcome="diverged").write(t)
    study.tell(t, state=TrialState.PRUNED)
    t = _ask(study, "polynomial")  # 5: diverged, written by an older lrsearch (bare key)
    _report(t, {0: 0.25})
    t.set_user_attr(LEGACY_OUTCOME, "diverged")
    study.tell(t, state=TrialState.PRUNED)
    t = _ask(study, "polynomial")  # 6: both keys: the current one wins
    _report(t, {0: 0.35})
    t.set_user_attr(LEGACY_OUTCOME, "diverged")
    TrialRecord(outcome="pruned").write(t)
    study.tell(t, state=TrialState.PRUNED)
    t = _ask(study, "plateau")  # 7: failed
    _report(t, {0: 0.1})
    study.tell(t, state=TrialState.FAIL)
    t = _ask(study, "plateau")  # 8: running
    _report(t, {0: 0.2})
    study.tell(_ask(study), state=TrialState.FAIL)  # 9: failed before sampling a family
    t = _ask(study, "cyclic")  # 10: "diverged" on a COMPLETE trial is not a divergence
    TrialRecord(outcome="diverged").write(t)
    study.tell(t, 0.5)
    study.enqueue_trial({"family": "cyclic"}, user_attrs={"note": "baseline"})  # 11: waiting
    study.enqueue_trial({"learning_rate": 0.1})  # 12: waiting, without a family
    return study


def _build_minimize(make_study: Callable[..., optuna.Study]) -> optuna.Study:
    study = make_study(direction="minimize")
    for family, value in [("cosine", 0.3), ("cosine", 0.1), ("step", 0.1), ("step", 0.15)]:
        study.tell(_ask(study, family), value)
    study.tell(_ask(study, "wsd"), state=TrialState.PRUNED)
    return study


def _light(rows: list[queries.TrialRow]) -> list[tuple[Any, ...]]:
    return [(r.number, r.state, r.value, r.family, r.diverged, r.last_intermediate) for r in rows]


def test_the_sql_path_is_taken_on_rdb_storages_only(kind: str, storage: Any) -> None:
    assert queries.uses_sql(storage) is (kind in SQL_KINDS)


def test_trial_rows(kind: str, make_study: Callable[..., optuna.Study]) -> None:
    study = _build_maximize(make_study)
    storage, sid = storage_of(study), study_id(study)

    rows = queries.trial_rows(storage, sid)

    assert _light(rows) == EXPECTED_ROWS
    frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert [r.trial_id for r in rows] == [frozen[r.number]._trial_id for r in rows]
    assert [r.datetime_start is None for r in rows] == [r.state == "WAITING" for r in rows]
    if kind in SQL_KINDS:  # the public-API path on the same study gives the same rows
        assert rows == queries._api_trial_rows(storage, sid)
        # and the start times are Optuna's, as FrozenTrial shows them (local time)
        backend: Any = getattr(storage, "_backend", storage)  # under Optuna's cache
        assert [r.datetime_start for r in rows] == [
            t.datetime_start for t in backend.get_all_trials(sid, deepcopy=False)
        ]


def test_cached_rows_follow_the_database_as_the_sql_rows_do(
    make_study: Callable[..., optuna.Study],
) -> None:
    """A worker reads its rows through Optuna's cache: the same rows as SQL, also after a trial
    ends, one is added and a trial is written by another process (another storage object)."""
    study = _build_maximize(make_study)
    storage, sid = storage_of(study), study_id(study)
    assert queries.trial_rows(storage, sid, cached=True) == queries.trial_rows(storage, sid)

    running = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
    for t in running:
        study.tell(t.number, 0.5)
    study.tell(_ask(study, "wsd"), 0.25)
    cached = queries.trial_rows(storage, sid, cached=True)
    assert cached == queries.trial_rows(storage, sid)
    assert 0.25 in [r.value for r in cached]
    url = getattr(getattr(storage, "_backend", storage), "url", None)
    if url is not None:  # a second process's trial, written through its own storage
        other = optuna.load_study(study_name=study.study_name, storage=url)
        other.tell(_ask(other, "cosine"), 0.75)
        cached = queries.trial_rows(storage, sid, cached=True)
        assert cached == queries.trial_rows(storage, sid)
        assert 0.75 in [r.value for r in cached]


@pytest.mark.parametrize(
    ("states", "last"),
    [
        (("RUNNING",), None),
        (("FAIL",), 1),
        (("FAIL", "WAITING"), 2),
        (("PRUNED", "COMPLETE"), None),
        (("PRUNED",), 10),
        (None, 3),
        (("RUNNING",), 0),
    ],
)
def test_trial_rows_of_some_states(
    kind: str, make_study: Callable[..., optuna.Study], states: Any, last: int | None
) -> None:
    study = _build_maximize(make_study)
    storage, sid = storage_of(study), study_id(study)

    rows = queries.trial_rows(storage, sid, states=states, last=last)

    expected = [r for r in EXPECTED_ROWS if states is None or r[1] in states]
    expected = expected[-last:] if last else [] if last == 0 else expected
    assert _light(rows) == expected
    assert rows == [
        r for r in queries.trial_rows(storage, sid) if r.number in {e[0] for e in expected}
    ]
    if kind in SQL_KINDS:
        assert rows == queries._api_trial_rows(storage, sid, states=states, last=last)


def test_trial_rows_rejects_an_unknown_state(make_study: Callable[..., optuna.Study]) -> None:
    study = make_study()
    with pytest.raises(ValueError, match="'DONE'.*COMPLETE"):
        queries.trial_rows(storage_of(study), study_id(study), states=["DONE"])
    with pytest.raises(ValueError, match="last=-1"):
        queries.trial_rows(storage_of(study), study_id(study), last=-1)


def test_a_nan_intermediate_value_is_read_as_nan(make_study: Callable[..., optuna.Study]) -> None:
    study = make_study(direction="maximize")
    t = _ask(study, "cosine")
    _report(t, {0: 0.5, 1: float("nan")})
    TrialRecord(outcome="diverged").write(t)
    study.tell(t, state=TrialState.PRUNED)

    (row,) = queries.trial_rows(storage_of(study), study_id(study))

    assert row.diverged and row.value is None  # Optuna stores no value for a NaN last step
    assert row.last_intermediate is not None and math.isnan(row.last_intermediate)


def test_state_counts(kind: str, make_study: Callable[..., optuna.Study]) -> None:
    study = _build_maximize(make_study)
    storage, sid = storage_of(study), study_id(study)

    counts = queries.state_counts(storage, sid)

    assert counts == EXPECTED_COUNTS
    assert list(counts) == ["running", "complete", "pruned", "diverged", "fail", "waiting"]
    if kind in SQL_KINDS:
        assert counts == queries._api_state_counts(storage, sid)


def test_state_counts_of_a_study_without_trials(make_study: Callable[..., optuna.Study]) -> None:
    study = make_study()
    assert queries.state_counts(storage_of(study), study_id(study)) == {}
    assert queries.trial_rows(storage_of(study), study_id(study)) == []


def test_family_stats_maximize(make_study: Callable[..., optuna.Study]) -> None:
    study = _build_maximize(make_study)
    rows = queries.trial_rows(storage_of(study), study_id(study))

    stats = queries.family_stats(rows, maximize=True)

    # onecycle ties cosine's best (0.9) with the better median; families without a complete
    # trial come last, by name.
    assert stats == [
        FamilyStats("onecycle", 1, complete=1, best=0.9, best_trial=2, median=0.9, values=[0.9]),
        FamilyStats(
            "cosine",
            2,
            complete=2,
            best=0.9,
            best_trial=1,
            median=(0.8 + 0.9) / 2,
            values=[0.8, 0.9],
        ),
        FamilyStats(
            "cyclic", 2, complete=1, running=1, best=0.5, best_trial=10, median=0.5, values=[0.5]
        ),
        FamilyStats("plateau", 2, failed=1, running=1),
        FamilyStats("polynomial", 2, pruned=1, diverged=1),
        FamilyStats("wsd", 2, pruned=1, diverged=1),
    ]


def test_family_stats_minimize(make_study: Callable[..., optuna.Study]) -> None:
    study = _build_minimize(make_study)
    rows = queries.trial_rows(storage_of(study), study_id(study))

    stats = queries.family_stats(rows, maximize=False)

    assert [(s.family, s.best, s.best_trial, s.median) for s in stats] == [
        ("step", 0.1, 2, 0.125),
        ("cosine", 0.1, 1, 0.2),
        ("wsd", None, None, None),
    ]


def test_family_stats_ignores_infinite_values() -> None:
    rows = [
        queries.TrialRow(0, 1, "COMPLETE", math.inf, "cosine", False, None, None),
        queries.TrialRow(1, 2, "COMPLETE", 0.5, "cosine", False, None, None),
    ]
    (stats,) = queries.family_stats(rows, maximize=True)
    assert (stats.complete, stats.best, stats.values) == (2, 0.5, [0.5])


def test_trial_id_of(make_study: Callable[..., optuna.Study]) -> None:
    study = _build_minimize(make_study)
    storage, sid = storage_of(study), study_id(study)

    assert queries.trial_id_of(storage, sid, 3) == study.trials[3]._trial_id
    assert queries.trial_id_of(storage, sid, 5) is None
    assert queries.trial_id_of(storage, sid, -1) is None


def test_study_rows(kind: str, storage: Any, make_study: Callable[..., optuna.Study]) -> None:
    big, small = _build_maximize(make_study), _build_minimize(make_study)
    empty = make_study(direction="maximize")
    multi = make_study(directions=["maximize", "minimize"])
    multi.tell(multi.ask(), [0.5, 0.5])

    rows = {r.name: r for r in queries.study_rows(storage)}

    def created(study: optuna.Study) -> Any:
        return min(t.datetime_start for t in study.get_trials() if t.datetime_start)

    assert rows[big.study_name] == StudyRow(
        big.study_name, study_id(big), "maximize", 13, 0.9, 40, "val_accuracy", created(big)
    )
    assert rows[small.study_name] == StudyRow(
        small.study_name, study_id(small), "minimize", 5, 0.1, None, None, created(small)
    )
    assert rows[empty.study_name] == StudyRow(
        empty.study_name, study_id(empty), "maximize", 0, None, None, None, None
    )
    assert rows[multi.study_name] == StudyRow(
        multi.study_name, study_id(multi), "maximize", 1, None, None, None, created(multi)
    )
    if kind in SQL_KINDS:
        assert queries.study_rows(storage) == queries._api_study_rows(storage)


def test_an_unknown_schema_version_takes_the_public_api(tmp_path: Any) -> None:
    """A database whose Alembic revision these queries do not know is read through Optuna's
    API, with the same answers as the SQL on the known revision."""
    url = f"sqlite:///{tmp_path / 'future.db'}"
    known = open_storage(url)
    study = optuna.create_study(study_name="future", storage=known, direction="maximize")
    _build_maximize_into(study)
    sid = study_id(study)
    unknown = open_storage(url)  # opened while the revision is still a known one
    assert queries.uses_sql(known)
    expected = (
        queries.trial_rows(known, sid),
        queries.state_counts(known, sid),
        queries.study_rows(known),
    )

    with contextlib.closing(sqlite3.connect(tmp_path / "future.db")) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = 'v99.0.0.a'")

    assert not queries.uses_sql(unknown)
    assert unknown.get_current_version() == "v99.0.0.a"
    got = (
        queries.trial_rows(unknown, sid),
        queries.state_counts(unknown, sid),
        queries.study_rows(unknown),
    )
    assert got == expected
    assert _light(got[0]) == EXPECTED_ROWS
    known.engine.dispose()
    unknown.engine.dispose()


def _build_maximize_into(study: optuna.Study) -> None:
    _build_maximize(lambda **_: study)


@pytest.mark.parametrize("zone", ["America/St_Johns", "Europe/Berlin", "Australia/Lord_Howe"])
def test_start_times_convert_as_optuna_converts_them_across_dst(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored naive UTC -> local naive time, as Optuna's TrialModel.datetime_start converts it,
    minute by minute across a year's offset changes (half-hour zones and a 30-minute DST)."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        to_local = queries._ToLocal(utc=True)
        start = datetime.datetime(2026, 1, 1, 0, 7, 13, 500)
        model = TrialModel()
        for minutes in range(0, 366 * 24 * 60, 13):
            stored = start + datetime.timedelta(minutes=minutes)
            model._datetime_start_utc = stored
            assert to_local(stored) == model.datetime_start, stored
    finally:
        monkeypatch.undo()
        time.tzset()


# --- best per family ------------------------------------------------------------------------


def _bests_from_rows(storage: Any, sid: int, maximize: bool) -> list[tuple[Any, ...]]:
    """What family_stats makes of every row: the reference family_bests must agree with."""
    stats = queries.family_stats(queries.trial_rows(storage, sid), maximize=maximize)
    return [(s.family, s.best, s.best_trial) for s in stats if s.best is not None]


def _bests(storage: Any, sid: int, maximize: bool) -> list[tuple[Any, ...]]:
    return [
        (b.family, b.best, b.best_trial)
        for b in queries.family_bests(storage, sid, maximize=maximize)
    ]


def test_family_bests_maximize(kind: str, make_study: Callable[..., optuna.Study]) -> None:
    study = _build_maximize(make_study)
    storage, sid = storage_of(study), study_id(study)

    bests = _bests(storage, sid, True)

    # onecycle ties cosine's 0.9 with the better median (0.9 against 0.85)
    assert bests == [("onecycle", 0.9, 2), ("cosine", 0.9, 1), ("cyclic", 0.5, 10)]
    assert bests == _bests_from_rows(storage, sid, True)
    if kind in SQL_KINDS:
        assert queries.family_bests(storage, sid, maximize=True) == queries._api_family_bests(
            storage, sid, maximize=True
        )


def test_family_bests_minimize(kind: str, make_study: Callable[..., optuna.Study]) -> None:
    study = _build_minimize(make_study)
    storage, sid = storage_of(study), study_id(study)

    bests = _bests(storage, sid, False)

    assert bests == [("step", 0.1, 2), ("cosine", 0.1, 1)]
    assert bests == _bests_from_rows(storage, sid, False)
    if kind in SQL_KINDS:
        assert queries.family_bests(storage, sid, maximize=False) == queries._api_family_bests(
            storage, sid, maximize=False
        )


def _build_edges(make_study: Callable[..., optuna.Study]) -> optuna.Study:
    """Ties within and across families, an infinite value, and complete trials whose family is
    only the one they were enqueued with (no ``family`` parameter)."""
    study = make_study(direction="maximize")
    for value in (0.7, 0.7, 0.6925, 0.1, 0.1):  # 0-4: cosine's best 0.7 first at #0
        study.tell(_ask(study, "cosine"), value)  # median 0.6925
    study.tell(_ask(study, "step"), math.inf)  # 5: step has no finite value
    study.enqueue_trial({"family": "wsd"})
    study.tell(_ask(study), 0.7)  # 6: wsd only by its fixed params; ties cosine's best
    study.tell(_ask(study, "wsd"), 0.69)  # 7: wsd's median 0.695 (0.69 without #6) wins
    study.enqueue_trial({"family": "onecycle"})
    study.tell(_ask(study), state=TrialState.FAIL)  # 8: not complete
    study.tell(_ask(study, "cyclic"), -math.inf)  # 9: cyclic neither
    study.tell(_ask(study, "polynomial"), 0.2)  # 10
    study.tell(_ask(study, "polynomial"), 0.25)  # 11
    return study


def test_family_bests_with_ties_infinities_and_enqueued_families(
    kind: str, make_study: Callable[..., optuna.Study]
) -> None:
    study = _build_edges(make_study)
    storage, sid = storage_of(study), study_id(study)

    bests = _bests(storage, sid, True)

    assert bests == [("wsd", 0.7, 6), ("cosine", 0.7, 0), ("polynomial", 0.25, 11)]
    assert bests == _bests_from_rows(storage, sid, True)
    minimize = _bests(storage, sid, False)
    assert minimize == [("cosine", 0.1, 3), ("polynomial", 0.2, 10), ("wsd", 0.69, 7)]
    assert minimize == _bests_from_rows(storage, sid, False)
    if kind in SQL_KINDS:
        for maximize in (True, False):
            assert queries.family_bests(
                storage, sid, maximize=maximize
            ) == queries._api_family_bests(storage, sid, maximize=maximize)


def test_family_bests_of_a_study_without_complete_trials(
    make_study: Callable[..., optuna.Study],
) -> None:
    study = make_study()
    assert queries.family_bests(storage_of(study), study_id(study), maximize=True) == []
    study.tell(_ask(study, "cosine"), state=TrialState.FAIL)
    assert queries.family_bests(storage_of(study), study_id(study), maximize=True) == []


# --- StudyHandle.status, from these reads ---------------------------------------------------


def _status_from_rows(handle: StudyHandle) -> dict[str, Any]:
    """``lrsearch status``'s answer computed from every trial row, as before the aggregate
    reads: what StudyHandle.status() must still answer."""
    rows = handle.rows()
    counts: dict[str, int] = {}
    for r in rows:
        state = "diverged" if r.diverged else r.state.lower()
        counts[state] = counts.get(state, 0) + 1
    storage = storage_of(handle.optuna)
    failed = []
    for r in [r for r in rows if r.state == "FAIL"][-5:]:
        record = TrialRecord.of(storage.get_trial(r.trial_id))
        error = record.error or "no error recorded: its worker stopped (killed, crashed or lost)"
        if record.interrupted:
            error = "interrupted (Ctrl-C)"
        failed.append({"number": r.number, "family": r.family, "error": error})
    return {
        "counts": counts,
        "best_per_family": {
            s.family: {"value": s.best, "number": s.best_trial}
            for s in handle.family_stats(rows)
            if s.best is not None
        },
        "running": [
            {
                "number": r.number,
                "family": r.family,
                "started": r.datetime_start.isoformat(" ", "seconds"),
                "stale": False,
            }
            for r in rows
            if r.state == "RUNNING" and r.datetime_start is not None
        ],
        "failed": failed,
    }


def test_status_answers_as_the_rows_do(make_study: Callable[..., optuna.Study]) -> None:
    study = _build_maximize(make_study)
    family = optuna.distributions.CategoricalDistribution(CHOICES)
    for i in range(6):  # 13-18: more failures than status shows, errors of each kind
        record = TrialRecord(error=f"ValueError: boom {i}")
        if i == 4:
            record = TrialRecord(interrupted=True)
        elif i == 5:
            record = TrialRecord()
        failed = optuna.trial.create_trial(
            state=TrialState.FAIL,
            params={"family": "step"},
            distributions={"family": family},
            user_attrs=record.attrs(),
        )
        study.add_trial(failed)  # (ask() would take the waiting trials)
    handle = StudyHandle(study)

    status = handle.status().to_dict()

    expected = _status_from_rows(handle)
    assert {k: status[k] for k in expected} == expected
    # in Optuna's state order (it was the order of first appearance)
    assert list(status["counts"]) == [
        "running",
        "complete",
        "pruned",
        "diverged",
        "fail",
        "waiting",
    ]
    assert [f["number"] for f in status["failed"]] == [14, 15, 16, 17, 18]
    assert status["failed"][-2:] == [
        {"number": 17, "family": "step", "error": "interrupted (Ctrl-C)"},
        {
            "number": 18,
            "family": "step",
            "error": "no error recorded: its worker stopped (killed, crashed or lost)",
        },
    ]
    assert list(status["best_per_family"]) == ["onecycle", "cosine", "cyclic"]
    assert [r["number"] for r in status["running"]] == [8]
    assert (status["metric"], status["budget"], status["best"]["value"]) == (
        "val_accuracy",
        40,
        0.9,
    )


def test_status_of_a_study_without_trials(make_study: Callable[..., optuna.Study]) -> None:
    status = StudyHandle(make_study()).status()
    assert (status.counts, status.best_per_family, status.running, status.failed) == (
        {},
        {},
        [],
        [],
    )
    assert status.best is None


# --- opening a storage for reading ----------------------------------------------------------


@pytest.fixture
def sql_url(kind_and_url: tuple[str, str | None]) -> str:
    kind, url = kind_and_url
    if url is None:
        pytest.skip(f"{kind} has no URL")
    return url


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_storage_opened_for_reading_is_set_up_as_optuna_sets_one_up(sql_url: str) -> None:
    """The read path fills in the storage itself (without Optuna's _VersionManager): it must
    have exactly the attributes Optuna's constructor sets, with the same values."""
    full = open_storage(sql_url, **heartbeat_settings())
    read = open_storage(sql_url, create=False, **heartbeat_settings())
    try:
        assert type(read) is type(full)
        assert set(vars(read)) == set(vars(full))
        for name in ("url", "engine_kwargs", "heartbeat_interval", "grace_period"):
            assert getattr(read, name) == getattr(full, name), name
        assert type(read.heartbeat_stale_trial_callback) is type(
            full.heartbeat_stale_trial_callback
        )
        assert read.failed_trial_callback is read.heartbeat_stale_trial_callback
        assert read.skip_compatibility_check is True
        assert read.get_current_version() == full.get_current_version()
        assert read.get_head_version() == full.get_head_version()  # Optuna's, made when asked
        assert read.get_all_versions() == full.get_all_versions()
        study = optuna.create_study(storage=full, study_name=f"read-{uuid.uuid4().hex[:8]}")
        study.tell(_ask(study, "cosine"), 0.5)
        copy = pickle.loads(pickle.dumps(read))
        for storage in (read, copy):
            loaded = optuna.load_study(study_name=study.study_name, storage=storage)
            assert [t.value for t in loaded.trials] == [0.5]
        optuna.delete_study(study_name=study.study_name, storage=full)
        copy.engine.dispose()
    finally:
        read.engine.dispose()
        full.engine.dispose()


def test_reading_a_database_without_a_revision_lets_optuna_stamp_it(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'stamp.db'}"
    head = open_storage(url).get_current_version()
    with contextlib.closing(sqlite3.connect(tmp_path / "stamp.db")) as conn, conn:
        conn.execute("DELETE FROM alembic_version")

    storage = open_storage(url, create=False)

    assert storage.get_current_version() == head
    storage.engine.dispose()


def test_reading_an_empty_sqlite_file_sets_up_optuna_tables(tmp_path: Any) -> None:
    (tmp_path / "empty.db").touch()
    storage = open_storage(f"sqlite:///{tmp_path / 'empty.db'}", create=False)
    assert storage.get_all_studies() == []
    assert queries.uses_sql(storage)
    storage.engine.dispose()


def test_read_commands_import_nothing_heavy(tmp_path: Any) -> None:
    """``lrsearch status``, ``best`` and ``studies`` in a fresh process: no Alembic (Optuna's
    schema check), no Keras or backend, no pydantic."""
    url = f"sqlite:///{tmp_path / 'light.db'}"
    study = optuna.create_study(study_name="light", storage=open_storage(url))
    t = _ask(study, "cosine")
    TrialRecord(schedule={"family": "cosine", "params": {}, "total_steps": 10}).write(t)
    study.tell(t, 0.5)
    study.tell(_ask(study, "step"), state=TrialState.FAIL)
    code = f"""
import sys
from lrsearch.cli import cli
for args in (["status", "light"], ["best", "light"], ["studies"]):
    try:
        cli([*args, "--storage", {url!r}])
    except SystemExit as exit:
        assert exit.code in (0, None), (args, exit.code)
heavy = ("alembic", "keras", "tensorflow", "jax", "torch", "pydantic", "matplotlib")
print(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy)))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_replicates_are_counted_apart_and_left_out_of_family_summaries(
    kind: str, make_study: Callable[..., optuna.Study]
) -> None:
    """A replicate (``replicate_of``, lrsearch confirm) is not a search trial in any state:
    counts, best per family and family stats skip it; replicate counts and rows list it."""
    study = make_study(direction="maximize")
    storage, sid = storage_of(study), study_id(study)
    source = _ask(study, "cosine")
    study.tell(source, 0.5)
    better = _ask(study, "cosine")  # a replicate that beats its source: not the family's best
    TrialRecord(replicate_of=0, seed=11).write(better)
    study.tell(better, 0.9)
    diverged = _ask(study, "wsd")
    TrialRecord(replicate_of=0, seed=12, outcome="diverged").write(diverged)
    study.tell(diverged, state=TrialState.PRUNED)
    study.enqueue_trial({"family": "cosine"}, user_attrs=TrialRecord(replicate_of=0).attrs())

    counts = queries.state_counts(storage, sid)
    replicated = queries.state_counts(storage, sid, replicates=True)
    bests = queries.family_bests(storage, sid, maximize=True)
    rows = queries.trial_rows(storage, sid)
    replicates = queries.replicate_rows(storage, sid)

    assert counts == {"complete": 1}
    assert replicated == {"complete": 1, "diverged": 1, "waiting": 1}
    assert [(b.family, b.best, b.best_trial) for b in bests] == [("cosine", 0.5, 0)]
    assert [r.replicate_of for r in rows] == [None, 0, 0, 0]
    stats = queries.family_stats(rows, maximize=True)
    assert [(s.family, s.trials, s.best) for s in stats] == [("cosine", 1, 0.5)]
    assert [(r.number, r.state, r.value, r.source, r.seed) for r in replicates] == [
        (1, "COMPLETE", 0.9, 0, 11),
        (2, "PRUNED", None, 0, 12),
        (3, "WAITING", None, 0, None),
    ]
    if kind in SQL_KINDS:
        assert counts == queries._api_state_counts(storage, sid)
        assert replicated == queries._api_state_counts(storage, sid, True)
        assert rows == queries._api_trial_rows(storage, sid)
        assert replicates == queries._api_replicate_rows(storage, sid)
        assert bests == queries._api_family_bests(storage, sid, maximize=True)
