"""Take a trial's schedule home: as its JSON config, a Keras-serialized schedule, or Python.

``python`` output uses a Keras built-in where one is exactly equivalent (cosine without warmup is
``CosineDecay``, polynomial without warmup ``PolynomialDecay``, warmup_decay without warmup
``ExponentialDecay``, cosine_restarts ``CosineDecayRestarts``, constant a float) and a
``build_schedule`` call otherwise.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from lrsearch.exceptions import ConfigError
from lrsearch.records import TrialRecord
from lrsearch.schedules import FAMILIES

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from lrsearch.study import StudyHandle

__all__ = ["FORMATS", "export_schedule", "trial_schedule"]

FORMATS = ("json", "keras", "python")


def trial_schedule(
    handle: StudyHandle, trial: int | None = None
) -> tuple[dict[str, Any], FrozenTrial]:
    """The stored schedule of trial ``trial`` (default: the best) and that frozen trial.

    Raises:
        ConfigError: no such trial, or a trial without a recorded schedule.
        LRSearchError: no completed trial yet (when ``trial`` is not given).
    """
    frozen = handle.trial(handle.require_best().number if trial is None else trial)
    schedule = TrialRecord.of(frozen).schedule
    if not schedule:
        raise ConfigError(
            f"Trial #{frozen.number} of study {handle.name!r} has no recorded schedule."
        )
    return schedule, frozen


def _literal(value: Any) -> str:
    return repr(value)


def _call(func: str, kwargs: dict[str, Any]) -> str:
    args = "".join(f"    {k}={_literal(v)},\n" for k, v in kwargs.items())
    return f"{func}(\n{args})"


def python_snippet(schedule: dict[str, Any]) -> str:
    """A short Python snippet that defines ``schedule`` (a Keras schedule, or a float)."""
    family, total, params = schedule["family"], schedule["total_steps"], dict(schedule["params"])
    p = params
    no_warmup = not p.get("warmup_steps")
    keras_call: tuple[str, dict[str, Any]] | None = None
    if family == "constant":
        return f"schedule = {_literal(float(p['learning_rate']))}  # a constant learning rate\n"
    if family == "cosine" and no_warmup:
        keras_call = (
            "CosineDecay",
            {
                "initial_learning_rate": p["learning_rate"],
                "decay_steps": p["decay_steps"],
                "alpha": p.get("alpha", 0.0),
            },
        )
    elif family == "polynomial" and no_warmup:
        keras_call = (
            "PolynomialDecay",
            {
                "initial_learning_rate": p["learning_rate"],
                "decay_steps": p["decay_steps"],
                "end_learning_rate": p.get("end_learning_rate", 0.0),
                "power": p.get("power", 1.0),
            },
        )
    elif family == "warmup_decay" and no_warmup:
        keras_call = (
            "ExponentialDecay",
            {
                "initial_learning_rate": p["learning_rate"],
                "decay_steps": p["steps_per_epoch"],
                "decay_rate": p.get("decay_rate", 0.95),
                "staircase": p.get("staircase", False),
            },
        )
    elif family == "cosine_restarts":
        keras_call = (
            "CosineDecayRestarts",
            {
                "initial_learning_rate": p["learning_rate"],
                "first_decay_steps": p["first_decay_steps"],
                "t_mul": p.get("t_mul", 2.0),
                "m_mul": p.get("m_mul", 1.0),
                "alpha": p.get("alpha", 0.0),
            },
        )
    if keras_call is not None:
        func, kwargs = keras_call
        return (
            "import keras\n\n"
            f"# lrsearch {family}, exactly equal to Keras's built-in at every step\n"
            f"schedule = {_call('keras.optimizers.schedules.' + func, kwargs)}\n"
        )
    text = (
        "from lrsearch.schedules import build_schedule\n\n"
        f"schedule = {_call('build_schedule', {'family': family, 'total_steps': total, **p})}\n"
    )
    if p.get("cycle_momentum"):
        text += (
            "# it cycles momentum (SGD) or beta_1 (Adam) too, through its optimizer:\n"
            "from lrsearch.schedules import CyclingSGD  # or CyclingAdam, CyclingAdamW\n\n"
            "optimizer = CyclingSGD(learning_rate=schedule)\n"
        )
    if FAMILIES[family].optimizer:
        text += (
            f"# it trains with keras.optimizers.{FAMILIES[family].optimizer} (its beta_1; pass\n"
            "# weight_decay= for AdamW) and is evaluated on that optimizer's averaged weights:\n"
            "from lrsearch.schedules import ScheduleFreeEvaluation\n\n"
            "optimizer = schedule.optimizer()\n"
            "# model.fit(..., callbacks=[ScheduleFreeEvaluation()])\n"
        )
    if family == "plateau":
        text += (
            "# its cuts need the callback: from lrsearch.schedules import PlateauCallback\n"
            "# model.fit(..., callbacks=[PlateauCallback(schedule)])\n"
        )
    return text.replace("build_schedule(\n    family=", "build_schedule(\n    ", 1)


def export_schedule(schedule: dict[str, Any], fmt: str = "json") -> str:
    """``schedule`` (a trial's ``schedule`` attribute) as text in ``fmt``.

    Args:
        schedule: ``{"family", "total_steps", "params"}``.
        fmt: ``json`` (the absolute config, what ``build_schedule`` takes), ``keras``
            (``keras.optimizers.schedules.serialize`` as JSON) or ``python`` (a snippet).

    Raises:
        ConfigError: an unknown format.
    """
    if fmt == "json":
        return json.dumps(schedule, indent=2) + "\n"
    if fmt == "keras":
        from lrsearch._imports import import_keras
        from lrsearch.schedules import build_schedule

        keras = import_keras()
        built = build_schedule(
            schedule["family"], total_steps=schedule["total_steps"], **schedule["params"]
        )
        return json.dumps(keras.optimizers.schedules.serialize(built), indent=2) + "\n"
    if fmt == "python":
        return python_snippet(schedule)
    raise ConfigError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
