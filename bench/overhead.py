"""lrsearch's overhead on top of the training itself.

Trains the same model, data, schedule and epochs (those of ``studies/digits.toml`` by default)
two ways, alternated, several times:

- bare: ``keras.backend.clear_session()``, build the model, compile it with the schedule, and a
  plain ``model.fit`` with the validation data, as a user would write it;
- lrsearch: one whole trial through ``study.optimize`` on a SQLite study (sampling, the per-batch
  divergence watch, per-epoch report and pruner, the trial's records, storage writes);
- lrsearch + artifacts: the same with what ``lrsearch start`` adds by default next to a SQLite
  file: the trial's ``lr_curve.png``, ``learning_curve.png`` and ``history.csv`` uploaded, the
  study note rewritten and the top-trials figure redrawn when the best trials change. In
  ``lrsearch start`` the drawing runs in a background thread while the next trial trains; here
  it is timed twice: until all is written (no overlap: the upper bound) and until ``optimize``
  returned (perfect overlap: the lower bound).

and prints each triple and the median ratios to bare (target for lrsearch: <= 1.05).

    python bench/overhead.py [--study studies/digits.toml] [--repeats 7] [--family cosine]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from lrsearch._imports import import_keras
from lrsearch.artifacts import ArtifactRecorder, open_artifact_store
from lrsearch.config import load_study_file, parse_study_config
from lrsearch.models import build_model
from lrsearch.objective import Objective, make_optimizer
from lrsearch.study import make_pruner, make_sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/digits.toml")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--family", default="cosine")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    args = parser.parse_args()

    keras = import_keras()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    base, _ = load_study_file(args.study)
    raw = base.normalized()
    raw["space"] = {"families": [args.family], "learning_rate": args.learning_rate}
    raw["baseline"] = []
    config = parse_study_config(raw)
    objective = Objective(config, base_dir=Path(args.study).resolve().parent)
    data = objective.dataset
    point = objective.space.point(args.family, {"learning_rate": args.learning_rate})
    print(
        f"{args.study}: model {config.model.type} {config.model.params}, {data.x_train.shape[0]} "
        f"samples, batch {config.data.batch_size}, {config.training.epochs} epochs, "
        f"{objective.budget.total_steps} steps, {args.family} lr={args.learning_rate}, "
        f"backend {keras.backend.backend()}"
    )

    def bare() -> float:
        start = time.perf_counter()
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = build_model(
            config.model.type,
            input_shape=data.input_shape,
            n_classes=data.n_classes,
            params=config.model.params,
        )
        model.compile(
            optimizer=make_optimizer(config, point.build()),
            loss=config.training.loss,
            metrics=["accuracy"],
        )
        model.fit(
            data.x_train,
            data.y_train,
            batch_size=config.data.batch_size,
            epochs=config.training.epochs,
            validation_data=(data.x_val, data.y_val),
            shuffle=True,
            verbose=0,
        )
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:

        def new_study(name: str) -> optuna.Study:
            return optuna.create_study(
                storage=f"sqlite:///{tmp}/bench.db",
                study_name=name,
                direction=config.study.direction,
                sampler=make_sampler(config),
                pruner=make_pruner(config),
            )

        study, with_artifacts = new_study("overhead"), new_study("overhead-artifacts")
        recorder = ArtifactRecorder(
            open_artifact_store(f"{tmp}/artifacts"),
            epochs=config.training.epochs,
            metric=config.study.metric,
        )
        recording = Objective(
            config,
            base_dir=Path(args.study).resolve().parent,
            on_trial_end=recorder.upload_trial,
        )

        def trial() -> float:
            start = time.perf_counter()
            study.optimize(objective, n_trials=1)
            return time.perf_counter() - start

        returned: list[float] = []

        def trial_with_artifacts() -> float:
            """Timed until the background drawing is written too (no overlap counted); the
            time until ``optimize`` returned, when the next trial could start, is kept apart."""
            start = time.perf_counter()
            with_artifacts.optimize(recording, n_trials=1, callbacks=[recorder.trial_finished])
            returned.append(time.perf_counter() - start)
            recorder.wait()
            return time.perf_counter() - start

        runs = [bare, trial, trial_with_artifacts]
        for run in runs:  # warm-up: first compile, caches, matplotlib's font cache
            run()
        ratios: list[float] = []
        art_ratios: list[float] = []
        ret_ratios: list[float] = []
        for i in range(args.repeats):
            order = runs if i % 2 == 0 else runs[::-1]
            took = {run.__name__: run() for run in order}
            a, b, c, r = took["bare"], took["trial"], took["trial_with_artifacts"], returned[-1]
            ratios.append(b / a)
            art_ratios.append(c / a)
            ret_ratios.append(r / a)
            print(
                f"  repeat {i + 1}: bare {a:.3f}s  lrsearch {b:.3f}s ({b / a:.3f})  "
                f"+ artifacts {c:.3f}s ({c / a:.3f}), returned after {r:.3f}s ({r / a:.3f})"
            )
        print(
            f"median ratio lrsearch/bare: {statistics.median(ratios):.3f} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {args.repeats} repeats)"
        )
        recorder.flush()
        print(
            f"median ratio lrsearch+artifacts/bare, drawing included: "
            f"{statistics.median(art_ratios):.3f} "
            f"(min {min(art_ratios):.3f}, max {max(art_ratios):.3f})"
        )
        print(
            f"median ratio lrsearch+artifacts/bare, until the next trial can start: "
            f"{statistics.median(ret_ratios):.3f} "
            f"(min {min(ret_ratios):.3f}, max {max(ret_ratios):.3f})"
        )


if __name__ == "__main__":
    main()
