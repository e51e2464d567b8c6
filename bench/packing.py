"""Packed trials: trials per minute at pack sizes 1..32, and a whole study packed vs one by one.

``throughput``: for a study file, trains K trials' schedules (sampled from its space, no
pruning, the file's epochs) as packs on one ``lrsearch.packing.PackTrainer`` per size (its first
pack builds and compiles; later packs reuse it, as a worker does), and single trials on the
unpacked path (``objective.train``: build, compile, fit each trial), in one process per Keras
backend. Sizes are alternated within a round and rounds repeated, so every variant sees the same
machine load; prints seconds per pack and steady trials per minute against the unpacked path.

``study``: runs ``lrsearch start STUDY --pack K`` (default ``auto``) and ``--pack 1`` (one trial
at a time on a model compiled once) on fresh SQLite files for a few study seeds, alternated, and
prints wall time and the best value each reached.

``momentum``: the cost of momentum cycling in a pack: one ``PackTrainer`` of K slots on the
study as it is (``onecycle`` and ``cyclic`` cycle momentum: a per-copy momentum table read in
every step) and one on the same study with ``cycle_momentum = false`` for both (no table), the
same sampled schedules, packs alternated; prints the median steady pack time of each.

    python bench/packing.py throughput [--study studies/digits.toml] [--sizes 1 4 8 16 32]
                                       [--rounds 2] [--backends tensorflow jax]
    python bench/packing.py study [--study studies/digits.toml] [--pack auto] [--seeds 0 1 2]
    python bench/packing.py momentum [--study studies/digits.toml] [--sizes 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "LRSEARCH_ARTIFACTS": "none"}


def child(study: str, sizes: list[int], rounds: int) -> None:
    """One backend: seconds per pack for each size, alternated; JSON on stdout.

    ``unpacked``: one trial on today's path (``objective.train``: build, compile, fit).
    ``first``: a pack size's first pack (its ``PackTrainer`` built and compiled, then a fit).
    ``steady``: later packs on the same compiled trainer (what a worker pays after its first).
    """
    import optuna

    from lrsearch._imports import import_keras
    from lrsearch.config import load_study_file
    from lrsearch.objective import load_data, make_budget, train
    from lrsearch.packing import PackTrainer
    from lrsearch.space import SearchSpace

    keras = import_keras()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    config, _ = load_study_file(study)
    dataset = load_data(config)
    space = SearchSpace.from_config(
        config.space, make_budget(config, dataset), optimizer=config.training.optimizer
    )
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    points = [space.suggest(sampler.ask()) for _ in range(max(sizes))]
    train(config, dataset, points[0], seed=0, epochs=1)  # warm-up: imports, first traces
    trainers: dict[int, PackTrainer] = {}
    result: dict[str, dict[int, list[float]]] = {
        "unpacked": {1: []},
        "first": {k: [] for k in sizes},
        "steady": {k: [] for k in sizes},
    }
    for r in range(rounds + 1):
        for k in sizes if r % 2 == 0 else list(reversed(sizes)):
            seeds = [r * 100 + i for i in range(k)]
            start = time.perf_counter()
            if k not in trainers:
                trainers[k] = PackTrainer(config, dataset, k)
            trainers[k].train(points[:k], seeds=seeds, shuffle_seed=r)
            kind = "first" if r == 0 else "steady"
            result[kind][k].append(time.perf_counter() - start)
        if r > 0:
            start = time.perf_counter()
            train(config, dataset, points[r % len(points)], seed=r)
            result["unpacked"][1].append(time.perf_counter() - start)
    print(json.dumps({"backend": keras.backend.backend(), **result}))


def throughput(args: argparse.Namespace) -> None:
    backends = [b for b in args.backends if importlib.util.find_spec(b) is not None]
    print(f"study {args.study}, sizes {args.sizes}, {args.rounds} rounds, backends {backends}")
    for backend in backends:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "child",
                "--study",
                args.study,
                "--rounds",
                str(args.rounds),
            ]
            + ["--sizes", *map(str, args.sizes)],
            capture_output=True,
            text=True,
            env={**ENV, "KERAS_BACKEND": backend},
            check=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        unpacked = statistics.median(result["unpacked"]["1"])
        base = 60 / unpacked
        print(f"\n{backend}: unpacked (today's path): {unpacked:.2f} s per trial, {base:.1f}/min")
        print("  pack | first pack s | steady pack s | trials/min steady | vs unpacked")
        for k in sorted(int(k) for k in result["steady"]):
            first = result["first"][str(k)][0]
            steady = statistics.median(result["steady"][str(k)])
            rate = 60 * k / steady
            ratio = rate / base
            print(f"  {k:>4} | {first:12.2f} | {steady:13.2f} | {rate:17.1f} | {ratio:6.1f}x")


def study(args: argparse.Namespace) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    text = Path(args.study).read_text(encoding="utf-8")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            for pack in (args.pack, "1") if seed % 2 == 0 else ("1", args.pack):
                path = Path(folder) / f"s{seed}-p{pack}.toml"
                path.write_text(text.replace("seed = 0", f"seed = {seed}", 1), encoding="utf-8")
                url = f"sqlite:///{Path(folder) / f's{seed}-p{pack}.db'}"
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "lrsearch.cli", "start", str(path), "--no-progress"]
                    + ["--pack", str(pack), "--storage", url],
                    capture_output=True,
                    text=True,
                    env=ENV,
                    check=True,
                )
                seconds = time.perf_counter() - start
                s = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url)
                rows.append((seed, pack, seconds, s.best_value, len(s.trials)))
                print(f"seed {seed} pack {pack:>4}: {seconds:6.1f} s, best {s.best_value:.4f}")
    for pack in ("1", args.pack):
        mine = [r for r in rows if r[1] == pack]
        print(
            f"pack {pack:>4}: median {statistics.median(r[2] for r in mine):.1f} s, best values "
            f"{[round(r[3], 4) for r in mine]}"
        )
    slow = statistics.median(r[2] for r in rows if r[1] == "1")
    fast = statistics.median(r[2] for r in rows if r[1] == args.pack)
    print(f"wall time ratio (pack 1 / pack {args.pack}): {slow / fast:.2f}x")


def momentum(args: argparse.Namespace) -> None:
    import optuna

    from lrsearch.config import load_study_file, parse_study_config
    from lrsearch.objective import load_data, make_budget
    from lrsearch.packing import PackTrainer
    from lrsearch.space import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    config, _ = load_study_file(args.study)
    data = config.model_dump(exclude_none=True)
    for family in ("onecycle", "cyclic"):
        data["space"][family] = {**data["space"].get(family, {}), "cycle_momentum": False}
    quiet = parse_study_config(data)
    dataset = load_data(config)
    size = args.sizes[0]
    trainers, points, times = {}, {}, {"cycling": [], "off": []}
    for name, cfg in (("cycling", config), ("off", quiet)):
        space = SearchSpace.from_config(
            cfg.space, make_budget(cfg, dataset), optimizer=cfg.training.optimizer
        )
        sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for family in ("onecycle", "cyclic"):
            sampler.enqueue_trial({"family": family})
        points[name] = [space.suggest(sampler.ask()) for _ in range(size)]
        trainers[name] = PackTrainer(cfg, dataset, size, clear_session=False)
        trainers[name].train(points[name], seeds=list(range(size)), shuffle_seed=0)  # compile
    assert trainers["cycling"].momentum_table is not None
    assert trainers["off"].momentum_table is None
    for r in range(args.rounds):
        for name in ("cycling", "off") if r % 2 == 0 else ("off", "cycling"):
            start = time.perf_counter()
            trainers[name].train(points[name], seeds=list(range(size)), shuffle_seed=r + 1)
            times[name].append(time.perf_counter() - start)
    cycling, plain = statistics.median(times["cycling"]), statistics.median(times["off"])
    print(f"study {args.study}, pack {size}, {args.rounds} rounds alternated")
    print(f"  momentum cycled (table): {cycling:.2f} s per pack")
    print(f"  cycle_momentum = false:  {plain:.2f} s per pack")
    print(f"  ratio cycled / off: {cycling / plain:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["throughput", "study", "child", "momentum"])
    parser.add_argument("--study", default="studies/digits.toml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--pack", default="auto", help="K or auto, against --pack 1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    if args.part == "child":
        child(args.study, args.sizes, args.rounds)
    elif args.part == "throughput":
        throughput(args)
    elif args.part == "momentum":
        momentum(args)
    else:
        study(args)


if __name__ == "__main__":
    main()
