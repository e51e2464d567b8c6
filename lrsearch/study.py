"""Studies: create or join one, run its trials to the budget, and read results back.

A study is a plain Optuna study in Optuna's own schema. lrsearch adds study user attributes
(``lrsearch.*``: the study file, its normalized config and fingerprint, the data fingerprint, the
budget, versions) and per-trial user attributes (schedule, relative values, history, outcome,
seed, timings), so the ``optuna`` CLI and optuna-dashboard read everything as it is.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrsearch import __version__, settings
from lrsearch._imports import import_keras, select_backend
from lrsearch.config import StudyConfig, comparable, config_diff, parse_study_config
from lrsearch.exceptions import ConfigError, Interrupted, LRSearchError
from lrsearch.objective import (
    ATTR_BASELINE,
    ATTR_ERROR,
    ATTR_INTERRUPTED,
    ATTR_OUTCOME,
    ATTR_RETRY_OF,
    ATTR_SCHEDULE,
    ATTR_SEED,
    Objective,
    describe_error,
    family_of,
)
from lrsearch.storage import mask_url, open_storage, resolve_storage_url

if TYPE_CHECKING:
    from lrsearch.workers import WorkerJob

__all__ = [
    "Interrupted",
    "RunSummary",
    "TrialError",
    "best_trial",
    "list_studies",
    "make_pruner",
    "make_sampler",
    "open_study",
    "run_study",
    "study_status",
    "trial_line",
]

ATTR_CONFIG = "lrsearch.config"
ATTR_FILE = "lrsearch.study_file"
ATTR_FINGERPRINT = "lrsearch.fingerprint"
ATTR_DATA = "lrsearch.data_fingerprint"
ATTR_N_TRIALS = "lrsearch.n_trials"
ATTR_VERSIONS = "lrsearch.versions"
_MAX_FAILURES_IN_A_ROW = 3


class TrialError(Exception):
    """An unexpected error inside one trial: the trial fails, the study goes on."""


def make_sampler(config: StudyConfig, salt: int | None = None) -> Any:
    """The Optuna sampler named by ``[study.sampler]``, seeded by ``study.seed``.

    ``salt`` makes workers that share a study draw different points: with one seed they would
    all propose the same random start-up trials.
    """
    import warnings

    import optuna

    # multivariate/group/constant_liar are "experimental" in Optuna but long-standing and used
    # here on purpose; their warnings would only alarm users.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    s, seed = config.study.sampler, config.study.seed
    if salt is not None:
        seed = (seed * 1_000_003 + salt) % 2**31
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if s.name == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=s.n_startup_trials, warn_independent_sampling=False
        )
    # multivariate + group model the conditional per-family parameters jointly; constant_liar
    # keeps workers that share a study from sampling the same point.
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=s.n_startup_trials,
        multivariate=True,
        group=True,
        constant_liar=True,
    )


def make_pruner(config: StudyConfig) -> Any:
    """The Optuna pruner of ``[study.pruner]``; it never prunes before ``start_fraction``.

    Early validation metrics favour schedules that decay early (short-horizon bias), so by
    default nothing is pruned in the first half of the epochs.
    """
    import optuna

    p, epochs = config.study.pruner, config.training.epochs
    first = max(1, math.ceil(p.start_fraction * epochs))
    if p.name == "none":
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


def open_study(
    config: StudyConfig,
    *,
    storage: Any,
    study_file_text: str = "",
    data_fingerprint: str = "",
    study_name: str | None = None,
    allow_changed: bool = False,
    baselines: list[dict[str, Any]] | None = None,
) -> tuple[Any, bool]:
    """Creates the study or joins the existing one of that name.

    Returns:
        ``(study, created)``.

    Raises:
        ConfigError: the stored study was made from a different study file (the message lists
            the differing fields) and ``allow_changed`` is false.
    """
    import optuna

    name = study_name or config.study.name
    created = _create_exclusively(storage, name, config.study.direction or "maximize")
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=make_sampler(config), pruner=make_pruner(config)
    )
    stored = study.user_attrs.get(ATTR_CONFIG) if created else _wait_for_setup(study)
    if stored is None:
        # Ours to set up (we created it, or a plain Optuna study of that name is adopted). The
        # config goes last: workers joining at the same instant wait for it (_wait_for_setup),
        # so they see the baselines queued and every attribute written.
        study.set_user_attr(ATTR_FILE, study_file_text)
        study.set_user_attr(ATTR_FINGERPRINT, config.fingerprint())
        study.set_user_attr(ATTR_DATA, data_fingerprint)
        study.set_user_attr(ATTR_VERSIONS, _versions())
        for baseline in baselines or []:
            study.enqueue_trial(baseline["params"], user_attrs={ATTR_BASELINE: baseline["attr"]})
        study.set_user_attr(ATTR_CONFIG, config.normalized())
        return study, True
    diff = config_diff(comparable(stored), comparable(config.normalized()))
    old_data = study.user_attrs.get(ATTR_DATA)
    if data_fingerprint and old_data and old_data != data_fingerprint:
        diff.append("data: the data's content changed (fingerprint differs)")
    if diff and not allow_changed:
        shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise ConfigError(
            f"Study {name!r} exists with a different study file ({shown}). Use the stored "
            "file, another --study-name, or --allow-changed to join anyway."
        )
    return study, False


def _create_exclusively(storage: Any, name: str, direction: str) -> bool:
    """Creates study ``name`` unless it exists; True when this call created it.

    Of several workers started at the same instant on a fresh database exactly one creates
    the study (the database's unique name constraint decides); the others join it.
    """
    import optuna
    from optuna.study import StudyDirection

    try:
        storage.create_new_study(directions=[StudyDirection[direction.upper()]], study_name=name)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    return True


_SETUP_WAIT_SECONDS = 30.0


def _wait_for_setup(study: Any) -> dict[str, Any] | None:
    """The stored config of a study another worker is creating, once it is written.

    A study that still has none after :data:`_SETUP_WAIT_SECONDS` is taken as a plain Optuna
    study (not made by lrsearch) and ``None`` is returned.
    """
    deadline = time.monotonic() + _SETUP_WAIT_SECONDS
    while True:
        stored = study.user_attrs.get(ATTR_CONFIG)
        if stored is not None or time.monotonic() > deadline:
            return stored
        time.sleep(0.2)


@dataclass
class RunSummary:
    """What a ``run_study`` call did."""

    study_name: str
    storage_url: str
    n_trials: int
    finished: int
    ran: int
    seconds: float
    best: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    recycled: bool = False  # stopped early to be replaced by a fresh process (memory grew)


def _finished_count(study: Any) -> tuple[int, int]:
    from optuna.trial import TrialState

    trials = study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    )
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    return len(trials) - running, running


def trial_line(trial: Any, metric: str) -> str:
    """One line about a finished trial: number, family, key params, value, state, seconds."""
    family = family_of(trial) or "?"
    rel = trial.user_attrs.get("relative") or {}
    parts = [f"lr={rel.get('learning_rate', trial.params.get('learning_rate', float('nan'))):.3g}"]
    for key, value in rel.items():
        if key != "learning_rate":
            parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    outcome = trial.user_attrs.get(ATTR_OUTCOME)
    state = trial.state.name
    if outcome == "diverged":
        result = f"DIVERGED at step {trial.user_attrs.get('diverged_at_step')}"
    elif state == "PRUNED":
        result = f"PRUNED after epoch {trial.user_attrs.get('epochs_run', '?')}"
    elif state == "COMPLETE":
        result = f"{metric}={trial.value:.4f}"
    else:
        reason = trial.user_attrs.get(ATTR_ERROR, "")
        if trial.user_attrs.get(ATTR_INTERRUPTED):
            reason = "interrupted (queued to run again)"
        result = f"FAILED {reason}".rstrip()
    seconds = trial.user_attrs.get("train_seconds")
    took = f"{seconds:.1f}s" if isinstance(seconds, int | float) else ""
    tag = " [baseline]" if ATTR_BASELINE in trial.user_attrs else ""
    return f"#{trial.number:<4d} {family:<15} {' '.join(parts)}  {result}  {took}{tag}".rstrip()


def _best(study: Any) -> dict[str, Any] | None:
    try:
        t = study.best_trial
    except ValueError:
        return None
    return {
        "number": t.number,
        "value": t.value,
        "params": t.params,
        "schedule": t.user_attrs.get(ATTR_SCHEDULE),
        "relative": t.user_attrs.get("relative"),
    }


class _Progress:
    """A tqdm bar over the study's finished trials plus one printed line per trial."""

    def __init__(
        self, total: int, initial: int, metric: str, enabled: bool, echo: Callable[[str], None]
    ):
        from tqdm.auto import tqdm

        self.metric = metric
        self.echo = echo
        self.bar = tqdm(
            total=total,
            initial=min(initial, total),
            desc="trials",
            unit="trial",
            disable=None if enabled else True,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def trial_done(self, study: Any, trial: Any, finished: int) -> None:
        self.bar.clear()
        self.echo(trial_line(trial, self.metric))
        self.bar.n = min(finished, self.bar.total)
        best = _best(study)
        if best is not None:
            self.bar.set_postfix_str(f"best {self.metric}={best['value']:.4f} (#{best['number']})")
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


@dataclass
class PreparedStudy:
    """A study opened for running: its objective (data loaded once), the study, the budget."""

    objective: Objective
    study: Any
    budget: int
    url: str
    created: bool = True


def prepare_study(
    config: StudyConfig,
    *,
    study_file_text: str = "",
    base_dir: Path | None = None,
    storage_url: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    allow_changed: bool = False,
    backend: str | None = None,
) -> PreparedStudy:
    """Loads the data, checks the space, and creates or joins the study (no training).

    The Keras backend is ``backend``, else ``$KERAS_BACKEND``, else ``training.backend``.

    Raises:
        ConfigError, DataError, StorageError: bad input, before any training.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    select_backend(backend or os.environ.get("KERAS_BACKEND") or config.training.backend)
    url = resolve_storage_url(storage_url)
    objective = Objective(config, base_dir=base_dir)
    objective.check()  # a broken model, loss or optimizer creates no study
    storage = open_storage(url, **heartbeat_settings())
    baselines = []
    for point in objective.baselines:
        attr = {"family": point.family, "relative": point.relative, "absolute": point.absolute}
        baselines.append({"params": objective.space.enqueue_params(point), "attr": attr})
    study, created = open_study(
        config,
        storage=storage,
        study_file_text=study_file_text,
        data_fingerprint=objective.dataset.fingerprint(),
        study_name=study_name,
        allow_changed=allow_changed,
        baselines=baselines,
    )
    budget = n_trials or config.study.n_trials
    if study.user_attrs.get(ATTR_N_TRIALS) != budget:
        study.set_user_attr(ATTR_N_TRIALS, budget)
    return PreparedStudy(objective=objective, study=study, budget=budget, url=url, created=created)


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


def run_study(
    config: StudyConfig,
    *,
    study_file_text: str = "",
    base_dir: Path | None = None,
    storage_url: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    allow_changed: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    label: str = "",
    backend: str | None = None,
    artifacts: Any = None,
) -> RunSummary:
    """Creates or joins the study and runs trials until the study has ``n_trials`` finished ones.

    ``n_trials`` (default ``study.n_trials``) is the study's total budget, counted over every
    worker; ``timeout`` (default ``study.timeout``) bounds this call's wall time. While other
    workers still run the last trials, this one waits: if one of them dies (no heartbeat), its
    trial is failed and run again here.

    Raises:
        Interrupted: on Ctrl-C, after queueing the interrupted trial's configuration again.
        ConfigError, DataError, StorageError: bad input, before any training.
    """
    started = time.perf_counter()
    prepared = prepare_study(
        config,
        study_file_text=study_file_text,
        base_dir=base_dir,
        storage_url=storage_url,
        study_name=study_name,
        n_trials=n_trials,
        allow_changed=allow_changed,
        backend=backend,
    )
    return run_prepared(
        prepared,
        timeout=timeout if timeout is not None else config.study.timeout,
        progress=progress,
        echo=echo,
        label=label,
        started=started,
        artifacts=artifacts,
    )


def run_job(
    job: WorkerJob,
    *,
    on_prepared: Callable[..., None] | None = None,
    echo: Callable[[str], None] = print,
) -> RunSummary:
    """Runs one worker's share of a study (the body of a :mod:`lrsearch.workers` process).

    Opens the study of ``job`` (checking the model first), calls ``on_prepared`` with the
    study's name and budget, prints the header line when ``job.announce``, and runs trials until
    the budget, the deadline or the memory limit.
    """
    started = time.perf_counter()
    config = parse_study_config(job.config, source="study file")
    prepared = prepare_study(
        config,
        study_file_text=job.study_file_text,
        base_dir=Path(job.base_dir) if job.base_dir else None,
        storage_url=job.storage_url,
        study_name=job.study_name,
        n_trials=job.n_trials,
        allow_changed=job.allow_changed,
        backend=job.backend,
    )
    name = prepared.study.study_name
    if on_prepared is not None:
        on_prepared(study=name, budget=prepared.budget, created=prepared.created)
    if job.announce:
        echo(
            f"study {name!r}: {config.training.epochs} epochs per trial, budget "
            f"{prepared.budget} trials, storage {mask_url(prepared.url)}"
            + (f", {job.n_workers} workers" if job.n_workers > 1 else "")
        )
        hint = backend_hint(config.model.type)
        if hint:
            echo(hint)
    from lrsearch.artifacts import recorder_for

    recorder = recorder_for(job.artifacts, prepared.url, config)
    timeout = None if job.deadline is None else max(job.deadline - time.time(), 0.0)
    return run_prepared(
        prepared,
        timeout=timeout,
        progress=job.progress,
        echo=echo,
        label=job.label,
        started=started,
        artifacts=recorder,
        recycle_mb=job.recycle_mb,
    )


# Measured in docs/benchmarks.md (bench/backends.py) on a 2-core CPU: which backend trains a
# model type faster, and by how much.
_FASTER_BACKEND = {"mlp": ("tensorflow", "1.6"), "cnn": ("tensorflow", "1.1")}


def backend_hint(model_type: str) -> str | None:
    """One line when the backend in use is the slower one for this kind of model."""
    known = _FASTER_BACKEND.get(model_type)
    if known is None:
        return None
    faster, ratio = known
    current = str(import_keras().backend.backend())
    if current == faster:
        return None
    return (
        f"hint: {faster} trained {model_type} models ~{ratio}x faster than {current} "
        f"in our benchmarks (docs/benchmarks.md); try --backend {faster}"
    )


def run_prepared(
    prepared: PreparedStudy,
    *,
    timeout: float | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    label: str = "",
    started: float | None = None,
    poll_seconds: float = 2.0,
    artifacts: Any = None,
    recycle_mb: int | None = None,
) -> RunSummary:
    """Runs trials of a prepared study until its budget is met (see :func:`run_study`).

    ``artifacts`` (an :class:`lrsearch.artifacts.ArtifactRecorder`) uploads each trial's pictures
    and keeps the study note current. With ``recycle_mb``, the run stops early (``recycled`` in
    the summary) once this process's memory grew by more than that many MB since its first
    trial ended, so that a fresh process can take over (:mod:`lrsearch.workers`).
    """
    import optuna
    from optuna.trial import TrialState

    started = started if started is not None else time.perf_counter()
    study, budget, objective = prepared.study, prepared.budget, prepared.objective
    metric = objective.config.study.metric
    optuna.storages.fail_stale_trials(study)
    finished, running = _finished_count(study)
    if label or finished or running or not prepared.created:
        # Joining a study others work on: a seed of our own, or we would repeat their samples.
        study.sampler = make_sampler(objective.config, salt=os.getpid() + 7919 * len(label))
    prefix = f"[{label}] " if label else ""
    reporter = _Progress(budget, finished, metric, progress, lambda line: echo(prefix + line))
    failures: list[str] = []
    failed_numbers: list[int] = []
    ran = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    if artifacts is not None:
        objective.on_trial_end = artifacts.upload_trial

    memory = _MemoryWatch(recycle_mb)

    def after_trial(study: Any, trial: Any) -> None:
        nonlocal ran
        ran += 1
        if memory.grown_too_much():
            study.stop()
        optuna.storages.fail_stale_trials(study)
        done, running = _finished_count(study)
        reporter.trial_done(study, trial, done)
        if artifacts is not None and trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            artifacts.trial_finished(study, trial)
        if trial.state == TrialState.FAIL and not trial.user_attrs.get(ATTR_INTERRUPTED):
            failures.append(trial.user_attrs.get(ATTR_ERROR) or "no error recorded")
            failed_numbers.append(trial.number)
            if len(failures) >= _MAX_FAILURES_IN_A_ROW:
                study.stop()
        else:
            failures.clear()
        if done + running >= budget:
            study.stop()

    try:
        while len(failures) < _MAX_FAILURES_IN_A_ROW and not memory.exceeded:
            optuna.storages.fail_stale_trials(study)
            done, running = _finished_count(study)
            remaining = None if deadline is None else deadline - time.monotonic()
            if done >= budget or (remaining is not None and remaining <= 0):
                break
            if done + running >= budget:
                time.sleep(poll_seconds)  # others run the last trials; take over if they die
                continue
            study.optimize(
                _guarded(objective),
                n_trials=None,
                timeout=remaining,
                callbacks=[after_trial],
                catch=(TrialError,),
                gc_after_trial=False,
                show_progress_bar=False,
            )
    except KeyboardInterrupt:
        reporter.close()
        number = _requeue_interrupted(study, objective.current_trial)
        where = f"trial #{number} was queued to run again; " if number is not None else ""
        raise Interrupted(
            f"Interrupted: {where}resume with the same command (Ctrl-C again aborts at once)."
        ) from None
    finally:
        reporter.close()
        if artifacts is not None:
            artifacts.flush()  # the last study note and figure
    if len(failures) >= _MAX_FAILURES_IN_A_ROW:
        raise LRSearchError(
            f"{len(failures)} trials failed in a row; stopping. Last error (trial "
            f"#{failed_numbers[-1]}): {failures[-1]}"
        )
    done, _ = _finished_count(study)
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    return RunSummary(
        study_name=study.study_name,
        storage_url=mask_url(prepared.url),
        n_trials=budget,
        finished=done,
        ran=ran,
        seconds=time.perf_counter() - started,
        best=_best(study),
        counts=dict(counts),
        recycled=memory.exceeded and done < budget,
    )


class _MemoryWatch:
    """Tells when this process's resident memory grew by more than ``limit_mb`` since the
    first check (the end of its first trial, once the model and data are in memory)."""

    def __init__(self, limit_mb: int | None) -> None:
        self.limit_mb = limit_mb
        self.baseline: float | None = None
        self.exceeded = False

    def grown_too_much(self) -> bool:
        if self.limit_mb is None:
            return False
        now = resident_mb()
        if self.baseline is None:
            self.baseline = now
        self.exceeded = now - self.baseline > self.limit_mb
        return self.exceeded


def resident_mb() -> float:
    """This process's resident memory in MB (peak resident memory where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _guarded(objective: Objective) -> Callable[[Any], float]:
    """Turns any error inside a trial into :class:`TrialError`: the trial fails with the error
    recorded on it (``lrsearch.error``: type, message, the user's file:line), its line says
    why, and the study goes on (it stops after a few failures in a row)."""

    def run(trial: Any) -> float:
        import optuna

        try:
            return objective(trial)
        except (optuna.TrialPruned, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on the trial and printed
            # lrsearch's one-line wrapper of the user's error: the user's error says more.
            cause = exc.__cause__ if isinstance(exc, LRSearchError) else None
            text = describe_error(
                cause if isinstance(cause, Exception) else exc, objective.base_dir
            )
            trial.set_user_attr(ATTR_ERROR, text)
            raise TrialError(text) from exc

    return run


def _requeue_interrupted(study: Any, trial: Any) -> int | None:
    """Marks the interrupted trial failed (if still running) and queues its configuration."""
    from optuna.trial import TrialState

    if trial is None:
        return None
    storage = study._storage
    frozen = storage.get_trial(trial._trial_id)
    if frozen.state == TrialState.RUNNING:
        storage.set_trial_user_attr(trial._trial_id, ATTR_INTERRUPTED, True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    elif frozen.state != TrialState.FAIL or not frozen.user_attrs.get(ATTR_INTERRUPTED):
        return None  # it ended before the interrupt (even by failing): nothing to run again
    attrs: dict[str, Any] = {ATTR_RETRY_OF: frozen.number}
    if ATTR_SEED in frozen.user_attrs:
        attrs[ATTR_SEED] = frozen.user_attrs[ATTR_SEED]  # the same experiment, the same seed
    if ATTR_BASELINE in frozen.user_attrs:
        attrs[ATTR_BASELINE] = frozen.user_attrs[ATTR_BASELINE]
    study.enqueue_trial(frozen.params, user_attrs=attrs, skip_if_exists=False)
    return int(frozen.number)


# --- reading studies back ---------------------------------------------------------------------


def load_study(name: str, storage_url: str | None) -> Any:
    """The Optuna study ``name``; a one-line error naming close matches when there is none."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(storage_url, create=False, **heartbeat_settings())
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        import difflib

        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(names[:10]) or "none"
        raise ConfigError(
            f"No study named {settings.shown(name)} in "
            f"{mask_url(resolve_storage_url(storage_url))}.{hint} Studies there: {listing}."
        ) from None


def list_studies(storage_url: str | None = None) -> list[dict[str, Any]]:
    """Name, direction, trial counts and best value of every study in the storage."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(storage_url, create=False)
    out = []
    for s in optuna.get_all_study_summaries(storage, include_best_trial=True):
        out.append(
            {
                "name": s.study_name,
                "direction": s.direction.name.lower() if s.direction else "?",
                "n_trials": s.n_trials,
                "budget": s.user_attrs.get(ATTR_N_TRIALS),
                "best": s.best_trial.value if s.best_trial else None,
                "metric": (s.user_attrs.get(ATTR_CONFIG) or {}).get("study", {}).get("metric"),
                "created": s.datetime_start.isoformat(" ", "seconds") if s.datetime_start else "",
            }
        )
    return out


def study_status(name: str, storage_url: str | None = None) -> dict[str, Any]:
    """Counts per state (diverged apart), best per family, and the running trials."""
    study = load_study(name, storage_url)
    trials = study.get_trials(deepcopy=False)
    counts: Counter[str] = Counter()
    best_per_family: dict[str, dict[str, Any]] = {}
    maximize = study.direction.name == "MAXIMIZE"
    running = []
    failed = []
    stale = set(_stale_trial_numbers(study))
    for t in trials:
        state = t.state.name.lower()
        if t.user_attrs.get(ATTR_OUTCOME) == "diverged":
            state = "diverged"
        counts[state] += 1
        family = family_of(t)
        if t.state.name == "FAIL":
            error = t.user_attrs.get(ATTR_ERROR)
            if t.user_attrs.get(ATTR_INTERRUPTED):
                error = "interrupted (Ctrl-C)"
            elif error is None:
                error = "no error recorded: its worker stopped (killed, crashed or lost)"
            failed.append({"number": t.number, "family": family, "error": error})
        if t.state.name == "RUNNING":
            started = t.datetime_start.isoformat(" ", "seconds") if t.datetime_start else "?"
            running.append(
                {
                    "number": t.number,
                    "family": family,
                    "started": started,
                    "stale": t.number in stale,
                }
            )
        if t.state.name == "COMPLETE" and family:
            current = best_per_family.get(family)
            better = current is None or (
                t.value > current["value"] if maximize else t.value < current["value"]
            )
            if better:
                best_per_family[family] = {"value": t.value, "number": t.number}
    stored = study.user_attrs.get(ATTR_CONFIG) or {}
    return {
        "name": study.study_name,
        "direction": study.direction.name.lower(),
        "metric": stored.get("study", {}).get("metric"),
        "budget": study.user_attrs.get(ATTR_N_TRIALS),
        "counts": dict(counts),
        "best_per_family": dict(
            sorted(best_per_family.items(), key=lambda kv: kv[1]["value"], reverse=maximize)
        ),
        "running": running,
        "failed": failed[-5:],
        "best": _best(study),
    }


def best_trial(name: str, storage_url: str | None = None) -> dict[str, Any]:
    """The best trial: number, value, params, the absolute schedule and the study's metric."""
    study = load_study(name, storage_url)
    best = _best(study)
    if best is None:
        raise LRSearchError(f"Study {name!r} has no completed trial yet.")
    stored = study.user_attrs.get(ATTR_CONFIG) or {}
    best["metric"] = stored.get("study", {}).get("metric")
    best["study"] = study.study_name
    return best


def stored_config(name: str, storage_url: str | None = None) -> tuple[StudyConfig, str]:
    """The study's stored configuration and study-file text (for resume and retrain)."""
    study = load_study(name, storage_url)
    stored = study.user_attrs.get(ATTR_CONFIG)
    if stored is None:
        raise ConfigError(f"Study {name!r} was not created by lrsearch (no stored study file).")
    return parse_study_config(stored, source=f"study {name!r}"), study.user_attrs.get(
        ATTR_FILE, ""
    )


def _stale_trial_numbers(study: Any) -> list[int]:
    """Numbers of RUNNING trials whose worker stopped sending heartbeats."""
    storage = study._storage
    inner = getattr(storage, "_backend", storage)
    if not hasattr(inner, "_get_stale_trial_ids"):
        return []
    ids = set(inner._get_stale_trial_ids(study._study_id))
    return [t.number for t in study.get_trials(deepcopy=False) if t._trial_id in ids]


def reap_stale(name: str, storage_url: str | None = None) -> list[int]:
    """Fails the study's stale trials now and queues their configurations again.

    Returns:
        The numbers of the trials failed.
    """
    import optuna

    study = load_study(name, storage_url)
    stale = _stale_trial_numbers(study)
    optuna.storages.fail_stale_trials(study)
    return stale


def stored_budget(name: str, storage_url: str | None = None) -> int | None:
    """The budget (``n_trials``) last set on the study, if any."""
    value = load_study(name, storage_url).user_attrs.get(ATTR_N_TRIALS)
    return int(value) if value else None


def run_summary(name: str, storage_url: str, *, ran: int, seconds: float = 0.0) -> RunSummary:
    """The state of study ``name`` after a run in which ``ran`` trials were run."""
    study = load_study(name, storage_url)
    done, _ = _finished_count(study)
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    return RunSummary(
        study_name=study.study_name,
        storage_url=mask_url(storage_url),
        n_trials=int(study.user_attrs.get(ATTR_N_TRIALS) or 0),
        finished=done,
        ran=ran,
        seconds=seconds,
        best=_best(study),
        counts=dict(counts),
    )


def study_progress(study: Any, budget: int) -> tuple[int, int, str]:
    """``(finished, budget, "best ...")`` for a progress display."""
    done, _ = _finished_count(study)
    best = _best(study)
    text = f"best={best['value']:.4f} (#{best['number']})" if best else ""
    return done, budget, text
