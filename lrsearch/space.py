"""The search space: from a study file's ``[space]`` and an Optuna trial to a schedule.

The family is a categorical parameter ``family``; the peak learning rate ``learning_rate`` is
shared by every family (log-uniform by default, so the sampler learns the lr scale across
families); each family's own parameters are conditional and named ``<family>.<param>``. Values
are in *relative* units (warmup in epochs, lengths as fractions of the budget, final lr as a ratio
of the peak) and are resolved to the absolute parameters ``build_schedule`` takes.

Example:
    >>> import optuna
    >>> from lrsearch.config import SpaceConfig
    >>> space = SearchSpace.from_config(SpaceConfig(families=["onecycle"]),
    ...                                 Budget(epochs=10, steps_per_epoch=20))
    >>> point = space.suggest(optuna.create_study().ask())
    >>> point.family, sorted(point.absolute)[:2]
    ('onecycle', ['anneal', 'div_factor'])
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lrsearch.config import MAX_LEARNING_RATE, BaselineConfig, SpaceConfig
from lrsearch.exceptions import ConfigError, ScheduleError
from lrsearch.records import TrialRecord
from lrsearch.schedules import FAMILIES, Family
from lrsearch.schedules._registry import Budget, SearchParam

if TYPE_CHECKING:
    import optuna

__all__ = ["Budget", "Dimension", "SchedulePoint", "SearchSpace", "default_lr_range"]

_LR_RANGES = {"sgd": (1e-3, 0.5), "adam": (1e-4, 3e-2), "adamw": (1e-4, 3e-2)}


def default_lr_range(optimizer: str) -> tuple[float, float]:
    """The default log-uniform learning-rate range for an optimizer."""
    return _LR_RANGES.get(optimizer, (1e-4, 1e-1))


@dataclass(frozen=True)
class Dimension:
    """One searched (or fixed) parameter as the trial sees it.

    ``fixed`` is set when the study file pins the value; such a dimension is not suggested.
    """

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    fixed: Any = None

    @property
    def is_fixed(self) -> bool:
        return self.fixed is not None

    def suggest(self, trial: Any) -> Any:
        if self.is_fixed:
            return self.fixed
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def corners(self) -> list[Any]:
        """The extreme values, used to check a space before any training."""
        if self.is_fixed:
            return [self.fixed]
        if self.kind == "choice":
            return list(self.choices)
        return [self.low, self.high]


@dataclass(frozen=True)
class SchedulePoint:
    """A sampled schedule: the family, its relative values, its absolute parameters."""

    family: str
    relative: dict[str, Any]
    absolute: dict[str, Any]
    total_steps: int

    def build(self) -> Any:
        """The Keras schedule (imports Keras)."""
        from lrsearch.schedules import build_schedule

        return build_schedule(self.family, total_steps=self.total_steps, **self.absolute)

    def record(self) -> dict[str, Any]:
        """What is stored on the trial: exactly what ``build_schedule`` takes."""
        return {"family": self.family, "total_steps": self.total_steps, "params": self.absolute}

    @classmethod
    def from_record(cls, record: TrialRecord) -> SchedulePoint:
        """The point a trial ran (its stored schedule and relative values).

        Raises:
            ConfigError: the trial has no stored schedule.
        """
        if not record.schedule:
            raise ConfigError("the trial has no recorded schedule")
        schedule = record.schedule
        return cls(
            family=str(schedule["family"]),
            relative=dict(record.relative or {}),
            absolute=dict(schedule["params"]),
            total_steps=int(schedule["total_steps"]),
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _dimension(
    name: str, p: SearchParam | None, spec: Any, budget: Budget, where: str
) -> Dimension:
    """Builds a dimension from a registry default (``p``) and a study-file override (``spec``)."""
    kind = p.kind if p is not None else "float"
    low, high = p.bounds(budget) if p is not None else (0.0, 0.0)
    log = p.log if p is not None else False
    choices = p.choices if p is not None else ()
    if spec is None:
        if kind != "choice" and low == high:
            return Dimension(name, kind, fixed=low)
        return Dimension(name, kind, low, high, log, choices)
    if isinstance(spec, bool | int | float | str):
        if kind != "choice" and not _is_number(spec):
            raise ConfigError(f"`{where}` = {spec!r}: must be a finite number (or [low, high])")
        return Dimension(name, kind, fixed=spec)
    if isinstance(spec, list):
        if kind == "choice":
            if not spec:
                raise ConfigError(f"`{where}` = []: give at least one choice")
            return Dimension(name, kind, choices=tuple(spec))
        if len(spec) != 2 or not all(isinstance(v, int | float) for v in spec):
            raise ConfigError(
                f"`{where}` = {spec!r}: a range is [low, high] with two numbers, "
                "or give one number to fix the value"
            )
        low, high = spec
    elif isinstance(spec, dict):
        unknown = set(spec) - {"low", "high", "log"}
        if unknown or "low" not in spec or "high" not in spec:
            raise ConfigError(f"`{where}` = {spec!r}: a range table is {{low, high, log}}")
        low, high, log = spec["low"], spec["high"], spec.get("log", log)
        if not isinstance(log, bool):
            raise ConfigError(f"`{where}.log` = {log!r}: must be true or false")
    else:
        raise ConfigError(f"`{where}` = {spec!r}: expected a number, [low, high] or a table")
    if kind == "choice":
        raise ConfigError(f"`{where}` takes one of {list(choices)} or a list of them")
    if not (_is_number(low) and _is_number(high)):
        raise ConfigError(f"`{where}` = {spec!r}: low and high must be finite numbers")
    if low > high:
        raise ConfigError(f"`{where}` = [{low}, {high}]: low > high; write [{high}, {low}]")
    if log and low <= 0:
        raise ConfigError(f"`{where}` = [{low}, {high}]: a log range needs low > 0")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ConfigError(f"`{where}` = [{low}, {high}]: bounds must be whole numbers")
    if low == high:
        return Dimension(name, kind, fixed=low)
    return Dimension(name, kind, float(low), float(high), log)


@dataclass
class SearchSpace:
    """The space of one study: families, the shared learning rate, per-family dimensions."""

    budget: Budget
    families: tuple[str, ...]
    learning_rate: Dimension
    dimensions: dict[str, list[tuple[SearchParam, Dimension]]] = field(default_factory=dict)
    fixed_absolute: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, config: SpaceConfig, budget: Budget, *, optimizer: str = "adam"
    ) -> SearchSpace:
        """Builds the space and checks that its corners give valid schedules.

        Raises:
            ConfigError: a range that is malformed or produces an invalid schedule.
        """
        lr_default = SearchParam(
            "learning_rate", "float", "learning_rate", "", *default_lr_range(optimizer), log=True
        )
        lr = _dimension(
            "learning_rate", lr_default, config.learning_rate, budget, "space.learning_rate"
        )
        if lr.is_fixed and not (isinstance(lr.fixed, int | float) and lr.fixed > 0):
            raise ConfigError(f"`space.learning_rate` = {lr.fixed!r}: must be a number > 0")
        space = cls(budget=budget, families=tuple(config.families), learning_rate=lr)
        for name in config.families:
            family = FAMILIES[name]
            overrides = config.family_overrides(name)
            dims = []
            for p in family.search:
                where = f"space.{name}.{p.name}"
                dims.append(
                    (
                        p,
                        _dimension(
                            f"{name}.{p.name}", p, overrides.pop(p.name, None), budget, where
                        ),
                    )
                )
            space.dimensions[name] = dims
            # what is left are absolute parameters; one that would override a searched value
            # makes the trial record a value the schedule ignores
            searched = {p.target: d.name for p, d in dims if not d.is_fixed}
            if not lr.is_fixed:
                searched["learning_rate"] = "learning_rate"
            for key in overrides:
                if key in searched:
                    raise ConfigError(
                        f"`space.{name}.{key}` would override the searched `{searched[key]}`; "
                        f"fix or narrow `space.{searched[key]}` instead"
                    )
            space.fixed_absolute[name] = overrides
            space._check_corners(family)
        return space

    def bounded(self, low: float, high: float) -> SearchSpace:
        """This space with ``learning_rate`` searched in ``[low, high]`` (a range test's bounds,
        :mod:`lrsearch.rangetest`) on the file's scale (log-uniform unless it says
        ``log = false``); its corners checked again.

        Raises:
            ConfigError: the study file fixes the learning rate, or the bounds are not
                ``0 < low < high`` or give invalid schedules.
        """
        if self.learning_rate.is_fixed:
            raise ConfigError(
                f"`space.learning_rate` = {self.learning_rate.fixed!r} fixes the learning rate, "
                "so a range test's bounds cannot apply; give a range [low, high] or drop it"
            )
        if not (_is_number(low) and _is_number(high) and 0 < low < high <= MAX_LEARNING_RATE):
            raise ConfigError(
                f"learning-rate bounds [{low}, {high}]: need 0 < low < high <= "
                f"{MAX_LEARNING_RATE:g}"
            )
        # the file's scale: Optuna refuses a parameter whose log flag changes within a study
        lr = replace(self.learning_rate, low=float(low), high=float(high))
        space = replace(self, learning_rate=lr)
        for name in space.families:
            space._check_corners(FAMILIES[name])
        return space

    def compressed(self, epochs: int, *, check: bool = False) -> SearchSpace:
        """This space resolving its points into ``epochs`` epochs: each whole schedule
        compressed (:meth:`Budget.compressed`; budget-aware halving's lower rungs); with
        ``check``, its corners checked at that length.

        Raises:
            ConfigError: (``check``) a range gives invalid schedules in ``epochs`` epochs.
        """
        if epochs == self.budget.epochs:
            return self
        space = replace(self, budget=self.budget.compressed(epochs))
        if check:
            for name in space.families:
                space._check_corners(FAMILIES[name])
        return space

    def _check_corners(self, family: Family) -> None:
        dims = self.dimensions[family.name]
        lr_values = self.learning_rate.corners()
        base = {p.name: d.corners()[0] for p, d in dims}
        candidates = [dict(base)]
        for p, d in dims:
            for value in d.corners()[1:]:
                candidates.append({**base, p.name: value})
        candidates.append({p.name: d.corners()[-1] for p, d in dims})
        for lr_value in lr_values:
            for rel in candidates:
                try:
                    self.resolve(family.name, {"learning_rate": lr_value, **rel})
                except (ScheduleError, TypeError, ValueError, OverflowError) as exc:
                    raise ConfigError(
                        f"`space.{family.name}` gives invalid {family.name} schedules for "
                        f"{self.budget.epochs} epochs x {self.budget.steps_per_epoch} steps "
                        f"(e.g. {rel}): {exc}"
                    ) from None

    def resolve(
        self, family: str, relative: dict[str, Any], absolute: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Absolute parameters for a search point (``absolute`` overrides win)."""
        fixed = {**self.fixed_absolute.get(family, {}), **(absolute or {})}
        return FAMILIES[family].to_absolute(relative, self.budget, fixed=fixed)

    def suggest(self, trial: optuna.Trial) -> SchedulePoint:
        """Samples a family and its parameters from ``trial`` (conditional parameters)."""
        family = trial.suggest_categorical("family", list(self.families))
        relative: dict[str, Any] = {"learning_rate": self.learning_rate.suggest(trial)}
        for p, dim in self.dimensions[family]:
            relative[p.name] = dim.suggest(trial)
        return self.point(family, relative)

    def point(
        self, family: str, relative: dict[str, Any], absolute: dict[str, Any] | None = None
    ) -> SchedulePoint:
        return SchedulePoint(
            family=family,
            relative=relative,
            absolute=self.resolve(family, relative, absolute),
            total_steps=self.budget.total_steps,
        )

    def baseline_point(self, baseline: BaselineConfig) -> SchedulePoint:
        """The schedule of a ``[[baseline]]`` entry: relative and absolute keys both allowed."""
        family = FAMILIES[baseline.family]
        searchable = {p.name for p in family.search}
        relative: dict[str, Any] = {"learning_rate": baseline.learning_rate}
        absolute: dict[str, Any] = {}
        for key, value in baseline.params.items():
            if key in searchable:
                if family.search_param(key).kind != "choice" and not _is_number(value):
                    raise ConfigError(f"`baseline.{key}` = {value!r}: must be a finite number")
                relative[key] = value
            elif key in family.param_names:
                absolute[key] = value
            else:
                raise ConfigError(
                    f"`baseline.{key}` is not a parameter of {family.name}; use one of "
                    f"{', '.join(sorted(searchable | set(family.param_names)))}"
                )
        try:
            return self.point(family.name, relative, absolute)
        except ScheduleError as exc:
            label = baseline.name or baseline.family
            raise ConfigError(f"baseline {label!r}: {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. 1e308 epochs overflow
            label = baseline.name or baseline.family
            raise ConfigError(f"baseline {label!r}: {relative} gives no schedule: {exc}") from None

    def replay(self, trial: optuna.Trial, point: SchedulePoint) -> None:
        """Suggests ``point``'s values on an enqueued trial, so they become its parameters.

        A recorded point may lie outside today's range (a replicate of a trial sampled before
        a range test bounded the learning rate): Optuna keeps the enqueued value, and its
        warning that the value is out of range is not shown.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Fixed parameter")
            trial.suggest_categorical("family", list(self.families))
            self.learning_rate.suggest(trial)
            for p, dim in self.dimensions.get(point.family, []):
                if p.name in point.relative:
                    dim.suggest(trial)

    def enqueue_params(self, point: SchedulePoint) -> dict[str, Any]:
        """The trial parameters that make a sampler see ``point`` (for ``enqueue_trial``)."""
        params: dict[str, Any] = {"family": point.family}
        if not self.learning_rate.is_fixed:
            params["learning_rate"] = point.relative["learning_rate"]
        for p, dim in self.dimensions.get(point.family, []):
            if not dim.is_fixed and p.name in point.relative:
                params[dim.name] = point.relative[p.name]
        return params
