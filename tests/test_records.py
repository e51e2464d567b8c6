"""What lrsearch stores: every key once, namespaced, and studies from older versions still read."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from lrsearch.cli import cli
from lrsearch.records import NAMESPACE, StudyRecord, TrialRecord, family_of, stored_names
from lrsearch.study import StudyHandle

DATA = Path(__file__).parent / "data"
LEGACY_DB = DATA / "study-lrsearch-0.1.0.db"
"""Written by ``lrsearch start study-lrsearch-0.1.0.toml`` at commit 4a5bdfd (lrsearch 0.1.0,
bare trial keys): trial #0 diverged (a constant lr of 10), #1-#3 complete, #2 the best."""

RECORDS = [TrialRecord, StudyRecord]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
def test_every_key_is_namespaced_and_distinct(record: type) -> None:
    keys = [record.key(f.name) for f in fields(record)]
    assert all(k.startswith(NAMESPACE) for k in keys), keys
    assert len(set(keys)) == len(keys)


def test_each_key_is_written_in_one_module_of_the_package() -> None:
    """``grep`` finds each stored key once outside tests: in lrsearch/records.py."""
    package = Path(__file__).parents[1] / "lrsearch"
    names = [f.name for r in RECORDS for f in fields(r)]
    for path in package.rglob("*.py"):
        if path.name == "records.py":
            continue
        text = path.read_text(encoding="utf-8")
        for name in names:
            assert f'"{NAMESPACE}{name}"' not in text, (path, name)
            assert not re.search(rf"user_attrs(\.get\(|\[)\"{name}\"", text), (path, name)


def test_a_record_round_trips_through_a_real_trial(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'r.db'}")
    trial = study.ask()
    written = TrialRecord(
        schedule={"family": "cosine", "total_steps": 10, "params": {"learning_rate": 0.1}},
        relative={"learning_rate": 0.1},
        seed=7,
        history={"val_loss": [1.0, None]},
        outcome="complete",
        epochs_run=2,
        error=None,
    )
    written.write(trial)
    study.tell(trial, 0.5)
    frozen = study.trials[0]
    assert TrialRecord.of(frozen) == written
    assert set(frozen.user_attrs) == set(written.attrs())  # unset fields are not written
    assert family_of(frozen) == "cosine"


def test_legacy_bare_keys_are_read_and_new_keys_win() -> None:
    old = {"schedule": {"family": "wsd"}, "seed": 3, "outcome": "diverged", "epochs_run": 1}
    record = TrialRecord.from_attrs(old)
    assert (record.seed, record.outcome, record.epochs_run) == (3, "diverged", 1)
    assert record.diverged
    both = {**old, TrialRecord.key("seed"): 4}
    assert TrialRecord.from_attrs(both).seed == 4
    assert stored_names(TrialRecord, "seed") == ("lrsearch.seed", "seed")


def test_a_retry_carries_the_seed_and_the_baseline_only() -> None:
    record = TrialRecord(seed=5, baseline={"family": "cosine"}, outcome="pruned", error="x")
    assert record.carried(retry_of=2) == TrialRecord(
        seed=5, baseline={"family": "cosine"}, retry_of=2
    )


@pytest.fixture
def legacy(tmp_path: Path) -> str:
    db = tmp_path / "legacy.db"
    shutil.copy(LEGACY_DB, db)
    return f"sqlite:///{db}"


def test_a_study_written_by_lrsearch_0_1_0_reads_as_before(legacy: str) -> None:
    handle = StudyHandle.open("legacy", legacy)
    status = handle.status()
    assert status.counts == {"diverged": 1, "complete": 3}
    assert status.metric == "val_accuracy" and status.budget == 4
    best = handle.require_best()
    assert best.number == 2 and best.schedule is not None
    assert best.schedule["family"] == "constant" and best.relative
    diverged = TrialRecord.of(handle.trial(0))
    assert diverged.diverged and diverged.diverged_at_step == 2
    assert diverged.baseline is not None and diverged.seed == 0
    assert {s.family for s in handle.family_stats()} == {"cosine", "constant"}
    config, text = handle.config()
    assert config.study.name == "legacy" and "[[baseline]]" in text

    runner = CliRunner()
    shown = runner.invoke(cli, ["best", "legacy", "--storage", legacy, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["schedule"] == best.schedule
    exported = runner.invoke(cli, ["export", "legacy", "--trial", "1", "--storage", legacy])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["family"] == "cosine"
    compared = runner.invoke(cli, ["compare", "legacy", "--storage", legacy])
    assert compared.exit_code == 0 and "cosine" in compared.output, compared.output


def test_a_study_written_by_lrsearch_0_1_0_resumes(legacy: str, tmp_path: Path) -> None:
    """New trials are written with namespaced keys; old and new read alike."""
    lrsearch = str(Path(sys.executable).with_name("lrsearch"))
    proc = subprocess.run(
        [lrsearch, "resume", "legacy", "--storage", legacy, "--n-trials", "5", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "done: 5/5 finished" in proc.stdout, proc.stdout
    handle = StudyHandle.open("legacy", legacy)
    assert sum(handle.counts().values()) == 5
    new = handle.trial(4)
    assert all(key.startswith(NAMESPACE) for key in new.user_attrs)
    record = TrialRecord.of(new)
    assert record.schedule is not None and record.seed == 4 and record.outcome is not None
    assert TrialRecord.of(handle.trial(1)).seed == 1  # an old trial, read alike


@pytest.mark.parametrize("family", ["onecycle", "cyclic"])
def test_a_trial_stored_before_momentum_cycling_replays_as_it_ran(
    family: str, tmp_path: Path
) -> None:
    """A onecycle / cyclic trial stored before those families cycled momentum (its params lack
    ``cycle_momentum``) reads, exports and rebuilds without cycling, as it trained; one stored
    since keeps what it stored."""
    from lrsearch.config import parse_study_config
    from lrsearch.objective import make_optimizer
    from lrsearch.schedules import resolve_params
    from lrsearch.space import SchedulePoint

    params = resolve_params(family, total_steps=60, learning_rate=0.1)
    params.pop("total_steps", None)
    old = {
        k: v
        for k, v in params.items()
        if k not in ("cycle_momentum", "base_momentum", "max_momentum")
    }
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    study = optuna.create_study(study_name="old", storage=storage)
    for stored in (old, params):
        trial = study.ask()
        trial.set_user_attr(
            TrialRecord.key("schedule"), {"family": family, "total_steps": 60, "params": stored}
        )
        study.tell(trial, 0.5)
    before, since = (TrialRecord.of(t) for t in study.get_trials())
    assert before.schedule is not None and since.schedule is not None
    assert before.schedule["params"] == {**old, "cycle_momentum": False}
    assert since.schedule["params"] == params and params["cycle_momentum"] is True
    exported = CliRunner().invoke(cli, ["export", "old", "--trial", "0", "--storage", storage])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["params"]["cycle_momentum"] is False
    config = parse_study_config({"study": {"name": "old"}, "training": {"optimizer": "sgd"}})
    built = [SchedulePoint.from_record(r).build() for r in (before, since)]
    assert [s.cycles_momentum for s in built] == [False, True]
    optimizers = [type(make_optimizer(config, s)).__name__ for s in built]
    assert optimizers == ["SGD", "CyclingSGD"]
