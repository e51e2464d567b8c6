"""The study handle: every read and write of an lrsearch study goes through :class:`StudyHandle`.

A study is a plain Optuna study in Optuna's own schema; what lrsearch stores on it and its trials
is defined in :mod:`lrsearch.records`. Reads that summarize a study (counts per state, best per
family, one trial by number) are aggregate queries (:mod:`lrsearch.queries`), so they stay fast
on a study of many thousand trials. Running trials is :mod:`lrsearch.runner`'s job.

    >>> handle = StudyHandle.open("digits-mlp", "sqlite:///lrsearch.db")  # doctest: +SKIP
    >>> handle.status().counts  # doctest: +SKIP
    {'complete': 31, 'pruned': 7, 'diverged': 2}
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lrsearch import __version__, queries, settings
from lrsearch._imports import import_keras
from lrsearch._optuna import stale_trial_ids, storage_of, study_id, trial_id
from lrsearch.exceptions import ConfigError, LRSearchError, did_you_mean
from lrsearch.records import StudyRecord, TrialRecord
from lrsearch.storage import mask_url, open_storage, resolve_storage_url

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

    from lrsearch.config import StudyConfig
    from lrsearch.halving import Plan

__all__ = [
    "BestTrial",
    "RunSummary",
    "StudyHandle",
    "StudyStatus",
    "heartbeat_settings",
    "list_studies",
    "make_pruner",
    "make_sampler",
    "study_exists",
]


def make_sampler(config: StudyConfig, salt: int | None = None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``[study.sampler]``, seeded by ``study.seed``.

    ``salt`` makes workers that share a study draw different points: with one seed they would
    all propose the same random start-up trials.
    """
    import optuna

    s, seed = config.study.sampler, config.study.seed
    if salt is not None:
        seed = (seed * 1_000_003 + salt) % 2**31
    # multivariate/group/constant_liar are "experimental" in Optuna but long-standing and used
    # here on purpose: their warnings would only alarm users (silenced here, not process-wide).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if s.name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if s.name == "qmc":
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
        if s.name == "cmaes":
            return optuna.samplers.CmaEsSampler(
                seed=seed, n_startup_trials=s.n_startup_trials, warn_independent_sampling=False
            )
        # multivariate + group model the conditional per-family parameters jointly;
        # constant_liar keeps workers that share a study from sampling the same point.
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=s.n_startup_trials,
            multivariate=True,
            group=True,
            constant_liar=True,
        )


def make_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    """The Optuna pruner of ``[study.pruner]``; it never prunes before ``start_fraction``.
    None prunes under ``strategy = "halving"``: its rungs compare whole schedules.

    Early validation metrics favour schedules that decay early (short-horizon bias), so by
    default nothing is pruned in the first half of the epochs.
    """
    import optuna

    p, epochs = config.study.pruner, config.training.epochs
    first = max(1, math.ceil(p.start_fraction * epochs))
    if p.name == "none" or config.study.strategy == "halving":  # rungs are the fidelities
        return optuna.pruners.NopPruner()
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=first, max_resource=epochs, reduction_factor=p.reduction_factor
        )
    if p.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=first, reduction_factor=p.reduction_factor
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=p.n_startup_trials, n_warmup_steps=first, interval_steps=1
    )


def heartbeat_settings() -> dict[str, Any]:
    """Optuna heartbeat settings: a worker that dies mid-trial is noticed and its trial retried.

    A running trial writes a heartbeat every ``LRSEARCH_HEARTBEAT_INTERVAL`` seconds (default
    30); one silent for ``LRSEARCH_GRACE_PERIOD`` seconds (default 4 intervals) is failed by the
    next worker that looks, and its configuration queued again (at most 3 times).

    Raises:
        SettingError: a variable that is not a number in range.
    """
    import optuna

    interval = settings.heartbeat_interval()
    return {
        "heartbeat_interval": interval,
        "grace_period": settings.grace_period(interval),
        "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=3
        ),
    }


def _versions() -> dict[str, str]:
    import optuna

    keras = import_keras()

    out = {"lrsearch": __version__, "optuna": optuna.__version__, "keras": keras.__version__}
    backend = keras.backend.backend()
    out["backend"] = backend
    module = sys.modules.get(backend)
    if module is not None:
        out[backend] = str(getattr(module, "__version__", "?"))
    return out


@dataclass(frozen=True)
class BestTrial:
    """A study's best trial: what ``lrsearch best`` prints and ``build_schedule`` takes."""

    number: int
    value: float
    params: dict[str, Any]
    schedule: dict[str, Any] | None
    relative: dict[str, Any] | None

    @classmethod
    def of(cls, trial: FrozenTrial) -> BestTrial:
        record = TrialRecord.of(trial)
        return cls(
            number=trial.number,
            value=float(trial.value) if trial.value is not None else math.nan,
            params=dict(trial.params),
            schedule=record.schedule,
            relative=record.relative,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunSummary:
    """What a run did, and where the study stands after it."""

    study_name: str
    storage_url: str  # masked: no password
    n_trials: int
    finished: int
    ran: int
    seconds: float
    best: BestTrial | None = None
    counts: dict[str, int] = field(default_factory=dict)
    recycled: bool = False  # stopped early to be replaced by a fresh process (memory grew)


@dataclass
class StudyStatus:
    """``lrsearch status``: counts per state (diverged apart from pruned), best per family,
    the last failures with their errors, the running trials (stale ones marked)."""

    name: str
    direction: str
    metric: str | None
    budget: int | None
    counts: dict[str, int]
    best_per_family: dict[str, dict[str, Any]]
    running: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    best: BestTrial | None
    lr_range: dict[str, Any] | None = None
    """The range test's bounds the search samples ``learning_rate`` in, if stored."""
    replicates: dict[str, int] = field(default_factory=dict)
    """Replicate trials per state (``lrsearch confirm``); ``counts`` holds search trials."""
    rungs: list[dict[str, Any]] = field(default_factory=list)
    """A halving study's rungs, lowest first: epochs, trials per state, best value and trial."""
    race: list[str] = field(default_factory=list)
    """A halving study's family race: its decision and evidence (lines), if decided."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["best"] = self.best.to_dict() if self.best else None
        return out


_SETUP_WAIT_SECONDS = 30.0
_FAILED_SHOWN = 5


class StudyHandle:
    """One lrsearch study in its storage; the Optuna study is :attr:`optuna`.

    Open an existing study with :meth:`open`, create or join one with :meth:`create_or_join`
    (:func:`lrsearch.runner.prepare_study` does that for a run).
    """

    def __init__(self, study: optuna.Study, url: str = "", *, cached: bool = False) -> None:
        self.optuna = study
        self.url = url
        self.cached = cached
        """Per-trial rows from Optuna's in-process cache (a worker's handle) instead of SQL."""

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, name: str, storage_url: str | None = None) -> StudyHandle:
        """The existing study ``name``; a one-line error naming close matches when there is none.

        Raises:
            ConfigError: no study of that name (or no database at a SQLite path).
        """
        import optuna

        url = resolve_storage_url(storage_url)
        storage = open_storage(url, create=False, **heartbeat_settings())
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            names = [s.name for s in queries.study_rows(storage)]
            listing = ", ".join(names[:10]) or "none"
            raise ConfigError(
                f"No study named {settings.shown(name)} in {mask_url(url)}."
                f"{did_you_mean(name, names)} Studies there: {listing}."
            ) from None
        return cls(study, url)

    @classmethod
    def create_or_join(
        cls,
        config: StudyConfig,
        *,
        storage_url: str,
        study_file_text: str = "",
        data_fingerprint: str = "",
        study_name: str | None = None,
        allow_changed: bool = False,
        baselines: list[tuple[dict[str, Any], dict[str, Any]]] = (),  # type: ignore[assignment]
        lr_range: dict[str, Any] | None = None,
    ) -> tuple[StudyHandle, bool]:
        """Creates the study or joins the existing one of that name: ``(handle, created)``.

        Of several workers started at the same instant on a fresh database exactly one creates
        the study (the database's unique name constraint decides) and sets it up; the config
        is written last, and the others wait for it before they join. ``baselines`` are
        ``(params, baseline record)`` pairs queued when the study is set up; ``lr_range`` (a
        range test's bounds, :mod:`lrsearch.rangetest`) is stored with the setup, so every
        worker that joins searches inside it.

        Raises:
            ConfigError: the stored study was made from a different study file (the message
                lists the differing fields) and ``allow_changed`` is false.
        """
        import optuna

        storage = open_storage(storage_url, **heartbeat_settings())
        name = study_name or config.study.name
        created = _create_exclusively(storage, name, config.study.direction or "maximize")
        study = optuna.load_study(
            study_name=name,
            storage=storage,
            sampler=make_sampler(config),
            pruner=make_pruner(config),
        )
        handle = cls(study, storage_url, cached=True)  # a run's handle: its worker's cache
        stored = handle.record.config if created else handle._wait_for_setup()
        if stored is None:
            # Ours to set up (we created it, or a plain Optuna study of that name is adopted).
            for params, baseline in baselines:
                study.enqueue_trial(params, user_attrs=TrialRecord(baseline=baseline).attrs())
            StudyRecord(
                study_file=study_file_text,
                fingerprint=config.fingerprint(),
                data_fingerprint=data_fingerprint,
                versions=_versions(),
                lr_range=lr_range,
                config=config.normalized(),  # last: joiners wait for it
            ).write(study)
            return handle, True
        if not allow_changed:
            handle.check_same_file(config, data_fingerprint=data_fingerprint)
        return handle, False

    def check_same_file(self, config: StudyConfig, *, data_fingerprint: str = "") -> None:
        """Refuses ``config`` when it differs from the study's stored study file.

        Raises:
            ConfigError: listing the differing fields (and how to join anyway).
        """
        from lrsearch.config import StudyConfig, comparable, config_diff

        stored = self.record.config
        if stored is None:
            return
        try:  # a field added since the study was made: it ran with that field's default
            stored = StudyConfig.model_validate(stored).normalized()
        except ValueError:  # a stored file today's rules refuse: compared as it is
            pass
        diff = config_diff(comparable(stored), comparable(config.normalized()))
        old_data = self.record.data_fingerprint
        if data_fingerprint and old_data and old_data != data_fingerprint:
            diff.append("data: the data's content changed (fingerprint differs)")
        if diff:
            shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
            raise ConfigError(
                f"Study {self.name!r} exists with a different study file ({shown}). Use the "
                "stored file, another --study-name, or --allow-changed to join anyway."
            )

    def _wait_for_setup(self) -> dict[str, Any] | None:
        """The stored config of a study another worker is creating, once it is written.

        A study that still has none after :data:`_SETUP_WAIT_SECONDS` is taken as a plain
        Optuna study (not made by lrsearch) and ``None`` is returned.
        """
        deadline = time.monotonic() + _SETUP_WAIT_SECONDS
        while True:
            stored = self.record.config
            if stored is not None or time.monotonic() > deadline:
                return stored
            time.sleep(0.2)

    # --- what the study is ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.optuna.study_name)

    @property
    def direction(self) -> str:
        """``"maximize"`` or ``"minimize"``."""
        return str(self.optuna.direction.name.lower())

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def record(self) -> StudyRecord:
        """What lrsearch stored on the study (read anew at each access)."""
        return StudyRecord.of(self.optuna)

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def config(self) -> tuple[StudyConfig, str]:
        """The stored configuration and study-file text (for resume and retrain).

        Raises:
            ConfigError: the study was not created by lrsearch.
        """
        record = self.record
        if record.config is None:
            raise ConfigError(
                f"Study {self.name!r} was not created by lrsearch (no stored study file)."
            )
        from lrsearch.config import parse_study_config  # pydantic: only when a config is read

        config = parse_study_config(record.config, source=f"study {self.name!r}")
        return config, record.study_file or ""

    def set_lr_range(self, lr_range: dict[str, Any]) -> None:
        """Stores a range test's learning-rate bounds: trials sampled from now on, by any
        worker that (re)joins, search inside them."""
        StudyRecord(lr_range=lr_range).write(self.optuna)

    def set_budget(self, n_trials: int) -> None:
        """Sets the study's budget of finished trials (over all workers)."""
        if self.record.budget != n_trials:
            StudyRecord(n_trials=n_trials).write(self.optuna)

    # --- reads (aggregate queries) -----------------------------------------------------------

    def rows(self) -> list[queries.TrialRow]:
        """One light row per trial (number, state, value, family, diverged), no attributes."""
        storage = storage_of(self.optuna)
        return queries.trial_rows(storage, study_id(self.optuna), cached=self.cached)

    def counts(self, *, replicates: bool = False) -> dict[str, int]:
        """Search trials per state, lower case, diverged apart from pruned; with
        ``replicates``, the replicate trials (``lrsearch confirm``) instead."""
        return queries.state_counts(
            storage_of(self.optuna), study_id(self.optuna), replicates=replicates
        )

    def progress(self, *, replicates: bool = False) -> tuple[int, int]:
        """``(finished, running)``: complete, pruned and diverged trials; running ones.

        Search trials (what the budget counts), or with ``replicates`` the replicates.
        """
        counts = self.counts(replicates=replicates)
        done = sum(counts.get(k, 0) for k in ("complete", "pruned", "diverged"))
        return done, counts.get("running", 0)

    def best(self) -> BestTrial | None:
        """The best complete trial (Optuna's own query), or None; in a halving study the
        best of the top rung, the full training (a lower rung's trained fewer epochs)."""
        plan = self.halving_plan()
        if plan is not None:
            number = plan.best_number()
            return None if number is None else BestTrial.of(self.trial(number))
        try:
            trial = self.optuna.best_trial
        except ValueError:
            return None
        return BestTrial.of(trial)

    def halving_plan(self) -> Plan | None:
        """A ``strategy = "halving"`` study's plan, read from its trials now (rungs, race);
        None for another strategy."""
        stored = self.record.config
        if not stored or (stored.get("study") or {}).get("strategy") != "halving":
            return None  # read commands on other studies import nothing heavy (no pydantic)
        from lrsearch.config import StudyConfig
        from lrsearch.halving import Plan

        config = StudyConfig.model_validate(stored)
        trials = self.optuna.get_trials(deepcopy=False)
        return Plan(config, trials, budget=self.record.budget)

    def require_best(self) -> BestTrial:
        """The best trial.

        Raises:
            LRSearchError: no trial has completed yet.
        """
        best = self.best()
        if best is None:
            raise LRSearchError(f"Study {self.name!r} has no completed trial yet.")
        return best

    def family_stats(
        self, rows: list[queries.TrialRow] | None = None
    ) -> list[queries.FamilyStats]:
        """Per family: counts per state, best value and trial, median; best family first."""
        return queries.family_stats(self.rows() if rows is None else rows, maximize=self.maximize)

    def trial(self, number: int) -> FrozenTrial:
        """Trial ``number`` (loaded alone).

        Raises:
            ConfigError: the study has no such trial.
        """
        found = queries.trial_id_of(storage_of(self.optuna), study_id(self.optuna), number)
        if found is None:
            total = sum(self.counts().values())
            raise ConfigError(
                f"Study {self.name!r} has no trial #{number} (trials #0..#{total - 1})."
            )
        return storage_of(self.optuna).get_trial(found)

    def ranked_rows(self) -> list[queries.TrialRow]:
        """The complete search trials (not replicates) with a finite value, best first; in a
        halving study, of the top rung only (the full trainings)."""
        plan = self.halving_plan()
        full = plan.full_trainings() if plan is not None else None
        done = [
            r
            for r in self.rows()
            if r.state == "COMPLETE"
            and r.value is not None
            and math.isfinite(r.value)
            and r.replicate_of is None
            and (full is None or r.number in full)
        ]
        done.sort(key=lambda r: (-r.value if self.maximize else r.value, r.number))  # type: ignore[operator]
        return done

    def top(self, limit: int) -> list[FrozenTrial]:
        """The ``limit`` best of :meth:`ranked_rows`, loaded alone."""
        storage = storage_of(self.optuna)
        return [storage.get_trial(r.trial_id) for r in self.ranked_rows()[:limit]]

    def complete_trials(self) -> list[FrozenTrial]:
        """Every complete trial, attributes included (for parameter importance)."""
        from optuna.trial import TrialState

        return list(self.optuna.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def status(self) -> StudyStatus:
        """Counts per state, best per family, the last failures and the running trials.

        A handful of aggregate reads (:mod:`lrsearch.queries`), whatever the number of trials:
        counts per state, the best value and trial per family, the running trials and the last
        :data:`_FAILED_SHOWN` failed ones (each failed one loaded alone, for its error).
        """
        storage, sid = storage_of(self.optuna), study_id(self.optuna)
        running_rows = queries.trial_rows(storage, sid, states=("RUNNING",))
        stale = stale_trial_ids(self.optuna) if running_rows else set()
        running = [
            {
                "number": r.number,
                "family": r.family,
                "started": r.datetime_start.isoformat(" ", "seconds") if r.datetime_start else "?",
                "stale": r.trial_id in stale,
            }
            for r in running_rows
        ]
        failed = []
        for r in queries.trial_rows(storage, sid, states=("FAIL",), last=_FAILED_SHOWN):
            trial = TrialRecord.of(storage.get_trial(r.trial_id))
            error = trial.error
            if trial.interrupted:
                error = "interrupted (Ctrl-C)"
            elif trial.duplicate_of is not None:
                error = f"not trained: the same {trial.copied} as trial #{trial.duplicate_of}"
            elif error is None:
                error = "no error recorded: its worker stopped (killed, crashed or lost)"
            failed.append({"number": r.number, "family": r.family, "error": error})
        study = self.record
        plan = self.halving_plan()
        if plan is None:
            best_per_family = {
                b.family: {"value": b.best, "number": b.best_trial}
                for b in queries.family_bests(storage, sid, maximize=self.maximize)
            }
        else:  # at the highest rung each family reached: 1-epoch values rank apart
            best_per_family = {
                b.family: {
                    "value": b.value,
                    "number": b.number,
                    "rung": b.rung,
                    "epochs": b.epochs,
                }
                for b in plan.family_bests()
            }
        rungs = [asdict(r) for r in plan.stats()] if plan is not None else []
        race = plan.race.lines(self.maximize) if plan is not None and plan.race else []
        return StudyStatus(
            name=self.name,
            direction=self.direction,
            metric=study.metric,
            budget=study.budget,
            counts=self.counts(),
            best_per_family=best_per_family,
            running=running,
            failed=failed,
            best=self.best(),
            lr_range=study.lr_range,
            rungs=rungs,
            race=race,
            replicates=self.counts(replicates=True),
        )

    def summary(self, *, ran: int, seconds: float = 0.0, recycled: bool = False) -> RunSummary:
        """Where the study stands after a run in which ``ran`` trials were run."""
        counts = {k.upper(): v for k, v in self.counts().items()}
        done, running = self.progress()
        budget = self.record.budget or 0
        plan = self.halving_plan()
        if plan is not None:  # every rung's trials: the plan's total
            from lrsearch.halving import planned_trials

            budget = max(planned_trials(plan.config, budget), done + running)
        return RunSummary(
            study_name=self.name,
            storage_url=self.masked_url,
            n_trials=budget,
            finished=done,
            ran=ran,
            seconds=seconds,
            best=self.best(),
            counts=counts,
            recycled=recycled,
        )

    # --- writes ------------------------------------------------------------------------------

    def stale_numbers(self) -> list[int]:
        """Numbers of RUNNING trials whose worker stopped sending heartbeats."""
        ids = stale_trial_ids(self.optuna)
        return [r.number for r in self.rows() if r.trial_id in ids]

    def reap(self) -> list[int]:
        """Fails the stale trials now and queues their configurations again (Optuna's heartbeat
        retry); returns their numbers."""
        import optuna

        stale = self.stale_numbers()
        optuna.storages.fail_stale_trials(self.optuna)
        return stale

    def pop_replicate(self) -> optuna.Trial | None:
        """Takes the lowest-numbered waiting replicate (``lrsearch confirm``) to run here: it
        becomes RUNNING and is returned as a trial; ``None`` when none waits.

        What ``study.ask()`` does with a waiting trial, for replicates only, and never a new
        trial: the state change from WAITING is atomic in the storage, so of several processes
        popping at once each gets a different replicate.
        """
        import optuna
        from optuna.trial import TrialState

        storage = storage_of(self.optuna)
        # read as ask() reads them: through the storage, so that a worker's cache knows them
        waiting = storage.get_all_trials(
            study_id(self.optuna), deepcopy=False, states=(TrialState.WAITING,)
        )
        for frozen in waiting:
            if not TrialRecord.of(frozen).replicate:
                continue
            tid = trial_id(frozen)
            try:
                if not storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            return optuna.Trial(self.optuna, tid)
        return None

    def requeue_interrupted(self, trial: optuna.Trial | None) -> int | None:
        """Marks a Ctrl-C'd trial failed (if still running) and queues its configuration with
        its seed, so that the next run repeats the same experiment; returns its number."""
        from optuna.trial import TrialState

        if trial is None:
            return None
        storage, tid = storage_of(self.optuna), trial_id(trial)
        frozen = storage.get_trial(tid)
        if frozen.state == TrialState.RUNNING:
            key = TrialRecord.key("interrupted")
            storage.set_trial_user_attr(tid, key, True)
            storage.set_trial_state_values(tid, TrialState.FAIL)
        elif frozen.state != TrialState.FAIL or not TrialRecord.of(frozen).interrupted:
            return None  # it ended before the interrupt (even by failing): nothing to run again
        carried = TrialRecord.of(frozen).carried(retry_of=frozen.number)
        # interrupted before its parameters were suggested: the ones it was created with
        params = frozen.params or frozen.system_attrs.get("fixed_params") or {}
        self.optuna.enqueue_trial(params, user_attrs=carried.attrs(), skip_if_exists=False)
        return int(frozen.number)


def _create_exclusively(storage: BaseStorage, name: str, direction: str) -> bool:
    """Creates study ``name`` unless it exists; True when this call created it."""
    import optuna
    from optuna.study import StudyDirection

    try:
        storage.create_new_study(directions=[StudyDirection[direction.upper()]], study_name=name)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    return True


def study_exists(name: str, storage_url: str | None = None) -> bool:
    """Whether the storage holds a study ``name`` (a SQLite file that does not exist holds none
    and is not created).

    Raises:
        StorageURLError, StorageError: a malformed URL, an unreachable server.
    """
    from lrsearch.exceptions import StorageURLError
    from lrsearch.storage import check_storage_url

    url = resolve_storage_url(storage_url)
    try:
        check_storage_url(url, create=False)
    except StorageURLError:
        check_storage_url(url)  # anything but a missing SQLite file is raised here
        return False
    storage = open_storage(url, create=False)
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def list_studies(storage_url: str | None = None) -> list[queries.StudyRow]:
    """Every study in the storage: name, direction, trials, budget, best value, metric."""
    return queries.study_rows(open_storage(storage_url, create=False))
