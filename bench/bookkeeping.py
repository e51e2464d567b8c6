"""A worker's bookkeeping per trial, on a small and a large study, new reads against old.

After each trial a worker fails stale trials, counts the finished ones, reads the best trial and,
with artifacts on, rewrites the study note and picks the best trials for the lr figure
(:meth:`lrsearch.runner.Runner._after_trial`). This times exactly those calls on a 100-trial and a
10,000-trial study built by ``bench/reads.py`` (same shape, PostgreSQL by default), next to what
the code before the study handle did for the same answers (``study.get_trials`` of every trial
with its attributes). Both run on one ``optuna.load_study`` study, warmed once first, as in a
worker (Optuna's cache then holds the finished trials). Times are means of ``--repeats`` runs,
variants alternated.

    python bench/bookkeeping.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import reads  # noqa: E402

SIZES = (100, 10_000)


def _old_bookkeeping(study: Any) -> None:
    """What the runner and the artifact recorder read per trial before the study handle."""
    import optuna
    from optuna.trial import TrialState

    optuna.storages.fail_stale_trials(study)
    study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    )
    _ = study.best_trial
    study.get_trials(deepcopy=False)  # the study note's table
    study.get_trials(deepcopy=False)  # the top trials for the lr figure


def _new_bookkeeping(study: Any) -> None:
    import optuna

    from lrsearch.artifacts import study_note, top_schedules
    from lrsearch.study import StudyHandle

    handle = StudyHandle(study)
    optuna.storages.fail_stale_trials(study)
    handle.progress()
    handle.best()
    study_note(study, "val_accuracy")
    top_schedules(handle)


def _seconds(call: Callable[[Any], None], study: Any) -> float:
    start = time.perf_counter()
    call(study)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=reads.DEFAULT_URL)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import optuna

    from lrsearch.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(args.url)
    rows = []
    for size in SIZES:
        reads.NAME = f"bench-bookkeeping-{size}"  # a study of its own per size
        sid, built = reads.ensure(storage, size)
        study = optuna.load_study(study_name=reads.NAME, storage=storage)
        _new_bookkeeping(study)  # warm: a worker's Optuna cache holds the finished trials
        _old_bookkeeping(study)
        old = new = 0.0
        for _ in range(args.repeats):  # alternate the variants
            new += _seconds(_new_bookkeeping, study)
            old += _seconds(_old_bookkeeping, study)
        rows.append((size, new / args.repeats, old / args.repeats, built))
        reads.drop(storage, sid)
    print("| trials in the study | bookkeeping per trial, now | before | before / now |")
    print("|---|---|---|---|")
    for size, new, old, _ in rows:
        print(f"| {size:,} | {new:.3f} s | {old:.3f} s | {old / new:.0f}x |")


if __name__ == "__main__":
    main()
