"""The Keras backend choice: TensorFlow (default) or JAX, per study or per run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from lrsearch._imports import import_keras, select_backend
from lrsearch.exceptions import ConfigError
from lrsearch.records import StudyRecord, TrialRecord
from tests.helpers import pytest_under_jax, tiny_study_file

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
ENV.pop("KERAS_BACKEND", None)
ENV.pop("LRSEARCH_STORAGE", None)


def write_study(tmp_path: Path, name: str, backend: str = "tensorflow", n_trials: int = 2) -> Path:
    return tiny_study_file(tmp_path, name, n_trials=n_trials, backend=backend)


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Unknown Keras backend 'torch'"):
        select_backend("torch")


def test_switching_backend_in_a_running_process_is_refused() -> None:
    current = import_keras().backend.backend()
    other = "jax" if current == "tensorflow" else "tensorflow"
    assert select_backend(current) == current
    with pytest.raises(ConfigError, match="needs a fresh process"):
        select_backend(other)


def test_missing_jax_is_one_clear_line(tmp_path: Path) -> None:
    study = write_study(tmp_path, "nojax", backend="jax")
    code = (
        "import sys; sys.modules['jax'] = None\n"  # as if JAX were not installed
        "from lrsearch.cli import main\n"
        f"sys.argv = ['lrsearch', 'start', {str(study)!r}, '--storage', "
        f"'sqlite:///{tmp_path}/x.db']\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert "Keras backend 'jax' is not installed: pip install 'lrsearch[jax]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hint_when_the_backend_is_the_slower_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import lrsearch.runner
    from lrsearch.runner import backend_hint

    current = import_keras().backend.backend()
    other = "jax" if current == "tensorflow" else "tensorflow"
    monkeypatch.setattr(lrsearch.runner, "_FASTER_BACKEND", {"mlp": (other, "2.0")})
    hint = backend_hint("mlp")
    assert hint is not None and f"{other} trained mlp models ~2.0x faster than {current}" in hint
    assert backend_hint("cnn") is None
    assert backend_hint("python:models:build") is None
    monkeypatch.setattr(lrsearch.runner, "_FASTER_BACKEND", {"mlp": (current, "2.0")})
    assert backend_hint("mlp") is None


def test_jax_study_end_to_end_with_two_workers(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    study = write_study(tmp_path, "jaxe2e", n_trials=3)
    url = f"sqlite:///{tmp_path}/j.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lrsearch.cli",
            "start",
            str(study),
            "--storage",
            url,
            "--backend",
            "jax",
            "--workers",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[w1]" in proc.stdout and "[w2]" in proc.stdout
    # JAX is the faster backend for the MLP (compiled once): no hint on JAX
    assert "hint:" not in proc.stdout, proc.stdout
    s = optuna.load_study(study_name="jaxe2e", storage=url)
    finished = [t for t in s.trials if t.state.is_finished() and t.state.name != "FAIL"]
    assert 3 <= len(finished) <= 4
    assert {TrialRecord.of(t).backend for t in finished} == {"jax"}
    assert StudyRecord.of(s).versions["backend"] == "jax"
    assert "jax" in StudyRecord.of(s).versions


def test_backend_is_not_part_of_the_fingerprint(tmp_path: Path) -> None:
    from lrsearch.config import load_study_file

    a, _ = load_study_file(write_study(tmp_path, "fp", backend="tensorflow"))
    b, _ = load_study_file(write_study(tmp_path / "..", "fp", backend="jax"))
    assert a.fingerprint() == b.fingerprint()


# The exactness tests (references, formulas, serialization); the hypothesis property tests run
# under the default backend only, as step-by-step eager evaluation is slow on JAX. So do the
# comparisons with Keras's CosineDecayRestarts and warmup CosineDecay (15 s each on JAX, stepped
# eagerly): on JAX those families are held to PyTorch's references (31 and 14 cases) instead.
JAX_SELECTION = (
    "reference_points or (matches_keras and not restarts and not warmup) "
    "or (pytorch_port and not random) "
    "or matches_pytorch_reference or formula or round_trip or get_config or cycled_momentum "
    "or schedule_free"
)


@pytest.mark.slow
def test_schedule_exactness_under_jax() -> None:
    """tests/test_schedules.py again, with Keras on JAX (the schedules run in keras.ops)."""
    pytest_under_jax("tests/test_schedules.py", JAX_SELECTION)
