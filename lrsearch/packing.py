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
  kernel, one op for all copies); any other model (``cnn``, ``python:module:function``) runs as
  K copies side by side in one functional model (BatchNorm, Dropout and all stay per copy).
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

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrsearch._imports import import_keras
from lrsearch.divergence import DivergenceWatch
from lrsearch.exceptions import ConfigError

if TYPE_CHECKING:
    from lrsearch.config import StudyConfig
    from lrsearch.data import Dataset
    from lrsearch.objective import TrainResult
    from lrsearch.space import SchedulePoint

__all__ = ["MAX_TABLE", "PACKED_METRICS", "PackTrainer", "train_pack"]

PACKED_METRICS = ("loss", "accuracy")
"""The per-copy metrics a pack logs, as the unpacked training logs them (and ``val_``)."""

_STACKED = ("mlp",)
"""Built-in model types that pack as stacked layers (the others pack side by side)."""


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

        Copy k's rates for the whole budget are row k of ``table`` (``(K, total_steps)``,
        computed by its family's own schedule when the copy's trial is loaded); the step reads
        column ``min(step, total_steps - 1)``, times the copy's plateau ``scale``, and 0 once the
        copy ended (``active[k] == 0``). All three are optimizer variables: values the compiled
        step receives, not constants baked into it, so one compiled step serves every pack (and
        the epoch-end changes are seen on TensorFlow and JAX alike).
        """

        def __init__(self) -> None:
            super().__init__()
            self.table: Any = None
            self.scale: Any = None
            self.active: Any = None

        def bind(self, table: Any, scale: Any, active: Any) -> None:
            self.table, self.scale, self.active = table, scale, active

        def __call__(self, step: Any) -> Any:
            last = int(self.table.shape[1]) - 1
            column = ops.minimum(ops.cast(step, "int32"), last)
            rates = ops.take(ops.convert_to_tensor(self.table), column, axis=1)
            rates = rates * ops.cast(self.scale, rates.dtype)
            return ops.where(self.active > 0, rates, ops.zeros_like(rates))

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


_OPTIMIZER_CLASSES: dict[type, type] = {}


def packed_optimizer_class(base: type) -> type:
    """``base`` (a Keras optimizer class) taking a ``(K,)`` learning rate, one entry per copy.

    Each variable gets its copy's rate: a stacked variable (leading axis K) the vector reshaped
    to broadcast over that axis, a copy's own variable its entry. An ended copy's variables are
    frozen: its gradient is masked to zero and the variable keeps its value through the update
    (SGD's momentum would otherwise still move it). Weight decay (AdamW) uses the same rates.
    """
    cached = _OPTIMIZER_CLASSES.get(base)
    if cached is not None:
        return cached
    keras = import_keras()
    ops = keras.ops

    class Packed(base):
        def set_copies(self, copy_of: dict[int, int], active: Any) -> None:
            """``copy_of``: ``id(variable) -> k`` for per-copy variables (the others are
            stacked); ``active``: the ``(K,)`` optimizer variable of running copies."""
            self._lrsearch_copy_of = copy_of
            self._lrsearch_active = active
            self._lrsearch_by_index: list[int | None] = [
                copy_of.get(id(v)) for v in self._trainable_variables
            ]

        def _per_copy(self, variable: Any, vector: Any) -> Any:
            k = self._lrsearch_by_index[self._get_variable_index(variable)]
            if k is None:
                return ops.reshape(vector, (-1,) + (1,) * (len(variable.shape) - 1))
            return vector[k]

        def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
            keep = self._per_copy(variable, self._lrsearch_active) > 0
            rate = self._per_copy(variable, learning_rate)
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


class _Copy:
    """One copy's bookkeeping during a pack: history, divergence, plateau, outcome."""

    @classmethod
    def unused(cls) -> _Copy:
        """A slot without a trial in this pack (frozen from the start)."""
        copy = cls(None, DivergenceWatch(10.0, samples=1, batch_size=1), None)
        copy.outcome = "unused"
        return copy

    def __init__(
        self,
        report: Callable[[float, int], bool] | None,
        watch: DivergenceWatch,
        plateau: Any,
    ) -> None:
        self.report = report
        self.watch = watch
        self.plateau = plateau  # a PlateauState, or None
        self.history: dict[str, list[float]] = {"epoch": [], "lr": []}
        self.outcome: str | None = None  # None while it runs
        self.diverged_at_step: int | None = None
        self.seconds = 0.0


def _pack_callback_class() -> type:
    keras = import_keras()
    from lrsearch.objective import _training_callback_class

    class PackCallback(_training_callback_class()):  # type: ignore[misc]
        """Per-copy history, divergence, plateau cuts and pruning, at batch and epoch ends.

        Batch ends feed each running copy's :class:`DivergenceWatch` with its own running mean
        loss (one ``(K,)`` array per batch); epoch ends judge every running copy and freeze the
        ended ones through the ``active`` variable (read by the compiled step from the next
        epoch on, on both backends). Ctrl-C and the first step's time as the unpacked trainer.
        """

        def __init__(
            self,
            copies: list[_Copy],
            metric: str,
            epochs: int,
            scale: Any,
            active: Any,
            interrupted: list[int],
        ) -> None:
            super().__init__(interrupted)
            self.copies = copies
            self.metric = metric
            self.epochs = epochs
            self.scale = scale
            self.active = active
            self.started = time.perf_counter()
            self._rates = np.zeros(len(copies))

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            rates = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            self._rates = np.asarray(rates, dtype="float64").reshape(-1)
            for copy in self.copies:
                if copy.outcome is None:
                    copy.watch.start_epoch()

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            super().on_train_batch_end(batch, logs)
            means = (logs or {}).get("pack_loss")
            if means is None:
                return
            means = np.asarray(means).reshape(-1)
            for k, copy in enumerate(self.copies):
                if copy.outcome is None and copy.diverged_at_step is None:
                    if copy.watch.update(batch, float(means[k])):
                        copy.diverged_at_step = copy.watch.diverged_at_step

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if self.interrupted:
                raise KeyboardInterrupt
            logs = dict(logs or {})
            per_copy = {
                prefix + name: np.asarray(logs[prefix + "pack_" + name]).reshape(-1)
                for prefix in ("", "val_")
                for name in PACKED_METRICS
                if prefix + "pack_" + name in logs
            }
            if self.metric not in per_copy:
                raise ConfigError(
                    f"study.metric = {self.metric!r} is not a metric of this training; "
                    f"available: {', '.join(sorted(per_copy))}"
                )
            now = time.perf_counter()
            scale = np.asarray(keras.ops.convert_to_numpy(self.scale), "float32").copy()
            active = np.asarray(keras.ops.convert_to_numpy(self.active), "float32").copy()
            for k, copy in enumerate(self.copies):
                if copy.outcome is not None:
                    continue
                copy.history["epoch"].append(epoch + 1)
                copy.history["lr"].append(float(self._rates[k]))
                for key in sorted(per_copy):
                    copy.history.setdefault(key, []).append(float(per_copy[key][k]))
                copy.seconds = now - self.started
                value = float(per_copy[self.metric][k])
                if not np.isfinite(value) and copy.diverged_at_step is None:
                    copy.diverged_at_step = copy.watch.steps
                if copy.diverged_at_step is not None:
                    copy.outcome = "diverged"
                elif copy.report is not None and copy.report(value, epoch + 1):
                    copy.outcome = "pruned"
                elif epoch + 1 >= self.epochs:
                    copy.outcome = "complete"
                elif copy.plateau is not None:
                    monitored = logs.get(copy.plateau.monitor)
                    key = copy.plateau.monitor
                    if key in per_copy:
                        monitored = per_copy[key][k]
                    if monitored is None:
                        raise ConfigError(
                            f"plateau monitor {key!r} is not among this training's metrics "
                            f"({', '.join(sorted(per_copy))})"
                        )
                    if copy.plateau.update(float(monitored)):
                        scale[k] = copy.plateau.scale
                if copy.outcome is not None:
                    active[k] = 0.0
            self.scale.assign(scale)
            self.active.assign(active)
            if all(copy.outcome is not None for copy in self.copies):
                self.model.stop_training = True

    return PackCallback


def _build_copies(
    config: StudyConfig, dataset: Dataset, seeds: Sequence[int], base_dir: Path | None
) -> list[Any]:
    """The K models, each built exactly as its unpacked trial builds it."""
    keras = import_keras()
    from lrsearch.objective import build_study_model

    models = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        models.append(build_study_model(config, dataset, base_dir))
    return models


def _stacked_mlp(config: StudyConfig, dataset: Dataset, copies: list[Any]) -> tuple[Any, dict]:
    """The built-in ``mlp`` as stacked layers holding the copies' weights."""
    keras = import_keras()
    PackedDense = _keras_classes()["PackedDense"]
    k = len(copies)
    dense = [[la for la in m.layers if isinstance(la, keras.layers.Dense)] for m in copies]
    first = dense[0]
    inputs = keras.Input(shape=dataset.input_shape)
    x = keras.layers.Flatten()(inputs) if len(dataset.input_shape) > 1 else inputs
    dropout = float(config.model.params.get("dropout", 0.0) or 0.0)
    stacked = []
    for i, layer in enumerate(first):
        packed = PackedDense(k, layer.units, layer.activation)
        x = packed(x)
        stacked.append(packed)
        if dropout and i < len(first) - 1:
            x = keras.layers.Dropout(dropout)(x)
    model = keras.Model(inputs, x, name="packed_mlp")
    for i, packed in enumerate(stacked):
        packed.set_copies([layers[i] for layers in dense])
    return model, {}


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


MAX_TABLE = 2**24
"""The most learning rates a pack tabulates (``pack * total_steps``: 64 MB of float32)."""


class PackTrainer:
    """A packed model of ``size`` slots, built and compiled once, that trains pack after pack.

    :meth:`train` loads a pack's trials into the slots in place (each slot's weights from a
    copy built under its trial's seed, the optimizer's state zeroed, its schedule tabulated into
    the learning-rate table) and runs one ``fit``; the compiled train and evaluation steps are
    reused, so no pack after the first pays graph tracing or JAX compilation, and a worker's
    memory does not grow from pack to pack. A pack of fewer trials than slots leaves the other
    slots frozen.

    Args:
        config: The study configuration.
        dataset: Data, loaded once per process.
        size: The number of slots (``training.pack``).
        base_dir: Folder of the study file, for ``python:`` targets.
        stacked: Stacked layers (default for the built-in ``mlp``) or the copies side by side.

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
    ) -> None:
        keras = import_keras()
        ops = keras.ops
        from lrsearch.objective import build_metrics, make_budget, make_optimizer

        if size < 1:
            raise ValueError(f"A pack needs at least one slot. Received: size={size}")
        self.config, self.dataset, self.size, self.base_dir = config, dataset, size, base_dir
        self.total_steps = make_budget(config, dataset).total_steps
        if size * self.total_steps > MAX_TABLE:
            raise ConfigError(
                f"training.pack = {size} tabulates {size} x {self.total_steps} learning rates "
                f"(epochs x steps per epoch), more than {MAX_TABLE}; use a smaller pack, or "
                "pack = 1 for a budget this long."
            )
        self.stacked = config.model.type in _STACKED if stacked is None else stacked
        keras.backend.clear_session()
        copies = _build_copies(config, dataset, list(range(size)), base_dir)
        if self.stacked:
            self.model, copy_of = _stacked_mlp(config, dataset, copies)
        else:
            self.model, copy_of = _side_by_side(dataset, copies)
        self.copies = copies  # side by side: the slots' models, inside self.model
        self.schedule = _keras_classes()["PackedSchedule"]()
        base = make_optimizer(config, 1.0)
        packed_class: Any = packed_optimizer_class(type(base))
        optimizer = packed_class.from_config({**base.get_config(), "learning_rate": 1.0})
        optimizer.build(self.model.trainable_variables)
        self.table = optimizer.add_variable(
            shape=(size, self.total_steps),
            initializer="zeros",
            dtype="float32",
            name="lrsearch_pack_table",
        )
        self.scale = optimizer.add_variable(
            shape=(size,), initializer="ones", dtype="float32", name="lrsearch_pack_scale"
        )
        self.active = optimizer.add_variable(
            shape=(size,), initializer="ones", dtype="float32", name="lrsearch_pack_active"
        )
        optimizer.learning_rate = self.schedule
        self.schedule.bind(self.table, self.scale, self.active)
        optimizer.set_copies(copy_of, self.active)
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
        self.packs = 0

    def _load(self, points: Sequence[SchedulePoint], seeds: Sequence[int]) -> None:
        """Puts the pack's trials into the first ``len(points)`` slots, in place."""
        keras = import_keras()
        fresh = _build_copies(self.config, self.dataset, seeds, self.base_dir)
        if self.stacked:
            packed_layers = [la for la in self.model.layers if hasattr(la, "set_copies")]
            dense = [[la for la in m.layers if isinstance(la, keras.layers.Dense)] for m in fresh]
            for i, layer in enumerate(packed_layers):
                layer.set_copies([layers[i] for layers in dense], slots=range(len(fresh)))
        else:
            for slot, model in zip(self.copies, fresh, strict=False):
                slot.set_weights(model.get_weights())
        ours = {id(self.table), id(self.scale), id(self.active)}
        for variable in self.optimizer.variables:  # moments, velocities, iterations
            if id(variable) not in ours:
                variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
        table = np.zeros((self.size, self.total_steps), dtype="float32")
        steps = np.arange(self.total_steps)
        for k, point in enumerate(points):
            table[k] = keras.ops.convert_to_numpy(point.build()(steps))
        self.table.assign(table)
        self.scale.assign(np.ones(self.size, dtype="float32"))
        active = np.zeros(self.size, dtype="float32")
        active[: len(points)] = 1.0
        self.active.assign(active)

    def train(
        self,
        points: Sequence[SchedulePoint],
        *,
        seeds: Sequence[int],
        shuffle_seed: int,
        reports: Sequence[Callable[[float, int], bool] | None] | None = None,
        epochs: int | None = None,
        callbacks: Sequence[Any] = (),
    ) -> list[TrainResult]:
        """Trains ``points`` (at most ``size``) as one pack; see :func:`train_pack`."""
        keras = import_keras()
        from lrsearch.objective import TrainResult, _sigint_held
        from lrsearch.schedules import PlateauState

        config, dataset, n = self.config, self.dataset, len(points)
        if not 1 <= n <= self.size or len(seeds) != n:
            raise ValueError(
                f"A pack of {self.size} slots takes 1 to {self.size} points with one seed each: "
                f"{n} points, {len(seeds)} seeds"
            )
        if any(point.total_steps != self.total_steps for point in points):
            raise ValueError(
                f"Every point of a pack must span the study's {self.total_steps} steps"
            )
        epochs = epochs or config.training.epochs
        if epochs > config.training.epochs:
            raise ValueError(f"A pack trains at most the study's {config.training.epochs} epochs")
        reports = list(reports) if reports is not None else [None] * n
        started = time.perf_counter()
        with _sigint_held() as interrupted:
            self._load(points, seeds)
            records = [
                _Copy(
                    report,
                    DivergenceWatch(
                        config.training.divergence_factor,
                        samples=len(dataset.x_train),
                        batch_size=config.data.batch_size,
                    ),
                    PlateauState(**point.absolute) if point.family == "plateau" else None,
                )
                for point, report in zip(points, reports, strict=True)
            ]
            for _ in range(n, self.size):
                records.append(_Copy.unused())
            callback = _pack_callback_class()(
                records, config.study.metric, epochs, self.scale, self.active, interrupted
            )
            keras.utils.set_random_seed(shuffle_seed)
            self.model.fit(
                dataset.x_train,
                dataset.y_train,
                batch_size=config.data.batch_size,
                epochs=epochs,
                validation_data=(dataset.x_val, dataset.y_val),
                shuffle=True,
                verbose=0,
                callbacks=[callback, *callbacks],
            )
        if interrupted:
            raise KeyboardInterrupt
        self.packs += 1
        first_step = callback.first_step_time or time.perf_counter()
        results = []
        for copy in records[:n]:
            outcome = copy.outcome or "complete"
            values = copy.history.get(config.study.metric, [])
            results.append(
                TrainResult(
                    history=copy.history,
                    outcome=outcome,
                    epochs_run=len(copy.history["epoch"]),
                    # from this call's start to the epoch end where the copy ended
                    train_seconds=(callback.started - started) + copy.seconds,
                    startup_seconds=first_step - started,
                    diverged_at_step=copy.diverged_at_step if outcome == "diverged" else None,
                    value=values[-1] if values else None,
                    extra={"pack_size": n, "shuffle_seed": shuffle_seed},
                )
            )
        return results


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
    stacked: bool | None = None,
    callbacks: Sequence[Any] = (),
) -> list[TrainResult]:
    """Trains ``len(points)`` copies of the study's model in one ``fit``, copy k with
    ``points[k]``'s schedule and weights seeded by ``seeds[k]``; returns their results in order.

    A :class:`PackTrainer` of ``len(points)`` slots, used once (keep a trainer to train more
    packs without compiling again).

    Args:
        config: The study configuration.
        dataset: Data, loaded once per process.
        points: The copies' schedules (each spanning the study's budget).
        seeds: Copy k's weights start as the unpacked trial seeded ``seeds[k]`` would.
        shuffle_seed: Seeds the batch order the copies share.
        reports: Copy k's ``report(value, epoch) -> prune?`` (see
            :func:`~lrsearch.objective.train`), or None.
        base_dir: Folder of the study file, for ``python:`` targets.
        epochs: Fewer epochs than the study's (the schedules keep the study's budget).
        stacked: Stacked layers (default for the built-in ``mlp``) or the copies side by side.
        callbacks: More Keras callbacks, run after the pack's own at each event.

    Raises:
        KeyboardInterrupt: Ctrl-C, at the next batch.
    """
    trainer = PackTrainer(config, dataset, len(points), base_dir=base_dir, stacked=stacked)
    return trainer.train(
        points,
        seeds=seeds,
        shuffle_seed=shuffle_seed,
        reports=reports,
        epochs=epochs,
        callbacks=callbacks,
    )
