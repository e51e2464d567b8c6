"""``lrsearch retrain``: a trial's configuration trained again and saved, schedule included."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from lrsearch.cli import cli
from lrsearch.records import TrialRecord
from tests.helpers import tiny_study_file


@pytest.fixture(scope="module")
def study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("retrain")
    url = f"sqlite:///{folder / 'x.db'}"
    study_file = tiny_study_file(folder, "tiny-retrain", families='["plateau", "cosine"]')
    result = CliRunner().invoke(cli, ["start", str(study_file), "--storage", url, "--no-progress"])
    assert result.exit_code == 0, (result.output, result.exception)
    return url


def test_retrained_model_loads_back_with_its_schedule(study_url: str, tmp_path: Path) -> None:
    import keras

    import lrsearch.schedules  # noqa: F401 - registers the schedules for loading

    study = optuna.load_study(study_name="tiny-retrain", storage=study_url)
    assert {t.params["family"] for t in study.trials} == {"plateau", "cosine"}
    for trial in study.trials:
        target = tmp_path / f"t{trial.number}.keras"
        args = ["retrain", "tiny-retrain", "--trial", str(trial.number), "--save", str(target)]
        result = CliRunner().invoke(cli, [*args, "--storage", study_url])
        assert result.exit_code == 0, (result.output, result.exception)
        assert f"trial #{trial.number}" in result.output and "saved" in result.output
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = keras.saving.load_model(target)
        assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
        schedule = model.optimizer._learning_rate
        stored = TrialRecord.of(trial).schedule
        assert type(schedule).family == stored["family"]
        expected = lrsearch.schedules.build_schedule(
            stored["family"], total_steps=stored["total_steps"], **stored["params"]
        )
        assert schedule.get_config() == expected.get_config()
        # the optimizer's state came along, for plateau models too (see detach_scale)
        assert int(model.optimizer.iterations.numpy()) > 0
        moments = [v for v in model.optimizer.variables if "momentum" in v.path]
        assert moments and any(float(abs(v.numpy()).sum()) > 0 for v in moments)


def test_same_seed_same_result(study_url: str, tmp_path: Path) -> None:
    study = optuna.load_study(study_name="tiny-retrain", storage=study_url)
    best = study.best_trial
    args = ["retrain", "tiny-retrain", "--save", str(tmp_path / "best.keras")]
    result = CliRunner().invoke(cli, [*args, "--storage", study_url])
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"trial #{best.number}" in result.output
    assert f"val_accuracy={best.value:.4f}" in result.output
    assert "(the trial:" not in result.output  # said only when the two differ


def test_epochs_override_and_bad_file_name(study_url: str, tmp_path: Path) -> None:
    target = tmp_path / "longer.keras"
    args = ["retrain", "tiny-retrain", "--epochs", "3", "--save", str(target)]
    result = CliRunner().invoke(cli, [*args, "--storage", study_url])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "trained 3 epochs" in result.output and target.exists()
    bad = CliRunner().invoke(
        cli, ["retrain", "tiny-retrain", "--save", str(tmp_path / "m.h5"), "--storage", study_url]
    )
    assert bad.exit_code == 2 and "must end in .keras" in bad.output
