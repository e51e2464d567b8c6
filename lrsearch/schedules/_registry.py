"""The family registry: names, parameters, defaults and validation of every schedule family.

This module is pure Python (no Keras import) so that listing families, validating study files and
``lrsearch --help`` stay instant. The Keras classes live in :mod:`lrsearch.schedules._keras` and
call :meth:`Family.validate` from their constructors, so both paths share one set of checks.

Adding a family touches this file (one :class:`Family` entry) and ``_keras.py`` (its class).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lrsearch.exceptions import ScheduleError, did_you_mean

__all__ = [
    "DEFAULT_FAMILIES",
    "FAMILIES",
    "Budget",
    "SearchParam",
    "REQUIRED",
    "Derived",
    "Family",
    "Param",
    "get_family",
    "resolve_params",
    "stored_schedule",
]

ParamKind = Literal["float", "int", "bool", "choice", "str"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Marker for a parameter without a default."""


@dataclass(frozen=True)
class Derived:
    """A default computed from the budget and the other parameters.

    Attributes:
        text: How the default reads in listings, e.g. ``"total_steps - warmup_steps"``.
        fn: ``fn(total_steps, params) -> value``.
    """

    text: str
    fn: Callable[[int, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Param:
    """One constructor argument of a family's schedule (absolute units)."""

    name: str
    kind: ParamKind
    default: Any = REQUIRED
    help: str = ""
    choices: tuple[str, ...] = ()
    before: Any = REQUIRED
    """What a trial stored before this parameter existed ran with (its stored schedule lacks
    it); ``REQUIRED`` when the parameter is as old as its family."""

    @property
    def default_text(self) -> str:
        if self.default is REQUIRED:
            return "required"
        if isinstance(self.default, Derived):
            return self.default.text
        return repr(self.default) if isinstance(self.default, str) else str(self.default)

    def coerce(self, value: Any) -> Any:
        """Returns ``value`` as this parameter's Python type, or raises :class:`ScheduleError`."""
        name = self.name
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise ScheduleError(
                f"Argument `{name}` must be true or false. Received: {name}={value!r}"
            )
        if self.kind in ("choice", "str"):
            if not isinstance(value, str):
                raise ScheduleError(
                    f"Argument `{name}` must be a string. Received: {name}={value!r}"
                )
            if self.kind == "choice" and value not in self.choices:
                options = ", ".join(repr(c) for c in self.choices)
                raise ScheduleError(
                    f"Argument `{name}` must be one of {options}. Received: {name}={value!r}"
                )
            return value
        if isinstance(value, bool):  # float(True) would pass the fallback below
            raise ScheduleError(f"Argument `{name}` must be a number. Received: {name}={value!r}")
        if not isinstance(value, int | float):
            try:  # numpy scalars and the like
                value = float(value)
            except (TypeError, ValueError):
                raise ScheduleError(
                    f"Argument `{name}` must be a number. Received: {name}={value!r}"
                ) from None
        if not math.isfinite(value):
            raise ScheduleError(f"Argument `{name}` must be finite. Received: {name}={value!r}")
        if self.kind == "int":
            if float(value) != int(value):
                raise ScheduleError(
                    f"Argument `{name}` must be a whole number. Received: {name}={value!r}"
                )
            return int(value)
        return float(value)


@dataclass(frozen=True)
class Budget:
    """What the search layer knows about a training: its length and what it monitors.

    A *compressed* budget (:meth:`compressed`) is a shorter training that runs the whole
    schedule of a ``full_epochs`` one, every length scaled by ``epochs / full_epochs``: a value
    in epochs means epochs of the full training.

        >>> short = Budget(epochs=9, steps_per_epoch=10).compressed(3)
        >>> short.total_steps, short.compression
        (30, 0.3333333333333333)
    """

    epochs: int
    steps_per_epoch: int
    monitor: str = "val_loss"
    mode: str = "min"
    full_epochs: int | None = None
    """The epochs of the training this one compresses (None: not compressed)."""

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def compression(self) -> float:
        """This training's length / the full training's (1.0 when not compressed)."""
        return self.epochs / self.full_epochs if self.full_epochs else 1.0

    def compressed(self, epochs: int) -> Budget:
        """This budget's whole schedule compressed into ``epochs`` epochs (budget-aware
        successive halving, :mod:`lrsearch.halving`)."""
        if epochs < 1:
            raise ValueError(f"A training needs at least one epoch. Received: epochs={epochs}")
        return replace(self, epochs=epochs, full_epochs=self.full_epochs or self.epochs)


Bound = float | Callable[[Budget], float]
Unit = Literal["", "epochs", "budget", "lr"]


@dataclass(frozen=True)
class SearchParam:
    """A search-layer parameter in relative units, and how it becomes an absolute one.

    Attributes:
        name: Its name in study files; trial parameters are named ``<family>.<name>``.
        kind: ``float``, ``int`` or ``choice``.
        low, high: The default range (a number or a function of the :class:`Budget`).
        log: Sample on a log scale by default.
        choices: The default choices of a ``choice`` parameter.
        target: The absolute parameter it sets.
        unit: ``""`` same value; ``"epochs"`` times steps per epoch; ``"budget"`` a fraction of
            the total steps; ``"lr"`` a ratio of the peak learning rate.
    """

    name: str
    kind: Literal["float", "int", "choice"]
    target: str
    unit: Unit = ""
    low: Bound = 0.0
    high: Bound = 1.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    help: str = ""

    def bounds(self, budget: Budget) -> tuple[float, float]:
        low = self.low(budget) if callable(self.low) else self.low
        high = self.high(budget) if callable(self.high) else self.high
        return low, high

    def to_absolute(self, value: Any, budget: Budget, learning_rate: float) -> Any:
        if self.unit == "epochs":  # epochs of the full training
            return int(round(value * budget.steps_per_epoch * budget.compression))
        if self.unit == "budget":
            return max(int(round(value * budget.total_steps)), 1)
        if self.unit == "lr":
            return value * learning_rate
        return value


def _max_warmup(b: Budget) -> float:
    return b.epochs / 5


def _warmup_epochs(target: str = "warmup_steps") -> SearchParam:
    return SearchParam(
        "warmup_epochs",
        "float",
        target,
        "epochs",
        0.0,
        _max_warmup,
        help="linear warmup length in epochs",
    )


# --- checks -----------------------------------------------------------------------------------


def _fail(name: str, rule: str, value: Any) -> ScheduleError:
    return ScheduleError(f"Argument `{name}` must be {rule}. Received: {name}={value!r}")


def _positive(p: Mapping[str, Any], name: str) -> None:
    if not p[name] > 0:
        raise _fail(name, "> 0", p[name])


def _non_negative(p: Mapping[str, Any], name: str) -> None:
    if not p[name] >= 0:
        raise _fail(name, ">= 0", p[name])


def _between(p: Mapping[str, Any], name: str, low: float, high: float, closed: str = "[]") -> None:
    """Checks ``low <(=) p[name] <(=) high``; ``closed`` is the interval's brackets."""
    v = p[name]
    ok_low = v >= low if closed[0] == "[" else v > low
    ok_high = v <= high if closed[1] == "]" else v < high
    if not (ok_low and ok_high):
        raise _fail(name, f"in {closed[0]}{low:g}, {high:g}{closed[1]}", v)


def _check_warmup(p: Mapping[str, Any]) -> None:
    _non_negative(p, "warmup_steps")
    _between(p, "warmup_start_factor", 0, 1)


def _check_constant(p: Mapping[str, Any]) -> None:
    _positive(p, "learning_rate")


def _check_cosine(p: Mapping[str, Any]) -> None:
    _positive(p, "learning_rate")
    _positive(p, "decay_steps")
    _between(p, "alpha", 0, 1)
    _check_warmup(p)


def _check_cosine_restarts(p: Mapping[str, Any]) -> None:
    _positive(p, "learning_rate")
    _positive(p, "first_decay_steps")
    if not p["t_mul"] >= 1:  # Keras silently returns NaN for t_mul < 1
        raise _fail("t_mul", ">= 1", p["t_mul"])
    _between(p, "m_mul", 0, 1, "(]")
    _between(p, "alpha", 0, 1)


def _check_warmup_decay(p: Mapping[str, Any]) -> None:
    _positive(p, "learning_rate")
    _between(p, "decay_rate", 0, 1, "()")
    _positive(p, "steps_per_epoch")
    _check_warmup(p)


def _check_onecycle(p: Mapping[str, Any]) -> None:
    _positive(p, "learning_rate")
    _between(p, "pct_start", 0, 1, "()")
    _positive(p, "div_factor")
    _positive(p, "final_div_factor")
    _positive(p, "total_steps")
    total, pct = p["total_steps"], p["pct_start"]
    if not pct * total > 1:  # the warm-up phase would end at step <= 0 (PyTorch divides by 0)
        raise ScheduleError(
            f"Argument `pct_start` must be > 1/total_steps={1 / total:g} so that the rising "
            f"phase lasts at least one step. Received: pct_start={pct!r}"
        )
    if p["three_phase"] and not total + 1 - 2 * pct * total > 0:
        raise ScheduleError(
            "Argument `pct_start` must be < (total_steps + 1) / (2 * total_steps) with "
            f"three_phase=True, so the last phase has a length. Received: pct_start={pct!r}"
        )
    _check_momentum(p)


def _check_momentum(p: Mapping[str, Any]) -> None:
    _between(p, "base_momentum", 0, 1, "[)")
    _between(p, "max_momentum", p["base_momentum"], 1, "[)")


def _check_plateau(p: Mapping[str, Any]) -> None:
    _positive(p, "learning_rate")
    _between(p, "factor", 0, 1, "()")
    if not p["patience"] >= 1:
        raise _fail("patience", ">= 1", p["patience"])
    _non_negative(p, "min_delta")
    _non_negative(p, "cooldown")
    _non_negative(p, "min_learning_rate")
    if not p["min_learning_rate"] < p["learning_rate"]:
        raise _fail(
            "min_learning_rate", f"< learning_rate={p['learning_rate']!r}", p["min_learning_rate"]
        )
    if not p["monitor"]:
        raise _fail("monitor", "a metric name such as 'val_loss'", p["monitor"])
    _check_warmup(p)


def _check_polynomial(p: Mapping[str, Any]) -> None:
    _positive(p, "learning_rate")
    _positive(p, "decay_steps")
    _positive(p, "power")
    _between(p, "end_learning_rate", 0, p["learning_rate"])
    _check_warmup(p)


def _check_wsd(p: Mapping[str, Any]) -> None:
    _positive(p, "learning_rate")
    _positive(p, "decay_steps")
    _between(p, "min_lr_ratio", 0, 1)
    _positive(p, "total_steps")
    _check_warmup(p)
    if p["warmup_steps"] + p["decay_steps"] > p["total_steps"]:
        raise ScheduleError(
            "Arguments `warmup_steps` + `decay_steps` must be <= total_steps="
            f"{p['total_steps']}. Received: warmup_steps={p['warmup_steps']!r}, "
            f"decay_steps={p['decay_steps']!r}"
        )


def _check_schedule_free(p: Mapping[str, Any]) -> None:
    _positive(p, "learning_rate")
    _non_negative(p, "warmup_steps")
    _between(p, "beta_1", 0, 1, "()")  # the evaluation weights divide by beta_1


def _check_cyclic(p: Mapping[str, Any]) -> None:
    _positive(p, "learning_rate")
    _between(p, "base_learning_rate", 0, p["learning_rate"], "[)")
    _positive(p, "step_size_up")
    _positive(p, "step_size_down")
    _positive(p, "gamma")
    _check_momentum(p)


# --- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One schedule family: its parameters, their defaults, its checks and its Keras class.

    Attributes:
        name: The family's name in study files and on trials (``"onecycle"``).
        summary: One line for listings.
        reference: The library object whose values ours equal, or ``"formula"``.
        params: The schedule's constructor arguments (absolute units), in order.
        check: Raises :class:`ScheduleError` for invalid (already coerced) parameters.
        class_name: The class in :mod:`lrsearch.schedules._keras`.
        needs_total_steps: Whether the constructor takes ``total_steps`` (set by the builder).
        search: The search-layer parameters (relative units) with their default ranges.
        adjust: Completes or clips absolute parameters derived from a search point.
        optimizer: The Keras optimizer class the family trains with in place of the study's
            (``""``: the study's); such a family needs an Adam-like study optimizer and trains
            unpacked.
        searched_by_default: Whether a study that lists no ``space.families`` searches it.
    """

    name: str
    summary: str
    reference: str
    params: tuple[Param, ...]
    check: Callable[[Mapping[str, Any]], None]
    class_name: str
    needs_total_steps: bool = False
    search: tuple[SearchParam, ...] = ()
    adjust: Callable[[dict[str, Any], Budget], None] | None = None
    optimizer: str = ""
    searched_by_default: bool = True
    _by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})

    @property
    def packs(self) -> bool:
        """Whether its trials train in a pack (:mod:`lrsearch.packing`); a family with its own
        optimizer trains alone."""
        return not self.optimizer

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        try:
            return self._by_name[name]
        except KeyError:
            raise ScheduleError(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        hint = did_you_mean(name, self.param_names, quote="`")
        return (
            f"Family `{self.name}` has no argument `{name}`.{hint} "
            f"Its arguments: {', '.join(self.param_names)}."
        )

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Coerces and checks a complete set of constructor arguments.

        Args:
            params: Every parameter of the family (plus ``total_steps`` where the family takes it).

        Returns:
            The parameters as Python values, in the family's order.
        """
        out: dict[str, Any] = {}
        for name, value in params.items():
            if name == "total_steps" and self.needs_total_steps:
                out[name] = Param("total_steps", "int").coerce(value)
            else:
                out[name] = self.param(name).coerce(value)
        missing = [p.name for p in self.params if p.name not in out]
        if self.needs_total_steps and "total_steps" not in out:
            missing.append("total_steps")
        if missing:
            raise ScheduleError(
                f"Family `{self.name}` is missing argument(s): {', '.join(missing)}."
            )
        self.check(out)
        return out

    def resolve(self, *, total_steps: int, **params: Any) -> dict[str, Any]:
        """Fills defaults for a training of ``total_steps`` steps and validates.

        Returns:
            Exactly the keyword arguments of the family's Keras class.
        """
        total = Param("total_steps", "int").coerce(total_steps)
        if total < 1:
            raise _fail("total_steps", ">= 1", total_steps)
        for name in params:
            self.param(name)  # unknown names fail first, with a suggestion
        given = {name: self.param(name).coerce(value) for name, value in params.items()}
        resolved: dict[str, Any] = {}
        for p in self.params:  # plain defaults first, then derived ones that may use them
            if p.name in given:
                resolved[p.name] = given[p.name]
            elif p.default is REQUIRED:
                raise ScheduleError(
                    f"Family `{self.name}` needs argument `{p.name}` ({p.help or p.kind})."
                )
            elif not isinstance(p.default, Derived):
                resolved[p.name] = p.default
        for p in self.params:
            if p.name not in resolved:
                resolved[p.name] = p.coerce(p.default.fn(total, resolved))
        if "warmup_steps" in resolved and not resolved["warmup_steps"] < total:
            raise _fail("warmup_steps", f"< total_steps={total}", resolved["warmup_steps"])
        ordered = {p.name: resolved[p.name] for p in self.params}
        if self.needs_total_steps:
            ordered["total_steps"] = total
        return self.validate(ordered)

    def search_param(self, name: str) -> SearchParam:
        for p in self.search:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_absolute(
        self,
        relative: Mapping[str, Any],
        budget: Budget,
        *,
        fixed: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Turns a search point into the family's absolute parameters for ``budget``.

        Args:
            relative: ``learning_rate`` and values of :attr:`search` parameters by name.
            budget: The training's length and monitored metric.
            fixed: Absolute parameters set as they are (they win over derived ones).

        Returns:
            Absolute parameters, validated, exactly what ``build_schedule`` takes (without
            ``total_steps``).
        """
        lr = float(relative["learning_rate"])
        absolute: dict[str, Any] = {"learning_rate": lr}
        for name, value in relative.items():
            if name != "learning_rate":
                p = self.search_param(name)
                absolute[p.target] = p.to_absolute(value, budget, lr)
        if self.adjust is not None:
            self.adjust(absolute, budget)
        if "warmup_steps" in absolute:
            absolute["warmup_steps"] = min(absolute["warmup_steps"], budget.total_steps - 1)
        absolute.update(fixed or {})
        resolved = self.resolve(total_steps=budget.total_steps, **absolute)
        resolved.pop("total_steps", None)
        return resolved

    @property
    def schedule_class(self) -> Any:
        """The Keras ``LearningRateSchedule`` subclass (imports Keras)."""
        module = importlib.import_module("lrsearch.schedules._keras")
        return getattr(module, self.class_name)


def _momentum_params(base: float, peak: float) -> tuple[Param, ...]:
    """PyTorch's momentum cycling (``OneCycleLR``, ``CyclicLR``): SGD's momentum, or Adam's and
    AdamW's beta_1, moves inversely to the learning rate between ``base`` and ``peak``."""
    return (
        Param(
            "cycle_momentum",
            "bool",
            True,
            "cycle momentum / beta_1 inversely to the lr",
            before=False,  # trials stored before it existed ran with the optimizer's momentum
        ),
        Param("base_momentum", "float", base, "momentum where the lr peaks"),
        Param("max_momentum", "float", peak, "momentum where the lr is lowest"),
    )


_LR = Param("learning_rate", "float", 0.01, "peak learning rate η")
_WARMUP = (
    Param("warmup_steps", "int", 0, "linear warmup length W in steps"),
    Param("warmup_start_factor", "float", 0.0, "warmup starts at this fraction of η"),
)


def _after_warmup(total: int, p: Mapping[str, Any]) -> int:
    return max(total - p["warmup_steps"], 1)


def _set_steps_per_epoch(p: dict[str, Any], b: Budget) -> None:
    """An epoch of the full training: in a compressed one, fewer steps."""
    p["steps_per_epoch"] = max(int(round(b.steps_per_epoch * b.compression)), 1)


def _set_monitor(p: dict[str, Any], b: Budget) -> None:
    """The monitored metric; in a compressed training, patience and cooldown (counted in
    epochs of the full training) scaled down, patience to at least one epoch."""
    p["monitor"], p["mode"] = b.monitor, b.mode
    if b.compression != 1.0:
        if "patience" in p:
            p["patience"] = max(int(round(p["patience"] * b.compression)), 1)
        if "cooldown" in p:
            p["cooldown"] = int(round(p["cooldown"] * b.compression))


def _fit_wsd(p: dict[str, Any], b: Budget) -> None:
    """Keeps warmup + decay inside the budget (the decay wins; warmup shrinks)."""
    if "decay_steps" in p:
        p["decay_steps"] = min(p["decay_steps"], b.total_steps)
        p["warmup_steps"] = min(p.get("warmup_steps", 0), b.total_steps - p["decay_steps"])


def _fit_cyclic(p: dict[str, Any], b: Budget) -> None:
    p["step_size_up"] = max(p.get("step_size_up", 1), 1)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="constant",
            summary="a fixed learning rate",
            reference="formula",
            params=(_LR,),
            check=_check_constant,
            class_name="ConstantSchedule",
        ),
        Family(
            name="cosine",
            summary="cosine annealing from η to α·η, optional linear warmup",
            reference="keras.optimizers.schedules.CosineDecay",
            params=(
                _LR,
                Param("alpha", "float", 0.0, "final lr as a fraction of η"),
                Param(
                    "decay_steps",
                    "int",
                    Derived("total_steps - warmup_steps", _after_warmup),
                    "cosine length D in steps",
                ),
                *_WARMUP,
            ),
            check=_check_cosine,
            class_name="CosineSchedule",
            search=(
                _warmup_epochs(),
                SearchParam("alpha", "float", "alpha", "", 0.0, 0.1, help="final lr / η"),
            ),
        ),
        Family(
            name="cosine_restarts",
            summary="SGDR: cosine annealing with warm restarts",
            reference="keras.optimizers.schedules.CosineDecayRestarts",
            params=(
                _LR,
                Param(
                    "first_decay_steps",
                    "int",
                    Derived("total_steps // 3 (at least 1)", lambda t, p: max(t // 3, 1)),
                    "length T0 of the first cycle in steps",
                ),
                Param("t_mul", "float", 2.0, "each cycle is t_mul times longer"),
                Param("m_mul", "float", 1.0, "each restart peaks at m_mul times the last"),
                Param("alpha", "float", 0.0, "floor as a fraction of η"),
            ),
            check=_check_cosine_restarts,
            class_name="CosineRestartsSchedule",
            search=(
                SearchParam(
                    "first_cycle",
                    "float",
                    "first_decay_steps",
                    "budget",
                    0.1,
                    0.5,
                    help="first cycle length as a fraction of the budget",
                ),
                SearchParam("t_mul", "choice", "t_mul", choices=(1.0, 2.0)),
                SearchParam("m_mul", "float", "m_mul", "", 0.5, 1.0),
                SearchParam("alpha", "float", "alpha", "", 0.0, 0.1, help="floor / η"),
            ),
        ),
        Family(
            name="warmup_decay",
            summary="linear warmup, then exponential decay by decay_rate per epoch",
            reference="keras.optimizers.schedules.ExponentialDecay (without warmup)",
            params=(
                _LR,
                Param("warmup_steps", "int", 0, "linear warmup length W in steps"),
                Param("decay_rate", "float", 0.95, "multiplier per epoch after warmup"),
                Param("staircase", "bool", False, "decay once per epoch instead of smoothly"),
                Param("steps_per_epoch", "int", REQUIRED, "steps per epoch S"),
                Param("warmup_start_factor", "float", 0.0, "warmup starts at this fraction of η"),
            ),
            check=_check_warmup_decay,
            class_name="WarmupDecaySchedule",
            search=(
                _warmup_epochs(),
                SearchParam("decay_rate", "float", "decay_rate", "", 0.7, 0.99),
            ),
            adjust=_set_steps_per_epoch,
        ),
        Family(
            name="onecycle",
            summary="one-cycle policy: rise to η, anneal far below the start",
            reference="torch.optim.lr_scheduler.OneCycleLR",
            params=(
                Param("learning_rate", "float", 0.01, "maximum learning rate η"),
                Param("pct_start", "float", 0.3, "share of the budget spent rising"),
                Param("div_factor", "float", 25.0, "start lr = η / div_factor"),
                Param("final_div_factor", "float", 1e4, "final lr = start lr / final_div_factor"),
                Param("anneal", "choice", "cos", "annealing shape", ("cos", "linear")),
                Param("three_phase", "bool", False, "fall back to start lr before the final fall"),
                *_momentum_params(0.85, 0.95),
            ),
            check=_check_onecycle,
            class_name="OneCycleSchedule",
            search=(
                SearchParam("pct_start", "float", "pct_start", "", 0.1, 0.5),
                SearchParam("div_factor", "float", "div_factor", "", 5.0, 100.0, log=True),
                SearchParam(
                    "final_div_factor", "float", "final_div_factor", "", 10.0, 1e4, log=True
                ),
                SearchParam("anneal", "choice", "anneal", choices=("cos", "linear")),
            ),
            needs_total_steps=True,
        ),
        Family(
            name="plateau",
            summary="reduce-on-plateau with optional warmup (needs PlateauCallback)",
            reference="keras.callbacks.ReduceLROnPlateau (on a float learning rate)",
            params=(
                _LR,
                Param("factor", "float", 0.1, "multiplier applied at each cut"),
                Param("patience", "int", 10, "epochs without improvement before a cut"),
                Param("min_delta", "float", 1e-4, "smallest change that counts as improvement"),
                Param("cooldown", "int", 0, "epochs to wait after a cut"),
                Param("min_learning_rate", "float", 0.0, "the lr is never cut below this"),
                Param("monitor", "str", "val_loss", "metric watched for a plateau"),
                Param(
                    "mode",
                    "choice",
                    "auto",
                    "min, max, or auto (max if 'acc' in monitor)",
                    ("auto", "min", "max"),
                ),
                *_WARMUP,
            ),
            check=_check_plateau,
            class_name="PlateauSchedule",
            search=(
                SearchParam("factor", "float", "factor", "", 0.1, 0.7),
                SearchParam("patience", "int", "patience", "", 1, lambda b: max(b.epochs // 4, 1)),
                _warmup_epochs(),
                SearchParam(
                    "min_lr_ratio",
                    "float",
                    "min_learning_rate",
                    "lr",
                    0.0,
                    0.0,
                    help="floor of the cuts / η",
                ),
            ),
            adjust=_set_monitor,
        ),
        Family(
            name="polynomial",
            summary="polynomial decay from η to end_learning_rate (power 1: linear)",
            reference="keras.optimizers.schedules.PolynomialDecay (cycle=False)",
            params=(
                _LR,
                Param("end_learning_rate", "float", 0.0, "lr at the end of the decay"),
                Param("power", "float", 1.0, "polynomial power"),
                Param(
                    "decay_steps",
                    "int",
                    Derived("total_steps - warmup_steps", _after_warmup),
                    "decay length D in steps",
                ),
                *_WARMUP,
            ),
            check=_check_polynomial,
            class_name="PolynomialSchedule",
            search=(
                _warmup_epochs(),
                SearchParam("power", "float", "power", "", 0.5, 3.0),
                SearchParam(
                    "end_lr_ratio",
                    "float",
                    "end_learning_rate",
                    "lr",
                    0.0,
                    0.1,
                    help="final lr / η",
                ),
            ),
        ),
        Family(
            name="wsd",
            summary="warmup-stable-decay: hold η, then decay over the last decay_steps",
            reference="formula",
            params=(
                _LR,
                Param("warmup_steps", "int", 0, "linear warmup length W in steps"),
                Param(
                    "decay_steps",
                    "int",
                    Derived("total_steps // 5 (at least 1)", lambda t, p: max(t // 5, 1)),
                    "length D of the final decay in steps",
                ),
                Param(
                    "decay_shape",
                    "choice",
                    "linear",
                    "shape of the final decay",
                    ("linear", "cosine", "sqrt"),
                ),
                Param("min_lr_ratio", "float", 0.0, "final lr as a fraction of η"),
                Param("warmup_start_factor", "float", 0.0, "warmup starts at this fraction of η"),
            ),
            check=_check_wsd,
            class_name="WSDSchedule",
            search=(
                _warmup_epochs(),
                SearchParam(
                    "decay_fraction",
                    "float",
                    "decay_steps",
                    "budget",
                    0.1,
                    0.5,
                    help="final decay length as a fraction of the budget",
                ),
                SearchParam(
                    "decay_shape", "choice", "decay_shape", choices=("linear", "cosine", "sqrt")
                ),
                SearchParam("min_lr_ratio", "float", "min_lr_ratio", "", 0.0, 0.1),
            ),
            adjust=_fit_wsd,
            needs_total_steps=True,
        ),
        Family(
            name="cyclic",
            summary="cyclical learning rate (triangular, triangular2, exp_range)",
            reference="torch.optim.lr_scheduler.CyclicLR",
            params=(
                Param("learning_rate", "float", 0.01, "maximum learning rate η"),
                Param(
                    "base_learning_rate",
                    "float",
                    Derived("learning_rate / 10", lambda t, p: p["learning_rate"] / 10),
                    "lowest learning rate of a cycle",
                ),
                Param(
                    "step_size_up",
                    "int",
                    Derived("total_steps // 4 (at least 1)", lambda t, p: max(t // 4, 1)),
                    "steps from base to η",
                ),
                Param(
                    "step_size_down",
                    "int",
                    Derived("step_size_up", lambda t, p: p["step_size_up"]),
                    "steps from η back to base",
                ),
                Param(
                    "mode",
                    "choice",
                    "triangular",
                    "amplitude policy",
                    ("triangular", "triangular2", "exp_range"),
                ),
                Param("gamma", "float", 1.0, "amplitude factor per step in exp_range"),
                *_momentum_params(0.8, 0.9),
            ),
            check=_check_cyclic,
            class_name="CyclicSchedule",
            search=(
                SearchParam(
                    "base_lr_ratio",
                    "float",
                    "base_learning_rate",
                    "lr",
                    0.01,
                    0.5,
                    log=True,
                    help="cycle floor / η",
                ),
                SearchParam(
                    "half_cycle_epochs",
                    "float",
                    "step_size_up",
                    "epochs",
                    0.5,
                    lambda b: max(b.epochs / 2, 0.5),
                    help="epochs from floor to peak",
                ),
                SearchParam("mode", "choice", "mode", choices=("triangular", "triangular2")),
            ),
            adjust=_fit_cyclic,
        ),
        Family(
            name="schedule_free",
            summary="Schedule-Free AdamW: no schedule after its warmup (a baseline)",
            reference="keras.optimizers.ScheduleFreeAdamW",
            params=(
                Param("learning_rate", "float", 0.0025, "learning rate η after the warmup"),
                Param("warmup_steps", "int", 0, "linear warmup from η/W to η over W steps"),
                Param("beta_1", "float", 0.9, "interpolation between the iterates (momentum)"),
            ),
            check=_check_schedule_free,
            class_name="ScheduleFreeSchedule",
            search=(
                _warmup_epochs(),
                SearchParam("beta_1", "float", "beta_1", "", 0.9, 0.98),
            ),
            optimizer="ScheduleFreeAdamW",
            searched_by_default=False,
        ),
    )
}


DEFAULT_FAMILIES: tuple[str, ...] = tuple(n for n, f in FAMILIES.items() if f.searched_by_default)
"""What a study that lists no ``space.families`` searches: every family but the opt-in
baselines (``schedule_free`` needs an Adam-like optimizer and trains unpacked)."""


def get_family(name: str) -> Family:
    """Returns the registered family ``name`` or raises with a "did you mean"."""
    try:
        return FAMILIES[name]
    except KeyError:
        hint = did_you_mean(str(name), FAMILIES)
        raise ScheduleError(
            f"Unknown schedule family {name!r}.{hint} Known families: {', '.join(FAMILIES)}."
        ) from None


def stored_schedule(schedule: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's stored schedule (``{"family", "total_steps", "params"}``) with the parameters
    added to its family since it was stored set to what the trial ran with (:attr:`Param.before`),
    so that replaying it (retrain, export, pictures) trains what it trained.

    Example:
        >>> stored_schedule({"family": "onecycle", "params": {"learning_rate": 0.1}})["params"]
        {'learning_rate': 0.1, 'cycle_momentum': False}
    """
    family = FAMILIES.get(str(schedule.get("family")))
    params = schedule.get("params")
    if family is None or not isinstance(params, Mapping):
        return dict(schedule)
    added = {
        p.name: p.before
        for p in family.params
        if p.before is not REQUIRED and p.name not in params
    }
    return {**schedule, "params": {**params, **added}} if added else dict(schedule)


def resolve_params(family: str, *, total_steps: int, **params: Any) -> dict[str, Any]:
    """Returns the validated absolute parameters ``build_schedule`` would use.

    Example:
        >>> resolve_params("cosine", total_steps=100, learning_rate=0.1)["decay_steps"]
        100
    """
    return get_family(family).resolve(total_steps=total_steps, **params)
