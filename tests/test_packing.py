"""Packed trials (lrsearch.packing): each copy trains as its unpacked trial, and alone.

Real Keras trainings on a slice of digits; the unpacked reference is ``objective.train`` with the
pack's batch order (``shuffle_seed``). ``test_exactness_under_jax`` runs the exactness tests
again with Keras on JAX, in a fresh process.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from lrsearch._imports import import_keras
from lrsearch.config import MAX_PACK, BaselineConfig, StudyConfig, parse_study_config
from lrsearch.objective import TrainResult, load_data, make_budget, train
from lrsearch.packing import PackTrainer, may_cycle_momentum, train_pack
from lrsearch.schedules import FAMILIES
from lrsearch.space import SchedulePoint, SearchSpace
from tests.helpers import pytest_under_jax, tiny_study_file

SEEDS_FROM = 101
SHUFFLE = 7
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")


def _config(
    model: dict, optimizer: str = "adam", epochs: int = 3, divergence_factor: float = 10.0
) -> StudyConfig:
    training = {"epochs": epochs, "optimizer": optimizer, "divergence_factor": divergence_factor}
    return parse_study_config(
        {
            "study": {"name": "pack", "seed": 0, "metric": "val_loss"},
            "data": {"source": "digits", "limit": 240},
            "model": model,
            "training": training,
            "space": {
                "learning_rate": [3e-3, 3e-2] if optimizer != "sgd" else [3e-2, 0.3],
                # a stalled metric on every epoch: the plateau copy cuts its own rate
                "plateau": {"patience": 1, "min_delta": 10.0, "factor": 0.5},
            },
        }
    )


MLP = {"type": "mlp", "hidden": [12, 8]}
CNN = {"type": "cnn", "filters": [4, 6], "dense": 8}  # two convolutions: one grouped


def _points(config: StudyConfig, families: list[str], seed: int = 3) -> list[SchedulePoint]:
    dataset = load_data(config)
    space = SearchSpace.from_config(
        config.space, make_budget(config, dataset), optimizer=config.training.optimizer
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    points = []
    for family in families:
        study.enqueue_trial({"family": family})
        points.append(space.suggest(study.ask()))
    return points


def _assert_same(packed: TrainResult, unpacked: TrainResult, rtol: float) -> None:
    assert packed.outcome == unpacked.outcome
    assert packed.epochs_run == unpacked.epochs_run
    for key in METRICS:
        a = np.asarray(packed.history[key], dtype="float64")
        b = np.asarray(unpacked.history[key], dtype="float64")
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-7, err_msg=key)


def _tolerance() -> float:
    # TensorFlow: the same kernels, so (nearly) the same bits; JAX: XLA may fuse differently
    return 1e-5 if import_keras().backend.backend() == "tensorflow" else 1e-4


@pytest.mark.parametrize(
    ("model", "optimizer", "stacked"),
    [(MLP, "adam", True), (MLP, "sgd", False), (CNN, "adamw", False)],
    ids=["mlp-stacked-adam", "mlp-side-by-side-sgd", "cnn-side-by-side-adamw"],
)
def test_every_family_trains_as_its_unpacked_trial(
    model: dict, optimizer: str, stacked: bool
) -> None:
    """One pack holding every family, then a smaller pack on the same compiled model (slots
    reloaded in place, the others frozen): copy k's per-epoch loss, accuracy (train and val)
    and learning rate equal the unpacked training with its seed and the pack's batch order."""
    config = _config(model, optimizer)
    dataset = load_data(config)
    # every family stacked; side by side (the same per-copy learning-rate table, another model
    # layout) the ones with per-copy state beyond it (plateau cuts, cycled momentum) and wsd,
    # to keep the suite short
    packed_families = [name for name, family in FAMILIES.items() if family.packs]
    families = packed_families if stacked else ["plateau", "cyclic", "onecycle", "wsd"]
    points = _points(config, families)
    trainer = PackTrainer(config, dataset, len(points), stacked=stacked)
    seeds = [SEEDS_FROM + k for k in range(len(points))]
    packed = trainer.train(points, seeds=seeds, shuffle_seed=SHUFFLE)
    for point, seed, result in zip(points, seeds, packed, strict=True):
        unpacked = train(config, dataset, point, seed=seed, shuffle_seed=SHUFFLE)
        _assert_same(result, unpacked, _tolerance())
        assert result.extra == {
            "pack_size": len(points),
            "shuffle_seed": SHUFFLE,
            "shuffle_epoch": 0,
        }
    plateau = packed[families.index("plateau")]
    assert plateau.history["lr"][2] < plateau.history["lr"][1]  # its own cut was exercised
    losses = {round(r.history["loss"][-1], 6) for r in packed}
    assert len(losses) == len(packed)  # the copies really differ

    again = [points[families.index(f)] for f in ("plateau", "cyclic", "onecycle")]
    seeds = [SEEDS_FROM + 50 + k for k in range(len(again))]
    second = trainer.train(again, seeds=seeds, shuffle_seed=SHUFFLE + 1)
    assert trainer.packs == 2
    for point, seed, result in zip(again, seeds, second, strict=True):
        unpacked = train(config, dataset, point, seed=seed, shuffle_seed=SHUFFLE + 1)
        _assert_same(result, unpacked, _tolerance())
        assert result.extra == {
            "pack_size": len(points),  # the slots
            "shuffle_seed": SHUFFLE + 1,
            "shuffle_epoch": 0,
        }


@pytest.mark.parametrize(
    ("model", "stacked", "size"),
    [
        ({**MLP, "dropout": 0.5}, True, 2),
        ({**MLP, "dropout": 0.5}, True, 1),
        ({**CNN, "dropout": 0.5}, False, 2),
    ],
    ids=["mlp-stacked", "mlp-stacked-one-slot", "cnn-side-by-side"],
)
def test_a_pack_with_dropout_trains_alike_whatever_the_process_random_state(
    model: dict, stacked: bool, size: int
) -> None:
    """Dropout masks come from the pack's seeds, not from the random state of the process that
    built the pack (a fresh process's unseeded one): the same points, seeds and batch order give
    the same results in any process. The first version drew the stacked pack's dropout seeds
    from it, and the default study (dropout 0.1) gave another value for the same trial in every
    run. Side by side, or in a pack of one slot, a copy's masks are its unpacked trial's."""
    config = _config(model)
    dataset = load_data(config)
    points = _points(config, ["cosine", "constant"])
    seeds = [SEEDS_FROM, SEEDS_FROM + 1]
    runs = []
    for state in (1, 2):
        random.seed(state)  # what an unseeded process starts from differs from run to run
        np.random.seed(state)
        trainer = PackTrainer(config, dataset, size, stacked=stacked)
        runs.append(trainer.train(points, seeds=seeds, shuffle_seed=SHUFFLE))
    for first, second in zip(*runs, strict=True):
        assert first.history["loss"] == second.history["loss"]
        assert first.history["val_loss"] == second.history["val_loss"]
    if not stacked or size == 1:
        for point, seed, result in zip(points, seeds, runs[0], strict=True):
            unpacked = train(config, dataset, point, seed=seed, shuffle_seed=SHUFFLE)
            _assert_same(result, unpacked, _tolerance())


@pytest.mark.parametrize(
    ("model", "optimizer", "stacked"),
    [(MLP, "adam", True), (CNN, "sgd", True), (MLP, "adamw", False)],
    ids=["mlp-stacked-adam", "cnn-stacked-sgd", "mlp-side-by-side-adamw"],
)
def test_a_freed_slot_takes_the_next_trial_which_trains_as_its_replay(
    model: dict, optimizer: str, stacked: bool
) -> None:
    """3 trials on 2 slots: the first is pruned after epoch 1 and the third takes its slot for
    epoch 2 on, counting its own steps (schedule, Adam's bias correction). It trains as its
    replay (a pack of one slot loading it after the same first epoch of the batch order), the
    second trains bit-identically as with no third trial, and the results come back at the
    epoch end where each trial ended."""
    config = _config(model, optimizer, epochs=3)
    dataset = load_data(config)
    points = _points(config, ["cosine", "wsd", "onecycle"])
    seeds = [SEEDS_FROM + k for k in range(3)]
    trainer = PackTrainer(config, dataset, 2, stacked=stacked)
    ended: list[tuple[int, int]] = []

    class Epochs(import_keras().callbacks.Callback):  # type: ignore[misc, name-defined]
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            ended.append((epoch + 1, trainer.trained))

    reports = [lambda value, epoch: True, None, None]
    results = trainer.train(
        points, seeds=seeds, shuffle_seed=SHUFFLE, reports=reports, callbacks=[Epochs()]
    )
    assert [r.outcome for r in results] == ["pruned", "complete", "complete"]
    assert [r.extra["shuffle_epoch"] for r in results] == [0, 0, 1]
    assert [r.history["epoch"] for r in results] == [[1], [1, 2, 3], [1, 2, 3]]
    assert ended == [(1, 1), (2, 1), (3, 2), (4, 3)]  # the pack ran 4 epochs

    alone = train_pack(
        config,
        dataset,
        points[:2],
        seeds=seeds[:2],
        shuffle_seed=SHUFFLE,
        stacked=stacked,
        reports=reports[:2],
    )
    assert alone[1].history == results[1].history  # untouched by the third trial's loading

    replay = PackTrainer(config, dataset, 1, stacked=stacked)
    (again,) = replay.train([points[2]], seeds=seeds[2:], shuffle_seed=SHUFFLE, skip_epochs=1)
    _assert_same(results[2], again, _tolerance())
    assert again.extra["shuffle_epoch"] == 1

    # one slot: one trial per fit (nothing joins a running order), each from the order's start
    one = PackTrainer(config, dataset, 1, stacked=stacked)
    alone_two = one.train(points[:2], seeds=seeds[:2], shuffle_seed=SHUFFLE)
    assert [r.extra["shuffle_epoch"] for r in alone_two] == [0, 0] and one.packs == 2

    # a slot exported as the study's own model computes what the slot computes
    x = dataset.x_val[:16]
    for slot in (0, 1):
        alone = trainer.export(slot, points[2]).predict(x, verbose=0)
        packed = trainer.model.predict(x, verbose=0)[:, slot]
        np.testing.assert_allclose(alone, packed, rtol=1e-5, atol=1e-6)


def _replace_lr(point: SchedulePoint, learning_rate: float) -> SchedulePoint:
    absolute = {**point.absolute, "learning_rate": learning_rate}
    if "base_learning_rate" in absolute:
        absolute["base_learning_rate"] = learning_rate / 10
    if "min_learning_rate" in absolute:
        absolute["min_learning_rate"] = 0.0
    if "end_learning_rate" in absolute:
        absolute["end_learning_rate"] = 0.0
    return SchedulePoint(point.family, dict(point.relative), absolute, point.total_steps)


@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "side-by-side"])
def test_a_copy_that_diverges_or_is_pruned_leaves_the_others_bit_identical(
    stacked: bool,
) -> None:
    # factor 2: on JAX a softmax crossentropy is clipped at ~16, so a blow-up shows as a loss
    # several times the first batch's, not as NaN
    config = _config(MLP, "sgd", epochs=3, divergence_factor=2.0)
    dataset = load_data(config)
    points = _points(config, ["cosine", "constant", "onecycle", "wsd"])
    seeds = [SEEDS_FROM + k for k in range(len(points))]
    calm = train_pack(config, dataset, points, seeds=seeds, shuffle_seed=SHUFFLE, stacked=stacked)

    wild = list(points)
    wild[1] = _replace_lr(points[1], 10.0)  # SGD at lr 10: NaN within a few steps
    pruned_at = []

    def prune_at_first_epoch(value: float, epoch: int) -> bool:
        pruned_at.append(epoch)
        return True

    reports = [None, None, prune_at_first_epoch, None]
    began = time.perf_counter()
    other = train_pack(
        config,
        dataset,
        wild,
        seeds=seeds,
        shuffle_seed=SHUFFLE,
        reports=reports,
        stacked=stacked,
    )
    assert other[1].outcome == "diverged"
    assert other[1].diverged_at_step is not None and other[1].diverged_at_step >= 1
    steps = dataset.steps_per_epoch(config.data.batch_size)
    assert other[1].epochs_run == -(-other[1].diverged_at_step // steps)  # its epoch, then frozen
    assert other[2].outcome == "pruned" and other[2].epochs_run == 1 and pruned_at == [1]
    assert other[2].history["loss"] == calm[2].history["loss"][:1]
    elapsed = time.perf_counter() - began
    for result in other:
        assert 0 < result.startup_seconds <= result.train_seconds <= elapsed
    assert other[2].train_seconds < other[0].train_seconds  # it ended two epochs earlier
    for k in (0, 3):
        assert other[k].outcome == "complete"
        assert other[k].history == calm[k].history  # bit-identical, every epoch


def test_a_frozen_copy_no_longer_changes() -> None:
    """A pruned copy's variables stay as they were when it ended (SGD's momentum would
    otherwise still move them), while the running copies train on."""
    keras = import_keras()
    config = _config(MLP, "sgd", epochs=3)
    dataset = load_data(config)
    points = _points(config, ["constant", "constant"])
    snapshots: list[list[np.ndarray]] = []

    class Snapshot(keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            numpy = keras.ops.convert_to_numpy
            snapshots.append([numpy(v) for v in self.model.trainable_variables])

    train_pack(
        config,
        dataset,
        points,
        seeds=[1, 2],
        shuffle_seed=SHUFFLE,
        reports=[lambda value, epoch: True, None],
        stacked=True,
        callbacks=[Snapshot()],
    )
    # snapshot after epoch 1 is taken before the freeze takes effect (epoch 2 on)
    _, after_2, after_3 = snapshots
    for v2, v3 in zip(after_2, after_3, strict=True):
        np.testing.assert_array_equal(v2[0], v3[0])  # copy 0 (pruned): frozen
        assert not np.array_equal(v2[1], v3[1])  # copy 1 trains on


def test_pack_size_is_bounded_in_the_study_file() -> None:
    with pytest.raises(Exception, match="pack"):
        parse_study_config({"study": {"name": "x"}, "training": {"pack": MAX_PACK + 1}})
    with pytest.raises(Exception, match="pack"):
        parse_study_config({"study": {"name": "x"}, "training": {"pack": "many"}})
    config = parse_study_config({"study": {"name": "x"}, "training": {"pack": 4}})
    assert config.training.pack == 4
    assert config.with_pack(2).training.pack == 2
    assert config.with_pack("auto").training.pack == "auto"
    assert parse_study_config({"study": {"name": "x"}}).training.pack == "auto"  # the default
    for bad in (0, MAX_PACK + 1, "many", True):
        with pytest.raises(Exception, match="--pack must be 'auto' or a whole number"):
            config.with_pack(bad)  # type: ignore[arg-type]


def test_cli_pack_takes_auto_or_a_size_within_the_config_limit(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lrsearch import cli

    assert cli._MAX_PACK == MAX_PACK
    study_file = tiny_study_file(tmp_path, "flags")
    for bad in ("0", str(MAX_PACK + 1), "many"):
        result = CliRunner().invoke(cli.cli, ["start", str(study_file), "--pack", bad])
        assert result.exit_code == 2
        assert "--pack" in result.output and "is not 'auto' or a whole number" in result.output
        assert "Traceback" not in result.output


def test_auto_calibrates_a_size_within_the_budget() -> None:
    """Real packed trainers timed at sizes 1, 2, ...: the chosen size is one it measured, the
    doubling stops at the trials the budget leaves, and the line says what was measured."""
    from lrsearch.packing import AUTO_GAIN, calibrate

    config = _config(MLP)
    dataset = load_data(config)
    one = calibrate(config, dataset, most=1)
    assert (one.size, one.per_second, one.trainer) == (1, {}, None)  # nothing to time
    assert one.line() is None and one.limit  # nothing to say to the user
    two = calibrate(config, dataset, most=2)
    assert list(two.per_second) == [1, 2] and min(two.per_second.values()) > 0
    gained = two.per_second[2] >= AUTO_GAIN * two.per_second[1]
    assert two.size == (2 if gained else 1)
    assert two.trainer is not None and two.trainer.size == two.size  # kept, compiled
    line = two.line()
    assert line and line.startswith(f"pack auto: {two.size} (trial-steps per second at pack 1: ")
    assert ("at most 2 for this budget" in line) == gained
    # the kept trainer trains (its model survived the larger sizes' builds)
    points = _points(config, ["cosine"] * two.size)
    results = two.trainer.train(points, seeds=list(range(two.size)), shuffle_seed=SHUFFLE)
    assert all(r.outcome == "complete" for r in results)


def test_auto_calibration_leaves_most_of_a_deadline_to_the_trials() -> None:
    """With a deadline, ``pack = "auto"`` stops doubling once it spent
    :data:`AUTO_TIME_SHARE` of the time the deadline left (each size compiles: a few seconds):
    a ``--timeout`` run used to spend its whole time calibrating and start no trial (CI, a
    loaded machine). A deadline already reached times the first size only, to train with."""
    import time

    from lrsearch.packing import calibrate

    config = _config(MLP)
    dataset = load_data(config)
    now = calibrate(config, dataset, most=32, deadline=time.monotonic())
    assert list(now.per_second) == [1] and now.size == 1
    assert now.trainer is not None and now.trainer.size == 1
    line = now.line()
    assert line and "the time limit" in line, line
    # a deadline a few ms away: the first size's compile alone spends over a quarter of it
    soon = calibrate(config, dataset, most=32, deadline=time.monotonic() + 0.004)
    assert list(soon.per_second) == [1] and "the time limit" in (soon.line() or "")


CUSTOM_STEP = """
import keras


class OwnStep(keras.Model):
    def train_step(self, data):
        return super().train_step(data)


def own_step(input_shape, n_classes):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    return OwnStep(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))


def plain(input_shape, n_classes):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))
"""


@pytest.mark.parametrize(
    ("function", "pack", "size", "said"),
    [
        ("own_step", 4, 1, "pack 4: this model trains unpacked (it has its own train_step"),
        ("own_step", "auto", 1, None),
        ("plain", "auto", 1, None),  # a python: model packs only when asked to
        ("plain", 3, 3, None),
    ],
)
def test_pack_size_for_a_python_model(
    tmp_path: Path, function: str, pack: int | str, size: int, said: str | None
) -> None:
    """A model with its own ``train_step`` never packs (a packed model would bypass it) and a
    study of it trains its trials unpacked; ``auto`` is 1 for any ``python:`` model."""
    from lrsearch.objective import Objective

    (tmp_path / "custom_models.py").write_text(CUSTOM_STEP, encoding="utf-8")
    config = parse_study_config(
        {
            "study": {"name": "own", "metric": "val_loss"},
            "data": {"source": "digits", "limit": 400},
            "model": {"type": f"python:custom_models:{function}"},
            "training": {"epochs": 2, "pack": pack},
            "space": {"families": ["cosine"]},
        }
    )
    objective = Objective(config, base_dir=tmp_path)
    objective.check()
    assert objective.packable == objective.model_packs == (function == "plain")
    chosen, line = objective.pack_size(left=8)
    assert chosen == size
    if said is None:
        assert line is None
    else:
        assert line is not None and line.startswith(said)
    if function == "own_step":
        study = optuna.create_study()
        study.optimize(objective, n_trials=1)  # the unpacked objective trains it
        assert study.trials[0].state.name == "COMPLETE"


@pytest.mark.slow
def test_exactness_under_jax() -> None:
    """The exactness, refill and isolation tests of the default layout (the stacked MLP), on
    JAX. (The side-by-side and stacked-CNN cases add 75 s on JAX and nothing backend-specific:
    the per-copy table, offsets and masks are the same code on every layout.)"""
    pytest_under_jax("tests/test_packing.py", "stacked-adam or (bit_identical and stacked)")


# --- a packed study, as a user runs it ---------------------------------------------------------


def _start(folder: Path, study_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lrsearch.cli", "start", str(study_file), "--no-progress", *args],
        capture_output=True,
        text=True,
        cwd=folder,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "LRSEARCH_ARTIFACTS": "none"},
        timeout=600,
    )


def test_a_packed_study_reads_like_a_one_by_one_study_and_retrains_exactly(tmp_path: Path) -> None:
    """``lrsearch start --pack 3`` with a budget of 5: one pack of 3 slots, the two trials
    after the first three taking their slots when those end (epoch 2), each trial a real Optuna
    trial (params, per-epoch reports, attributes) like a ``--pack 1`` study's; retraining a
    packed trial alone gives its recorded history, a trial that joined the running pack too."""
    from lrsearch.records import TrialRecord
    from lrsearch.retrain import retrain

    families = '["cosine", "cyclic", "plateau", "wsd"]'
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    packed_file = tiny_study_file(tmp_path, "packed", families)
    plain_file = tiny_study_file(tmp_path, "plain", families)
    run = _start(tmp_path, packed_file, "--pack", "3", "--n-trials", "5", "--storage", url)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Heartbeat" not in run.stderr and "Traceback" not in run.stderr
    assert "done: 5/5 finished" in run.stdout
    plain = _start(tmp_path, plain_file, "--pack", "1", "--n-trials", "2", "--storage", url)
    assert plain.returncode == 0, plain.stderr[-2000:]

    packed = optuna.load_study(study_name="packed", storage=url).trials
    unpacked = optuna.load_study(study_name="plain", storage=url).trials
    assert len(packed) == 5 and {t.state.name for t in packed} <= {"COMPLETE", "PRUNED"}
    records = [TrialRecord.of(t) for t in packed]
    assert [r.pack_size for r in records] == [3, 3, 3, 3, 3]
    assert {r.shuffle_seed for r in records} == {records[0].seed}  # one fit, one batch order
    assert [r.shuffle_epoch for r in records] == [0, 0, 0, 2, 2]
    assert len({r.seed for r in records}) == 5
    extra = {TrialRecord.key(k) for k in ("pack_size", "shuffle_seed", "shuffle_epoch")}
    assert {t.state.name for t in packed + unpacked} == {"COMPLETE"}  # pruner "none"
    for trial in packed:
        assert extra <= set(trial.user_attrs) == set(unpacked[0].user_attrs)
        assert "family" in trial.params and "learning_rate" in trial.params
        assert sorted(trial.intermediate_values) == list(range(1, 3))  # epochs 1 and 2
        assert trial.datetime_complete is not None

    # a trial from the pack's start (replayed unpacked) and one that joined at epoch 2
    # (replayed by a pack of one slot loading it there)
    for complete in (packed[0], packed[4]):
        again = retrain("packed", tmp_path / "again.keras", storage_url=url, trial=complete.number)
        stored = TrialRecord.of(complete).history or {}
        for key in METRICS:
            np.testing.assert_allclose(
                again.history[key], stored[key], rtol=1e-5, err_msg=f"{key} #{complete.number}"
            )

    # optuna-dashboard's own API serves a packed trial as it serves an unpacked one
    import json

    from tests.helpers import free_port, start

    port = free_port()
    proc = start(["--storage", url, "--read-only"], port)
    try:
        served = {}
        for name in ("packed", "plain"):
            sid = optuna.load_study(study_name=name, storage=url)._study_id
            address = f"http://127.0.0.1:{port}/api/studies/{sid}?after=0"
            with urllib.request.urlopen(address, timeout=30) as response:
                served[name] = json.loads(response.read())["trials"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert len(served["packed"]) == 5 and len(served["plain"]) == 2
    assert [TrialRecord.of(t).pack_size for t in unpacked] == [1, 1]
    for trial in served["packed"]:
        keys = {a["key"] for a in trial["user_attrs"]}
        assert extra <= keys == {a["key"] for a in served["plain"][0]["user_attrs"]}
        assert set(trial) == set(served["plain"][0])
        assert [v["step"] for v in trial["intermediate_values"]] == [1, 2]
        assert {p["name"] for p in trial["params"]} >= {"family", "learning_rate"}


# --- faults: Ctrl-C and kill -9 of a packed worker ---------------------------------------------

FAMILIES_3 = '["cosine", "constant", "wsd"]'


def _popen(folder: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lrsearch.cli", *args, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=folder,
        env={
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONUNBUFFERED": "1",
            "LRSEARCH_ARTIFACTS": "none",
            **env,
        },
    )


def _wait_running(url: str, name: str, count: int, procs: list[subprocess.Popen[str]]) -> None:
    """Until ``count`` trials of study ``name`` run and have reported an epoch."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"lrsearch exited early ({proc.returncode}): {proc.communicate()}")
        try:
            trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
        except KeyError:
            trials = []
        running = [t for t in trials if t.state.name == "RUNNING" and t.intermediate_values]
        if len(running) >= count:
            return
        time.sleep(0.2)
    pytest.fail(f"{count} trials of {name} were not running within 180 s")


def test_ctrl_c_stops_a_pack_and_queues_all_its_trials(tmp_path: Path) -> None:
    import signal

    from lrsearch.records import TrialRecord

    study_file = tiny_study_file(tmp_path, "ctrlc", FAMILIES_3, n_trials=3, epochs=80, pack=3)
    url = f"sqlite:///{tmp_path / 'ctrlc.db'}"
    proc = _popen(tmp_path, "start", str(study_file), "--storage", url)
    try:
        _wait_running(url, "ctrlc", 3, [proc])
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    both = stdout + stderr
    assert proc.returncode == 130, both
    assert "trial #0, #1, #2 were queued to run again" in both, both
    assert "Traceback" not in both, both
    trials = optuna.load_study(study_name="ctrlc", storage=url).trials
    assert [t.state.name for t in trials] == ["FAIL"] * 3 + ["WAITING"] * 3
    assert all(TrialRecord.of(t).interrupted for t in trials[:3])
    assert [TrialRecord.of(t).retry_of for t in trials[3:]] == [0, 1, 2]
    assert [TrialRecord.of(t).seed for t in trials[3:]] == [
        TrialRecord.of(t).seed for t in trials[:3]
    ]

    resumed = _popen(tmp_path, "start", str(study_file), "--storage", url, "--pack", "3")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stdout + stderr
    assert "done: 3/3 finished" in stdout
    trials = optuna.load_study(study_name="ctrlc", storage=url).trials
    assert [t.state.name for t in trials[3:]] == ["COMPLETE"] * 3
    assert [t.params for t in trials[3:]] == [t.params for t in trials[:3]]
    assert {TrialRecord.of(t).pack_size for t in trials[3:]} == {3}


@pytest.mark.slow
def test_killed_packed_worker_trials_are_failed_and_rerun_by_the_other(tmp_path: Path) -> None:
    """Two workers with packs of 2 on one PostgreSQL study; kill -9 of one mid-pack fails its
    two trials (no heartbeat) and the other worker runs them again, as a pack."""
    from tests.servers import server_database

    with server_database("postgresql", "pack_kill") as url:
        study_file = tiny_study_file(tmp_path, "kill", FAMILIES_3, n_trials=4, epochs=100, pack=2)
        env = {"LRSEARCH_HEARTBEAT_INTERVAL": "1", "LRSEARCH_GRACE_PERIOD": "3"}
        a = _popen(tmp_path, "start", str(study_file), "--storage", url, **env)
        b = _popen(tmp_path, "start", str(study_file), "--storage", url, **env)
        try:
            _wait_running(url, "kill", 4, [a, b])
            a.kill()
            stdout, stderr = b.communicate(timeout=300)
        finally:
            for proc in (a, b):
                if proc.poll() is None:
                    proc.kill()
                proc.communicate()
        assert b.returncode == 0, stdout + stderr
        assert "Traceback" not in stdout + stderr
        trials = optuna.load_study(study_name="kill", storage=url).trials
        failed = [t for t in trials if t.state.name == "FAIL"]
        assert len(failed) == 2, [(t.number, t.state.name) for t in trials]
        retries = [t for t in trials if t.system_attrs.get("failed_trial") is not None]
        assert sorted(t.system_attrs["failed_trial"] for t in retries) == sorted(
            t.number for t in failed
        )
        assert all(t.state.name == "COMPLETE" for t in retries)
        by_number = {t.number: t for t in trials}
        for retry in retries:
            assert retry.params == by_number[retry.system_attrs["failed_trial"]].params
        assert len([t for t in trials if t.state.name == "COMPLETE"]) == 4


def test_a_pack_tabulates_momentum_only_when_a_trial_may_cycle_it() -> None:
    """Families that cycle momentum (onecycle, cyclic) give the pack a per-copy momentum table;
    fixed off in the study file, or not searched, they leave the optimizer as it was."""
    cycling = _config(MLP, "sgd")
    assert may_cycle_momentum(cycling)
    quiet = parse_study_config(
        {
            "study": {"name": "pack"},
            "space": {
                "families": ["onecycle", "cosine"],
                "onecycle": {"cycle_momentum": False},
            },
        }
    )
    assert not may_cycle_momentum(quiet)
    with_baseline = quiet.model_copy(
        update={"baseline": [BaselineConfig(family="cyclic", learning_rate=0.01)]}
    )
    assert may_cycle_momentum(with_baseline)
    dataset = load_data(cycling)
    trainer = PackTrainer(cycling, dataset, 2)
    assert trainer.momentum_table is not None
    assert type(trainer.optimizer).__mro__[1].__name__ == "CyclingSGD"


def test_a_schedule_free_trial_trains_alone_beside_the_pack(tmp_path: Path) -> None:
    """``schedule_free`` trains with its own optimizer: in a packed study its trials wait for
    the pack's run and then train alone (unpacked, no ``pack_size``), recorded like any trial;
    a space of such families only trains one by one. Retraining one gives its history."""
    from lrsearch.records import TrialRecord
    from lrsearch.retrain import retrain

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study_file = tiny_study_file(tmp_path, "mixed", '["cosine", "schedule_free"]')
    with study_file.open("a", encoding="utf-8") as f:  # the first trials: one of each
        f.write(
            "\n[[baseline]]\nfamily = 'schedule_free'\nlearning_rate = 0.01\n"
            "\n[[baseline]]\nfamily = 'cosine'\nlearning_rate = 0.01\n"
        )
    run = _start(tmp_path, study_file, "--pack", "2", "--n-trials", "4", "--storage", url)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert "done: 4/4 finished" in run.stdout
    trials = optuna.load_study(study_name="mixed", storage=url).trials
    assert {t.state.name for t in trials} == {"COMPLETE"}
    alone = [t for t in trials if t.params["family"] == "schedule_free"]
    packed = [t for t in trials if t.params["family"] == "cosine"]
    assert alone and packed and alone[0].number == 0
    assert {TrialRecord.of(t).pack_size for t in packed} == {2}
    for trial in alone:
        record = TrialRecord.of(trial)
        assert record.pack_size is None and record.shuffle_seed is None
        assert 0.9 <= (record.schedule or {})["params"]["beta_1"] <= 0.98
        assert sorted(trial.intermediate_values) == [1, 2]
    again = retrain("mixed", tmp_path / "sf.keras", storage_url=url, trial=alone[0].number)
    stored = TrialRecord.of(alone[0]).history or {}
    for key in METRICS:
        np.testing.assert_allclose(again.history[key], stored[key], rtol=1e-5, err_msg=key)

    only_file = tiny_study_file(tmp_path, "only-sf", '["schedule_free"]', n_trials=2)
    only = _start(tmp_path, only_file, "--pack", "2", "--storage", url)
    assert only.returncode == 0, only.stderr[-2000:]
    only_trials = optuna.load_study(study_name="only-sf", storage=url).trials
    assert [t.state.name for t in only_trials] == ["COMPLETE", "COMPLETE"]
    assert all(TrialRecord.of(t).pack_size is None for t in only_trials)


def test_a_pack_refuses_a_family_with_its_own_optimizer_and_trains_on_after_one() -> None:
    """A pack never trains schedule_free (it would train with the pack's optimizer); the
    compiled pack trains exactly as before after an unpacked schedule_free training."""
    config = _config(MLP, "adam")
    config = config.model_copy(
        update={"space": config.space.model_copy(update={"families": ["cosine", "schedule_free"]})}
    )
    dataset = load_data(config)
    cosine, schedule_free = _points(config, ["cosine", "schedule_free"])
    trainer = PackTrainer(config, dataset, 1)
    with pytest.raises(ValueError, match="own optimizer"):
        trainer.train([schedule_free], seeds=[1], shuffle_seed=SHUFFLE)
    (before,) = trainer.train([cosine], seeds=[1], shuffle_seed=SHUFFLE)
    alone = train(config, dataset, schedule_free, seed=2)
    assert alone.outcome == "complete"
    (after,) = trainer.train([cosine], seeds=[1], shuffle_seed=SHUFFLE)
    _assert_same(after, before, 1e-6)


def _waiting_study(tmp_path: Path, name: str) -> tuple[Any, str]:
    """A prepared study whose first trial (cosine) packs and whose second (schedule_free) is
    asked for the pack's free slot, so it waits for the pack's run."""
    from lrsearch.runner import prepare_study

    config = parse_study_config(
        {
            "study": {"name": name, "n_trials": 3, "seed": 0, "pruner": "none"},
            "data": {"source": "digits", "limit": 200},
            "model": {"type": "mlp", "hidden": [8]},
            "training": {"epochs": 2, "pack": 2},
            "space": {"families": ["cosine", "schedule_free"]},
            "baseline": [
                {"family": "cosine", "learning_rate": 0.01},
                {"family": "schedule_free", "learning_rate": 0.01},
            ],
        }
    )
    url = f"sqlite:///{tmp_path / 'waiting.db'}"
    return prepare_study(config, storage_url=url), url


@pytest.mark.parametrize("stop", ["deadline", "pack-error"])
def test_a_waiting_trial_that_cannot_start_is_queued_again_with_its_seed(
    tmp_path: Path, stop: str
) -> None:
    """The schedule_free trial waits while the pack trains: if the deadline passes meanwhile,
    or the pack fails, it never trains: it is queued again (its seed kept), as after Ctrl-C,
    not failed with the pack's error; the next run trains it alone."""
    from lrsearch.records import TrialRecord
    from lrsearch.runner import Runner

    class Quiet:
        def trial_done(self, trial: Any, finished: int, best: Any) -> None:
            pass

        def close(self) -> None:
            pass

    prepared, url = _waiting_study(tmp_path, stop)
    runner = Runner(prepared, Quiet(), pack=2)

    def trial_ended(trial: Any, history: Any) -> None:  # the first trial's training ended
        prepared.objective.on_trial_end = None
        if stop == "deadline":
            runner.deadline = time.monotonic() - 1.0
        else:
            raise RuntimeError("the pack failed")

    prepared.objective.on_trial_end = trial_ended
    runner.run()
    study = optuna.load_study(study_name=stop, storage=url)
    first, waited, queued = study.trials[:3]
    assert first.params["family"] == "cosine"
    assert first.state.name == ("COMPLETE" if stop == "deadline" else "FAIL")
    if stop == "pack-error":
        assert "the pack failed" in (TrialRecord.of(first).error or "")
    assert waited.state.name == "FAIL" and TrialRecord.of(waited).interrupted
    assert TrialRecord.of(waited).error is None  # never trained: no error of the pack's
    assert TrialRecord.of(queued).seed == TrialRecord.of(waited).seed  # the same experiment
    if stop == "deadline":  # no trial starts after it: the next run trains it
        assert queued.state.name == "WAITING"
        Runner(prepared, Quiet(), pack=2).run()
        queued = optuna.load_study(study_name=stop, storage=url).trials[2]
    assert queued.state.name == "COMPLETE"  # after a failure the run goes on and trains it
    assert (TrialRecord.of(queued).schedule or {})["family"] == "schedule_free"
    assert TrialRecord.of(queued).pack_size is None
