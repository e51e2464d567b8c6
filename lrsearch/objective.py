"""One trial = one real Keras training with a sampled schedule.

:func:`train` runs a training for a :class:`~lrsearch.space.SchedulePoint` and returns its
per-epoch history; :class:`Objective` is the Optuna objective built on it: it loads the data once
per process, samples the schedule, reports the monitored metric every epoch so the pruner can stop
unpromising trials, and records on the trial everything needed to look at it or train it again.

Divergence (a NaN/inf loss, or a batch whose own loss is ``divergence_factor`` times the first
batch's) stops the training. The trial ends PRUNED with a NaN intermediate value at the epoch it
diverged and
``outcome = "diverged"`` with the step: a FAIL would be invisible to the TPE sampler, while a
pruned trial is ranked behind every completed one, and a NaN last value behind every pruned one
that reached the same epoch, so the sampler steers away from that region.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrsearch._imports import import_keras
from lrsearch._optuna import heartbeat_retry_of
from lrsearch.config import StudyConfig, optimizer_mismatch
from lrsearch.data import Dataset, load_dataset, user_frame
from lrsearch.divergence import DivergenceWatch
from lrsearch.exceptions import ConfigError, LRSearchError
from lrsearch.models import build_model
from lrsearch.records import TrialRecord
from lrsearch.schedules import FAMILIES
from lrsearch.space import Budget, SchedulePoint, SearchSpace

if TYPE_CHECKING:
    import optuna

__all__ = [
    "DuplicateReplicate",
    "Objective",
    "TrainResult",
    "Waiting",
    "load_data",
    "make_budget",
    "describe_trial_error",
    "make_optimizer",
    "train",
]


def describe_error(exc: BaseException, user_folder: Path | None = None) -> str:
    """``"Type: message (at file.py:12)"``: an exception in one line, with the innermost frame
    of the user's own code (the study folder, or any file outside Python's and lrsearch's)."""
    import traceback

    message = " ".join(str(exc).split()) or "(no message)"
    if len(message) > 300:
        message = message[:300] + "..."
    text = f"{type(exc).__name__}: {message}"
    frame = user_frame(traceback.extract_tb(exc.__traceback__), user_folder)
    where = f"{frame.filename}:{frame.lineno}" if frame is not None else None
    return f"{text} (at {where})" if where else text


def describe_trial_error(exc: BaseException, user_folder: Path | None = None) -> str:
    """:func:`describe_error` of what failed a trial: for lrsearch's one-line wrapper of the
    user's error (an :class:`LRSearchError` raised from it), the user's error, which says more."""
    cause = exc.__cause__ if isinstance(exc, LRSearchError) else None
    return describe_error(cause if isinstance(cause, Exception) else exc, user_folder)


@dataclass
class TrainResult:
    """What one training produced."""

    history: dict[str, list[float]]
    outcome: str  # "complete", "pruned" or "diverged"
    epochs_run: int
    train_seconds: float
    startup_seconds: float
    diverged_at_step: int | None = None
    value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def load_data(config: StudyConfig, base_dir: Path | None = None) -> Dataset:
    """The study's dataset (cached per process by :func:`lrsearch.data.load_dataset`)."""
    d = config.data
    return load_dataset(
        d.source,
        validation_split=d.validation_split,
        seed=config.study.seed,
        label_column=d.label_column,
        limit=d.limit,
        base_dir=base_dir,
    )


def make_budget(config: StudyConfig, dataset: Dataset) -> Budget:
    """The training budget and monitored metric the search layer resolves against."""
    mode = "max" if config.study.direction == "maximize" else "min"
    return Budget(
        epochs=config.training.epochs,
        steps_per_epoch=dataset.steps_per_epoch(config.data.batch_size),
        monitor=config.study.metric,
        mode=mode,
    )


def build_study_model(config: StudyConfig, dataset: Dataset, base_dir: Path | None = None) -> Any:
    """The study's model for ``dataset`` (uncompiled; seeded by the caller)."""
    return build_model(
        config.model.type,
        input_shape=dataset.input_shape,
        n_classes=dataset.n_classes,
        params=config.model.params,
        base_dir=base_dir,
    )


def build_metrics(model: Any, dataset: Dataset) -> None:
    """Builds a compiled model's metrics and loss on one validation sample, no training.

    ``fit`` otherwise builds them from its first batch, which on JAX draws one extra shuffle
    permutation from NumPy's generator before the first epoch, but only in a model's first
    ``fit``. Built beforehand, every ``fit`` after ``keras.utils.set_random_seed(s)`` sees the
    same batch order on every backend (a packed trial's, see :mod:`lrsearch.packing`).
    """
    model.evaluate(dataset.x_val[:1], dataset.y_val[:1], verbose=0)


def make_optimizer(config: StudyConfig, schedule: Any, *, cycling: bool | None = None) -> Any:
    """The study's Keras optimizer driven by ``schedule``.

    Where the schedule cycles momentum (``cycling``: by default, whether ``schedule`` says so),
    the optimizer is its :func:`~lrsearch.schedules.momentum_cycling` class: SGD's momentum or
    Adam's beta_1 then follows the schedule's at every step, from its ``max_momentum``, as in
    PyTorch (the study's ``momentum`` is not used by such a trial).
    """
    keras = import_keras()
    t = config.training
    own_optimizer = getattr(schedule, "optimizer", None)
    if callable(own_optimizer):  # a family that trains with its own optimizer (schedule_free)
        if t.optimizer == "sgd":
            raise ConfigError(optimizer_mismatch(schedule.family, t.optimizer))
        return own_optimizer(weight_decay=t.weight_decay if t.optimizer == "adamw" else None)
    if cycling is None:
        cycling = bool(getattr(schedule, "cycles_momentum", False))
    if t.optimizer == "sgd":
        cls, kwargs = keras.optimizers.SGD, {"momentum": t.momentum}
        if cycling:  # momentum buffers are needed; the schedule sets each step's momentum
            config_of = getattr(schedule, "get_config", None)
            kwargs["momentum"] = config_of()["max_momentum"] if config_of else 0.9
    elif t.optimizer == "adamw":
        cls, kwargs = keras.optimizers.AdamW, {"weight_decay": t.weight_decay}
    else:
        cls, kwargs = keras.optimizers.Adam, {}
    if cycling:
        from lrsearch.schedules import momentum_cycling

        cls = momentum_cycling(cls)
    return cls(learning_rate=schedule, **kwargs)


def _training_callback_class() -> type:
    """The base of lrsearch's training callbacks: Ctrl-C at the next batch, first step's time.

    ``interrupted`` is the list :func:`_sigint_held` yields: a held Ctrl-C is raised at the next
    batch begin, in the training loop's own thread. ``async_safe``: on JAX, Keras may run the
    batch ends in a thread pool instead of waiting for every step's result.
    """
    keras = import_keras()

    class TrainingCallback(keras.callbacks.Callback):  # type: ignore[name-defined]
        async_safe = True

        def __init__(self, interrupted: list[int] | None = None) -> None:
            super().__init__()
            self.interrupted = interrupted if interrupted is not None else []
            self.first_step_time: float | None = None

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self.interrupted:
                raise KeyboardInterrupt

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self.first_step_time is None:
                self.first_step_time = time.perf_counter()

    return TrainingCallback


def _trial_callback_class() -> type:
    keras = import_keras()

    class _TrialCallback(_training_callback_class()):  # type: ignore[misc]
        """Records the history, watches for divergence and asks the pruner, epoch by epoch.

        Divergence is checked on each batch's own loss (:class:`DivergenceWatch`, from the
        running mean Keras logs) at each batch end. The batch ends are ``async_safe``: on JAX,
        Keras then runs them in a thread pool instead of waiting for every step's result (that
        wait cost 15-30% of an epoch of the default MLP, ``bench/divergence.py``), so the
        training stops a few batches after the one that diverged (at the latest at the end of
        its epoch), whose step is recorded exactly; on TensorFlow Keras runs them in line and
        the training stops right after that batch. Ctrl-C (``interrupted``) is raised at the
        next batch begin, in the training loop's own thread.
        """

        def __init__(
            self,
            metric: str,
            watch: DivergenceWatch,
            report: Callable[[float, int], bool] | None,
            interrupted: list[int] | None = None,
        ) -> None:
            super().__init__(interrupted)
            self.metric = metric
            self.watch = watch
            self.report = report
            self.history: dict[str, list[float]] = {"epoch": [], "lr": []}
            self.diverged_at_step: int | None = None
            self.pruned = False
            self._epoch_lr = 0.0
            self._trained: Any = None

        @property
        def steps(self) -> int:
            """Batches trained so far."""
            return self.watch.steps

        def set_model(self, model: Any) -> None:
            super().set_model(model)
            # For the batch ends, which may run in a worker thread: there the model must not be
            # reached through ``self.model``, which on JAX syncs the training state into the
            # model's variables, racing the training loop (its buffers are donated: "Array has
            # been deleted").
            self._trained = model

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._epoch_lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self.watch.start_epoch()

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            super().on_train_batch_end(batch, logs)
            mean = (logs or {}).get("loss")
            if mean is not None and self.watch.update(batch, float(mean)):
                self.diverged_at_step = self.watch.diverged_at_step
                self._trained.stop_training = True

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if self.interrupted:
                raise KeyboardInterrupt
            logs = dict(logs or {})
            self.history["epoch"].append(epoch + 1)
            self.history["lr"].append(self._epoch_lr)
            for key, value in sorted(logs.items()):
                if key == "learning_rate":
                    continue
                self.history.setdefault(key, []).append(float(value))
            if self.metric not in logs:
                raise ConfigError(
                    f"study.metric = {self.metric!r} is not a metric of this training; "
                    f"available: {', '.join(sorted(logs))}"
                )
            value = float(logs[self.metric])
            if not math.isfinite(value) and self.diverged_at_step is None:
                self.diverged_at_step = self.steps
            if self.diverged_at_step is not None:
                self.model.stop_training = True
                return
            if self.report is not None and self.report(value, epoch + 1):
                self.pruned = True
                self.model.stop_training = True

    return _TrialCallback


@contextlib.contextmanager
def _sigint_held() -> Iterator[list[int]]:
    """Holds Ctrl-C while Keras runs; the trainer raises KeyboardInterrupt at the next batch end.

    A KeyboardInterrupt raised wherever the signal happens to land inside Keras or TensorFlow can
    be lost (a bare ``except`` in Keras's log conversion, a weakref callback run by the
    ``gc.collect()`` of ``clear_session``: the study then silently goes on) or crash TensorFlow
    (raised inside a C++ fast path). The first SIGINT is recorded in the yielded list; a second
    one interrupts at once. Only the main thread with Python's default handler is changed.
    """
    held: list[int] = []
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield held
        return

    def hold(signum: int, frame: Any) -> None:
        held.append(signum)
        if len(held) > 1:
            signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, hold)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def train(
    config: StudyConfig,
    dataset: Dataset,
    point: SchedulePoint,
    *,
    seed: int,
    report: Callable[[float, int], bool] | None = None,
    base_dir: Path | None = None,
    epochs: int | None = None,
    keep_model: bool = False,
    shuffle_seed: int | None = None,
) -> TrainResult:
    """Trains the study's model with ``point``'s schedule; returns the per-epoch history.

    Args:
        config: The study configuration (model, training, metric).
        dataset: Data, loaded once per process.
        point: The schedule to train with.
        seed: Seeds weight initialisation and shuffling.
        report: Called with (metric value, epoch) after each epoch; returns True to prune.
        base_dir: Folder of the study file, for ``python:`` targets.
        epochs: Overrides the configured number of epochs.
        keep_model: Put the trained model in ``result.extra["model"]``.
        shuffle_seed: Seeds the batch order apart from the weights (a packed trial's shared
            order, see :mod:`lrsearch.packing`); by default ``seed`` seeds both.
    """
    keras = import_keras()
    started = time.perf_counter()
    with _sigint_held() as interrupted:
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        model = build_study_model(config, dataset, base_dir)
        schedule = point.build()
        model.compile(
            optimizer=make_optimizer(config, schedule),
            loss=config.training.loss,
            metrics=["accuracy"],
        )
        watch = DivergenceWatch(
            config.training.divergence_factor,
            samples=len(dataset.x_train),
            batch_size=config.data.batch_size,
        )
        tracker = _trial_callback_class()(config.study.metric, watch, report, interrupted)
        # what the family's fit needs (plateau's cuts, schedule_free's evaluation weights); a
        # plain Keras schedule needs none
        needs = getattr(schedule, "training_callbacks", None)
        callbacks: list[Any] = [*(needs() if needs is not None else []), tracker]
        if shuffle_seed is not None:
            build_metrics(model, dataset)
            keras.utils.set_random_seed(shuffle_seed)
        model.fit(
            dataset.x_train,
            dataset.y_train,
            batch_size=config.data.batch_size,
            epochs=epochs or config.training.epochs,
            validation_data=(dataset.x_val, dataset.y_val),
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
    if interrupted:  # it came after the last batch
        raise KeyboardInterrupt
    elapsed = time.perf_counter() - started
    history = tracker.history
    if tracker.diverged_at_step is not None:
        outcome = "diverged"
    elif tracker.pruned:
        outcome = "pruned"
    else:
        outcome = "complete"
    metric_values = history.get(config.study.metric, [])
    startup = (tracker.first_step_time or time.perf_counter()) - started
    return TrainResult(
        history=history,
        outcome=outcome,
        epochs_run=len(history["epoch"]),
        train_seconds=elapsed,
        startup_seconds=startup,
        diverged_at_step=tracker.diverged_at_step,
        value=metric_values[-1] if metric_values else None,
        extra={"model": model} if keep_model else {},
    )


class DuplicateReplicate(Exception):
    """A replicate that another process queued at the same instant as a lower-numbered trial
    (same source, same seed): :meth:`Objective.begin` records ``duplicate_of`` on it and raises
    this before any training; the runner ends it FAIL, not as a failure of the study."""

    def __init__(self, number: int, of: int) -> None:
        super().__init__(f"trial #{number} is the same replicate as trial #{of}: not trained")
        self.number = number
        self.of = of


@dataclass(frozen=True)
class Waiting:
    """A trial asked for a pack whose family trains with its own optimizer (``schedule_free``),
    its schedule and seed recorded, waiting to train alone."""

    trial: optuna.Trial
    point: SchedulePoint
    seed: int


class Objective:
    """The Optuna objective of a study: one call = one training.

    Example:
        >>> objective = Objective(config)  # doctest: +SKIP
        >>> study = optuna.create_study(direction="maximize")  # doctest: +SKIP
        >>> study.optimize(objective, n_trials=3)  # doctest: +SKIP
    """

    def __init__(
        self,
        config: StudyConfig,
        *,
        base_dir: Path | None = None,
        dataset: Dataset | None = None,
        on_trial_start: Callable[[Any, SchedulePoint], None] | None = None,
        on_trial_end: Callable[[Any, dict[str, list[Any]]], None] | None = None,
    ) -> None:
        self.config = config
        self.base_dir = base_dir
        self.dataset = dataset if dataset is not None else load_data(config, base_dir)
        self.budget = make_budget(config, self.dataset)
        self.space = SearchSpace.from_config(
            config.space, self.budget, optimizer=config.training.optimizer
        )
        if config.study.strategy == "halving":  # the lowest rung's schedules must be valid too
            from lrsearch.halving import rung_epochs

            low = rung_epochs(config)[0]
            try:
                self.space.compressed(low, check=True)
            except ConfigError as exc:
                raise ConfigError(
                    f"strategy = 'halving': the lowest rung trains {low} epoch(s), too short: "
                    f"{exc}; raise study.halving.min_epochs (or data/batch size for more steps)"
                ) from None
        self.baselines = [self.space.baseline_point(b) for b in config.baseline]
        for b in config.baseline:
            if b.family not in self.space.families:
                raise ConfigError(
                    f"baseline family {b.family!r} is not in space.families; add it there"
                )
        self.on_trial_start = on_trial_start
        # Called with (trial, json-safe history) once the training ended (complete, pruned or
        # diverged) while the trial can still take attributes: artifact uploads hook in here.
        self.on_trial_end = on_trial_end
        self.current_trial: optuna.Trial | None = None
        self.current_trials: list[optuna.Trial] = []  # the running pack's (and waiting ones)
        # asked while a pack ran but of a family with its own optimizer: each trains alone
        # (train_alone) once the pack's run has ended
        self.waiting: list[Waiting] = []
        self._packer: Any = None  # a PackTrainer, built by the first pack
        # False for a model with its own train_step or compute_loss (found by check()): a
        # packed model would bypass them, so its trials train one by one, unpacked
        self.model_packs = True

    @property
    def packable(self) -> bool:
        """Whether this study's trials train in packs: its model packs and a family of its
        space does (a space of ``schedule_free`` alone trains one by one)."""
        return self.model_packs and any(FAMILIES[f].packs for f in self.space.families)

    def check(self) -> None:
        """Builds and compiles the study's model once and evaluates it on two samples.

        Run before a study is created or joined, so that a broken model, loss or optimizer
        setting is one clear line and creates nothing; no training happens.

        Raises:
            ConfigError: naming the study-file field (``model.*``, ``training.loss``).
        """
        keras = import_keras()
        config, data = self.config, self.dataset
        try:
            keras.losses.get(config.training.loss)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"training.loss = {config.training.loss!r} is not a Keras loss ({exc}); use "
                "e.g. 'sparse_categorical_crossentropy' for integer class labels."
            ) from None
        keras.backend.clear_session()
        try:
            model = build_study_model(config, data, self.base_dir)
        except (ConfigError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the user's model code; one line
            raise ConfigError(
                f"model.type = {config.model.type!r}: building the model failed: "
                f"{describe_error(exc, self.base_dir)}"
            ) from None
        self.model_packs = all(
            getattr(type(model), name) is getattr(keras.Model, name)
            for name in ("train_step", "compute_loss")
        )
        try:
            model.compile(
                optimizer=make_optimizer(config, 1e-3),
                loss=config.training.loss,
                metrics=["accuracy"],
            )
            model.evaluate(data.x_val[:2], data.y_val[:2], verbose=0)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a model that does not fit data or loss
            raise ConfigError(
                f"model.type = {config.model.type!r} with training.loss = "
                f"{config.training.loss!r} does not run on data.source = "
                f"{config.data.source!r} (inputs {data.input_shape}, {data.n_classes} "
                f"classes): {describe_error(exc, self.base_dir)}"
            ) from None
        finally:
            keras.backend.clear_session()

    def point_for(self, trial: optuna.Trial) -> SchedulePoint:
        """The trial's schedule: a replicate's source trial's stored schedule, a stored
        baseline, or a fresh sample from the space; a halving rung's compressed into its
        epochs."""
        record = TrialRecord.of(trial)
        if record.replicate_of is not None:
            point = SchedulePoint.from_record(TrialRecord.of(_study_trial(trial, record)))
            self.space.replay(trial, point)
            return point
        space = self.space
        if record.rung_epochs is not None:  # a halving rung: the whole schedule, compressed
            space = space.compressed(int(record.rung_epochs))
        baseline = record.baseline
        if baseline is None:
            return space.suggest(trial)
        point = space.point(baseline["family"], baseline["relative"], baseline["absolute"])
        space.replay(trial, point)
        return point

    def __call__(self, trial: optuna.Trial) -> float:
        self.current_trial = trial
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            TrialRecord(interrupted=True).write(trial)
            raise

    def _seed(self, trial: optuna.Trial) -> int:
        """``study.seed + n``; a retried trial keeps the seed of the trial it repeats.

        A retry carries its original's seed attribute (Optuna's heartbeat retry copies user
        attributes, a Ctrl-C requeue sets it), so a chain of retries is one experiment.
        """
        record = TrialRecord.of(trial)
        if isinstance(record.seed, int):
            return record.seed
        original = record.retry_of
        if original is None:
            original = heartbeat_retry_of(trial)
        number = trial.number if original is None else int(original)
        return (self.config.study.seed + number) % 2**32

    def begin(self, trial: optuna.Trial) -> tuple[SchedulePoint, int]:
        """Samples (or replays) the trial's schedule, records it with the seed; returns both.

        Raises:
            DuplicateReplicate: the trial is a replicate that a lower-numbered trial, not
                failed, already is (recorded as ``duplicate_of``; nothing else is written).
        """
        record = TrialRecord.of(trial)
        if record.replicate_of is not None or record.promoted_from is not None:
            twin = _twin_of(trial, record)
            if twin is not None:
                TrialRecord(duplicate_of=twin).write(trial)
                raise DuplicateReplicate(trial.number, twin)
        point = self.point_for(trial)
        seed = self._seed(trial)
        TrialRecord(
            schedule=point.record(),
            relative=point.relative,
            seed=seed,
            backend=str(import_keras().backend.backend()),
        ).write(trial)
        if self.on_trial_start is not None:
            self.on_trial_start(trial, point)
        return point, seed

    def reporter(self, trial: optuna.Trial) -> Callable[[float, int], bool]:
        """``report(value, epoch) -> prune?``: the epoch's value to the trial, the pruner asked."""

        replicate = TrialRecord.of(trial).replicate

        def report(value: float, epoch: int) -> bool:
            trial.report(value, epoch)
            # pruning after the last epoch would save nothing and hide a finished result; a
            # replicate measures its configuration's spread: it always trains to the end
            if replicate:
                return False
            return epoch < self.config.training.epochs and bool(trial.should_prune())

        return report

    def finish(self, trial: optuna.Trial, result: TrainResult) -> float:
        """Records a training's result on its trial; returns the value of a complete trial.

        Raises:
            optuna.TrialPruned: The trial was pruned or diverged (recorded as such).
        """
        import optuna

        history = _json_safe(result.history)
        TrialRecord(
            history=history,
            outcome=result.outcome,
            epochs_run=result.epochs_run,
            train_seconds=round(result.train_seconds, 3),
            startup_seconds=round(result.startup_seconds, 3),
            diverged_at_step=result.diverged_at_step if result.outcome == "diverged" else None,
        ).write(trial)
        if self.on_trial_end is not None:
            self.on_trial_end(trial, history)
        if result.outcome == "diverged":
            trial.report(float("nan"), max(result.epochs_run, 1))
            raise optuna.TrialPruned(f"diverged at step {result.diverged_at_step}")
        if result.outcome == "pruned":
            raise optuna.TrialPruned(f"pruned after epoch {result.epochs_run}")
        assert result.value is not None
        return float(result.value)

    def _run(self, trial: optuna.Trial) -> float:
        point, seed = self.begin(trial)
        return self.finish(trial, self._train(point, seed, trial))

    def _train(self, point: SchedulePoint, seed: int, trial: optuna.Trial) -> TrainResult:
        """One trial's training, unpacked."""
        return train(
            self.config,
            self.dataset,
            point,
            seed=seed,
            report=self.reporter(trial),
            base_dir=self.base_dir,
            epochs=TrialRecord.of(trial).rung_epochs,
        )

    def train_alone(self, waiting: Waiting) -> float | BaseException:
        """Trains a trial that :meth:`run_packed` left :attr:`waiting` (a family with its own
        optimizer), unpacked; returns its value, or the ``optuna.TrialPruned`` or error (recorded
        on it) that ended it.

        Raises:
            KeyboardInterrupt: after marking it interrupted.
        """
        import optuna

        trial = waiting.trial
        self.waiting.remove(waiting)
        outcome: float | BaseException
        try:
            outcome = self.finish(trial, self._train(waiting.point, waiting.seed, trial))
        except optuna.TrialPruned as exc:
            outcome = exc
        except KeyboardInterrupt:  # it stays in current_trials, for the caller's requeue
            TrialRecord(interrupted=True).write(trial)
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on its trial alone
            text = describe_trial_error(exc, self.base_dir)
            TrialRecord(error=text).write(trial)
            outcome = RuntimeError(text)
        self.current_trials.remove(trial)
        return outcome

    def pack_size(self, left: int, deadline: float | None = None) -> tuple[int, str | None]:
        """The pack size ``training.pack`` asks for, and a line saying how it was chosen (or
        None), for a worker with ``left`` trials of budget to run: a size K, at most ``left``;
        ``"auto"`` calibrates the built-in models (:func:`lrsearch.packing.calibrate`, at most
        :data:`~lrsearch.packing.AUTO_SHARE` of ``left`` and a share of the time to
        ``deadline``, a ``time.monotonic()`` value; its trainer is kept) and gives 1 for a
        ``python:`` model. A model that cannot pack trains one by one."""
        pack = self.config.training.pack
        if not self.packable:
            why = (
                "this model trains unpacked (it has its own train_step or compute_loss)"
                if not self.model_packs
                else f"{', '.join(self.space.families)} train(s) alone, with its own optimizer"
            )
            return 1, None if pack in (1, "auto") else f"pack {pack}: {why}"
        if pack != "auto":
            return max(min(int(pack), left), 1), None
        if self.config.model.type.startswith("python:"):
            return 1, None
        from lrsearch.packing import AUTO_SHARE, calibrate

        most = max(left // AUTO_SHARE, 1)
        calibration = calibrate(
            self.config, self.dataset, base_dir=self.base_dir, most=most, deadline=deadline
        )
        if calibration.trainer is not None:
            self._packer = calibration.trainer  # compiled already: the first trial reuses it
        return calibration.size, calibration.line()

    def run_one_by_one(
        self,
        ask: Callable[[], optuna.Trial | None],
        tell: Callable[[optuna.Trial, float | BaseException], None],
    ) -> int:
        """Trains the trials ``ask`` gives one after the other, unpacked, and ``tell``s each
        outcome as :meth:`run_packed` does (a value, the ``optuna.TrialPruned`` or the error,
        recorded on the trial, that ended it); returns how many it trained. For a runner that
        takes queued trials only (``lrsearch confirm`` on a model that cannot pack).

        Raises:
            KeyboardInterrupt: after marking the running trial interrupted.
        """
        import optuna

        trained = 0
        while (trial := ask()) is not None:
            self.current_trials = [trial]
            self.current_trial = trial
            outcome: float | BaseException
            try:
                outcome = self(trial)
                trained += 1
            except (optuna.TrialPruned, DuplicateReplicate) as exc:
                trained += not isinstance(exc, DuplicateReplicate)
                outcome = exc
            except Exception as exc:  # noqa: BLE001 - recorded on its trial alone
                text = describe_trial_error(exc, self.base_dir)
                TrialRecord(error=text).write(trial)
                outcome = RuntimeError(text)
                trained += 1
            self.current_trials = []
            tell(trial, outcome)
        return trained

    def run_packed(
        self,
        ask: Callable[[], optuna.Trial | None],
        tell: Callable[[optuna.Trial, float | BaseException], None],
        size: int,
    ) -> int:
        """Trains the trials ``ask`` gives in this worker's pack, its slots kept full; returns
        how many it trained.

        ``ask()`` gives the next trial (None: no more); ``tell(trial, outcome)`` gets each
        trial's value, or the ``optuna.TrialPruned`` that ends it, at the epoch end where it
        ended, after its record is written. The packed model
        (:class:`lrsearch.packing.PackTrainer`, ``size`` slots) is built and compiled on the
        first call and reused by the next ones. The batch order is
        seeded by the first trial's seed; ``pack_size``, ``shuffle_seed`` and
        ``shuffle_epoch`` are recorded on every trial. :attr:`current_trials` holds the
        running ones. A trial of a family with its own optimizer (``schedule_free``) is left
        in :attr:`waiting` and ends the pack's refills: the run drains, and the caller trains
        it alone (:meth:`train_alone`).

        Raises:
            KeyboardInterrupt: after marking every running trial interrupted.
        """
        import optuna

        from lrsearch.packing import PackEntry, PackTrainer

        shuffle_seed: list[int] = []

        def next_entry() -> PackEntry | None:
            trial = ask()
            if trial is None:
                return None
            self.current_trials.append(trial)
            try:
                point, seed = self.begin(trial)
            except DuplicateReplicate as exc:
                self.current_trials.remove(trial)
                tell(trial, exc)  # ended without training; the pack asks the next one
                return next_entry()
            if not FAMILIES[point.family].packs:  # its own optimizer: it trains alone
                self.waiting.append(Waiting(trial, point, seed))
                return None  # the pack takes no more trials this run: it does not wait long
            shuffle_seed[:] = shuffle_seed or [seed]
            TrialRecord(pack_size=size, shuffle_seed=shuffle_seed[0]).write(trial)
            epochs = TrialRecord.of(trial).rung_epochs
            return PackEntry(point, seed, self.reporter(trial), key=trial, epochs=epochs)

        def on_result(entry: PackEntry, result: TrainResult) -> None:
            trial = entry.key
            TrialRecord(shuffle_epoch=result.extra["shuffle_epoch"]).write(trial)
            outcome: float | BaseException
            try:
                outcome = self.finish(trial, result)
            except optuna.TrialPruned as exc:
                outcome = exc
            self.current_trials.remove(trial)
            tell(trial, outcome)

        self.current_trials = []
        self.waiting = []
        try:
            first = next_entry()
            if first is None:
                return 0
            if self._packer is None or self._packer.size != size:
                self._packer = PackTrainer(self.config, self.dataset, size, base_dir=self.base_dir)
            entries = iter([first])
            return self._packer.run(
                lambda: next(entries, None) or next_entry(),
                on_result,
                shuffle_seed=shuffle_seed[0],
            )
        except KeyboardInterrupt:
            for trial in self.current_trials:
                TrialRecord(interrupted=True).write(trial)
            raise


def _study_trial(trial: optuna.Trial, record: TrialRecord) -> optuna.trial.FrozenTrial:
    """A replicate's source trial, read from the storage.

    Raises:
        ConfigError: the study has no such trial, or it has no recorded schedule.
    """
    from lrsearch._optuna import storage_of, study_id
    from lrsearch.queries import trial_id_of

    storage = storage_of(trial.study)
    found = trial_id_of(storage, study_id(trial.study), int(record.replicate_of or 0))
    if found is None:
        raise ConfigError(
            f"trial #{trial.number} replicates trial #{record.replicate_of}, which does not exist"
        )
    return storage.get_trial(found)


def _twin_of(trial: optuna.Trial, record: TrialRecord) -> int | None:
    """The lowest-numbered other trial that is the same replicate as ``trial`` (same source and
    seed), or the same halving promotion (same source and rung), and did not fail, if it has a
    lower number than ``trial``; else ``None``.

    Two ``lrsearch confirm`` processes that queue the missing replicates at the same instant
    can both queue one; the first one popped whose twin is lower-numbered is not trained, so
    each replicate trains once (a twin that failed, e.g. a stale trial's retry, does not count).
    """
    from lrsearch._optuna import storage_of, study_id
    from lrsearch.queries import replicate_rows

    storage = storage_of(trial.study)
    if record.promoted_from is not None:  # a halving promotion: the same source, same rung
        for other in storage.get_all_trials(study_id(trial.study), deepcopy=False):
            if other.number >= trial.number:
                break
            theirs = TrialRecord.of(other)
            same = theirs.promoted_from == record.promoted_from and theirs.rung == record.rung
            if same and other.state.name != "FAIL":
                return other.number
        return None
    for row in replicate_rows(storage, study_id(trial.study)):
        if row.number >= trial.number:
            break
        same = row.source == record.replicate_of and row.seed == record.seed
        if same and row.state != "FAIL":
            return row.number
    return None


def _json_safe(history: dict[str, list[float]]) -> dict[str, list[float | None]]:
    """NaN/inf become null: the dashboard parses attributes with strict JSON."""
    return {k: [v if math.isfinite(v) else None for v in vs] for k, vs in history.items()}


def history_array(history: dict[str, list[float]], key: str) -> np.ndarray:
    """One column of a stored history as a float array (NaN where missing)."""
    return np.asarray(history.get(key, []), dtype="float64")
