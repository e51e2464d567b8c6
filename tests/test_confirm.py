"""lrsearch.confirm: replicates of the top configurations, trained for real, and the verdict.

One small study (3 trials of a tiny MLP, 2 epochs) is trained once per module and confirmed;
the statistics are checked on hand-made trials (``ask``/``tell``, no training).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from lrsearch.artifacts import study_note
from lrsearch.cli import cli
from lrsearch.config import load_study_file
from lrsearch.confirm import (
    confirm,
    queue_replicates,
    replicate_seed,
    summarize,
    top_sources,
)
from lrsearch.records import StudyRecord, TrialRecord
from lrsearch.runner import run_study
from lrsearch.study import StudyHandle
from tests.helpers import tiny_study_file

N_TRIALS = 3
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _search_trials(handle: StudyHandle) -> list[optuna.trial.FrozenTrial]:
    return [t for t in handle.optuna.get_trials() if TrialRecord.of(t).replicate_of is None]


def _replicates(handle: StudyHandle) -> list[optuna.trial.FrozenTrial]:
    return [t for t in handle.optuna.get_trials() if TrialRecord.of(t).replicate_of is not None]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 3-trial study, searched and then confirmed with top 2 x 2 seeds (in this process):
    its folder and the storage URL of a copy of the database kept as it was after confirm."""
    folder = tmp_path_factory.mktemp("confirm")
    study_file = tiny_study_file(folder, "conf", n_trials=N_TRIALS, pack=1)
    config, text = load_study_file(study_file)
    url = f"sqlite:///{folder / 'study.db'}"
    run_study(config, study_file_text=text, storage_url=url, progress=False)
    confirm("conf", storage_url=url, top=2, seeds=2, progress=False)
    return folder, url


def _copy(trained: tuple[Path, str], tmp_path: Path) -> str:
    """A private copy of the confirmed study's database (tests that write use it)."""
    folder, _ = trained
    with (
        sqlite3.connect(folder / "study.db") as src,
        sqlite3.connect(tmp_path / "study.db") as dst,
    ):
        src.backup(dst)  # WAL included
    return f"sqlite:///{tmp_path / 'study.db'}"


# --- seeds -----------------------------------------------------------------------------------


def test_replicate_seeds_are_distinct_from_search_seeds_and_each_other() -> None:
    study_seed = 42
    search = {(study_seed + n) % 2**32 for n in range(10_000)}
    replicas = [replicate_seed(study_seed, n, i) for n in range(200) for i in range(100)]
    assert len(set(replicas)) == len(replicas)
    assert not search & set(replicas)
    with pytest.raises(ValueError, match="index"):
        replicate_seed(0, 0, 1000)


# --- a replicate trains its source's schedule -------------------------------------------------


def test_a_replicate_trains_its_sources_exact_schedule_with_a_fresh_seed(
    trained: tuple[Path, str],
) -> None:
    handle = StudyHandle.open("conf", trained[1])
    sources = {t.number: t for t in _search_trials(handle)}
    replicates = _replicates(handle)

    assert len(replicates) == 4  # top 2 x 2 seeds
    assert {TrialRecord.of(r).replicate_of for r in replicates} == {
        t.number for t in top_sources(handle, 2)
    }
    search_seeds = {TrialRecord.of(t).seed for t in sources.values()}
    for r in replicates:
        record = TrialRecord.of(r)
        source = TrialRecord.of(sources[int(record.replicate_of or 0)])
        assert r.state == TrialState.COMPLETE
        assert record.schedule == source.schedule and record.schedule is not None
        assert record.relative == source.relative
        assert r.params == sources[int(record.replicate_of or 0)].params
        assert record.seed not in search_seeds
        assert record.history is not None and len(record.history["epoch"]) == 2
    assert len({TrialRecord.of(r).seed for r in replicates}) == 4


def test_replicates_are_not_counted_against_the_budget(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    """The study's n_trials search trials were run before confirm; start again runs none, and a
    larger budget runs exactly the difference, with replicates in the study."""
    url = _copy(trained, tmp_path)
    folder, _ = trained
    config, text = load_study_file(folder / "conf.toml")
    handle = StudyHandle.open("conf", url)
    assert handle.progress() == (N_TRIALS, 0)
    assert handle.counts(replicates=True) == {"complete": 4}

    again = run_study(config, study_file_text=text, storage_url=url, progress=False)
    assert again.ran == 0 and again.finished == N_TRIALS

    # waiting replicates are trained by a search run too, and still not counted
    sources = top_sources(handle, 2)
    assert queue_replicates(handle, sources, 3) == 2
    more = run_study(
        config, study_file_text=text, storage_url=url, progress=False, n_trials=N_TRIALS + 1
    )
    assert more.finished == N_TRIALS + 1
    assert len([t for t in _search_trials(handle) if t.state.is_finished()]) == N_TRIALS + 1
    assert handle.counts(replicates=True) == {"complete": 6}
    assert handle.status().replicates == {"complete": 6}


def test_confirm_again_queues_nothing_and_trains_nothing(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    url = _copy(trained, tmp_path)
    before = len(optuna.load_study(study_name="conf", storage=url).trials)

    result = confirm("conf", storage_url=url, top=2, seeds=2, progress=False)

    assert result.queued == 0
    assert len(optuna.load_study(study_name="conf", storage=url).trials) == before
    assert [c.n for c in result.configs] == [3, 3]


def test_a_replicate_queued_twice_at_once_trains_once(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    """What two confirm processes queueing at the same instant leave: the same replicate
    (source, seed) twice. The higher-numbered copy ends FAIL untrained, marked duplicate_of."""
    url = _copy(trained, tmp_path)
    handle = StudyHandle.open("conf", url)
    (source,) = top_sources(handle, 1)
    config, _ = handle.config()
    twin = TrialRecord(replicate_of=source.number, seed=replicate_seed(0, source.number, 2))
    for _ in range(2):
        handle.optuna.enqueue_trial(source.params, user_attrs=twin.attrs(), skip_if_exists=False)
    first, second = (t.number for t in handle.optuna.get_trials() if t.state.name == "WAITING")

    result = confirm("conf", storage_url=url, top=1, seeds=3, progress=False)

    trained_one = handle.trial(first)
    skipped = handle.trial(second)
    assert trained_one.state == TrialState.COMPLETE
    assert skipped.state == TrialState.FAIL
    assert TrialRecord.of(skipped).duplicate_of == first
    assert TrialRecord.of(skipped).history is None  # never trained
    assert result.queued == 0 and result.configs[0].n == 4
    assert result.configs[0].not_counted == 0
    failed = handle.status().failed
    assert [f["number"] for f in failed] == [second]
    assert "same replicate as trial" in failed[0]["error"]


@pytest.mark.slow
def test_two_confirm_processes_at_once_train_each_replicate_once(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    import subprocess

    url = _copy(trained, tmp_path)
    args = [sys.executable, "-m", "lrsearch.cli", "confirm", "conf", "--storage", url]
    args += ["--top", "3", "--seeds", "3", "--no-progress", "--artifacts", "none"]
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": str(Path(sys.executable).parent)}
    procs = [
        subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**env, "HOME": str(tmp_path)},
            cwd=Path(__file__).parents[1],
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    if [p.returncode for p in procs] != [0, 0]:  # pytest.fail shows the outputs untruncated
        pytest.fail(f"exit codes {[p.returncode for p in procs]}:\n" + "\n---\n".join(outputs))

    handle = StudyHandle.open("conf", url)
    done = [t for t in _replicates(handle) if t.state == TrialState.COMPLETE]
    keys = [(TrialRecord.of(t).replicate_of, TrialRecord.of(t).seed) for t in done]
    assert len(keys) == 3 * 3 and len(set(keys)) == len(keys), outputs
    others = [t for t in _replicates(handle) if t.state != TrialState.COMPLETE]
    assert all(TrialRecord.of(t).duplicate_of is not None for t in others), outputs
    assert handle.progress() == (N_TRIALS, 0)


# --- the statistics, on hand-made trials --------------------------------------------------------


def _handmade(
    values: dict[int, list[float]], tmp_path: Path, same: dict[int, int] | None = None
) -> StudyHandle:
    """A study whose trial i (family cosine) has value values[i][0] and one replicate per
    further value; trial i's schedule is trial ``same[i]``'s when given, else its own."""
    url = f"sqlite:///{tmp_path / 'hand.db'}"
    study = optuna.create_study(study_name="hand", storage=url, direction="maximize")
    StudyRecord(config={"study": {"metric": "val_accuracy"}}).write(study)
    family = {"family": CategoricalDistribution(["cosine"])}
    for source in values:
        trial = study.ask(family)
        assert trial.number == source
        lr = 0.1 * (1 + (same or {}).get(source, source))
        schedule = {"family": "cosine", "total_steps": 10, "params": {"learning_rate": lr}}
        TrialRecord(schedule=schedule).write(trial)
        study.tell(trial, values[source][0])
    for source, sample in values.items():
        for i, value in enumerate(sample[1:]):
            trial = study.ask(family)
            TrialRecord(replicate_of=source, seed=replicate_seed(0, source, i)).write(trial)
            study.tell(trial, value)
    return StudyHandle(study, url)


def test_verdict_distinguishable(tmp_path: Path) -> None:
    handle = _handmade({0: [0.90, 0.91, 0.90, 0.91], 1: [0.95, 0.96, 0.95, 0.96]}, tmp_path)

    result = summarize(handle)

    assert [(c.rank, c.source, c.n) for c in result.configs] == [(1, 1, 4), (2, 0, 4)]
    assert result.configs[0].mean == pytest.approx(0.955)
    assert result.configs[0].sd == pytest.approx(0.005773502691896263)
    assert result.verdict.distinguishable is True
    assert result.verdict.p_value is not None and result.verdict.p_value < 0.05
    assert "#1 (cosine) is distinguishable from #0 (cosine)" in result.verdict.text
    assert "Welch's t-test, one-sided" in result.verdict.text
    assert "Confirmed" in study_note(handle.optuna, "val_accuracy")
    assert result.verdict.text in study_note(handle.optuna, "val_accuracy")


def test_verdict_not_distinguishable(tmp_path: Path) -> None:
    handle = _handmade({0: [0.96, 0.90, 0.93], 1: [0.95, 0.92, 0.91]}, tmp_path)

    result = summarize(handle)

    assert [c.source for c in result.configs] == [0, 1]  # by mean, not by the search's value
    assert result.verdict.distinguishable is False
    assert result.verdict.p_value is not None and result.verdict.p_value >= 0.05
    assert "is not distinguishable" in result.verdict.text


def test_verdict_without_enough_runs_or_runner_up(tmp_path: Path) -> None:
    handle = _handmade({0: [0.9, 0.91], 1: [0.95]}, tmp_path)

    assert "not enough runs" in summarize(handle, [1, 0]).verdict.text
    alone = summarize(handle, [0])
    assert alone.verdict.distinguishable is None and "no runner-up" in alone.verdict.text
    assert alone.configs[0].n == 2 and alone.configs[0].mean == pytest.approx(0.905)


def test_a_replicate_run_again_counts_once(tmp_path: Path) -> None:
    """A replicate interrupted (or taken over from a dead worker) and queued again keeps its
    seed: its failed first copy is not an incomplete replicate once the re-run completed."""
    from optuna.trial import TrialState

    handle = _handmade({0: [0.9, 0.91]}, tmp_path)
    study = handle.optuna
    seed = replicate_seed(0, 0, 1)
    family = {"family": CategoricalDistribution(["cosine"])}
    first = study.ask(family)
    TrialRecord(replicate_of=0, seed=seed, interrupted=True).write(first)
    study.tell(first, state=TrialState.FAIL)
    assert summarize(handle).configs[0].not_counted == 1  # not run again yet
    again = study.ask(family)
    TrialRecord(replicate_of=0, seed=seed, retry_of=first.number).write(again)
    study.tell(again, 0.92)
    config = summarize(handle).configs[0]
    assert config.n == 3 and config.not_counted == 0


def test_top_sources_are_distinct_schedules_and_skip_replicates(tmp_path: Path) -> None:
    # trial 2 ran trial 1's schedule: the same configuration
    handle = _handmade({0: [0.9, 0.99], 1: [0.95], 2: [0.96]}, tmp_path, same={2: 1})

    # #3 (0.99) is a replicate; #2 (0.96) beats #1 with the same schedule
    assert [t.number for t in top_sources(handle, 3)] == [2, 0]


# --- the command --------------------------------------------------------------------------------


def test_cli_prints_the_table_and_json(trained: tuple[Path, str]) -> None:
    url = trained[1]
    runner = CliRunner()
    text = runner.invoke(cli, ["confirm", "conf", "--storage", url, "--top", "2", "--seeds", "2"])
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[1].split()[:6] == ["rank", "trial", "family", "n", "mean", "±"]
    assert lines[2].startswith("1 ") and " 3  " in lines[2] and "±" in lines[2]
    assert lines[-1].startswith("verdict: ")

    as_json = runner.invoke(
        cli, ["confirm", "conf", "--storage", url, "--top", "2", "--seeds", "2", "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert [c["n"] for c in data["configs"]] == [3, 3]
    assert data["verdict"]["rule"].startswith("distinguishable when p < 0.05")
    assert set(data["configs"][0]) >= {"source", "family", "mean", "sd", "min", "max", "values"}

    status = runner.invoke(cli, ["status", "conf", "--storage", url])
    assert f"{N_TRIALS} complete of a budget of {N_TRIALS}" in status.output
    assert "replicates (lrsearch confirm; not in the budget): 4 complete" in status.output


def test_cli_help_has_an_example() -> None:
    result = CliRunner().invoke(cli, ["confirm", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "lrsearch confirm digits-mlp" in result.output


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--seeds", "0"], 2, "Invalid value for '--seeds'"),
        (["--seeds", "many"], 2, "Invalid value for '--seeds'"),
        (["--top", "0"], 2, "Invalid value for '--top'"),
    ],
)
def test_cli_bad_options_are_usage_errors(args: list[str], code: int, needle: str) -> None:
    result = CliRunner().invoke(cli, ["confirm", "conf", *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    study = optuna.create_study(study_name="empty", storage=url)
    StudyRecord(config={"study": {"name": "empty"}}).write(study)
    runner = CliRunner()

    for args, needle in [
        (["empty"], "has no completed trial to confirm yet"),
        (["emtpy"], "Did you mean 'empty'?"),
    ]:
        result = runner.invoke(cli, ["confirm", *args, "--storage", url], catch_exceptions=False)
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code in (1, 2) and len(errors) == 1, result.output
        assert needle in errors[0] and "Traceback" not in result.output
