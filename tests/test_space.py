from __future__ import annotations

# Tests of the search layer (lrsearch/space.py), with in-memory Optuna studies and no training:
# 1. every family: sampled points give valid schedules and trial parameters named `family`,
#    `learning_rate` and `<family>.<param>` only;
# 2. relative -> absolute conversions (epochs, fractions of the budget, lr ratios, the Budget's
#    monitor, WSD clipping);
# 3. study-file overrides (fixed values, ranges, range tables, choices, absolute parameters);
# 4. malformed or invalid ranges are ConfigErrors raised by from_config, before any training;
# 5. baselines: relative and absolute keys, enqueue_params + enqueue_trial + replay;
# 6. samplers on the conditional space of all families, and a Hypothesis fuzz of the overrides.
import math
import tomllib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from lrsearch.config import SpaceConfig, load_study_file, parse_study_config
from lrsearch.exceptions import ConfigError
from lrsearch.schedules import FAMILIES, build_schedule, resolve_params
from lrsearch.space import Budget, Dimension, SchedulePoint, SearchSpace, default_lr_range

optuna.logging.set_verbosity(optuna.logging.WARNING)

STUDIES = Path(__file__).resolve().parents[1] / "studies"
FAMILY_NAMES = list(FAMILIES)
BUDGET = Budget(epochs=10, steps_per_epoch=20)  # T = 200


def space_of(toml: str, budget: Budget = BUDGET, optimizer: str = "adam") -> SearchSpace:
    """The SearchSpace of a study file's ``[space]`` part (through the config validation)."""
    cfg = parse_study_config(tomllib.loads('[study]\nname = "t"\n' + toml))
    return SearchSpace.from_config(cfg.space, budget, optimizer=optimizer)


def only(family: str, budget: Budget = BUDGET) -> SearchSpace:
    return SearchSpace.from_config(SpaceConfig(families=[family]), budget)


def lr_values(schedule: Any, steps: list[int]) -> np.ndarray:
    import keras

    out = schedule(np.asarray(steps, dtype=np.int64))
    return keras.ops.convert_to_numpy(out).astype(np.float64)


def ask(space: SearchSpace, study: optuna.Study | None = None) -> tuple[Any, SchedulePoint]:
    trial = (study or optuna.create_study()).ask()
    return trial, space.suggest(trial)


def assert_valid(point: SchedulePoint) -> None:
    """``point.absolute`` is exactly (and already) what ``build_schedule`` takes."""
    resolved = resolve_params(point.family, total_steps=point.total_steps, **point.absolute)
    resolved.pop("total_steps", None)
    assert resolved == point.absolute


# --- 1. every family --------------------------------------------------------------------------


@pytest.mark.parametrize(("epochs", "steps"), [(5, 20), (12, 7)], ids=["5x20", "12x7"])
@pytest.mark.parametrize("family", FAMILY_NAMES, ids=FAMILY_NAMES)
def test_every_family_samples_valid_schedules(family: str, epochs: int, steps: int) -> None:
    budget = Budget(epochs=epochs, steps_per_epoch=steps)
    total = epochs * steps
    space = only(family, budget)
    search = {p.name for p in FAMILIES[family].search}
    allowed = {"family", "learning_rate"} | {f"{family}.{name}" for name in search}
    study = optuna.create_study()
    for i in range(30):
        trial, point = ask(space, study)
        assert point.family == family and point.total_steps == total
        assert {"family", "learning_rate"} <= set(trial.params) <= allowed
        assert trial.params["family"] == family
        assert set(point.relative) == {"learning_rate"} | search
        for name, value in trial.params.items():
            if name.startswith(f"{family}."):
                assert point.relative[name.removeprefix(f"{family}.")] == value
        lr = trial.params["learning_rate"]
        assert point.absolute["learning_rate"] == lr
        assert point.record() == {"family": family, "total_steps": total, "params": point.absolute}
        assert_valid(point)
        schedule = build_schedule(family, total_steps=total, **point.absolute)
        if i < 4:  # evaluating is the slow part: a few schedules, a few steps
            values = lr_values(schedule, [0, total // 2, total - 1, total + 3])
            assert np.all(np.isfinite(values)) and np.all(values >= 0)
            assert np.all(values <= lr * (1 + 1e-5))
        study.tell(trial, float(np.log10(lr)))


def test_sampled_family_parameters_are_conditional() -> None:
    space = SearchSpace.from_config(SpaceConfig(), BUDGET)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(60):
        trial, point = ask(space, study)
        seen.add(point.family)
        prefixes = {name.split(".")[0] for name in trial.params if "." in name}
        assert prefixes <= {point.family}
    assert len(seen) >= 6


def test_default_learning_rate_range_follows_the_optimizer() -> None:
    assert default_lr_range("sgd") == (1e-3, 0.5)
    assert default_lr_range("adam") == default_lr_range("adamw") == (1e-4, 3e-2)
    for optimizer in ("sgd", "adam"):
        space = SearchSpace.from_config(
            SpaceConfig(families=["constant"]), BUDGET, optimizer=optimizer
        )
        trial, _ = ask(space)
        low, high = default_lr_range(optimizer)
        assert trial.distributions["learning_rate"] == FloatDistribution(low, high, log=True)


# --- 2. relative -> absolute ------------------------------------------------------------------

WARMUP_FAMILIES = [n for n, f in FAMILIES.items() if "warmup_epochs" in {p.name for p in f.search}]


def test_warmup_families() -> None:
    assert set(WARMUP_FAMILIES) == {
        "cosine",
        "warmup_decay",
        "plateau",
        "polynomial",
        "wsd",
        "schedule_free",
    }


@pytest.mark.parametrize("family", WARMUP_FAMILIES)
@pytest.mark.parametrize(("epochs", "steps"), [(1.5, 30), (0.0, 0), (0.26, 5)])
def test_warmup_epochs_times_steps_per_epoch(family: str, epochs: float, steps: int) -> None:
    point = only(family).point(family, {"learning_rate": 0.01, "warmup_epochs": epochs})
    assert point.absolute["warmup_steps"] == steps  # BUDGET: 20 steps per epoch


def test_warmup_is_clipped_inside_the_budget() -> None:
    point = only("cosine").point("cosine", {"learning_rate": 0.01, "warmup_epochs": 50})
    assert point.absolute["warmup_steps"] == BUDGET.total_steps - 1
    assert point.absolute["decay_steps"] == 1
    assert_valid(point)


@pytest.mark.parametrize(
    ("family", "relative", "expected"),
    [
        ("cosine_restarts", {"first_cycle": 0.25}, {"first_decay_steps": 50}),
        ("cosine_restarts", {"first_cycle": 0.001}, {"first_decay_steps": 1}),  # at least 1
        ("wsd", {"decay_fraction": 0.3}, {"decay_steps": 60}),
        ("cyclic", {"half_cycle_epochs": 1.5}, {"step_size_up": 30, "step_size_down": 30}),
        ("cyclic", {"half_cycle_epochs": 0.01}, {"step_size_up": 1}),  # at least 1
    ],
    ids=["first_cycle", "first_cycle-min", "decay_fraction", "half_cycle", "half_cycle-min"],
)
def test_lengths_as_fractions_and_epochs(
    family: str, relative: dict[str, Any], expected: dict[str, Any]
) -> None:
    point = only(family).point(family, {"learning_rate": 0.01, **relative})
    assert point.relative == {"learning_rate": 0.01, **relative}
    for key, value in expected.items():
        assert point.absolute[key] == value


@pytest.mark.parametrize(
    ("family", "ratio", "target"),
    [
        ("polynomial", "end_lr_ratio", "end_learning_rate"),
        ("cyclic", "base_lr_ratio", "base_learning_rate"),
        ("plateau", "min_lr_ratio", "min_learning_rate"),
    ],
)
def test_lr_ratios_scale_with_the_peak(family: str, ratio: str, target: str) -> None:
    space = only(family)
    for lr in (0.02, 0.3):
        point = space.point(family, {"learning_rate": lr, ratio: 0.05})
        assert point.absolute[target] == pytest.approx(0.05 * lr, rel=1e-12)
        assert point.absolute["learning_rate"] == lr


def test_same_ratio_values_stay_fractions() -> None:
    point = only("wsd").point("wsd", {"learning_rate": 0.2, "min_lr_ratio": 0.1})
    assert point.absolute["min_lr_ratio"] == 0.1  # wsd takes the ratio itself
    point = only("cosine").point("cosine", {"learning_rate": 0.2, "alpha": 0.1})
    assert point.absolute["alpha"] == 0.1


def test_warmup_decay_gets_steps_per_epoch_from_the_budget() -> None:
    budget = Budget(epochs=6, steps_per_epoch=33)
    point = only("warmup_decay", budget).point(
        "warmup_decay", {"learning_rate": 0.01, "decay_rate": 0.9}
    )
    assert point.absolute["steps_per_epoch"] == 33
    assert point.absolute["decay_rate"] == 0.9


@pytest.mark.parametrize(
    ("monitor", "mode"), [("val_loss", "min"), ("val_accuracy", "max"), ("loss", "min")]
)
def test_plateau_monitor_and_mode_come_from_the_budget(monitor: str, mode: str) -> None:
    budget = Budget(epochs=10, steps_per_epoch=20, monitor=monitor, mode=mode)
    _, point = ask(only("plateau", budget))
    assert point.absolute["monitor"] == monitor
    assert point.absolute["mode"] == mode


@pytest.mark.parametrize(
    ("warmup_epochs", "fraction", "warmup_steps", "decay_steps"),
    [
        (2.0, 0.3, 40, 60),  # fits: unchanged
        (5.0, 0.8, 40, 160),  # warmup shrinks to T - D
        (3.0, 1.0, 0, 200),  # the decay fills the budget
        (3.0, 1.7, 0, 200),  # the decay is clipped to T
    ],
)
def test_wsd_warmup_and_decay_are_clipped_inside_the_budget(
    warmup_epochs: float, fraction: float, warmup_steps: int, decay_steps: int
) -> None:
    relative = {"learning_rate": 0.01, "warmup_epochs": warmup_epochs, "decay_fraction": fraction}
    point = only("wsd").point("wsd", relative)
    assert point.absolute["warmup_steps"] == warmup_steps
    assert point.absolute["decay_steps"] == decay_steps
    assert warmup_steps + decay_steps <= BUDGET.total_steps
    assert_valid(point)


def test_point_absolute_overrides_win() -> None:
    point = only("cosine").point(
        "cosine", {"learning_rate": 0.01, "warmup_epochs": 1}, {"decay_steps": 1000}
    )
    assert point.absolute["decay_steps"] == 1000
    assert point.absolute["warmup_steps"] == 20


def test_choices_pass_through() -> None:
    point = only("onecycle").point("onecycle", {"learning_rate": 0.1, "anneal": "linear"})
    assert point.absolute["anneal"] == "linear"
    point = only("cosine_restarts").point("cosine_restarts", {"learning_rate": 0.1, "t_mul": 1.0})
    assert point.absolute["t_mul"] == 1.0


# --- 3. study-file overrides ------------------------------------------------------------------


def test_a_scalar_fixes_a_parameter() -> None:
    space = space_of("[space]\nfamilies = ['cosine']\n[space.cosine]\nalpha = 0.05\n")
    trial, point = ask(space)
    assert "cosine.alpha" not in trial.params
    assert "cosine.warmup_epochs" in trial.params
    assert point.relative["alpha"] == 0.05
    assert point.absolute["alpha"] == 0.05


def test_a_range_narrows_the_distribution() -> None:
    space = space_of(
        "[space]\nfamilies = ['onecycle']\n[space.onecycle]\npct_start = [0.2, 0.3]\n"
    )
    study = optuna.create_study()
    for _ in range(10):
        trial, point = ask(space, study)
        assert trial.distributions["onecycle.pct_start"] == FloatDistribution(0.2, 0.3)
        assert 0.2 <= point.absolute["pct_start"] <= 0.3
    # the untouched ones keep their registry defaults
    assert trial.distributions["onecycle.div_factor"] == FloatDistribution(5.0, 100.0, log=True)


def test_an_int_range() -> None:
    space = space_of("[space]\nfamilies = ['plateau']\n[space.plateau]\npatience = [2, 4]\n")
    trial, point = ask(space)
    assert trial.distributions["plateau.patience"] == IntDistribution(2, 4)
    assert point.absolute["patience"] in (2, 3, 4)


@pytest.mark.parametrize(
    ("table", "distribution"),
    [
        ("{ low = 10, high = 20, log = false }", FloatDistribution(10.0, 20.0)),
        ("{ low = 10, high = 20 }", FloatDistribution(10.0, 20.0, log=True)),  # keeps log
        ("{ low = 1e-3, high = 0.5, log = true }", FloatDistribution(1e-3, 0.5, log=True)),
    ],
)
def test_a_range_table(table: str, distribution: FloatDistribution) -> None:
    space = space_of(f"[space]\nfamilies = ['onecycle']\n[space.onecycle]\ndiv_factor = {table}\n")
    trial, _ = ask(space)
    assert trial.distributions["onecycle.div_factor"] == distribution


def test_a_list_of_choices() -> None:
    space = space_of(
        "[space]\nfamilies = ['wsd']\n[space.wsd]\ndecay_shape = ['cosine', 'sqrt']\n"
    )
    study = optuna.create_study()
    for _ in range(8):
        trial, point = ask(space, study)
        assert trial.distributions["wsd.decay_shape"] == CategoricalDistribution(
            ["cosine", "sqrt"]
        )
        assert point.absolute["decay_shape"] in ("cosine", "sqrt")


def test_a_fixed_choice() -> None:
    space = space_of("[space]\nfamilies = ['onecycle']\n[space.onecycle]\nanneal = 'linear'\n")
    trial, point = ask(space)
    assert "onecycle.anneal" not in trial.params
    assert point.relative["anneal"] == point.absolute["anneal"] == "linear"


def test_an_absolute_parameter_may_replace_a_fixed_search_parameter() -> None:
    # plateau's min_lr_ratio is fixed at 0 by default, so an absolute floor is no conflict
    space = space_of(
        "[space]\nfamilies = ['plateau', 'wsd']\n[space.plateau]\nmin_learning_rate = 1e-5\n"
        "[space.wsd]\ndecay_fraction = 0.2\ndecay_steps = 50\n"
    )
    assert space.point("plateau", {"learning_rate": 0.1}).absolute["min_learning_rate"] == 1e-5
    assert space.point("wsd", {"learning_rate": 0.1}).absolute["decay_steps"] == 50


def test_a_fixed_absolute_schedule_parameter() -> None:
    space = space_of(
        "[space]\nfamilies = ['onecycle', 'plateau']\n[space.onecycle]\nthree_phase = true\n"
        "[space.plateau]\nmin_delta = 0.01\ncooldown = 2\n"
    )
    assert space.fixed_absolute == {
        "onecycle": {"three_phase": True},
        "plateau": {"min_delta": 0.01, "cooldown": 2},
    }
    onecycle = space.point("onecycle", {"learning_rate": 0.1, "pct_start": 0.3})
    assert onecycle.absolute["three_phase"] is True
    assert "three_phase" not in onecycle.relative
    plateau = space.point("plateau", {"learning_rate": 0.1})
    assert plateau.absolute["min_delta"] == 0.01 and plateau.absolute["cooldown"] == 2
    trial, point = ask(space)
    assert not any("three_phase" in name or "cooldown" in name for name in trial.params)


@pytest.mark.parametrize("spec", ["0.003", "[0.003, 0.003]"])
def test_a_fixed_learning_rate(spec: str) -> None:
    space = space_of(f"[space]\nfamilies = ['cosine', 'wsd']\nlearning_rate = {spec}\n")
    assert space.learning_rate.is_fixed
    study = optuna.create_study()
    for _ in range(5):
        trial, point = ask(space, study)
        assert "learning_rate" not in trial.params
        assert point.relative["learning_rate"] == point.absolute["learning_rate"] == 0.003


def test_a_learning_rate_range() -> None:
    space = space_of("[space]\nfamilies = ['constant']\nlearning_rate = [1e-3, 0.3]\n")
    trial, point = ask(space)
    assert trial.distributions["learning_rate"] == FloatDistribution(1e-3, 0.3, log=True)
    assert trial.params == {"family": "constant", "learning_rate": point.absolute["learning_rate"]}


def test_dimension_corners() -> None:
    assert Dimension("x", "float", 0.1, 0.5).corners() == [0.1, 0.5]
    assert Dimension("x", "choice", choices=("a", "b")).corners() == ["a", "b"]
    assert Dimension("x", "float", fixed=0.2).corners() == [0.2]
    assert Dimension("x", "float", fixed=0.2).is_fixed


def test_degenerate_default_range_is_fixed() -> None:
    # plateau's min_lr_ratio defaults to [0, 0], and patience to [1, max(epochs // 4, 1)]
    space = only("plateau", Budget(epochs=3, steps_per_epoch=10))
    trial, point = ask(space)
    assert "plateau.min_lr_ratio" not in trial.params
    assert "plateau.patience" not in trial.params
    assert point.relative["min_lr_ratio"] == 0.0 and point.absolute["patience"] == 1


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_study_spaces_build(path: Path) -> None:
    cfg, _ = load_study_file(path)
    budget = Budget(epochs=cfg.training.epochs, steps_per_epoch=23)
    space = SearchSpace.from_config(cfg.space, budget, optimizer=cfg.training.optimizer)
    assert space.families == tuple(cfg.space.families)
    study = optuna.create_study()
    for _ in range(10):
        _, point = ask(space, study)
        assert_valid(point)


def test_cnn_digits_overrides() -> None:
    cfg, _ = load_study_file(STUDIES / "cnn-digits.toml")
    space = SearchSpace.from_config(cfg.space, Budget(10, 45), optimizer="sgd")
    dims = {d.name: d for _, d in space.dimensions["onecycle"]}
    assert (dims["onecycle.pct_start"].low, dims["onecycle.pct_start"].high) == (0.15, 0.45)
    assert dims["onecycle.anneal"].fixed == "cos"
    plateau = {d.name: d for _, d in space.dimensions["plateau"]}
    assert plateau["plateau.patience"].kind == "int"
    assert (plateau["plateau.patience"].low, plateau["plateau.patience"].high) == (1, 3)
    assert (space.learning_rate.low, space.learning_rate.high) == (1e-3, 0.3)


# --- 4. errors --------------------------------------------------------------------------------

ERRORS: list[tuple[str, str, tuple[str, ...]]] = [
    ("low-gt-high", "[space.cosine]\nalpha = [0.1, 0.0]", ("space.cosine.alpha", "low > high")),
    (
        "lr-low-gt-high",
        "[space]\nlearning_rate = [0.1, 0.001]",
        ("space.learning_rate", "low > high"),
    ),
    (
        "log-range-zero",
        "[space.onecycle]\ndiv_factor = [0, 10]",
        ("space.onecycle.div_factor", "log range needs low > 0"),
    ),
    (
        "log-table-negative",
        "[space.cosine]\nalpha = { low = -0.1, high = 0.1, log = true }",
        ("space.cosine.alpha", "log range needs low > 0"),
    ),
    (
        "lr-log-zero",
        "[space]\nlearning_rate = [0.0, 0.1]",
        ("space.learning_rate", "log range needs low > 0"),
    ),
    (
        "int-non-integer",
        "[space.plateau]\npatience = [1.5, 3]",
        ("space.plateau.patience", "whole numbers"),
    ),
    (
        "pct-start-zero",
        "[space.onecycle]\npct_start = [0.0, 0.5]",
        ("space.onecycle", "invalid onecycle schedules", "pct_start"),
    ),
    (
        "alpha-above-one",
        "[space.cosine]\nalpha = [0.0, 2.0]",
        ("space.cosine", "invalid cosine schedules", "alpha"),
    ),
    (
        "factor-one",
        "[space.plateau]\nfactor = [0.5, 1.0]",
        ("space.plateau", "invalid plateau", "factor"),
    ),
    (
        "min-lr-ratio-one",
        "[space.plateau]\nmin_lr_ratio = [0.0, 1.0]",
        ("space.plateau", "min_learning_rate"),
    ),
    (
        "fixed-invalid",
        "[space.warmup_decay]\ndecay_rate = 1.0",
        ("space.warmup_decay", "decay_rate"),
    ),
    (
        "fixed-absolute-invalid",
        "[space.onecycle]\nthree_phase = 1",
        ("space.onecycle", "three_phase", "true or false"),
    ),
    ("empty-choices", "[space.wsd]\ndecay_shape = []", ("space.wsd.decay_shape", "at least one")),
    (
        "choice-range-table",
        "[space.onecycle]\nanneal = { low = 0, high = 1 }",
        ("space.onecycle.anneal", "takes one of", "'cos'"),
    ),
    (
        "choice-numeric-range",
        "[space.onecycle]\nanneal = [0.1, 0.5]",
        ("space.onecycle", "anneal", "must be a string"),
    ),
    (
        "unknown-choice",
        "[space.wsd]\ndecay_shape = ['linear', 'exp']",
        ("space.wsd", "decay_shape", "'exp'"),
    ),
    (
        "unknown-fixed-choice",
        "[space.onecycle]\nanneal = 'cosine'",
        ("space.onecycle", "anneal", "'cosine'"),
    ),
    (
        "range-of-three",
        "[space.cosine]\nalpha = [0.0, 0.1, 0.2]",
        ("space.cosine.alpha", "[low, high]"),
    ),
    (
        "range-of-strings",
        "[space.cosine]\nalpha = ['a', 'b']",
        ("space.cosine.alpha", "[low, high]"),
    ),
    (
        "table-without-high",
        "[space.cosine]\nalpha = { low = 0.0 }",
        ("space.cosine.alpha", "{low, high, log}"),
    ),
    (
        "table-with-junk",
        "[space.cosine]\nalpha = { low = 0.0, high = 0.1, step = 0.01 }",
        ("space.cosine.alpha", "{low, high, log}"),
    ),
    ("lr-string", "[space]\nlearning_rate = 'fast'", ("space.learning_rate", "'fast'")),
    ("lr-zero", "[space]\nlearning_rate = 0", ("space.learning_rate", "> 0")),
    ("lr-negative", "[space]\nlearning_rate = -0.1", ("space.learning_rate", "> 0")),
    ("lr-bool", "[space]\nlearning_rate = true", ("space.learning_rate", "True")),
    ("lr-inf", "[space]\nlearning_rate = [1e-3, inf]", ("space.learning_rate", "inf")),
    # an absolute parameter that would silently override a searched (and recorded) value
    (
        "family-learning-rate",
        "[space.cosine]\nlearning_rate = 0.5",
        ("space.cosine.learning_rate", "space.learning_rate"),
    ),
    (
        "absolute-over-searched",
        "[space.wsd]\ndecay_steps = 50",
        ("space.wsd.decay_steps", "wsd.decay_fraction"),
    ),
    (
        "warmup-steps-over-searched",
        "[space.cosine]\nwarmup_steps = 5",
        ("space.cosine.warmup_steps", "cosine.warmup_epochs"),
    ),
    # not numbers where numbers are expected: a ConfigError, not a TypeError or ValueError
    ("fixed-string", "[space.cosine]\nwarmup_epochs = '2'", ("space.cosine.warmup_epochs", "'2'")),
    ("fixed-bool", "[space.cosine]\nwarmup_epochs = true", ("space.cosine.warmup_epochs",)),
    ("fixed-nan", "[space.cosine]\nwarmup_epochs = nan", ("space.cosine.warmup_epochs", "nan")),
    ("fixed-inf", "[space.cyclic]\nbase_lr_ratio = inf", ("space.cyclic.base_lr_ratio", "inf")),
    ("fixed-huge", "[space.cosine]\nwarmup_epochs = 1e308", ("space.cosine", "warmup")),
    ("range-nan", "[space.wsd]\ndecay_fraction = [0.1, nan]", ("space.wsd.decay_fraction",)),
    ("int-range-nan", "[space.plateau]\npatience = [1, nan]", ("space.plateau.patience",)),
    ("range-huge", "[space.cosine_restarts]\nfirst_cycle = [0.1, 1e308]", ("first_cycle",)),
    (
        "table-strings",
        "[space.cosine]\nalpha = { low = 'a', high = 'b' }",
        ("space.cosine.alpha",),
    ),
    ("table-mixed", "[space.cosine]\nalpha = { low = 0, high = 'b' }", ("space.cosine.alpha",)),
    (
        "ratio-string",
        "[space.polynomial]\nend_lr_ratio = 'x'",
        ("space.polynomial.end_lr_ratio", "'x'"),
    ),
]


@pytest.mark.parametrize(
    ("toml", "fragments"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_bad_space_gives_one_line_config_error(toml: str, fragments: tuple[str, ...]) -> None:
    family = toml.removeprefix("[space.").split("]")[0] if toml.startswith("[space.") else None
    families = f"families = ['{family}']\n" if family else "families = ['cosine']\n"
    if toml.startswith("[space]"):
        text = "[space]\n" + families + toml.removeprefix("[space]\n") + "\n"
    else:
        text = "[space]\n" + families + toml + "\n"
    with pytest.raises(ConfigError) as info:
        space_of(text)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_default_space_rejects_a_budget_too_short_for_onecycle() -> None:
    # pct_start's default low 0.1 needs more than 10 steps: caught before any training
    with pytest.raises(ConfigError, match="invalid onecycle schedules for 2 epochs x 5 steps"):
        only("onecycle", Budget(epochs=2, steps_per_epoch=5))
    only("onecycle", Budget(epochs=2, steps_per_epoch=6))


# --- 5. baselines -----------------------------------------------------------------------------

S = 45  # steps per epoch of the article's data (digits, batch 32)


@pytest.fixture(scope="module")
def article() -> tuple[Any, SearchSpace]:
    cfg, _ = load_study_file(STUDIES / "article-baselines.toml")
    budget = Budget(epochs=cfg.training.epochs, steps_per_epoch=S)
    return cfg, SearchSpace.from_config(cfg.space, budget, optimizer=cfg.training.optimizer)


ARTICLE = {
    "cosine": (
        {"learning_rate": 0.01, "alpha": 0.0},
        {
            "learning_rate": 0.01,
            "alpha": 0.0,
            "decay_steps": 1000,
            "warmup_steps": 0,
            "warmup_start_factor": 0.0,
        },
        {"family": "cosine", "learning_rate": 0.01, "cosine.alpha": 0.0},
    ),
    "warmup_decay": (
        {"learning_rate": 0.002, "warmup_epochs": 4, "decay_rate": 0.95},
        {
            "learning_rate": 0.002,
            "warmup_steps": 4 * S,
            "decay_rate": 0.95,
            "staircase": True,
            "steps_per_epoch": S,
            "warmup_start_factor": 0.6,
        },
        {
            "family": "warmup_decay",
            "learning_rate": 0.002,
            "warmup_decay.warmup_epochs": 4,
            "warmup_decay.decay_rate": 0.95,
        },
    ),
    "polynomial": (
        {"learning_rate": 0.01, "power": 1.0, "warmup_epochs": 0},
        {
            "learning_rate": 0.01,
            "end_learning_rate": 1e-4,
            "power": 1.0,
            "decay_steps": 1000,
            "warmup_steps": 0,
            "warmup_start_factor": 0.0,
        },
        {
            "family": "polynomial",
            "learning_rate": 0.01,
            "polynomial.power": 1.0,
            "polynomial.warmup_epochs": 0,
        },
    ),
    "plateau": (
        {"learning_rate": 0.001, "factor": 0.1, "patience": 10, "warmup_epochs": 0},
        {
            "learning_rate": 0.001,
            "factor": 0.1,
            "patience": 10,
            "min_delta": 1e-4,
            "cooldown": 0,
            "min_learning_rate": 1e-5,
            "monitor": "val_loss",
            "mode": "min",
            "warmup_steps": 0,
            "warmup_start_factor": 0.0,
        },
        {
            "family": "plateau",
            "learning_rate": 0.001,
            "plateau.factor": 0.1,
            "plateau.patience": 10,
            "plateau.warmup_epochs": 0,
        },
    ),
}


@pytest.mark.parametrize("index", range(4), ids=list(ARTICLE))
def test_article_baseline_points(article: tuple[Any, SearchSpace], index: int) -> None:
    cfg, space = article
    baseline = cfg.baseline[index]
    relative, absolute, params = ARTICLE[baseline.family]
    point = space.baseline_point(baseline)
    assert point.family == baseline.family
    assert point.total_steps == 20 * S
    assert point.relative == relative
    assert point.absolute == absolute
    assert space.enqueue_params(point) == params
    assert_valid(point)


@pytest.mark.parametrize("index", range(4), ids=list(ARTICLE))
def test_enqueue_and_replay_record_exactly_the_baseline(
    article: tuple[Any, SearchSpace], index: int
) -> None:
    cfg, space = article
    point = space.baseline_point(cfg.baseline[index])
    params = space.enqueue_params(point)
    study = optuna.create_study()
    study.enqueue_trial(params)
    trial = study.ask()
    with warnings.catch_warnings():
        # the article's patience=10 is outside the searched [1, 5]: Optuna warns, keeps it
        warnings.filterwarnings("ignore", message="Fixed parameter", category=UserWarning)
        space.replay(trial, point)
    assert trial.params == params
    study.tell(trial, 0.5)
    # the sampler carries on from a study that holds the baseline
    trial, point = ask(space, study)
    assert_valid(point)


def test_enqueue_params_skip_fixed_dimensions() -> None:
    space = space_of(
        "[space]\nfamilies = ['onecycle']\nlearning_rate = 0.05\n"
        "[space.onecycle]\nanneal = 'linear'\n"
    )
    cfg = parse_study_config(
        {
            "study": {"name": "t"},
            "baseline": [{"family": "onecycle", "learning_rate": 0.05, "pct_start": 0.25}],
        }
    )
    point = space.baseline_point(cfg.baseline[0])
    params = space.enqueue_params(point)
    assert params == {"family": "onecycle", "onecycle.pct_start": 0.25}
    study = optuna.create_study()
    study.enqueue_trial(params)
    trial = study.ask()
    space.replay(trial, point)
    assert trial.params == params


def _baseline(**keys: Any) -> Any:
    cfg = parse_study_config({"study": {"name": "t"}, "baseline": [keys]})
    return cfg.baseline[0]


@pytest.mark.parametrize(
    ("keys", "fragments"),
    [
        (
            {"family": "cosine", "learning_rate": 0.1, "decay_step": 10},
            ("baseline.decay_step", "not a parameter of cosine", "decay_steps"),
        ),
        (
            {"family": "warmup_decay", "learning_rate": 0.1, "decay_rate": 1.5, "name": "b1"},
            ("baseline 'b1'", "decay_rate"),
        ),
        (
            {"family": "plateau", "learning_rate": 0.001, "min_learning_rate": 0.01},
            ("baseline 'plateau'", "min_learning_rate"),
        ),
        (
            {"family": "cosine", "learning_rate": 0.1, "warmup_epochs": "4"},
            ("baseline", "warmup_epochs", "'4'"),
        ),
        (
            {"family": "polynomial", "learning_rate": 0.1, "end_lr_ratio": "x"},
            ("baseline", "end_lr_ratio"),
        ),
        (
            {"family": "cosine", "learning_rate": 0.1, "warmup_epochs": 1e308},
            ("baseline", "warmup"),
        ),
    ],
    ids=["unknown-key", "invalid-value", "min-lr-above-lr", "string", "ratio-string", "huge"],
)
def test_bad_baselines(keys: dict[str, Any], fragments: tuple[str, ...]) -> None:
    space = SearchSpace.from_config(SpaceConfig(), BUDGET)
    with pytest.raises(ConfigError) as info:
        space.baseline_point(_baseline(**keys))
    assert "\n" not in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


# --- 6. samplers and fuzz ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampler",
    [
        lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
        lambda: optuna.samplers.TPESampler(
            seed=0, n_startup_trials=5, multivariate=True, group=True, constant_liar=True
        ),
    ],
    ids=["tpe", "tpe-multivariate-group"],
)
def test_tpe_on_the_conditional_space_of_all_families(sampler: Any) -> None:
    space = SearchSpace.from_config(SpaceConfig(), BUDGET)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(sampler=sampler(), direction="maximize")
        families = set()
        for _ in range(20):
            trial = study.ask()
            point = space.suggest(trial)
            assert_valid(point)
            families.add(point.family)
            study.tell(trial, float(rng.random()))
    assert len(study.trials) == 20
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len(families) >= 3


_number = st.one_of(
    st.floats(min_value=-2, max_value=120, allow_nan=False),
    st.integers(min_value=-2, max_value=50),
    st.sampled_from([0, 0.0, 1, 0.5, float("nan"), float("inf"), -float("inf"), 1e308]),
)
_spec = st.one_of(
    _number,
    st.booleans(),
    st.sampled_from(["cos", "linear", "sqrt", "triangular2", "x", ""]),
    st.lists(_number, min_size=2, max_size=2).map(sorted),
    st.lists(st.one_of(_number, st.sampled_from(["cos", "linear", "triangular"])), max_size=3),
    st.fixed_dictionaries(
        {"low": _number, "high": _number}, optional={"log": st.booleans(), "step": _number}
    ),
)


@st.composite
def _space_and_budget(draw: Any) -> tuple[dict[str, Any], Budget]:
    families = draw(st.lists(st.sampled_from(FAMILY_NAMES), min_size=1, max_size=3, unique=True))
    space: dict[str, Any] = {"families": families}
    if draw(st.booleans()):
        space["learning_rate"] = draw(_spec)
    for name in families:
        family = FAMILIES[name]
        keys = [p.name for p in family.search] + list(family.param_names)
        space[name] = draw(st.dictionaries(st.sampled_from(keys), _spec, max_size=3))
    budget = Budget(
        epochs=draw(st.integers(1, 40)),
        steps_per_epoch=draw(st.integers(1, 40)),
        monitor=draw(st.sampled_from(["val_loss", "val_accuracy"])),
        mode=draw(st.sampled_from(["min", "max"])),
    )
    return space, budget


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_space_and_budget(), st.sampled_from(["adam", "sgd"]))
def test_fuzz_space_overrides(case: tuple[dict[str, Any], Budget], optimizer: str) -> None:
    """A space either fails at once with a ConfigError, or every sample is a valid schedule."""
    raw, budget = case
    try:
        cfg = parse_study_config({"study": {"name": "t"}, "space": raw})
        space = SearchSpace.from_config(cfg.space, budget, optimizer=optimizer)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        trial = study.ask()
        point = space.suggest(trial)
        assert_valid(point)
        assert all(math.isfinite(v) for v in point.absolute.values() if isinstance(v, float))
        study.tell(trial, 0.0)


def test_bounded_keeps_the_files_scale_and_checks_the_bounds() -> None:
    """A stored range (find-lr) keeps a linear learning rate linear: Optuna refuses a parameter
    whose log flag changes within a study."""
    budget = Budget(epochs=4, steps_per_epoch=10)
    linear = SpaceConfig(
        families=["cosine"], learning_rate={"low": 1e-3, "high": 0.1, "log": False}
    )
    space = SearchSpace.from_config(linear, budget).bounded(0.01, 0.05)
    lr = space.learning_rate
    assert (lr.low, lr.high, lr.log) == (0.01, 0.05, False)
    logged = SearchSpace.from_config(SpaceConfig(families=["cosine"]), budget).bounded(0.01, 0.05)
    assert logged.learning_rate.log is True
    for low, high in [(0.05, 0.01), (0.0, 0.1), (0.1, 11.0)]:
        with pytest.raises(ConfigError, match="learning-rate bounds"):
            space.bounded(low, high)
    fixed = SearchSpace.from_config(SpaceConfig(families=["cosine"], learning_rate=0.01), budget)
    with pytest.raises(ConfigError, match="fixes the learning rate"):
        fixed.bounded(0.01, 0.05)
