"""How lrsearch scales with workers on one PostgreSQL database.

1. Trials per minute (first trial start to last trial end, read from the study) of a real study
   (``studies/digits.toml``'s model, shortened) run by
   ``lrsearch start --workers 1`` and ``--workers 2`` on this machine (CPU threads split between
   workers), alternated, and the ratio (target >= 1.7 on 2 cores).
2. How many trial records per second the storage sustains: P processes of lightweight workers
   (no training) each running trials of ``--epochs`` reports through Optuna's RDB storage with
   lrsearch's settings, as fast as they can. Turned into a projection in docs/benchmarks.md.

    python bench/scaling.py [--storage postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid


def _study_file(path: str, name: str, trials: int, epochs: int) -> None:
    with open(path, "w") as f:
        f.write(
            f'[study]\nname = "{name}"\nn_trials = {trials}\npruner = "none"\n'
            f'[data]\nsource = "digits"\n[model]\ntype = "mlp"\nhidden = [64, 32]\n'
            f"[training]\nepochs = {epochs}\n"
        )


def trials_per_minute(storage: str, workers: int, trials: int, epochs: int) -> float:
    import optuna

    name = f"scaling-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.toml")
        _study_file(path, name, trials, epochs)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "lrsearch.cli",
                "start",
                path,
                "--storage",
                storage,
                "--workers",
                str(workers),
                "--no-progress",
            ],
            env=env,
            check=True,
            capture_output=True,
            cwd=tmp,
        )
    # Steady state, from the study itself: first trial start to last trial end (the processes'
    # TensorFlow start-up before their first trial is not counted).
    study = optuna.load_study(study_name=name, storage=storage)
    done = [t for t in study.trials if t.datetime_complete and t.datetime_start]
    span = max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    optuna.delete_study(study_name=name, storage=storage)
    return len(done) / span.total_seconds() * 60


def _light_worker(storage_url: str, name: str, seconds: float, epochs: int, out: object) -> None:
    import optuna

    from lrsearch.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url))
    dist = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        trial = study.ask({"learning_rate": dist})
        for epoch in range(1, epochs + 1):
            trial.report(0.5, epoch)
        trial.set_user_attr("history", {"loss": [0.5] * epochs})
        study.tell(trial, 0.5)
        done += 1
    out.put(done)  # type: ignore[attr-defined]


def records_per_second(storage: str, processes: int, seconds: float, epochs: int) -> float:
    import optuna

    from lrsearch.storage import open_storage

    name = f"throughput-{uuid.uuid4().hex[:8]}"
    optuna.create_study(storage=open_storage(storage), study_name=name)
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_light_worker, args=(storage, name, seconds, epochs, queue))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    total = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    optuna.delete_study(study_name=name, storage=storage)
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--light-seconds", type=float, default=15.0)
    args = parser.parse_args()

    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for workers in (1, 2):
            rate = trials_per_minute(args.storage, workers, args.trials, args.epochs)
            rates[workers].append(rate)
            print(f"  {workers} worker(s): {rate:.1f} trials/min")
    one, two = (sum(v) / len(v) for v in (rates[1], rates[2]))
    print(f"trials/min: 1 worker {one:.1f}, 2 workers {two:.1f}; ratio {two / one:.2f}")

    for processes in (1, 4, 8):
        rps = records_per_second(args.storage, processes, args.light_seconds, args.epochs)
        print(
            f"storage: {processes} lightweight worker process(es): {rps:.1f} trials/s "
            f"({args.epochs} reports + 1 history attribute each)"
        )


if __name__ == "__main__":
    main()
