"""End-to-end tests of one trial: real Keras trainings, real Optuna studies on SQLite files.

Every training here is tiny (200-odd digits, a 16-unit MLP, 3-4 epochs, batch 64) so the whole
module runs in well under a minute on a 2-core CPU.
"""

from __future__ import annotations

import gc
import math
import signal
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from lrsearch.config import StudyConfig, parse_study_config
from lrsearch.objective import load_data, make_budget, train
from lrsearch.schedules import FAMILIES, build_schedule
from lrsearch.space import SchedulePoint, SearchSpace
from lrsearch.study import best_trial, make_pruner, run_study, stored_config, study_status

EPOCHS = 3
LIMIT = 240  # training samples: ceil(240 / 64) = 4 steps per epoch
HISTORY_KEYS = ("epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy")


def tiny_config(name: str = "tiny", **sections: dict[str, Any]) -> StudyConfig:
    """A study config that trains in about a second; ``sections`` replace or extend the base."""
    data: dict[str, Any] = {
        "study": {"name": name, "n_trials": 2, "seed": 0},
        "data": {"source": "digits", "limit": LIMIT, "batch_size": 64},
        "model": {"type": "mlp", "hidden": [16]},
        "training": {"epochs": EPOCHS},
    }
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return parse_study_config(data)


def space_of(config: StudyConfig) -> tuple[SearchSpace, int]:
    dataset = load_data(config)
    budget = make_budget(config, dataset)
    space = SearchSpace.from_config(config.space, budget, optimizer=config.training.optimizer)
    return space, budget.steps_per_epoch


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# --- train() for every family --------------------------------------------------------------------

# Plateau's patience is fixed high so no cut can happen: its lr is then the schedule's own.
FAMILY_CONFIG = tiny_config("families", space={"plateau": {"patience": 50}})


def _sampled_point(family: str) -> SchedulePoint:
    space, _ = space_of(FAMILY_CONFIG)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    study.enqueue_trial({"family": family})
    point = space.suggest(study.ask())
    assert point.family == family
    return point


@pytest.mark.parametrize("family", list(FAMILIES), ids=list(FAMILIES))
def test_train_every_family_records_history_and_schedule_lr(family: str) -> None:
    config = FAMILY_CONFIG
    point = _sampled_point(family)
    _, steps_per_epoch = space_of(config)

    result = train(config, load_data(config), point, seed=0)

    assert result.outcome == "complete", result
    assert result.epochs_run == EPOCHS
    assert result.diverged_at_step is None
    history = result.history
    for key in HISTORY_KEYS:
        assert len(history[key]) == EPOCHS, (key, history)
    assert history["epoch"] == list(range(1, EPOCHS + 1))
    assert all(math.isfinite(v) for key in HISTORY_KEYS for v in history[key])
    assert result.value == history["val_accuracy"][-1]
    assert result.train_seconds > 0 and 0 <= result.startup_seconds <= result.train_seconds

    # The lr an epoch trains with is the schedule at the epoch's first step (float32).
    schedule = point.build()
    expected = [float(schedule(e * steps_per_epoch)) for e in range(EPOCHS)]
    np.testing.assert_allclose(history["lr"], expected, rtol=1e-5, atol=1e-10)


def test_plateau_cuts_show_in_the_history() -> None:
    # min_delta = 1.0: no change of val_accuracy counts as an improvement, so with patience 1
    # every epoch after the first cuts the learning rate in half.
    config = tiny_config(
        "plateau-cuts",
        training={"epochs": 4},
        space={
            "families": ["plateau"],
            "learning_rate": 1e-4,
            "plateau": {"patience": 1, "factor": 0.5, "warmup_epochs": 0, "min_delta": 1.0},
        },
    )
    space, _ = space_of(config)
    point = space.suggest(optuna.create_study().ask())
    assert point.absolute["min_delta"] == 1.0 and point.absolute["patience"] == 1

    result = train(config, load_data(config), point, seed=0)

    assert result.outcome == "complete"
    np.testing.assert_allclose(result.history["lr"], [1e-4, 1e-4, 5e-5, 2.5e-5], rtol=1e-5)
    # Without the callback the same schedule is a constant: the cuts came from the plateau logic.
    assert float(point.build()(3 * 4)) == pytest.approx(1e-4, rel=1e-6)


# --- divergence ----------------------------------------------------------------------------------


def _sgd_constant(name: str, learning_rate: Any, **study: Any) -> StudyConfig:
    return tiny_config(
        name,
        study={"name": name, **study},
        training={"optimizer": "sgd", "momentum": 0.9},
        space={"families": ["constant"], "learning_rate": learning_rate},
    )


def test_huge_sgd_learning_rate_diverges_and_stops_early() -> None:
    config = _sgd_constant("diverge", 1e6)
    space, steps_per_epoch = space_of(config)
    point = space.point("constant", {"learning_rate": 1e6})

    result = train(config, load_data(config), point, seed=0)

    assert result.outcome == "diverged", result.history
    step = result.diverged_at_step
    assert isinstance(step, int) and not isinstance(step, bool) and step >= 1
    assert result.epochs_run < EPOCHS
    assert step < EPOCHS * steps_per_epoch
    # It really blew up: the loss that stopped it is non-finite or far above the first one.
    last_loss = result.history["loss"][-1]
    assert not math.isfinite(last_loss) or last_loss > config.training.divergence_factor


def test_diverged_trial_is_pruned_with_nan_and_the_study_goes_on(tmp_path: Path) -> None:
    config = tiny_config(
        "diverge-study",
        study={"name": "diverge-study", "n_trials": 2},
        training={"optimizer": "sgd"},
        space={"families": ["constant"], "learning_rate": [1e-3, 1e6]},
        baseline=[
            {"family": "constant", "name": "huge", "learning_rate": 1e6},
            {"family": "constant", "name": "sane", "learning_rate": 0.01},
        ],
    )
    url = sqlite_url(tmp_path / "diverge.db")
    lines: list[str] = []

    summary = run_study(config, storage_url=url, progress=False, echo=lines.append)

    assert summary.finished == 2 and summary.ran == 2
    study = optuna.load_study(study_name="diverge-study", storage=url)
    first, second = study.trials
    assert first.state == TrialState.PRUNED
    assert first.user_attrs["outcome"] == "diverged"
    step = first.user_attrs["diverged_at_step"]
    assert isinstance(step, int) and step >= 1
    assert first.user_attrs["epochs_run"] < EPOCHS
    last_epoch = max(first.intermediate_values)
    assert math.isnan(first.intermediate_values[last_epoch])
    # The history is stored as strict JSON (no NaN) and the study carried on.
    assert second.state == TrialState.COMPLETE
    assert second.user_attrs["outcome"] == "complete"
    assert f"DIVERGED at step {step}" in lines[0]
    assert study_status("diverge-study", url)["counts"] == {"diverged": 1, "complete": 1}


# --- Ctrl-C --------------------------------------------------------------------------------------


class _Cycle:
    """An object only a full ``gc.collect()`` frees (it refers to itself)."""

    def __init__(self) -> None:
        self.me = self


def test_ctrl_c_during_the_garbage_collection_of_clear_session_is_not_lost() -> None:
    """train() starts with keras.backend.clear_session(), which runs gc.collect(). A Ctrl-C that
    lands in a weakref callback run by that collection used to be swallowed by Python
    ("Exception ignored in ...") and the study went on to its full budget. Here SIGINT is raised
    from exactly such a callback: train() holds it and raises KeyboardInterrupt at the first batch
    end, then gives the SIGINT handler back."""
    config = tiny_config("ctrl-c")
    space, _ = space_of(config)
    point = space.point("constant", {"learning_rate": 1e-3})
    dataset = load_data(config)
    was_enabled = gc.isenabled()
    gc.disable()  # so that only clear_session's gc.collect() frees the cycle
    try:
        cycle = _Cycle()
        weakref.finalize(cycle, signal.raise_signal, signal.SIGINT)
        del cycle
        with pytest.raises(KeyboardInterrupt):
            train(config, dataset, point, seed=0)
    finally:
        if was_enabled:
            gc.enable()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --- pruning, and training the best trial again --------------------------------------------------


@pytest.fixture(scope="module")
def pruned_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A good first trial, then hopeless ones (lr 1e-7) that the median pruner must stop."""
    epochs = 4
    config = tiny_config(
        "prune",
        study={
            "name": "prune",
            "n_trials": 3,
            "pruner": {"name": "median", "start_fraction": 0.1, "n_startup_trials": 1},
        },
        training={"epochs": epochs},
        space={"families": ["cosine", "constant"], "learning_rate": [1e-7, 0.1]},
        baseline=[
            {"family": "cosine", "learning_rate": 0.03, "warmup_epochs": 0.5, "alpha": 0.05},
            {"family": "constant", "learning_rate": 1e-7},
            {"family": "constant", "learning_rate": 1e-7},
        ],
    )
    url = sqlite_url(tmp_path_factory.mktemp("prune") / "prune.db")
    summary = run_study(config, storage_url=url, progress=False, echo=lambda _: None)
    return {"config": config, "url": url, "summary": summary, "epochs": epochs}


def test_median_pruner_prunes_hopeless_trials(pruned_study: dict[str, Any]) -> None:
    config, url, epochs = pruned_study["config"], pruned_study["url"], pruned_study["epochs"]
    assert isinstance(make_pruner(config), optuna.pruners.MedianPruner)
    study = optuna.load_study(study_name="prune", storage=url)
    assert len(study.trials) == 3
    good = study.trials[0]
    assert good.state == TrialState.COMPLETE and good.user_attrs["epochs_run"] == epochs
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [(t.number, t.state, t.intermediate_values) for t in study.trials]
    for t in pruned:
        assert t.user_attrs["outcome"] == "pruned"
        assert t.user_attrs["epochs_run"] < epochs
        assert len(t.user_attrs["history"]["epoch"]) == t.user_attrs["epochs_run"]
        assert max(t.intermediate_values) == t.user_attrs["epochs_run"]
    assert pruned_study["summary"].counts.get("PRUNED", 0) == len(pruned)


def test_best_trial_retrains_from_stored_attributes(pruned_study: dict[str, Any]) -> None:
    url = pruned_study["url"]
    best = best_trial("prune", url)
    study = optuna.load_study(study_name="prune", storage=url)
    frozen = study.trials[best["number"]]
    assert frozen.state == TrialState.COMPLETE

    # The schedule attribute is exactly what build_schedule takes.
    record = frozen.user_attrs["schedule"]
    assert record == best["schedule"]
    rebuilt = build_schedule(
        record["family"], total_steps=record["total_steps"], **record["params"]
    )
    config, text = stored_config("prune", url)
    assert text == ""  # run_study was called without a file
    space, _ = space_of(config)
    point = space.point(record["family"], frozen.user_attrs["relative"])
    assert point.record() == record
    original = point.build()
    for step in (0, 1, 5, record["total_steps"] - 1):
        assert float(rebuilt(step)) == pytest.approx(float(original(step)), rel=1e-6)

    # Train it again from the stored config, schedule and seed.
    stored_point = SchedulePoint(
        family=record["family"],
        relative=frozen.user_attrs["relative"],
        absolute=record["params"],
        total_steps=record["total_steps"],
    )
    dataset = load_data(config)
    result = train(config, dataset, stored_point, seed=frozen.user_attrs["seed"])

    # Same seed, same data, same ops: on CPU this is bit-identical in practice. The tolerance
    # allows one validation sample to flip (and float noise in the loss) in case a thread
    # pool reduces in a different order on another machine.
    assert result.outcome == "complete"
    assert result.value == pytest.approx(frozen.value, abs=1.5 / len(dataset.y_val))
    stored_loss = frozen.user_attrs["history"]["val_loss"][-1]
    assert result.history["val_loss"][-1] == pytest.approx(stored_loss, rel=1e-3)
    np.testing.assert_allclose(result.history["lr"], frozen.user_attrs["history"]["lr"], 1e-6)
