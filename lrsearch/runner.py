"""Running a study: prepare it, then run trials until the budget with :class:`Runner`.

:func:`prepare_study` loads the data, checks the model and creates or joins the study;
:class:`Runner` is the loop (budget, deadline, take-over of dead workers' trials, Ctrl-C
requeue, stop after failures in a row) around Optuna's ``optimize``; what it prints goes to a
:class:`Reporter`. :func:`run_study` is the one entry for both the Python API and
``lrsearch start``: in this process, or in ``workers`` worker processes (:mod:`lrsearch.workers`),
each of which runs :func:`run_job`.

    >>> from lrsearch.config import load_study_file
    >>> config, text = load_study_file("studies/digits.toml")  # doctest: +SKIP
    >>> run_study(config, study_file_text=text, n_trials=4).best  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lrsearch._imports import check_backend, import_keras, select_backend
from lrsearch._optuna import quiet_logs
from lrsearch.config import StudyConfig, parse_study_config
from lrsearch.exceptions import Interrupted, LRSearchError
from lrsearch.objective import DuplicateReplicate, Objective, describe_trial_error
from lrsearch.records import TrialRecord, family_of
from lrsearch.storage import mask_url, resolve_storage_url
from lrsearch.study import BestTrial, RunSummary, StudyHandle, make_sampler, study_exists

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from lrsearch.artifacts import ArtifactRecorder
    from lrsearch.halving import Plan
    from lrsearch.rangetest import LRRange
    from lrsearch.workers import WorkerJob

__all__ = [
    "FailurePolicy",
    "LinePrinter",
    "PreparedStudy",
    "Reporter",
    "Runner",
    "TrialError",
    "backend_hint",
    "prepare_study",
    "run_job",
    "run_study",
    "trial_line",
]


class TrialError(Exception):
    """An unexpected error inside one trial: the trial fails, the study goes on."""


def trial_line(trial: FrozenTrial, metric: str) -> str:
    """One line about a finished trial: number, family, key params, value, state, seconds."""
    record = TrialRecord.of(trial)
    family = family_of(trial) or "?"
    rel = record.relative or {}
    parts = [f"lr={rel.get('learning_rate', trial.params.get('learning_rate', float('nan'))):.3g}"]
    for key, value in rel.items():
        if key != "learning_rate":
            parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    state = trial.state.name
    if record.duplicate_of is not None:
        result = f"SKIPPED: the same {record.copied} as #{record.duplicate_of}, queued at once"
    elif record.diverged:
        result = f"DIVERGED at step {record.diverged_at_step}"
    elif state == "PRUNED":
        result = f"PRUNED after epoch {record.epochs_run if record.epochs_run else '?'}"
    elif state == "COMPLETE":
        result = f"{metric}={trial.value:.4f}"
    else:
        reason = record.error or ""
        if record.interrupted:
            reason = "interrupted (queued to run again)"
        result = f"FAILED {reason}".rstrip()
    seconds = record.train_seconds
    took = f"{seconds:.1f}s" if isinstance(seconds, int | float) else ""
    tag = " [baseline]" if record.baseline is not None else ""
    if record.replicate_of is not None:
        tag = f" [replicate of #{record.replicate_of}, seed {record.seed}]"
    if record.rung is not None:
        tag += f" [rung {record.rung}: {record.rung_epochs} epochs"
        if record.promoted_from is not None:
            tag += f", from #{record.promoted_from}"
        if record.twin_of is not None:
            tag += f", twin of #{record.twin_of}"
        tag += "]"
    return f"#{trial.number:<4d} {family:<15} {' '.join(parts)}  {result}  {took}{tag}".rstrip()


class Reporter(Protocol):
    """What a run prints: a line per finished trial, and whatever it shows of progress."""

    def trial_done(self, trial: FrozenTrial, finished: int, best: BestTrial | None) -> None: ...

    def close(self) -> None: ...


class LinePrinter:
    """One printed line per finished trial, under a tqdm bar of the study's finished trials."""

    def __init__(
        self,
        total: int,
        initial: int,
        metric: str,
        *,
        bar: bool = True,
        echo: Callable[[str], None] = print,
    ) -> None:
        from tqdm.auto import tqdm

        self.metric = metric
        self.echo = echo
        self.bar = tqdm(
            total=total,
            initial=min(initial, total),
            desc="trials",
            unit="trial",
            disable=None if bar else True,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def trial_done(self, trial: FrozenTrial, finished: int, best: BestTrial | None) -> None:
        self.bar.clear()
        self.echo(trial_line(trial, self.metric))
        self.bar.n = min(finished, self.bar.total)
        if best is not None:
            self.bar.set_postfix_str(f"best {self.metric}={best.value:.4f} (#{best.number})")
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


@dataclass
class FailurePolicy:
    """Stops a run after ``max_in_a_row`` trials failed in a row (an interrupted trial is not
    a failure): the model or data is broken, and every further trial would fail too."""

    max_in_a_row: int = 3

    def __post_init__(self) -> None:
        self.failures: list[tuple[int, str]] = []

    def record(self, trial: FrozenTrial) -> None:
        """Counts a finished trial (a replicate skipped as a duplicate is no failure)."""
        record = TrialRecord.of(trial)
        if record.duplicate_of is not None:
            return
        if trial.state.name == "FAIL" and not record.interrupted:
            self.failures.append((trial.number, record.error or "no error recorded"))
        else:
            self.failures.clear()

    @property
    def stop(self) -> bool:
        return len(self.failures) >= self.max_in_a_row

    def error(self) -> LRSearchError:
        number, text = self.failures[-1]
        return LRSearchError(
            f"{len(self.failures)} trials failed in a row; stopping. Last error (trial "
            f"#{number}): {text}"
        )


@dataclass
class PreparedStudy:
    """A study opened for running: its objective (data loaded once), the handle, the budget."""

    objective: Objective
    handle: StudyHandle
    budget: int
    created: bool = True
    found: LRRange | None = None
    """The range test this call ran (``find_lr``) and stored."""


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
    find_lr: bool = False,
    lr_range: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
) -> PreparedStudy:
    """Loads the data, checks the model, and creates or joins the study (no training).

    The Keras backend is ``backend``, else ``$KERAS_BACKEND``, else ``training.backend``. The
    search of every worker samples ``learning_rate`` inside the range its study stores
    (``StudyRecord.lr_range``), if any. ``lr_range`` (``LRRange.record()``) is stored in the
    study, new or not (``lrsearch find-lr --apply``). With ``find_lr``, a study that does not
    exist yet is created with the range of a range test run first
    (:func:`lrsearch.rangetest.find_lr`; :attr:`PreparedStudy.found`).

    Raises:
        ConfigError, DataError, StorageError: bad input, before any training.
        LRSearchError: the range test's loss never fell (no range to search).
    """
    select_backend(backend or os.environ.get("KERAS_BACKEND") or config.training.backend)
    url = resolve_storage_url(storage_url)
    objective = Objective(config, base_dir=base_dir)
    objective.check()  # a broken model, loss or optimizer creates no study
    name = study_name or config.study.name
    found = None
    if lr_range is not None:  # checked before anything is stored
        objective.space.bounded(lr_range["low"], lr_range["high"])
    existed = find_lr and lr_range is None and study_exists(name, url)
    if find_lr and lr_range is None and not existed:
        from lrsearch.rangetest import find_lr as range_test

        echo(f"study {name!r} is new: running the learning-rate range test first")
        found = range_test(config, objective=objective, echo=echo)
        for line in found.reasoning():
            echo("  " + line)
        lr_range = found.record()
    baselines = [
        (
            objective.space.enqueue_params(point),
            {"family": point.family, "relative": point.relative, "absolute": point.absolute},
        )
        for point in objective.baselines
    ]
    handle, created = StudyHandle.create_or_join(
        config,
        storage_url=url,
        study_file_text=study_file_text,
        data_fingerprint=objective.dataset.fingerprint(),
        study_name=study_name,
        allow_changed=allow_changed,
        baselines=baselines,
        lr_range=lr_range,
    )
    if lr_range is not None and not created:
        if found is not None and handle.record.lr_range is not None:
            # a range test of ours, but another --find-lr worker created the study first
            found = None
            echo("another worker created the study meanwhile: its stored range is searched")
        else:  # an explicit range (find-lr --apply), or the creator ran no test: ours is stored
            handle.set_lr_range(lr_range)
    stored = handle.record.lr_range
    if stored is not None:
        objective.space = objective.space.bounded(stored["low"], stored["high"])
        echo(f"learning_rate searched in [{stored['low']:.3g}, {stored['high']:.3g}] (find-lr)")
    elif existed:
        echo(
            f"study {name!r} exists: --find-lr tests a new study only (bound this one with "
            "lrsearch find-lr STUDY_FILE --apply)"
        )
    budget = n_trials or config.study.n_trials
    if lr_range is not None and not created and n_trials is None:
        budget = handle.record.budget or budget  # storing a range leaves the budget as it is
    handle.set_budget(budget)
    return PreparedStudy(
        objective=objective, handle=handle, budget=budget, created=created, found=found
    )


class Runner:
    """Runs trials of a prepared study until its budget of finished trials is met.

    The budget counts every worker's trials. While other workers run the last trials, the
    runner waits: if one of them dies (no heartbeat), its trial is failed, queued again by
    Optuna's heartbeat retry and run here. A trial's error fails that trial only
    (:class:`TrialError`); ``failures`` stops the run after several in a row. On Ctrl-C the
    interrupted trial is queued to run again with its seed.

    ``recycle_mb`` stops the run early (``recycled`` in the summary) once this process's memory
    grew by more than that many MB since its first trial ended, so that a fresh process can
    take over (:mod:`lrsearch.workers`).

    With ``replicates`` (``lrsearch confirm``) the runner trains only queued replicates
    (:meth:`StudyHandle.pop_replicate`), never samples a new trial, and its budget is the
    replicates queued so far: it stops once none waits and none runs elsewhere (taking over
    a dead worker's, as for the search). The search's budget never counts replicates.
    """

    def __init__(
        self,
        prepared: PreparedStudy,
        reporter: Reporter,
        *,
        deadline: float | None = None,
        artifacts: ArtifactRecorder | None = None,
        failures: FailurePolicy | None = None,
        recycle_mb: int | None = None,
        salt: int | None = None,
        poll_seconds: float = 2.0,
        pack: int | None = None,
        echo: Callable[[str], None] | None = None,
        replicates: bool = False,
    ) -> None:
        self.replicates = replicates
        self.handle = prepared.handle
        self.objective = prepared.objective
        self.budget = prepared.budget
        self.created = prepared.created
        self.reporter = reporter
        self.deadline = deadline  # time.monotonic() value
        self.artifacts = artifacts
        self.failures = failures or FailurePolicy()
        self.memory = _MemoryWatch(recycle_mb)
        self.salt = salt
        self.poll_seconds = poll_seconds
        self.pack = pack  # None: training.pack, resolved by the first run
        self.echo = echo or (lambda line: None)
        self.ran = 0
        # budget-aware successive halving: a Plan read from the trials picks each trial
        self.halving = self.objective.config.study.strategy == "halving" and not replicates
        self._race_said = False  # the family race's decision, printed once when known

    def run(self) -> RunSummary:
        """Runs to the budget, the deadline, the failure limit or the memory limit.

        Raises:
            Interrupted: on Ctrl-C, after queueing the interrupted trial's configuration again.
            LRSearchError: trials failed in a row.
        """
        import optuna

        started = time.perf_counter()
        study = self.handle.optuna
        optuna.storages.fail_stale_trials(study)
        done, running, budget = self.progress()
        if self.salt is not None or done or running or not self.created:
            # Joining a study others work on: a seed of our own, or we would repeat their samples.
            salt = self.salt if self.salt is not None else os.getpid()
            study.sampler = make_sampler(self.objective.config, salt=salt)
        if self.artifacts is not None:
            self.objective.on_trial_end = self.artifacts.upload_trial
        try:
            if self.pack is None:
                left = max(budget - done, 1)
                self.pack, said = self.objective.pack_size(left, deadline=self.deadline)
                if said:
                    self.echo(said)
            with quiet_logs():
                self._loop()
        except KeyboardInterrupt:
            self.reporter.close()
            current = self.objective.current_trial
            interrupted = self.objective.current_trials or ([current] if current else [])
            numbers = [self.handle.requeue_interrupted(trial) for trial in interrupted]
            queued = [f"#{n}" for n in numbers if n is not None]
            where = ""
            if queued:
                where = f"trial {', '.join(queued)} {'was' if len(queued) == 1 else 'were'} "
                where += "queued to run again; "
            raise Interrupted(
                f"Interrupted: {where}resume with the same command (Ctrl-C again aborts at once)."
            ) from None
        finally:
            self.reporter.close()
            if self.artifacts is not None:
                self.artifacts.flush()  # the last study note and figure
        if self.failures.stop:
            raise self.failures.error()
        done, _, budget = self.progress()
        return self.handle.summary(
            ran=self.ran,
            seconds=time.perf_counter() - started,
            recycled=self.memory.exceeded and done < budget,
        )

    def progress(self) -> tuple[int, int, int]:
        """``(finished, running, budget)`` of the trials this runner counts: the search trials
        and the study's budget; with ``replicates``, the replicates and all of them queued so
        far (finished, running and waiting)."""
        if not self.replicates:
            done, running = self.handle.progress()
            if self.halving:  # every rung's trials; the planned total, as trials finish
                from lrsearch.halving import planned_trials

                planned = planned_trials(self.objective.config, self.budget)
                return done, running, max(planned, done + running)
            return done, running, self.budget
        counts = self.handle.counts(replicates=True)
        done = sum(counts.get(k, 0) for k in ("complete", "pruned", "diverged"))
        running = counts.get("running", 0)
        return done, running, done + running + counts.get("waiting", 0)

    def _loop(self) -> None:
        import optuna

        study = self.handle.optuna
        while not self.failures.stop and not self.memory.exceeded:
            optuna.storages.fail_stale_trials(study)
            done, running, budget = self.progress()
            remaining = None if self.deadline is None else self.deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            if self.halving:
                job = self.plan().next()
                if job is None:
                    return
                if job == "wait":  # the next trials depend on ones running elsewhere
                    time.sleep(self.poll_seconds)
                else:
                    self._run_packed()
                continue
            if done >= budget:
                return
            if done + running >= budget:
                time.sleep(self.poll_seconds)  # others run the last trials; take over if they die
                continue
            if self.objective.packable or self.replicates:
                self._run_packed()
                continue
            study.optimize(
                _guarded(self.objective),
                n_trials=None,
                timeout=remaining,
                callbacks=[self._after_trial],
                catch=(TrialError,),
                gc_after_trial=False,
                show_progress_bar=False,
            )

    def _run_packed(self) -> None:
        """Trains trials in this worker's pack (:meth:`Objective.run_packed`; one by one for a
        replicate runner whose model cannot pack) while the budget,
        the deadline, the failure limit and the memory limit allow: each trial is asked when a
        slot frees (never more than the budget leaves), keeps its heartbeat while it trains and
        is told its outcome at the epoch end where it ended. A trial of a family with its own
        optimizer, asked meanwhile, trains alone once the pack has drained, if the deadline and
        the limits still allow (else it is queued again, as after Ctrl-C). An error fails the
        pack's running trials (recorded on each) and queues the waiting one again; Ctrl-C leaves
        them all to :meth:`run`'s requeue."""
        import optuna
        from optuna.trial import TrialState

        from lrsearch._optuna import Heartbeats

        study = self.handle.optuna
        stop = [False]

        def ask() -> optuna.Trial | None:
            if stop[0] or not self._may_start():
                return None
            optuna.storages.fail_stale_trials(study)
            with warnings.catch_warnings():
                # "Heartbeat of storage is supposed to be used with Study.optimize": each
                # trial of the pack gets the heartbeat optimize would give it (Heartbeats)
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = self._next_trial(study)
            if trial is not None:
                beats.start(trial)
            return trial

        def tell(trial: optuna.Trial, outcome: float | BaseException) -> None:
            beats.stop(trial)
            # skip_if_finished: another worker may have failed it as stale meanwhile
            if isinstance(outcome, optuna.TrialPruned):
                frozen = study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
            elif isinstance(outcome, BaseException):
                frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            else:
                frozen = study.tell(trial, outcome, skip_if_finished=True)
            stop[0] = self._bookkeep(study, frozen) or stop[0]

        with Heartbeats(study) as beats:
            try:
                if self.objective.packable:
                    self.objective.run_packed(ask, tell, size=self.pack or 1)
                else:
                    self.objective.run_one_by_one(ask, tell)
                for waiting in list(self.objective.waiting):
                    if not self._may_start():
                        break
                    tell(waiting.trial, self.objective.train_alone(waiting))
            except KeyboardInterrupt:
                for trial in self.objective.current_trials:
                    beats.stop(trial)
                    study.tell(trial, state=TrialState.FAIL)
                raise
            except Exception as exc:  # noqa: BLE001 - recorded on every running trial
                text = describe_trial_error(exc, self.objective.base_dir)
                unstarted = [w.trial for w in self.objective.waiting]
                running, self.objective.current_trials = self.objective.current_trials, []
                for trial in running:
                    if trial not in unstarted:  # the waiting ones never trained: queued again
                        TrialRecord(error=text).write(trial)
                        tell(trial, TrialError(text))
                self.objective.current_trials = unstarted
            for trial in [w.trial for w in self.objective.waiting]:  # not started
                beats.stop(trial)
                self.objective.current_trials.remove(trial)
                self.handle.requeue_interrupted(trial)
            self.objective.waiting = []

    def _next_trial(self, study: optuna.Study) -> optuna.Trial | None:
        """The next trial for a free slot, or None: the halving plan's, a queued replicate
        (never a new trial), or Optuna's (a queued one or a new sample) while the budget
        leaves room."""
        if self.halving:
            from lrsearch.halving import create_trial

            plan = self.plan()
            if plan.race is not None and not self._race_said:
                self._race_said = True
                for line in plan.race.lines(plan.maximize):
                    self.echo(line)
            job = plan.next()
            if job is None or job == "wait":
                return None
            return create_trial(study, job)
        done, running, budget = self.progress()
        if done + running >= budget:
            return None
        if self.replicates:
            return self.handle.pop_replicate()
        return study.ask()

    def _may_start(self) -> bool:
        """Whether a trial may start now: before the deadline, under the failure and memory
        limits."""
        if self.failures.stop or self.memory.exceeded:
            return False
        return self.deadline is None or time.monotonic() < self.deadline

    def _after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """``optimize``'s callback: the bookkeeping, and stop when it says so."""
        if self._bookkeep(study, trial):
            study.stop()

    def _bookkeep(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Bookkeeping per trial: a few aggregate queries, whatever the study's size. Returns
        whether this worker should stop taking trials (budget, failures, memory)."""
        import optuna

        self.ran += 1
        grown = self.memory.grown_too_much()
        optuna.storages.fail_stale_trials(study)
        done, running, budget = self.progress()
        self.reporter.trial_done(trial, done, self.handle.best())
        if self.artifacts is not None and trial.state.name in ("COMPLETE", "PRUNED"):
            self.artifacts.trial_finished(study, trial)
        self.failures.record(trial)
        ended = done + running >= budget and not self.halving  # halving: its plan says
        return grown or self.failures.stop or ended

    def plan(self) -> Plan:
        """A halving study's plan, read from its trials now."""
        from lrsearch.halving import Plan

        trials = self.handle.optuna.get_trials(deepcopy=False)
        return Plan(self.objective.config, trials, budget=self.budget)


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


def _guarded(objective: Objective) -> Callable[[optuna.Trial], float]:
    """Turns any error inside a trial into :class:`TrialError`: the trial fails with the error
    recorded on it (type, message, the user's file:line), its line says why, and the study
    goes on (it stops after a few failures in a row)."""

    def run(trial: optuna.Trial) -> float:
        import optuna

        try:
            return objective(trial)
        except (optuna.TrialPruned, KeyboardInterrupt):
            raise
        except DuplicateReplicate as exc:  # recorded as such: no error
            raise TrialError(str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - recorded on the trial and printed
            text = describe_trial_error(exc, objective.base_dir)
            TrialRecord(error=text).write(trial)
            raise TrialError(text) from exc

    return run


# Measured in docs/benchmarks.md on a 2-core CPU (bench/packing.py): which backend trains a
# built-in model type faster on the path every built-in model takes (compiled once per worker,
# trials loaded into it), and by how much at pack 8. JAX's compiled step is the faster one, at
# pack 1 too (8.3x for the MLP, 5.5x for the CNN).
_FASTER_BACKEND = {"mlp": ("jax", "6.3"), "cnn": ("jax", "2.7")}


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
    workers: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    echo_err: Callable[[str], None] | None = None,
    backend: str | None = None,
    artifacts: str | None = None,
    pack: int | str | None = None,
    find_lr: bool = False,
    replicates: bool = False,
) -> RunSummary:
    """Creates or joins the study and runs trials until it has ``n_trials`` finished ones.

    ``n_trials`` (default ``study.n_trials``) is the study's total budget, counted over every
    worker; ``timeout`` (default ``study.timeout``) bounds this call's wall time. With
    ``workers`` (what ``lrsearch start`` does), the trials run in that many worker processes
    started here (:func:`lrsearch.workers.run_in_workers`); without, in this process.
    ``artifacts`` names the artifact store for trial pictures (``None``: none in this process;
    the workers default as ``lrsearch start`` does). Lines go to ``echo``; the workers' error
    lines to ``echo_err`` (default: standard error). ``pack`` (default ``training.pack``) trains
    that many trials at once in one packed model (:mod:`lrsearch.packing`; ``"auto"``:
    calibrated). ``find_lr`` runs the learning-rate range test before a new study is created
    and stores its range in the study (:func:`prepare_study`), once, before any worker starts.
    With ``replicates`` the run trains the queued replicates only, until none is
    left (:class:`Runner`; :func:`lrsearch.confirm.confirm` queues them).

    Raises:
        Interrupted: on Ctrl-C, after queueing the interrupted trial's configuration again.
        ConfigError, DataError, StorageError: bad input, before any training.
        LRSearchError: the range test's loss never fell.
    """
    timeout = timeout if timeout is not None else config.study.timeout
    if pack is not None:
        config = config.with_pack(pack)
    prepared = None
    if workers is None or find_lr:  # with workers: the range test here, once, before they join
        prepared = prepare_study(
            config,
            study_file_text=study_file_text,
            base_dir=base_dir,
            storage_url=storage_url,
            study_name=study_name,
            n_trials=n_trials,
            allow_changed=allow_changed,
            backend=backend,
            find_lr=find_lr,
            echo=echo,
        )
        if workers is not None or artifacts is not None:  # in this process: only if asked
            _store_lr_range(prepared, artifacts, echo)
    if workers is not None:
        from lrsearch import settings
        from lrsearch.storage import check_storage_url
        from lrsearch.workers import WorkerJob, run_in_workers

        # Checked here: a bad value is one line before any process starts.
        url = check_storage_url(storage_url)
        settings.grace_period(settings.heartbeat_interval())
        backend = check_backend(
            backend or os.environ.get("KERAS_BACKEND") or config.training.backend
        )
        job = WorkerJob(
            config=config.normalized(),
            storage_url=url,
            study_file_text=study_file_text,
            base_dir=str(base_dir) if base_dir is not None else None,
            study_name=study_name,
            n_trials=n_trials,
            allow_changed=allow_changed,
            backend=backend,
            artifacts=artifacts,
            deadline=None if timeout is None else time.time() + timeout,
            progress=progress,
            recycle_mb=settings.recycle_mb(),
            replicates=replicates,
        )
        return run_in_workers(
            job,
            workers,
            echo=lambda line, err: (echo_err or _print_err)(line) if err else echo(line),
        )
    assert prepared is not None
    recorder = None
    if artifacts is not None:
        from lrsearch.artifacts import recorder_for

        recorder = recorder_for(artifacts, prepared.handle.url, config)
    total, done = _bar_counts(prepared, replicates)
    reporter = LinePrinter(total, done, config.study.metric, bar=progress, echo=echo)
    deadline = None if timeout is None else time.monotonic() + timeout
    return Runner(
        prepared,
        reporter,
        deadline=deadline,
        artifacts=recorder,
        echo=echo,
        replicates=replicates,
    ).run()


def _bar_counts(prepared: PreparedStudy, replicates: bool) -> tuple[int, int]:
    """The progress bar's total and start: the budget and the finished search trials, or the
    replicates queued so far and those finished."""
    if not replicates:
        done = prepared.handle.progress()[0]
        if prepared.objective.config.study.strategy == "halving":
            from lrsearch.halving import planned_trials

            return planned_trials(prepared.objective.config, prepared.budget), done
        return prepared.budget, done
    counts = prepared.handle.counts(replicates=True)
    done = sum(counts.get(k, 0) for k in ("complete", "pruned", "diverged"))
    return done + counts.get("running", 0) + counts.get("waiting", 0), done


def _store_lr_range(
    prepared: PreparedStudy, artifacts: str | None, echo: Callable[[str], None]
) -> None:
    """The picture of the range test ``prepared`` ran, as a study artifact (if a store is set)."""
    from lrsearch.artifacts import LR_RANGE, upload_lr_range

    if prepared.found is not None and upload_lr_range(artifacts, prepared.handle, prepared.found):
        echo(f"  the test's picture is the study's artifact {LR_RANGE} (optuna-dashboard)")


def _print_err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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
        echo=(lambda line: echo(f"[{job.label}] {line}" if job.label else line))
        if job.announce
        else (lambda line: None),
    )
    handle = prepared.handle
    if on_prepared is not None:
        on_prepared(study=handle.name, budget=prepared.budget, created=prepared.created)
    if job.announce:
        total, done = _bar_counts(prepared, job.replicates)
        what = (
            f"{total - done} replicate(s) to train"
            if job.replicates
            else f"budget {prepared.budget} trials"
        )
        echo(
            f"study {handle.name!r}: {config.training.epochs} epochs per trial, {what}, "
            f"storage {mask_url(handle.url)}"
            + (f", {job.n_workers} workers" if job.n_workers > 1 else "")
        )
        hint = backend_hint(config.model.type)
        if hint:
            echo(hint)
    from lrsearch.artifacts import recorder_for

    recorder = recorder_for(job.artifacts, handle.url, config)
    prefix = f"[{job.label}] " if job.label else ""
    total, done = _bar_counts(prepared, job.replicates)
    reporter = LinePrinter(
        total,
        done,
        config.study.metric,
        bar=job.progress,
        echo=lambda line: echo(prefix + line),
    )
    deadline = None
    if job.deadline is not None:
        deadline = time.monotonic() + max(job.deadline - time.time(), 0.0)
    salt = os.getpid() + 7919 * len(job.label) if job.label else None
    return Runner(
        prepared,
        reporter,
        deadline=deadline,
        artifacts=recorder,
        recycle_mb=job.recycle_mb,
        salt=salt,
        echo=lambda line: echo(prefix + line),
        replicates=job.replicates,
    ).run()
