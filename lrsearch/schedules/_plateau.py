"""Reduce-on-plateau that works with a ``LearningRateSchedule`` (and so with warmup).

Keras's ``ReduceLROnPlateau`` assigns ``optimizer.learning_rate``, which raises ``TypeError`` when
the optimizer was built with a schedule. Here the cut is a multiplier instead: the schedule reads
a non-trainable *optimizer* variable (see ``LRSearchSchedule.bind_scale``) and
:class:`PlateauCallback` lowers it. An optimizer variable is part of the state the compiled train
step receives, so the change is seen on TensorFlow and on JAX alike.

:class:`PlateauState` is the decision logic alone, step for step the one of Keras's callback.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lrsearch._imports import import_keras
from lrsearch.exceptions import ScheduleError

keras = import_keras()

__all__ = ["PlateauState", "PlateauCallback", "detach_scale", "monitor_mode"]

_MAXIMIZED = ("acc", "auc", "precision", "recall", "f1", "iou")


def monitor_mode(monitor: str, mode: str = "auto") -> str:
    """Resolves ``"auto"`` to ``"min"`` or ``"max"`` for a metric name.

    Example:
        >>> monitor_mode("val_accuracy")
        'max'
    """
    if mode in ("min", "max"):
        return mode
    name = monitor.removeprefix("val_").lower()
    return "max" if any(key in name for key in _MAXIMIZED) else "min"


class PlateauState:
    """The plateau decision logic, with Keras ``ReduceLROnPlateau`` semantics.

    ``level`` is the learning rate the plateau logic holds (η times the cuts so far), kept in
    float32 as Keras keeps its learning-rate variable, so the sequence of cuts is identical.

    Example:
        >>> s = PlateauState(learning_rate=0.1, factor=0.5, patience=1)
        >>> [s.update(v) for v in (1.0, 1.0, 0.5)]
        [False, True, False]
        >>> round(s.level, 6)
        0.05
    """

    def __init__(
        self,
        *,
        learning_rate: float,
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_learning_rate: float = 0.0,
        monitor: str = "val_loss",
        mode: str = "auto",
        **_ignored: Any,
    ) -> None:
        self.learning_rate = float(learning_rate)
        self.factor = float(factor)
        self.patience = int(patience)
        self.min_delta = abs(float(min_delta))
        self.cooldown = int(cooldown)
        self.min_learning_rate = float(min_learning_rate)
        self.monitor = monitor
        self.mode = monitor_mode(monitor, mode)
        self.level = float(np.float32(self.learning_rate))
        self.reset()

    def reset(self) -> None:
        """Forgets the best value and the counters (not the level), as Keras does per ``fit``."""
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0

    @property
    def scale(self) -> float:
        """The multiplier the schedule applies: ``level / learning_rate``."""
        return self.level / self.learning_rate

    def _improved(self, current: float) -> bool:
        if self.best is None:
            return True
        # As Keras: ``ops.less(current + min_delta, best)``, compared in float32.
        best = np.float32(self.best)
        if self.mode == "min":
            return bool(np.float32(current + self.min_delta) < best)
        return bool(np.float32(current - self.min_delta) > best)

    def update(self, current: float) -> bool:
        """Takes one epoch's monitored value; returns whether the learning rate was cut."""
        if math.isnan(current):
            return False  # never an improvement; divergence is handled by the trainer
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
            return False
        if self.cooldown_counter > 0:
            return False
        self.wait += 1
        if self.wait < self.patience:
            return False
        if not self.level > np.float32(self.min_learning_rate):
            return False
        self.level = float(np.float32(max(self.level * self.factor, self.min_learning_rate)))
        self.cooldown_counter = self.cooldown
        self.wait = 0
        return True


class PlateauCallback(keras.callbacks.Callback):  # type: ignore[name-defined]
    """Drives a schedule's plateau cuts from the monitored metric, epoch by epoch.

    Pass the optimizer's schedule (normally a ``PlateauSchedule``, whose config supplies factor,
    patience and the rest). On ``set_model`` it creates the scale variable through the optimizer
    and binds it to the schedule; at each epoch end it updates :class:`PlateauState` and assigns
    the new scale.

    Example:
        >>> schedule = build_schedule("plateau", total_steps=1000, learning_rate=0.1,
        ...                           warmup_steps=100, patience=3)  # doctest: +SKIP
        >>> model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")  # doctest: +SKIP
        >>> callback = PlateauCallback(schedule)  # doctest: +SKIP
        >>> model.fit(x, y, validation_split=0.2, callbacks=[callback])  # doctest: +SKIP
    """

    def __init__(self, schedule: Any, **overrides: Any) -> None:
        super().__init__()
        config = {**schedule.get_config(), **overrides}
        if "learning_rate" not in config:
            raise ScheduleError("PlateauCallback needs a schedule with a `learning_rate`.")
        self.schedule = schedule
        self.state = PlateauState(**config)
        self.cuts: list[int] = []

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            return
        if id(getattr(optimizer, "_learning_rate", None)) != id(self.schedule):
            raise ScheduleError(
                "PlateauCallback was given a schedule that is not the optimizer's learning rate; "
                "pass the same schedule object to the optimizer and the callback."
            )
        variable = self.schedule.scale_variable
        if variable is not None and any(variable is v for v in optimizer.variables):
            return
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        variable = optimizer.add_variable(
            shape=(), initializer="ones", dtype="float32", name="lrsearch_plateau_scale"
        )
        variable.assign(self.state.scale)
        self.schedule.bind_scale(variable)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.state.reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = (logs or {}).get(self.state.monitor)
        if current is None:
            available = ", ".join(sorted(logs or {}))
            raise ScheduleError(
                f"Plateau monitor `{self.state.monitor}` is not among this training's metrics "
                f"({available}); set `monitor` to one of them."
            )
        if self.state.update(float(current)):
            self.cuts.append(epoch)
            self.schedule.scale_variable.assign(self.state.scale)


def detach_scale(optimizer: Any) -> bool:
    """Takes a plateau schedule's scale variable out of ``optimizer``'s saved state.

    Call it before ``model.save``: Keras restores an optimizer's variables only when their count
    matches, and a loaded model's optimizer has no scale variable (a :class:`PlateauCallback`
    adds one when training starts), so a file saved with it loads with none of the optimizer's
    state (step count, Adam moments). Without it the state loads; a new ``PlateauCallback``
    binds a fresh scale when training goes on.

    Returns:
        Whether a scale variable was taken out.
    """
    variable = getattr(getattr(optimizer, "_learning_rate", None), "scale_variable", None)
    tracked = getattr(optimizer, "_variables", None)
    if variable is None or tracked is None:
        return False
    kept = [v for v in tracked if v is not variable]
    optimizer._variables = kept  # Keras 3 keeps an optimizer's variables in this list
    return len(kept) < len(tracked)
