"""Packed trials: K trials' models trained in one Keras model, one optimizer, one ``fit``.

Every trial of a study trains the same model on the same data; only the schedule differs. For
the small models lrsearch is used on first, a step's time is almost all fixed cost (Python
dispatch, callbacks, the compiled step's launch), so K copies trained in one step cost about what
one does. A :class:`PackTrainer` of K slots trains K trials' copies in one ``fit`` and returns
one :class:`~lrsearch.objective.TrainResult` per copy, each as the unpacked training of that copy
would have produced it; it is built and compiled once and trains pack after pack
(:func:`train_pack` is one pack on a new trainer):

- **Weights.** Each copy is first built exactly as its unpacked trial builds it (the study's
  model under ``keras.utils.set_random_seed(seed)``) and its weights are loaded into its slot.
  The built-in ``mlp`` runs as *stacked* layers (:class:`PackedDense`: one ``(K, in, out)``
  kernel, one op per layer for all copies, see :func:`_stacked`, which also stacks the ``cnn``
  as grouped convolutions when asked); any other model (``cnn``, ``python:module:function``)
  runs by default as K copies side by side in one functional model (BatchNorm, Dropout and all
  stay per copy).
- **Batches.** The copies share one batch order: the data is shuffled from ``shuffle_seed``
  (``keras.utils.set_random_seed(shuffle_seed)`` right before ``fit``, the metrics built
  beforehand, see :func:`~lrsearch.objective.build_metrics`). The unpacked
  :func:`~lrsearch.objective.train` given the same ``shuffle_seed`` sees the same batches, so a
  packed copy and its unpacked twin train alike (``tests/test_packing.py`` holds them to 1e-5).
- **Loss.** The packed loss is the sum of the copies' own losses (each the study's loss, reduced
  as Keras reduces it), so every copy's gradient is its own loss's gradient.
- **Learning rates.** Each copy's schedule (its family's own
  :class:`~lrsearch.schedules.LRSearchSchedule`) is tabulated over the budget into row k of a
  ``(K, total_steps)`` optimizer variable when its trial is loaded; :class:`PackedSchedule` reads
  the step's column inside the compiled step (a value, not a constant: one compiled step serves
  every pack), and the packed optimizer (:func:`packed_optimizer_class`) hands each variable its
  copy's rate. A plateau copy's cuts are its own ``(K,)`` scale entry, driven by its own metric.
- **Outcomes.** At each epoch end every running copy is judged on its own metrics: a diverged
  copy (the divergence rule on its own per-batch loss) ends ``diverged`` at its step, a copy the
  pruner stops ends ``pruned``; either is *frozen* from then on (its gradients masked, its
  variables kept as they are), so it no longer changes and its NaNs never reach another copy.
  The fit ends when every copy has ended.

The training path is ``keras.ops`` and runs on TensorFlow and JAX. Private Keras attributes it
relies on: a softmax output's ``_keras_logits`` (carried to each copy's slice, so that
TensorFlow's crossentropy computes from the logits as in the unpacked trial, see
:func:`_keep_logits`), and the optimizer's ``_trainable_variables``, ``_get_variable_index`` and
``_use_weight_decay`` (to give each variable its copy's rate, as Keras's own ``update_step`` and
weight decay look variables up).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrsearch._imports import import_keras
from lrsearch.divergence import DivergenceWatch
from lrsearch.exceptions import ConfigError
from lrsearch.schedules import FAMILIES

if TYPE_CHECKING:
    from lrsearch.config import StudyConfig
    from lrsearch.data import Dataset
    from lrsearch.objective import TrainResult
    from lrsearch.space import SchedulePoint

__all__ = [
    "MAX_TABLE",
    "PACKED_METRICS",
    "Calibration",
    "PackEntry",
    "PackTrainer",
    "calibrate",
    "may_cycle_momentum",
    "train_pack",
]

PACKED_METRICS = ("loss", "accuracy")
"""The per-copy metrics a pack logs, as the unpacked training logs them (and ``val_``)."""

_STACKED = ("mlp",)
"""Built-in model types that pack as stacked layers by default (the others side by side). The
``cnn`` can stack too (``stacked=True``: grouped convolutions), but on a CPU a grouped
convolution ran ~5x slower than K separate ones on both backends (docs/benchmarks.md)."""


def _keras_classes() -> dict[str, Any]:
    """The Keras classes of this module, made on first use (Keras is imported lazily)."""
    if _CLASSES:
        return _CLASSES
    keras = import_keras()
    ops = keras.ops

    class PackedDense(keras.layers.Layer):  # type: ignore[name-defined]
        """K independent ``Dense`` layers as one ``(K, in, out)`` kernel and ``(K, out)`` bias.

        Takes ``(B, in)`` (the same input for every copy) or ``(B, K, in)`` and returns
        ``(B, K, units)``. The weights are set from K built ``Dense`` layers
        (:meth:`set_copies`), so each copy starts exactly as its unpacked trial does.
        """

        def __init__(self, copies: int, units: int, activation: Any = None, **kwargs: Any):
            super().__init__(**kwargs)
            self.copies = copies
            self.units = units
            self.activation = keras.activations.get(activation)

        def build(self, input_shape: tuple[int | None, ...]) -> None:
            fan_in = int(input_shape[-1])  # type: ignore[arg-type]
            self.kernel = self.add_weight(
                shape=(self.copies, fan_in, self.units), initializer="zeros", name="kernel"
            )
            self.bias = self.add_weight(
                shape=(self.copies, self.units), initializer="zeros", name="bias"
            )

        def call(self, x: Any) -> Any:
            if len(x.shape) == 2:
                y = ops.einsum("bi,kio->bko", x, self.kernel)
            else:
                y = ops.einsum("bki,kio->bko", x, self.kernel)
            return self.activation(y + self.bias)

        def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[Any, ...]:
            return (input_shape[0], self.copies, self.units)

        def set_copies(self, dense_layers: Sequence[Any], slots: Sequence[int] = ()) -> None:
            """Slot ``slots[i]`` (default: ``i``) takes ``dense_layers[i]``'s weights."""
            numpy = ops.convert_to_numpy
            kernel, bias = numpy(self.kernel).copy(), numpy(self.bias).copy()
            for i, dense in zip(slots or range(len(dense_layers)), dense_layers, strict=True):
                kernel[i], bias[i] = numpy(dense.kernel), numpy(dense.bias)
            self.kernel.assign(kernel)
            self.bias.assign(bias)

    class PackedSchedule(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[name-defined]
        """Every copy's learning rate as one ``(K,)`` vector, read in the compiled step.

        Copy k's rates for its whole budget are row k of ``table`` (``(K, total_steps)``,
        computed by its family's own schedule when the copy's trial is loaded); at optimizer
        step ``step`` it reads column ``min(step - offset[k], total_steps - 1)`` (``offset[k]``:
        the step its trial joined the pack at), times the copy's plateau ``scale``, and 0 once
        the copy ended (``active[k] == 0``). All four are optimizer variables: values the
        compiled step receives, not constants baked into it, so one compiled step serves every
        trial a slot ever holds (and the epoch-end changes are seen on TensorFlow and JAX alike).
        """

        def __init__(self) -> None:
            super().__init__()
            self.table: Any = None
            self.scale: Any = None
            self.active: Any = None
            self.offset: Any = None
            self.momentum_table: Any = None

        def bind(
            self, table: Any, scale: Any, active: Any, offset: Any, momentum_table: Any = None
        ) -> None:
            self.table, self.scale, self.active, self.offset = table, scale, active, offset
            self.momentum_table = momentum_table

        def _column(self, table: Any, step: Any) -> Any:
            """Each copy's entry of ``table`` at its own step."""
            last = int(table.shape[1]) - 1
            own = ops.cast(step, "int32") - ops.cast(self.offset, "int32")
            column = ops.expand_dims(ops.clip(own, 0, last), 1)
            return ops.take_along_axis(ops.convert_to_tensor(table), column, axis=1)[:, 0]

        def __call__(self, step: Any) -> Any:
            rates = self._column(self.table, step)
            rates = rates * ops.cast(self.scale, rates.dtype)
            return ops.where(self.active > 0, rates, ops.zeros_like(rates))

        def momentum(self, step: Any) -> Any:
            """Each copy's momentum (SGD) or beta_1 (Adam) at its own step, ``(K,)``: its
            schedule's where that cycles momentum, else the optimizer's own."""
            return self._column(self.momentum_table, step)

        def get_config(self) -> dict[str, Any]:
            return {}

    class StackCopies(keras.layers.Layer):  # type: ignore[name-defined]
        """The copies' outputs stacked on axis 1, keeping Keras's ``_keras_logits`` (see
        :func:`_copy_output`)."""

        def call(self, outputs: list[Any]) -> Any:
            stacked = ops.stack(outputs, axis=1)
            logits = [getattr(o, "_keras_logits", None) for o in outputs]
            if all(x is not None for x in logits):
                _keep_logits(stacked, ops.stack(logits, axis=1))
            return stacked

        def compute_output_shape(self, input_shape: list[tuple[Any, ...]]) -> tuple[Any, ...]:
            first = input_shape[0]
            return (first[0], len(input_shape), *first[1:])

    _CLASSES.update(
        PackedDense=PackedDense, PackedSchedule=PackedSchedule, StackCopies=StackCopies
    )
    return _CLASSES


_CLASSES: dict[str, Any] = {}


def _keep_logits(output: Any, logits: Any) -> None:
    """Marks ``output`` as the softmax of ``logits`` the way Keras's softmax activation does.

    On TensorFlow a crossentropy reads the logits a softmax output carries (``_keras_logits``)
    and computes the loss from them (no clipping of the probabilities); a slice or a stack of
    such an output is a new tensor without them. Carrying them over keeps a packed copy's loss
    the very computation of its unpacked trial's (on JAX nothing carries logits: the same code
    then computes from the probabilities, as Keras does there).
    """
    try:
        output._keras_logits = logits
    except AttributeError:  # an eager tensor takes no new attributes; Keras skips it too
        pass


def _copy_output(y_pred: Any, k: int) -> Any:
    """Copy k's output ``y_pred[:, k]``, with its logits if ``y_pred`` carries them."""
    out = y_pred[:, k]
    logits = getattr(y_pred, "_keras_logits", None)
    if logits is not None:
        _keep_logits(out, logits[:, k])
    return out


@dataclass(frozen=True)
class Blocks:
    """A variable whose last axis holds the copies side by side, ``size`` entries each (a
    stacked convolution's kernel and bias: copy k owns ``[..., k*size:(k+1)*size]``)."""

    size: int


Layout = dict[int, "int | Blocks"]
"""``id(variable) -> where its copies are``: an ``int`` k for a variable of copy k alone (side by
side), :class:`Blocks` for copies along the last axis; a variable not in it holds the copies on
its leading axis (stacked: ``(K, ...)``)."""

_OPTIMIZER_CLASSES: dict[type, type] = {}


def packed_optimizer_class(base: type) -> type:
    """``base`` (a Keras optimizer class) taking a ``(K,)`` learning rate, one entry per copy.

    Each variable gets its copy's rate: a stacked variable (leading axis K) the vector reshaped
    to broadcast over that axis, a copy's own variable its entry. An ended copy's variables are
    frozen: its gradient is masked to zero and the variable keeps its value through the update
    (SGD's momentum would otherwise still move it). Weight decay (AdamW) uses the same rates.

    Each copy counts its own steps from the step its trial joined the pack (``offset``): its
    schedule reads its own column (:class:`PackedSchedule`), and Adam's bias correction, which
    Keras computes from the optimizer's one step count, is corrected to the copy's own count by
    scaling its rate (Keras folds the correction into the rate alone:
    ``lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)``), so a trial that joins a running pack trains
    as it would from step 0. :meth:`reset_copy` zeroes one copy's optimizer state in place.
    """
    cached = _OPTIMIZER_CLASSES.get(base)
    if cached is not None:
        return cached
    keras = import_keras()
    ops = keras.ops

    class Packed(base):
        def set_copies(
            self, layout: Layout, active: Any, offset: Any, own: Sequence[Any] = ()
        ) -> None:
            """``layout``: where each variable keeps its copies (see :data:`Layout`);
            ``active``, ``offset``: the ``(K,)`` optimizer variables of running copies and of
            the step each copy's trial joined at; ``own``: the pack's other variables."""
            self._lrsearch_active = active
            self._lrsearch_offset = offset
            self._lrsearch_by_index: list[int | Blocks | None] = [
                layout.get(id(v)) for v in self._trainable_variables
            ]
            # the state Keras keeps per trainable variable: lists aligned with them
            # (SGD's momentums; Adam's momentums, velocities and velocity hats)
            n = len(self._trainable_variables)
            self._lrsearch_states = [
                value
                for key, value in vars(self).items()
                if key != "_trainable_variables"
                and isinstance(value, list)
                and len(value) == n
                and n
                and all(v is None or isinstance(v, keras.Variable) for v in value)
            ]
            covered = {id(v) for state in self._lrsearch_states for v in state if v is not None}
            covered |= {id(self.iterations), id(active), id(offset)}
            covered |= {id(v) for v in own}
            unknown = [v.path for v in self.variables if id(v) not in covered]
            if unknown:  # a state this class cannot reset per copy: refuse, never train wrong
                raise ConfigError(
                    f"training.optimizer: {base.__name__} keeps state lrsearch cannot reset per "
                    f"packed copy ({', '.join(unknown)}); use pack = 1"
                )

        def reset_copy(self, k: int) -> None:
            """Zeroes copy k's optimizer state (moments, velocities), the others' untouched."""
            for state in self._lrsearch_states:
                for index, variable in enumerate(state):
                    if variable is None:
                        continue
                    where = self._lrsearch_by_index[index]
                    if where == k:
                        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
                    elif where is None or isinstance(where, Blocks):
                        value = np.array(ops.convert_to_numpy(variable))
                        if where is None:
                            value[k] = 0  # stacked: row k
                        else:
                            value[..., k * where.size : (k + 1) * where.size] = 0
                        variable.assign(value)

        def _per_copy(self, variable: Any, vector: Any) -> Any:
            where = self._lrsearch_by_index[self._get_variable_index(variable)]
            if where is None:
                return ops.reshape(vector, (-1,) + (1,) * (len(variable.shape) - 1))
            if isinstance(where, Blocks):  # broadcast along the last axis, a block per copy
                return ops.repeat(vector, where.size, axis=0)
            return vector[where]

        def _step_momentum(self) -> Any:
            """Each copy's momentum or beta_1 this step, ``(K,)`` (see MomentumCycling)."""
            schedule = self._learning_rate
            if getattr(schedule, "momentum_table", None) is None:
                return None
            return schedule.momentum(self._iterations)  # the lr's step

        def _copy_momentums(self) -> Any:
            """``_step_momentum`` as computed once for this step (or now, if not)."""
            step = getattr(self, "_lrsearch_step_momentum", None)
            return self._step_momentum() if step is None else step

        def _cycled_momentum(self, variable: Any) -> Any:
            momentums = self._copy_momentums()
            return None if momentums is None else self._per_copy(variable, momentums)

        def _own_step_rates(self, learning_rate: Any) -> Any:
            """Adam's bias correction at each copy's own step instead of the optimizer's
            (with each copy's own beta_1 where momentum cycles)."""
            if not isinstance(self, keras.optimizers.Adam):  # AdamW is an Adam
                return learning_rate
            rates = ops.cast(learning_rate, "float32")
            iterations = ops.cast(self.iterations, "int32")
            step = ops.cast(iterations + 1, "float32")
            own = ops.maximum(iterations + 1 - ops.cast(self._lrsearch_offset, "int32"), 1)
            own = ops.cast(own, "float32")
            momentums = self._copy_momentums()  # each copy's beta_1 where it cycles
            beta_1 = ops.cast(self.beta_1 if momentums is None else momentums, "float32")
            beta_2 = ops.cast(self.beta_2, "float32")

            def correction(t: Any) -> Any:
                return ops.sqrt(1 - ops.power(beta_2, t)) / (1 - ops.power(beta_1, t))

            return rates * (correction(own) / correction(step))

        def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
            keep = self._per_copy(variable, self._lrsearch_active) > 0
            rate = self._per_copy(variable, self._own_step_rates(learning_rate))
            gradient = ops.where(keep, gradient, ops.zeros_like(gradient))
            before = ops.copy(variable)  # a read now (convert_to_tensor may return the variable)
            super().update_step(gradient, variable, rate)
            self.assign(variable, ops.where(keep, ops.convert_to_tensor(variable), before))

        def _apply_weight_decay(self, variables: Any) -> None:
            if self.weight_decay is None:
                return
            rates = self.learning_rate
            for variable in variables:
                if self._use_weight_decay(variable):
                    lr = ops.cast(self._per_copy(variable, rates), variable.dtype)
                    wd = ops.cast(self.weight_decay, variable.dtype)
                    variable.assign(variable - variable * wd * lr)

    Packed.__name__ = Packed.__qualname__ = f"Packed{base.__name__}"
    _OPTIMIZER_CLASSES[base] = Packed
    return Packed


def _accuracy_function(
    keras: Any, label_shape: tuple[int, ...], output_shape: tuple[int, ...]
) -> Callable[[Any, Any], Any]:
    """The function Keras picks for ``metrics=["accuracy"]`` given one copy's label and output
    shapes (``keras.src.trainers.compile_utils.get_metric``'s rule)."""
    if output_shape[-1:] == (1,):
        return keras.metrics.binary_accuracy
    if len(label_shape) < len(output_shape) or label_shape[-1:] == (1,):
        return keras.metrics.sparse_categorical_accuracy
    return keras.metrics.categorical_accuracy


def _per_copy_functions(
    config: StudyConfig, dataset: Dataset, copies: int
) -> tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]:
    """``(losses, accuracies)``: each maps ``(y_true, y_pred (B, K, ...))`` to ``(K,)`` values,
    copy k's exactly as the unpacked training computes them (the study's loss reduced as
    Keras's ``LossFunctionWrapper`` reduces it; the accuracy as a per-sample mean)."""
    keras = import_keras()
    ops = keras.ops
    loss_fn = keras.losses.get(config.training.loss)
    label_shape = tuple(np.shape(dataset.y_val)[1:])
    accuracy = _accuracy_function(keras, (0, *label_shape), (0, dataset.n_classes))

    def one(y_true: Any, y_pred: Any) -> Any:
        # LossFunctionWrapper's rank matching, then Keras's "sum_over_batch_size" reduction
        if len(y_true.shape) == len(y_pred.shape) - 1 and y_pred.shape[-1] == 1:
            y_true = ops.expand_dims(y_true, -1)
        values = loss_fn(y_true, y_pred)
        size = ops.cast(ops.prod(ops.convert_to_tensor(ops.shape(values), "int32")), "float32")
        return ops.divide_no_nan(ops.sum(values), size)

    def losses(y_true: Any, y_pred: Any) -> Any:
        return ops.stack([one(y_true, _copy_output(y_pred, k)) for k in range(copies)])

    def accuracies(y_true: Any, y_pred: Any) -> Any:
        return ops.stack(
            [ops.mean(ops.cast(accuracy(y_true, y_pred[:, k]), "float32")) for k in range(copies)]
        )

    return losses, accuracies


def _packed_metric(name: str, copies: int, fn: Callable[[Any, Any], Any]) -> Any:
    """A Keras metric whose result is the ``(K,)`` running mean of ``fn`` over the epoch, each
    batch weighted by its size (as Keras weights its loss tracker and its mean metrics)."""
    keras = import_keras()
    ops = keras.ops

    class PackedMean(keras.metrics.Metric):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__(name=name)
            self.total = self.add_variable((copies,), initializer="zeros", name="total")
            self.count = self.add_variable((), initializer="zeros", name="count")

        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
            n = ops.cast(ops.shape(y_pred)[0], "float32")
            self.total.assign(self.total + fn(y_true, y_pred) * n)
            self.count.assign(self.count + n)

        def result(self) -> Any:
            return ops.divide_no_nan(self.total, self.count)

        def reset_state(self) -> None:
            self.total.assign(ops.zeros((copies,)))
            self.count.assign(0.0)

    return PackedMean()


@dataclass
class PackEntry:
    """One trial's part in a pack: its schedule, its seed and where its epochs are reported.

    ``key`` is the caller's own handle for it (the runner's Optuna trial), handed back with the
    trial's result.
    """

    point: SchedulePoint
    seed: int
    report: Callable[[float, int], bool] | None = None
    key: Any = None
    epochs: int | None = None
    """Its epochs, when not the run's (a halving rung's: its point spans these epochs)."""


class _Copy:
    """One trial's bookkeeping in its slot: history, divergence, plateau, outcome."""

    @classmethod
    def unused(cls) -> _Copy:
        """A slot without a trial (frozen)."""
        copy = cls(None, DivergenceWatch(10.0, samples=1, batch_size=1), None, 0, 0.0)
        copy.outcome = "unused"
        return copy

    def __init__(
        self,
        entry: PackEntry | None,
        watch: DivergenceWatch,
        plateau: Any,
        first_epoch: int,
        started: float,
    ) -> None:
        self.entry = entry
        self.watch = watch
        self.plateau = plateau  # a PlateauState, or None
        self.first_epoch = first_epoch  # the pack's epoch (0-based) it joined at
        self.started = started  # perf_counter when its slot began loading it
        self.startup: float | None = None  # seconds from loading to its first step
        self.history: dict[str, list[float]] = {"epoch": [], "lr": []}
        self.outcome: str | None = None  # None while it runs
        self.diverged_at_step: int | None = None
        self.ended = started


def _pack_callback_class() -> type:
    keras = import_keras()
    from lrsearch.objective import _training_callback_class

    class PackCallback(_training_callback_class()):  # type: ignore[misc]
        """Per-copy history, divergence, plateau cuts and pruning, at batch and epoch ends.

        Batch ends feed each running copy's :class:`DivergenceWatch` with its own running mean
        loss (one ``(K,)`` array per batch); epoch ends judge every running copy, freeze the
        ended ones through the ``active`` variable (read by the compiled step from the next
        epoch on, on both backends), hand their results over, and load the next trials into
        the freed slots (:meth:`PackTrainer._refill`). Ctrl-C and the first step's time as the
        unpacked trainer.
        """

        def __init__(
            self, trainer: PackTrainer, epochs: int, refill_from: int, interrupted: list[int]
        ) -> None:
            super().__init__(interrupted)
            self.trainer = trainer
            self.epochs = epochs
            self.refill_from = refill_from
            self._rates = np.zeros(trainer.size)

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            rates = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            self._rates = np.asarray(rates, dtype="float64").reshape(-1)
            for copy in self.trainer.slots:
                if copy.outcome is None:
                    copy.watch.start_epoch()

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            super().on_train_batch_end(batch, logs)
            means = (logs or {}).get("pack_loss")
            if means is None:
                return
            means = np.asarray(means).reshape(-1)
            for k, copy in enumerate(self.trainer.slots):
                if copy.outcome is None and copy.diverged_at_step is None:
                    if copy.startup is None:  # from its loading to its first step's end
                        copy.startup = time.perf_counter() - copy.started
                    if copy.watch.update(batch, float(means[k])):
                        copy.diverged_at_step = copy.watch.diverged_at_step

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if self.interrupted:
                raise KeyboardInterrupt
            trainer = self.trainer
            metric = trainer.config.study.metric
            logs = dict(logs or {})
            per_copy = {
                prefix + name: np.asarray(logs[prefix + "pack_" + name]).reshape(-1)
                for prefix in ("", "val_")
                for name in PACKED_METRICS
                if prefix + "pack_" + name in logs
            }
            if metric not in per_copy:
                raise ConfigError(
                    f"study.metric = {metric!r} is not a metric of this training; "
                    f"available: {', '.join(sorted(per_copy))}"
                )
            now = time.perf_counter()
            scale = np.asarray(keras.ops.convert_to_numpy(trainer.scale), "float32").copy()
            active = np.asarray(keras.ops.convert_to_numpy(trainer.active), "float32").copy()
            ended = []
            for k, copy in enumerate(trainer.slots):
                if copy.outcome is not None:
                    continue
                own_epoch = epoch + 1 - copy.first_epoch
                copy.history["epoch"].append(own_epoch)
                copy.history["lr"].append(float(self._rates[k]))
                for key in sorted(per_copy):
                    copy.history.setdefault(key, []).append(float(per_copy[key][k]))
                copy.ended = now
                value = float(per_copy[metric][k])
                if not np.isfinite(value) and copy.diverged_at_step is None:
                    copy.diverged_at_step = copy.watch.steps
                if copy.diverged_at_step is not None:
                    copy.outcome = "diverged"
                elif copy.entry and copy.entry.report and copy.entry.report(value, own_epoch):
                    copy.outcome = "pruned"
                elif own_epoch >= ((copy.entry and copy.entry.epochs) or self.epochs):
                    copy.outcome = "complete"
                elif copy.plateau is not None:
                    key = copy.plateau.monitor
                    monitored = per_copy[key][k] if key in per_copy else logs.get(key)
                    if monitored is None:
                        raise ConfigError(
                            f"plateau monitor {key!r} is not among this training's metrics "
                            f"({', '.join(sorted(per_copy))})"
                        )
                    if copy.plateau.update(float(monitored)):
                        scale[k] = copy.plateau.scale
                if copy.outcome is not None:
                    active[k] = 0.0
                    ended.append(copy)
            trainer.scale.assign(scale)
            trainer.active.assign(active)
            for copy in ended:
                trainer._finished(copy)
            if epoch + 1 >= self.refill_from:
                trainer._refill(epoch + 1)
                if all(copy.outcome is not None for copy in trainer.slots):
                    self.model.stop_training = True

    return PackCallback


def _build_copies(
    config: StudyConfig, dataset: Dataset, seeds: Sequence[int], base_dir: Path | None
) -> list[Any]:
    """The models, each built exactly as its unpacked trial builds it (under
    ``keras.utils.set_random_seed(seed)``). Python's and NumPy's random states are restored
    afterwards: a slot loaded mid-``fit`` must not change the pack's batch order (JAX shuffles
    with NumPy)."""
    keras = import_keras()
    from lrsearch.objective import build_study_model

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        models = []
        for seed in seeds:
            keras.utils.set_random_seed(seed)
            models.append(build_study_model(config, dataset, base_dir))
        return models
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _random_state(model: Any) -> list[Any]:
    """A model's random state: its variables that are not weights (the seed states of its
    ``Dropout`` and other random layers, in order)."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _seed_random_state(model: Any, seed: int) -> None:
    """Seeds every random layer of ``model`` from ``seed`` (each its own stream), whatever
    random state the process built it in."""
    for i, variable in enumerate(_random_state(model)):
        (drawn,) = np.random.SeedSequence([seed, i]).generate_state(1)
        variable.assign(np.asarray([int(drawn) % 10**9 + 1, 0], dtype=variable.dtype))


def _weighted_layers(model: Any) -> list[Any]:
    """The layers holding weights, in order (a built-in model's ``Conv2D`` and ``Dense``)."""
    return [layer for layer in model.layers if layer.weights]


def _stacked(config: StudyConfig, dataset: Dataset, copies: list[Any]) -> tuple[Any, Layout]:
    """The built-in ``mlp`` or ``cnn`` as stacked layers holding the copies' weights: one op per
    layer for all copies. Dense layers are :class:`PackedDense`; a convolution is one
    ``Conv2D`` of K times the filters (the first on the shared input, the next grouped by copy:
    ``groups=K``), its kernel and bias holding copy k's filters in block k (:class:`Blocks`);
    pooling acts per channel, so per copy."""
    keras = import_keras()
    layers = keras.layers
    PackedDense = _keras_classes()["PackedDense"]
    k = len(copies)
    first = copies[0]
    inputs = keras.Input(shape=dataset.input_shape)
    x = inputs
    layout: Layout = {}
    convolved = False
    for layer in first.layers[1:]:
        if isinstance(layer, layers.Conv2D):
            conv = layers.Conv2D(
                k * layer.filters,
                layer.kernel_size,
                padding=layer.padding,
                activation=layer.activation,
                groups=k if convolved else 1,
            )
            x = conv(x)
            layout.update({id(v): Blocks(layer.filters) for v in conv.trainable_variables})
            convolved = True
        elif isinstance(layer, layers.Dense):
            if convolved and len(x.shape) == 2:  # (B, K*F): one row of features per copy
                x = layers.Reshape((k, int(x.shape[-1]) // k))(x)
            x = PackedDense(k, layer.units, layer.activation)(x)
        elif not layer.weights:  # Flatten, Dropout, pooling: the same layer, anew
            settings = {key: v for key, v in layer.get_config().items() if key != "name"}
            x = layer.__class__.from_config(settings)(x)
        else:
            raise ValueError(f"Cannot stack a {type(layer).__name__} layer")
    model = keras.Model(inputs, x, name=f"packed_{first.name}")
    for slot, copy in enumerate(copies):
        _set_slot(model, copy, slot)
    return model, layout


def _set_slot(packed: Any, copy: Any, k: int) -> None:
    """Slot k of a stacked model takes ``copy``'s weights."""
    for layer, own in zip(_weighted_layers(packed), _weighted_layers(copy), strict=True):
        if hasattr(layer, "set_copies"):
            layer.set_copies([own], slots=[k])
            continue
        for variable, value in zip(layer.weights, own.get_weights(), strict=True):
            size = value.shape[-1]
            array = np.array(import_keras().ops.convert_to_numpy(variable))
            array[..., k * size : (k + 1) * size] = value
            variable.assign(array)


def _get_slot(packed: Any, copy: Any, k: int) -> None:
    """``copy`` takes slot k's weights of a stacked model."""
    numpy = import_keras().ops.convert_to_numpy
    for layer, own in zip(_weighted_layers(packed), _weighted_layers(copy), strict=True):
        values = [numpy(v) for v in layer.weights]
        if hasattr(layer, "set_copies"):
            own.set_weights([value[k] for value in values])
            continue
        sizes = [w.shape[-1] for w in own.weights]
        own.set_weights(
            [value[..., k * n : (k + 1) * n] for value, n in zip(values, sizes, strict=True)]
        )


def _side_by_side(dataset: Dataset, copies: list[Any]) -> tuple[Any, dict]:
    """Any model: the K built copies side by side in one functional model."""
    keras = import_keras()
    for k, m in enumerate(copies):
        m.name = f"copy_{k}"  # a user model's fixed name would repeat K times
    inputs = keras.Input(shape=dataset.input_shape)
    outputs = _keras_classes()["StackCopies"]()([m(inputs) for m in copies])
    model = keras.Model(inputs, outputs, name="packed")
    copy_of = {id(v): k for k, m in enumerate(copies) for v in m.trainable_variables}
    return model, copy_of


def may_cycle_momentum(config: StudyConfig) -> bool:
    """Whether a trial of the study may cycle momentum: a family searched or a baseline's that
    has ``cycle_momentum``, not fixed to false in the study file."""
    for entry in config.baseline:
        if entry.params.get("cycle_momentum", True) and (
            "cycle_momentum" in FAMILIES[entry.family].param_names
        ):
            return True
    return any(
        "cycle_momentum" in FAMILIES[name].param_names
        and config.space.family_overrides(name).get("cycle_momentum", True) is not False
        for name in config.space.families
    )


MAX_TABLE = 2**24
"""The most learning rates a pack tabulates (``pack * total_steps``: 64 MB of float32)."""


class PackTrainer:
    """A packed model of ``size`` slots, built and compiled once, that trains trial after trial.

    :meth:`run` keeps the slots full: it loads trials into them in place (each slot's weights
    from a copy built under its trial's seed, its optimizer state zeroed, its schedule
    tabulated into its row of the learning-rate table, its step count starting where the pack
    stands) and trains them in one ``fit``; at every epoch end the slots whose trial ended
    (complete, pruned or diverged) take the next trials. The compiled train and evaluation
    steps are reused for every trial, so none after the first pays graph tracing or JAX
    compilation, and a worker's memory does not grow from trial to trial.

    Args:
        config: The study configuration.
        dataset: Data, loaded once per process.
        size: The number of slots (``training.pack``).
        base_dir: Folder of the study file, for ``python:`` targets.
        stacked: Stacked layers (default for the built-in ``mlp``; the ``cnn`` can stack too) or
            the copies side by side.
        clear_session: Start from ``keras.backend.clear_session()`` (False keeps the models
            built before alive and usable, as :func:`calibrate` does).

    Raises:
        ConfigError: ``size * total_steps`` learning rates would not fit :data:`MAX_TABLE`.
    """

    def __init__(
        self,
        config: StudyConfig,
        dataset: Dataset,
        size: int,
        *,
        base_dir: Path | None = None,
        stacked: bool | None = None,
        clear_session: bool = True,
    ) -> None:
        keras = import_keras()
        ops = keras.ops
        from lrsearch.objective import build_metrics, make_budget, make_optimizer

        if size < 1:
            raise ValueError(f"A pack needs at least one slot. Received: size={size}")
        self.config, self.dataset, self.size, self.base_dir = config, dataset, size, base_dir
        self.total_steps = make_budget(config, dataset).total_steps
        self.cycling = may_cycle_momentum(config)
        tables = 2 if self.cycling else 1  # learning rates (and momentums)
        if tables * size * self.total_steps > MAX_TABLE:
            raise ConfigError(
                f"training.pack = {size} tabulates {tables} x {size} x {self.total_steps} "
                f"values (learning rates{' and momentums' if self.cycling else ''}; epochs x "
                f"steps per epoch), more than {MAX_TABLE}; use a smaller pack or fewer epochs."
            )
        self.stacked = config.model.type in _STACKED if stacked is None else stacked
        if clear_session:
            keras.backend.clear_session()
        copies = _build_copies(config, dataset, list(range(size)), base_dir)
        if self.stacked:
            self.model, layout = _stacked(config, dataset, copies)
            self.copies: list[Any] = []
        else:
            self.model, layout = _side_by_side(dataset, copies)
            self.copies = copies  # the slots' models, inside self.model
        self.schedule = _keras_classes()["PackedSchedule"]()
        base = make_optimizer(config, 1.0, cycling=self.cycling)
        # a copy whose schedule does not cycle keeps the study's momentum (SGD) or beta_1 (Adam)
        self._momentum = float(
            config.training.momentum if config.training.optimizer == "sgd" else base.beta_1
        )
        packed_class: Any = packed_optimizer_class(type(base))
        optimizer = packed_class.from_config({**base.get_config(), "learning_rate": 1.0})
        optimizer.build(self.model.trainable_variables)

        def variable(name: str, shape: tuple[int, ...], initializer: str) -> Any:
            return optimizer.add_variable(
                shape=shape, initializer=initializer, dtype="float32", name=f"lrsearch_{name}"
            )

        self.table = variable("pack_table", (size, self.total_steps), "zeros")
        self.momentum_table = (
            variable("pack_momentum", (size, self.total_steps), "zeros") if self.cycling else None
        )
        self.scale = variable("pack_scale", (size,), "ones")
        self.active = variable("pack_active", (size,), "zeros")
        self.offset = optimizer.add_variable(
            shape=(size,), initializer="zeros", dtype="int32", name="lrsearch_pack_offset"
        )
        optimizer.learning_rate = self.schedule
        self.schedule.bind(self.table, self.scale, self.active, self.offset, self.momentum_table)
        own = [v for v in (self.table, self.scale, self.momentum_table) if v is not None]
        optimizer.set_copies(layout, self.active, self.offset, own=own)
        self.optimizer = optimizer
        losses, accuracies = _per_copy_functions(config, dataset, size)

        def pack_loss(y_true: Any, y_pred: Any) -> Any:
            # The copies' losses depend on disjoint weights, so each copy's gradient is its own
            # loss's even when another copy's loss is NaN (its variables are frozen anyway).
            return ops.sum(losses(y_true, y_pred))

        self.model.compile(
            optimizer=optimizer,
            loss=pack_loss,
            metrics=[
                _packed_metric("pack_loss", size, losses),
                _packed_metric("pack_accuracy", size, accuracies),
            ],
        )
        build_metrics(self.model, dataset)  # so that every pack's fit shuffles alike
        self.slots: list[_Copy] = [_Copy.unused() for _ in range(size)]
        self.packs = 0  # fits run
        self.trained = 0  # trials trained
        self._next: Callable[[], PackEntry | None] = lambda: None
        self._done: Callable[[PackEntry, TrainResult], None] = lambda entry, result: None
        self._shuffle_seed = 0
        self._exhausted = False
        self._refill_until = 0

    def _load(self, k: int, entry: PackEntry, first_epoch: int, fresh: Any) -> None:
        """Puts ``entry``'s trial into slot k, in place (``fresh``: its model, built)."""
        keras = import_keras()
        ops = keras.ops
        from lrsearch.schedules import PlateauState

        started = time.perf_counter()
        per_epoch = self.dataset.steps_per_epoch(self.config.data.batch_size)
        spans = (entry.epochs or self.config.training.epochs) * per_epoch
        if entry.point.total_steps != spans or spans > self.total_steps:
            raise ValueError(
                f"Every point of a pack must span its epochs' steps ({spans}), at most the "
                f"study's {self.total_steps}"
            )
        if not FAMILIES[entry.point.family].packs:  # the caller trains it alone; never wrong
            raise ValueError(f"{entry.point.family} trains with its own optimizer, not in a pack")
        if self.stacked:
            _set_slot(self.model, fresh, k)
        else:
            self.copies[k].set_weights(fresh.get_weights())
        if not self.stacked or self.size == 1:  # its dropout seeded as its unpacked model's
            target = self.model if self.stacked else self.copies[k]
            for variable, own in zip(_random_state(target), _random_state(fresh), strict=True):
                variable.assign(ops.convert_to_numpy(own))
        self.optimizer.reset_copy(k)
        schedule = entry.point.build()
        steps = np.arange(self.total_steps)
        rates = ops.convert_to_numpy(schedule(steps))
        momentums: Any = self._momentum
        if schedule.cycles_momentum:
            if self.momentum_table is None:  # may_cycle_momentum said no: a bug, never train wrong
                raise ConfigError(f"{entry.point.family} cycles momentum; use pack = 1")
            momentums = ops.convert_to_numpy(schedule.momentum(steps))
        rows: list[tuple[Any, Any]] = [
            (self.table, rates),
            (self.scale, 1.0),
            (self.active, 1.0),
            (self.offset, ops.convert_to_numpy(self.optimizer.iterations)),
        ]
        if self.momentum_table is not None:
            rows.append((self.momentum_table, momentums))
        for variable, value in rows:
            array = np.array(ops.convert_to_numpy(variable))
            array[k] = value
            variable.assign(array)
        point = entry.point
        self.slots[k] = _Copy(
            entry,
            DivergenceWatch(
                self.config.training.divergence_factor,
                samples=len(self.dataset.x_train),
                batch_size=self.config.data.batch_size,
            ),
            PlateauState(**point.absolute) if point.family == "plateau" else None,
            first_epoch,
            started,
        )

    def _refill(self, epoch: int) -> None:
        """Loads the next trials into the slots that hold none (before the pack's ``epoch``),
        within the run's refill window."""
        if epoch >= self._refill_until:
            return
        for k, copy in enumerate(self.slots):
            if self._exhausted:
                return
            if copy.outcome is None:
                continue
            entry = self._next()
            if entry is None:
                self._exhausted = True
                return
            started = time.perf_counter()
            fresh = _build_copies(self.config, self.dataset, [entry.seed], self.base_dir)[0]
            self._load(k, entry, epoch, fresh)
            self.slots[k].started = started  # its build counts as its time

    def _finished(self, copy: _Copy) -> None:
        """Hands an ended copy's result over."""
        from lrsearch.objective import TrainResult

        assert copy.entry is not None and copy.outcome is not None
        values = copy.history.get(self.config.study.metric, [])
        result = TrainResult(
            history=copy.history,
            outcome=copy.outcome,
            epochs_run=len(copy.history["epoch"]),
            train_seconds=copy.ended - copy.started,
            startup_seconds=copy.startup or 0.0,
            diverged_at_step=copy.diverged_at_step if copy.outcome == "diverged" else None,
            value=values[-1] if values else None,
            extra={
                "pack_size": self.size,
                "shuffle_seed": self._shuffle_seed,
                "shuffle_epoch": copy.first_epoch,
            },
        )
        self.trained += 1
        self._done(copy.entry, result)

    def run(
        self,
        next_entry: Callable[[], PackEntry | None],
        on_result: Callable[[PackEntry, TrainResult], None],
        *,
        shuffle_seed: int,
        epochs: int | None = None,
        skip_epochs: int = 0,
        callbacks: Sequence[Any] = (),
    ) -> int:
        """Trains trials until ``next_entry`` has no more and every slot's trial has ended;
        returns how many it trained.

        ``next_entry()`` gives the next trial to train (None: no more); it is called for every
        slot before the ``fit`` and for every freed slot at the epoch end where its trial
        ended, so the slots stay full while trials remain. ``on_result(entry, result)`` gets
        each trial's :class:`~lrsearch.objective.TrainResult` at the epoch end where it ended
        (before its slot takes the next); its ``extra`` says ``pack_size``, ``shuffle_seed``
        and ``shuffle_epoch``: the pack's batch order is ``shuffle_seed``'s, and the trial saw
        it from the pack's epoch ``shuffle_epoch`` on (0: from the start).

        Args:
            next_entry: The next trial, or None.
            on_result: Takes each trial's result.
            shuffle_seed: Seeds the batch order the slots share.
            epochs: Epochs per trial (default the study's; a schedule keeps the study's budget and
                holds its last rate past it).
            skip_epochs: Load the first trials only after this many epochs of the batch order
                (replays a trial that joined a running pack).
            callbacks: More Keras callbacks, run after the pack's own at each event.

        Raises:
            KeyboardInterrupt: Ctrl-C, at the next batch; the running trials are in
                :attr:`running`.
        """
        keras = import_keras()
        from lrsearch.objective import _sigint_held

        epochs = epochs or self.config.training.epochs
        trained = self.trained
        self._next, self._done = next_entry, on_result
        self._shuffle_seed, self._exhausted = shuffle_seed, False
        # Slots are refilled up to REFILL_WINDOW trials' budgets into the fit (one slot: only
        # at its start), then the fit drains and the caller's next run starts a new batch
        # order: a trial never joins more than that many epochs into an order, so replaying
        # it (lrsearch retrain) trains at most that many epochs before it.
        window = REFILL_WINDOW * self.config.training.epochs if self.size > 1 else 1
        self._refill_until = skip_epochs + window
        with _sigint_held() as interrupted:
            self.slots = [_Copy.unused() for _ in range(self.size)]
            self.active.assign(np.zeros(self.size, dtype="float32"))
            for variable in (self.optimizer.iterations, self.offset):
                variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
            if skip_epochs == 0:
                self._refill(0)
                if all(copy.outcome is not None for copy in self.slots):
                    return 0
            callback = _pack_callback_class()(self, epochs, skip_epochs, interrupted)
            keras.utils.set_random_seed(shuffle_seed)
            if self.stacked and self.size > 1:  # shared dropout layers: seeded with the order
                _seed_random_state(self.model, shuffle_seed)
            self.model.fit(
                self.dataset.x_train,
                self.dataset.y_train,
                batch_size=self.config.data.batch_size,
                epochs=_OPEN_ENDED,
                validation_data=(self.dataset.x_val, self.dataset.y_val),
                shuffle=True,
                verbose=0,
                callbacks=[callback, *callbacks],
            )
        if interrupted:
            raise KeyboardInterrupt
        self.packs += 1
        return self.trained - trained

    def seconds_per_step(self, x: Any, y: Any, repeats: int = 3) -> float:
        """Seconds per training step of the packed model, every slot running, on ``x, y``:
        the fastest of ``repeats`` epochs after a first one (which compiles and warms up; the
        fastest, as the machine may be busy with other work). Slots are reloaded before any
        trial, so this trains nothing that lasts."""
        keras = import_keras()
        self.active.assign(np.ones(self.size, dtype="float32"))
        times: list[float] = []
        timer = keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: times.append(time.perf_counter()),
            on_epoch_end=lambda epoch, logs: times.append(time.perf_counter()),
        )
        batch = self.config.data.batch_size
        self.model.fit(x, y, batch_size=batch, epochs=1 + repeats, verbose=0, callbacks=[timer])
        self.active.assign(np.zeros(self.size, dtype="float32"))
        fastest = min(times[i + 1] - times[i] for i in range(2, len(times), 2))
        return fastest / -(-len(x) // batch)

    def export(self, k: int, point: SchedulePoint) -> Any:
        """Slot k's model as the study's own model (its weights, compiled with the study's
        optimizer driven by ``point``'s schedule, whose state starts anew), to save or use
        alone."""
        from lrsearch.objective import make_optimizer

        model = _build_copies(self.config, self.dataset, [0], self.base_dir)[0]
        if self.stacked:
            _get_slot(self.model, model, k)
        else:
            model.set_weights(self.copies[k].get_weights())
        model.compile(
            optimizer=make_optimizer(self.config, point.build()),
            loss=self.config.training.loss,
            metrics=["accuracy"],
        )
        return model

    @property
    def running(self) -> list[PackEntry]:
        """The entries whose trials are in a slot and have not ended."""
        return [c.entry for c in self.slots if c.outcome is None and c.entry is not None]

    def train(
        self,
        points: Sequence[SchedulePoint],
        *,
        seeds: Sequence[int],
        shuffle_seed: int,
        reports: Sequence[Callable[[float, int], bool] | None] | None = None,
        epochs: int | None = None,
        skip_epochs: int = 0,
        callbacks: Sequence[Any] = (),
    ) -> list[TrainResult]:
        """Trains ``points`` through :meth:`run` (more points than slots: the later ones take
        the slots freed first); returns their results in order."""
        n = len(points)
        if n < 1 or len(seeds) != n:
            raise ValueError(
                f"A pack takes at least one point with one seed each: {n} points, "
                f"{len(seeds)} seeds"
            )
        reports = list(reports) if reports is not None else [None] * n
        entries = [
            PackEntry(point, seed, report, key=i)
            for i, (point, seed, report) in enumerate(zip(points, seeds, reports, strict=True))
        ]
        queue = list(entries)
        results: dict[int, TrainResult] = {}

        def done(entry: PackEntry, result: TrainResult) -> None:
            results[entry.key] = result

        while len(results) < n:  # a run ends after its refill window: the next one goes on
            trained = self.run(
                lambda: queue.pop(0) if queue else None,
                done,
                shuffle_seed=shuffle_seed,
                epochs=epochs,
                skip_epochs=skip_epochs,
                callbacks=callbacks,
            )
            if not trained:
                break
        return [results[i] for i in range(n)]


REFILL_WINDOW = 4
"""A run refills its slots during its first ``REFILL_WINDOW x training.epochs`` epochs."""

_OPEN_ENDED = 2**31 - 1
"""``fit``'s epochs for a pack: it runs until every slot's trial has ended
(``stop_training``)."""


AUTO_SIZES = (1, 2, 4, 8, 16, 32)
"""The pack sizes ``pack = "auto"`` tries, smallest first."""

AUTO_GAIN = 1.2
"""``pack = "auto"`` doubles the pack while that gives at least this much more throughput."""

AUTO_SHARE = 4
"""``pack = "auto"`` packs at most 1/AUTO_SHARE of the trials the budget leaves: the sampler
still learns from finished trials while the slots run (TPE asks with ``constant_liar``)."""

AUTO_TIME_SHARE = 0.25
"""With a deadline (``--timeout``), ``pack = "auto"`` stops doubling once it spent this share of
the time the deadline left: each size compiles, and the trials need the rest."""


@dataclass(frozen=True)
class Calibration:
    """What ``pack = "auto"`` measured and chose: ``per_second[k]``, trial-steps per second
    (``k`` / seconds per step) at pack ``k``, for each size tried."""

    size: int
    per_second: dict[int, float]
    limit: str = ""  # what stopped the doubling short of a measured loss, if anything
    trainer: PackTrainer | None = field(default=None, compare=False, repr=False)
    """The compiled trainer of the chosen size, to train with (None when nothing was timed)."""

    def line(self) -> str | None:
        """What it measured and chose, for the user; None when it measured nothing."""
        if not self.per_second:
            return None
        tried = ", ".join(f"{k}: {v:,.0f}" for k, v in self.per_second.items())
        why = f"; {self.limit}" if self.limit else ""
        return f"pack auto: {self.size} (trial-steps per second at pack {tried}{why})"


def _memory_per_copy(model: Any, batch_size: int) -> int:
    """Bytes one packed copy needs, roughly: weights, gradients, optimizer moments and the
    copies the packed step makes (x8), and its activations forward and backward (x3)."""
    weights = int(model.count_params()) * 4 * 8
    activations = 0
    for layer in model.layers:
        shape = getattr(getattr(layer, "output", None), "shape", None)
        if shape:
            activations += int(np.prod([d for d in shape[1:] if d])) * batch_size * 4 * 3
    return weights + activations


def _available_memory() -> int:
    """Bytes of memory available to this process now (2 GiB where it cannot be read)."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2 * 2**30


def calibrate(
    config: StudyConfig,
    dataset: Dataset,
    *,
    base_dir: Path | None = None,
    most: int = AUTO_SIZES[-1],
    steps: int = 16,
    deadline: float | None = None,
) -> Calibration:
    """Picks a pack size for the study's model on this machine (``pack = "auto"``).

    Times ``steps`` training steps of a :class:`PackTrainer` at sizes 1, 2, 4, ... (the
    fastest of 3 epochs of them after a warm-up epoch) and keeps doubling while a
    doubling trains at least :data:`AUTO_GAIN` times the trial-steps per second; stops at
    ``most`` (the caller's share of the budget), at :data:`MAX_TABLE` and when the slots would
    need more than a quarter of the memory available now, and once it spent
    :data:`AUTO_TIME_SHARE` of the time to ``deadline`` (a ``time.monotonic()`` value; the
    first size is timed whatever the deadline). Each size tried compiles once (a few seconds
    for the built-in models); the chosen size's trainer is kept to train with. With ``most`` 1
    nothing is timed.
    """
    from lrsearch.objective import build_study_model, make_budget

    if most <= 1:
        return Calibration(1, {}, "a budget this small trains one trial at a time")
    keras = import_keras()
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    probe = build_study_model(config, dataset, base_dir)
    batch = config.data.batch_size
    per_copy = _memory_per_copy(probe, batch)
    cap = _available_memory() // 4
    total_steps = make_budget(config, dataset).total_steps
    x, y = dataset.x_train[: batch * steps], dataset.y_train[: batch * steps]
    per_second: dict[int, float] = {}
    best, limit, kept = 1, "", None
    began = time.monotonic()
    for size in AUTO_SIZES:
        if deadline is not None and per_second:
            spent = time.monotonic() - began
            if spent >= AUTO_TIME_SHARE * (deadline - began):
                limit = f"the time limit leaves no more calibration ({spent:.0f}s spent)"
                break
        if size > most:
            limit = f"at most {most} for this budget"
            break
        if size > 1 and size * per_copy > cap:
            limit = f"{size} copies would need over a quarter of the free memory"
            break
        if size * total_steps > MAX_TABLE:
            limit = f"{size} x {total_steps} learning rates exceed the table's {MAX_TABLE}"
            break
        trainer = PackTrainer(config, dataset, size, base_dir=base_dir, clear_session=False)
        per_second[size] = size / trainer.seconds_per_step(x, y)
        if size > 1 and per_second[size] < AUTO_GAIN * per_second[best]:
            break
        best, kept = size, trainer
    return Calibration(best, per_second, limit, kept)


def train_pack(
    config: StudyConfig,
    dataset: Dataset,
    points: Sequence[SchedulePoint],
    *,
    seeds: Sequence[int],
    shuffle_seed: int,
    reports: Sequence[Callable[[float, int], bool] | None] | None = None,
    base_dir: Path | None = None,
    epochs: int | None = None,
    size: int | None = None,
    stacked: bool | None = None,
    callbacks: Sequence[Any] = (),
) -> list[TrainResult]:
    """Trains copies of the study's model in one ``fit``, copy k with ``points[k]``'s schedule
    and weights seeded by ``seeds[k]``; returns their results in order.

    A :class:`PackTrainer` of ``size`` slots (default: one per point), used once (keep a
    trainer to train more without compiling again). With fewer slots than points, the later
    points take the slots freed first.

    Args:
        config: The study configuration.
        dataset: Data, loaded once per process.
        points: The copies' schedules (each spanning the study's budget).
        seeds: Copy k's weights start as the unpacked trial seeded ``seeds[k]`` would.
        shuffle_seed: Seeds the batch order the copies share.
        reports: Copy k's ``report(value, epoch) -> prune?`` (see
            :func:`~lrsearch.objective.train`), or None.
        base_dir: Folder of the study file, for ``python:`` targets.
        epochs: Epochs per trial (default the study's; past its budget a schedule holds its end).
        size: Slots (default ``len(points)``).
        stacked: Stacked layers (default for the built-in ``mlp``; the ``cnn`` can stack too) or
            the copies side by side.
        callbacks: More Keras callbacks, run after the pack's own at each event.

    Raises:
        KeyboardInterrupt: Ctrl-C, at the next batch.
    """
    trainer = PackTrainer(config, dataset, size or len(points), base_dir=base_dir, stacked=stacked)
    return trainer.train(
        points,
        seeds=seeds,
        shuffle_seed=shuffle_seed,
        reports=reports,
        epochs=epochs,
        callbacks=callbacks,
    )
