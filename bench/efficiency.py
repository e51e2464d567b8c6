"""Search efficiency at a fixed budget of training epochs: how good a schedule each strategy finds.

Issue #16: budget-aware halving against its baselines, on one study file, repeated over
``--seeds`` seeds, every strategy given the same total of training epochs (``--budget``,
counted as the epochs each trial actually trained, pruned ones and lower rungs included):

- ``random``: random search, no pruning;
- ``tpe``: lrsearch's TPE (multivariate, grouped), no pruning;
- ``tpe+hyperband``: the same with Optuna's Hyperband pruner (min 1 epoch, reduction 3);
- ``top-k@1``: "is one epoch all you need" (Egele et al. 2023): random configurations trained
  one epoch each, the best ``k`` of them then trained fully (the budget decides how many);
- ``tpe+halving``: lrsearch's own ``strategy = "halving"`` study (:mod:`lrsearch.halving`) run by
  its :class:`~lrsearch.runner.Runner` on a temporary SQLite file, packed (``--pack``), with
  ``n_trials`` the most configurations whose ``planned_epochs`` fit the budget; its best is the
  best complete trial of the top rung (the full epochs), lower rungs never count as a best;
- ``kt-hyperband``: KerasTuner's Hyperband oracle (max_epochs = the study's epochs, factor 3)
  over the same space, trials trained by lrsearch's ``train``; skipped when keras-tuner is not
  installed (it is not a dependency: ``pip install keras-tuner`` in a separate environment).

The first four train unpacked, one at a time, in in-memory Optuna studies. Every trial is a real
Keras training of the study's model. Prints per strategy the best final validation metric (mean
+- sd over seeds), the epochs spent, and the epochs at which it first reached random search's
final value of the same seed (a strategy's curve is in the order its trials completed).

    python bench/efficiency.py [--study studies/digits.toml] [--budget 120] [--seeds 3]
                               [--backend jax] [--k 3] [--pack 4]
                               [--families cosine,onecycle,wsd,constant]
                               [--strategies random,tpe+halving]
"""

from __future__ import annotations

import argparse
import os
import statistics
import warnings
from collections.abc import Callable
from typing import Any

STRATEGIES = ("random", "tpe", "tpe+hyperband", "top-k@1", "tpe+halving", "kt-hyperband")


def with_families(config: Any, families: list[str]) -> Any:
    """``config`` searching only ``families`` (validated as a study file would be)."""
    from lrsearch.config import StudyConfig

    data = config.model_dump(mode="json")
    data["space"]["families"] = families
    return StudyConfig.model_validate(data)


def halving_configurations(config: Any, budget: int) -> int:
    """The most new configurations (``n_trials``) a halving study of ``config`` may start
    whose planned epochs (:func:`lrsearch.halving.planned_epochs`) fit ``budget``; at least 1."""
    from lrsearch.halving import planned_epochs

    n = 1
    while planned_epochs(config, n + 1) <= budget:
        n += 1
    return n


def halving_config(config: Any, seed: int, budget: int, pack: int) -> tuple[Any, int]:
    """``config`` as a halving study (``seed``, ``pack``), and its ``n_trials`` for ``budget``."""
    from lrsearch.config import StudyConfig

    data = config.model_dump(mode="json")
    data["study"].update(strategy="halving", seed=seed, name=f"{config.study.name}-halving-{seed}")
    data["study"]["sampler"]["name"] = "tpe"
    data["training"]["pack"] = pack
    halving = StudyConfig.model_validate(data)
    n_trials = halving_configurations(halving, budget)
    data["study"]["n_trials"] = n_trials
    return StudyConfig.model_validate(data), n_trials


class _Silent:
    """A :class:`lrsearch.runner.Reporter` that prints nothing."""

    def trial_done(self, trial: Any, finished: int, best: Any) -> None:
        pass

    def close(self) -> None:
        pass


def run_halving(config: Any, budget: int, seed: int, pack: int) -> list[tuple[int, float]]:
    """lrsearch's own halving study (``strategy = "halving"``, its :class:`Runner`, packed
    trials) on a temporary SQLite file: ``(epochs spent so far, best so far)`` after each trial
    in the order the trials completed, where only a complete trial of the top rung (the full
    epochs) counts as a best; every trial's epochs count as spent, twins and lower rungs too."""
    import tempfile
    from pathlib import Path

    from lrsearch.halving import Plan, planned_epochs, rung_epochs
    from lrsearch.records import TrialRecord
    from lrsearch.runner import Runner, prepare_study

    halving, n_trials = halving_config(config, seed, budget, pack)
    rungs = rung_epochs(halving)
    top = len(rungs) - 1
    with tempfile.TemporaryDirectory(prefix="lrsearch-efficiency-") as folder:
        url = f"sqlite:///{Path(folder) / 'study.db'}"
        prepared = prepare_study(halving, storage_url=url, n_trials=n_trials, echo=lambda _: None)
        Runner(prepared, _Silent(), pack=pack).run()
        trials = prepared.handle.optuna.get_trials(deepcopy=False)
    finished = [t for t in trials if t.datetime_complete is not None]
    finished.sort(key=lambda t: (t.datetime_complete, t.number))
    spent, best, curve = 0, float("-inf"), []
    for trial in finished:
        record = TrialRecord.of(trial)
        spent += record.epochs_run or 0
        if trial.state.name == "COMPLETE" and record.rung == top and trial.value is not None:
            best = max(best, trial.value)
        curve.append((spent, best))
    per_rung = [0] * len(rungs)
    for trial in finished:
        per_rung[TrialRecord.of(trial).rung or 0] += 1
    plan = Plan(halving, trials, budget=n_trials)
    race = plan.race.lines(halving.study.direction == "maximize")[0] if plan.race else "undecided"
    planned = planned_epochs(halving, n_trials)
    print(
        f"  halving seed {seed}: {n_trials} configurations (planned {planned} epochs), rungs "
        f"{rungs} epochs, finished trials per rung {per_rung}, race: {race}",
        flush=True,
    )
    return curve


def _kt_param(hp: Any, dim: Any) -> None:
    """Registers lrsearch's search dimension ``dim`` as a KerasTuner hyperparameter."""
    if dim.kind == "choice":
        hp.Choice(dim.name, list(dim.choices))
    elif dim.kind == "int":
        hp.Int(dim.name, int(dim.low), int(dim.high), sampling="log" if dim.log else "linear")
    else:
        hp.Float(dim.name, dim.low, dim.high, sampling="log" if dim.log else "linear")


def run_kt_hyperband(
    config: Any, objective: Any, budget: int, seed: int
) -> list[tuple[int, float]] | None:
    """KerasTuner's Hyperband (its oracle: brackets, rounds, promotion; max_epochs = the study's
    epochs, factor 3) over the study's space (family, learning rate, each family's parameters,
    conditional on the family), trials trained by lrsearch's ``train`` on the study's model.

    A promoted trial continues its configuration's run: it is trained again from scratch with
    the same seed to ``tuner/epochs`` (the prefix of its full-length schedule, as KerasTuner's
    checkpoint reload would continue it) and counts only ``tuner/epochs - tuner/initial_epoch``
    epochs, what KerasTuner's reload trains. Stops creating trials once the budget is spent.
    None when keras-tuner is not installed."""
    try:
        import keras_tuner as kt
    except ImportError:
        return None
    import tempfile

    from lrsearch.objective import train

    space, epochs = objective.space, config.training.epochs
    maximize = config.study.direction == "maximize"
    hp = kt.HyperParameters()
    hp.Choice("family", list(space.families))
    if space.learning_rate.is_fixed:
        hp.Fixed("learning_rate", space.learning_rate.fixed)
    else:
        _kt_param(hp, space.learning_rate)
    for family in space.families:
        with hp.conditional_scope("family", [family]):
            for _, dim in space.dimensions[family]:
                if not dim.is_fixed:
                    _kt_param(hp, dim)
    state = {"spent": 0, "best": float("-inf")}
    curve: list[tuple[int, float]] = []
    seeds: dict[str, int] = {}

    class BudgetedHyperband(kt.oracles.HyperbandOracle):
        def populate_space(self, trial_id: str) -> dict[str, Any]:
            if state["spent"] >= budget:
                return {"status": "STOPPED"}
            return dict(super().populate_space(trial_id))

    class LRSearchTuner(kt.Tuner):
        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            values = trial.hyperparameters.values
            family = values["family"]
            relative = {"learning_rate": values["learning_rate"]}
            for param, dim in space.dimensions[family]:
                relative[param.name] = dim.fixed if dim.is_fixed else values[dim.name]
            source = values.get("tuner/trial_id")
            seeds[trial.trial_id] = seeds.get(source, seed * 1000 + len(seeds))
            result = train(
                config,
                objective.dataset,
                space.point(family, relative),
                seed=seeds[trial.trial_id],
                epochs=int(values["tuner/epochs"]),
            )
            state["spent"] += max(result.epochs_run - int(values["tuner/initial_epoch"]), 0)
            value = result.value if result.outcome == "complete" else None
            if value is not None and int(values["tuner/epochs"]) == epochs:
                state["best"] = max(state["best"], value)
            curve.append((int(state["spent"]), float(state["best"])))
            worst = -1e9 if maximize else 1e9
            return {config.study.metric: worst if value is None else float(value)}

    oracle = BudgetedHyperband(
        objective=kt.Objective(config.study.metric, "max" if maximize else "min"),
        max_epochs=epochs,
        factor=3,
        hyperband_iterations=1000,  # the budget stops it
        seed=seed,
        hyperparameters=hp,
    )
    with tempfile.TemporaryDirectory(prefix="kt-efficiency-") as folder:
        tuner = LRSearchTuner(oracle=oracle, directory=folder, project_name="kt", overwrite=True)
        tuner.search(verbose=0)
    return curve


def run_strategy(
    name: str, config: Any, objective: Any, budget: int, seed: int, k: int, pack: int = 4
) -> list[tuple[int, float]] | None:
    """``(epochs spent so far, best final value so far)`` after each full training; None for a
    strategy that cannot run here (kt-hyperband without keras-tuner)."""
    import optuna

    from lrsearch.objective import train
    from lrsearch.records import TrialRecord

    epochs = config.training.epochs
    if name == "kt-hyperband":
        return run_kt_hyperband(config, objective, budget, seed)
    if name == "tpe+halving":
        return run_halving(config, budget, seed, pack)
    if name == "top-k@1":
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed)
        )
        first = budget - k * epochs
        scored = []
        for i in range(max(first, k)):
            trial = study.ask()
            point = objective.space.suggest(trial)
            result = train(config, objective.dataset, point, seed=seed * 1000 + i, epochs=1)
            value = result.value if result.outcome != "diverged" else float("-inf")
            scored.append((value if value is not None else float("-inf"), i, point))
        spent, best, curve = max(first, k), float("-inf"), []
        for _, i, point in sorted(scored, key=lambda s: (-s[0], s[1]))[:k]:
            result = train(config, objective.dataset, point, seed=seed * 1000 + i)
            spent += result.epochs_run
            if result.outcome == "complete" and result.value is not None:
                best = max(best, result.value)
            curve.append((spent, best))
        return curve
    samplers: dict[str, Callable[[], Any]] = {
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=6, multivariate=True, group=True
        ),
        "tpe+hyperband": lambda: optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=6, multivariate=True, group=True
        ),
    }
    pruner: Any = optuna.pruners.NopPruner()
    if name == "tpe+hyperband":
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3
        )
    study = optuna.create_study(direction="maximize", sampler=samplers[name](), pruner=pruner)
    spent, best, curve = 0, float("-inf"), []
    while spent < budget:
        study.optimize(objective, n_trials=1, catch=(Exception,))
        trial = study.trials[-1]
        spent += TrialRecord.of(trial).epochs_run or 0
        if trial.state.name == "COMPLETE" and trial.value is not None:
            best = max(best, trial.value)
        curve.append((spent, best))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/digits.toml")
    parser.add_argument("--budget", type=int, default=120, help="training epochs per strategy")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--k", type=int, default=3, help="top-k@1: configurations trained fully")
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"))
    parser.add_argument(
        "--families", default=None, help="comma list: search only these families (a family mix)"
    )
    parser.add_argument("--pack", type=int, default=4, help="tpe+halving: trials per pack")
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help="comma list, of: " + ", ".join(STRATEGIES),
    )
    args = parser.parse_args()
    from lrsearch._imports import select_backend

    select_backend(args.backend)
    import optuna

    from lrsearch.config import load_study_file
    from lrsearch.objective import Objective

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    config, _ = load_study_file(args.study)
    if args.families:
        config = with_families(config, [f.strip() for f in args.families.split(",") if f.strip()])
    objective = Objective(config)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or "random" not in strategies:
        parser.error(f"--strategies: needs random, and only of {', '.join(STRATEGIES)}")
    curves: dict[str, list[list[tuple[int, float]]]] = {s: [] for s in strategies}
    skipped: set[str] = set()
    for seed in range(args.seeds):
        for name in strategies:  # interleaved: every strategy sees the same machine load
            if name in skipped:
                continue
            curve = run_strategy(name, config, objective, args.budget, seed, args.k, args.pack)
            if curve is None:
                skipped.add(name)
                print(f"{name}: skipped (keras-tuner is not installed)", flush=True)
                continue
            curves[name].append(curve)
            last = curve[-1]
            print(f"seed {seed} {name:<14} epochs {last[0]:>4}  best {last[1]:.4f}", flush=True)
    print(
        f"\n{config.study.name}: budget {args.budget} epochs ({config.training.epochs} per full "
        f"trial), {args.seeds} seeds, {len(config.space.families)} families, {args.backend}"
    )
    print(f"{'strategy':<15} {'best (mean ± sd)':<18} {'epochs':>7}  epochs to random's final")
    for name in strategies:
        if name in skipped:
            print(f"{name:<15} skipped (keras-tuner is not installed)")
            continue
        finals = [c[-1][1] for c in curves[name]]
        spent = statistics.fmean(c[-1][0] for c in curves[name])
        reach = []
        for seed, curve in enumerate(curves[name]):
            target = curves["random"][seed][-1][1]
            hit = next((e for e, best in curve if best >= target), None)
            reach.append("-" if hit is None else str(hit))
        sd = statistics.stdev(finals) if len(finals) > 1 else 0.0
        print(
            f"{name:<15} {statistics.fmean(finals):.4f} ± {sd:.4f}   {spent:7.0f}  "
            f"{', '.join(reach)}"
        )


if __name__ == "__main__":
    main()
