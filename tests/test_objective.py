"""End-to-end tests of one trial: real Keras trainings, real Optuna studies on SQLite files.

Every training here is tiny (200-odd digits, a 16-unit MLP, 3-4 epochs, batch 64) so the whole
module runs in well under a minute on a 2-core CPU.
"""

from __future__ import annotations

import gc
import math
import re
import signal
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from lrsearch._imports import import_keras
from lrsearch.config import MAX_LEARNING_RATE, StudyConfig, parse_study_config
from lrsearch.divergence import DivergenceWatch
from lrsearch.exceptions import ConfigError
from lrsearch.objective import load_data, make_budget, make_optimizer, train
from lrsearch.records import TrialRecord
from lrsearch.runner import run_study
from lrsearch.schedules import FAMILIES, build_schedule
from lrsearch.space import SchedulePoint, SearchSpace
from lrsearch.study import StudyHandle, make_pruner

EPOCHS = 3
LIMIT = 240  # training samples: ceil(240 / 64) = 4 steps per epoch
HISTORY_KEYS = ("epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy")

keras = import_keras()


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
FAMILY_CONFIG = tiny_config(
    "families", space={"families": list(FAMILIES), "plateau": {"patience": 50}}
)


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


@pytest.mark.parametrize(("optimizer", "weight_decay"), [("adam", None), ("adamw", 0.01)])
def test_schedule_free_trains_with_its_optimizer_and_validates_on_the_average(
    optimizer: str, weight_decay: float | None
) -> None:
    """A schedule_free trial trains with keras.optimizers.ScheduleFreeAdamW (its beta_1, the
    study's weight decay under adamw, none under adam); its logged val_loss is the loss of
    the averaged weights, which the trained model holds."""
    config = tiny_config(
        "sf",
        training={"optimizer": optimizer, "weight_decay": 0.01},
        space={
            "families": ["schedule_free"],
            "learning_rate": 0.01,
            "schedule_free": {"beta_1": 0.93, "warmup_epochs": 0.5},
        },
    )
    space, _ = space_of(config)
    point = space.suggest(optuna.create_study().ask())  # every parameter fixed
    dataset = load_data(config)

    result = train(config, dataset, point, seed=0, keep_model=True)

    assert result.outcome == "complete"
    model = result.extra["model"]
    assert type(model.optimizer) is keras.optimizers.ScheduleFreeAdamW
    assert model.optimizer.beta_1 == 0.93
    assert model.optimizer.weight_decay == weight_decay
    logged = result.history["val_loss"][-1]
    loss = model.evaluate(dataset.x_val, dataset.y_val, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(logged, rel=1e-5)
    # the model holds x; its training weights y = beta_1 x + (1 - beta_1) z score otherwise
    opt, beta_1 = model.optimizer, 0.93
    for v in model.trainable_variables:
        z = opt._momentums[opt._get_variable_index(v)]
        v.assign(beta_1 * keras.ops.convert_to_numpy(v) + (1 - beta_1) * np.asarray(z))
    on_y = model.evaluate(dataset.x_val, dataset.y_val, verbose=0, return_dict=True)["loss"]
    assert abs(on_y - logged) > 1e-4 * logged


def test_schedule_free_refuses_sgd() -> None:
    config = tiny_config("sf-sgd", space={"families": ["schedule_free"]})
    sgd = config.model_copy(
        update={"training": config.training.model_copy(update={"optimizer": "sgd"})}
    )
    schedule = build_schedule("schedule_free", total_steps=10)
    with pytest.raises(ConfigError, match="training.optimizer = 'adam' or 'adamw'"):
        make_optimizer(sgd, schedule)


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
    config = _sgd_constant("diverge", MAX_LEARNING_RATE)
    space, steps_per_epoch = space_of(config)
    point = space.point("constant", {"learning_rate": MAX_LEARNING_RATE})

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
        space={"families": ["constant"], "learning_rate": [1e-3, MAX_LEARNING_RATE]},
        baseline=[
            {"family": "constant", "name": "huge", "learning_rate": MAX_LEARNING_RATE},
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
    assert TrialRecord.of(first).outcome == "diverged"
    step = TrialRecord.of(first).diverged_at_step
    assert isinstance(step, int) and step >= 1
    assert TrialRecord.of(first).epochs_run < EPOCHS
    last_epoch = max(first.intermediate_values)
    assert math.isnan(first.intermediate_values[last_epoch])
    # The history is stored as strict JSON (no NaN) and the study carried on.
    assert second.state == TrialState.COMPLETE
    assert TrialRecord.of(second).outcome == "complete"
    assert f"DIVERGED at step {step}" in lines[0]
    assert StudyHandle.open("diverge-study", url).status().counts == {"diverged": 1, "complete": 1}


def _running_means(losses: list[float], batch_size: int, samples: int) -> list[float]:
    """``logs["loss"]`` after each batch of one epoch, computed as Keras's trainers do: a
    float32 ``keras.metrics.Mean`` weighted by each batch's number of samples."""
    mean = keras.metrics.Mean()
    out = []
    for k, loss in enumerate(losses):
        size = min(batch_size, samples - k * batch_size)
        mean.update_state(loss, sample_weight=size)
        out.append(float(mean.result()))
    return out


def test_divergence_watch_recovers_each_batch_loss_from_the_running_mean() -> None:
    """Two epochs of 10 batches (the last one partial: 75 = 9 x 8 + 3 samples). The recovered
    losses match the batches' own to float32 precision; a 5x spike at batch 7 of the second
    epoch (step 17) trips a factor of 4 although the running mean then is only ~1.5x."""
    rng = np.random.default_rng(0)
    batch_size, samples = 8, 75
    epochs = [list(2.3 * rng.uniform(0.6, 1.0, 10)), list(2.0 * rng.uniform(0.6, 1.0, 10))]
    epochs[1][6] = 5 * 2.3
    watch = DivergenceWatch(4.0, samples=samples, batch_size=batch_size)
    recovered, diverged = [], []
    for losses in epochs:
        watch.start_epoch()
        for batch, mean in enumerate(_running_means(losses, batch_size, samples)):
            diverged.append(watch.update(batch, mean))
            recovered.append(watch.loss)
            assert watch.update(batch, mean) == diverged[-1]  # a repeat changes nothing
            assert recovered[-1] == watch.loss

    np.testing.assert_allclose(recovered, epochs[0] + epochs[1], rtol=1e-5)
    assert watch.first_loss == pytest.approx(epochs[0][0], rel=1e-6)
    assert diverged == [False] * 16 + [True] * 4  # True from the spike on
    assert watch.diverged_at_step == 17 and watch.steps == 20
    assert watch.diverged_loss == pytest.approx(5 * 2.3, rel=1e-5)
    # The running mean Keras logs at the spike stayed far under the limit.
    assert _running_means(epochs[1], batch_size, samples)[6] < 2 * epochs[0][0]


def test_divergence_watch_takes_batches_reported_out_of_order_and_from_threads() -> None:
    """Keras runs an ``async_safe`` callback's batch ends in a thread pool (JAX), so they may
    come out of order: each batch waits for the ones before it, and the result is the same."""
    rng = np.random.default_rng(1)
    batch_size, samples, n = 8, 75, 10
    epochs = [list(2.3 * rng.uniform(0.6, 1.0, n)) for _ in range(3)]
    epochs[1][6] = 5 * 2.3  # step 17
    epochs[2][2] = math.nan  # after the first divergence: step 17 is kept
    watch = DivergenceWatch(4.0, samples=samples, batch_size=batch_size)

    watch.start_epoch()
    reports = list(enumerate(_running_means(epochs[0], batch_size, samples)))
    assert [watch.update(*r) for r in reports[::-1]] == [False] * n  # batch 0 comes last
    assert watch.steps == 10 and watch.loss == pytest.approx(epochs[0][-1], rel=1e-5)
    assert watch.first_loss == pytest.approx(epochs[0][0], rel=1e-6)
    for losses in epochs[1:]:
        watch.start_epoch()
        reports = list(enumerate(_running_means(losses, batch_size, samples)))
        rng.shuffle(reports)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda r: watch.update(*r), reports))
    assert watch.steps == 30 and watch.diverged_at_step == 17
    assert watch.diverged_loss == pytest.approx(5 * 2.3, rel=1e-5)


def test_divergence_watch_with_steps_per_execution() -> None:
    """With ``steps_per_execution = 3`` Keras reports after batches 2, 5, 8 and the short last
    execution's 9: each report gives the mean loss of its batches."""
    losses = [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 40.0]
    means = _running_means(losses, 8, 75)
    watch = DivergenceWatch(10.0, samples=75, batch_size=8, steps_per_execution=3)
    watch.start_epoch()
    assert [watch.update(b, means[b]) for b in (2, 5, 8)] == [False] * 3
    assert watch.first_loss == pytest.approx(2.0) and watch.steps == 9
    assert watch.update(9, means[9]) is True
    assert watch.diverged_at_step == 10 and watch.diverged_loss == pytest.approx(40.0, rel=1e-5)


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_divergence_watch_trips_on_a_non_finite_loss_even_at_the_first_batch(bad: float) -> None:
    watch = DivergenceWatch(10.0, samples=64, batch_size=16)
    watch.start_epoch()
    assert watch.update(0, bad) is True
    assert watch.diverged_at_step == 1
    later = DivergenceWatch(10.0, samples=64, batch_size=16)
    later.start_epoch()
    assert [later.update(b, m) for b, m in enumerate([2.0, 2.0, bad])] == [False, False, True]
    assert later.diverged_at_step == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor": 1.0}, "Argument `factor` must be > 1. Received: factor=1.0"),
        ({"samples": 0}, "Argument `samples` must be an integer >= 1. Received: 0"),
        ({"batch_size": True}, "Argument `batch_size` must be an integer >= 1. Received: True"),
        (
            {"steps_per_execution": 1.0},
            "Argument `steps_per_execution` must be an integer >= 1. Received: 1.0",
        ),
    ],
    ids=["factor", "samples", "batch_size", "steps_per_execution"],
)
def test_divergence_watch_validates_its_arguments(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"factor": 10.0, "samples": 10, "batch_size": 4, **kwargs}
    factor = args.pop("factor")
    with pytest.raises(ValueError, match=re.escape(message)):
        DivergenceWatch(factor, **args)


# Batch 4 on 240 digits: 60 steps per epoch, so a spike mid-epoch is diluted by the running mean
# Keras logs as ``loss`` (~50 batches before it), while the batch's own loss shows it whole.
SPIKE_STEP = 51  # the first batch whose loss is computed with the kicked weights
SPIKE_FACTOR = 3.0


@dataclass(frozen=True)
class _KickPoint:
    """Stands in for a :class:`SchedulePoint`: ``train`` needs only ``family`` and ``build``."""

    kick_at: int  # optimizer step (0-based) whose update uses the huge learning rate
    kick: float
    base: float = 1e-3
    family: str = "constant"

    def build(self) -> Any:
        return _Kick(self.kick_at, self.kick, self.base)


class _Kick(keras.optimizers.schedules.LearningRateSchedule):
    """``base`` everywhere except one step at ``kick``: one bad update, then normal training."""

    def __init__(self, kick_at: int, kick: float, base: float) -> None:
        self.kick_at, self.kick, self.base = kick_at, kick, base

    def __call__(self, step: Any) -> Any:
        ops = keras.ops
        return ops.where(ops.equal(step, self.kick_at), self.kick, self.base)

    def get_config(self) -> dict[str, Any]:
        return {"kick_at": self.kick_at, "kick": self.kick, "base": self.base}


def _batch_config(name: str, *, limit: int, epochs: int, factor: float) -> StudyConfig:
    return tiny_config(
        name,
        data={"limit": limit, "batch_size": 4},
        training={"epochs": epochs, "divergence_factor": factor},
    )


def test_a_loss_spike_mid_epoch_diverges_at_its_own_batch() -> None:
    """One Adam update at lr 3 (step 50) makes batch 51's loss ~5-15x the first batch's (TF
    ~35, JAX ~12: its crossentropy clips probabilities), but the epoch's running mean at batch
    51 is still ~2.5-3, far under the limit of 3x the first loss (~7): the old rule on the
    running mean let it pass (it tripped at batch 54 on TensorFlow, at 61, in the next epoch, on
    JAX); the batch's own loss trips at batch 51 and the training stops there."""
    config = _batch_config("spike", limit=240, epochs=2, factor=SPIKE_FACTOR)
    point = _KickPoint(kick_at=SPIKE_STEP - 2, kick=3.0)

    result = train(config, load_data(config), point, seed=0, keep_model=True)

    assert result.outcome == "diverged", result.history
    assert result.diverged_at_step == SPIKE_STEP
    assert result.epochs_run == 1  # stopped in the epoch of the spike
    trained = int(keras.ops.convert_to_numpy(result.extra["model"].optimizer.iterations))
    if keras.backend.backend() == "tensorflow":
        assert trained == SPIKE_STEP  # batch ends run in line: it stops right there
    else:  # JAX runs them in a thread pool: a few more batches may have been dispatched
        assert SPIKE_STEP <= trained <= 60
    # What Keras logged as the epoch's loss (the running mean at the stop) stayed far below the
    # limit (the first loss is near ln 10 at initialisation): a rule on logs["loss"] could not
    # have seen this spike at this batch.
    assert result.history["loss"][0] < 0.6 * SPIKE_FACTOR * math.log(10)


def test_noisy_but_sane_training_with_a_tight_factor_does_not_diverge() -> None:
    """Batch 4 (noisy batch losses) for two epochs, a partial last batch (242 = 60 x 4 + 2), and
    a limit of only 1.5x the first batch's loss (its batches reach ~1.2x): a sane training does
    not trip it, while an error in recovering a batch's loss from the running mean that inflates
    it (e.g. the partial batch's sample count) would."""
    config = _batch_config("noisy", limit=242, epochs=2, factor=1.5)
    space, _ = space_of(config)
    point = space.point("constant", {"learning_rate": 1e-3})

    result = train(config, load_data(config), point, seed=0)

    assert result.outcome == "complete", result.history
    assert result.diverged_at_step is None
    assert result.epochs_run == 2
    assert result.history["loss"][-1] < result.history["loss"][0]  # it did learn


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
    assert good.state == TrialState.COMPLETE and TrialRecord.of(good).epochs_run == epochs
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [(t.number, t.state, t.intermediate_values) for t in study.trials]
    for t in pruned:
        assert TrialRecord.of(t).outcome == "pruned"
        assert TrialRecord.of(t).epochs_run < epochs
        assert len(TrialRecord.of(t).history["epoch"]) == TrialRecord.of(t).epochs_run
        assert max(t.intermediate_values) == TrialRecord.of(t).epochs_run
    assert pruned_study["summary"].counts.get("PRUNED", 0) == len(pruned)


def test_best_trial_retrains_from_stored_attributes(pruned_study: dict[str, Any]) -> None:
    url = pruned_study["url"]
    handle = StudyHandle.open("prune", url)
    best = handle.require_best()
    frozen = handle.trial(best.number)
    assert frozen.state == TrialState.COMPLETE

    # The schedule attribute is exactly what build_schedule takes.
    record = TrialRecord.of(frozen).schedule
    assert record == best.schedule
    rebuilt = build_schedule(
        record["family"], total_steps=record["total_steps"], **record["params"]
    )
    config, text = handle.config()
    assert text == ""  # run_study was called without a file
    space, _ = space_of(config)
    point = space.point(record["family"], TrialRecord.of(frozen).relative)
    assert point.record() == record
    original = point.build()
    for step in (0, 1, 5, record["total_steps"] - 1):
        assert float(rebuilt(step)) == pytest.approx(float(original(step)), rel=1e-6)

    # Train it again from the stored config, schedule and seed.
    stored_point = SchedulePoint(
        family=record["family"],
        relative=TrialRecord.of(frozen).relative,
        absolute=record["params"],
        total_steps=record["total_steps"],
    )
    dataset = load_data(config)
    result = train(config, dataset, stored_point, seed=TrialRecord.of(frozen).seed)

    # Same seed, same data, same ops: on CPU this is bit-identical in practice. The tolerance
    # allows one validation sample to flip (and float noise in the loss) in case a thread
    # pool reduces in a different order on another machine.
    assert result.outcome == "complete"
    assert result.value == pytest.approx(frozen.value, abs=1.5 / len(dataset.y_val))
    stored_loss = TrialRecord.of(frozen).history["val_loss"][-1]
    assert result.history["val_loss"][-1] == pytest.approx(stored_loss, rel=1e-3)
    np.testing.assert_allclose(result.history["lr"], TrialRecord.of(frozen).history["lr"], 1e-6)
