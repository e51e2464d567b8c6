from __future__ import annotations

# The ``plateau`` family: PlateauState against Keras's ReduceLROnPlateau, and the applied lr.
#
# Keras's ``ReduceLROnPlateau`` (on an optimizer with a float learning rate) is the reference for
# the cut decisions. The applied learning rate is measured from the weights: with ``x = 1`` and
# the loss ``mean(y_pred)``, the gradient of a bias-free ``Dense(1)`` kernel is exactly 1, so
# plain SGD moves the kernel by ``-lr(t)`` at step ``t``.
import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrsearch.exceptions import ScheduleError
from lrsearch.schedules import PlateauCallback, PlateauState, build_schedule

ETA = 0.1
MONITOR = "stalled_metric"


def close(ours: float, ref: float, peak: float = ETA) -> bool:
    """The float32 tolerance of SCHEDULES.md."""
    return abs(ours - ref) <= 1e-6 * peak + 1e-5 * abs(ref)


# --------------------------------------------------------------------------------------------
# 1. The cut decisions equal Keras's ReduceLROnPlateau
# --------------------------------------------------------------------------------------------


@functools.cache
def _float_lr_model() -> Any:
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=ETA), loss="mse")
    return model


def keras_reference(values: list[float], config: dict[str, Any]) -> tuple[list[float], list[int]]:
    """Per-epoch learning rate and cut epochs of Keras's own callback on a float lr."""
    model = _float_lr_model()
    model.optimizer.learning_rate = ETA
    callback = keras.callbacks.ReduceLROnPlateau(
        monitor=config["monitor"],
        factor=config["factor"],
        patience=config["patience"],
        min_delta=config["min_delta"],
        cooldown=config["cooldown"],
        min_lr=config["min_learning_rate"],
        mode=config["mode"],
    )
    callback.set_model(model)
    callback.on_train_begin()
    lrs: list[float] = []
    cuts: list[int] = []
    previous = float(model.optimizer.learning_rate)
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {config["monitor"]: value})
        lr = float(model.optimizer.learning_rate)
        if lr != previous:
            cuts.append(epoch)
        lrs.append(lr)
        previous = lr
    return lrs, cuts


def state_sequence(values: list[float], config: dict[str, Any]) -> tuple[list[float], list[int]]:
    state = PlateauState(learning_rate=ETA, **config)
    state.reset()
    lrs: list[float] = []
    cuts: list[int] = []
    for epoch, value in enumerate(values):
        if state.update(value):
            cuts.append(epoch)
        lrs.append(state.level)
    return lrs, cuts


def assert_same_sequence(values: list[float], config: dict[str, Any]) -> list[int]:
    ref_lrs, ref_cuts = keras_reference(values, config)
    lrs, cuts = state_sequence(values, config)
    assert cuts == ref_cuts, (values, config, lrs, ref_lrs)
    for epoch, (ours, ref) in enumerate(zip(lrs, ref_lrs, strict=True)):
        assert close(ours, ref), (epoch, ours, ref, values, config)
    return ref_cuts


def _config(
    *,
    factor: float = 0.1,
    patience: int = 10,
    min_delta: float = 1e-4,
    cooldown: int = 0,
    min_learning_rate: float = 0.0,
    mode: str = "min",
) -> dict[str, Any]:
    return {
        "factor": factor,
        "patience": patience,
        "min_delta": min_delta,
        "cooldown": cooldown,
        "min_learning_rate": min_learning_rate,
        "monitor": "val_loss" if mode == "min" else "val_accuracy",
        "mode": mode,
    }


CONFIGS = {
    "half_p2_no_delta": _config(factor=0.5, patience=2, min_delta=0.0),
    "tenth_p1_cooldown2_min_lr": _config(
        factor=0.1, patience=1, cooldown=2, min_learning_rate=1e-4
    ),
    "half_p1_clamped_min_lr": _config(factor=0.5, patience=1, min_learning_rate=0.03),
    "large_min_delta": _config(factor=0.5, patience=1, min_delta=0.1),
    "max_mode_cooldown": _config(factor=0.2, patience=2, min_delta=0.01, cooldown=1, mode="max"),
    "max_mode_p3": _config(factor=0.7, patience=3, min_delta=0.0, mode="max"),
}

SEQUENCES = {
    "flat": [1.0] * 12,
    "improve_then_plateau": [1.0, 0.9, 0.8, 0.8, 0.8, 0.79995, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7],
    "ties_and_small_moves": [0.5, 0.5, 0.5, 0.4, 0.4, 0.45, 0.41, 0.39, 0.39, 0.395, 0.3, 0.3],
    "noisy": [1.0, 1.05, 0.99, 1.02, 0.98, 0.981, 0.97, 1.1, 1.2, 0.5, 0.6, 0.6, 0.6, 0.6],
    "rising": [0.1 * i for i in range(14)],
    # current == best - min_delta only up to float32 rounding: Keras compares in float32.
    "float32_boundary": [1.0, float(np.float32(0.9999)), float(np.float32(0.9998)), 0.9997, 0.5],
    "delta_boundary": [0.5, 0.4, 0.3, 0.2, 0.1, 0.0, 0.11, 0.09, 0.2, 0.1],
}


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("sequence_name", sorted(SEQUENCES))
def test_state_equals_keras_reduce_lr_on_plateau(config_name: str, sequence_name: str) -> None:
    config = CONFIGS[config_name]
    values = SEQUENCES[sequence_name]
    assert_same_sequence(values, config)
    if config["mode"] == "max":  # the mirrored sequence under the mirrored mode
        mirrored = {**config, "mode": "min", "monitor": "val_loss"}
        assert_same_sequence([-v for v in values], mirrored)


def test_reference_sequences_do_cut() -> None:
    """The deterministic cases exercise cuts, cooldown and the min_lr floor (not only no-ops)."""
    cuts = assert_same_sequence(SEQUENCES["flat"], CONFIGS["tenth_p1_cooldown2_min_lr"])
    assert cuts == [1, 3, 5]  # one idle epoch after each cut; 0.1 -> 0.01 -> 1e-3 -> 1e-4 (floor)
    lrs, _ = state_sequence(SEQUENCES["flat"], CONFIGS["tenth_p1_cooldown2_min_lr"])
    assert close(lrs[-1], 1e-4)
    cuts = assert_same_sequence(SEQUENCES["flat"], CONFIGS["half_p1_clamped_min_lr"])
    assert cuts == [1, 2]  # 0.1 -> 0.05 -> 0.03 (clamped), then no further cut
    # 1.05 after 1.0 is no improvement with min_delta=0.1, nor is 0.95
    assert assert_same_sequence([1.0, 1.05, 0.95, 0.85], CONFIGS["large_min_delta"]) == [1, 2]
    assert assert_same_sequence([0.5, 0.6, 0.6, 0.6, 0.6], CONFIGS["max_mode_p3"]) == [4]


def test_state_in_float32_boundary_case() -> None:
    """0.9999 (float32) is not below 1.0 - 1e-4 once rounded to float32, as Keras rounds it."""
    config = _config(factor=0.5, patience=1, min_delta=1e-4)
    assert assert_same_sequence([1.0, float(np.float32(0.9999))], config) == [1]


def test_plateau_callback_drives_the_same_cuts() -> None:
    """PlateauCallback (config taken from the schedule) cuts where Keras's callback does."""
    for config_name in ("tenth_p1_cooldown2_min_lr", "max_mode_cooldown", "large_min_delta"):
        config = CONFIGS[config_name]
        for values in (SEQUENCES["flat"], SEQUENCES["noisy"], SEQUENCES["ties_and_small_moves"]):
            ref_lrs, ref_cuts = keras_reference(values, config)
            schedule = build_schedule("plateau", total_steps=100, learning_rate=ETA, **config)
            model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
            model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
            callback = PlateauCallback(schedule)
            callback.set_model(model)
            callback.on_train_begin()
            for epoch, value in enumerate(values):
                callback.on_epoch_end(epoch, {config["monitor"]: value})
                applied = float(schedule(1000))  # past any warmup: η times the scale
                assert close(applied, ref_lrs[epoch]), (config_name, epoch, applied, ref_lrs)
            assert callback.cuts == ref_cuts


_grid = st.integers(0, 40).map(lambda i: i / 20)
# No subnormals: TensorFlow's CPU kernels flush them to zero in the float32 comparison.
_float32 = st.floats(0.0, 2.0, width=32, allow_subnormal=False)
_values = st.lists(st.one_of(_grid, _float32), min_size=1, max_size=30)
_configs = st.builds(
    _config,
    factor=st.one_of(st.sampled_from([0.1, 0.2, 0.5]), st.floats(0.05, 0.95)),
    patience=st.integers(1, 4),
    min_delta=st.sampled_from([0.0, 1e-4, 0.01, 0.05, 0.1, 0.25]),
    cooldown=st.integers(0, 3),
    min_learning_rate=st.sampled_from([0.0, 1e-3, 0.01, 0.03]),
    mode=st.sampled_from(["min", "max"]),
)


@settings(max_examples=30, deadline=None)
@given(values=_values, config=_configs)
def test_state_equals_keras_on_generated_sequences(
    values: list[float], config: dict[str, Any]
) -> None:
    assert_same_sequence(values, config)


@settings(max_examples=30, deadline=None)
@given(
    steps=st.lists(st.sampled_from([-0.1, -0.05, 0.0, 0.05, 0.1]), min_size=1, max_size=30),
    config=_configs,
)
def test_state_equals_keras_on_generated_walks(steps: list[float], config: dict[str, Any]) -> None:
    """Random walks on a grid: many exact ties and moves of exactly min_delta."""
    values = [1.0]
    for step in steps:
        values.append(values[-1] + step)
    assert_same_sequence(values, config)


# --------------------------------------------------------------------------------------------
# 2. The applied learning rate (measured from the weights) follows the cuts
# --------------------------------------------------------------------------------------------


def mean_prediction(y_true: Any, y_pred: Any) -> Any:
    """d loss / d kernel == mean(x) == 1 with x = 1: SGD moves the kernel by -lr per step."""
    return keras.ops.mean(y_pred)


class FeedMetric(keras.callbacks.Callback):  # type: ignore[misc]
    """Writes a controlled value into the epoch logs (must come before the plateau callback)."""

    def __init__(self, values: list[float], name: str = MONITOR) -> None:
        super().__init__()
        self.values = values
        self.name = name

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        assert logs is not None
        logs[self.name] = self.values[epoch]


class KernelRecorder(keras.callbacks.Callback):  # type: ignore[misc]
    """Records the kernel at train begin, at every epoch end and (optionally) every batch end."""

    def __init__(self, per_step: bool = False) -> None:
        super().__init__()
        self.per_step = per_step
        self.start = math.nan
        self.epoch_ends: list[float] = []
        self.batch_ends: list[float] = []

    def _kernel(self) -> float:
        kernel = self.model.layers[-1].kernel
        return float(keras.ops.convert_to_numpy(kernel).reshape(-1)[0])

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.start = self._kernel()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.per_step:
            self.batch_ends.append(self._kernel())

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_ends.append(self._kernel())

    def epoch_steps(self) -> list[float]:
        """The applied step size summed over each epoch: minus the kernel change."""
        kernels = [self.start, *self.epoch_ends]
        return [a - b for a, b in zip(kernels, kernels[1:], strict=False)]

    def step_lrs(self) -> list[float]:
        kernels = [self.start, *self.batch_ends]
        return [a - b for a, b in zip(kernels, kernels[1:], strict=False)]


def plateau_model(
    *, total_steps: int, warmup_steps: int, factor: float, patience: int, cooldown: int = 0
) -> tuple[Any, Any]:
    schedule = build_schedule(
        "plateau",
        total_steps=total_steps,
        learning_rate=ETA,
        warmup_steps=warmup_steps,
        factor=factor,
        patience=patience,
        cooldown=cooldown,
        monitor=MONITOR,
        mode="min",
    )
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")]
    )
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=mean_prediction)
    return schedule, model


def fit_recording(
    model: Any,
    callbacks: list[Any],
    *,
    values: list[float],
    steps_per_epoch: int,
    per_step: bool = False,
) -> KernelRecorder:
    recorder = KernelRecorder(per_step=per_step)
    x = np.ones((steps_per_epoch, 1), dtype="float32")
    y = np.zeros((steps_per_epoch, 1), dtype="float32")
    model.fit(
        x,
        y,
        batch_size=1,
        epochs=len(values),
        shuffle=False,
        verbose=0,
        callbacks=[FeedMetric(values), *callbacks, recorder],
    )
    return recorder


def measure_applied_lr(
    *,
    values: list[float],
    steps_per_epoch: int,
    warmup_steps: int,
    factor: float,
    patience: int,
    cooldown: int = 0,
    per_step: bool = False,
) -> dict[str, Any]:
    """Trains with the plateau schedule and PlateauCallback; returns the measured step sizes.

    Runs on whatever backend Keras was imported with (the JAX test calls it in a subprocess).
    """
    schedule, model = plateau_model(
        total_steps=steps_per_epoch * len(values),
        warmup_steps=warmup_steps,
        factor=factor,
        patience=patience,
        cooldown=cooldown,
    )
    callback = PlateauCallback(schedule)
    recorder = fit_recording(
        model, [callback], values=values, steps_per_epoch=steps_per_epoch, per_step=per_step
    )
    return {
        "backend": keras.backend.backend(),
        "epoch_steps": recorder.epoch_steps(),
        "step_lrs": recorder.step_lrs(),
        "cuts": callback.cuts,
        "level": callback.state.level,
    }


def expected_step_lrs(
    *, warmup_steps: int, steps_per_epoch: int, epoch_scales: list[float]
) -> list[float]:
    """lr(t) = warmup(t) * (scale of t's epoch), warmup from 0 to η."""
    lrs = []
    for epoch, scale in enumerate(epoch_scales):
        for t in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch):
            base = ETA * t / warmup_steps if t < warmup_steps else ETA
            lrs.append(base * scale)
    return lrs


def per_epoch(lrs: list[float], steps_per_epoch: int) -> list[float]:
    return [sum(lrs[i : i + steps_per_epoch]) for i in range(0, len(lrs), steps_per_epoch)]


# Constant metric, patience 1: cuts at the end of epochs 1, 2, 3, 4; with 4 steps per epoch and
# 10 warmup steps, the first cut lands inside the warmup (steps 8 and 9 of epoch 2).
FLAT_CASE = {
    "values": [1.0] * 5,
    "steps_per_epoch": 4,
    "warmup_steps": 10,
    "factor": 0.5,
    "patience": 1,
}
FLAT_SCALES = [1.0, 1.0, 0.5, 0.25, 0.125]
FLAT_CUTS = [1, 2, 3, 4]

# An improvement in between and cooldown 2 (one idle epoch after each cut): cuts after 2, 4, 6.
MIXED_CASE = {
    "values": [3.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    "steps_per_epoch": 3,
    "warmup_steps": 5,
    "factor": 0.1,
    "patience": 1,
    "cooldown": 2,
}
MIXED_SCALES = [1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01, 0.001]
MIXED_CUTS = [2, 4, 6]


def test_expected_cases_match_keras_decisions() -> None:
    """The hand-written expectations agree with Keras's ReduceLROnPlateau."""
    for case, cuts in ((FLAT_CASE, FLAT_CUTS), (MIXED_CASE, MIXED_CUTS)):
        config = _config(
            factor=case["factor"], patience=case["patience"], cooldown=case.get("cooldown", 0)
        )
        assert assert_same_sequence(case["values"], config) == cuts


@pytest.mark.parametrize(
    ("case", "scales", "cuts"),
    [(FLAT_CASE, FLAT_SCALES, FLAT_CUTS), (MIXED_CASE, MIXED_SCALES, MIXED_CUTS)],
    ids=["flat_cut_inside_warmup", "mixed_with_cooldown"],
)
def test_applied_lr_follows_cuts_tensorflow(
    case: dict[str, Any], scales: list[float], cuts: list[int]
) -> None:
    result = measure_applied_lr(**case, per_step=True)
    assert result["backend"] == "tensorflow"
    assert result["cuts"] == cuts
    expected = expected_step_lrs(
        warmup_steps=case["warmup_steps"],
        steps_per_epoch=case["steps_per_epoch"],
        epoch_scales=scales,
    )
    steps = result["step_lrs"]
    assert len(steps) == len(expected)
    for t, (ours, ref) in enumerate(zip(steps, expected, strict=True)):
        assert abs(ours - ref) <= 1e-6, (t, steps, expected)
    sums = per_epoch(expected, case["steps_per_epoch"])
    for epoch, (ours, ref) in enumerate(zip(result["epoch_steps"], sums, strict=True)):
        assert abs(ours - ref) <= 1e-6, (epoch, result["epoch_steps"], sums)


def test_flat_case_hand_numbers() -> None:
    """The flat case spelled out: warmup 0, .01, ..., .09 over 10 steps, then η = 0.1."""
    expected = expected_step_lrs(warmup_steps=10, steps_per_epoch=4, epoch_scales=FLAT_SCALES)
    sums = per_epoch(expected, 4)
    # epoch 2 = steps 8, 9 (warmup .08, .09) and 10, 11 (.1), all halved by the cut after epoch 1
    np.testing.assert_allclose(sums, [0.06, 0.22, 0.185, 0.1, 0.05], atol=1e-12)


def test_keras_reduce_lr_on_plateau_rejects_a_schedule() -> None:
    """The pitfall PlateauCallback exists for: Keras's callback cannot cut a schedule's lr."""
    _, model = plateau_model(total_steps=20, warmup_steps=5, factor=0.5, patience=1)
    keras_callback = keras.callbacks.ReduceLROnPlateau(
        monitor=MONITOR, factor=0.5, patience=1, mode="min"
    )
    with pytest.raises(TypeError, match="not settable"):
        fit_recording(model, [keras_callback], values=[1.0] * 4, steps_per_epoch=2)


# --------------------------------------------------------------------------------------------
# 3. The same on the JAX backend (Keras picks its backend at import: a subprocess)
# --------------------------------------------------------------------------------------------


def test_applied_lr_follows_cuts_jax() -> None:
    pytest.importorskip("jax")
    tests_dir = Path(__file__).resolve().parent
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(tests_dir)!r})\n"
        "from test_plateau import measure_applied_lr, FLAT_CASE\n"
        "print(json.dumps(measure_applied_lr(**FLAT_CASE)))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tests_dir.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    assert result["cuts"] == FLAT_CUTS
    expected = per_epoch(
        expected_step_lrs(warmup_steps=10, steps_per_epoch=4, epoch_scales=FLAT_SCALES), 4
    )
    for epoch, (ours, ref) in enumerate(zip(result["epoch_steps"], expected, strict=True)):
        assert abs(ours - ref) <= 1e-6, (epoch, result["epoch_steps"], expected)
    # the cut really bites: without it epochs 2-4 would each move the kernel by 4 * η = 0.4
    assert result["epoch_steps"][-1] < 0.06


# --------------------------------------------------------------------------------------------
# 4. PlateauCallback errors
# --------------------------------------------------------------------------------------------


def test_missing_monitor_raises_schedule_error_naming_it() -> None:
    schedule = build_schedule(
        "plateau", total_steps=4, learning_rate=ETA, monitor="val_loss", patience=1
    )
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    x = np.ones((2, 1), dtype="float32")
    with pytest.raises(ScheduleError, match="val_loss") as excinfo:
        model.fit(x, x, batch_size=1, epochs=2, verbose=0, callbacks=[PlateauCallback(schedule)])
    assert "loss" in str(excinfo.value).split("(", 1)[1]  # lists the available metrics


@pytest.mark.parametrize("optimizer_lr", ["other_schedule", "float"])
def test_schedule_not_the_optimizers_raises(optimizer_lr: str) -> None:
    schedule = build_schedule("plateau", total_steps=10, learning_rate=ETA)
    other = build_schedule("plateau", total_steps=10, learning_rate=ETA)
    lr = other if optimizer_lr == "other_schedule" else ETA
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    callback = PlateauCallback(schedule)
    with pytest.raises(ScheduleError, match="not the optimizer's learning rate"):
        callback.set_model(model)
    x = np.ones((2, 1), dtype="float32")
    with pytest.raises(ScheduleError, match="not the optimizer's learning rate"):
        model.fit(x, x, batch_size=1, epochs=1, verbose=0, callbacks=[PlateauCallback(schedule)])
    assert schedule.scale_variable is None


# --------------------------------------------------------------------------------------------
# 5. A second fit reuses the scale variable and keeps the level
# --------------------------------------------------------------------------------------------


def test_second_fit_reuses_scale_variable_and_keeps_level() -> None:
    steps_per_epoch = 2
    schedule, model = plateau_model(total_steps=20, warmup_steps=0, factor=0.5, patience=1)
    callback = PlateauCallback(schedule)

    first = fit_recording(
        model, [callback], values=[1.0] * 3, steps_per_epoch=steps_per_epoch, per_step=True
    )
    n_variables = len(model.optimizer.variables)
    variable = schedule.scale_variable
    assert variable is not None
    assert sum(v is variable for v in model.optimizer.variables) == 1
    assert callback.cuts == [1, 2]
    assert close(callback.state.level, ETA * 0.25)
    np.testing.assert_allclose(first.step_lrs(), [0.1, 0.1, 0.1, 0.1, 0.05, 0.05], atol=1e-6)

    # Second fit: Keras resets best/wait per fit (epoch 0 improves), the level stays at 0.025.
    second = fit_recording(
        model, [callback], values=[1.0] * 3, steps_per_epoch=steps_per_epoch, per_step=True
    )
    assert len(model.optimizer.variables) == n_variables
    assert schedule.scale_variable is variable
    assert callback.cuts == [1, 2, 1, 2]
    assert close(callback.state.level, ETA * 0.25 * 0.25)
    assert close(float(keras.ops.convert_to_numpy(variable)), 0.25 * 0.25)
    np.testing.assert_allclose(
        second.step_lrs(), [0.025, 0.025, 0.025, 0.025, 0.0125, 0.0125], atol=1e-6
    )
