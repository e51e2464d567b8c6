"""Per-trial wall time of a study file's training under each installed Keras backend.

Each backend runs in its own process (Keras fixes its backend at import); the processes are
interleaved (tensorflow, jax, tensorflow, jax, ...) so both see the same machine load. Every
process runs ``--trials`` trials of the study file with one fixed schedule (on an in-memory
Optuna study, so only the training differs), drops the first (warm-up: compilation, caches) and
reports the median of the rest. Prints the per-backend medians and the ratio.

    python bench/backends.py [--study studies/digits.toml] [--trials 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time


def child(study: str, trials: int) -> None:
    import optuna

    from lrsearch._imports import import_keras
    from lrsearch.config import load_study_file, parse_study_config
    from lrsearch.objective import Objective

    keras = import_keras()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    base, _ = load_study_file(study)
    raw = base.normalized()
    raw["space"] = {"families": ["cosine"], "learning_rate": 3e-3}
    raw["baseline"] = []
    raw["study"]["pruner"] = {"name": "none"}
    config = parse_study_config(raw)
    objective = Objective(config)
    s = optuna.create_study(direction=config.study.direction)
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        s.optimize(objective, n_trials=1)
        times.append(time.perf_counter() - start)
    print(json.dumps({"backend": keras.backend.backend(), "times": times}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/digits.toml")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.study, args.trials)
        return
    backends = [b for b in ("tensorflow", "jax") if importlib.util.find_spec(b) is not None]
    per_trial: dict[str, list[float]] = {b: [] for b in backends}
    for _ in range(args.rounds):
        for backend in backends:
            env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--study",
                    args.study,
                    "--trials",
                    str(args.trials),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            per_trial[backend] += result["times"][1:]  # the first trial is the warm-up
            print(f"  {backend:<10} trials: " + ", ".join(f"{t:.2f}s" for t in result["times"]))
    medians = {b: statistics.median(v) for b, v in per_trial.items()}
    for backend, value in medians.items():
        print(f"{args.study} {backend:<10} median per trial after warm-up: {value:.2f}s")
    if len(medians) == 2:
        ratio = medians["tensorflow"] / medians["jax"]
        print(f"ratio tensorflow/jax: {ratio:.2f} ({'jax' if ratio > 1 else 'tensorflow'} faster)")


if __name__ == "__main__":
    main()
