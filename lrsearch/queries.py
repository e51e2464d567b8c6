"""Aggregate reads of a study: light rows per trial, counts per state, best per family, one
row per study.

``study.get_trials()`` builds every trial with all its parameters and attributes (a trial's
history alone is 5 metrics x 50 epochs); on a 10,000-trial PostgreSQL study that takes 13-15 s.
``lrsearch status``, ``studies``, ``best``, ``compare``, the study note and a worker's per-trial
bookkeeping need only a few columns, so they read them here in a handful of queries: state,
value, family, whether the trial diverged, its last intermediate value and start time
(:func:`trial_rows`, optionally of some states only, or the last few). ``lrsearch status`` needs
no row per trial at all: counts per state (:func:`state_counts`), each family's best value and
trial (:func:`family_bests`, ``GROUP BY`` the family parameter) and the few running and failed
trials.

**Why Optuna's private models.** Optuna's public storage API has no way to read some columns of
many trials; these queries therefore read Optuna's own tables through its SQLAlchemy models
(``optuna.storages._rdb.models``), the RDB backend behind Optuna's ``_CachedStorage`` wrapper
(its ``_backend``) and Optuna's session helper (``_rdb.storage._create_scoped_session``, so that
errors are Optuna's ``StorageInternalError`` as from any storage call). A family that Optuna has
not suggested yet (a queued trial) is read from Optuna's system attribute ``fixed_params``, which
``enqueue_trial`` writes. The SQL is used only when the storage is an ``RDBStorage`` whose schema
version (``get_current_version()``, the Alembic revision) is one of
:data:`KNOWN_SCHEMA_VERSIONS`, the versions this code was tested against; any other storage
(in-memory, journal, gRPC, an unknown schema) is read through Optuna's public API
(``get_all_trials(..., deepcopy=False)``, ``get_all_studies()``), with identical results.
``tests/test_queries.py`` checks both paths against each other on SQLite, PostgreSQL and MariaDB.

Example:
    >>> import optuna
    >>> from lrsearch import queries
    >>> from lrsearch._optuna import storage_of, study_id
    >>> study = optuna.create_study(direction="maximize")
    >>> trial = study.ask({"family": optuna.distributions.CategoricalDistribution(["cosine"])})
    >>> _ = study.tell(trial, 0.9)
    >>> storage, sid = storage_of(study), study_id(study)
    >>> [(r.number, r.state, r.family, r.value) for r in queries.trial_rows(storage, sid)]
    [(0, 'COMPLETE', 'cosine', 0.9)]
    >>> queries.state_counts(storage, sid)
    {'complete': 1}
    >>> queries.family_bests(storage, sid, maximize=True)
    [FamilyBest(family='cosine', best=0.9, best_trial=0)]
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import statistics
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from lrsearch import _optuna
from lrsearch.records import StudyRecord, TrialRecord, stored_names

if TYPE_CHECKING:
    from optuna.storages import BaseStorage, RDBStorage
    from sqlalchemy.engine import Connection

__all__ = [
    "FAMILY_PARAM",
    "KNOWN_SCHEMA_VERSIONS",
    "FamilyBest",
    "FamilyStats",
    "ReplicateRow",
    "StudyRow",
    "TrialRow",
    "family_bests",
    "family_stats",
    "replicate_rows",
    "state_counts",
    "study_rows",
    "trial_id_of",
    "trial_rows",
    "uses_sql",
]

FAMILY_PARAM = "family"
"""The trial parameter that holds a trial's schedule family (``lrsearch.space``)."""

KNOWN_SCHEMA_VERSIONS: frozenset[str] = frozenset({"v3.2.0.a"})
"""Alembic revisions of Optuna's RDB schema these queries were tested against (Optuna 4.2-5.1
all report ``v3.2.0.a``). Any other revision is read through Optuna's public API."""

_FIXED_PARAMS = "fixed_params"  # Optuna's system attribute on an enqueued trial
_DIVERGED = "diverged"
_OUTCOME_KEYS = stored_names(TrialRecord, "outcome")
_REPLICATE_KEYS = stored_names(TrialRecord, "replicate_of")
_SEED_KEYS = stored_names(TrialRecord, "seed")
_T = TypeVar("_T")


# --- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrialRow:
    """One trial, without its attributes: what listings, counts and rankings need.

    Example:
        >>> TrialRow(0, 1, "COMPLETE", 0.9, "cosine", False, 0.9, None).finished
        True
    """

    number: int
    trial_id: int
    state: str
    """Optuna's state name: ``"COMPLETE"``, ``"PRUNED"``, ``"FAIL"``, ``"RUNNING"``, ..."""
    value: float | None
    """Objective 0 (a pruned trial's last finite intermediate value, as Optuna stores it)."""
    family: str | None
    """The ``family`` parameter; for a queued trial, the family it was enqueued with."""
    diverged: bool
    """A PRUNED trial whose outcome is ``"diverged"``."""
    last_intermediate: float | None
    """The intermediate value at the largest step (NaN kept as NaN)."""
    datetime_start: datetime.datetime | None
    """Local naive time, as in Optuna's ``FrozenTrial``."""
    replicate_of: int | None = None
    """A replicate's source trial (:attr:`lrsearch.records.TrialRecord.replicate_of`)."""

    @property
    def finished(self) -> bool:
        """COMPLETE, PRUNED or FAIL."""
        return self.state in ("COMPLETE", "PRUNED", "FAIL")


@dataclass(frozen=True, slots=True)
class ReplicateRow:
    """One replicate trial (``lrsearch confirm``): its source trial and seed, state and value.

    Example:
        >>> ReplicateRow(12, 13, "COMPLETE", 0.95, source=3, seed=4294964295).source
        3
    """

    number: int
    trial_id: int
    state: str
    value: float | None
    source: int
    seed: int | None


@dataclass(frozen=True, slots=True)
class StudyRow:
    """One study, as ``lrsearch studies`` lists it.

    Example:
        >>> StudyRow("demo", 1, "maximize", 12, 0.93, 40, "val_accuracy", None).name
        'demo'
    """

    name: str
    study_id: int
    direction: str
    """``"maximize"`` or ``"minimize"`` (of objective 0)."""
    n_trials: int
    """All trials, in any state."""
    best: float | None
    """The best COMPLETE value; ``None`` without one, or for a multi-objective study."""
    budget: int | None
    """The stored budget (:attr:`lrsearch.records.StudyRecord.budget`)."""
    metric: str | None
    """The monitored metric of the stored config (:attr:`StudyRecord.metric`)."""
    created: datetime.datetime | None
    """The start of the study's earliest trial (local naive time), ``None`` without trials."""


@dataclass
class FamilyStats:
    """One schedule family's trials: counts, best and median of its complete trials.

    Example:
        >>> FamilyStats("cosine").complete
        0
    """

    family: str
    trials: int = 0
    complete: int = 0
    pruned: int = 0
    """PRUNED and not diverged."""
    diverged: int = 0
    failed: int = 0
    running: int = 0
    """RUNNING or WAITING."""
    best: float | None = None
    best_trial: int | None = None
    median: float | None = None
    values: list[float] = field(default_factory=list)
    """The values of the complete trials with a finite value, in trial order."""


@dataclass(frozen=True, slots=True)
class FamilyBest:
    """One family's best complete value and the first trial that reached it.

    Example:
        >>> FamilyBest("cosine", 0.93, 12).best_trial
        12
    """

    family: str
    best: float
    """The best finite value of the family's COMPLETE trials."""
    best_trial: int
    """The smallest trial number holding :attr:`best`."""


# --- the public reads -----------------------------------------------------------------------


def trial_rows(
    storage: BaseStorage,
    study_id: int,
    *,
    states: Iterable[str] | None = None,
    last: int | None = None,
    cached: bool = False,
) -> list[TrialRow]:
    """One light row per trial of the study, by trial number; no attributes are loaded.

    On a known RDB schema this is 3 queries whatever the number of trials.

    Example:
        >>> rows = trial_rows(storage, study_id)  # doctest: +SKIP
        >>> sum(r.diverged for r in rows)  # doctest: +SKIP
        3
        >>> failed = trial_rows(storage, study_id, states=["FAIL"], last=2)  # doctest: +SKIP
        >>> [r.number for r in failed]  # doctest: +SKIP
        [31, 40]

    Args:
        storage: An Optuna storage (``open_storage(...)``, or a study's, possibly cached).
        study_id: The study's id in ``storage``.
        states: Only trials in these states (Optuna's names, ``TrialRow.state``); all if None.
        last: Only the last ``last`` of those trials (the largest numbers); all if None.
        cached: Read through Optuna's in-process cache when ``storage`` has one (a worker's own
            study, whose finished trials its sampler and pruner have loaded already): after
            the first call, only the trials changed since are fetched, cheaper than SQL that
            reads a row per trial each time (``bench/bookkeeping.py``).

    Raises:
        ValueError: a state that is not one of Optuna's, or a negative ``last``.
    """
    wanted = _state_names(states)
    if last is not None and last < 0:
        raise ValueError(f"last must be >= 0 or None, but got {last=}.")
    rdb = None if cached and hasattr(storage, "_backend") else _known_rdb(storage)
    if rdb is None:
        return _api_trial_rows(storage, study_id, states=wanted, last=last)
    return _run(rdb, lambda conn: _sql_trial_rows(conn, study_id, wanted, last))


def family_bests(storage: BaseStorage, study_id: int, *, maximize: bool) -> list[FamilyBest]:
    """Each family's best complete value and trial, ranked as :func:`family_stats` ranks them.

    The same answer as ``family_stats(trial_rows(...))`` restricted to families with a best
    value, without a row per trial: on a known RDB schema, one ``GROUP BY`` query for the best
    value of each family and the first trial holding it, one for complete trials known only by
    the family they were enqueued with, and, only when two families tie on their best value,
    one for the values of the tied families (their medians break the tie).

    Example:
        >>> bests = family_bests(storage, study_id, maximize=True)  # doctest: +SKIP
        >>> [(b.family, b.best, b.best_trial) for b in bests]  # doctest: +SKIP
        [('cosine', 0.9611, 17), ('wsd', 0.9583, 4)]
    """
    rdb = _known_rdb(storage)
    if rdb is None:
        return _api_family_bests(storage, study_id, maximize=maximize)
    return _run(rdb, lambda conn: _sql_family_bests(conn, study_id, maximize))


def state_counts(
    storage: BaseStorage, study_id: int, *, replicates: bool = False
) -> dict[str, int]:
    """Search trials per lowercase state name, diverged trials as ``"diverged"`` instead of
    ``"pruned"``; with ``replicates``, the replicate trials instead (``lrsearch confirm``).

    A trial is a replicate when it carries ``replicate_of`` (from the moment it is queued), so
    the study's budget, which these counts measure, never counts a replicate in any state.
    States without a trial are left out. On a known RDB schema: two ``GROUP BY``/``COUNT``
    queries, no trial rows transferred.

    Example:
        >>> state_counts(storage, study_id)  # doctest: +SKIP
        {'complete': 40, 'pruned': 12, 'diverged': 3, 'fail': 1, 'running': 2}
        >>> state_counts(storage, study_id, replicates=True)  # doctest: +SKIP
        {'complete': 9}
    """
    rdb = _known_rdb(storage)
    if rdb is None:
        return _api_state_counts(storage, study_id, replicates)
    return _run(rdb, lambda conn: _sql_state_counts(conn, study_id, replicates))


def replicate_rows(storage: BaseStorage, study_id: int) -> list[ReplicateRow]:
    """Every replicate trial of the study (any state), by trial number, with source and seed.

    On a known RDB schema: two queries, touching the replicates' rows only.

    Example:
        >>> [(r.number, r.source, r.state) for r in replicate_rows(storage, sid)]  # doctest: +SKIP
        [(40, 17, 'COMPLETE'), (41, 17, 'RUNNING')]
    """
    rdb = _known_rdb(storage)
    if rdb is None:
        return _api_replicate_rows(storage, study_id)
    return _run(rdb, lambda conn: _sql_replicate_rows(conn, study_id))


def trial_id_of(storage: BaseStorage, study_id: int, number: int) -> int | None:
    """The id of the study's trial ``number``, or ``None`` when there is none.

    One indexed query on an RDB storage (Optuna's public per-trial lookup).

    Example:
        >>> trial_id_of(storage, study_id, 10**9) is None  # doctest: +SKIP
        True
    """
    if number < 0:
        return None
    try:
        return int(storage.get_trial_id_from_study_id_trial_number(study_id, number))
    except KeyError:
        return None


def study_rows(storage: BaseStorage) -> list[StudyRow]:
    """One row per study in the storage, by study id (for ``lrsearch studies``).

    On a known RDB schema this is 5 queries whatever the number of studies and trials.

    Example:
        >>> [(r.name, r.n_trials, r.best) for r in study_rows(storage)]  # doctest: +SKIP
        [('digits', 40, 0.9611)]
    """
    rdb = _known_rdb(storage)
    if rdb is None:
        return _api_study_rows(storage)
    return _run(rdb, _sql_study_rows)


def uses_sql(storage: BaseStorage) -> bool:
    """Whether the reads of ``storage`` take the SQL path (a known RDB schema).

    Example:
        >>> import optuna
        >>> uses_sql(optuna.storages.InMemoryStorage())
        False
    """
    return _known_rdb(storage) is not None


def family_stats(rows: Sequence[TrialRow], *, maximize: bool) -> list[FamilyStats]:
    """Per-family counts, best and median, the best family first.

    Families rank by their best complete value, then by their median; families without a
    complete trial with a finite value come last; ties go by name. Rows without a family and
    replicates (``lrsearch confirm``'s re-runs, which would weigh the top configurations
    several times) are left out. ``status``, ``compare`` and the study note all summarize
    families with this.

    Example:
        >>> rows = [
        ...     TrialRow(0, 1, "COMPLETE", 0.8, "step", False, 0.8, None),
        ...     TrialRow(1, 2, "COMPLETE", 0.9, "cosine", False, 0.9, None),
        ...     TrialRow(2, 3, "PRUNED", 0.1, "cosine", True, 0.1, None),
        ... ]
        >>> [(s.family, s.best, s.diverged) for s in family_stats(rows, maximize=True)]
        [('cosine', 0.9, 1), ('step', 0.8, 0)]
    """
    stats: dict[str, FamilyStats] = {}
    for row in rows:
        if row.family is None or row.replicate_of is not None:
            continue
        s = stats.get(row.family)
        if s is None:
            s = stats[row.family] = FamilyStats(row.family)
        s.trials += 1
        if row.state == "COMPLETE":
            s.complete += 1
            if row.value is not None and math.isfinite(row.value):
                s.values.append(row.value)
                if s.best is None or (row.value > s.best if maximize else row.value < s.best):
                    s.best, s.best_trial = row.value, row.number
        elif row.state == "PRUNED":
            if row.diverged:
                s.diverged += 1
            else:
                s.pruned += 1
        elif row.state in ("RUNNING", "WAITING"):
            s.running += 1
        else:
            s.failed += 1
    for s in stats.values():
        s.median = statistics.median(s.values) if s.values else None
    return sorted(stats.values(), key=lambda s: _rank(s.family, s.best, s.median, maximize))


def _rank(
    family: str, best: float | None, median: float | None, maximize: bool
) -> tuple[int, float, float, str]:
    """Best value, then median, then name; families without a best value last."""
    if best is None or median is None:
        return (1, 0.0, 0.0, family)
    sign = -1.0 if maximize else 1.0
    return (0, sign * best, sign * median, family)


# --- which path -----------------------------------------------------------------------------

_schema_known: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _known_rdb(storage: BaseStorage) -> RDBStorage | None:
    """The ``RDBStorage`` behind ``storage`` if its schema is a known one, else ``None``.

    The schema version is read once per storage object (one query).
    """
    from optuna.storages import RDBStorage

    inner = getattr(storage, "_backend", storage)  # Optuna's _CachedStorage wraps the RDB one
    if not isinstance(inner, RDBStorage):
        return None
    known = _schema_known.get(inner)
    if known is None:
        known = _retried(inner, inner.get_current_version) in KNOWN_SCHEMA_VERSIONS
        _schema_known[inner] = known
    return inner if known else None


def _retried(rdb: RDBStorage, call: Callable[[], _T]) -> _T:
    """``call()``, retried like the storage's own calls while the database is away (an
    ``lrsearch.storage`` storage has ``retry_seconds``), else called once."""
    if not hasattr(rdb, "retry_seconds"):
        return call()
    from lrsearch.storage import _retrying

    result: _T = _retrying(lambda _storage: call())(rdb)
    return result


def _run(rdb: RDBStorage, read: Callable[[Connection], _T]) -> _T:
    """``read(connection)`` in one of Optuna's sessions of ``rdb``, retried on a lost database.

    The statements run on the session's connection: plain rows, without the ORM's loading step
    (a third of the time of 10,000 rows).
    """
    from optuna.storages._rdb.storage import _create_scoped_session

    def once() -> _T:
        with _create_scoped_session(rdb.scoped_session) as session:
            return read(session.connection())

    return _retried(rdb, once)


# --- shared decoding ------------------------------------------------------------------------


def _family_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _state_names(states: Iterable[str] | None) -> tuple[str, ...] | None:
    """``states`` as a tuple of Optuna state names, checked."""
    if states is None:
        return None
    from optuna.trial import TrialState

    names = (states,) if isinstance(states, str) else tuple(states)
    for name in names:
        if name not in TrialState.__members__:
            known = ", ".join(TrialState.__members__)
            raise ValueError(f"Unknown trial state {name!r}; states are {known}.")
    return names


@functools.lru_cache(maxsize=256)
def _distribution(distribution_json: str) -> Any:
    from optuna.distributions import json_to_distribution

    return json_to_distribution(distribution_json)


def _diverged(state: str, outcome_attrs: dict[str, Any]) -> bool:
    """A PRUNED trial whose outcome is "diverged", the outcome read as ``TrialRecord`` reads it
    (the first of its stored names present wins), without building a record per trial."""
    if state != "PRUNED":
        return False
    for key in _OUTCOME_KEYS:
        if key in outcome_attrs:
            return bool(outcome_attrs[key] == _DIVERGED)
    return False


def _first(attrs: dict[str, Any], names: Sequence[str]) -> Any:
    """The value of the first of ``names`` present in ``attrs`` (as TrialRecord reads it)."""
    for name in names:
        if name in attrs:
            return attrs[name]
    return None


def _best(values: Iterable[float], maximize: bool) -> float | None:
    values = list(values)
    if not values:
        return None
    return max(values) if maximize else min(values)


def _ordered_counts(counts: Counter[str]) -> dict[str, int]:
    """Nonzero counts in Optuna's state order, ``diverged`` right after ``pruned``."""
    from optuna.trial import TrialState

    order = []
    for state in TrialState:
        order.append(state.name.lower())
        if state is TrialState.PRUNED:
            order.append(_DIVERGED)
    return {name: counts[name] for name in order if counts[name] > 0}


# --- public-API path ------------------------------------------------------------------------


def _api_trial_rows(
    storage: BaseStorage,
    study_id: int,
    *,
    states: Sequence[str] | None = None,
    last: int | None = None,
) -> list[TrialRow]:
    from optuna.trial import TrialState

    if last == 0:
        return []
    wanted = None if states is None else tuple(TrialState[name] for name in states)
    rows = []
    for t in storage.get_all_trials(study_id, deepcopy=False, states=wanted):
        if FAMILY_PARAM in t.params:
            family = _family_text(t.params[FAMILY_PARAM])
        else:
            family = _family_text((t.system_attrs.get(_FIXED_PARAMS) or {}).get(FAMILY_PARAM))
        steps = t.intermediate_values
        outcome = {k: t.user_attrs[k] for k in _OUTCOME_KEYS if k in t.user_attrs}
        source = _first(t.user_attrs, _REPLICATE_KEYS)
        rows.append(
            TrialRow(
                number=t.number,
                trial_id=_optuna.trial_id(t),
                state=t.state.name,
                value=float(t.values[0]) if t.values else None,
                family=family,
                diverged=_diverged(t.state.name, outcome),
                last_intermediate=float(steps[max(steps)]) if steps else None,
                datetime_start=t.datetime_start,
                replicate_of=None if source is None else int(source),
            )
        )
    rows.sort(key=lambda r: r.number)
    return rows if last is None else rows[-last:]


def _api_family_bests(storage: BaseStorage, study_id: int, *, maximize: bool) -> list[FamilyBest]:
    rows = _api_trial_rows(storage, study_id, states=("COMPLETE",))
    return [
        FamilyBest(s.family, s.best, s.best_trial)
        for s in family_stats(rows, maximize=maximize)
        if s.best is not None and s.best_trial is not None
    ]


def _api_state_counts(
    storage: BaseStorage, study_id: int, replicates: bool = False
) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for row in _api_trial_rows(storage, study_id):
        if (row.replicate_of is not None) == replicates:
            counts[_DIVERGED if row.diverged else row.state.lower()] += 1
    return _ordered_counts(counts)


def _api_replicate_rows(storage: BaseStorage, study_id: int) -> list[ReplicateRow]:
    rows = []
    for t in storage.get_all_trials(study_id, deepcopy=False):
        source = _first(t.user_attrs, _REPLICATE_KEYS)
        if source is None:
            continue
        seed = _first(t.user_attrs, _SEED_KEYS)
        rows.append(
            ReplicateRow(
                number=t.number,
                trial_id=_optuna.trial_id(t),
                state=t.state.name,
                value=float(t.values[0]) if t.values else None,
                source=int(source),
                seed=None if seed is None else int(seed),
            )
        )
    rows.sort(key=lambda r: r.number)
    return rows


def _api_study_rows(storage: BaseStorage) -> list[StudyRow]:
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    out = []
    for study in sorted(storage.get_all_studies(), key=lambda s: s._study_id):
        trials = storage.get_all_trials(study._study_id, deepcopy=False)
        maximize = study.directions[0] == StudyDirection.MAXIMIZE
        best = None
        if len(study.directions) == 1:
            complete = [t.values[0] for t in trials if t.state == TrialState.COMPLETE and t.values]
            best = _best(complete, maximize)
        starts = [t.datetime_start for t in trials if t.datetime_start is not None]
        record = StudyRecord.from_attrs(study.user_attrs)
        out.append(
            StudyRow(
                name=study.study_name,
                study_id=study._study_id,
                direction=study.directions[0].name.lower(),
                n_trials=len(trials),
                best=None if best is None else float(best),
                budget=record.budget,
                metric=record.metric,
                created=min(starts) if starts else None,
            )
        )
    return out


# --- SQL path -------------------------------------------------------------------------------


def _models() -> Any:
    from optuna.storages._rdb import models

    return models


def _start_column(trial_model: Any) -> tuple[Any, bool]:
    """The trial start column and whether it holds naive UTC (Optuna 5) or local time (4)."""
    utc = getattr(trial_model, "_datetime_start_utc", None)
    if utc is not None:
        return utc, True
    return trial_model.datetime_start, False


_QUARTER = datetime.timedelta(minutes=15)


def _offset(utc: datetime.datetime) -> datetime.timedelta:
    """Local time minus UTC at the naive UTC time ``utc``."""
    local = utc.replace(tzinfo=datetime.UTC).astimezone()
    return local.replace(tzinfo=None) - utc


class _ToLocal:
    """Stored start times as ``FrozenTrial.datetime_start`` shows them (local naive time).

    Optuna 5 stores naive UTC and converts each value with ``astimezone()``; this gives the same
    results several times faster by reusing the UTC offset within a quarter hour whose start and
    end have the same offset (offsets change on quarter hours; a quarter with a change converts
    each of its values). Optuna 4 stored local time: values are returned as they are.
    """

    def __init__(self, utc: bool) -> None:
        self.utc = utc
        self.offsets: dict[int, datetime.timedelta | None] = {}

    def __call__(self, value: datetime.datetime | None) -> datetime.datetime | None:
        if value is None or not self.utc:
            return value
        key = (value.toordinal() * 24 + value.hour) * 4 + value.minute // 15
        if key not in self.offsets:
            quarter = value.replace(minute=value.minute // 15 * 15, second=0, microsecond=0)
            start = _offset(quarter)
            self.offsets[key] = start if start == _offset(quarter + _QUARTER) else None
        offset = self.offsets[key]
        return value + (offset if offset is not None else _offset(value))


def _sql_trial_rows(
    conn: Connection, study_id: int, states: Sequence[str] | None, last: int | None
) -> list[TrialRow]:
    from optuna.trial import TrialState
    from sqlalchemy import and_, exists, select, true
    from sqlalchemy.orm import aliased

    if last == 0:
        return []

    m = _models()
    trial, value, param = m.TrialModel, m.TrialValueModel, m.TrialParamModel
    inter, user, system = (
        m.TrialIntermediateValueModel,
        m.TrialUserAttributeModel,
        m.TrialSystemAttributeModel,
    )
    started, utc = _start_column(trial)
    to_local = _ToLocal(utc)
    step_row = aliased(inter)

    def at_last_step(column: Any) -> Any:
        """``column`` of the trial's intermediate value at its largest step. A scalar subquery
        per row is one probe of the (trial_id, step) unique index on every backend; as a join,
        PostgreSQL's planner may hash all of the study's intermediate values instead (2-3x
        slower at 400,000 values)."""
        return (
            select(column)
            .where(step_row.trial_id == trial.trial_id)
            .order_by(step_row.step.desc())
            .limit(1)
            .scalar_subquery()
        )

    in_states = (
        true() if states is None else trial.state.in_([TrialState[name] for name in states])
    )
    main = (
        select(
            trial.trial_id,
            trial.number,
            trial.state,
            started,
            value.value,
            value.value_type,
            param.param_value,
            param.distribution_json,
            at_last_step(step_row.intermediate_value),
            at_last_step(step_row.intermediate_value_type),
        )
        .select_from(trial)
        .outerjoin(value, and_(value.trial_id == trial.trial_id, value.objective == 0))
        .outerjoin(param, and_(param.trial_id == trial.trial_id, param.param_name == FAMILY_PARAM))
        .where(trial.study_id == study_id)
        .where(in_states)
    )
    if last is None:
        main = main.order_by(trial.number)
    else:  # the last ones, read backwards
        main = main.order_by(trial.number.desc()).limit(last)
    # Outcomes only matter on PRUNED trials; legacy names are resolved as TrialRecord does.
    outcomes: dict[int, dict[str, Any]] = {}
    pruned = states is None or "PRUNED" in states
    outcome_query = (
        select(user.trial_id, user.key, user.value_json)
        .join(trial, trial.trial_id == user.trial_id)
        .where(trial.study_id == study_id)
        .where(trial.state == TrialState.PRUNED)
        .where(user.key.in_(_OUTCOME_KEYS))
    )
    for trial_id, key, value_json in conn.execute(outcome_query).all() if pruned else []:
        outcomes.setdefault(trial_id, {})[key] = json.loads(value_json)
    # A queued trial has no family parameter yet: the family it was enqueued with.
    has_family = exists().where(param.trial_id == trial.trial_id, param.param_name == FAMILY_PARAM)
    fixed_query = (
        select(system.trial_id, system.value_json)
        .join(trial, trial.trial_id == system.trial_id)
        .where(trial.study_id == study_id)
        .where(system.key == _FIXED_PARAMS)
        .where(~has_family)
        .where(in_states)
    )
    fixed = {
        trial_id: (json.loads(value_json) or {}).get(FAMILY_PARAM)
        for trial_id, value_json in conn.execute(fixed_query).all()
    }
    # Replicates (lrsearch confirm): the few trials that carry a source trial.
    replicate_query = (
        select(user.trial_id, user.value_json)
        .join(trial, trial.trial_id == user.trial_id)
        .where(trial.study_id == study_id)
        .where(user.key.in_(_REPLICATE_KEYS))
        .where(in_states)
    )
    sources = {
        trial_id: int(json.loads(value_json))
        for trial_id, value_json in conn.execute(replicate_query).all()
    }
    to_value = value.stored_repr_to_value
    to_intermediate = inter.stored_repr_to_intermediate_value
    family_of = _FamilyOf()
    rows = []
    for (
        trial_id,
        number,
        state,
        start,
        raw_value,
        value_type,
        param_value,
        distribution_json,
        raw_inter,
        inter_type,
    ) in conn.execute(main).all():
        if distribution_json is not None:
            family = family_of(distribution_json, param_value)
        else:
            family = _family_text(fixed.get(trial_id))
        rows.append(
            TrialRow(
                number=number,
                trial_id=trial_id,
                state=state.name,
                value=None if value_type is None else to_value(raw_value, value_type),
                family=family,
                diverged=_diverged(state.name, outcomes.get(trial_id, {})),
                last_intermediate=(
                    None if inter_type is None else to_intermediate(raw_inter, inter_type)
                ),
                datetime_start=to_local(start),
                replicate_of=sources.get(trial_id),
            )
        )
    return rows if last is None else rows[::-1]


class _FamilyOf:
    """The family name of a stored ``family`` parameter (its distribution and internal value),
    decoded once per pair: a study has a handful of (choices, index) pairs."""

    def __init__(self) -> None:
        self.names: dict[tuple[str, float], str | None] = {}

    def __call__(self, distribution_json: str, param_value: float) -> str | None:
        key = (distribution_json, param_value)
        if key not in self.names:
            external = _distribution(distribution_json).to_external_repr(param_value)
            self.names[key] = _family_text(external)
        return self.names[key]


@dataclass
class _Best:
    """A family's best value and trial while the groups of :func:`_sql_family_bests` merge."""

    best: float
    best_trial: int
    keys: list[tuple[str, float]] = field(default_factory=list)
    """The (distribution, internal value) pairs stored for the family."""
    fixed_values: list[float] = field(default_factory=list)
    """Values of complete trials known only by their enqueued family."""

    def add(self, value: float, number: int, maximize: bool) -> None:
        if value == self.best:
            self.best_trial = min(self.best_trial, number)
        elif value > self.best if maximize else value < self.best:
            self.best, self.best_trial = value, number


def _sql_family_bests(conn: Connection, study_id: int, maximize: bool) -> list[FamilyBest]:
    from optuna.trial import TrialState
    from sqlalchemy import and_, exists, func, or_, select

    m = _models()
    trial, value, param, system = (
        m.TrialModel,
        m.TrialValueModel,
        m.TrialParamModel,
        m.TrialSystemAttributeModel,
    )
    finite = value.TrialValueType.FINITE

    def complete(*columns: Any, with_family: bool = True) -> Any:
        """``columns`` of the study's complete search trials (not replicates) with a finite
        value (objective 0) and, if ``with_family``, a ``family`` parameter."""
        query = (
            select(*columns)
            .select_from(trial)
            .join(value, and_(value.trial_id == trial.trial_id, value.objective == 0))
            .where(trial.study_id == study_id)
            .where(trial.state == TrialState.COMPLETE)
            .where(value.value_type == finite)
            .where(~_sql_is_replicate(trial))
        )
        if with_family:
            query = query.join(
                param, and_(param.trial_id == trial.trial_id, param.param_name == FAMILY_PARAM)
            )
        return query

    extreme = func.max(value.value) if maximize else func.min(value.value)
    key = (param.distribution_json, param.param_value)
    per_key = complete(*key, extreme.label("best")).group_by(*key).subquery()
    holders = (
        complete(per_key.c.distribution_json, per_key.c.param_value, per_key.c.best)
        .add_columns(func.min(trial.number))
        .join(
            per_key,
            and_(
                per_key.c.distribution_json == param.distribution_json,
                per_key.c.param_value == param.param_value,
                per_key.c.best == value.value,
            ),
        )
        .group_by(per_key.c.distribution_json, per_key.c.param_value, per_key.c.best)
    )
    family_of = _FamilyOf()
    found: dict[str, _Best] = {}

    def add(family: str | None, best: float, number: int) -> _Best | None:
        if family is None:
            return None
        if family not in found:
            found[family] = _Best(best, number)
        else:
            found[family].add(best, number, maximize)
        return found[family]

    for distribution_json, param_value, best, number in conn.execute(holders).all():
        entry = add(family_of(distribution_json, param_value), float(best), int(number))
        if entry is not None:
            entry.keys.append((distribution_json, param_value))
    # A complete trial without a family parameter counts for the family it was enqueued with.
    has_family = exists().where(param.trial_id == trial.trial_id, param.param_name == FAMILY_PARAM)
    enqueued = (
        complete(trial.number, value.value, system.value_json, with_family=False)
        .join(system, and_(system.trial_id == trial.trial_id, system.key == _FIXED_PARAMS))
        .where(~has_family)
    )
    for number, raw, value_json in conn.execute(enqueued).all():
        fixed = _family_text((json.loads(value_json) or {}).get(FAMILY_PARAM))
        entry = add(fixed, float(raw), int(number))
        if entry is not None:
            entry.fixed_values.append(float(raw))
    # Families tied on their best value rank by their median: read only their values.
    per_best = Counter(b.best for b in found.values())
    tied = {f: b for f, b in found.items() if per_best[b.best] > 1}
    values: dict[str, list[float]] = {f: list(b.fixed_values) for f, b in tied.items()}
    keys = [k for b in tied.values() for k in b.keys]
    if keys:
        of_keys = or_(
            *(and_(param.distribution_json == d, param.param_value == v) for d, v in keys)
        )
        for distribution_json, param_value, raw in conn.execute(
            complete(*key, value.value).where(of_keys)
        ).all():
            family = family_of(distribution_json, param_value)
            if family in values:
                values[family].append(float(raw))
    medians = {f: statistics.median(v) for f, v in values.items()}
    ranked = sorted(found, key=lambda f: _rank(f, found[f].best, medians.get(f, 0.0), maximize))
    return [FamilyBest(f, found[f].best, found[f].best_trial) for f in ranked]


def _sql_is_replicate(trial: Any) -> Any:
    """SQL: whether ``trial`` carries a source trial (a replicate, ``lrsearch confirm``)."""
    from sqlalchemy import exists
    from sqlalchemy.orm import aliased

    attr = aliased(_models().TrialUserAttributeModel)
    return exists().where(attr.trial_id == trial.trial_id, attr.key.in_(_REPLICATE_KEYS))


def _sql_diverged_count(trial: Any, user: Any, study_id: int, replicates: bool) -> Any:
    """SQL: the number of the study's PRUNED trials whose outcome is "diverged", legacy names
    read as TrialRecord reads them (the first stored name present wins).

    One pass over the trials' outcome attributes, grouped by trial: a trial diverged when its
    highest-priority outcome name is also the highest-priority one holding "diverged". (As
    ``EXISTS`` conditions per name, PostgreSQL hashed every outcome attribute of the database
    three times and compiled the query: 90 ms against 20 ms on 10,000 trials.)
    """
    from optuna.trial import TrialState
    from sqlalchemy import case, func, select

    names = _OUTCOME_KEYS
    priority = case({name: i for i, name in enumerate(names)}, value=user.key)
    diverged = json.dumps(_DIVERGED)  # how Optuna stores the string (value_json)
    per_trial = (
        select(user.trial_id)
        .join(trial, trial.trial_id == user.trial_id)
        .where(trial.study_id == study_id)
        .where(trial.state == TrialState.PRUNED)
        .where(_sql_is_replicate(trial) if replicates else ~_sql_is_replicate(trial))
        .where(user.key.in_(names))
        .group_by(user.trial_id)
        .having(func.min(priority) == func.min(case((user.value_json == diverged, priority))))
        .subquery()
    )
    return select(func.count()).select_from(per_trial)


def _sql_state_counts(conn: Connection, study_id: int, replicates: bool) -> dict[str, int]:
    from sqlalchemy import func, select

    m = _models()
    trial, user = m.TrialModel, m.TrialUserAttributeModel
    counts: Counter[str] = Counter()
    by_state = (
        select(trial.state, func.count(trial.trial_id))
        .where(trial.study_id == study_id)
        .where(_sql_is_replicate(trial) if replicates else ~_sql_is_replicate(trial))
        .group_by(trial.state)
    )
    for state, count in conn.execute(by_state):
        counts[state.name.lower()] += int(count)
    diverged = conn.execute(_sql_diverged_count(trial, user, study_id, replicates)).scalar_one()
    counts["pruned"] -= int(diverged)
    counts[_DIVERGED] += int(diverged)
    return _ordered_counts(counts)


def _sql_replicate_rows(conn: Connection, study_id: int) -> list[ReplicateRow]:
    from sqlalchemy import and_, select

    m = _models()
    trial, value, user = m.TrialModel, m.TrialValueModel, m.TrialUserAttributeModel
    attrs: dict[int, dict[str, Any]] = {}
    is_replicate = _sql_is_replicate(trial)
    for trial_id, key, value_json in conn.execute(
        select(user.trial_id, user.key, user.value_json)
        .join(trial, trial.trial_id == user.trial_id)
        .where(trial.study_id == study_id)
        .where(user.key.in_(_REPLICATE_KEYS + _SEED_KEYS))
        .where(is_replicate)
    ):
        attrs.setdefault(trial_id, {})[key] = json.loads(value_json)
    to_value = value.stored_repr_to_value
    rows = []
    for trial_id, number, state, raw, value_type in conn.execute(
        select(trial.trial_id, trial.number, trial.state, value.value, value.value_type)
        .outerjoin(value, and_(value.trial_id == trial.trial_id, value.objective == 0))
        .where(trial.study_id == study_id)
        .where(is_replicate)
        .order_by(trial.number)
    ):
        found = attrs.get(trial_id, {})
        source = _first(found, _REPLICATE_KEYS)
        if source is None:  # queued between the two reads: the next call sees it
            continue
        seed = _first(found, _SEED_KEYS)
        rows.append(
            ReplicateRow(
                number=number,
                trial_id=trial_id,
                state=state.name,
                value=None if value_type is None else to_value(raw, value_type),
                source=int(source),
                seed=None if seed is None else int(seed),
            )
        )
    return rows


def _sql_study_rows(conn: Connection) -> list[StudyRow]:
    from optuna.study import StudyDirection
    from optuna.trial import TrialState
    from sqlalchemy import func, select

    m = _models()
    trial, value = m.TrialModel, m.TrialValueModel
    started, utc = _start_column(trial)
    studies = conn.execute(
        select(m.StudyModel.study_id, m.StudyModel.study_name).order_by(m.StudyModel.study_id)
    ).all()
    directions: dict[int, dict[int, StudyDirection]] = {}
    direction = m.StudyDirectionModel
    for sid, objective, d in conn.execute(
        select(direction.study_id, direction.objective, direction.direction)
    ):
        directions.setdefault(sid, {})[objective] = d
    to_local = _ToLocal(utc)
    counts = {
        sid: (int(n), to_local(first))
        for sid, n, first in conn.execute(
            select(trial.study_id, func.count(trial.trial_id), func.min(started)).group_by(
                trial.study_id
            )
        )
    }
    # Per study and value type (finite, +inf, -inf): the largest and smallest complete value.
    extremes: dict[int, dict[Any, tuple[float | None, float | None]]] = {}
    for sid, value_type, high, low in conn.execute(
        select(trial.study_id, value.value_type, func.max(value.value), func.min(value.value))
        .join(value, value.trial_id == trial.trial_id)
        .where(trial.state == TrialState.COMPLETE)
        .where(value.objective == 0)
        .group_by(trial.study_id, value.value_type)
    ):
        extremes.setdefault(sid, {})[value_type] = (high, low)
    keys = stored_names(StudyRecord, "n_trials") + stored_names(StudyRecord, "config")
    attrs: dict[int, dict[str, Any]] = {}
    attr = m.StudyUserAttributeModel
    for sid, key, value_json in conn.execute(
        select(attr.study_id, attr.key, attr.value_json).where(attr.key.in_(keys))
    ):
        attrs.setdefault(sid, {})[key] = json.loads(value_json)

    out = []
    for sid, name in studies:
        objectives = directions.get(sid, {})
        first = objectives.get(0, StudyDirection.NOT_SET)
        best = None
        if len(objectives) == 1:
            best = _best_of_extremes(extremes.get(sid, {}), first == StudyDirection.MAXIMIZE)
        n_trials, created = counts.get(sid, (0, None))
        record = StudyRecord.from_attrs(attrs.get(sid, {}))
        out.append(
            StudyRow(
                name=name,
                study_id=sid,
                direction=first.name.lower(),
                n_trials=n_trials,
                best=best,
                budget=record.budget,
                metric=record.metric,
                created=created,
            )
        )
    return out


def _best_of_extremes(
    extremes: dict[Any, tuple[float | None, float | None]], maximize: bool
) -> float | None:
    """The best value from the largest/smallest stored value per value type."""
    value_type = _models().TrialValueModel.TrialValueType
    candidates = []
    for kind, (high, low) in extremes.items():
        if kind == value_type.FINITE:
            extreme = high if maximize else low
            if extreme is not None:
                candidates.append(float(extreme))
        else:
            candidates.append(math.inf if kind == value_type.INF_POS else -math.inf)
    return _best(candidates, maximize)
