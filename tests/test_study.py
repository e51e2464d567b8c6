"""End-to-end tests of studies through the ``lrsearch`` CLI: real trainings, real SQLite files.

One small study (3 trials, two of them baselines) is run once per module with ``lrsearch start``;
the tests that change it work on copies of its database file, so only a handful of trainings run.
Ctrl-C is tested on a real process, since only a real process gets a real SIGINT.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner, Result
from optuna.trial import TrialState

from lrsearch.cli import cli
from lrsearch.records import StudyRecord, TrialRecord

STUDY = "e2e-main"

MAIN_TOML = """\
[study]
name = "{name}"
n_trials = 3
seed = 0

[data]
source = "digits"
limit = 240
batch_size = 64

[model]
type = "mlp"
hidden = [16]

[training]
epochs = {epochs}

[space]
families = ["cosine", "onecycle", "constant"]
learning_rate = [1e-3, 3e-2]

[[baseline]]
name = "cosine with warmup"
family = "cosine"
learning_rate = 0.01
warmup_steps = 2
decay_steps = 10

[[baseline]]
name = "three-phase onecycle"
family = "onecycle"
learning_rate = 0.02
pct_start = 0.25
three_phase = true
"""

BASELINES = [
    {"family": "cosine", "learning_rate": 0.01, "warmup_steps": 2, "decay_steps": 10},
    {"family": "onecycle", "learning_rate": 0.02, "pct_start": 0.25, "three_phase": True},
]

# Long enough trials (a few seconds each) to be caught running by a poll.
INTERRUPT_TOML = """\
[study]
name = "e2e-interrupt"
n_trials = 1
seed = 0
pruner = "none"

[data]
source = "digits"
limit = 240
batch_size = 64

[model]
type = "mlp"
hidden = [16]

[training]
epochs = 60

[space]
families = ["constant"]
learning_rate = [1e-4, 1e-3]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def invoke(args: list[str], exit_code: int = 0) -> Result:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == exit_code, (result.output, result.exception)
    return result


def trial_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("#")]


@pytest.fixture(scope="module")
def main_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``lrsearch start`` once: 3 trials (2 baselines + 1 sampled) in a SQLite file."""
    folder = tmp_path_factory.mktemp("main")
    study_file = write(folder / "main.toml", MAIN_TOML.format(name=STUDY, epochs=3))
    db = folder / "main.db"
    result = invoke(["start", str(study_file), "--storage", sqlite_url(db)])
    return {"file": study_file, "db": db, "url": sqlite_url(db), "output": result.output}


@pytest.fixture
def db_copy(main_study: dict[str, Any], tmp_path: Path) -> Path:
    """A private copy of the main study's database, free to change."""
    copy = tmp_path / "copy.db"
    source = sqlite3.connect(main_study["db"])  # the SQLite backup API includes the WAL's pages
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    return copy


# --- start, and reading the study back -----------------------------------------------------------


def test_start_prints_a_line_per_trial_the_best_and_the_dashboard(
    main_study: dict[str, Any],
) -> None:
    output = main_study["output"]
    lines = trial_lines(output)
    assert [line.split()[0] for line in lines] == ["#0", "#1", "#2"], output
    assert lines[0].endswith("[baseline]") and lines[1].endswith("[baseline]")
    assert any(line.startswith("best: trial #") for line in output.splitlines()), output
    assert f"lrsearch dashboard --storage {main_study['url']}" in output
    assert "done: 3/3 finished" in output
    assert "Traceback" not in output


def test_study_reads_back_with_plain_optuna(main_study: dict[str, Any]) -> None:
    study = optuna.load_study(study_name=STUDY, storage=main_study["url"])
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(study.trials) == len(finished) == 3
    for t in study.trials:
        assert all(key.startswith("lrsearch.") for key in t.user_attrs), sorted(t.user_attrs)
        for key in ("schedule", "relative", "history", "outcome", "epochs_run", "seed"):
            assert TrialRecord.key(key) in t.user_attrs, (t.number, sorted(t.user_attrs))
        r = TrialRecord.of(t)
        assert r.train_seconds is not None and r.train_seconds > 0
        assert r.startup_seconds is not None and r.startup_seconds >= 0
        assert r.schedule is not None and r.history is not None
        assert r.schedule["family"] == t.params["family"]
        assert r.schedule["total_steps"] == 3 * 4
        assert len(r.history["val_accuracy"]) == r.epochs_run
        assert r.seed == t.number  # study.seed 0 + trial number
    config = StudyRecord.of(study).config
    assert config["study"]["name"] == STUDY and config["training"]["epochs"] == 3
    assert len(StudyRecord.of(study).fingerprint) == 64
    versions = StudyRecord.of(study).versions
    assert versions["optuna"] == optuna.__version__ and "keras" in versions
    assert StudyRecord.of(study).n_trials == 3
    assert StudyRecord.of(study).study_file == main_study["file"].read_text()


def test_optuna_cli_lists_the_trials(main_study: dict[str, Any]) -> None:
    optuna_cli = str(Path(sys.executable).with_name("optuna"))  # the venv's, activated or not
    proc = subprocess.run(
        [
            optuna_cli,
            "trials",
            "--study-name",
            STUDY,
            "--storage",
            main_study["url"],
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    trials = json.loads(proc.stdout)
    assert [t["number"] for t in trials] == [0, 1, 2]
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in trials)
    assert all(TrialRecord.key("schedule") in t["user_attrs"] for t in trials)


def test_baselines_are_the_first_trials(main_study: dict[str, Any]) -> None:
    study = optuna.load_study(study_name=STUDY, storage=main_study["url"])
    for trial, baseline in zip(study.trials[:2], BASELINES, strict=True):
        assert TrialRecord.of(trial).baseline is not None
        assert trial.params["family"] == baseline["family"]
        assert trial.params["learning_rate"] == baseline["learning_rate"]
        schedule = TrialRecord.of(trial).schedule
        assert schedule["family"] == baseline["family"]
        for key, value in baseline.items():
            if key != "family":
                assert schedule["params"][key] == value, (key, schedule)
    assert TrialRecord.of(study.trials[2]).baseline is None


def test_studies_status_and_best_commands(main_study: dict[str, Any]) -> None:
    url = main_study["url"]
    listing = invoke(["studies", "--storage", url]).output
    assert STUDY in listing and "3/3" in listing
    rows = json.loads(invoke(["studies", "--storage", url, "--json"]).output)
    assert [r["name"] for r in rows] == [STUDY]
    assert rows[0]["n_trials"] == 3 and rows[0]["metric"] == "val_accuracy"

    text = invoke(["status", STUDY, "--storage", url]).output
    assert f"study '{STUDY}' (maximize val_accuracy)" in text and "budget of 3" in text
    info = json.loads(invoke(["status", STUDY, "--storage", url, "--json"]).output)
    assert sum(info["counts"].values()) == 3
    assert set(info["counts"]) <= {"complete", "pruned", "diverged"}
    assert info["budget"] == 3 and info["running"] == []

    best = json.loads(invoke(["best", STUDY, "--storage", url, "--json"]).output)
    study = optuna.load_study(study_name=STUDY, storage=url)
    assert best["number"] == study.best_trial.number
    assert best["value"] == pytest.approx(study.best_value)
    assert best["metric"] == "val_accuracy" and best["study"] == STUDY
    assert best["schedule"]["family"] in ("cosine", "onecycle", "constant")
    assert best["schedule"]["params"]["learning_rate"] > 0
    assert best["schedule"] == TrialRecord.of(study.best_trial).schedule

    missing = invoke(["status", "e2e-mian", "--storage", url], exit_code=2).output
    assert f"Did you mean '{STUDY}'?" in missing


# --- budget, joining and refusing ----------------------------------------------------------------


def test_budget_met_runs_nothing_and_n_trials_raises_it(
    main_study: dict[str, Any], db_copy: Path
) -> None:
    url = sqlite_url(db_copy)
    again = invoke(["start", str(main_study["file"]), "--storage", url]).output
    assert "done: 3/3 finished" in again and "0 trial(s) run here" in again
    assert trial_lines(again) == []

    more = invoke(["start", str(main_study["file"]), "--storage", url, "--n-trials", "4"]).output
    assert [line.split()[0] for line in trial_lines(more)] == ["#3"]
    assert "done: 4/4 finished" in more
    study = optuna.load_study(study_name=STUDY, storage=url)
    states = [t.state for t in study.trials]
    assert len(states) == 4 and all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    assert StudyRecord.of(study).n_trials == 4


def test_changed_file_is_refused_unless_allowed_or_renamed(
    main_study: dict[str, Any], db_copy: Path, tmp_path: Path
) -> None:
    url = sqlite_url(db_copy)
    changed = write(tmp_path / "changed.toml", MAIN_TOML.format(name=STUDY, epochs=4))

    refused = invoke(["start", str(changed), "--storage", url], exit_code=2)
    assert "training.epochs: 3 -> 4" in refused.output
    assert "--allow-changed" in refused.output and "Traceback" not in refused.output

    joined = invoke(["start", str(changed), "--storage", url, "--allow-changed"]).output
    assert "done: 3/3 finished" in joined
    study = optuna.load_study(study_name=STUDY, storage=url)
    assert StudyRecord.of(study).config["training"]["epochs"] == 3  # stored file kept

    other = invoke(
        ["start", str(changed), "--storage", url, "--study-name", "e2e-other", "--n-trials", "1"]
    ).output
    assert "done: 1/1 finished" in other
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert names == {STUDY, "e2e-other"}
    renamed = optuna.load_study(study_name="e2e-other", storage=url)
    assert StudyRecord.of(renamed).config["training"]["epochs"] == 4
    assert TrialRecord.of(renamed.trials[0]).epochs_run in (1, 2, 3, 4)
    assert TrialRecord.of(renamed.trials[0]).baseline is not None  # a new study gets the baselines


# --- where the storage comes from ----------------------------------------------------------------


def test_storage_comes_from_the_environment_variable(
    main_study: dict[str, Any], db_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LRSEARCH_STORAGE", sqlite_url(db_copy))
    started = invoke(["start", str(main_study["file"])]).output
    assert f"storage {sqlite_url(db_copy)}" in started
    assert "done: 3/3 finished" in started  # it found the copied study: nothing to run
    assert STUDY in invoke(["studies"]).output
    assert not (tmp_path / "lrsearch.db").exists()


def test_default_storage_is_lrsearch_db_in_the_working_directory(
    main_study: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LRSEARCH_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(main_study["db"], tmp_path / "lrsearch.db")
    started = invoke(["start", str(main_study["file"])]).output
    assert "storage sqlite:///lrsearch.db" in started
    assert "done: 3/3 finished" in started
    info = json.loads(invoke(["status", STUDY, "--json"]).output)
    assert sum(info["counts"].values()) == 3


# --- Ctrl-C --------------------------------------------------------------------------------------


def _wait_for_running_trial(url: str, name: str, proc: subprocess.Popen[str]) -> Any:
    """The RUNNING trial once it is inside its training (it has reported an epoch)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"lrsearch exited early ({proc.returncode}): {proc.communicate()}")
        try:
            study = optuna.load_study(study_name=name, storage=url)
        except KeyError:  # not created yet
            study = None
        if study is not None:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if running and running[0].intermediate_values:
                return running[0]
        time.sleep(0.2)
    pytest.fail("no trial started running within 120 s")


def test_ctrl_c_fails_the_trial_queues_it_again_and_resume_finishes(tmp_path: Path) -> None:
    study_file = write(tmp_path / "interrupt.toml", INTERRUPT_TOML)
    url = sqlite_url(tmp_path / "interrupt.db")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    env.pop("LRSEARCH_STORAGE", None)
    cmd = [sys.executable, "-m", "lrsearch.cli", "start", str(study_file), "--storage", url]
    proc = subprocess.Popen(
        [*cmd, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        running = _wait_for_running_trial(url, "e2e-interrupt", proc)
        time.sleep(0.5)  # well inside model.fit
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 130, (stdout, stderr)
    both = stdout + stderr
    assert f"trial #{running.number} was queued to run again" in both, both
    assert "Traceback" not in both, both

    study = optuna.load_study(study_name="e2e-interrupt", storage=url)
    assert len(study.trials) == 2
    failed, queued = study.trials
    assert failed.number == running.number
    assert failed.state == TrialState.FAIL
    assert TrialRecord.of(failed).interrupted is True
    assert queued.state == TrialState.WAITING
    assert TrialRecord.of(queued).retry_of == failed.number
    # A WAITING trial has no params yet: enqueue_trial keeps them as its fixed params.
    assert queued.system_attrs["fixed_params"] == failed.params

    resumed = invoke(["start", str(study_file), "--storage", url, "--no-progress"]).output
    assert "done: 1/1 finished" in resumed
    study = optuna.load_study(study_name="e2e-interrupt", storage=url)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    retried = study.trials[1]
    assert retried.params == failed.params
    assert TrialRecord.of(retried).retry_of == failed.number
    assert TrialRecord.of(retried).schedule == TrialRecord.of(failed).schedule
    assert TrialRecord.of(retried).epochs_run == 60


# --- storage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["start", "studies"])
@pytest.mark.parametrize(
    "url", ["notaurl", "postgresql+nosuchdriver://x"], ids=["not-a-url", "no-such-driver"]
)
def test_malformed_storage_url_is_one_line(
    main_study: dict[str, Any], command: str, url: str
) -> None:
    """A malformed URL is bad input (exit 2); one without a scheme is not echoed at all (it
    may be a URL whose password broke the parsing)."""
    args = ["start", str(main_study["file"])] if command == "start" else ["studies"]
    result = invoke([*args, "--storage", url], exit_code=2)
    error = result.stderr.strip()
    assert error.startswith("Error: ") and "\n" not in error, error
    assert "storage" in error.lower(), error
    assert (url in error) == ("://" in url), error
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["start", "studies", "status"])
def test_unreachable_storage_never_prints_the_password(
    main_study: dict[str, Any], command: str
) -> None:
    url = "postgresql://u:secret@127.0.0.1:1/db"
    args = {
        "start": ["start", str(main_study["file"])],
        "studies": ["studies"],
        "status": ["status", STUDY],
    }[command]
    result = invoke([*args, "--storage", url], exit_code=1)
    assert "secret" not in result.output
    assert "postgresql://u:***@127.0.0.1:1/db" in result.output
    error = result.stderr.strip()
    assert error.startswith("Error: Cannot open storage") and "\n" not in error, error


# --- failing trials say why ----------------------------------------------------------------------

FAILING_MODEL = """\
import keras

CALLS = {"n": 0}


def build(input_shape, n_classes):
    CALLS["n"] += 1
    if CALLS["n"] > 1:  # the check before the study passes; every trial fails
        raise ValueError(f"boom on call {CALLS['n']}")
    inputs = keras.Input(input_shape)
    flat = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(flat))
"""

FAILING_TOML = """\
[study]
name = "e2e-failing"
n_trials = 5
pruner = "none"

[data]
source = "digits"
limit = 120

[model]
type = "python:failing_model:build"

[training]
epochs = 2

[space]
families = ["constant"]
"""


def test_failing_trials_record_their_error_print_it_and_stop_the_study(tmp_path: Path) -> None:
    write(tmp_path / "failing_model.py", FAILING_MODEL)
    study_file = write(tmp_path / "failing.toml", FAILING_TOML)
    url = sqlite_url(tmp_path / "failing.db")

    result = invoke(["start", str(study_file), "--storage", url, "--no-progress"], exit_code=1)
    model_file = tmp_path / "failing_model.py"
    where = f"(at {model_file}:9)"  # the raise
    failed_lines = [line for line in trial_lines(result.output) if "FAILED" in line]
    assert len(failed_lines) == 3, result.output
    assert all("ValueError: boom on call" in line and where in line for line in failed_lines)
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(
        "Error: 3 trials failed in a row; stopping. Last error (trial #2): "
    ), error
    assert error.endswith(f"ValueError: boom on call 4 {where}"), error
    assert "unknown" not in result.output

    study = optuna.load_study(study_name="e2e-failing", storage=url)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3
    assert TrialRecord.of(study.trials[0]).error == f"ValueError: boom on call 2 {where}"

    status = invoke(["status", "e2e-failing", "--storage", url]).output
    assert f"failed: trial #2 constant: ValueError: boom on call 4 {where}" in status, status


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ('[model]\ntype = "mlp"\nhiden = [64]\n', "model.hiden is not a parameter of 'mlp'"),
        (
            '[training]\nloss = "sparse_categoricl_crossentropy"\n',
            "training.loss = 'sparse_categoricl_crossentropy' is not a Keras loss",
        ),
    ],
    ids=["model-typo", "loss-typo"],
)
def test_a_broken_model_or_loss_creates_no_study(
    tmp_path: Path, section: str, needle: str
) -> None:
    """The model is built and compiled once before any study exists: a typo is one line and
    exit 2, and no database is created (so the fixed file is not refused as 'different')."""
    text = '[study]\nname = "broken"\n\n[data]\nsource = "digits"\nlimit = 120\n\n' + section
    study_file = write(tmp_path / "broken.toml", text)
    db = tmp_path / "broken.db"
    result = invoke(["start", str(study_file), "--storage", sqlite_url(db)], exit_code=2)
    error = result.stderr.strip()
    assert error.startswith("Error: ") and "\n" not in error, result.output
    assert needle in error, error
    assert "Traceback" not in result.output
    assert not db.exists()


# --- Ctrl-C requeue and seeds across retries -----------------------------------------------------


def _study_with(url: str) -> optuna.Study:
    return optuna.create_study(study_name="requeue", storage=url)


def test_ctrl_c_after_a_trial_that_simply_failed_requeues_nothing(tmp_path: Path) -> None:
    from lrsearch.study import StudyHandle

    study = _study_with(sqlite_url(tmp_path / "r.db"))
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    TrialRecord(error="ValueError: boom").write(trial)
    study.tell(trial, state=TrialState.FAIL)

    assert StudyHandle(study).requeue_interrupted(trial) is None
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_seed_follows_the_original_configuration_through_any_chain_of_retries(
    tmp_path: Path,
) -> None:
    """Trial #0 (seed 100 + 0) dies without heartbeat and Optuna retries it as #1; #1 is
    interrupted with Ctrl-C and requeued as #2: #2 trains with #0's seed, not 100 + 1."""
    from lrsearch.config import parse_study_config
    from lrsearch.objective import Objective
    from lrsearch.study import StudyHandle

    config = parse_study_config(
        {
            "study": {"name": "seeds", "seed": 100},
            "data": {"source": "digits", "limit": 120},
            "model": {"type": "mlp", "hidden": [4]},
            "training": {"epochs": 1},
            "space": {"families": ["constant"]},
        }
    )
    study = _study_with(sqlite_url(tmp_path / "s.db"))
    objective = Objective(config)
    first = study.ask()
    TrialRecord(seed=100).write(first)  # what trial #0 recorded when it started
    study.tell(first, state=TrialState.FAIL)  # its worker died
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[0])

    retry = study.ask()  # #1, Optuna's retry of #0 (it copies the user attributes)
    assert retry.number == 1
    TrialRecord(interrupted=True).write(retry)  # Ctrl-C while it trained
    study.tell(retry, state=TrialState.FAIL)
    StudyHandle(study).requeue_interrupted(retry)

    requeued = study.ask()  # #2
    assert requeued.number == 2
    study.tell(requeued, objective(requeued))
    assert TrialRecord.of(study.trials[2]).seed == 100
