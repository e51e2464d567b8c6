"""Keras ``LearningRateSchedule`` classes, one per family.

Each class takes exactly the absolute parameters of its registry entry as keyword arguments,
validates them through the registry, computes with ``keras.ops`` (so it runs inside the compiled
train step on any backend and accepts a vector of steps) and returns exactly its constructor
arguments from ``get_config``.

The step stays an integer until it is a small number. A float32 holds every integer only up to
2**24 (~16.7 M steps); beyond, casting the step first would move a restart, a cycle or an epoch
boundary by a few steps. So ``__call__`` keeps the optimizer's integer step (int64 on TensorFlow,
int32 on JAX, where float64 is not available by default), and the families reduce it with integer
arithmetic (``t - W``, ``divmod(t, cycle)``, the cycle that holds ``t``) to an offset inside the
current phase before anything becomes float32. Values are then as exact at 1e8 steps as at 100.

All classes share one optional multiplier, the *scale variable*: :class:`PlateauCallback` binds an
optimizer variable to it and lowers it when the monitored metric stalls. Reading an optimizer
variable inside ``__call__`` is what makes that work on TensorFlow and on JAX alike.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, ClassVar

import numpy as np

from lrsearch._imports import import_keras
from lrsearch.exceptions import ScheduleError
from lrsearch.schedules._registry import FAMILIES

keras = import_keras()
ops = keras.ops

__all__ = [
    "ConstantSchedule",
    "CyclingAdam",
    "CyclingAdamW",
    "CyclingSGD",
    "MomentumCycling",
    "momentum_cycling",
    "CosineRestartsSchedule",
    "CosineSchedule",
    "CyclicSchedule",
    "LRSearchSchedule",
    "OneCycleSchedule",
    "PlateauSchedule",
    "PolynomialSchedule",
    "ScheduleFreeEvaluation",
    "ScheduleFreeSchedule",
    "WSDSchedule",
    "WarmupDecaySchedule",
]

_DTYPE = "float32"


def _step_dtype() -> str:
    """Keras's integer dtype, the one of ``optimizer.iterations``: int64 on TensorFlow, int32 on
    JAX (without ``jax_enable_x64``)."""
    return str(keras.backend.standardize_dtype("int"))


def _is_integer(x: Any) -> bool:
    return str(keras.backend.standardize_dtype(x.dtype)).startswith(("int", "uint"))


def _as_float(x: Any) -> Any:
    return ops.cast(x, _DTYPE)


def _divmod(t: Any, n: int) -> tuple[Any, Any]:
    """``(t // n, t - (t // n) * n)`` for a positive whole ``n``, exact in ``t``'s dtype.

    Integer steps divide exactly. Float steps (passed by hand, or too large for the integer dtype)
    are corrected by exact comparisons, as XLA divides by multiplying with ``1 / n`` (107 * (1 /
    107) = 0.99999994 in float32 would put step 107 in cycle 0).

    Example:
        >>> [int(v) for v in _divmod(ops.convert_to_tensor(100_000_037), 7)]
        [14285719, 4]
    """
    q = ops.floor_divide(t, n)
    if not _is_integer(t):
        q = ops.where((q + 1.0) * n <= t, q + 1.0, q)
        q = ops.where(q * n > t, q - 1.0, q)
    return q, t - q * n


def _since(t: Any, start: float) -> Any:
    """``t - start`` as float32 for a step ``t`` and a (possibly fractional) ``start``.

    The whole part of ``start`` is subtracted in ``t``'s own dtype, exactly, so the difference is
    exact before it becomes float32 however large ``t`` is.

    Example:
        >>> float(_since(ops.convert_to_tensor(100_000_037), 100_000_029.5))
        7.5
    """
    whole = math.floor(start)
    since = _as_float(t - whole)
    return since if start == whole else since - (start - whole)


class LRSearchSchedule(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[name-defined]
    """Base class: validation, ``get_config``, integer steps, the shared warmup, the plateau scale.

    Subclasses set ``family`` and implement :meth:`value` on a tensor of steps ``t`` that holds
    whole numbers in an integer dtype (see :meth:`steps`); they turn ``t`` into float32 only after
    reducing it to a position inside the current phase (:func:`_since`, :func:`_divmod`).
    """

    family: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._config = FAMILIES[self.family].validate(params)
        self._scale: Any = None
        # the largest step count the arithmetic meets (CyclicSchedule adds up + down)
        self._largest_constant = max(
            (v for v in self._config.values() if type(v) is int), default=0
        )

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

    def training_callbacks(self) -> list[Any]:
        """The Keras callbacks a ``fit`` with this schedule needs (none for most families)."""
        return []

    def steps(self, step: Any) -> Any:
        """``step`` (a number, an array, a tensor or the optimizer's ``iterations``) as the tensor
        :meth:`value` takes: Keras's integer dtype where that holds every value.

        Otherwise (fractional steps, or steps past 2**31 - 1 on JAX's int32) it is float32, and
        exact only up to 2**24 steps.

        Raises:
            ScheduleError: The schedule's step counts (a budget past 2**31 - 1 steps) do not fit
                the backend's integer dtype (JAX's int32).

        Example:
            >>> int(ConstantSchedule(learning_rate=0.1).steps(100_000_037))  # float32: 100000040
            100000037
        """
        dtype = _step_dtype()
        limit = int(np.iinfo(dtype).max)
        if self._largest_constant > limit:
            raise ScheduleError(
                f"{type(self).__name__} counts up to {self._largest_constant} steps, more than "
                f"the {keras.backend.backend()} backend's {dtype} steps hold ({limit}); use the "
                "TensorFlow backend (int64 steps) for budgets this long."
            )
        if ops.is_tensor(step) or isinstance(step, keras.Variable):
            return ops.cast(step, dtype) if _is_integer(step) else _as_float(step)
        array = np.asarray(step)
        if array.dtype.kind in "iu" and (array.size == 0 or abs(array).max() <= limit):
            return ops.convert_to_tensor(array, dtype)
        return ops.convert_to_tensor(array, _DTYPE)

    def __call__(self, step: Any) -> Any:
        lr = self.value(self.steps(step))
        if self._scale is not None:
            lr = lr * ops.cast(self._scale, _DTYPE)
        return lr

    @property
    def cycles_momentum(self) -> bool:
        """Whether this schedule also sets the optimizer's momentum (SGD) or beta_1 (Adam) at
        every step (``cycle_momentum`` of ``onecycle`` and ``cyclic``); see
        :func:`momentum_cycling`."""
        return bool(self._config.get("cycle_momentum", False))

    def momentum(self, step: Any) -> Any:
        """The momentum (SGD) or beta_1 (Adam, AdamW) at ``step``, as PyTorch's scheduler sets it.

        Raises:
            ScheduleError: The schedule does not cycle momentum.
        """
        if not self.cycles_momentum:
            raise ScheduleError(f"{type(self).__name__} does not cycle momentum")
        return self.momentum_value(self.steps(step))

    def momentum_value(self, t: Any) -> Any:
        raise NotImplementedError

    # helpers shared by the families --------------------------------------------------------

    def _warmup(self, t: Any, after: Any) -> Any:
        """Linear warmup from ``warmup_start_factor * η`` to η over ``warmup_steps``."""
        c = self._config
        warmup_steps = c["warmup_steps"]
        if warmup_steps == 0:
            return after
        eta = c["learning_rate"]
        start = eta * c["warmup_start_factor"]
        rising = (eta - start) * (_as_float(t) / float(warmup_steps)) + start
        return ops.where(t < warmup_steps, rising, after)

    def _since_warmup(self, t: Any) -> Any:
        """``max(t - W, 0)`` in ``t``'s dtype (exact)."""
        return ops.maximum(t - self._config.get("warmup_steps", 0), 0)


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
        return ops.full_like(t, self._config["learning_rate"], dtype=_DTYPE)


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
        u = _as_float(ops.minimum(self._since_warmup(t), c["decay_steps"]))
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
        if self._config["t_mul"] != 1.0:
            self._cycles = _cycle_table(self._config["first_decay_steps"], self._config["t_mul"])

    def value(self, t: Any) -> Any:
        c = self._config
        alpha = c["alpha"]
        if c["t_mul"] == 1.0:  # cycle i starts at i * first_decay_steps
            i_restart, since = _divmod(t, c["first_decay_steps"])
            i_restart = _as_float(i_restart)
            fraction = _as_float(since) / float(c["first_decay_steps"])
        else:
            i_restart, fraction = self._cycle_position(t)
        m_fac = ops.exp(i_restart * math.log(c["m_mul"]))  # m_mul ** i, the log in float64
        cosine = 0.5 * m_fac * (1.0 + ops.cos(math.pi * fraction))
        return c["learning_rate"] * ((1.0 - alpha) * cosine + alpha)

    def _cycle_position(self, t: Any) -> tuple[Any, Any]:
        """(cycle index, fraction of it) for ``t_mul > 1``, from the table of cycle starts.

        The cycle that holds ``t`` is found by a binary search among the cycles' first whole
        steps (exact in ``t``'s dtype); the fraction is ``t`` minus that step, plus the start's
        fractional part, over the cycle's length. Past the table (beyond 2**31 - 1 steps, or
        after :data:`_MAX_TABLED_CYCLES` cycles when ``t_mul`` is very close to 1) the closed form
        of ``CosineDecayRestarts`` takes over, in float32.
        """
        firsts, offsets, lengths, end = self._cycles
        dtype = keras.backend.standardize_dtype(t.dtype)
        firsts_t = ops.convert_to_tensor(firsts, dtype)
        found = ops.searchsorted(firsts_t, ops.reshape(t, (-1,)), side="right") - 1
        index = ops.reshape(ops.maximum(found, 0), ops.shape(t))
        since = _as_float(t - ops.take(firsts_t, index)) + ops.take(offsets, index)
        i_restart = _as_float(index)
        fraction = since / ops.take(lengths, index)
        if end is None or (_is_integer(t) and end > np.iinfo(dtype).max):
            return i_restart, fraction  # the table holds every step t can hold
        t_mul = self._config["t_mul"]
        steps = _as_float(t) / float(self._config["first_decay_steps"])
        far_i = ops.floor(ops.log(1.0 - steps * (1.0 - t_mul)) / math.log(t_mul))
        t_pow = ops.power(t_mul, far_i)
        far_fraction = (steps - (1.0 - t_pow) / (1.0 - t_mul)) / t_pow
        beyond = t >= (end if _is_integer(t) else float(end))
        return ops.where(beyond, far_i, i_restart), ops.where(beyond, far_fraction, fraction)


_CYCLE_TABLE_HORIZON = 2**31 - 1
"""SGDR cycles are tabled up to here: every step JAX's int32 ``iterations`` can count."""
_MAX_TABLED_CYCLES = 4096
"""At most this many (reached below the horizon only by ``t_mul`` within ~0.5 % of 1)."""


def _cycle_table(
    first: int, t_mul: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """SGDR's cycles for ``t_mul > 1``: ``(first_steps, offsets, lengths, end)``.

    Cycle ``i`` starts at ``s_i = first * (t_mul**i - 1) / (t_mul - 1)`` (float64: exact for
    whole ``t_mul``). Its first step is ``ceil(s_i)`` (int64), ``offsets[i] = ceil(s_i) - s_i``
    and ``lengths[i] = first * t_mul**i`` (float32). ``end`` is the first step after the last
    tabled cycle (``None`` when the table reaches past :data:`_CYCLE_TABLE_HORIZON`).

    Example:
        >>> _cycle_table(10, 2.0)[0][:4].tolist()
        [0, 10, 30, 70]
    """

    def start(i: int) -> float:
        try:
            return first * (t_mul**i - 1.0) / (t_mul - 1.0)
        except OverflowError:
            return math.inf

    firsts, offsets, lengths = [], [], []
    i, s = 0, 0.0
    while s <= _CYCLE_TABLE_HORIZON and i < _MAX_TABLED_CYCLES:
        firsts.append(math.ceil(s))
        offsets.append(math.ceil(s) - s)
        lengths.append(first * t_mul**i)
        i, s = i + 1, start(i + 1)
    end = math.ceil(s) if s <= _CYCLE_TABLE_HORIZON else None
    return (
        np.asarray(firsts, np.int64),
        np.asarray(offsets, np.float32),
        np.minimum(lengths, np.finfo(np.float32).max).astype(np.float32),
        end,
    )


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
        steps_per_epoch = c["steps_per_epoch"]
        epochs, rest = _divmod(self._since_warmup(t), steps_per_epoch)
        p = _as_float(epochs)
        if not c["staircase"]:
            p = p + _as_float(rest) / float(steps_per_epoch)
        # decay_rate ** p as exp(p * log(decay_rate)), the log taken in float64: decay_rate
        # rounded to float32 would carry a relative error of p * 6e-8 into its power
        decayed = c["learning_rate"] * ops.exp(p * math.log(c["decay_rate"]))
        return self._warmup(t, decayed)


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
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        total_steps: int,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            pct_start=pct_start,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            anneal=anneal,
            three_phase=three_phase,
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
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

    def momentum_phases(self) -> list[tuple[float, float, float]]:
        """The phases as ``(end_step, start_momentum, end_momentum)``, as PyTorch builds them:
        momentum falls while the lr rises and rises while it falls (held in a third phase)."""
        low, high = self._config["base_momentum"], self._config["max_momentum"]
        ends = [end for end, _, _ in self.phases()]
        if self._config["three_phase"]:
            return [(ends[0], high, low), (ends[1], low, high), (ends[2], high, high)]
        return [(ends[0], high, low), (ends[1], low, high)]

    def value(self, t: Any) -> Any:
        return self._along(t, self.phases())

    def momentum_value(self, t: Any) -> Any:
        return self._along(t, self.momentum_phases())

    def _along(self, t: Any, phases: list[tuple[float, float, float]]) -> Any:
        """The annealed value at step ``t`` along ``phases`` (``OneCycleLR.get_lr``)."""
        anneal = _cos_anneal if self._config["anneal"] == "cos" else _lin_anneal
        t = ops.minimum(t, self._config["total_steps"] - 1)
        out = None
        start_step = 0.0
        for end_step, start, end in phases:
            # exact for a short phase late in the budget (see _since); clipped, as rounding can
            # put x just past 1 (a negative lr with linear anneal)
            x = ops.clip(_since(t, start_step) / (end_step - start_step), 0.0, 1.0)
            piece = anneal(start, end, x)
            # t <= start_step, for whole steps t
            out = piece if out is None else ops.where(t <= math.floor(start_step), out, piece)
            start_step = end_step
        return out


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
        return self._warmup(t, ops.full_like(t, self._config["learning_rate"], dtype=_DTYPE))

    def training_callbacks(self) -> list[Any]:
        from lrsearch.schedules._plateau import PlateauCallback

        return [PlateauCallback(self)]


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
        end, decay_steps = c["end_learning_rate"], c["decay_steps"]
        # (D - u) / D, not 1 - u / D: XLA turns "/ D" into "* (1 / D)", and 1 - 0.99999994 under
        # a power < 1 would leave the schedule visibly above its end value at the last step.
        left = decay_steps - ops.minimum(self._since_warmup(t), decay_steps)
        remaining = _as_float(left) / float(decay_steps)
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
        decay_steps = c["decay_steps"]
        into_decay = ops.clip(t - (c["total_steps"] - decay_steps), 0, decay_steps)
        p = _as_float(into_decay) / float(decay_steps)
        # 1 - p from the steps left (exact), not by cancellation: near the end of a long decay
        # 1 - p is ~1/D, below float32's resolution next to 1
        left = _as_float(decay_steps - into_decay) / float(decay_steps)
        if c["decay_shape"] == "linear":
            d = left
        elif c["decay_shape"] == "cosine":
            d = (1.0 + ops.cos(math.pi * p)) / 2.0
        else:
            d = left / (1.0 + ops.sqrt(p))  # 1 - sqrt(p)
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
        cycle_momentum: bool = True,
        base_momentum: float = 0.8,
        max_momentum: float = 0.9,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            base_learning_rate=base_learning_rate,
            step_size_up=step_size_up,
            step_size_down=step_size_down,
            mode=mode,
            gamma=gamma,
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
        )
        c = self._config
        self._largest_constant = c["step_size_up"] + c["step_size_down"]  # the cycle length

    def _between(self, t: Any, floor: float, peak: float) -> Any:
        """``floor + (peak - floor) * scale_factor * scale_fn`` at step ``t``, in
        ``CyclicLR.get_lr``'s order of operations (its momentum: floor = max_momentum, peak =
        base_momentum)."""
        c = self._config
        up, down = c["step_size_up"], c["step_size_down"]
        # the cycle and the position in it exactly (1 + t/total - cycle loses digits as t grows);
        # x / ratio = position / up, (x - 1) / (ratio - 1) = (total - position) / down
        cycle, position = _divmod(t, up + down)
        cycle = _as_float(cycle) + 1.0
        rising = _as_float(position) / float(up)
        falling = _as_float(up + down - position) / float(down)
        scale = ops.where(position <= up, rising, falling)
        height = (peak - floor) * scale
        if c["mode"] == "triangular2":
            height = height * (1.0 / ops.power(2.0, cycle - 1.0))
        elif c["mode"] == "exp_range":
            height = height * ops.exp(_as_float(t) * math.log(c["gamma"]))  # log in float64
        return floor + height

    def value(self, t: Any) -> Any:
        return self._between(t, self._config["base_learning_rate"], self._config["learning_rate"])

    def momentum_value(self, t: Any) -> Any:
        return self._between(t, self._config["max_momentum"], self._config["base_momentum"])


@keras.saving.register_keras_serializable("lrsearch")
class ScheduleFreeSchedule(LRSearchSchedule):
    """Schedule-Free AdamW's learning rate: ``η * min((t + 1) / W, 1)``, η without warmup.

    It is the rate ``keras.optimizers.ScheduleFreeAdamW(learning_rate=η, warmup_steps=W)`` applies
    at optimizer step ``t`` (the same float32 arithmetic), given to that optimizer as a schedule
    with ``warmup_steps=0`` so that lrsearch records and draws it like any family's. The
    optimizer averages its iterates instead of annealing; train with :meth:`optimizer` and
    evaluate with :class:`ScheduleFreeEvaluation` (:meth:`training_callbacks`).

    Example:
        >>> schedule = ScheduleFreeSchedule(learning_rate=0.01, warmup_steps=4)
        >>> [round(float(schedule(t)), 6) for t in (0, 3, 100)]
        [0.0025, 0.01, 0.01]
    """

    family = "schedule_free"

    def __init__(
        self, *, learning_rate: float = 0.0025, warmup_steps: int = 0, beta_1: float = 0.9
    ) -> None:
        super().__init__(learning_rate=learning_rate, warmup_steps=warmup_steps, beta_1=beta_1)

    def value(self, t: Any) -> Any:
        eta, warmup = self._config["learning_rate"], self._config["warmup_steps"]
        flat = ops.full_like(t, eta, dtype=_DTYPE)
        if warmup == 0:
            return flat
        rising = _as_float(ops.minimum(t, warmup) + 1) / float(warmup)
        return ops.where(t < warmup, eta * rising, flat)

    def optimizer(self, weight_decay: float | None = None) -> Any:
        """``keras.optimizers.ScheduleFreeAdamW`` driven by this schedule, with its ``beta_1``
        (``weight_decay`` None: Schedule-Free Adam)."""
        return keras.optimizers.ScheduleFreeAdamW(
            learning_rate=self, beta_1=self._config["beta_1"], weight_decay=weight_decay
        )

    def training_callbacks(self) -> list[Any]:
        return [ScheduleFreeEvaluation()]


_TRAINING_WEIGHTS: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
"""A model's training weights ``y`` while it holds its averaged weights ``x``
(:class:`ScheduleFreeEvaluation`): kept per model, so that any callback object sees it."""


def _schedule_free_optimizer(model: Any) -> Any:
    """The model's ``ScheduleFreeAdamW`` (inside a mixed-precision ``LossScaleOptimizer`` too).

    Raises:
        ScheduleError: The model is not compiled with one.
    """
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if not isinstance(optimizer, keras.optimizers.ScheduleFreeAdamW):
        raise ScheduleError(
            "ScheduleFreeEvaluation needs a model compiled with keras.optimizers."
            f"ScheduleFreeAdamW; this one has {type(optimizer).__name__}"
        )
    return optimizer


class ScheduleFreeEvaluation(keras.callbacks.Callback):  # type: ignore[name-defined]
    """Evaluates a model trained by ``keras.optimizers.ScheduleFreeAdamW`` on its averaged weights.

    Schedule-Free AdamW trains the model's weights at ``y`` and keeps its gradient iterate ``z``
    (the optimizer's ``momentum`` variables); the weights its authors evaluate are the average
    ``x = (y - (1 - beta_1) z) / beta_1`` (their ``optimizer.eval()``). Keras's optimizer has no
    such switch, so this callback makes it: validation inside ``fit`` (and an ``evaluate`` given
    this callback) runs on ``x``, training goes on from ``y`` exactly, and after ``fit`` the model
    holds ``x``, the weights to use or save; a later ``fit`` with this callback (any instance)
    swaps ``y`` back in first. Layers whose statistics are gathered while training (BatchNorm)
    keep the statistics of ``y``.

    Raises:
        ScheduleError: The model's optimizer is not a ``ScheduleFreeAdamW``.

    Example:
        >>> schedule = ScheduleFreeSchedule(learning_rate=0.01)
        >>> model.compile(optimizer=schedule.optimizer(), loss="mse")  # doctest: +SKIP
        >>> model.fit(x, y, validation_data=(xv, yv),
        ...           callbacks=[ScheduleFreeEvaluation()])  # doctest: +SKIP
    """

    def __init__(self) -> None:
        super().__init__()
        self._swapped_for_test = False

    def _average_in(self) -> bool:
        """Puts ``x`` in the model unless it is there; returns whether it did."""
        model = self.model
        optimizer = _schedule_free_optimizer(model)
        momentums = getattr(optimizer, "_momentums", None)
        if model in _TRAINING_WEIGHTS or not momentums:
            return False  # x already in, or no step taken yet (then x = y)
        beta_1 = float(optimizer.beta_1)
        variables = model.trainable_variables
        kept = [ops.copy(v.value) for v in variables]
        for v, y in zip(variables, kept, strict=True):
            z = momentums[optimizer._get_variable_index(v)]
            v.assign((y - (1.0 - beta_1) * z) / beta_1)
        _TRAINING_WEIGHTS[model] = kept
        return True

    def _training_in(self) -> None:
        kept = _TRAINING_WEIGHTS.pop(self.model, None)
        if kept is not None:
            for v, y in zip(self.model.trainable_variables, kept, strict=True):
                v.assign(y)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._training_in()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._swapped_for_test = self._average_in()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._swapped_for_test:
            self._training_in()
            self._swapped_for_test = False

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._average_in()


# --- momentum cycling ---------------------------------------------------------------------------


class MomentumCycling:
    """Mixin for a Keras optimizer: the momentum (SGD) or beta_1 (Adam, AdamW) of each step is the
    one its schedule gives (:meth:`LRSearchSchedule.momentum`), computed inside the compiled step
    from the optimizer's step count, as PyTorch's ``OneCycleLR`` and ``CyclicLR`` set it.

    Adam's update reads ``beta_1`` as a value, so it runs with the step's beta_1 in its place
    (its bias correction ``1 - beta_1^t`` then uses it too, as PyTorch's Adam does). Keras's SGD
    decides from ``momentum != 0`` in Python whether momentum applies at all, so a cycled SGD step
    is written here: ``m = momentum * m - lr * g``, then ``w += m`` (``w += momentum * m - lr * g``
    with Nesterov), Keras's own update with the step's momentum. A schedule that does not cycle
    momentum leaves the optimizer exactly as its base class.

    Use :func:`momentum_cycling` to get the class for an optimizer class.
    """

    _lrsearch_step_momentum: Any = None

    def _step_momentum(self) -> Any:
        """This step's momentum, or ``None`` when the schedule has none (the packed optimizer
        gives every copy's own here)."""
        schedule = self._learning_rate  # type: ignore[attr-defined]
        if isinstance(schedule, LRSearchSchedule) and schedule.cycles_momentum:
            # the step Keras reads the learning rate at (``_get_current_learning_rate``)
            return schedule.momentum(self._iterations)  # type: ignore[attr-defined]
        return None

    def _cycled_momentum(self, variable: Any) -> Any:
        """This step's momentum for ``variable`` (computed once per step)."""
        step = self._lrsearch_step_momentum
        return self._step_momentum() if step is None else step

    def _backend_update_step(
        self, grads: Any, trainable_variables: Any, learning_rate: Any
    ) -> None:
        # once per step, as Keras computes the learning rate once, not once per variable
        self._lrsearch_step_momentum = self._step_momentum()
        try:
            super()._backend_update_step(  # type: ignore[misc]
                grads, trainable_variables, learning_rate
            )
        finally:
            self._lrsearch_step_momentum = None

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        momentum = self._cycled_momentum(variable)
        base: Any = super()
        if momentum is None:
            base.update_step(gradient, variable, learning_rate)
            return
        momentum = ops.cast(momentum, variable.dtype)
        if isinstance(self, keras.optimizers.Adam):  # AdamW is an Adam
            kept = self.beta_1
            self.beta_1 = momentum
            try:
                base.update_step(gradient, variable, learning_rate)
            finally:
                self.beta_1 = kept
            return
        opt: Any = self
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if not opt.momentums:  # built with momentum 0: the schedule's momentums are all 0
            opt.assign_sub(variable, gradient * lr)
            return
        m = opt.momentums[opt._get_variable_index(variable)]
        opt.assign(m, m * momentum - gradient * lr)
        if opt.nesterov:
            opt.assign_add(variable, m * momentum - gradient * lr)
        else:
            opt.assign_add(variable, m)


@keras.saving.register_keras_serializable("lrsearch")
class CyclingSGD(MomentumCycling, keras.optimizers.SGD):  # type: ignore[name-defined]
    """``keras.optimizers.SGD`` whose momentum follows its schedule's (see
    :class:`MomentumCycling`). Without ``momentum`` it starts from the schedule's
    ``max_momentum``, as PyTorch's schedulers set it.

    Example:
        >>> schedule = OneCycleSchedule(learning_rate=0.1, total_steps=100)
        >>> optimizer = CyclingSGD(learning_rate=schedule)
        >>> round(float(schedule.momentum(50)), 6)
        0.870611
    """

    def __init__(self, learning_rate: Any = 0.01, momentum: float | None = None, **kwargs: Any):
        cycles = isinstance(learning_rate, LRSearchSchedule) and learning_rate.cycles_momentum
        if momentum is None:
            momentum = learning_rate.get_config()["max_momentum"] if cycles else 0.0
        elif cycles and momentum == 0 and learning_rate.get_config()["max_momentum"] > 0:
            raise ScheduleError(  # Keras's SGD would keep no momentum to cycle
                "CyclingSGD(momentum=0) cannot cycle momentum; leave momentum out (it starts "
                "at the schedule's max_momentum) or set cycle_momentum = false"
            )
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)


@keras.saving.register_keras_serializable("lrsearch")
class CyclingAdam(MomentumCycling, keras.optimizers.Adam):  # type: ignore[name-defined]
    """``keras.optimizers.Adam`` whose beta_1 follows its schedule's momentum."""


@keras.saving.register_keras_serializable("lrsearch")
class CyclingAdamW(MomentumCycling, keras.optimizers.AdamW):  # type: ignore[name-defined]
    """``keras.optimizers.AdamW`` whose beta_1 follows its schedule's momentum."""


_CYCLING = {
    keras.optimizers.SGD: CyclingSGD,
    keras.optimizers.Adam: CyclingAdam,
    keras.optimizers.AdamW: CyclingAdamW,
}


def momentum_cycling(optimizer_class: type) -> type:
    """The class of ``optimizer_class`` whose momentum or beta_1 follows its schedule.

    Raises:
        ScheduleError: An optimizer without a momentum or beta_1 to cycle.

    Example:
        >>> momentum_cycling(keras.optimizers.SGD).__name__
        'CyclingSGD'
    """
    if issubclass(optimizer_class, MomentumCycling):
        return optimizer_class
    try:
        return _CYCLING[optimizer_class]
    except KeyError:
        raise ScheduleError(
            f"cycle_momentum needs SGD, Adam or AdamW (a momentum or beta_1 to cycle), not "
            f"{optimizer_class.__name__}; set cycle_momentum = false"
        ) from None
