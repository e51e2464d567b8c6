"""What watching for divergence costs per epoch, against a bare ``model.fit``.

Trains the model, data and batch size of ``studies/digits.toml`` (by default) several ways, one
compiled model each (same seed), each timed over whole ``fit`` calls of ``--epochs`` epochs,
alternated (forward, then reverse order) for ``--repeats`` rounds after one warm-up fit each:

- bare: ``model.fit`` with validation data and no callback of ours;
- old: lrsearch's trial callback with the rule it had before: ``logs["loss"]`` (the epoch's
  running mean) against ``divergence_factor`` times the first batch's, at every batch end, in
  line (Keras waits for each step's result before the next step);
- inline: the new rule (each batch's own loss, recovered from that running mean by
  :class:`lrsearch.divergence.DivergenceWatch`) with the batch ends in line, as ``old``;
- new: lrsearch's trial callback as ``train`` builds it: the new rule, ``async_safe`` (on JAX
  Keras runs its batch ends in a thread pool and goes on with the next step; TensorFlow Keras
  runs every callback in line, so there ``new`` and ``inline`` are the same);
- metric: the alternative that keeps the statistics inside the compiled train step: a Keras
  metric that recomputes the batch loss and records the first batch over the limit, read once
  per epoch (no batch-end hook; Ctrl-C checked at batch begin). Not used by lrsearch: kept here
  for the comparison.

A small timer callback (epoch begin, test begin and epoch end only: no batch-end hook) is in
every variant. Per fit it takes the median over the epochs of the wall time of the training part
(epoch begin to validation start) and of the whole epoch, and the process CPU time of the
training part; the table gives the median over rounds and the median of each round's ratio to
bare. On a shared machine trust the ratios more than the milliseconds.

    python bench/divergence.py [--study studies/digits.toml] [--repeats 15] [--epochs E]
    KERAS_BACKEND=jax python bench/divergence.py
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

from lrsearch._imports import import_keras
from lrsearch.config import load_study_file
from lrsearch.divergence import DivergenceWatch
from lrsearch.models import build_model
from lrsearch.objective import _trial_callback_class, load_data, make_budget, make_optimizer
from lrsearch.space import SearchSpace

keras = import_keras()
ops = keras.ops

VARIANTS = ("bare", "old", "inline", "new", "metric")


class EpochTimer(keras.callbacks.Callback):  # type: ignore[name-defined]
    """Wall and CPU time of each epoch's training part, and wall time of the whole epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.train: list[float] = []
        self.cpu: list[float] = []
        self.epoch: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.train.append(time.perf_counter() - self._wall)
        self.cpu.append(time.process_time() - self._cpu)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch.append(time.perf_counter() - self._wall)


def old_callback(metric: str, factor: float, samples: int, batch_size: int) -> Any:
    """lrsearch's trial callback with its per-batch check as it was before (on the mean)."""
    base = _trial_callback_class()

    class OldRule(base):  # type: ignore[misc, valid-type]
        async_safe = False
        first_loss: float | None = None
        old_steps = 0

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self.interrupted:
                raise KeyboardInterrupt
            self.old_steps += 1
            loss = float((logs or {}).get("loss", 0.0))
            if self.first_loss is None:
                self.first_loss = loss
                self.first_step_time = time.perf_counter()
            limit = factor * max(abs(self.first_loss), 1e-8)
            if not math.isfinite(loss) or loss > limit:
                self.diverged_at_step = self.old_steps
                self.model.stop_training = True

    watch = DivergenceWatch(factor, samples=samples, batch_size=batch_size)
    return OldRule(metric, watch, None, [])


def inline_callback(metric: str, factor: float, samples: int, batch_size: int) -> Any:
    """lrsearch's trial callback, its batch ends run in line (as before) instead of async."""

    class Inline(_trial_callback_class()):  # type: ignore[misc]
        async_safe = False

    watch = DivergenceWatch(factor, samples=samples, batch_size=batch_size)
    return Inline(metric, watch, None, [])


class DivergenceMetric(keras.metrics.Metric):  # type: ignore[name-defined]
    """The in-step alternative: the batch loss recomputed from ``y_true``/``y_pred``, the first
    training batch's loss kept across epochs, and the epoch's first batch over the limit (its
    1-based index in the epoch, 0 if none) as the result. Validation batches update it too (Keras
    shares compiled metrics with ``evaluate``); they come after the training batches of the
    epoch, whose result is in ``logs`` before validation starts."""

    def __init__(self, loss: str, factor: float, name: str = "diverged_at_batch") -> None:
        super().__init__(name=name)
        self.loss_fn = keras.losses.get(loss)
        self.factor = factor
        self.first = self.add_variable(shape=(), initializer="zeros", name="first")
        self.started = self.add_variable(shape=(), initializer="zeros", name="started")
        self.batches = self.add_variable(shape=(), initializer="zeros", name="batches")
        self.at = self.add_variable(shape=(), initializer="zeros", name="at")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        loss = ops.mean(self.loss_fn(y_true, y_pred))
        first = ops.where(self.started.value > 0, self.first.value, loss)
        self.first.assign(first)
        self.started.assign(1.0)
        n = self.batches.value + 1.0
        self.batches.assign(n)
        bad = ops.logical_not(loss <= self.factor * ops.maximum(ops.abs(first), 1e-8))
        at = self.at.value
        self.at.assign(ops.where(ops.logical_and(at == 0, bad), n, at))

    def reset_state(self) -> None:  # per epoch; the first loss stays
        self.batches.assign(0.0)
        self.at.assign(0.0)

    def result(self) -> Any:
        # A copy: on TensorFlow convert_to_tensor(variable) is read only when the logs are,
        # after validation has updated the variable.
        return ops.copy(self.at.value)


class MetricCheck(keras.callbacks.Callback):  # type: ignore[name-defined]
    """Reads the metric once per epoch; checks Ctrl-C at batch begin (which keeps batch ends
    asynchronous)."""

    def __init__(self, steps_per_epoch: int) -> None:
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.interrupted: list[int] = []
        self.diverged_at_step: int | None = None

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        at = int((logs or {}).get("diverged_at_batch", 0))
        if at and self.diverged_at_step is None:
            self.diverged_at_step = epoch * self.steps_per_epoch + at
            self.model.stop_training = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/digits.toml")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=None, help="default: the study's")
    parser.add_argument("--family", default="cosine")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()

    config, _ = load_study_file(args.study)
    data = load_data(config, Path(args.study).resolve().parent)
    budget = make_budget(config, data)
    space = SearchSpace.from_config(config.space, budget, optimizer=config.training.optimizer)
    point = space.point(args.family, {"learning_rate": args.learning_rate})
    samples, batch_size = len(data.x_train), config.data.batch_size
    factor, metric = config.training.divergence_factor, config.study.metric
    epochs = args.epochs or config.training.epochs
    variants = [v for v in args.variants.split(",") if v]
    if not variants or variants[0] != "bare" or not set(variants) <= set(VARIANTS):
        parser.error(f"--variants: 'bare' first, then any of {', '.join(VARIANTS[1:])}")
    print(
        f"{args.study}: model {config.model.type} {config.model.params}, {samples} samples, "
        f"batch {batch_size} ({budget.steps_per_epoch} steps/epoch), {epochs} epochs per fit, "
        f"{args.family} lr={args.learning_rate}, backend {keras.backend.backend()}"
    )

    def setup(variant: str) -> tuple[Any, list[Any]]:
        keras.utils.set_random_seed(0)
        model = build_model(
            config.model.type,
            input_shape=data.input_shape,
            n_classes=data.n_classes,
            params=config.model.params,
        )
        metrics: list[Any] = ["accuracy"]
        callbacks: list[Any] = []
        if variant == "old":
            callbacks = [old_callback(metric, factor, samples, batch_size)]
        elif variant == "inline":
            callbacks = [inline_callback(metric, factor, samples, batch_size)]
        elif variant == "new":
            watch = DivergenceWatch(factor, samples=samples, batch_size=batch_size)
            callbacks = [_trial_callback_class()(metric, watch, None, [])]
        elif variant == "metric":
            metrics.append(DivergenceMetric(config.training.loss, factor))
            callbacks = [MetricCheck(budget.steps_per_epoch)]
        model.compile(
            optimizer=make_optimizer(config, point.build()),
            loss=config.training.loss,
            metrics=metrics,
        )
        return model, callbacks

    runs = {variant: setup(variant) for variant in variants}

    def fit(variant: str, n_epochs: int) -> tuple[float, float, float]:
        model, callbacks = runs[variant]
        timer = EpochTimer()
        model.fit(
            data.x_train,
            data.y_train,
            batch_size=batch_size,
            epochs=n_epochs,
            validation_data=(data.x_val, data.y_val),
            shuffle=True,
            verbose=0,
            callbacks=[*callbacks, timer],
        )
        if len(timer.epoch) < n_epochs:
            raise SystemExit(f"{variant}: the training stopped early (diverged?)")
        med = statistics.median
        return med(timer.train), med(timer.cpu), med(timer.epoch)

    for variant in variants:  # warm-up: tracing/compilation, first iterators
        fit(variant, 2)
    took: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
    for i in range(args.repeats):
        order = variants if i % 2 == 0 else variants[::-1]
        for variant in order:
            took[variant].append(fit(variant, epochs))
        print(
            f"  round {i + 1}: "
            + "  ".join(f"{v} {took[v][-1][0] * 1e3:.1f}" for v in variants)
            + " ms (training part, median epoch)",
            flush=True,
        )

    steps = budget.steps_per_epoch
    columns = ("training part", "CPU, training part", "whole epoch")
    print(f"\nmedians over {args.repeats} rounds; ratio = median of each round's ratio to bare")
    print(
        f"| variant | {' | '.join(f'{c} (ms)' for c in columns)} | "
        f"{' | '.join(f'ratio, {c}' for c in columns)} | extra per step, training part |"
    )
    print("|---" * (2 * len(columns) + 2) + "|")
    bare = took["bare"]
    for variant in variants:
        rows = took[variant]
        medians = [statistics.median(r[j] for r in rows) for j in range(3)]
        pairs = list(zip(rows, bare, strict=True))
        ratios = [statistics.median(r[j] / b[j] for r, b in pairs) for j in range(3)]
        extra = (medians[0] - statistics.median(b[0] for b in bare)) / steps * 1e6
        print(
            f"| {variant} | {' | '.join(f'{m * 1e3:.2f}' for m in medians)} | "
            f"{' | '.join(f'{r:.3f}' for r in ratios)} | {extra:+.0f} µs |"
        )


if __name__ == "__main__":
    main()
