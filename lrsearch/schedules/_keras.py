"""Keras ``LearningRateSchedule`` classes, one per family.

Each class takes exactly the absolute parameters of its registry entry as keyword arguments,
validates them through the registry, computes with ``keras.ops`` (so it runs inside the compiled
train step on any backend and accepts a vector of steps) and returns exactly its constructor
arguments from ``get_config``.

All classes share one optional multiplier, the *scale variable*: :class:`PlateauCallback` binds an
optimizer variable to it and lowers it when the monitored metric stalls. Reading an optimizer
variable inside ``__call__`` is what makes that work on TensorFlow and on JAX alike.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from lrsearch._imports import import_keras
from lrsearch.schedules._registry import FAMILIES

keras = import_keras()
ops = keras.ops

__all__ = [
    "ConstantSchedule",
    "CosineRestartsSchedule",
    "CosineSchedule",
    "CyclicSchedule",
    "LRSearchSchedule",
    "OneCycleSchedule",
    "PlateauSchedule",
    "PolynomialSchedule",
    "WSDSchedule",
    "WarmupDecaySchedule",
]

_DTYPE = "float32"


class LRSearchSchedule(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[name-defined]
    """Base class: validation, ``get_config``, the shared warmup and the plateau scale.

    Subclasses set ``family`` and implement :meth:`value` on a float32 tensor of steps.
    """

    family: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._config = FAMILIES[self.family].validate(params)
        self._scale: Any = None

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{type(self).__name__}({args})"

    @property
    def scale_variable(self) -> Any:
        """The bound plateau scale variable, or ``None``."""
        return self._scale

    def bind_scale(self, variable: Any) -> None:
        """Multiplies every value by ``variable`` from now on (see :class:`PlateauCallback`)."""
        self._scale = variable

    def value(self, t: Any) -> Any:
        raise NotImplementedError

    def __call__(self, step: Any) -> Any:
        t = ops.cast(step, _DTYPE)
        lr = self.value(t)
        if self._scale is not None:
            lr = lr * ops.cast(self._scale, _DTYPE)
        return lr

    # helpers shared by the families --------------------------------------------------------

    def _warmup(self, t: Any, after: Any) -> Any:
        """Linear warmup from ``warmup_start_factor * η`` to η over ``warmup_steps``."""
        c = self._config
        warmup_steps = c["warmup_steps"]
        if warmup_steps == 0:
            return after
        eta = c["learning_rate"]
        start = eta * c["warmup_start_factor"]
        rising = (eta - start) * (t / float(warmup_steps)) + start
        return ops.where(t < float(warmup_steps), rising, after)

    def _since_warmup(self, t: Any) -> Any:
        return ops.maximum(t - float(self._config.get("warmup_steps", 0)), 0.0)


def _cos_anneal(start: Any, end: Any, x: Any) -> Any:
    """``end + (start - end) * (1 + cos(pi x)) / 2`` (PyTorch's ``_annealing_cos``)."""
    return end + (start - end) / 2.0 * (ops.cos(math.pi * x) + 1.0)


def _lin_anneal(start: Any, end: Any, x: Any) -> Any:
    """``start + (end - start) * x`` (PyTorch's ``_annealing_linear``)."""
    return (end - start) * x + start


@keras.saving.register_keras_serializable("lrsearch")
class ConstantSchedule(LRSearchSchedule):
    """A constant learning rate ``η``.

    Example:
        >>> float(ConstantSchedule(learning_rate=0.1)(5))
        0.1...
    """

    family = "constant"

    def __init__(self, *, learning_rate: float) -> None:
        super().__init__(learning_rate=learning_rate)

    def value(self, t: Any) -> Any:
        return ops.full_like(t, self._config["learning_rate"])


@keras.saving.register_keras_serializable("lrsearch")
class CosineSchedule(LRSearchSchedule):
    """Cosine decay from η to ``alpha * η`` over ``decay_steps``, after an optional warmup.

    Equals ``keras.optimizers.schedules.CosineDecay`` at every step.
    """

    family = "cosine"

    def __init__(
        self,
        *,
        learning_rate: float,
        alpha: float = 0.0,
        decay_steps: int,
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.0,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            alpha=alpha,
            decay_steps=decay_steps,
            warmup_steps=warmup_steps,
            warmup_start_factor=warmup_start_factor,
        )

    def value(self, t: Any) -> Any:
        c = self._config
        u = ops.minimum(self._since_warmup(t), float(c["decay_steps"]))
        cosine = 0.5 * (1.0 + ops.cos(math.pi * (u / float(c["decay_steps"]))))
        decayed = (1.0 - c["alpha"]) * cosine + c["alpha"]
        return self._warmup(t, c["learning_rate"] * decayed)


@keras.saving.register_keras_serializable("lrsearch")
class CosineRestartsSchedule(LRSearchSchedule):
    """SGDR: cosine cycles, the i-th ``t_mul**i`` times longer and ``m_mul**i`` as high.

    Equals ``keras.optimizers.schedules.CosineDecayRestarts`` at every step, except that with
    ``t_mul == 1`` a cycle restarts exactly at its first step on every backend, where Keras's
    float division can leave it one step late under XLA.
    """

    family = "cosine_restarts"

    def __init__(
        self,
        *,
        learning_rate: float,
        first_decay_steps: int,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            first_decay_steps=first_decay_steps,
            t_mul=t_mul,
            m_mul=m_mul,
            alpha=alpha,
        )

    def value(self, t: Any) -> Any:
        c = self._config
        t_mul, alpha = c["t_mul"], c["alpha"]
        first = float(c["first_decay_steps"])
        fraction = t / first
        if t_mul == 1.0:
            # Cycles start at whole multiples of first_decay_steps, exact in float32; the
            # division is not always (XLA multiplies by a reciprocal: 107 * (1/107) =
            # 0.99999994), which would give the previous cycle's last value instead of the
            # restart. Step to the cycle that holds t by exact comparisons.
            i_restart = ops.floor(fraction)
            i_restart = ops.where((i_restart + 1.0) * first <= t, i_restart + 1.0, i_restart)
            i_restart = ops.where(i_restart * first > t, i_restart - 1.0, i_restart)
            fraction = (t - i_restart * first) / first
        else:
            i_restart = ops.floor(ops.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
            t_pow = ops.power(t_mul, i_restart)
            fraction = (fraction - (1.0 - t_pow) / (1.0 - t_mul)) / t_pow
        m_fac = ops.power(c["m_mul"], i_restart)
        cosine = 0.5 * m_fac * (1.0 + ops.cos(math.pi * fraction))
        return c["learning_rate"] * ((1.0 - alpha) * cosine + alpha)


@keras.saving.register_keras_serializable("lrsearch")
class WarmupDecaySchedule(LRSearchSchedule):
    """Linear warmup, then ``η * decay_rate ** ((t - W) / steps_per_epoch)``.

    Without warmup it equals ``keras.optimizers.schedules.ExponentialDecay(η, S, γ, staircase)``.
    """

    family = "warmup_decay"

    def __init__(
        self,
        *,
        learning_rate: float,
        warmup_steps: int = 0,
        decay_rate: float = 0.95,
        staircase: bool = False,
        steps_per_epoch: int,
        warmup_start_factor: float = 0.0,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            warmup_steps=warmup_steps,
            decay_rate=decay_rate,
            staircase=staircase,
            steps_per_epoch=steps_per_epoch,
            warmup_start_factor=warmup_start_factor,
        )

    def value(self, t: Any) -> Any:
        c = self._config
        p = self._since_warmup(t) / float(c["steps_per_epoch"])
        if c["staircase"]:
            p = ops.floor(p)
        return self._warmup(t, c["learning_rate"] * ops.power(c["decay_rate"], p))


@keras.saving.register_keras_serializable("lrsearch")
class OneCycleSchedule(LRSearchSchedule):
    """The one-cycle policy (Smith & Topin): rise from ``η/div_factor`` to η, then anneal to
    ``η/(div_factor*final_div_factor)`` at the last step; stays there beyond it.

    Equals ``torch.optim.lr_scheduler.OneCycleLR(max_lr=η, total_steps=T, ...)`` at every step.
    """

    family = "onecycle"

    def __init__(
        self,
        *,
        learning_rate: float,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        anneal: str = "cos",
        three_phase: bool = False,
        total_steps: int,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            pct_start=pct_start,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            anneal=anneal,
            three_phase=three_phase,
            total_steps=total_steps,
        )

    def phases(self) -> list[tuple[float, float, float]]:
        """The phases as ``(end_step, start_lr, end_lr)``, exactly as PyTorch builds them."""
        c = self._config
        peak, total, pct = c["learning_rate"], c["total_steps"], c["pct_start"]
        initial = peak / c["div_factor"]
        minimum = initial / c["final_div_factor"]
        if c["three_phase"]:
            return [
                (float(pct * total) - 1, initial, peak),
                (float(2 * pct * total) - 2, peak, initial),
                (total - 1.0, initial, minimum),
            ]
        return [(float(pct * total) - 1, initial, peak), (total - 1.0, peak, minimum)]

    def value(self, t: Any) -> Any:
        anneal = _cos_anneal if self._config["anneal"] == "cos" else _lin_anneal
        phases = self.phases()
        t = ops.minimum(t, phases[-1][0])
        lr = None
        start_step = 0.0
        for end_step, start_lr, end_lr in phases:
            # t - start_step as (t - whole part) - fraction: exact in float32 for a short phase
            # late in the budget; clipped, as rounding can put x just past 1 (a negative lr with
            # linear anneal)
            whole = float(math.floor(start_step))
            since = (t - whole) - (start_step - whole)
            x = ops.clip(since / (end_step - start_step), 0.0, 1.0)
            piece = anneal(start_lr, end_lr, x)
            lr = piece if lr is None else ops.where(t <= start_step, lr, piece)
            start_step = end_step
        return lr


@keras.saving.register_keras_serializable("lrsearch")
class PlateauSchedule(LRSearchSchedule):
    """Warmup, then η times the cuts a :class:`PlateauCallback` makes on a stalled metric.

    The plateau parameters (``factor``, ``patience``, ...) are stored here so one object describes
    the whole policy; :class:`PlateauCallback` reads them. Without the callback the schedule is a
    warmup followed by a constant η.
    """

    family = "plateau"

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
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.0,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            factor=factor,
            patience=patience,
            min_delta=min_delta,
            cooldown=cooldown,
            min_learning_rate=min_learning_rate,
            monitor=monitor,
            mode=mode,
            warmup_steps=warmup_steps,
            warmup_start_factor=warmup_start_factor,
        )

    def value(self, t: Any) -> Any:
        return self._warmup(t, ops.full_like(t, self._config["learning_rate"]))


@keras.saving.register_keras_serializable("lrsearch")
class PolynomialSchedule(LRSearchSchedule):
    """Warmup, then ``(η - end) * (1 - u/D) ** power + end`` with ``u = min(t - W, D)``.

    Without warmup it equals ``keras.optimizers.schedules.PolynomialDecay`` (``cycle=False``).
    """

    family = "polynomial"

    def __init__(
        self,
        *,
        learning_rate: float,
        end_learning_rate: float = 0.0,
        power: float = 1.0,
        decay_steps: int,
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.0,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            end_learning_rate=end_learning_rate,
            power=power,
            decay_steps=decay_steps,
            warmup_steps=warmup_steps,
            warmup_start_factor=warmup_start_factor,
        )

    def value(self, t: Any) -> Any:
        c = self._config
        end, decay_steps = c["end_learning_rate"], float(c["decay_steps"])
        # (D - u) / D, not 1 - u / D: XLA turns "/ D" into "* (1 / D)", and 1 - 0.99999994 under
        # a power < 1 would leave the schedule visibly above its end value at the last step.
        remaining = (decay_steps - ops.minimum(self._since_warmup(t), decay_steps)) / decay_steps
        decayed = (c["learning_rate"] - end) * ops.power(remaining, c["power"]) + end
        return self._warmup(t, decayed)


@keras.saving.register_keras_serializable("lrsearch")
class WSDSchedule(LRSearchSchedule):
    """Warmup-stable-decay: warmup, hold η until ``T - D``, then decay to ``min_lr_ratio * η``."""

    family = "wsd"

    def __init__(
        self,
        *,
        learning_rate: float,
        warmup_steps: int = 0,
        decay_steps: int,
        decay_shape: str = "linear",
        min_lr_ratio: float = 0.0,
        warmup_start_factor: float = 0.0,
        total_steps: int,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            warmup_steps=warmup_steps,
            decay_steps=decay_steps,
            decay_shape=decay_shape,
            min_lr_ratio=min_lr_ratio,
            warmup_start_factor=warmup_start_factor,
            total_steps=total_steps,
        )

    def value(self, t: Any) -> Any:
        c = self._config
        decay_steps = float(c["decay_steps"])
        decay_start = float(c["total_steps"]) - decay_steps
        p = ops.clip((t - decay_start) / decay_steps, 0.0, 1.0)
        if c["decay_shape"] == "linear":
            d = 1.0 - p
        elif c["decay_shape"] == "cosine":
            d = (1.0 + ops.cos(math.pi * p)) / 2.0
        else:
            d = 1.0 - ops.sqrt(p)
        rho = c["min_lr_ratio"]
        return self._warmup(t, c["learning_rate"] * (d * (1.0 - rho) + rho))


@keras.saving.register_keras_serializable("lrsearch")
class CyclicSchedule(LRSearchSchedule):
    """Cyclical learning rate between ``base_learning_rate`` and η (Smith 2017).

    Equals ``torch.optim.lr_scheduler.CyclicLR(base, η, step_size_up, step_size_down, mode,
    gamma)`` at every step.
    """

    family = "cyclic"

    def __init__(
        self,
        *,
        learning_rate: float,
        base_learning_rate: float,
        step_size_up: int,
        step_size_down: int,
        mode: str = "triangular",
        gamma: float = 1.0,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            base_learning_rate=base_learning_rate,
            step_size_up=step_size_up,
            step_size_down=step_size_down,
            mode=mode,
            gamma=gamma,
        )

    def value(self, t: Any) -> Any:
        c = self._config
        total_size = float(c["step_size_up"] + c["step_size_down"])
        step_ratio = c["step_size_up"] / total_size
        # from the exact remainder (1 + t/total - cycle loses digits in float32 as t grows)
        position = ops.mod(t, total_size)
        cycle = (t - position) / total_size + 1.0
        x = position / total_size
        scale = ops.where(x <= step_ratio, x / step_ratio, (x - 1.0) / (step_ratio - 1.0))
        base, peak = c["base_learning_rate"], c["learning_rate"]
        height = (peak - base) * scale
        if c["mode"] == "triangular2":
            height = height * (1.0 / ops.power(2.0, cycle - 1.0))
        elif c["mode"] == "exp_range":
            height = height * ops.exp(t * math.log(c["gamma"]))  # gamma**t, log in float64
        return base + height
