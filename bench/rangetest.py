"""What the learning-rate range test costs next to one trial, and how stable its range is.

For each study file, in one process and on the backend given, interleaved so both see the same
machine load: ``--rounds`` times, one range test (one seed, the default steps) and one unpacked
trial's training (``train``: the study's model, a cosine schedule peaking at the range's upper
bound / 3, the full epochs). The first round is a warm-up and not counted. Prints per study the
median seconds of each, their ratio (test / trial), and the range each round's seed gave (seeds
``study.seed + 10 * round``): the spread of the upper bound over the rounds is the test's
stability.

    python bench/rangetest.py [--study studies/digits.toml --study studies/cnn-digits.toml]
                              [--rounds 6] [--backend jax]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", action="append", default=None)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    args = parser.parse_args()
    from lrsearch._imports import select_backend

    select_backend(args.backend)
    from lrsearch.config import load_study_file
    from lrsearch.objective import Objective, train
    from lrsearch.rangetest import find_lr

    print(f"backend {args.backend}, {args.rounds - 1} counted rounds (the first is a warm-up)")
    print(f"{'study':<26} {'test s':>7} {'trial s':>8} {'ratio':>6}  upper bounds (spread)")
    for path in args.study or ["studies/digits.toml", "studies/cnn-digits.toml"]:
        config, _ = load_study_file(path)
        objective = Objective(config)
        objective.check()
        tests, trials, highs = [], [], []
        for r in range(args.rounds):
            seeded = config.model_copy(
                update={
                    "study": config.study.model_copy(update={"seed": config.study.seed + 10 * r})
                }
            )
            started = time.perf_counter()
            found = find_lr(seeded, objective=objective)
            test = time.perf_counter() - started
            point = objective.space.point("cosine", {"learning_rate": found.high / 3})
            started = time.perf_counter()
            train(config, objective.dataset, point, seed=r)
            trial = time.perf_counter() - started
            if r:
                tests.append(test)
                trials.append(trial)
                highs.append(found.high)
        test_s, trial_s = statistics.median(tests), statistics.median(trials)
        shown = ", ".join(f"{h:.3g}" for h in highs)
        print(
            f"{config.study.name:<26} {test_s:7.2f} {trial_s:8.2f} {test_s / trial_s:6.2f}  "
            f"{shown} ({max(highs) / min(highs):.2f}x)"
        )


if __name__ == "__main__":
    main()
