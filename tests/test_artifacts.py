"""Artifacts through ``lrsearch start``: per-trial pictures and CSV, the study note and figure."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta

from lrsearch.artifacts import (
    NO_STORE_WARNING,
    ArtifactRecorder,
    default_location,
    resolve_artifacts,
)
from lrsearch.cli import cli
from lrsearch.records import TrialRecord
from tests.helpers import PNG, tiny_study_file


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("artifacts")
    db = folder / "x.db"
    url = f"sqlite:///{db}"
    result = CliRunner().invoke(
        cli, ["start", str(tiny_study_file(folder, "tiny")), "--storage", url, "--no-progress"]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return {"url": url, "folder": folder / "x-artifacts", "output": result.output}


def test_default_location_is_next_to_the_sqlite_file(tmp_path: Path) -> None:
    assert default_location(f"sqlite:///{tmp_path}/runs/x.db") == f"{tmp_path}/runs/x-artifacts"
    assert default_location("sqlite:///x.db") == "x-artifacts"
    assert default_location("sqlite://") is None
    assert default_location("postgresql+psycopg://u:p@db/optuna") is None


def test_setting_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LRSEARCH_ARTIFACTS", "/shared/art")
    assert resolve_artifacts("/mine", "sqlite:///x.db") == "/mine"
    assert resolve_artifacts(None, "sqlite:///x.db") == "/shared/art"
    monkeypatch.delenv("LRSEARCH_ARTIFACTS")
    assert resolve_artifacts(None, "sqlite:///x.db") == "x-artifacts"
    assert resolve_artifacts(None, "mysql+pymysql://root@db/test") is None


def test_every_finished_trial_has_its_three_artifacts(study: dict[str, Any]) -> None:
    loaded = optuna.load_study(study_name="tiny", storage=study["url"])
    trials = loaded.get_trials(deepcopy=False)
    assert len(trials) == 2
    for trial in trials:
        assert trial.state.is_finished()
        metas = get_all_artifact_meta(trial, storage=loaded._storage)
        assert sorted(m.filename for m in metas) == [
            "history.csv",
            "learning_curve.png",
            "lr_curve.png",
        ]
        for meta in metas:
            data = (study["folder"] / meta.artifact_id).read_bytes()
            if meta.filename.endswith(".png"):
                assert data[:8] == PNG
                assert meta.mimetype == "image/png"
                assert len(data) > 10_000  # a drawn figure
            else:
                rows = list(csv.DictReader(io.StringIO(data.decode())))
                history = TrialRecord.of(trial).history
                assert [int(r["epoch"]) for r in rows] == history["epoch"]
                assert [float(r["lr"]) for r in rows] == pytest.approx(history["lr"])


def test_the_study_note_has_the_best_per_family_table(study: dict[str, Any]) -> None:
    from optuna_dashboard import get_note

    loaded = optuna.load_study(study_name="tiny", storage=study["url"])
    note = get_note(loaded)
    best = loaded.best_trial
    assert f"Best trial: #{best.number}" in note
    assert "| family | best val_accuracy | trial | trials |" in note
    family = TrialRecord.of(best).schedule["family"]
    assert f"| {family} | {best.value:.4f} | #{best.number} |" in note
    assert "lrsearch export tiny" in note


def test_the_study_has_one_current_top_trials_figure(study: dict[str, Any]) -> None:
    loaded = optuna.load_study(study_name="tiny", storage=study["url"])
    metas = get_all_artifact_meta(loaded)
    assert [m.filename for m in metas] == ["top_lr_curves.png"]
    assert (study["folder"] / metas[0].artifact_id).read_bytes()[:8] == PNG


class _BrokenStore:
    def write(self, artifact_id: str, content_body: Any) -> None:
        raise OSError("disk gone")


def test_a_failing_store_never_fails_the_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import lrsearch.artifacts as artifacts

    artifacts._warned.discard("failed")
    warnings: list[str] = []
    recorder = ArtifactRecorder(
        _BrokenStore(), epochs=2, metric="val_accuracy", warn=warnings.append
    )
    study = optuna.create_study(direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(
            "schedule",
            {"family": "constant", "total_steps": 10, "params": {"learning_rate": 0.1}},
        )
        history = {"epoch": [1, 2], "lr": [0.1, 0.1], "loss": [1.0, 0.5]}
        recorder.upload_trial(trial, history)
        return 0.5

    study.optimize(objective, n_trials=2, callbacks=[recorder.trial_finished])
    recorder.flush()
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert len(warnings) == 1 and "disk gone" in warnings[0]


def test_no_store_for_a_server_database_is_warned_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lrsearch.artifacts as artifacts

    monkeypatch.delenv("LRSEARCH_ARTIFACTS", raising=False)
    artifacts._warned.discard("none")
    assert artifacts.artifact_store_for(None, "postgresql+psycopg://u@db/x") is None
    assert artifacts.artifact_store_for(None, "postgresql+psycopg://u@db/x") is None
    assert capsys.readouterr().err.count(NO_STORE_WARNING) == 1


def test_a_folder_setting_makes_a_filesystem_store(tmp_path: Path) -> None:
    from lrsearch.artifacts import open_artifact_store

    store = open_artifact_store(str(tmp_path / "new" / "art"))
    assert isinstance(store, FileSystemArtifactStore)
    assert (tmp_path / "new" / "art").is_dir()


def test_none_turns_artifacts_off_without_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lrsearch.artifacts as artifacts

    artifacts._warned.discard("none")
    assert artifacts.artifact_store_for("none", "sqlite:///x.db") is None
    monkeypatch.setenv("LRSEARCH_ARTIFACTS", "None")
    assert artifacts.artifact_store_for(None, "sqlite:///x.db") is None
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("processes", [True, False], ids=["drawing-process", "thread"])
def test_placeholders_are_replaced_by_the_drawn_pictures(tmp_path: Path, processes: bool) -> None:
    from lrsearch.artifacts import PLACEHOLDER_PNG, open_artifact_store

    store = open_artifact_store(str(tmp_path / "art"))
    recorder = ArtifactRecorder(store, epochs=2, metric="val_accuracy", processes=processes)
    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 'p.db'}")
    seen: list[bytes] = []

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(
            "schedule",
            {"family": "cosine", "total_steps": 20, "params": {"learning_rate": 0.1}},
        )
        history = {
            "epoch": [1, 2],
            "lr": [0.1, 0.05],
            "loss": [1.0, 0.5],
            "val_loss": [1.1, 0.6],
            "accuracy": [0.5, 0.7],
            "val_accuracy": [0.4, 0.6 + trial.number / 10],
        }
        recorder.upload_trial(trial, history)
        metas = get_all_artifact_meta(trial)
        seen.extend((tmp_path / "art" / m.artifact_id).read_bytes() for m in metas)
        return history["val_accuracy"][-1]

    study.optimize(objective, n_trials=3, callbacks=[recorder.trial_finished])
    assert PLACEHOLDER_PNG in seen  # when the trial ended, its pictures were placeholders
    recorder.wait()
    drawing = recorder._drawing
    assert (drawing is not None) == processes
    recorder.flush()
    if drawing is not None:  # flush stopped the drawing process
        assert drawing._proc is None
    for trial in study.trials:
        metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=study._storage)}
        assert sorted(metas) == ["history.csv", "learning_curve.png", "lr_curve.png"]
        for name in ("learning_curve.png", "lr_curve.png"):
            data = (tmp_path / "art" / metas[name].artifact_id).read_bytes()
            assert data[:8] == PNG and len(data) > 10_000, (name, len(data))
    (figure,) = get_all_artifact_meta(study)
    assert (tmp_path / "art" / figure.artifact_id).stat().st_size > 10_000
