from __future__ import annotations

# Tests of the schedule families against SCHEDULES.md (the project's reference for each family):
# 1. the reference points it quotes;
# 2. equality with the Keras schedule objects (step by step, also beyond the budget);
# 3. equality with PyTorch schedulers: the real ``torch.optim.lr_scheduler`` classes' values stored
#    in tests/reference/ (every run, without torch), and float64 NumPy ports of PyTorch's
#    ``get_lr``, pinned to those values, for every step of long budgets and random parameters;
# 4. closed-form checks of the formula-only families and of every warmup;
# 5. serialization (``get_config``, ``serialize``/``deserialize``, ``.keras`` files);
# 6. validation (every invalid range, types, typos, non-finite values);
# 7. Hypothesis properties over random valid parameters of every family;
# 8. any horizon: every family at ~1e8 steps against exact-step float64 formulas, evaluated
#    directly and as applied by an XLA-compiled train step.
# Tolerance everywhere (SCHEDULES.md): |ours - ref| <= 1e-5 * |ref| + 1e-6 * peak; section 8 is
# tighter (float32 output precision).
import importlib.util
import inspect
import json
import math
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrsearch.exceptions import ScheduleError
from lrsearch.schedules import FAMILIES, build_schedule, get_family, resolve_params

KS = keras.optimizers.schedules
FAMILY_NAMES = list(FAMILIES)
REL_TOL, PEAK_TOL = 1e-5, 1e-6


# --- helpers ----------------------------------------------------------------------------------


def lr_values(schedule: Any, steps: Any) -> np.ndarray:
    """Our schedule evaluated (vectorized) at ``steps``, as float64.

    The steps are padded to a power-of-two length (repeating the last one), so that JAX, which
    compiles each operation for each new shape, reuses its compilations across cases.
    """
    steps = np.asarray(steps, dtype=np.int64)
    if steps.ndim != 1 or steps.size == 0:
        return keras.ops.convert_to_numpy(schedule(steps)).astype(np.float64)
    padded = np.full(1 << (steps.size - 1).bit_length(), steps[-1])
    padded[: steps.size] = steps
    out = keras.ops.convert_to_numpy(schedule(padded)).astype(np.float64)
    return out[: steps.size]


def keras_values(schedule: Any, steps: Any) -> np.ndarray:
    """A Keras schedule evaluated one step at a time (its ``ops.cond`` does not vectorize)."""
    return np.array([float(keras.ops.convert_to_numpy(schedule(int(t)))) for t in steps])


def assert_lr_close(ours: Any, ref: Any, peak: float, steps: Any = None) -> None:
    """Asserts the SCHEDULES.md float32 tolerance, reporting the worst step."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    err = np.abs(ours - ref)
    bound = REL_TOL * np.abs(ref) + PEAK_TOL * peak
    if not np.all(err <= bound):
        i = int(np.argmax(err - bound))
        step = i if steps is None else np.asarray(steps)[i]
        pytest.fail(f"step {step}: ours={ours[i]!r} ref={ref[i]!r} (|diff|={err[i]:.3g})")


def valid_params(family: str, total_steps: int) -> dict[str, Any]:
    """Sensible non-default parameters of ``family`` for a budget of ``total_steps`` (>= 20)."""
    t = total_steps
    return {
        "constant": {"learning_rate": 0.05},
        "schedule_free": {"learning_rate": 0.01, "warmup_steps": t // 10, "beta_1": 0.95},
        "cosine": {
            "learning_rate": 0.1,
            "alpha": 0.1,
            "warmup_steps": t // 10,
            "warmup_start_factor": 0.1,
        },
        "cosine_restarts": {
            "learning_rate": 0.1,
            "first_decay_steps": max(t // 7, 1),
            "t_mul": 2.0,
            "m_mul": 0.8,
            "alpha": 0.05,
        },
        "warmup_decay": {
            "learning_rate": 0.1,
            "warmup_steps": t // 10,
            "decay_rate": 0.9,
            "staircase": True,
            "steps_per_epoch": max(t // 10, 1),
            "warmup_start_factor": 0.2,
        },
        "onecycle": {
            "learning_rate": 0.1,
            "pct_start": 0.25,
            "div_factor": 20.0,
            "final_div_factor": 1e3,
            "anneal": "linear",
            "three_phase": True,
        },
        "plateau": {
            "learning_rate": 0.1,
            "factor": 0.5,
            "patience": 3,
            "min_delta": 0.0,
            "cooldown": 1,
            "min_learning_rate": 1e-4,
            "monitor": "val_accuracy",
            "mode": "max",
            "warmup_steps": t // 10,
        },
        "polynomial": {
            "learning_rate": 0.1,
            "end_learning_rate": 1e-3,
            "power": 2.0,
            "warmup_steps": t // 10,
        },
        "wsd": {
            "learning_rate": 0.1,
            "warmup_steps": t // 10,
            "decay_steps": t // 5,
            "decay_shape": "sqrt",
            "min_lr_ratio": 0.01,
        },
        "cyclic": {
            "learning_rate": 0.1,
            "base_learning_rate": 0.01,
            "step_size_up": max(t // 8, 1),
            "step_size_down": max(t // 6, 1),
            "mode": "exp_range",
            "gamma": 0.999,
        },
    }[family]


def test_valid_params_covers_every_family() -> None:
    """A new family must get test parameters here (and so the generic tests below)."""
    for family in FAMILIES:
        resolve_params(family, total_steps=100, **valid_params(family, 100))


# --- 1. reference points (SCHEDULES.md) -------------------------------------------------------

REFERENCE_POINTS = [
    pytest.param(
        "onecycle",
        {"learning_rate": 0.1},
        {0: 0.004, 29: 0.1, 50: 0.07938934506, 99: 4e-7},
        id="OneCycleLR(0.1,100)",
    ),
    pytest.param(
        "cosine",
        {"learning_rate": 0.1, "decay_steps": 100},
        {25: 0.08535533906, 50: 0.05, 150: 0.0},
        id="CosineDecay(0.1,100)",
    ),
    pytest.param(
        "cosine",
        {"learning_rate": 0.1, "decay_steps": 100, "alpha": 0.1},
        {100: 0.01},
        id="CosineDecay(0.1,100,alpha=0.1)",
    ),
    pytest.param(
        "cosine_restarts",
        {"learning_rate": 0.1, "first_decay_steps": 10},
        {9: 0.002447174185, 10: 0.1, 30: 0.1, 31: 0.09984586669},
        id="CosineDecayRestarts(0.1,10)",
    ),
    pytest.param(
        "cyclic",
        {"learning_rate": 0.1, "base_learning_rate": 0.01, "step_size_up": 10},
        {5: 0.055, 10: 0.1, 20: 0.01},
        id="CyclicLR(0.01,0.1,10)",
    ),
]


@pytest.mark.parametrize(("family", "params", "points"), REFERENCE_POINTS)
def test_reference_points(family: str, params: dict[str, Any], points: dict[int, float]) -> None:
    schedule = build_schedule(family, total_steps=100, **params)
    steps = list(points)
    assert_lr_close(lr_values(schedule, steps), list(points.values()), 0.1, steps)


# --- 2. Keras references ----------------------------------------------------------------------

KERAS_CASES = [
    # (family, total_steps, our params, the Keras schedule that must give the same values)
    pytest.param(
        "cosine", 100, {"learning_rate": 0.1}, lambda: KS.CosineDecay(0.1, 100), id="cosine"
    ),
    pytest.param(
        "cosine",
        100,
        {"learning_rate": 0.1, "alpha": 0.1, "decay_steps": 60},
        lambda: KS.CosineDecay(0.1, 60, alpha=0.1),
        id="cosine-alpha-short",
    ),
    pytest.param(
        "cosine",
        100,
        {"learning_rate": 0.1, "warmup_steps": 20},
        lambda: KS.CosineDecay(0.0, 80, warmup_target=0.1, warmup_steps=20),
        id="cosine-warmup",
    ),
    pytest.param(
        "cosine",
        120,
        {
            "learning_rate": 0.3,
            "alpha": 0.05,
            "decay_steps": 50,
            "warmup_steps": 15,
            "warmup_start_factor": 0.2,
        },
        lambda: KS.CosineDecay(0.3 * 0.2, 50, alpha=0.05, warmup_target=0.3, warmup_steps=15),
        id="cosine-warmup-start-factor",
    ),
    pytest.param(
        "cosine_restarts",
        100,
        {"learning_rate": 0.1, "first_decay_steps": 10, "t_mul": 1.0},
        lambda: KS.CosineDecayRestarts(0.1, 10, t_mul=1.0),
        id="restarts-tmul1",
    ),
    pytest.param(
        "cosine_restarts",
        100,
        {"learning_rate": 0.1, "first_decay_steps": 10},
        lambda: KS.CosineDecayRestarts(0.1, 10),
        id="restarts-tmul2",
    ),
    pytest.param(
        "cosine_restarts",
        100,
        {"learning_rate": 0.2, "first_decay_steps": 7, "t_mul": 2.0, "m_mul": 0.5},
        lambda: KS.CosineDecayRestarts(0.2, 7, t_mul=2.0, m_mul=0.5),
        id="restarts-mmul",
    ),
    pytest.param(
        "cosine_restarts",
        100,
        {"learning_rate": 0.1, "first_decay_steps": 8, "t_mul": 1.5, "m_mul": 0.9, "alpha": 0.1},
        lambda: KS.CosineDecayRestarts(0.1, 8, t_mul=1.5, m_mul=0.9, alpha=0.1),
        id="restarts-alpha",
    ),
    pytest.param(
        "warmup_decay",
        100,
        {"learning_rate": 0.1, "steps_per_epoch": 10, "decay_rate": 0.9},
        lambda: KS.ExponentialDecay(0.1, 10, 0.9),
        id="exponential",
    ),
    pytest.param(
        "warmup_decay",
        100,
        {"learning_rate": 0.1, "steps_per_epoch": 7, "decay_rate": 0.8, "staircase": True},
        lambda: KS.ExponentialDecay(0.1, 7, 0.8, staircase=True),
        id="exponential-staircase",
    ),
    pytest.param(
        "polynomial",
        100,
        {"learning_rate": 0.1},
        lambda: KS.PolynomialDecay(0.1, 100, end_learning_rate=0.0),  # Keras default: 1e-4
        id="polynomial-linear",
    ),
    pytest.param(
        "polynomial",
        100,
        {"learning_rate": 0.1, "end_learning_rate": 1e-3, "power": 2.0, "decay_steps": 80},
        lambda: KS.PolynomialDecay(0.1, 80, end_learning_rate=1e-3, power=2.0),
        id="polynomial-power2",
    ),
    pytest.param(
        "polynomial",
        100,
        {"learning_rate": 0.05, "end_learning_rate": 1e-4, "power": 0.5},
        lambda: KS.PolynomialDecay(0.05, 100, end_learning_rate=1e-4, power=0.5),
        id="polynomial-sqrt",
    ),
]


@pytest.mark.parametrize(("family", "total_steps", "params", "make_ref"), KERAS_CASES)
def test_matches_keras(
    family: str, total_steps: int, params: dict[str, Any], make_ref: Callable[[], Any]
) -> None:
    steps = np.arange(0, total_steps * 3 // 2 + 1)  # the whole budget and half as much beyond
    ours = lr_values(build_schedule(family, total_steps=total_steps, **params), steps)
    assert_lr_close(ours, keras_values(make_ref(), steps), params["learning_rate"], steps)


# --- 3. PyTorch references --------------------------------------------------------------------
# tests/reference/torch_schedulers.json holds what the real ``torch.optim.lr_scheduler`` classes
# give for every case of tests/reference/make_torch_reference.py (run by hand in a venv with
# torch; see its docstring), so every run compares with PyTorch itself and none needs torch.
# The three functions below are literal float64 translations of PyTorch's own algorithms
# (torch/optim/lr_scheduler.py, PyTorch 2.x), with the same variable names, so they can be read
# side by side with the original. Our schedules are never used to compute them. The stored values
# pin them to PyTorch; they carry the comparison to every step of long budgets (the file stores a
# sample) and to Hypothesis's random parameters (section 7).


def torch_onecycle_port(
    total_steps: int,
    max_lr: float,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> np.ndarray:
    """Port of ``OneCycleLR.__init__`` (phases) and ``OneCycleLR.get_lr`` for steps 0..T-1."""
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    if three_phase:
        schedule_phases = [
            {"end_step": float(pct_start * total_steps) - 1, "start": initial_lr, "end": max_lr},
            {
                "end_step": float(2 * pct_start * total_steps) - 2,
                "start": max_lr,
                "end": initial_lr,
            },
            {"end_step": total_steps - 1, "start": initial_lr, "end": min_lr},
        ]
    else:
        schedule_phases = [
            {"end_step": float(pct_start * total_steps) - 1, "start": initial_lr, "end": max_lr},
            {"end_step": total_steps - 1, "start": max_lr, "end": min_lr},
        ]

    def _annealing_cos(start: float, end: float, pct: float) -> float:
        cos_out = math.cos(math.pi * pct) + 1
        return end + (start - end) / 2.0 * cos_out

    def _annealing_linear(start: float, end: float, pct: float) -> float:
        return (end - start) * pct + start

    anneal_func = _annealing_cos if anneal_strategy == "cos" else _annealing_linear
    lrs = []
    for step_num in range(total_steps):  # get_lr with last_epoch = step_num
        start_step = 0.0
        for i, phase in enumerate(schedule_phases):
            end_step = phase["end_step"]
            if step_num <= end_step or i == len(schedule_phases) - 1:
                pct = (step_num - start_step) / (end_step - start_step)
                computed_lr = anneal_func(phase["start"], phase["end"], pct)
                break
            start_step = phase["end_step"]
        lrs.append(computed_lr)
    return np.array(lrs)


def torch_cyclic_port(
    n_steps: int,
    base_lr: float,
    max_lr: float,
    step_size_up: int,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> np.ndarray:
    """Port of ``CyclicLR.__init__`` (sizes, scale functions) and ``CyclicLR.get_lr``."""
    step_size_up = float(step_size_up)
    step_size_down = float(step_size_down) if step_size_down is not None else step_size_up
    total_size = step_size_up + step_size_down
    step_ratio = step_size_up / total_size
    if mode == "triangular":
        scale_fn, scale_mode = (lambda x: 1.0), "cycle"
    elif mode == "triangular2":
        scale_fn, scale_mode = (lambda x: 1 / (2.0 ** (x - 1))), "cycle"
    else:  # exp_range
        scale_fn, scale_mode = (lambda x: gamma**x), "iterations"
    lrs = []
    for last_epoch in range(n_steps):
        cycle = math.floor(1 + last_epoch / total_size)
        x = 1.0 + last_epoch / total_size - cycle
        if x <= step_ratio:
            scale_factor = x / step_ratio
        else:
            scale_factor = (x - 1) / (step_ratio - 1)
        base_height = (max_lr - base_lr) * scale_factor
        if scale_mode == "cycle":
            lr = base_lr + base_height * scale_fn(cycle)
        else:
            lr = base_lr + base_height * scale_fn(last_epoch)
        lrs.append(lr)
    return np.array(lrs)


def torch_warm_restarts_port(
    n_steps: int, base_lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0
) -> np.ndarray:
    """Port of ``CosineAnnealingWarmRestarts.get_lr`` and ``.step()`` (no explicit epoch)."""
    T_i, T_cur = T_0, 0  # the state after the constructor's initial step
    lrs = []
    for _ in range(n_steps):
        lrs.append(eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * T_cur / T_i)) / 2)
        T_cur = T_cur + 1
        if T_cur >= T_i:
            T_cur = T_cur - T_i
            T_i = T_i * T_mult
    return np.array(lrs)


def onecycle_port(total_steps: int, p: dict[str, Any]) -> np.ndarray:
    return torch_onecycle_port(
        total_steps,
        p["learning_rate"],
        pct_start=p.get("pct_start", 0.3),
        anneal_strategy=p.get("anneal", "cos"),
        div_factor=p.get("div_factor", 25.0),
        final_div_factor=p.get("final_div_factor", 1e4),
        three_phase=p.get("three_phase", False),
    )


def cyclic_port(total_steps: int, p: dict[str, Any]) -> np.ndarray:
    return torch_cyclic_port(
        total_steps,
        p["base_learning_rate"],
        p["learning_rate"],
        p["step_size_up"],
        p.get("step_size_down"),
        mode=p.get("mode", "triangular"),
        gamma=p.get("gamma", 1.0),
    )


def restarts_port(total_steps: int, p: dict[str, Any]) -> np.ndarray:
    return torch_warm_restarts_port(
        total_steps,
        p["learning_rate"],
        p["first_decay_steps"],
        int(p["t_mul"]),
        eta_min=p.get("alpha", 0.0) * p["learning_rate"],
    )


PORTS = {"onecycle": onecycle_port, "cyclic": cyclic_port, "cosine_restarts": restarts_port}

TORCH_REFERENCE = Path(__file__).resolve().parent / "reference" / "torch_schedulers.json"
TORCH_GENERATOR = TORCH_REFERENCE.with_name("make_torch_reference.py")
# The families with a PyTorch counterpart. ``constant`` needs no scheduler; ``plateau``'s cuts
# follow Keras's ReduceLROnPlateau (test_plateau.py), whose counting differs from PyTorch's.
TORCH_FAMILIES = {
    "onecycle",  # OneCycleLR
    "cyclic",  # CyclicLR
    "cosine_restarts",  # CosineAnnealingWarmRestarts (m_mul = 1, integer t_mul)
    "cosine",  # [LinearLR warmup, then] CosineAnnealingLR
    "polynomial",  # [LinearLR, then] PolynomialLR (end_learning_rate = 0)
    "warmup_decay",  # [LinearLR, then] ExponentialLR or StepLR (staircase)
    "wsd",  # [LinearLR,] ConstantLR, then LinearLR or CosineAnnealingLR (no sqrt decay)
}


def _load_torch_reference() -> dict[str, Any] | None:
    try:
        return dict(json.loads(TORCH_REFERENCE.read_text()))
    except FileNotFoundError:
        return None


TORCH_REF = _load_torch_reference()


def no_torch_reference(what: str) -> None:
    """Skips for lack of stored PyTorch values, or fails under ``CI`` (as tests/servers.py)."""
    message = (
        f"no stored PyTorch values ({what}): run tests/reference/{TORCH_GENERATOR.name} "
        "with torch installed (see its docstring)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def torch_reference_cases(families: Any = TORCH_FAMILIES) -> list[Any]:
    """One pytest param per stored case of ``families``, or one that skips/fails if none."""
    cases = [] if TORCH_REF is None else TORCH_REF["cases"]
    params = [pytest.param(c, id=c["id"]) for c in cases if c["family"] in families]
    return params or [pytest.param(None, id="missing")]


def stored_case(case: dict[str, Any] | None) -> dict[str, Any]:
    if case is None:
        no_torch_reference(f"{TORCH_REFERENCE.name} missing or without such cases")
    assert case is not None
    return case


def stored_steps(case: dict[str, Any]) -> np.ndarray:
    """The steps whose learning rates ``case`` stores (its ranges, merged)."""
    return np.unique(np.concatenate([np.arange(*r) for r in case["steps"]]))


@pytest.mark.parametrize("case", torch_reference_cases())
def test_matches_pytorch_reference(case: dict[str, Any] | None) -> None:
    """Our schedule gives PyTorch's learning rate at every stored step (float32 accuracy)."""
    case = stored_case(case)
    schedule = build_schedule(case["family"], total_steps=case["total_steps"], **case["params"])
    steps = stored_steps(case)
    eta = case["params"]["learning_rate"]
    assert_lr_close(lr_values(schedule, steps), case["lrs"], eta, steps)


MOMENTUM_FAMILIES = {"onecycle", "cyclic"}


@pytest.mark.parametrize("case", torch_reference_cases(MOMENTUM_FAMILIES))
def test_momentum_matches_pytorch_reference(case: dict[str, Any] | None) -> None:
    """Where PyTorch's scheduler cycles momentum, ours gives its momentum at every stored step;
    where it does not, ours says so and refuses to give one."""
    case = stored_case(case)
    schedule = build_schedule(case["family"], total_steps=case["total_steps"], **case["params"])
    if "momentums" not in case:
        assert not schedule.cycles_momentum
        with pytest.raises(ScheduleError, match="does not cycle momentum"):
            schedule.momentum(0)
        return
    assert schedule.cycles_momentum
    steps = stored_steps(case)
    ours = np.asarray(keras.ops.convert_to_numpy(schedule.momentum(steps)), np.float64)
    np.testing.assert_allclose(ours, case["momentums"], rtol=2e-6, atol=1e-7)


def test_every_momentum_family_has_cycling_and_fixed_cases() -> None:
    if TORCH_REF is None:
        no_torch_reference(f"{TORCH_REFERENCE.name} missing")
    assert TORCH_REF is not None
    for family in MOMENTUM_FAMILIES:
        cases = [c for c in TORCH_REF["cases"] if c["family"] == family]
        assert any("momentums" in c for c in cases) and any("momentums" not in c for c in cases)
        assert len({tuple(c["momentums"]) for c in cases if "momentums" in c}) > 5


@pytest.mark.parametrize("case", torch_reference_cases(PORTS))
def test_pytorch_port_matches_reference(case: dict[str, Any] | None) -> None:
    """Each port gives PyTorch's values to float64 rounding, so tests against it test PyTorch."""
    case = stored_case(case)
    resolved = resolve_params(case["family"], total_steps=case["total_steps"], **case["params"])
    steps = stored_steps(case)
    port = PORTS[case["family"]](case["total_steps"], resolved)
    np.testing.assert_allclose(port[steps], case["lrs"], rtol=1e-12, atol=1e-15)


def test_pytorch_reference_is_generated_from_the_case_table() -> None:
    """The stored file is what make_torch_reference.py writes from its current table (same
    cases, parameters, PyTorch schedulers and steps), with one finite value per stored step, and
    covers every family with a PyTorch counterpart."""
    if TORCH_REF is None:
        no_torch_reference(f"{TORCH_REFERENCE.name} missing")
    assert TORCH_REF is not None
    spec = importlib.util.spec_from_file_location("make_torch_reference", TORCH_GENERATOR)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)  # the standard library only: no torch needed
    assert TORCH_REF["format"] == generator.FORMAT
    assert TORCH_REF["torch_version"]
    table = {c["id"]: c for c in generator.cases()}
    stored = {c["id"]: c for c in TORCH_REF["cases"]}
    regenerate = f"the case table changed: run {TORCH_GENERATOR.name} again"
    assert list(stored) == list(table), regenerate
    for case_id, case in stored.items():
        assert generator.description(case) == table[case_id], f"{case_id}: {regenerate}"
        for key in generator.VALUES:
            if key not in case:
                continue
            values = np.asarray(case[key], np.float64)
            assert values.shape == stored_steps(case).shape, case_id
            assert np.all(np.isfinite(values)) and np.all(values >= 0), case_id
        cycles = resolve_params(
            case["family"], total_steps=case["total_steps"], **case["params"]
        ).get("cycle_momentum", False)
        assert ("momentums" in case) == cycles, f"{case_id}: momentums stored iff they cycle"
    assert {c["family"] for c in stored.values()} == TORCH_FAMILIES


@pytest.mark.parametrize(
    ("total_steps", "params"),
    [
        (100, {"learning_rate": 0.1}),
        (97, {"learning_rate": 0.05, "pct_start": 0.25, "anneal": "linear"}),
        (120, {"learning_rate": 0.2, "three_phase": True, "final_div_factor": 100.0}),
    ],
    ids=["cos", "linear", "3phase"],
)
def test_onecycle_beyond_the_budget_matches_formula(
    total_steps: int, params: dict[str, Any]
) -> None:
    """PyTorch raises past the budget; we stay at the minimum lr."""
    schedule = build_schedule("onecycle", total_steps=total_steps, **params)
    eta = params["learning_rate"]
    beyond = np.arange(total_steps - 1, total_steps * 3 // 2)
    min_lr = eta / params.get("div_factor", 25.0) / params.get("final_div_factor", 1e4)
    assert_lr_close(lr_values(schedule, beyond), np.full(len(beyond), min_lr), eta, beyond)


@pytest.mark.parametrize("first_decay_steps", [7, 97, 107, 1013])
def test_cosine_restarts_cycle_starts_match_pytorch_port(first_decay_steps: int) -> None:
    """Each cycle restarts exactly at a multiple of first_decay_steps, on every backend (XLA
    once gave the previous cycle's last value at step 107: 107 * (1/107) < 1 in float32)."""
    params = {"learning_rate": 1.0, "first_decay_steps": first_decay_steps, "t_mul": 1.0}
    total = 5 * first_decay_steps + 1
    schedule = build_schedule("cosine_restarts", total_steps=total, **params)
    steps = np.arange(total)
    ref = restarts_port(total, schedule.get_config())
    ours = lr_values(schedule, steps)
    assert_lr_close(ours, ref, 1.0, steps)
    starts = np.arange(1, 6) * first_decay_steps
    np.testing.assert_allclose(ours[starts], 1.0, rtol=1e-6)


# A realistic budget (100 epochs x 1000 steps), where float32 loses digits as t grows: a short
# phase late in the budget (pct_start near 1), many cycles, gamma**t for t ~ 1e5.
LONG_BUDGET_CASES = [
    pytest.param("onecycle", {"learning_rate": 0.1}, onecycle_port, id="onecycle"),
    pytest.param(
        "onecycle",
        {"learning_rate": 0.1, "pct_start": 0.99937, "anneal": "linear"},
        onecycle_port,
        id="onecycle-short-last-phase",
    ),
    pytest.param(
        "onecycle",
        {"learning_rate": 0.1, "pct_start": 0.49937, "three_phase": True},
        onecycle_port,
        id="onecycle-3phase",
    ),
    pytest.param(
        "cyclic",
        {"learning_rate": 0.1, "base_learning_rate": 0.01, "step_size_up": 3, "step_size_down": 4},
        cyclic_port,
        id="cyclic-many-cycles",
    ),
    pytest.param(
        "cyclic",
        {
            "learning_rate": 0.1,
            "base_learning_rate": 0.01,
            "step_size_up": 1500,
            "step_size_down": 2500,
            "mode": "exp_range",
            "gamma": 0.99999,
        },
        cyclic_port,
        id="cyclic-exp_range",
    ),
    # With t_mul=1, Keras's float32 fraction t/T0 - floor(t/T0) drifts from PyTorch's exact
    # integer counter by ~2x the tolerance here; ours keeps the step an integer (section 8).
    pytest.param(
        "cosine_restarts",
        {"learning_rate": 0.1, "first_decay_steps": 333, "t_mul": 1.0},
        restarts_port,
        id="restarts-tmul1",
    ),
    pytest.param(
        "cosine_restarts",
        {"learning_rate": 0.1, "first_decay_steps": 333, "t_mul": 3.0},
        restarts_port,
        id="restarts-tmul3",
    ),
]


@pytest.mark.parametrize(("family", "params", "port"), LONG_BUDGET_CASES)
def test_matches_pytorch_port_over_a_long_budget(
    family: str, params: dict[str, Any], port: Callable[..., np.ndarray]
) -> None:
    total_steps = 100_000
    schedule = build_schedule(family, total_steps=total_steps, **params)
    steps = np.arange(total_steps)
    ref = port(total_steps, params)
    assert_lr_close(lr_values(schedule, steps), ref, params["learning_rate"], steps)


# --- 4. closed forms (SCHEDULES.md formulas, NumPy float64) -----------------------------------


def warmup_formula(t: np.ndarray, p: dict[str, Any], after: np.ndarray) -> np.ndarray:
    """Linear from ``warmup_start_factor * η`` at t=0 to η at t=W, then ``after``."""
    w, eta = p.get("warmup_steps", 0), p["learning_rate"]
    if w == 0:
        return after
    eta0 = p.get("warmup_start_factor", 0.0) * eta
    return np.where(t < w, eta0 + (eta - eta0) * t / w, after)


def formula(family: str, total_steps: int, p: dict[str, Any], t: np.ndarray) -> np.ndarray:
    """lr(t) of the formula column of SCHEDULES.md for ``p`` = resolved parameters."""
    t = np.asarray(t, np.float64)
    eta, w = p["learning_rate"], p.get("warmup_steps", 0)
    if family == "constant":
        return np.full(t.shape, eta)
    if family == "plateau":  # without the callback: warmup, then η
        after = np.full(t.shape, eta)
    elif family == "cosine":
        d, alpha = p["decay_steps"], p["alpha"]
        u = np.clip(t - w, 0, d)
        after = eta * ((1 - alpha) * (1 + np.cos(np.pi * u / d)) / 2 + alpha)
    elif family == "warmup_decay":
        e = np.maximum(t - w, 0) / p["steps_per_epoch"]
        after = eta * p["decay_rate"] ** (np.floor(e) if p["staircase"] else e)
    elif family == "polynomial":
        d, end = p["decay_steps"], p["end_learning_rate"]
        u = np.clip(t - w, 0, d)
        after = (eta - end) * (1 - u / d) ** p["power"] + end
    elif family == "wsd":
        d, rho = p["decay_steps"], p["min_lr_ratio"]
        x = np.clip((t - (total_steps - d)) / d, 0, 1)
        shape = {
            "linear": lambda x: 1 - x,
            "cosine": lambda x: (1 + np.cos(np.pi * x)) / 2,
            "sqrt": lambda x: 1 - np.sqrt(x),
        }[p["decay_shape"]]
        after = eta * (shape(x) * (1 - rho) + rho)
    else:
        raise AssertionError(f"no closed form for {family}")
    return warmup_formula(t, p, after)


def check_formula(family: str, total_steps: int, params: dict[str, Any]) -> None:
    schedule = build_schedule(family, total_steps=total_steps, **params)
    resolved = resolve_params(family, total_steps=total_steps, **params)
    steps = np.arange(total_steps + 11)
    ref = formula(family, total_steps, resolved, steps)
    assert_lr_close(lr_values(schedule, steps), ref, params["learning_rate"], steps)


@pytest.mark.parametrize("shape", ["linear", "cosine", "sqrt"])
@pytest.mark.parametrize(
    ("warmup_steps", "decay_steps"), [(0, 20), (10, 25), (15, 85)], ids=["no-warmup", "W", "W+D=T"]
)
def test_wsd_matches_formula(shape: str, warmup_steps: int, decay_steps: int) -> None:
    params = {
        "learning_rate": 0.2,
        "warmup_steps": warmup_steps,
        "decay_steps": decay_steps,
        "decay_shape": shape,
        "min_lr_ratio": 0.05,
        "warmup_start_factor": 0.1,
    }
    check_formula("wsd", 100, params)
    lr = lr_values(build_schedule("wsd", total_steps=100, **params), [100, 105])
    assert_lr_close(lr, [0.2 * 0.05] * 2, 0.2)  # rho * η from T on


WARMUP_FAMILIES = ["cosine", "warmup_decay", "polynomial", "plateau", "wsd"]
FAMILY_EXTRAS = {"warmup_decay": {"steps_per_epoch": 9, "decay_rate": 0.7}}


@pytest.mark.parametrize("start_factor", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("family", WARMUP_FAMILIES)
def test_warmup_matches_formula(family: str, start_factor: float) -> None:
    params = {
        "learning_rate": 0.1,
        "warmup_steps": 17,
        "warmup_start_factor": start_factor,
        **FAMILY_EXTRAS.get(family, {}),
    }
    check_formula(family, 100, params)  # warmup and the decay after it
    lr = lr_values(build_schedule(family, total_steps=100, **params), [0, 17])
    assert_lr_close(lr, [start_factor * 0.1, 0.1], 0.1)  # η0 at t=0, η at t=W


@pytest.mark.parametrize(
    ("family", "params"),
    [
        ("constant", {"learning_rate": 0.3}),
        ("warmup_decay", {"warmup_steps": 10, "steps_per_epoch": 7, "staircase": True}),
        ("polynomial", {"warmup_steps": 10, "power": 3.0, "end_learning_rate": 0.001}),
        ("polynomial", {"warmup_steps": 10, "decay_steps": 40, "power": 0.5}),
        ("cosine", {"warmup_steps": 30, "decay_steps": 40, "alpha": 0.2}),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()),
)
def test_other_families_match_formula(family: str, params: dict[str, Any]) -> None:
    check_formula(family, 100, {"learning_rate": 0.01, **params})


# --- 5. serialization -------------------------------------------------------------------------


def build_valid(family: str, total_steps: int = 100) -> Any:
    return build_schedule(family, total_steps=total_steps, **valid_params(family, total_steps))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_get_config_is_exactly_the_resolved_params(family: str) -> None:
    schedule = build_valid(family)
    config = schedule.get_config()
    resolved = resolve_params(family, total_steps=100, **valid_params(family, 100))
    assert config == resolved
    assert list(config) == list(inspect.signature(type(schedule)).parameters)
    assert all(type(v) in (int, float, bool, str) for v in config.values())
    assert type(schedule).__name__ == FAMILIES[family].class_name
    rebuilt = type(schedule)(**config)
    steps = np.arange(120)
    np.testing.assert_array_equal(lr_values(rebuilt, steps), lr_values(schedule, steps))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_serialize_deserialize_round_trip(family: str) -> None:
    schedule = build_valid(family)
    restored = KS.deserialize(KS.serialize(schedule))
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    steps = np.arange(120)
    np.testing.assert_array_equal(lr_values(restored, steps), lr_values(schedule, steps))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_keras_file_round_trip(family: str, tmp_path: Any) -> None:
    schedule = build_valid(family)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 4), np.float32), rng.random((32, 2), np.float32)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    # ``_learning_rate`` holds the schedule object; ``.learning_rate`` would evaluate it.
    restored = loaded.optimizer._learning_rate
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()


# --- 6. validation ----------------------------------------------------------------------------

T = 100  # the budget of every validation case
INVALID = [
    # (family, params, the argument the message must name); each at the edge of its range
    ("constant", {"learning_rate": 0.0}, "learning_rate"),
    ("constant", {"learning_rate": -0.1}, "learning_rate"),
    ("cosine", {"decay_steps": 0}, "decay_steps"),
    ("cosine", {"alpha": -0.01}, "alpha"),
    ("cosine", {"alpha": 1.01}, "alpha"),
    ("cosine", {"warmup_steps": -1}, "warmup_steps"),
    ("cosine", {"warmup_steps": T}, "warmup_steps"),
    ("cosine", {"warmup_start_factor": 1.1}, "warmup_start_factor"),
    ("cosine_restarts", {"first_decay_steps": 0}, "first_decay_steps"),
    ("cosine_restarts", {"t_mul": 0.99}, "t_mul"),
    ("cosine_restarts", {"m_mul": 0.0}, "m_mul"),
    ("cosine_restarts", {"m_mul": 1.01}, "m_mul"),
    ("cosine_restarts", {"alpha": -0.01}, "alpha"),
    ("cosine_restarts", {"alpha": 1.01}, "alpha"),
    ("warmup_decay", {"steps_per_epoch": 10, "decay_rate": 0.0}, "decay_rate"),
    ("warmup_decay", {"steps_per_epoch": 10, "decay_rate": 1.0}, "decay_rate"),
    ("warmup_decay", {"steps_per_epoch": 0}, "steps_per_epoch"),
    ("warmup_decay", {"steps_per_epoch": 10, "warmup_steps": -1}, "warmup_steps"),
    ("warmup_decay", {"steps_per_epoch": 10, "warmup_steps": T}, "warmup_steps"),
    ("onecycle", {"pct_start": 0.0}, "pct_start"),
    ("onecycle", {"pct_start": 1.0}, "pct_start"),
    ("onecycle", {"pct_start": 1.5}, "pct_start"),
    ("onecycle", {"pct_start": 1 / T}, "pct_start"),  # pct_start * T == 1
    ("onecycle", {"pct_start": (T + 1) / (2 * T), "three_phase": True}, "pct_start"),
    ("onecycle", {"div_factor": 0.0}, "div_factor"),
    ("onecycle", {"final_div_factor": 0.0}, "final_div_factor"),
    ("plateau", {"factor": 0.0}, "factor"),
    ("plateau", {"factor": 1.0}, "factor"),
    ("plateau", {"patience": 0}, "patience"),
    ("plateau", {"learning_rate": 0.1, "min_learning_rate": 0.1}, "min_learning_rate"),
    ("plateau", {"warmup_steps": T}, "warmup_steps"),
    ("polynomial", {"decay_steps": 0}, "decay_steps"),
    ("polynomial", {"power": 0.0}, "power"),
    ("polynomial", {"learning_rate": 0.1, "end_learning_rate": 0.10001}, "end_learning_rate"),
    ("polynomial", {"warmup_steps": T}, "warmup_steps"),
    ("wsd", {"decay_steps": 0}, "decay_steps"),
    ("wsd", {"warmup_steps": 30, "decay_steps": 71}, "decay_steps"),  # W + D > T
    ("wsd", {"min_lr_ratio": -0.01}, "min_lr_ratio"),
    ("wsd", {"min_lr_ratio": 1.01}, "min_lr_ratio"),
    ("wsd", {"warmup_steps": T, "decay_steps": 1}, "warmup_steps"),
    ("cyclic", {"learning_rate": 0.1, "base_learning_rate": 0.1}, "base_learning_rate"),
    ("cyclic", {"step_size_up": 0}, "step_size_up"),
    ("cyclic", {"step_size_up": 5, "step_size_down": 0}, "step_size_down"),
]


def _case_id(family: str, params: dict[str, Any]) -> str:
    return family + "-" + ",".join(f"{k}={v:g}" for k, v in params.items())


def assert_schedule_error(excinfo: pytest.ExceptionInfo[ScheduleError], argument: str) -> None:
    message = str(excinfo.value)
    assert f"`{argument}`" in message
    assert "Received" in message


@pytest.mark.parametrize(
    ("family", "params", "argument"), [pytest.param(*c, id=_case_id(*c[:2])) for c in INVALID]
)
def test_invalid_value_raises(family: str, params: dict[str, Any], argument: str) -> None:
    with pytest.raises(ScheduleError) as excinfo:
        build_schedule(family, total_steps=T, **params)
    assert_schedule_error(excinfo, argument)


VALID_EDGES = [
    # the other side of the edges above: these must build and give finite values
    ("cosine", {"alpha": 0.0, "warmup_steps": T - 1}),
    ("cosine", {"alpha": 1.0, "warmup_start_factor": 1.0}),
    ("cosine_restarts", {"t_mul": 1.0, "m_mul": 1.0, "alpha": 1.0}),
    ("warmup_decay", {"steps_per_epoch": 1, "decay_rate": 0.999, "warmup_steps": T - 1}),
    ("onecycle", {"pct_start": 1.01 / T}),
    ("onecycle", {"pct_start": 0.99}),
    ("onecycle", {"pct_start": (T + 0.5) / (2 * T), "three_phase": True}),
    ("plateau", {"learning_rate": 0.1, "min_learning_rate": 0.0999, "patience": 1}),
    ("polynomial", {"learning_rate": 0.1, "end_learning_rate": 0.1, "decay_steps": 1}),
    ("wsd", {"warmup_steps": 30, "decay_steps": 70, "min_lr_ratio": 1.0}),
    ("wsd", {"decay_steps": T, "min_lr_ratio": 0.0}),
    ("cyclic", {"base_learning_rate": 0.0, "step_size_up": 1, "step_size_down": 1}),
]


@pytest.mark.parametrize(
    ("family", "params"), [pytest.param(*c, id=_case_id(*c)) for c in VALID_EDGES]
)
def test_valid_edges_build(family: str, params: dict[str, Any]) -> None:
    params = {**FAMILY_EXTRAS.get(family, {}), **params}
    lr = lr_values(build_schedule(family, total_steps=T, **params), np.arange(T + 10))
    assert np.all(np.isfinite(lr)) and np.all(lr >= 0)


def test_unknown_family_suggests_a_name() -> None:
    with pytest.raises(ScheduleError, match="Did you mean 'cosine'"):
        build_schedule("cosin", total_steps=T)
    with pytest.raises(ScheduleError, match="Did you mean 'onecycle'"):
        get_family("one_cycle")


def test_unknown_argument_suggests_a_name() -> None:
    with pytest.raises(ScheduleError, match="Did you mean `pct_start`") as excinfo:
        build_schedule("onecycle", total_steps=T, pct_strat=0.3)
    assert "`pct_strat`" in str(excinfo.value)


def test_missing_required_argument_is_named() -> None:
    with pytest.raises(ScheduleError, match="`steps_per_epoch`"):
        build_schedule("warmup_decay", total_steps=T)


BAD_VALUES = [
    # wrong types
    ("cosine", "learning_rate", "fast"),
    ("cosine", "learning_rate", None),
    ("cosine", "learning_rate", True),  # a bool is not a number
    ("cosine", "warmup_steps", 1.5),
    ("cosine", "warmup_steps", True),
    ("warmup_decay", "staircase", 1),
    ("onecycle", "three_phase", "yes"),
    ("onecycle", "anneal", "cosine"),
    ("onecycle", "anneal", 1),
    ("plateau", "monitor", 3),
    # non-finite values
    ("cosine", "learning_rate", math.nan),
    ("cosine", "learning_rate", math.inf),
    ("cosine", "alpha", math.nan),
    ("cosine", "decay_steps", math.inf),
    ("cyclic", "gamma", -math.inf),
]


@pytest.mark.parametrize(
    ("family", "argument", "value"),
    [pytest.param(*c, id=f"{c[0]}-{c[1]}={c[2]!r}") for c in BAD_VALUES],
)
def test_bad_value_raises(family: str, argument: str, value: Any) -> None:
    params = {**FAMILY_EXTRAS.get(family, {}), argument: value}
    with pytest.raises(ScheduleError) as excinfo:
        build_schedule(family, total_steps=T, **params)
    assert_schedule_error(excinfo, argument)


@pytest.mark.parametrize("total_steps", [0, -5, 2.5, math.inf, "many", None])
def test_bad_total_steps_raises(total_steps: Any) -> None:
    with pytest.raises(ScheduleError) as excinfo:
        build_schedule("constant", total_steps=total_steps)
    assert_schedule_error(excinfo, "total_steps")


def test_numpy_scalars_become_python_values() -> None:
    """Keras rejects np.float32 learning rates: configs must hold plain Python numbers."""
    schedule = build_schedule(
        "cosine",
        total_steps=np.int64(100),
        learning_rate=np.float32(0.5),
        warmup_steps=np.int64(10),
        alpha=np.float64(0.1),
    )
    config = schedule.get_config()
    assert type(config["learning_rate"]) is float and type(config["alpha"]) is float
    assert type(config["warmup_steps"]) is int and config["decay_steps"] == 90


DIRECT_CASES = [
    # (class, family, every constructor argument, the invalid argument)
    (
        "OneCycleSchedule",
        "onecycle",
        {"learning_rate": 0.1, "pct_start": 1.5, "total_steps": T},
        "pct_start",
    ),
    (
        "OneCycleSchedule",
        "onecycle",
        {"learning_rate": 0.1, "pct_start": 1 / T, "total_steps": T},
        "pct_start",
    ),
    ("CosineSchedule", "cosine", {"learning_rate": 0.1, "decay_steps": 0}, "decay_steps"),
    (
        "CosineRestartsSchedule",
        "cosine_restarts",
        {"learning_rate": 0.1, "first_decay_steps": 5, "t_mul": 0.5},
        "t_mul",
    ),
    (
        "WarmupDecaySchedule",
        "warmup_decay",
        {"learning_rate": 0.1, "steps_per_epoch": 10, "decay_rate": 1.5},
        "decay_rate",
    ),
    (
        "WSDSchedule",
        "wsd",
        {"learning_rate": 0.1, "warmup_steps": 30, "decay_steps": 80, "total_steps": T},
        "decay_steps",
    ),
    (
        "CyclicSchedule",
        "cyclic",
        {
            "learning_rate": 0.1,
            "base_learning_rate": 0.2,
            "step_size_up": 5,
            "step_size_down": 5,
        },
        "base_learning_rate",
    ),
    ("PlateauSchedule", "plateau", {"learning_rate": 0.1, "patience": 0}, "patience"),
    ("ConstantSchedule", "constant", {"learning_rate": "fast"}, "learning_rate"),
]


@pytest.mark.parametrize(
    ("class_name", "family", "kwargs", "argument"), DIRECT_CASES, ids=[c[0] for c in DIRECT_CASES]
)
def test_direct_construction_validates(
    class_name: str, family: str, kwargs: dict[str, Any], argument: str
) -> None:
    """The classes validate through the registry too, with the same message as the builder."""
    import lrsearch.schedules as schedules

    with pytest.raises(ScheduleError) as from_class:
        getattr(schedules, class_name)(**kwargs)
    assert_schedule_error(from_class, argument)
    builder_kwargs = {k: v for k, v in kwargs.items() if k != "total_steps"}
    with pytest.raises(ScheduleError) as from_builder:
        build_schedule(family, total_steps=T, **builder_kwargs)
    assert str(from_class.value) == str(from_builder.value)


def test_onecycle_class_message() -> None:
    from lrsearch.schedules import OneCycleSchedule

    with pytest.raises(ScheduleError, match=r"`pct_start` must be in \(0, 1\)\. Received"):
        OneCycleSchedule(learning_rate=0.1, pct_start=1.5, total_steps=100)


# --- 7. properties (Hypothesis) ---------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None)
lrs_st = st.floats(1e-5, 1.0)
ratio_st = st.floats(0.0, 1.0)


@st.composite
def budget_and_params(draw: st.DrawFn, family: str) -> tuple[int, dict[str, Any]]:
    """A budget T in [20, 400] and valid (sensible) parameters of ``family`` for it."""
    t = draw(st.integers(20, 400))
    eta = draw(lrs_st)
    w = draw(st.integers(0, t - 1))
    warmup = {"warmup_steps": w, "warmup_start_factor": draw(ratio_st)}
    if family == "constant":
        params: dict[str, Any] = {}
    elif family == "cosine":
        params = {**warmup, "alpha": draw(ratio_st), "decay_steps": draw(st.integers(1, 2 * t))}
    elif family == "cosine_restarts":
        params = {
            "first_decay_steps": draw(st.integers(1, t)),
            "t_mul": draw(st.one_of(st.just(1.0), st.floats(1.0, 4.0))),
            "m_mul": draw(st.floats(0.0, 1.0, exclude_min=True)),
            "alpha": draw(ratio_st),
        }
    elif family == "warmup_decay":
        params = {
            **warmup,
            "decay_rate": draw(st.floats(1e-3, 1.0, exclude_max=True)),
            "staircase": draw(st.booleans()),
            "steps_per_epoch": draw(st.integers(1, t)),
        }
    elif family == "onecycle":
        three_phase = draw(st.booleans())
        params = {
            "pct_start": draw(st.floats(1.01 / t, 0.49 if three_phase else 0.99)),
            "div_factor": draw(st.floats(1.0, 1e3)),
            "final_div_factor": draw(st.floats(1.0, 1e5)),
            "anneal": draw(st.sampled_from(["cos", "linear"])),
            "three_phase": three_phase,
        }
    elif family == "plateau":
        params = {
            **warmup,
            "factor": draw(st.floats(0.01, 0.99)),
            "patience": draw(st.integers(1, 20)),
            "min_delta": draw(st.floats(0.0, 0.1)),
            "cooldown": draw(st.integers(0, 5)),
            "min_learning_rate": draw(st.floats(0.0, 0.99)) * eta,
            "monitor": draw(st.sampled_from(["val_loss", "val_accuracy", "loss"])),
            "mode": draw(st.sampled_from(["auto", "min", "max"])),
        }
    elif family == "polynomial":
        params = {
            **warmup,
            "end_learning_rate": draw(ratio_st) * eta,
            "power": draw(st.floats(0.1, 5.0)),
            "decay_steps": draw(st.integers(1, 2 * t)),
        }
    elif family == "wsd":
        params = {
            **warmup,
            "decay_steps": draw(st.integers(1, t - w)),
            "decay_shape": draw(st.sampled_from(["linear", "cosine", "sqrt"])),
            "min_lr_ratio": draw(ratio_st),
        }
    elif family == "cyclic":
        up = draw(st.integers(1, t))
        params = {
            "base_learning_rate": draw(st.floats(0.0, 0.99)) * eta,
            "step_size_up": up,
            "step_size_down": draw(st.integers(1, t)),
            "mode": draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
            "gamma": draw(st.floats(0.9, 1.0)),
        }
    elif family == "schedule_free":
        params = {"warmup_steps": w, "beta_1": draw(st.floats(0.5, 0.99))}
    else:
        raise AssertionError(f"add a strategy for the new family {family!r}")
    return t, {"learning_rate": eta, **params}


def draw_case(data: st.DataObject, family: str) -> tuple[int, dict[str, Any], Any, np.ndarray]:
    """Draws a budget and params; returns T, the resolved params, the schedule, lr(0..T+10)."""
    t, params = data.draw(budget_and_params(family), label="budget_and_params")
    schedule = build_schedule(family, total_steps=t, **params)
    return t, schedule.get_config(), schedule, lr_values(schedule, np.arange(t + 11))


def slack(eta: float) -> float:
    """float32 noise allowed in order checks (one float32 ulp of η is ~1.2e-7 η)."""
    return PEAK_TOL * eta


@pytest.mark.parametrize("family", FAMILY_NAMES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_values_are_finite_and_within_peak(family: str, data: st.DataObject) -> None:
    _, p, _, lr = draw_case(data, family)
    assert np.all(np.isfinite(lr))
    assert np.all(lr >= 0)
    assert np.all(lr <= p["learning_rate"] + slack(p["learning_rate"]))


@pytest.mark.parametrize(
    "family", [f for f in FAMILY_NAMES if "warmup_steps" in FAMILIES[f].param_names]
)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_warmup_never_decreases(family: str, data: st.DataObject) -> None:
    _, p, _, lr = draw_case(data, family)
    eta, w = p["learning_rate"], p["warmup_steps"]
    assert np.all(np.diff(lr[: w + 1]) >= -slack(eta))
    assert_lr_close(lr[w], eta, eta)  # the warmup ends at the peak


def decay_start(family: str, t: int, p: dict[str, Any]) -> int:
    """The first step from which ``family`` promises never to increase again."""
    if family == "onecycle":  # after the peak at pct_start * T - 1
        return max(math.ceil(p["pct_start"] * t - 1), 0)
    if family == "wsd":
        return t - p["decay_steps"]
    return p["warmup_steps"]


DECAYING = ["cosine", "warmup_decay", "polynomial", "onecycle", "wsd", "plateau"]


@pytest.mark.parametrize("family", DECAYING)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_decay_never_increases(family: str, data: st.DataObject) -> None:
    t, p, _, lr = draw_case(data, family)
    eta, start = p["learning_rate"], decay_start(family, t, p)
    assert np.all(np.diff(lr[start:]) <= slack(eta))
    if family == "plateau":  # without the callback: constant η after the warmup
        assert_lr_close(lr[start:], np.full(len(lr) - start, eta), eta)
    if family == "wsd":  # stable phase at η
        stable = lr[p["warmup_steps"] : start + 1]
        assert_lr_close(stable, np.full(len(stable), eta), eta)


def end_of_budget(family: str, t: int, p: dict[str, Any]) -> tuple[int, float]:
    """(step, value): where the family reaches its final value, and that value."""
    eta = p["learning_rate"]
    if family == "cosine":
        return p["warmup_steps"] + p["decay_steps"], p["alpha"] * eta
    if family == "polynomial":
        return p["warmup_steps"] + p["decay_steps"], p["end_learning_rate"]
    if family == "onecycle":
        return t - 1, eta / p["div_factor"] / p["final_div_factor"]
    if family == "wsd":
        return t, p["min_lr_ratio"] * eta
    if family == "constant":
        return 0, eta
    raise AssertionError(family)


@pytest.mark.parametrize("family", ["cosine", "polynomial", "onecycle", "wsd", "constant"])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_final_value_is_held(family: str, data: st.DataObject) -> None:
    t, p, schedule, _ = draw_case(data, family)
    step, value = end_of_budget(family, t, p)
    steps = np.arange(step, step + 11)  # the value and what follows it
    eta = p["learning_rate"]
    assert_lr_close(lr_values(schedule, steps), np.full(len(steps), value), eta, steps)


@pytest.mark.parametrize("family", list(PORTS))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_matches_pytorch_port_for_random_params(family: str, data: st.DataObject) -> None:
    t, params = data.draw(budget_and_params(family), label="budget_and_params")
    if family == "cosine_restarts":  # PyTorch has no m_mul and takes an integer T_mult
        params = {**params, "m_mul": 1.0, "t_mul": float(round(params["t_mul"]))}
    schedule = build_schedule(family, total_steps=t, **params)
    steps = np.arange(t)
    ref = PORTS[family](t, schedule.get_config())
    assert_lr_close(lr_values(schedule, steps), ref, params["learning_rate"], steps)


# --- 8. any horizon: exact at 1e8 steps -------------------------------------------------------
# A float32 step is exact only up to 2**24 (~16.7 M): at 1e8 it is off by up to 4 steps, which
# moves a restart, a cycle, an epoch boundary or a short last phase. Each family runs here with a
# budget of ~1e8 steps and parameters scaled so its interesting points (warmup end, decay start,
# cycle and epoch boundaries, the last steps) lie beyond 2**24 at odd steps a float32 cannot
# hold, and is compared there with a float64 reference of the SCHEDULES.md formula that keeps
# the step an exact integer (Python ints and Fractions). The tolerance is float32's output
# precision: 1e-6 of the value, plus 2.5e-7 of the peak for values near zero, where float32
# carries no relative digits (the same tails as at small step counts).

HORIZON = 100_000_037  # the budget T of every case: odd, beyond 2**24
HORIZON_REL_TOL, HORIZON_PEAK_TOL = 1e-6, 2.5e-7
_W = 30_000_001  # a warmup ending beyond 2**24, at a step float32 cannot hold


def _restart_cycle(t: int, p: dict[str, Any]) -> tuple[int, Any]:
    """(i, f'): the cycle of step ``t`` and the position in it, exactly (SGDR's formula)."""
    first, t_mul = p["first_decay_steps"], Fraction(p["t_mul"])
    if t_mul == 1:
        return t // first, Fraction(t % first, first)
    i, start, length = 0, Fraction(0), Fraction(first)
    while start + length <= t:  # cycle i covers [start, start + length) in steps
        i, start, length = i + 1, start + length, length * t_mul
    return i, (t - start) / length


def horizon_formula(family: str, total_steps: int, p: dict[str, Any], t: int) -> float:
    """lr(t) of SCHEDULES.md for resolved params ``p``, float64 with an exact integer step."""
    eta, w = p["learning_rate"], p.get("warmup_steps", 0)
    if family == "schedule_free":  # Keras's ScheduleFreeAdamW warmup: (t + 1) / W
        return float(eta * min(Fraction(t + 1, w), Fraction(1))) if w else eta
    if t < w:
        eta0 = p["warmup_start_factor"] * eta
        return float(eta0 + (eta - eta0) * Fraction(t, w))
    if family in ("constant", "plateau"):
        return eta
    if family == "cosine":
        d, alpha = p["decay_steps"], p["alpha"]
        x = Fraction(min(t - w, d), d)
        return eta * ((1 - alpha) * (1 + math.cos(math.pi * x)) / 2 + alpha)
    if family == "cosine_restarts":
        i, x = _restart_cycle(t, p)
        alpha = p["alpha"]
        cosine = p["m_mul"] ** i * (1 + math.cos(math.pi * x)) / 2
        return eta * ((1 - alpha) * cosine + alpha)
    if family == "warmup_decay":
        s = p["steps_per_epoch"]
        e = Fraction((t - w) // s) if p["staircase"] else Fraction(t - w, s)
        return eta * math.exp(float(e) * math.log(p["decay_rate"]))
    if family == "onecycle":
        return onecycle_formula(total_steps, p, t)
    if family == "polynomial":
        d, end = p["decay_steps"], p["end_learning_rate"]
        remaining = Fraction(d - min(t - w, d), d)
        return (eta - end) * float(remaining) ** p["power"] + end
    if family == "wsd":
        d, rho = p["decay_steps"], p["min_lr_ratio"]
        x = min(max(Fraction(t - (total_steps - d), d), Fraction(0)), Fraction(1))
        left = {
            "linear": lambda: float(1 - x),
            "cosine": lambda: (1 + math.cos(math.pi * x)) / 2,
            "sqrt": lambda: float(1 - x) / (1 + math.sqrt(x)),  # 1 - sqrt(x), no cancellation
        }[p["decay_shape"]]()
        return eta * (left * (1 - rho) + rho)
    if family == "cyclic":
        up, down = p["step_size_up"], p["step_size_down"]
        cycle, position = t // (up + down) + 1, t % (up + down)
        scale = Fraction(position, up) if position <= up else Fraction(up + down - position, down)
        gain = {
            "triangular": 1.0,
            "triangular2": 2.0 ** -(cycle - 1),
            "exp_range": math.exp(t * math.log(p["gamma"])),
        }[p["mode"]]
        base = p["base_learning_rate"]
        return base + (eta - base) * float(scale) * gain
    raise AssertionError(f"add the horizon formula of the new family {family!r}")


def onecycle_formula(total_steps: int, p: dict[str, Any], t: int) -> float:
    """OneCycleLR's phases (ends ``pct * T - 1`` ..., as PyTorch builds them), exact in t."""
    eta, pct, total = p["learning_rate"], p["pct_start"], total_steps
    initial = eta / p["div_factor"]
    minimum = initial / p["final_div_factor"]
    if p["three_phase"]:
        phases = [
            (float(pct * total) - 1, initial, eta),
            (float(2 * pct * total) - 2, eta, initial),
            (total - 1.0, initial, minimum),
        ]
    else:
        phases = [(float(pct * total) - 1, initial, eta), (total - 1.0, eta, minimum)]
    t = min(t, total - 1)
    start = Fraction(0)
    for end, start_lr, end_lr in phases:
        if t <= end or end == phases[-1][0]:
            x = float((t - start) / (Fraction(end) - start))
            if p["anneal"] == "cos":
                return end_lr + (start_lr - end_lr) / 2 * (math.cos(math.pi * x) + 1)
            return (end_lr - start_lr) * x + start_lr
        start = Fraction(end)
    raise AssertionError("unreachable")


def _around(*anchors: int, reach: int = 3) -> list[int]:
    """Every step within ``reach`` of each anchor."""
    return [a + d for a in anchors for d in range(-reach, reach + 1) if a + d >= 0]


def _restart_starts(first: int, t_mul: float, up_to: int) -> list[int]:
    """The first step of every SGDR cycle (exactly: the smallest t with t >= the start)."""
    starts, start, length = [], Fraction(0), Fraction(first)
    while start <= up_to:
        starts.append(math.ceil(start))
        start, length = start + length, length * Fraction(t_mul)
    return starts


def _horizon_cases() -> dict[str, dict[str, tuple[dict[str, Any], list[int]]]]:
    """family -> case name -> (params, anchor steps); the last steps are always added."""
    t = HORIZON
    onecycle_short = 1 - 7.5 / t  # the last phase lasts ~7.5 steps, at the very end
    return {
        "constant": {"": ({"learning_rate": 0.05}, [t // 2])},
        "schedule_free": {
            "warmup": ({"learning_rate": 0.01, "warmup_steps": _W, "beta_1": 0.9}, [_W, t // 2])
        },
        "cosine": {
            "warmup": (
                {
                    "learning_rate": 0.1,
                    "alpha": 0.1,
                    "warmup_steps": _W,
                    "warmup_start_factor": 0.1,
                },
                [_W, t // 2 + 1],
            ),
            "short-end": ({"learning_rate": 0.1, "decay_steps": t - 5}, [t - 5, t - 7]),
        },
        "cosine_restarts": {
            "tmul1-short": (
                {"learning_rate": 0.1, "first_decay_steps": 7, "t_mul": 1.0, "alpha": 0.05},
                [t - t % 7, t - t % 7 - 7 * 1_000_001],
            ),
            "tmul1": (
                {"learning_rate": 0.1, "first_decay_steps": 33_333_347, "t_mul": 1.0},
                [33_333_347 * 2, 33_333_347 * 3],
            ),
            "tmul2": (
                {"learning_rate": 0.1, "first_decay_steps": 1_234_567, "m_mul": 0.8},
                _restart_starts(1_234_567, 2.0, t)[-3:],
            ),
            "tmul3-short": (
                {"learning_rate": 0.1, "first_decay_steps": 5, "t_mul": 3.0, "alpha": 0.01},
                _restart_starts(5, 3.0, t)[-3:],
            ),
            "tmul1.5": (
                {"learning_rate": 0.1, "first_decay_steps": 1001, "t_mul": 1.5, "m_mul": 0.9},
                _restart_starts(1001, 1.5, t)[-3:],
            ),
        },
        "warmup_decay": {
            "staircase": (
                {
                    "learning_rate": 0.1,
                    "warmup_steps": _W,
                    "decay_rate": 0.95,
                    "staircase": True,
                    "steps_per_epoch": 1_000_003,
                    "warmup_start_factor": 0.2,
                },
                [_W, _W + 1_000_003 * 37, _W + 1_000_003 * 69],
            ),
            "smooth": (
                {"learning_rate": 0.1, "decay_rate": 0.95, "steps_per_epoch": 1_000_003},
                [1_000_003 * 53],
            ),
        },
        "onecycle": {
            "cos": ({"learning_rate": 0.1}, [int(0.3 * t) - 1]),
            "short-last-phase": (
                {"learning_rate": 0.1, "pct_start": onecycle_short, "anneal": "linear"},
                [t - 9],
            ),
            "3phase-short-last": (
                {
                    "learning_rate": 0.1,
                    "pct_start": (1 - 9.5 / t) / 2,
                    "three_phase": True,
                    "final_div_factor": 100.0,
                },
                [int((t - 9.5) / 2) - 1, t - 11],
            ),
        },
        "plateau": {
            "": (
                {"learning_rate": 0.1, "warmup_steps": _W, "warmup_start_factor": 0.1},
                [_W],
            )
        },
        "polynomial": {
            "power2": (
                {
                    "learning_rate": 0.1,
                    "end_learning_rate": 1e-3,
                    "power": 2.0,
                    "warmup_steps": _W,
                },
                [_W],
            ),
            "sqrt-to-zero": ({"learning_rate": 0.1, "power": 0.5}, [t // 3]),
        },
        "wsd": {
            shape: (
                {
                    "learning_rate": 0.1,
                    "warmup_steps": _W,
                    "decay_steps": 20_000_003,
                    "decay_shape": shape,
                    "min_lr_ratio": 0.01,
                },
                [_W, t - 20_000_003],
            )
            for shape in ("linear", "cosine", "sqrt")
        },
        "cyclic": {
            "short-cycles": (
                {
                    "learning_rate": 0.1,
                    "base_learning_rate": 0.01,
                    "step_size_up": 3,
                    "step_size_down": 4,
                },
                [t - t % 7, t - t % 7 - 7 * 3_000_001 + 3],
            ),
            "triangular2": (
                {
                    "learning_rate": 0.1,
                    "base_learning_rate": 0.01,
                    "step_size_up": 10_000_019,
                    "step_size_down": 15_000_017,
                    "mode": "triangular2",
                },
                [25_000_036 * 3, 25_000_036 * 3 + 10_000_019],
            ),
            "exp_range": (
                {
                    "learning_rate": 0.1,
                    "base_learning_rate": 0.01,
                    "step_size_up": 1_500_007,
                    "step_size_down": 2_500_009,
                    "mode": "exp_range",
                    "gamma": math.exp(-3.0 / t),  # gamma**T = e**-3
                },
                [4_000_016 * 24 + 1_500_007, 4_000_016 * 24],
            ),
        },
    }


HORIZON_CASES = _horizon_cases()


def horizon_params() -> list[Any]:
    return [
        pytest.param(family, name, id=f"{family}-{name}" if name else family)
        for family in FAMILY_NAMES
        for name in HORIZON_CASES.get(family, {"missing": None})
    ]


def horizon_steps(anchors: list[int]) -> np.ndarray:
    """The anchors and their neighbours, the last steps of the budget and a few beyond it."""
    t = HORIZON
    steps = _around(*anchors) + _around(t - 3, t) + [t + 10, t + 1000]
    return np.unique(np.asarray(steps, np.int64))


def horizon_errors(family: str, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(steps, ours, reference, η) for one horizon case."""
    case = HORIZON_CASES.get(family, {}).get(name)
    if case is None:
        pytest.fail(f"add a case of the family {family!r} to _horizon_cases()")
    params, anchors = case
    schedule = build_schedule(family, total_steps=HORIZON, **params)
    resolved = schedule.get_config()
    steps = horizon_steps(anchors)
    ref = np.array([horizon_formula(family, HORIZON, resolved, int(s)) for s in steps])
    return steps, lr_values(schedule, steps), ref, params["learning_rate"]


@pytest.mark.parametrize(("family", "name"), horizon_params())
def test_large_step_counts_match_formula(family: str, name: str) -> None:
    """Every family, at ~1e8 steps, equals its float64 formula to float32 output precision."""
    steps, ours, ref, eta = horizon_errors(family, name)
    err = np.abs(ours - ref)
    bound = HORIZON_REL_TOL * np.abs(ref) + HORIZON_PEAK_TOL * eta
    if not np.all(err <= bound):
        i = int(np.argmax(err / bound))
        pytest.fail(
            f"step {steps[i]}: ours={ours[i]!r} ref={ref[i]!r} "
            f"(|diff|={err[i]:.3g}, {err[i] / eta:.3g} of the peak)"
        )


# One case per family for the compiled train step: where float32 steps lost the most.
TRAIN_STEP_CASES = {
    "constant": "",
    "cosine": "warmup",
    "cosine_restarts": "tmul2",
    "warmup_decay": "staircase",
    "onecycle": "short-last-phase",
    "plateau": "",
    "polynomial": "sqrt-to-zero",
    "wsd": "sqrt",
    "cyclic": "short-cycles",
    "schedule_free": "warmup",
}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_train_step_applies_the_formula_at_large_step_counts(family: str) -> None:
    """The learning rate an XLA-compiled SGD step applies at ~1e8 steps is the formula's: the
    schedule receives the optimizer's own integer ``iterations`` (int64 on TensorFlow, int32 on
    JAX) inside the compiled step. With a zero kernel, input 1 and loss = output, one step
    leaves the kernel at exactly -lr(iterations)."""
    if family not in TRAIN_STEP_CASES:
        pytest.fail(f"add the family {family!r} to TRAIN_STEP_CASES")
    params, anchors = HORIZON_CASES[family][TRAIN_STEP_CASES[family]]
    schedule = build_schedule(family, total_steps=HORIZON, **params)
    layer = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")
    model = keras.Sequential([keras.Input((1,)), layer])
    optimizer = keras.optimizers.SGD(schedule)
    model.compile(optimizer=optimizer, loss=lambda y, out: keras.ops.sum(out), jit_compile=True)
    x = np.ones((1, 1), np.float32)
    steps = horizon_steps(anchors)
    applied = []
    for step in steps:
        optimizer.iterations.assign(int(step))
        layer.kernel.assign(np.zeros((1, 1), np.float32))
        model.train_on_batch(x, x)
        applied.append(-float(keras.ops.convert_to_numpy(layer.kernel)[0, 0]))
    resolved = schedule.get_config()
    ref = [horizon_formula(family, HORIZON, resolved, int(s)) for s in steps]
    eta = params["learning_rate"]
    err = np.abs(np.asarray(applied) - ref)
    bound = HORIZON_REL_TOL * np.abs(ref) + HORIZON_PEAK_TOL * eta
    assert np.all(err <= bound), f"worst at step {steps[int(np.argmax(err / bound))]}"


# --- momentum cycling applied by the optimizer ---------------------------------------------------


def _reference_case(case_id: str) -> dict[str, Any]:
    if TORCH_REF is None:
        no_torch_reference(f"{TORCH_REFERENCE.name} missing")
    assert TORCH_REF is not None
    return next(c for c in TORCH_REF["cases"] if c["id"] == case_id)


def _keras_update(
    optimizer: str, gradients: np.ndarray, lrs: np.ndarray, momentums: np.ndarray
) -> np.ndarray:
    """Keras's SGD (``m = mu m - lr g; w += m``) or Adam update of one weight, in float64, with
    the given learning rate and momentum / beta_1 at each step; the weight after each step."""
    w, m, v, out = 1.0, 0.0, 0.0, []
    for t, (g, lr, mu) in enumerate(zip(gradients, lrs, momentums, strict=True), start=1):
        if optimizer == "sgd":
            m = mu * m - lr * g
            w += m
        else:
            m += (g - m) * (1 - mu)
            v += (g * g - v) * (1 - 0.999)
            w -= m * lr * math.sqrt(1 - 0.999**t) / (1 - mu**t) / (math.sqrt(v) + 1e-7)
        out.append(w)
    return np.array(out)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("case_id", ["onecycle/momentum-3phase", "cyclic/momentum-triangular2"])
def test_fit_applies_the_cycled_momentum(optimizer: str, case_id: str) -> None:
    """In a compiled ``fit``, a momentum-cycling schedule's optimizer updates a weight with
    PyTorch's momentum (SGD) or beta_1 (Adam, AdamW) of each step: the weight follows Keras's
    update run by hand with PyTorch's stored learning rates and momentums, and not the update
    with the momentum held still."""
    from lrsearch.schedules import momentum_cycling

    case = _reference_case(case_id)
    total = case["total_steps"]
    assert stored_steps(case).tolist() == list(range(total))
    schedule = build_schedule(case["family"], total_steps=total, **case["params"])
    gradients = np.random.default_rng(0).uniform(-1.0, 2.0, size=(total, 1)).astype("float32")
    base = {
        "sgd": keras.optimizers.SGD,
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
    }[optimizer]
    kwargs = {"weight_decay": 0.0} if optimizer == "adamw" else {}
    opt = momentum_cycling(base)(learning_rate=schedule, **kwargs)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")]
    )
    model.compile(optimizer=opt, loss=lambda y_true, y_pred: keras.ops.mean(y_pred))

    class Weights(keras.callbacks.Callback):
        seen: list[float] = []

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.seen.append(float(self.model.get_weights()[0][0, 0]))

    record = Weights()
    model.fit(gradients, gradients, batch_size=1, shuffle=False, verbose=0, callbacks=[record])
    lrs, momentums = np.asarray(case["lrs"]), np.asarray(case["momentums"])
    expected = _keras_update(optimizer, gradients[:, 0], lrs, momentums)
    np.testing.assert_allclose(record.seen, expected, rtol=1e-4, atol=1e-5)
    held = _keras_update(optimizer, gradients[:, 0], lrs, np.full(total, momentums[0]))
    assert np.max(np.abs(expected - held)) > 1e-3  # the cycling is what the test sees


def test_cycling_needs_an_optimizer_with_momentum() -> None:
    from lrsearch.schedules import CyclingSGD, momentum_cycling

    assert momentum_cycling(CyclingSGD) is CyclingSGD
    with pytest.raises(ScheduleError, match="cycle_momentum = false"):
        momentum_cycling(keras.optimizers.RMSprop)
    schedule = build_schedule("cyclic", total_steps=40, learning_rate=0.1)
    with pytest.raises(ScheduleError, match="momentum=0"):
        CyclingSGD(schedule, momentum=0.0)
    assert CyclingSGD(schedule).momentum == 0.9  # its max_momentum, as PyTorch starts


def test_a_cycling_optimizer_round_trips_a_keras_file(tmp_path: Path) -> None:
    """The ``.keras`` file carries the cycling optimizer and its schedule's momentum."""
    from lrsearch.schedules import CyclingAdam

    schedule = build_schedule("onecycle", total_steps=40, learning_rate=0.1, max_momentum=0.97)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=CyclingAdam(learning_rate=schedule), loss="mse")
    model.fit(np.ones((8, 2)), np.ones((8, 1)), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer).__name__ == "CyclingAdam"
    again = loaded.optimizer._learning_rate
    assert again.get_config() == schedule.get_config()
    assert float(again.momentum(39)) == pytest.approx(0.97)


# --- schedule_free: Keras's ScheduleFreeAdamW, evaluated on its averaged weights ----------------

SF_X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
SF_XV = np.random.default_rng(1).normal(size=(32, 3)).astype(np.float32)
SF_W = np.array([[1.0], [2.0], [-1.0]], np.float32)
SF_Y, SF_YV = SF_X @ SF_W + 0.5, SF_XV @ SF_W + 0.5
SF_PARAMS = {"learning_rate": 0.05, "warmup_steps": 5, "beta_1": 0.95}  # 4 steps per epoch


def _sf_model(optimizer: Any) -> Any:
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _sf_fit(model: Any, epochs: int, callbacks: list[Any], validation: bool = True) -> Any:
    return model.fit(
        SF_X,
        SF_Y,
        batch_size=16,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        validation_data=(SF_XV, SF_YV) if validation else None,
        callbacks=callbacks,
    )


def _sf_weights(model: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(y, x) of a model trained by ScheduleFreeAdamW, x computed by hand from y and z."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # mixed precision
    beta_1 = float(optimizer.beta_1)
    ys, xs = [], []
    for v in model.trainable_variables:
        y = np.asarray(keras.ops.convert_to_numpy(v), np.float64)
        z = keras.ops.convert_to_numpy(optimizer._momentums[optimizer._get_variable_index(v)])
        ys.append(y)
        xs.append((y - (1 - beta_1) * np.asarray(z, np.float64)) / beta_1)
    return ys, xs


def _sf_val_loss(weights: list[np.ndarray]) -> float:
    kernel, bias = weights
    return float(np.mean((SF_XV @ kernel + bias - SF_YV) ** 2))


def test_schedule_free_trains_as_keras_schedule_free_adamw_with_its_warmup() -> None:
    """Our schedule + optimizer (validation swapping the averaged weights in and out at every
    epoch) trains exactly as Keras's own ScheduleFreeAdamW(warmup_steps=W) without validation;
    after fit the model holds the averaged weights x."""
    from lrsearch.schedules import ScheduleFreeEvaluation

    schedule = build_schedule("schedule_free", total_steps=12, **SF_PARAMS)
    ours = _sf_model(schedule.optimizer())
    _sf_fit(ours, 3, [ScheduleFreeEvaluation()])
    keras_own = keras.optimizers.ScheduleFreeAdamW(
        learning_rate=SF_PARAMS["learning_rate"],
        warmup_steps=SF_PARAMS["warmup_steps"],
        beta_1=SF_PARAMS["beta_1"],
    )
    theirs = _sf_model(keras_own)
    _sf_fit(theirs, 3, [], validation=False)
    _, their_x = _sf_weights(theirs)
    for mine, expected in zip(ours.get_weights(), their_x, strict=True):
        np.testing.assert_allclose(mine, expected, rtol=1e-6, atol=1e-7)
    assert type(ours.optimizer) is keras.optimizers.ScheduleFreeAdamW
    assert ours.optimizer.beta_1 == SF_PARAMS["beta_1"]


def test_schedule_free_validation_metric_is_computed_on_the_averaged_weights() -> None:
    """At every epoch end, the logged val_loss is the loss of x = (y - (1 - beta_1) z) / beta_1,
    not of the training weights y (which the model holds again when the epoch ends)."""
    from lrsearch.schedules import ScheduleFreeEvaluation

    seen: list[tuple[float, float, float]] = []

    class Check(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            y, x = _sf_weights(self.model)
            seen.append((float((logs or {})["val_loss"]), _sf_val_loss(x), _sf_val_loss(y)))

    schedule = build_schedule("schedule_free", total_steps=12, **SF_PARAMS)
    _sf_fit(_sf_model(schedule.optimizer()), 3, [ScheduleFreeEvaluation(), Check()])
    assert len(seen) == 3
    for logged, on_x, on_y in seen:
        assert logged == pytest.approx(on_x, rel=1e-5)
        assert abs(logged - on_y) > 1e-3 * on_y  # the averaged weights are what it saw


def test_schedule_free_evaluation_after_fit_and_a_second_fit() -> None:
    """``evaluate`` after fit sees x (with or without a callback, any instance of it); a second
    fit with a new callback goes on from y: 3 + 1 epochs train exactly as 4. Outside fit, an
    ``evaluate`` with the callback sees x and leaves y in the model."""
    from lrsearch.schedules import ScheduleFreeEvaluation

    schedule = build_schedule("schedule_free", total_steps=16, **SF_PARAMS)
    model = _sf_model(schedule.optimizer())
    history = _sf_fit(model, 3, [ScheduleFreeEvaluation()])
    last = history.history["val_loss"][-1]
    for callbacks in ([], [ScheduleFreeEvaluation()]):
        after = model.evaluate(SF_XV, SF_YV, verbose=0, callbacks=callbacks)
        assert after == pytest.approx(last, rel=1e-6)
    _sf_fit(model, 1, [ScheduleFreeEvaluation()])
    once = _sf_model(build_schedule("schedule_free", total_steps=16, **SF_PARAMS).optimizer())
    _sf_fit(once, 4, [ScheduleFreeEvaluation()])
    for a, b in zip(model.get_weights(), once.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    plain = _sf_model(build_schedule("schedule_free", total_steps=16, **SF_PARAMS).optimizer())
    _sf_fit(plain, 2, [], validation=False)  # y in the model
    y, x = _sf_weights(plain)
    seen = plain.evaluate(SF_XV, SF_YV, verbose=0, callbacks=[ScheduleFreeEvaluation()])
    assert seen == pytest.approx(_sf_val_loss(x), rel=1e-5)
    for kept, expected in zip(plain.get_weights(), y, strict=True):
        np.testing.assert_array_equal(kept, expected.astype(np.float32))


def test_schedule_free_evaluation_under_mixed_precision_and_refusing_other_optimizers() -> None:
    """Under ``mixed_float16`` Keras wraps the optimizer in a LossScaleOptimizer: the callback
    finds the ScheduleFreeAdamW inside; a model with another optimizer is refused, not
    silently evaluated on its training weights."""
    from lrsearch.schedules import ScheduleFreeEvaluation

    schedule = build_schedule("schedule_free", total_steps=12, **SF_PARAMS)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _sf_model(schedule.optimizer())
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"
        seen: list[tuple[float, float, float]] = []

        class Check(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                y, x = _sf_weights(self.model)
                seen.append((float((logs or {})["val_loss"]), _sf_val_loss(x), _sf_val_loss(y)))

        _sf_fit(model, 3, [ScheduleFreeEvaluation(), Check()])
        for logged, on_x, _ in seen:  # float16 activations: ~1e-3 relative noise
            assert logged == pytest.approx(on_x, rel=2e-3)
        logged, _, on_y = seen[-1]  # x and y part as training goes on (~1.5% at epoch 3)
        assert abs(logged - on_y) > 5e-3 * on_y
    finally:
        keras.mixed_precision.set_global_policy("float32")
    adam = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    adam.compile(optimizer="adam", loss="mse")
    with pytest.raises(ScheduleError, match="ScheduleFreeAdamW"):
        adam.fit(SF_X, SF_Y, epochs=1, verbose=0, callbacks=[ScheduleFreeEvaluation()])


def test_schedule_free_optimizer_round_trips_a_keras_file(tmp_path: Path) -> None:
    schedule = build_schedule("schedule_free", total_steps=12, **SF_PARAMS)
    model = _sf_model(schedule.optimizer(weight_decay=1e-3))
    _sf_fit(model, 1, [])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is keras.optimizers.ScheduleFreeAdamW
    assert loaded.optimizer.beta_1 == SF_PARAMS["beta_1"]
    assert loaded.optimizer.weight_decay == pytest.approx(1e-3)
    assert loaded.optimizer._learning_rate.get_config() == schedule.get_config()
