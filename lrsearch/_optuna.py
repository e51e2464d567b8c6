"""Every private Optuna attribute lrsearch reaches for, each with the reason.

Optuna's public API has no way to do these few things; keeping them here means an Optuna upgrade
is checked in one place. The others live next to the code that needs them:

- :mod:`lrsearch.storage`: ``RDBStorage._get_stale_trial_ids`` (overridden so that a RUNNING
  trial that never wrote a heartbeat is stale too), ``TrialModel._datetime_start_utc`` and
  ``_rdb.storage._create_scoped_session`` (the same stale check, in Optuna's own session), and the
  method names ``_CachedStorage`` calls on its backend (retried on a lost connection).
- :mod:`lrsearch.storage`, opening for reading (``open_storage(create=False)``, what ``status``,
  ``best``, ``studies`` and the dashboard use): ``RDBStorage.__init__`` builds a
  ``_rdb.storage._VersionManager``, whose constructor imports Alembic (~0.15 s with its dialect
  modules) just to read the schema revision, a fifth of such a command's time. The read path
  instead fills in the instance as Optuna's constructor does (as unpickling does: the attributes
  ``engine_kwargs``, ``url``, ``skip_compatibility_check``, ``heartbeat_interval``,
  ``grace_period``, ``heartbeat_stale_trial_callback``, ``failed_trial_callback``, ``engine``,
  ``scoped_session``, ``_version_manager``; the static helpers
  ``_set_default_engine_kwargs_for_mysql`` and ``_fill_storage_url_template``), reads the
  revision from ``alembic_version`` with one ``SELECT``, and makes Optuna's ``_VersionManager``
  only when asked for more (``get_head_version``, ``upgrade``). ``tests/test_queries.py`` checks
  that the attributes are exactly those Optuna's constructor sets.
- :mod:`lrsearch.queries`: Optuna's SQLAlchemy models (``optuna.storages._rdb.models``) for the
  aggregate reads, used only at a schema version it knows, and Optuna's system attribute
  ``fixed_params`` (the family of an enqueued trial).
- :func:`stale_trial_ids` below: ``_get_stale_trial_ids``, asked only when the storage has
  heartbeats (Optuna's own method asserts that it has).
- :class:`Heartbeats` below: ``optuna.storages._heartbeat.get_heartbeat_thread``, the heartbeat
  ``optimize`` keeps for its one trial, kept here for each trial of a pack (ask/tell has none).
- :mod:`lrsearch.schedules._plateau`: Keras's ``optimizer._variables`` (the plateau scale is
  detached before a model is saved).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

__all__ = [
    "heartbeat_retry_of",
    "Heartbeats",
    "quiet_logs",
    "stale_trial_ids",
    "storage_of",
    "study_id",
    "trial_id",
]


def storage_of(study: optuna.Study) -> BaseStorage:
    """The study's storage: Optuna has no public accessor, and lrsearch writes on a trial that
    is no longer running (a Ctrl-C'd trial is marked and failed through it)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The study's id in its storage (for the storage's own methods and lrsearch's queries)."""
    return int(study._study_id)


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """A trial's id in its storage (``FrozenTrial`` and ``Trial`` keep it private)."""
    return int(trial._trial_id)


def heartbeat_retry_of(trial: optuna.Trial) -> int | None:
    """The number of the trial this one retries, when Optuna's heartbeat retry enqueued it.

    ``RetryFailedTrialCallback`` records it as the system attribute ``failed_trial``; a running
    ``Trial`` exposes no system attributes, so the trial is read back from the storage.
    """
    frozen = storage_of(trial.study).get_trial(trial_id(trial))
    value = frozen.system_attrs.get("failed_trial")
    return None if value is None else int(value)


def stale_trial_ids(study: optuna.Study) -> set[int]:
    """Ids of the study's RUNNING trials whose worker stopped sending heartbeats.

    Optuna only fails them (``fail_stale_trials``); listing them without failing needs the
    storage's private ``_get_stale_trial_ids`` (on the RDB backend under Optuna's cache).
    """
    storage: Any = storage_of(study)
    inner = getattr(storage, "_backend", storage)
    if not hasattr(inner, "_get_stale_trial_ids") or inner.get_heartbeat_interval() is None:
        return set()  # without heartbeats nothing is stale (as in ``fail_stale_trials``)
    return set(inner._get_stale_trial_ids(study_id(study)))


class Heartbeats:
    """A heartbeat per running trial, started and stopped one trial at a time, as ``optimize``
    keeps one for its trial (a no-op on a storage without heartbeats); leaving the ``with``
    block stops those still beating."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self._threads: dict[int, Any] = {}

    def start(self, trial: optuna.Trial) -> None:
        from optuna.storages._heartbeat import get_heartbeat_thread

        thread: Any = get_heartbeat_thread(trial_id(trial), storage_of(self.study))
        thread.__enter__()
        self._threads[trial_id(trial)] = thread

    def stop(self, trial: optuna.Trial) -> None:
        thread = self._threads.pop(trial_id(trial), None)
        if thread is not None:
            thread.__exit__(None, None, None)

    def __enter__(self) -> Heartbeats:
        return self

    def __exit__(self, *exc: object) -> None:
        for thread in self._threads.values():
            thread.__exit__(None, None, None)
        self._threads.clear()


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Optuna's INFO lines off inside the block (lrsearch prints its own), then as they were:
    the verbosity is process-wide state that belongs to the caller."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)
