"""Writes ``torch_schedulers.json``: PyTorch's learning rates for lrsearch's schedule families.

``tests/test_schedules.py`` compares lrsearch's schedules with these stored values in every run,
so the suite never needs torch. Run this script by hand, in a virtual environment that has torch
(and numpy, which torch imports) and nothing of lrsearch, whenever the case table below changes
or PyTorch is upgraded::

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchenv/bin/python tests/reference/make_torch_reference.py          # writes the file
    /tmp/torchenv/bin/python tests/reference/make_torch_reference.py --check  # compares only

Each case is a row of lrsearch parameters (family, total_steps, params) and the PyTorch scheduler
that must give the same learning rate at every step, built from those parameters by the family's
``*_torch`` function below (``torch.optim.lr_scheduler`` names and arguments). The learning rates
are recorded as a training loop sees them: ``get_last_lr()`` before the first step, then after
each ``optimizer.step(); scheduler.step()``; where the scheduler cycles momentum (``OneCycleLR``
and ``CyclicLR`` by default), the optimizer's ``momentum`` at the same moments too
(``"momentums"``). Very long cases store a sample of the steps.

Importing this module needs only the standard library: the tests import it to check that the
committed file was generated from this very table.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

FORMAT = 2  # 2: momentums of the momentum-cycling cases
OUTPUT = Path(__file__).resolve().parent / "torch_schedulers.json"
SEED = 20240611
DRAWS = 20  # random parameter sets per family whose PyTorch equality SCHEDULES.md promises
OTHER_DRAWS = 8  # ... and per family that merely has a PyTorch counterpart

Spec = dict[str, Any]
Row = dict[str, Any]


# --- lrsearch parameters -> PyTorch scheduler (pure data; no torch needed) --------------------


def sched(name: str, **kwargs: Any) -> Spec:
    """One ``torch.optim.lr_scheduler`` class and its keyword arguments (after the optimizer)."""
    return {"scheduler": name, "kwargs": kwargs}


def sequential(phases: list[tuple[int, Spec]]) -> Spec:
    """``SequentialLR`` over ``(length, scheduler)`` phases; a single phase is itself."""
    phases = [(n, s) for n, s in phases if n > 0]
    if len(phases) == 1:
        return phases[0][1]
    milestones = [sum(n for n, _ in phases[: i + 1]) for i in range(len(phases) - 1)]
    return {
        "scheduler": "SequentialLR",
        "schedulers": [s for _, s in phases],
        "milestones": milestones,
    }


def warmup_then(p: dict[str, Any], *phases: tuple[int, Spec]) -> Spec:
    """lrsearch's linear warmup (``LinearLR``, which needs a start factor > 0), then ``phases``,
    in one ``SequentialLR`` (a nested one fails: at a milestone SequentialLR restarts the next
    scheduler with ``_update_lr(0)``, which calls ``get_lr``, which SequentialLR lacks)."""
    w = p.get("warmup_steps", 0)
    factor = p.get("warmup_start_factor", 0.0)
    if w > 0 and not 0 < factor <= 1:
        raise ValueError(f"LinearLR needs 0 < warmup_start_factor <= 1, got {factor}")
    warmup = sched("LinearLR", start_factor=factor, end_factor=1.0, total_iters=w)
    return sequential([(w, warmup), *phases])


def momentum_kwargs(p: dict[str, Any], base: float, peak: float) -> dict[str, Any]:
    """PyTorch's momentum cycling arguments; lrsearch's defaults are PyTorch's."""
    return {
        "cycle_momentum": p.get("cycle_momentum", True),
        "base_momentum": p.get("base_momentum", base),
        "max_momentum": p.get("max_momentum", peak),
    }


def onecycle_torch(t: int, p: dict[str, Any]) -> tuple[Spec, int]:
    """``OneCycleLR`` over the budget (it raises past it)."""
    spec = sched(
        "OneCycleLR",
        max_lr=p["learning_rate"],
        total_steps=t,
        pct_start=p.get("pct_start", 0.3),
        anneal_strategy=p.get("anneal", "cos"),
        div_factor=p.get("div_factor", 25.0),
        final_div_factor=p.get("final_div_factor", 1e4),
        three_phase=p.get("three_phase", False),
        **momentum_kwargs(p, 0.85, 0.95),
    )
    return spec, t


def cyclic_torch(t: int, p: dict[str, Any]) -> tuple[Spec, int]:
    """``CyclicLR(base_lr=base_learning_rate, max_lr=learning_rate, ...)``."""
    spec = sched(
        "CyclicLR",
        base_lr=p["base_learning_rate"],
        max_lr=p["learning_rate"],
        step_size_up=p["step_size_up"],
        step_size_down=p.get("step_size_down"),
        mode=p.get("mode", "triangular"),
        gamma=p.get("gamma", 1.0),
        **momentum_kwargs(p, 0.8, 0.9),
    )
    return spec, t


def cosine_restarts_torch(t: int, p: dict[str, Any]) -> tuple[Spec, int]:
    """``CosineAnnealingWarmRestarts``: PyTorch has no ``m_mul`` and takes an integer T_mult."""
    t_mul = p.get("t_mul", 2.0)
    if p.get("m_mul", 1.0) != 1.0 or t_mul != int(t_mul):
        raise ValueError(f"no PyTorch counterpart for m_mul != 1 or a fractional t_mul: {p}")
    spec = sched(
        "CosineAnnealingWarmRestarts",
        T_0=p["first_decay_steps"],
        T_mult=int(t_mul),
        eta_min=p.get("alpha", 0.0) * p["learning_rate"],
    )
    return spec, t


def cosine_torch(t: int, p: dict[str, Any]) -> tuple[Spec, int]:
    """Warmup, then ``CosineAnnealingLR``; compared up to W + D, after which PyTorch's cosine
    rises again (it is periodic) while lrsearch's holds alpha * learning_rate."""
    w = p.get("warmup_steps", 0)
    d = p.get("decay_steps", t - w)
    cosine = sched("CosineAnnealingLR", T_max=d, eta_min=p.get("alpha", 0.0) * p["learning_rate"])
    return warmup_then(p, (d + 1, cosine)), w + d + 1


def polynomial_torch(t: int, p: dict[str, Any]) -> tuple[Spec, int]:
    """Warmup, then ``PolynomialLR`` (which decays to zero: end_learning_rate = 0 only)."""
    if p.get("end_learning_rate", 0.0) != 0.0:
        raise ValueError("PolynomialLR decays to 0: no counterpart for end_learning_rate > 0")
    w = p.get("warmup_steps", 0)
    d = p.get("decay_steps", t - w)
    poly = sched("PolynomialLR", total_iters=d, power=p.get("power", 1.0))
    n = max(t, w + d) + 11
    return warmup_then(p, (n - w, poly)), n


def warmup_decay_torch(t: int, p: dict[str, Any]) -> tuple[Spec, int]:
    """Warmup, then ``StepLR`` (staircase) or ``ExponentialLR`` (per step: decay_rate ** (1/S))."""
    s, gamma, w = p["steps_per_epoch"], p.get("decay_rate", 0.95), p.get("warmup_steps", 0)
    if p.get("staircase", False):
        decay = sched("StepLR", step_size=s, gamma=gamma)
    else:
        decay = sched("ExponentialLR", gamma=gamma if s == 1 else gamma ** (1.0 / s))
    return warmup_then(p, (t + 11 - w, decay)), t + 11


def wsd_torch(t: int, p: dict[str, Any]) -> tuple[Spec, int]:
    """Warmup, a stable ``ConstantLR(factor=1)``, then a ``LinearLR`` or ``CosineAnnealingLR``
    decay to min_lr_ratio * learning_rate (PyTorch has no sqrt decay)."""
    w, d = p.get("warmup_steps", 0), p["decay_steps"]
    rho, shape = p.get("min_lr_ratio", 0.0), p.get("decay_shape", "linear")
    if shape == "linear":
        decay, n = sched("LinearLR", start_factor=1.0, end_factor=rho, total_iters=d), t + 11
    elif shape == "cosine":
        decay = sched("CosineAnnealingLR", T_max=d, eta_min=rho * p["learning_rate"])
        n = t + 1  # PyTorch's cosine is periodic past T_max
    else:
        raise ValueError(f"no PyTorch counterpart for decay_shape={shape!r}")
    stable = sched("ConstantLR", factor=1.0, total_iters=1)
    return warmup_then(p, (t - w - d, stable), (n - (t - d), decay)), n


TORCH_OF = {
    "onecycle": onecycle_torch,
    "cyclic": cyclic_torch,
    "cosine_restarts": cosine_restarts_torch,
    "cosine": cosine_torch,
    "polynomial": polynomial_torch,
    "warmup_decay": warmup_decay_torch,
    "wsd": wsd_torch,
}


# --- the case table ---------------------------------------------------------------------------


def case(
    name: str, family: str, t: int, steps: list[list[int]] | None = None, **params: Any
) -> Row:
    """A row: ``family`` with ``params`` over ``t`` steps; ``steps`` = ranges to store."""
    row: Row = {"id": f"{family}/{name}", "family": family, "total_steps": t, "params": params}
    if steps is not None:
        row["steps"] = steps
    return row


def sampled(n: int, *windows: int, half: int = 20, stride: int = 499) -> list[list[int]]:
    """Every ``stride``-th step of ``n``, the last 100 steps, and ``half`` steps either side of
    each window centre (phase ends, restarts): where float32 loses digits on long budgets."""
    ranges = [[0, n, stride], [n - 100, n, 1]]
    ranges += [[max(c - half, 0), min(c + half + 1, n), 1] for c in windows]
    return ranges


LONG = 100_000  # 100 epochs x 1000 steps

FIXED_ROWS: list[Row] = [
    # onecycle: the cases of the former live-PyTorch test, then edges.
    case("cos-2phase", "onecycle", 100, learning_rate=0.1),
    case("lin", "onecycle", 97, learning_rate=0.05, pct_start=0.25, anneal="linear"),
    case(
        "cos-3phase",
        "onecycle",
        120,
        learning_rate=0.2,
        three_phase=True,
        div_factor=10.0,
        final_div_factor=100.0,
    ),
    case(
        "lin-3phase",
        "onecycle",
        83,
        learning_rate=1.0,
        pct_start=0.4,
        three_phase=True,
        anneal="linear",
    ),
    case("short-rise", "onecycle", 50, learning_rate=0.1, pct_start=0.033),
    case("shortest-rise", "onecycle", 20, learning_rate=0.1, pct_start=0.0505),
    case("longest-rise", "onecycle", 20, learning_rate=0.1, pct_start=0.99, anneal="linear"),
    case("3phase-longest", "onecycle", 40, learning_rate=0.3, pct_start=0.49, three_phase=True),
    case("div1", "onecycle", 60, learning_rate=0.1, div_factor=1.0, final_div_factor=1.0),
    case("no-momentum", "onecycle", 100, learning_rate=0.1, cycle_momentum=False),
    case(
        "momentum-3phase",
        "onecycle",
        90,
        learning_rate=0.1,
        three_phase=True,
        anneal="linear",
        base_momentum=0.6,
        max_momentum=0.99,
    ),
    case("momentum-flat", "onecycle", 40, learning_rate=0.1, base_momentum=0.9, max_momentum=0.9),
    case("long", "onecycle", LONG, sampled(LONG, 29_999), learning_rate=0.1),
    case(
        "long-short-last-phase",
        "onecycle",
        LONG,
        sampled(LONG, 99_936),
        learning_rate=0.1,
        pct_start=0.99937,
        anneal="linear",
    ),
    case(
        "long-3phase",
        "onecycle",
        LONG,
        sampled(LONG, 49_936, 99_872),
        learning_rate=0.1,
        pct_start=0.49937,
        three_phase=True,
    ),
    # cyclic
    case(
        "triangular",
        "cyclic",
        150,
        learning_rate=0.1,
        base_learning_rate=0.01,
        step_size_up=7,
        step_size_down=13,
    ),
    case(
        "triangular2",
        "cyclic",
        150,
        learning_rate=0.5,
        base_learning_rate=0.05,
        step_size_up=10,
        step_size_down=5,
        mode="triangular2",
    ),
    case(
        "exp_range",
        "cyclic",
        150,
        learning_rate=0.1,
        base_learning_rate=0.001,
        step_size_up=6,
        step_size_down=9,
        mode="exp_range",
        gamma=0.99,
    ),
    case(
        "no-momentum",
        "cyclic",
        60,
        learning_rate=0.1,
        base_learning_rate=0.01,
        step_size_up=5,
        cycle_momentum=False,
    ),
    case(
        "momentum-triangular2",
        "cyclic",
        80,
        learning_rate=0.1,
        base_learning_rate=0.01,
        step_size_up=4,
        step_size_down=9,
        mode="triangular2",
        base_momentum=0.5,
        max_momentum=0.95,
    ),
    case("steps1-base0", "cyclic", 30, learning_rate=0.1, base_learning_rate=0.0, step_size_up=1),
    case(
        "up-is-budget", "cyclic", 40, learning_rate=0.1, base_learning_rate=0.02, step_size_up=40
    ),
    case(
        "exp_range-gamma1",
        "cyclic",
        60,
        learning_rate=0.1,
        base_learning_rate=0.01,
        step_size_up=5,
        mode="exp_range",
        gamma=1.0,
    ),
    case(
        "long-many-cycles",
        "cyclic",
        LONG,
        sampled(LONG, 99_000),
        learning_rate=0.1,
        base_learning_rate=0.01,
        step_size_up=3,
        step_size_down=4,
    ),
    case(
        "long-exp_range",
        "cyclic",
        LONG,
        sampled(LONG, 96_000, 97_500),
        learning_rate=0.1,
        base_learning_rate=0.01,
        step_size_up=1500,
        step_size_down=2500,
        mode="exp_range",
        gamma=0.99999,
    ),
    # cosine_restarts (m_mul = 1, integer t_mul)
    case("tmul1", "cosine_restarts", 160, learning_rate=0.1, first_decay_steps=17, t_mul=1.0),
    case("tmul2", "cosine_restarts", 160, learning_rate=0.1, first_decay_steps=10, t_mul=2.0),
    case(
        "tmul3-alpha",
        "cosine_restarts",
        160,
        learning_rate=0.3,
        first_decay_steps=5,
        t_mul=3.0,
        alpha=0.1,
    ),
    case("T0-1", "cosine_restarts", 30, learning_rate=0.1, first_decay_steps=1, t_mul=1.0),
    case("T0-1-tmul2", "cosine_restarts", 40, learning_rate=0.1, first_decay_steps=1, t_mul=2.0),
    case("alpha1", "cosine_restarts", 30, learning_rate=0.1, first_decay_steps=7, alpha=1.0),
    # each cycle restarts exactly at k * T0 (XLA once missed step 107 of T0 = 107)
    *(
        case(
            f"cycle-starts-{t0}",
            "cosine_restarts",
            5 * t0 + 1,
            steps,
            learning_rate=1.0,
            first_decay_steps=t0,
            t_mul=1.0,
        )
        for t0, steps in [
            (7, None),
            (97, None),
            (107, None),
            (1013, sampled(5 * 1013 + 1, *(k * 1013 for k in range(1, 6)), half=3, stride=37)),
        ]
    ),
    case(
        "long-tmul3",
        "cosine_restarts",
        LONG,
        sampled(LONG, 333, 1332, 4329, 13_320, 40_293),
        learning_rate=0.1,
        first_decay_steps=333,
        t_mul=3.0,
    ),
    # cosine: CosineAnnealingLR, after a LinearLR warmup
    case("plain", "cosine", 100, learning_rate=0.1),
    case("alpha-short", "cosine", 100, learning_rate=0.1, alpha=0.1, decay_steps=60),
    case("warmup", "cosine", 100, learning_rate=0.1, warmup_steps=20, warmup_start_factor=0.01),
    case(
        "warmup-start-factor",
        "cosine",
        120,
        learning_rate=0.3,
        alpha=0.05,
        decay_steps=50,
        warmup_steps=15,
        warmup_start_factor=0.2,
    ),
    case(
        "warmup-factor1", "cosine", 50, learning_rate=0.1, warmup_steps=49, warmup_start_factor=1.0
    ),
    case("D1", "cosine", 20, learning_rate=0.1, decay_steps=1),
    # polynomial: PolynomialLR (to zero), after a LinearLR warmup
    case("linear", "polynomial", 100, learning_rate=0.1),
    case("power2-short", "polynomial", 100, learning_rate=0.1, power=2.0, decay_steps=80),
    case("sqrt", "polynomial", 100, learning_rate=0.05, power=0.5),
    case(
        "warmup-long-decay",
        "polynomial",
        100,
        learning_rate=0.1,
        power=3.0,
        decay_steps=150,
        warmup_steps=10,
        warmup_start_factor=0.1,
    ),
    # warmup_decay: ExponentialLR / StepLR, after a LinearLR warmup
    case("per-step", "warmup_decay", 100, learning_rate=0.1, steps_per_epoch=1, decay_rate=0.97),
    case("per-epoch", "warmup_decay", 100, learning_rate=0.1, steps_per_epoch=10, decay_rate=0.5),
    case(
        "staircase",
        "warmup_decay",
        100,
        learning_rate=0.1,
        steps_per_epoch=7,
        decay_rate=0.8,
        staircase=True,
    ),
    case(
        "warmup-staircase",
        "warmup_decay",
        100,
        learning_rate=0.2,
        steps_per_epoch=9,
        decay_rate=0.7,
        staircase=True,
        warmup_steps=12,
        warmup_start_factor=0.05,
    ),
    case(
        "warmup-smooth",
        "warmup_decay",
        100,
        learning_rate=0.2,
        steps_per_epoch=6,
        decay_rate=0.9,
        warmup_steps=30,
        warmup_start_factor=0.5,
    ),
    # wsd (linear and cosine decays): ConstantLR between LinearLR / CosineAnnealingLR phases
    case("linear", "wsd", 100, learning_rate=0.1, decay_steps=20),
    case(
        "linear-warmup",
        "wsd",
        100,
        learning_rate=0.1,
        warmup_steps=10,
        warmup_start_factor=0.1,
        decay_steps=25,
        min_lr_ratio=0.05,
    ),
    case(
        "cosine-no-stable",
        "wsd",
        100,
        learning_rate=0.2,
        warmup_steps=15,
        warmup_start_factor=0.3,
        decay_steps=85,
        decay_shape="cosine",
        min_lr_ratio=0.1,
    ),
    case("cosine-all-decay", "wsd", 60, learning_rate=0.1, decay_steps=60, decay_shape="cosine"),
    case("linear-D1", "wsd", 30, learning_rate=0.1, decay_steps=1, min_lr_ratio=1.0),
]


class Draw:
    """Reproducible draws from ``random.Random.random()`` alone, whose sequence for a seed
    Python guarantees across versions; values rounded to 4 significant digits for reading."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def u(self, lo: float, hi: float) -> float:
        x = lo + (hi - lo) * self.rng.random()
        return min(max(float(f"{x:.4g}"), lo), hi)

    def log_u(self, lo: float, hi: float) -> float:
        x = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * self.rng.random())
        return min(max(float(f"{x:.4g}"), lo), hi)

    def integer(self, lo: int, hi: int) -> int:
        return min(lo + int(self.rng.random() * (hi - lo + 1)), hi)

    def pick(self, options: list[Any]) -> Any:
        return options[self.integer(0, len(options) - 1)]


def random_params(d: Draw, family: str) -> tuple[int, dict[str, Any]]:
    """A budget T and valid parameters of ``family``, from the ranges of the tests' Hypothesis
    strategy ``budget_and_params``, narrowed to what PyTorch can express (integer t_mul, m_mul = 1,
    end_learning_rate = 0, a warmup start factor > 0, no sqrt decay) and to T <= 160 (file size);
    the learning rate is drawn log-uniformly."""
    t = d.integer(20, 160)
    p: dict[str, Any] = {"learning_rate": d.log_u(1e-5, 1.0)}
    w = d.pick([0, d.integer(1, t // 2)])
    warmup = {"warmup_steps": w, "warmup_start_factor": d.u(0.001, 1.0)} if w else {}
    if family == "onecycle":
        three_phase = d.pick([False, True])
        p["pct_start"] = d.u(math.ceil(1.01 / t * 1e4) / 1e4, 0.49 if three_phase else 0.99)
        p["div_factor"] = d.log_u(1.0, 1e3)
        p["final_div_factor"] = d.log_u(1.0, 1e5)
        p["anneal"] = d.pick(["cos", "linear"])
        p["three_phase"] = three_phase
    elif family == "cyclic":
        p["base_learning_rate"] = float(f"{d.u(0.0, 0.99) * p['learning_rate']:.4g}")
        p["step_size_up"] = d.integer(1, t)
        p["step_size_down"] = d.integer(1, t)
        p["mode"] = d.pick(["triangular", "triangular2", "exp_range"])
        if p["mode"] == "exp_range":
            p["gamma"] = d.u(0.9, 1.0)
    elif family == "cosine_restarts":
        p["first_decay_steps"] = d.integer(1, t)
        p["t_mul"] = float(d.integer(1, 4))
        p["alpha"] = d.pick([0.0, d.u(0.0, 1.0)])
    elif family == "cosine":
        p.update(warmup, alpha=d.u(0.0, 1.0), decay_steps=d.integer(1, t - w))
    elif family == "polynomial":
        p.update(warmup, power=d.u(0.1, 5.0), decay_steps=d.integer(1, 2 * t))
    elif family == "warmup_decay":
        p.update(warmup, decay_rate=d.u(1e-3, 0.999), steps_per_epoch=d.integer(1, t))
        p["staircase"] = d.pick([False, True])
    elif family == "wsd":
        p.update(warmup, decay_steps=d.integer(1, t - w), min_lr_ratio=d.u(0.0, 1.0))
        p["decay_shape"] = d.pick(["linear", "cosine"])
    else:
        raise ValueError(family)
    if family in ("onecycle", "cyclic") and d.pick([False, True]):
        p["base_momentum"] = d.u(0.0, 0.95)
        p["max_momentum"] = d.u(p["base_momentum"], 0.999)
    return t, p


def rows() -> list[Row]:
    """Every case: the fixed rows, then the random draws of each family."""
    out = list(FIXED_ROWS)
    for family in TORCH_OF:
        d = Draw(SEED + sum(map(ord, family)))
        n = DRAWS if family in ("onecycle", "cyclic", "cosine_restarts") else OTHER_DRAWS
        for i in range(n):
            t, p = random_params(d, family)
            out.append(case(f"draw-{i:02d}", family, t, **p))
    return out


def cases() -> list[dict[str, Any]]:
    """Every row with its PyTorch scheduler and the steps to store (no learning rates yet)."""
    out = []
    for row in rows():
        spec, n_steps = TORCH_OF[row["family"]](row["total_steps"], row["params"])
        steps = row.get("steps", [[0, n_steps, 1]])
        out.append({**row, "torch": spec, "steps": steps})
    ids = [c["id"] for c in out]
    if len(set(ids)) != len(ids):
        raise ValueError("case ids must be unique")
    return out


def step_list(ranges: list[list[int]]) -> list[int]:
    """The sorted union of ``range(*r)`` for ``r`` in ``ranges``."""
    return sorted({s for r in ranges for s in range(*r)})


# --- running PyTorch --------------------------------------------------------------------------


def build(torch: Any, optimizer: Any, spec: Spec) -> Any:
    """The scheduler ``spec`` describes, on ``optimizer``."""
    lrs = torch.optim.lr_scheduler
    if spec["scheduler"] == "SequentialLR":
        children = [build(torch, optimizer, s) for s in spec["schedulers"]]
        return lrs.SequentialLR(optimizer, children, milestones=spec["milestones"])
    return getattr(lrs, spec["scheduler"])(optimizer, **spec["kwargs"])


def torch_values(torch: Any, c: dict[str, Any]) -> dict[str, list[float]]:
    """The learning rates PyTorch gives at ``c``'s stored steps (``lrs``), and the momentums
    where its scheduler cycles them (``momentums``)."""
    optimizer = torch.optim.SGD(
        [torch.nn.Parameter(torch.zeros(1))], lr=c["params"]["learning_rate"], momentum=0.9
    )
    scheduler = build(torch, optimizer, c["torch"])
    wanted = step_list(c["steps"])
    keep = set(wanted)
    cycles = c["torch"].get("kwargs", {}).get("cycle_momentum", False)
    out: dict[str, list[float]] = {"lrs": [], **({"momentums": []} if cycles else {})}
    for step in range(wanted[-1] + 1):
        if step:
            optimizer.step()
            scheduler.step()
        if step in keep:
            out["lrs"].append(float(scheduler.get_last_lr()[0]))
            if cycles:
                out["momentums"].append(float(optimizer.param_groups[0]["momentum"]))
    return out


VALUES = ("lrs", "momentums")  # what PyTorch computed, as opposed to the case's description


def description(c: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in c.items() if k not in VALUES}


def dumps(torch_version: str, computed: list[dict[str, Any]]) -> str:
    """The file: a header, then each case on two lines (its description, its learning rates)."""
    lines = [
        "{",
        f'"format": {FORMAT},',
        f'"torch_version": {json.dumps(torch_version)},',
        '"generator": "tests/reference/make_torch_reference.py",',
        '"cases": [',
    ]
    for i, c in enumerate(computed):
        head = json.dumps({k: v for k, v in c.items() if k not in VALUES})
        values = ",\n".join(f' "{k}": {json.dumps(c[k])}' for k in VALUES if k in c)
        sep = "," if i < len(computed) - 1 else ""
        lines.append(f"{head[:-1]},\n{values}}}{sep}")
    lines += ["]", "}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the file, write nothing"
    )
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    import torch  # only here: importing this module must not need torch

    computed = [{**c, **torch_values(torch, c)} for c in cases()]
    text = dumps(torch.__version__, computed)
    if not args.check:
        args.output.write_text(text)
        size = args.output.stat().st_size
        print(f"wrote {len(computed)} cases ({size / 1024:.0f} KiB) to {args.output}")
        return 0
    stored = json.loads(args.output.read_text())
    bad = []
    old = {c["id"]: c for c in stored["cases"]}
    for c in computed:
        o = old.pop(c["id"], None)
        if o is None or description(o) != description(c) or set(o) != set(c):
            bad.append(f"{c['id']}: case missing or changed")
        elif any(
            abs(a - b) > 1e-12 * abs(b) + 1e-15
            for k in VALUES
            for a, b in zip(o.get(k, []), c.get(k, []), strict=True)
        ):
            bad.append(f"{c['id']}: torch {torch.__version__} gives other values")
    bad += [f"{k}: no longer in the table" for k in old]
    print("\n".join(bad) or f"{len(computed)} cases match torch {torch.__version__}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
