"""Budget-aware successive halving (``strategy = "halving"``, :mod:`lrsearch.halving`).

The plan is tested on real Optuna studies whose trials are told values directly (the plan
reads trials, it never trains); the compression on every registered family; the whole mode
through ``lrsearch start`` with real trainings: one worker, two workers, a resumed study.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from lrsearch.config import StudyConfig
from lrsearch.halving import (
    WAIT,
    Job,
    Plan,
    create_trial,
    planned_epochs,
    planned_trials,
    rung_epochs,
)
from lrsearch.records import TrialRecord
from lrsearch.schedules import FAMILIES, build_schedule
from lrsearch.schedules._registry import Budget
from lrsearch.study import StudyHandle

FOUR = ["cosine", "onecycle", "wsd", "constant"]


def _config(**study: Any) -> StudyConfig:
    halving = study.pop("halving", {})
    families = study.pop("families", FOUR)
    epochs = study.pop("epochs", 9)
    return StudyConfig.model_validate(
        {
            "study": {"name": "h", "strategy": "halving", "halving": halving, **study},
            "training": {"epochs": epochs},
            "space": {"families": families},
        }
    )


# --- rungs and the plan's cost -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("epochs", "halving", "rungs"),
    [
        (9, {}, (1, 3, 9)),
        (10, {}, (1, 3, 10)),
        (12, {"eta": 2}, (3, 6, 12)),
        (27, {"min_epochs": 1}, (1, 3, 9, 27)),
        (4, {"eta": 3}, (1, 4)),
        (2, {}, (1, 2)),
    ],
)
def test_rungs_grow_by_eta_and_end_at_the_full_training(
    epochs: int, halving: dict[str, Any], rungs: tuple[int, ...]
) -> None:
    assert rung_epochs(_config(epochs=epochs, halving=halving)) == rungs


def test_planned_trials_and_epochs_count_every_rung_and_the_race_twins() -> None:
    config = _config(n_trials=12)  # rungs 1, 3, 9; 4 families race
    assert planned_trials(config) == 12 + 4 + 1 + 4
    assert planned_epochs(config) == 12 * 1 + 4 * 3 + 1 * 9 + 4 * 1
    no_race = _config(n_trials=12, halving={"race": False})
    assert planned_trials(no_race) == 17 and planned_epochs(no_race) == 33


@pytest.mark.parametrize(
    ("study", "training", "field"),
    [
        ({"strategy": "halving"}, {"epochs": 1}, "study.strategy"),
        ({"strategy": "halving", "halving": {"min_epochs": 5}}, {"epochs": 5}, "min_epochs"),
        ({"strategy": "halving", "halving": {"eta": 1}}, {"epochs": 5}, "eta"),
        ({"strategy": "anneal"}, {"epochs": 5}, "strategy"),
    ],
)
def test_a_bad_halving_setting_is_one_line_naming_the_field(
    tmp_path: Path, study: dict[str, Any], training: dict[str, Any], field: str
) -> None:
    import json

    lines = ["[study]", 'name = "bad"']
    for key, value in study.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {json.dumps(value)}")
    for key, value in study.items():
        if isinstance(value, dict):
            lines.append(f"[study.{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
    lines += ["[training]", *(f"{k} = {json.dumps(v)}" for k, v in training.items())]
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "lrsearch.cli", "start", str(path), "--storage",
         f"sqlite:///{tmp_path / 'bad.db'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert field in result.stderr + result.stdout, result.stderr
    assert not (tmp_path / "bad.db").exists() or "bad" not in optuna.get_all_study_names(
        f"sqlite:///{tmp_path / 'bad.db'}"
    )


# --- compression: the whole schedule in fewer epochs --------------------------------------------


def _relative(family: str, budget: Budget) -> dict[str, Any]:
    """Values that resolve to whole steps at both budgets of the test."""
    rel: dict[str, Any] = {"learning_rate": 0.01}
    for p in FAMILIES[family].search:
        low, high = p.bounds(budget)
        if p.kind == "choice":
            rel[p.name] = "linear" if "linear" in p.choices else p.choices[0]
        elif p.unit == "epochs":
            rel[p.name] = min(1.0, high)
        elif p.unit == "budget":
            rel[p.name] = min(max(1 / 3, low), high)
        elif p.kind == "int":
            rel[p.name] = int(high)
        else:
            rel[p.name] = (low + high) / 2
    return rel


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "plateau"])
def test_a_compressed_schedule_is_the_whole_schedule_on_a_shorter_time_axis(family: str) -> None:
    """At rung epochs e of E, step k of the compressed schedule is step k x E/e of the full
    one (on average within 5% of the peak: steps round, one-cycle's phase ends are a step
    before ``pct_start x T``), far from the full schedule's first steps (a prefix)."""
    full = Budget(epochs=9, steps_per_epoch=9, monitor="val_accuracy", mode="max")
    short = full.compressed(3)
    assert (short.total_steps, short.full_epochs, short.compression) == (27, 9, 1 / 3)
    rel = _relative(family, full)
    f = FAMILIES[family]
    big = build_schedule(family, total_steps=81, **f.to_absolute(rel, full))
    small = build_schedule(family, total_steps=27, **f.to_absolute(rel, short))
    k = np.arange(27)
    compressed = np.asarray(small(k), dtype="float64")
    scaled = np.asarray(big(3 * k), dtype="float64")
    prefix = np.asarray(big(k), dtype="float64")
    assert np.mean(np.abs(compressed - scaled)) <= 0.05 * 0.01, (compressed, scaled)
    if family != "constant":
        assert np.mean(np.abs(compressed - prefix)) > 0.1 * 0.01, (compressed, prefix)


def test_plateau_patience_counts_epochs_of_the_full_training() -> None:
    full = Budget(epochs=12, steps_per_epoch=5, monitor="val_loss", mode="min")
    rel = {"learning_rate": 0.01, "factor": 0.5, "patience": 3, "warmup_epochs": 0.0}
    assert FAMILIES["plateau"].to_absolute(rel, full)["patience"] == 3
    assert FAMILIES["plateau"].to_absolute(rel, full.compressed(4))["patience"] == 1
    rel["patience"] = 9
    assert FAMILIES["plateau"].to_absolute(rel, full.compressed(4))["patience"] == 3


# --- the plan, on real Optuna studies -----------------------------------------------------------


class _Study:
    """A real in-memory Optuna study the plan reads; trials created as the runner does and
    told values directly."""

    def __init__(self, config: StudyConfig) -> None:
        self.config = config
        self.study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)
        )

    def plan(self) -> Plan:
        return Plan(self.config, self.study.get_trials(deepcopy=False))

    def start(self) -> tuple[Job, optuna.Trial]:
        job = self.plan().next()
        assert isinstance(job, Job), job
        trial = create_trial(self.study, job)
        trial.suggest_categorical("family", list(self.config.space.families))
        trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        return job, trial

    def finish(self, trial: optuna.Trial, value: float | None) -> None:
        if value is None:
            TrialRecord(outcome="diverged").write(trial)
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, value)


def _value(family: str, rung: int, lr: float) -> float:
    """A made-up result: constant is far behind, longer rungs are better, lr matters a little
    (0.006 over the range; a twin differs from its source by 0.02, the seed noise)."""
    base = 0.40 if family == "constant" else 0.80
    return base + 0.05 * rung + 0.002 * math.log10(lr)


def test_the_plan_races_families_drops_the_clearly_behind_and_promotes_to_the_full_budget() -> (
    None
):
    s = _Study(_config(n_trials=12))
    kinds: list[str] = []
    trained: list[tuple[int, str, int]] = []
    while True:
        job = s.plan().next()
        if job is None:
            break
        assert job != WAIT  # one worker, trials finished at once: never waits
        job, trial = s.start()
        kinds.append(job.kind)
        family = trial.params["family"]
        if job.kind == "race":
            assert family == job.record.race
        if job.kind in ("twin", "promote"):  # the source's configuration again
            source = s.study.trials[int(job.record.twin_of or job.record.promoted_from or 0)]
            assert trial.params == source.params
        trained.append((trial.number, family, job.rung))
        value = _value(family, job.rung, trial.params["learning_rate"])
        s.finish(trial, value + (0.02 if job.kind == "twin" else 0.0))
    plan = s.plan()
    # the race: 2 configurations per family and one twin per family (promotions go first)
    assert kinds.count("race") == 8 and kinds.count("twin") == 4
    assert [k for k in kinds if k != "promote"][:8] == ["race"] * 8
    assert plan.race is not None and plan.race.dropped == ("constant",)
    assert plan.race.pairs == 4 and plan.race.noise == pytest.approx(0.02)
    lines = "\n".join(plan.race.lines(maximize=True))
    assert "dropped: constant" in lines and "2 x seed noise" in lines
    # after the race no constant configuration, and none promoted
    race_end = max(i for i, k in enumerate(kinds) if k in ("race", "twin"))
    assert all(f != "constant" for _, f, rung in trained[race_end + 1 :] if rung == 0)
    assert all(f != "constant" for _, f, rung in trained if rung > 0)
    # 12 configurations at rung 0 (twins apart), a third promoted, and the best at 9 epochs
    assert plan.configurations == 12
    stats = plan.stats()
    assert [r.epochs for r in stats] == [1, 3, 9]
    assert sum(stats[1].counts.values()) >= 4 and sum(stats[2].counts.values()) >= 1
    best = plan.best_number()
    assert best is not None and s.study.trials[best].user_attrs["lrsearch.rung"] == 2
    # every promotion is of a top configuration of its rung
    for t in s.study.trials:
        source = TrialRecord.of(t).promoted_from
        if source is not None:
            assert s.study.trials[source].params == t.params


def _race_to_its_end(s: _Study, value: Callable[[str, float], float], twin: float) -> Plan:
    """Trains until the race is decided (its configurations, twins and the promotions in
    between) with made-up values; returns the plan."""
    while s.plan().race is None:
        job, trial = s.start()
        result = value(trial.params["family"], trial.params["learning_rate"]) + 0.05 * job.rung
        s.finish(trial, result + (twin if job.kind == "twin" else 0.0))
    return s.plan()


def test_the_race_warns_when_its_rung_ranks_mostly_seed_noise() -> None:
    """A lowest rung too short to tell configurations apart (the bundled CNN at 1 epoch sits
    on its loss plateau): the twins differ as much as the configurations do, and the race's
    lines say so and how to fix it; a rung whose spread dwarfs the noise says nothing."""
    noisy = _race_to_its_end(
        _Study(_config(n_trials=12)), lambda f, lr: 0.11 + 0.002 * math.log10(lr), twin=0.03
    )
    assert noisy.race is not None and noisy.race.noise_share is not None
    assert noisy.race.noise_share > 0.9
    text = "\n".join(noisy.race.lines(maximize=True))
    assert "mostly seed noise" in text and "study.halving.min_epochs" in text
    assert "at 1 epoch" in text and "min_epochs = 3" in text
    clear = _race_to_its_end(
        _Study(_config(n_trials=12)), lambda f, lr: _value(f, 0, lr), twin=0.02
    )
    assert clear.race is not None and clear.race.noise_share is not None
    assert clear.race.noise_share < 0.5
    assert "mostly seed noise" not in "\n".join(clear.race.lines(maximize=True))


def test_best_per_family_ranks_a_family_at_the_highest_rung_it_reached() -> None:
    """A 1-epoch value is not comparable with a full training's: each family's best is taken
    at the highest rung it reached, and families rank by that rung first."""
    s = _Study(_config(n_trials=12))
    while (job := s.plan().next()) is not None:
        job, trial = s.start()
        s.finish(trial, _value(trial.params["family"], job.rung, trial.params["learning_rate"]))
    plan = s.plan()
    bests = plan.family_bests()
    rungs = [b.rung for b in bests]
    assert rungs == sorted(rungs, reverse=True) and rungs[0] == len(plan.rungs) - 1
    assert bests[0].number == plan.best_number()
    for b in bests:
        at = [e for e in plan.at(b.rung) if e.family == b.family and e.value is not None]
        assert b.value == max(e.value for e in at if e.value is not None)
        assert not any(e.family == b.family for e in plan.at(b.rung + 1))
    assert [b.family for b in bests][-1] == "constant"  # dropped by the race: rung 0 only


def test_the_plan_waits_for_running_trials_and_ends_when_all_are_done() -> None:
    s = _Study(_config(n_trials=3, halving={"race": False}, epochs=3))  # rungs 1, 3
    trials = [s.start()[1] for _ in range(3)]
    assert s.plan().next() == WAIT  # the budget is taken; the rungs wait on these
    for i, trial in enumerate(trials):
        s.finish(trial, 0.5 + 0.1 * i)
    job = s.plan().next()
    # 3 finished at rung 0: a third is one; the best (the last) goes up
    assert isinstance(job, Job) and job.kind == "promote"
    assert job.record.promoted_from == trials[2].number and job.epochs == 3
    _, top = s.start()
    assert s.plan().next() == WAIT
    s.finish(top, 0.9)
    assert s.plan().next() is None
    assert s.plan().best_number() == top.number


def test_a_closed_rung_promotes_its_best_even_when_a_third_rounds_to_none() -> None:
    s = _Study(_config(n_trials=2, halving={"race": False}, epochs=3))
    a, b = s.start()[1], s.start()[1]
    s.finish(a, 0.7)
    assert s.plan().next() == WAIT  # 1 of 2 finished: 1 // 3 = 0 promoted, the rung open
    s.finish(b, None)  # diverged: ranked last, counted
    job = s.plan().next()
    assert isinstance(job, Job) and job.record.promoted_from == a.number


def test_a_queued_trial_is_taken_first_and_becomes_rung_0() -> None:
    s = _Study(_config(n_trials=2, halving={"race": False}, epochs=3))
    s.study.enqueue_trial({"family": "wsd"})
    job, trial = s.start()
    assert job.kind == "waiting" and trial.params["family"] == "wsd"
    assert TrialRecord.of(trial).rung == 0 and TrialRecord.of(trial).rung_epochs == 1


def test_a_promotion_made_twice_at_once_trains_once() -> None:
    """Two workers promoting one configuration at the same instant: the higher-numbered
    copy ends untrained, recorded as ``duplicate_of``; the plan counts the first."""
    from lrsearch.objective import _twin_of

    s = _Study(_config(n_trials=1, halving={"race": False}, epochs=3))
    _, first = s.start()
    s.finish(first, 0.5)
    job = s.plan().next()
    assert isinstance(job, Job) and job.kind == "promote"
    one, two = create_trial(s.study, job), create_trial(s.study, job)
    assert _twin_of(one, TrialRecord.of(one)) is None
    assert _twin_of(two, TrialRecord.of(two)) == one.number


# --- the mode, end to end ----------------------------------------------------------------------


HALVING_TOML = """\
[study]
name = "{name}"
n_trials = {n_trials}
seed = 0
strategy = "halving"

[study.halving]
eta = 3
race_trials = 1

[data]
source = "digits"
limit = 300
batch_size = {batch}

[model]
type = "mlp"
hidden = [8]

[training]
epochs = 3
pack = {pack}

[space]
families = ["cosine", "onecycle", "wsd"]
"""


def _halving_file(
    folder: Path, name: str, *, n_trials: int = 4, pack: int = 4, batch: int = 16
) -> Path:
    path = folder / f"{name}.toml"
    text = HALVING_TOML.format(name=name, n_trials=n_trials, pack=pack, batch=batch)
    path.write_text(text, "utf-8")
    return path


def test_a_lowest_rung_too_short_for_a_range_is_one_line_naming_min_epochs(
    tmp_path: Path,
) -> None:
    """8 steps in the 1-epoch rung: one-cycle's smallest pct_start would rise for under a
    step. Refused before the study is created, naming the setting to change."""
    study_file = _halving_file(tmp_path, "too-short", batch=32)  # 240 samples: 8 steps
    result = subprocess.run(
        [sys.executable, "-m", "lrsearch.cli", "start", str(study_file), "--storage",
         f"sqlite:///{tmp_path / 'h.db'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert "the lowest rung trains 1 epoch(s)" in output and "study.halving.min_epochs" in output
    assert "pct_start" in output


def _lrsearch(*args: str, cwd: Path, timeout: float = 400) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "lrsearch.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    return output


def _check_finished_plan(url: str, name: str, n_trials: int) -> list[optuna.trial.FrozenTrial]:
    """Every trial trained its rung's epochs with its whole schedule compressed into them;
    promotions repeat their source; each configuration trains once per rung; the plan is done
    and the study's best is a full-budget trial."""
    handle = StudyHandle.open(name, url)
    plan = handle.halving_plan()
    assert plan is not None and plan.next() is None
    trials = handle.optuna.get_trials(deepcopy=False)
    steps_per_epoch = None
    trained: set[tuple[int, str]] = set()
    for t in trials:
        record = TrialRecord.of(t)
        if record.duplicate_of is not None:
            assert t.state == TrialState.FAIL
            continue
        assert t.state == TrialState.COMPLETE, (t.number, t.state, record.error)
        assert record.rung is not None and record.epochs_run == record.rung_epochs
        assert record.schedule is not None
        per_epoch = record.schedule["total_steps"] // record.rung_epochs
        assert record.schedule["total_steps"] == per_epoch * record.rung_epochs
        steps_per_epoch = steps_per_epoch or per_epoch
        assert per_epoch == steps_per_epoch
        if record.promoted_from is not None:
            source = trials[record.promoted_from]
            assert source.params == t.params
            assert TrialRecord.of(source).rung == record.rung - 1
            key = (record.rung, repr(sorted(t.params.items())))
            assert key not in trained  # no configuration twice at one rung
            trained.add(key)
    assert plan.configurations == n_trials
    best = handle.best()
    assert best is not None
    assert TrialRecord.of(trials[best.number]).rung == len(plan.rungs) - 1
    return trials


@pytest.mark.slow
def test_start_runs_a_halving_study_and_status_shows_its_rungs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    study_file = _halving_file(tmp_path, "halving-one")
    out = _lrsearch("start", str(study_file), "--storage", url, "--no-progress", cwd=tmp_path)
    assert "[rung 0: 1 epochs" in out and "[rung 1: 3 epochs, from #" in out
    assert out.count("family race:") == 1  # the worker says the race's decision once
    trials = _check_finished_plan(url, "halving-one", 4)
    status = _lrsearch("status", "halving-one", "--storage", url, cwd=tmp_path)
    assert "rungs (budget-aware halving" in status
    assert "rung 0        1 epochs" in status.replace("rung 0     1", "rung 0        1")
    assert "family race:" in status and "rms of 3 twin pair(s)" in status
    assert "best per family (at the highest rung it reached):" in status
    assert ", rung 1: 3 epochs)" in status
    best = _lrsearch("best", "halving-one", "--storage", url, cwd=tmp_path)
    top = [t for t in trials if TrialRecord.of(t).rung == 1 and t.state == TrialState.COMPLETE]
    from lrsearch.artifacts import study_note

    note = study_note(StudyHandle.open("halving-one", url).optuna, "val_accuracy")
    assert "### Rungs" in note and "| 1 | 3 |" in note and "- family race:" in note
    assert "| at rung (epochs) |" in note and " | 1 (3) |" in note
    # compare summarizes each family at the highest rung it reached, as status does
    from lrsearch.report import compare, format_text

    handle = StudyHandle.open("halving-one", url)
    plan = handle.halving_plan()
    assert plan is not None
    reached = plan.family_bests()
    comparison = compare(handle)
    assert [(r.family, r.best, r.best_trial, r.epochs) for r in comparison.families] == [
        (b.family, b.value, b.number, b.epochs) for b in reached
    ]
    assert comparison.best_trial == plan.best_number()
    assert "at the highest rung it reached" in format_text(comparison)
    winner = max(top, key=lambda t: t.value or 0)
    assert f"best trial #{winner.number}," in best
    # confirm replicates full trainings only: the top rung's best, its whole schedule
    _lrsearch("confirm", "halving-one", "--storage", url, "--top", "1", "--seeds", "1",
              cwd=tmp_path)  # fmt: skip
    replicates = [
        t
        for t in StudyHandle.open("halving-one", url).optuna.get_trials(deepcopy=False)
        if TrialRecord.of(t).replicate_of is not None
    ]
    assert [TrialRecord.of(t).replicate_of for t in replicates] == [winner.number]
    assert replicates[0].state == TrialState.COMPLETE
    assert TrialRecord.of(replicates[0]).epochs_run == 3
    assert TrialRecord.of(replicates[0]).schedule == TrialRecord.of(winner).schedule


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_workers_share_the_rungs_and_a_resumed_study_grows_its_plan(
    tmp_path: Path, kind: str
) -> None:
    """``--workers 2`` on a fresh database: every promotion trained once, the plan done; run
    again with a larger budget, a fresh process reads the plan from the database and goes on."""
    from tests.servers import server_database

    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'h.db'}"
        if kind != "sqlite":
            url = stack.enter_context(server_database(kind, "halving"))
        _two_workers_then_more(tmp_path, url)


def _two_workers_then_more(tmp_path: Path, url: str) -> None:
    study_file = _halving_file(tmp_path, "halving-two", n_trials=3, pack=2)
    args = ("start", str(study_file), "--storage", url, "--no-progress")
    _lrsearch(*args, "--workers", "2", cwd=tmp_path)
    first = _check_finished_plan(url, "halving-two", 3)
    # run again with a larger budget: the same plan, read from the database, goes on
    _lrsearch(*args, "--n-trials", "6", cwd=tmp_path)
    trials = _check_finished_plan(url, "halving-two", 6)
    assert len(trials) > len(first)
    assert [t.params for t in trials[: len(first)]] == [t.params for t in first]


def test_a_promotion_interrupted_before_it_sampled_is_queued_with_its_configuration() -> None:
    """Ctrl-C between a promotion's creation and its first parameter: the queued re-run
    trains the promoted configuration at the same rung, not a fresh sample."""
    s = _Study(_config(n_trials=1, halving={"race": False}, epochs=3))
    _, first = s.start()
    s.finish(first, 0.5)
    job = s.plan().next()
    assert isinstance(job, Job) and job.kind == "promote"
    promoted = create_trial(s.study, job)  # no parameter suggested yet
    TrialRecord(interrupted=True).write(promoted)
    assert StudyHandle(s.study).requeue_interrupted(promoted) == promoted.number
    queued = s.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert len(queued) == 1
    record = TrialRecord.of(queued[0])
    assert (record.rung, record.promoted_from, record.retry_of) == (1, first.number, 1)
    assert queued[0].system_attrs["fixed_params"] == first.params


def test_each_family_gets_one_twin_whichever_race_configuration_finishes_first() -> None:
    s = _Study(_config(n_trials=9, families=["cosine", "onecycle", "wsd"]))
    started = [s.start() for _ in range(6)]  # the race: 2 per family, none finished
    assert [job.record.race for job, _ in started] == ["cosine", "onecycle", "wsd"] * 2
    later_cosine = started[3][1]
    s.finish(later_cosine, 0.8)
    job, twin = s.start()
    assert job.kind == "twin" and job.record.twin_of == later_cosine.number
    s.finish(started[0][1], 0.7)  # the family's first configuration ends after: no 2nd twin
    kinds = []
    for _ in range(3):
        job, trial = s.start()
        kinds.append(job.kind)
        assert job.record.twin_of is None, job
        s.finish(trial, 0.5)
    assert "twin" not in kinds  # new configurations and the promotions they earn


def test_promotions_keep_to_a_third_of_the_finished_trials_while_results_improve() -> None:
    """TPE's results improve over a search: plain ASHA promoted every configuration that was
    ever in the top third (20 of 35 at rung 1 in the digits benchmark, against 11 planned).
    Here each new configuration beats all before it; the rung's promotions never exceed a
    third of its finished trials, and the closed rung's best goes up."""
    s = _Study(_config(n_trials=12, halving={"race": False}, epochs=9))
    value = 0.0
    while (job := s.plan().next()) is not None:
        assert job != WAIT
        job, trial = s.start()
        value += 0.01
        s.finish(trial, value + 0.1 * job.rung)
        plan = s.plan()
        finished = sum(1 for e in plan.at(0) if e.finished)
        up = sum(1 for e in plan.at(1))
        if plan.configurations < 12:
            assert up <= finished // 3, (up, finished)
    plan = s.plan()
    assert sum(1 for _ in plan.at(1)) <= 12 // 3 + 1
    best0 = max(plan.at(0), key=lambda e: e.value or 0)
    assert any(e.record.promoted_from == best0.number for e in plan.at(1))
    assert plan.next() is None and plan.best_number() is not None
