"""The learning-rate range test: the curve, the range read off it, and the study that stores it.

Real Keras trainings on the bundled digits and real SQLite studies; the reading of the range is
also checked on hand-made curves.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lrsearch.cli import cli
from lrsearch.config import load_study_file
from lrsearch.exceptions import ConfigError, LRSearchError
from lrsearch.objective import Objective, train
from lrsearch.rangetest import (
    HEADROOM,
    MIN_STEPS,
    LRRange,
    RangeCurve,
    centered_average,
    default_steps,
    find_lr,
    range_test,
    suggest_range,
)
from lrsearch.records import StudyRecord
from lrsearch.runner import run_study
from lrsearch.study import StudyHandle
from tests.helpers import PNG, tiny_study_file

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "studies" / "digits.toml"


def _curve(seed: int, minimum_at: float, *, steps: int = 200, noise: float = 0.0) -> RangeCurve:
    """A hand-made range test: a loss falling from 2.3 to its minimum at lr ``minimum_at``
    (a parabola in log lr), then rising."""
    lrs = [1e-6 * (1e7) ** (k / steps) for k in range(steps)]
    rng = np.random.default_rng(seed)
    x = np.log10(lrs) - math.log10(minimum_at)
    loss = list(np.minimum(0.3 + 0.2 * x**2, 2.3) + noise * rng.standard_normal(steps))
    window = steps // 20
    return RangeCurve(
        seed=seed, lr=lrs, loss=loss, smoothed=centered_average(loss, window=window), window=window
    )


def test_range_is_anchored_at_the_geometric_mean_of_the_minima() -> None:
    curves = [_curve(0, 0.01), _curve(1, 0.04)]
    found = suggest_range(curves, decades=2.0, steps=200, min_lr=1e-6, max_lr=10.0)
    assert found.anchor == pytest.approx(0.02, rel=0.1)  # sqrt(0.01 * 0.04)
    assert found.high == pytest.approx(HEADROOM * found.anchor)
    assert found.low == pytest.approx(found.high / 100)
    assert found.spread == pytest.approx(4.0, rel=0.15)
    lines = found.reasoning()
    assert "on average (log space)" in lines[1] and f"{HEADROOM:g}x that" in lines[3]
    record = found.record()
    assert record["low"] == found.low and record["high"] == found.high
    assert len(record["minima"]) == 2 and record["anchor"] == found.anchor


def test_the_top_stays_below_where_the_loss_exploded() -> None:
    early = replace(_curve(0, 0.01), exploded_at=0.025)
    found = suggest_range([early], steps=200, min_lr=1e-6, max_lr=10.0)
    assert found.high == pytest.approx(0.0125)  # half the explosion, below 3x the anchor
    assert "half where the loss exploded" in found.reasoning()[3]
    closer = replace(_curve(0, 0.01), exploded_at=0.012)
    found = suggest_range([closer], steps=200, min_lr=1e-6, max_lr=10.0)
    assert found.high == pytest.approx(found.anchor)  # never below the anchor


def test_the_top_stays_under_lrsearchs_cap() -> None:
    late = _curve(0, 4.0, steps=1000)  # a minimum at lr 4 (the ramp goes to 10)
    late = replace(late, smoothed=centered_average(late.loss, window=5), window=5)
    found = suggest_range([late], steps=1000, min_lr=1e-6, max_lr=10.0)
    assert found.high == 10.0


def test_a_loss_still_falling_at_the_end_gives_no_range() -> None:
    falling = _curve(0, 100.0)  # its minimum lies beyond the ramp's end (10)
    with pytest.raises(LRSearchError, match=r"still falling at the end.*--max-lr"):
        suggest_range([falling], steps=200, min_lr=1e-6, max_lr=10.0)


def test_a_loss_exploding_within_a_few_steps_gives_no_range() -> None:
    short = _curve(0, 1e-5, steps=200)
    cut = replace(short, lr=short.lr[:6], loss=short.loss[:6], smoothed=short.smoothed[:6])
    with pytest.raises(LRSearchError, match=r"exploded at step 6.*--min-lr"):
        suggest_range([cut], steps=200, min_lr=1e-6, max_lr=10.0)


def test_decades_set_the_width() -> None:
    found = suggest_range([_curve(0, 0.01)], decades=1.0, steps=200, min_lr=1e-6, max_lr=10.0)
    assert found.high / found.low == pytest.approx(10.0)


def test_a_loss_that_never_falls_gives_no_range() -> None:
    lrs = [1e-6 * (1e7) ** (k / 100) for k in range(100)]
    rng = np.random.default_rng(0)
    loss = list(2.3 + 0.02 * rng.standard_normal(100))
    flat = RangeCurve(
        seed=3, lr=lrs, loss=loss, smoothed=centered_average(loss, window=5), window=5
    )
    assert not flat.fell
    with pytest.raises(LRSearchError, match=r"did not fall.*seed 3.*--steps"):
        suggest_range([_curve(0, 0.01), flat], steps=100, min_lr=1e-6, max_lr=10.0)


def test_a_noisy_but_clear_descent_counts() -> None:
    assert _curve(0, 0.01, noise=0.05).fell


def test_default_steps_is_one_trial_within_limits() -> None:
    assert default_steps(276) == 276
    assert default_steps(5) == MIN_STEPS
    assert default_steps(10**6) == 500


def test_range_test_ramps_exponentially_and_stops_when_the_loss_explodes(
    tmp_path: Path,
) -> None:
    config, _ = load_study_file(tiny_study_file(tmp_path, "ramp", optimizer="sgd"))
    objective = Objective(config)
    curve = range_test(config, objective.dataset, seed=0, steps=150, min_lr=1e-3, max_lr=1e4)
    ratios = np.diff(np.log(curve.lr))
    assert curve.lr[0] == pytest.approx(1e-3)
    assert np.allclose(ratios, math.log(1e7) / 150)  # one constant factor per step
    assert curve.exploded_at is not None  # SGD at lr 1e4 blows up before the ramp ends
    assert len(curve.lr) < 150 and curve.exploded_at in curve.lr
    # the explosion is dated where the losses rose above the limit for good, not where the
    # lagging average noticed it
    start = curve.lr.index(curve.exploded_at)
    best = min(v for v in curve.smoothed if math.isfinite(v))
    assert all(not math.isfinite(v) or v > best for v in curve.loss[start:])
    assert start < len(curve.lr) - 1
    assert len(curve.loss) == len(curve.smoothed) == len(curve.lr)


def test_range_test_loss_is_each_batchs_own_loss(tmp_path: Path) -> None:
    """At a tiny constant-ish learning rate the weights barely move: each batch's recovered loss
    is its loss under the initial weights, which ``evaluate`` computes directly."""
    import keras

    config, _ = load_study_file(tiny_study_file(tmp_path, "own", optimizer="sgd", momentum=0.0))
    objective = Objective(config)
    data = objective.dataset
    curve = range_test(config, data, seed=0, steps=8, min_lr=1e-12, max_lr=1e-11)
    from lrsearch.objective import build_study_model

    keras.utils.set_random_seed(0)
    model = build_study_model(config, data)
    model.compile(loss=config.training.loss)
    whole = model.evaluate(data.x_train, data.y_train, verbose=0, batch_size=len(data.x_train))
    # the batches are a shuffled partition of the training set: their mean loss over an epoch,
    # weighted by their sizes, is the loss of the whole set
    size = config.data.batch_size
    per_epoch = data.steps_per_epoch(size)
    sizes = [min(size, len(data.x_train) - size * b) for b in range(per_epoch)]
    mean = np.average(curve.loss[:per_epoch], weights=sizes)
    assert mean == pytest.approx(whole, rel=1e-4)


@pytest.fixture(scope="module")
def digits_range() -> tuple[LRRange, Objective]:
    """One range test on the bundled digits with the default study's model (one trial's cost)."""
    config, _ = load_study_file(DIGITS)
    objective = Objective(config, base_dir=DIGITS.parent)
    objective.check()
    return find_lr(config, objective=objective), objective


def test_digits_range_brackets_a_good_lr_and_excludes_a_diverging_one(
    digits_range: tuple[LRRange, Objective],
) -> None:
    found, objective = digits_range
    assert found.low < found.high
    config, space = objective.config, objective.space

    def constant(lr: float) -> float | None:
        point = space.point("constant", {"learning_rate": lr})
        result = train(config, objective.dataset, point, seed=0, epochs=3)
        return None if result.outcome == "diverged" else result.value

    inside = found.anchor  # where the test's loss stopped improving: trains well
    assert found.low < inside < found.high
    good = constant(inside)
    assert good is not None and good > 0.85
    above = found.exploded_at or found.high * 30
    assert above > found.high
    bad = constant(above)
    assert bad is None or bad < 0.5  # diverged, or far worse than inside the range
    # the best peak learning rates full searches found on this study (0.0095-0.046, with the
    # file's range and a 100x wider one; docs/benchmarks.md) are inside
    assert found.low < 0.0095 and 0.046 < found.high


def test_the_study_file_fixing_the_lr_is_one_line(tmp_path: Path) -> None:
    path = tiny_study_file(tmp_path, "fixed")
    path.write_text(path.read_text() + "learning_rate = 0.01\n")
    config, _ = load_study_file(path)
    with pytest.raises(ConfigError, match=r"space.learning_rate.*fixes the learning rate"):
        find_lr(config, steps=20)


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result.exit_code, result.output


def test_find_lr_cli_suggests_a_range_and_draws_it(tmp_path: Path) -> None:
    path = tiny_study_file(tmp_path, "cli", optimizer="adam")
    out = tmp_path / "curve.png"
    db = tmp_path / "x.db"
    code, text = _run(
        ["find-lr", str(path), "-o", str(out), "--steps", "120", "--storage", f"sqlite:///{db}"]
    )
    assert code == 0, text
    found = re.search(r"learning_rate in \[(\S+), (\S+)\]", text)
    assert found is not None, text
    low, high = map(float, found.groups())
    assert 0 < low < high and high / low == pytest.approx(100, rel=0.01)
    assert out.read_bytes().startswith(PNG)
    assert "--apply" in text  # how to use it
    assert not db.exists()  # without --apply nothing is stored


def test_find_lr_apply_stores_the_range_and_start_searches_inside_it(tmp_path: Path) -> None:
    path = tiny_study_file(tmp_path, "applied", n_trials=4, optimizer="adam")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, text = _run(
        [
            "find-lr",
            str(path),
            "--apply",
            "--steps",
            "120",
            "--storage",
            url,
            "--artifacts",
            str(tmp_path / "art"),
            "-o",
            str(tmp_path / "c.png"),
        ]
    )
    assert code == 0, text
    handle = StudyHandle.open("applied", url)
    first = handle.record.lr_range
    assert first is not None and 0 < first["low"] < first["high"]
    assert "lr_range.png" in text
    from optuna.artifacts import get_all_artifact_meta

    assert [m.filename for m in get_all_artifact_meta(handle.optuna)] == ["lr_range.png"]
    handle.set_budget(9)  # as `start --n-trials 9` would
    again = ["find-lr", str(path), "--apply", "--steps", "60", "--storage", url]
    code, text = _run([*again, "--artifacts", "none", "-o", str(tmp_path / "d.png")])
    assert code == 0, text
    assert handle.record.budget == 9  # storing a range leaves the budget alone
    changed = tmp_path / "changed.toml"
    changed.write_text(path.read_text().replace("epochs = 2", "epochs = 3"))
    code, text = _run(["find-lr", str(changed), "--apply", "--storage", url])
    assert code == 2 and "different study file" in text
    assert "range test on" not in text  # refused before the test ran
    stored = handle.record.lr_range
    lines: list[str] = []  # start's run, in this process (each of its workers does the same)
    config, study_text = load_study_file(path)
    run_study(
        config, study_file_text=study_text, storage_url=url, progress=False, echo=lines.append
    )
    assert any("learning_rate searched in" in line for line in lines)
    trials = handle.optuna.get_trials()
    assert len(trials) == 4
    for trial in trials:
        dist = trial.distributions["learning_rate"]
        assert (dist.low, dist.high) == pytest.approx((stored["low"], stored["high"]))
        assert stored["low"] <= trial.params["learning_rate"] <= stored["high"]
    code, text = _run(["status", "applied", "--storage", url])
    assert "learning_rate searched in" in text
    note = StudyRecord.of(handle.optuna)
    assert note.lr_range == stored


def test_apply_on_a_fixed_lr_creates_nothing(tmp_path: Path) -> None:
    path = tiny_study_file(tmp_path, "fixedcli")
    path.write_text(path.read_text() + "learning_rate = 0.01\n")
    db = tmp_path / "x.db"
    code, text = _run(["find-lr", str(path), "--apply", "--storage", f"sqlite:///{db}"])
    assert code == 2 and "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "space.learning_rate" in errors[0]
    assert not db.exists()  # nothing created


def test_min_lr_above_max_lr_is_one_line(tmp_path: Path) -> None:
    path = tiny_study_file(tmp_path, "minmax")
    code, text = _run(["find-lr", str(path), "--min-lr", "1", "--max-lr", "0.1"])
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert code == 2 and len(errors) == 1 and "--min-lr" in errors[0]


def test_start_find_lr_tests_a_new_study_once_over_two_workers(tmp_path: Path) -> None:
    """Two worker processes started by one command: the range test runs once, before they
    start, and every trial of both samples inside the stored range; run again, the study exists
    and the test does not run."""
    path = tiny_study_file(tmp_path, "twowork", n_trials=4, optimizer="adam")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    args = ["start", str(path), "--find-lr", "--workers", "2", "--storage", url]
    args += ["--artifacts", "none", "--no-progress"]
    code, text = _run(args)
    assert code == 0, text
    assert text.count("running the learning-rate range test") == 1
    handle = StudyHandle.open("twowork", url)
    stored = handle.record.lr_range
    assert stored is not None
    trials = handle.optuna.get_trials()
    assert len(trials) == 4
    assert all(stored["low"] <= t.params["learning_rate"] <= stored["high"] for t in trials)
    lines: list[str] = []  # again, in this process: the study exists, no test
    config, study_text = load_study_file(path)
    run_study(
        config,
        study_file_text=study_text,
        storage_url=url,
        progress=False,
        echo=lines.append,
        n_trials=5,
        find_lr=True,
    )
    assert not any("running the learning-rate range test" in line for line in lines)
    assert any("learning_rate searched in" in line for line in lines)
    assert handle.record.lr_range == stored
    assert len(handle.optuna.get_trials()) == 5


def test_a_range_stored_mid_study_bounds_the_later_trials(tmp_path: Path) -> None:
    """TPE (multivariate, grouped) goes on sampling after the range moved away from the earlier
    trials' values: the later trials fall inside the stored range, the earlier keep theirs."""
    path = tiny_study_file(tmp_path, "midway", n_trials=4, optimizer="adam", epochs=1, pack=1)
    path.write_text(path.read_text() + "\n[study.sampler]\nn_startup_trials = 2\n")
    config, text = load_study_file(path)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    run_study(config, study_file_text=text, storage_url=url, progress=False)
    handle = StudyHandle.open("midway", url)
    handle.set_lr_range({"low": 0.05, "high": 0.5})  # disjoint from adam's default range
    run_study(config, study_file_text=text, storage_url=url, progress=False, n_trials=8)
    trials = sorted(handle.optuna.get_trials(), key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 8
    assert all(t.params["learning_rate"] < 0.05 for t in trials[:4])
    assert all(0.05 <= t.params["learning_rate"] <= 0.5 for t in trials[4:])


def test_a_plain_start_creating_the_study_during_the_test_keeps_our_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker without --find-lr created the study while ours ran its range test: the
    study has no range, so ours is stored (and searched)."""
    import lrsearch.runner as runner

    path = tiny_study_file(tmp_path, "race", optimizer="adam")
    config, text = load_study_file(path)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    runner.prepare_study(config, study_file_text=text, storage_url=url, echo=lambda line: None)
    monkeypatch.setattr(runner, "study_exists", lambda name, url: False)  # checked too early
    lines: list[str] = []
    prepared = runner.prepare_study(
        config, study_file_text=text, storage_url=url, find_lr=True, echo=lines.append
    )
    assert not prepared.created
    stored = prepared.handle.record.lr_range
    assert stored is not None
    lr = prepared.objective.space.learning_rate
    assert (lr.low, lr.high) == (stored["low"], stored["high"])
    assert not any("another worker created" in line for line in lines)
