"""``lrsearch export``: every format round-trips to the same learning rates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from lrsearch.cli import cli
from lrsearch.export import export_schedule, python_snippet
from lrsearch.records import TrialRecord
from lrsearch.schedules import FAMILIES, build_schedule, resolve_params
from tests.helpers import tiny_study_file

TOTAL = 100
STEPS = [0, 1, 7, 29, 30, 50, 99, 150]
EXTRA: dict[str, dict[str, Any]] = {
    "warmup_decay": {"steps_per_epoch": 10},
    "cosine_restarts": {"first_decay_steps": 30, "t_mul": 1.5, "m_mul": 0.8, "alpha": 0.05},
    "cosine": {"alpha": 0.1},
    "polynomial": {"power": 2.0, "end_learning_rate": 0.001},
    "schedule_free": {"warmup_steps": 10, "beta_1": 0.95},
}
KERAS_BUILTIN = {
    "cosine": "CosineDecay",
    "polynomial": "PolynomialDecay",
    "warmup_decay": "ExponentialDecay",
    "cosine_restarts": "CosineDecayRestarts",
}


def record(family: str, **params: Any) -> dict[str, Any]:
    resolved = resolve_params(family, total_steps=TOTAL, learning_rate=0.1, **params)
    resolved.pop("total_steps", None)
    return {"family": family, "total_steps": TOTAL, "params": resolved}


def values(schedule: Any) -> np.ndarray:
    if isinstance(schedule, float):
        return np.full(len(STEPS), schedule)
    return np.array([float(schedule(s)) for s in STEPS])


def expected(rec: dict[str, Any]) -> np.ndarray:
    return values(build_schedule(rec["family"], total_steps=rec["total_steps"], **rec["params"]))


CASES = [record(f, **EXTRA.get(f, {})) for f in FAMILIES] + [
    record("cosine", warmup_steps=10),
    record("polynomial", warmup_steps=10, decay_steps=90),
    record("warmup_decay", warmup_steps=10, steps_per_epoch=10),
]
IDS = [f"{c['family']}{'-warmup' if c['params'].get('warmup_steps') else ''}" for c in CASES]


@pytest.mark.parametrize("rec", CASES, ids=IDS)
def test_json_is_what_build_schedule_takes(rec: dict[str, Any]) -> None:
    loaded = json.loads(export_schedule(rec, "json"))
    assert loaded == rec
    got = build_schedule(loaded["family"], total_steps=loaded["total_steps"], **loaded["params"])
    np.testing.assert_allclose(values(got), expected(rec), rtol=1e-6)


@pytest.mark.parametrize("rec", CASES, ids=IDS)
def test_keras_format_deserializes_to_the_same_schedule(rec: dict[str, Any]) -> None:
    import keras

    schedule = keras.optimizers.schedules.deserialize(json.loads(export_schedule(rec, "keras")))
    assert (
        schedule.get_config()
        == build_schedule(rec["family"], total_steps=TOTAL, **rec["params"]).get_config()
    )
    np.testing.assert_allclose(values(schedule), expected(rec), rtol=1e-6)


@pytest.mark.parametrize("rec", CASES, ids=IDS)
def test_python_snippet_runs_and_matches(rec: dict[str, Any]) -> None:
    snippet = python_snippet(rec)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "<snippet>", "exec"), namespace)  # noqa: S102 - our own output
    np.testing.assert_allclose(values(namespace["schedule"]), expected(rec), rtol=2e-5)
    builtin = KERAS_BUILTIN.get(rec["family"])
    if rec["family"] == "constant":
        assert "import" not in snippet
    elif builtin and not rec["params"].get("warmup_steps"):
        assert f"keras.optimizers.schedules.{builtin}(" in snippet
        assert "lrsearch" not in snippet.split("\n", 3)[-1]  # pure Keras code
    else:
        assert "from lrsearch.schedules import build_schedule" in snippet
    if rec["params"].get("cycle_momentum"):  # onecycle, cyclic: the optimizer that cycles
        optimizer = namespace["optimizer"]
        assert type(optimizer).__name__ == "CyclingSGD"
        assert optimizer.momentum == rec["params"]["max_momentum"]
    elif rec["family"] == "schedule_free":  # its own optimizer, evaluated on its average
        optimizer = namespace["optimizer"]
        assert type(optimizer).__name__ == "ScheduleFreeAdamW"
        assert optimizer.beta_1 == rec["params"]["beta_1"]
        assert optimizer.learning_rate is not None
        assert "callbacks=[ScheduleFreeEvaluation()]" in snippet
        assert namespace["ScheduleFreeEvaluation"].__name__ == "ScheduleFreeEvaluation"
    else:
        assert "optimizer" not in namespace


@pytest.fixture(scope="module")
def study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("export")
    url = f"sqlite:///{folder / 'x.db'}"
    result = CliRunner().invoke(
        cli,
        ["start", str(tiny_study_file(folder, "tiny-export")), "--storage", url, "--no-progress"],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return url


def test_export_command_writes_each_format(study_url: str, tmp_path: Path) -> None:
    import keras
    import optuna

    study = optuna.load_study(study_name="tiny-export", storage=study_url)
    best = TrialRecord.of(study.best_trial).schedule
    runner = CliRunner()
    out = runner.invoke(cli, ["export", "tiny-export", "--storage", study_url])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == best
    for trial in study.trials:
        target = tmp_path / f"{trial.number}.json"
        args = ["export", "tiny-export", "--trial", str(trial.number), "--format", "keras"]
        out = runner.invoke(cli, [*args, "-o", str(target), "--storage", study_url])
        assert out.exit_code == 0, out.output
        schedule = keras.optimizers.schedules.deserialize(json.loads(target.read_text()))
        assert schedule.get_config()["learning_rate"] == pytest.approx(
            TrialRecord.of(trial).schedule["params"]["learning_rate"]
        )
    out = runner.invoke(
        cli, ["export", "tiny-export", "--format", "python", "--storage", study_url]
    )
    assert out.exit_code == 0 and "schedule = " in out.output


def test_export_of_a_missing_trial_is_one_line(study_url: str) -> None:
    out = CliRunner().invoke(
        cli, ["export", "tiny-export", "--trial", "99", "--storage", study_url]
    )
    assert out.exit_code == 2
    assert "no trial #99" in out.output
    assert "Traceback" not in out.output
