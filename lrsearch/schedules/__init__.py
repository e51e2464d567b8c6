"""Learning-rate schedule families: the registry and their Keras schedules.

``FAMILIES``, ``get_family`` and ``resolve_params`` are pure Python; ``build_schedule`` and the
schedule classes import Keras on first use, so importing this package stays instant. Importing it
still registers every schedule class for Keras serialization (``lrsearch>NAME``): at once when
Keras is already imported, else the moment it is (see ``_registration``), so
``keras.optimizers.schedules.deserialize`` and ``keras.saving.load_model`` find them.

Example:
    >>> from lrsearch.schedules import build_schedule
    >>> schedule = build_schedule("onecycle", total_steps=100, learning_rate=0.1)
    >>> round(float(schedule(29)), 6)
    0.1
"""

from __future__ import annotations

import importlib
from typing import Any

from lrsearch.schedules._registration import register_when_keras_is_imported
from lrsearch.schedules._registry import (
    DEFAULT_FAMILIES,
    FAMILIES,
    REQUIRED,
    Derived,
    Family,
    Param,
    get_family,
    resolve_params,
    stored_schedule,
)

__all__ = [
    "DEFAULT_FAMILIES",
    "FAMILIES",
    "REQUIRED",
    "Derived",
    "Family",
    "Param",
    "PlateauCallback",
    "PlateauState",
    "LRSearchSchedule",
    "CyclingAdam",
    "CyclingAdamW",
    "CyclingSGD",
    "MomentumCycling",
    "ScheduleFreeEvaluation",
    "build_schedule",
    "momentum_cycling",
    "get_family",
    "resolve_params",
    "stored_schedule",
    *(f.class_name for f in FAMILIES.values()),
]


def build_schedule(family: str, *, total_steps: int, **params: Any) -> Any:
    """Builds the Keras ``LearningRateSchedule`` of ``family`` for a ``total_steps`` budget.

    Args:
        family: A name in ``FAMILIES``.
        total_steps: ``epochs * steps_per_epoch`` of the training.
        **params: The family's parameters in absolute units; omitted ones take their defaults.

    Raises:
        ScheduleError: Unknown family or parameter, or an invalid value (the message names it).
    """
    fam = get_family(family)
    resolved = fam.resolve(total_steps=total_steps, **params)
    return fam.schedule_class(**resolved)


_LAZY = {
    "PlateauCallback": "lrsearch.schedules._plateau",
    "PlateauState": "lrsearch.schedules._plateau",
    "LRSearchSchedule": "lrsearch.schedules._keras",
    **{
        name: "lrsearch.schedules._keras"
        for name in (
            "CyclingAdam",
            "CyclingAdamW",
            "CyclingSGD",
            "MomentumCycling",
            "ScheduleFreeEvaluation",
            "momentum_cycling",
        )
    },
    **{f.class_name: "lrsearch.schedules._keras" for f in FAMILIES.values()},
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lrsearch.schedules' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


register_when_keras_is_imported()
