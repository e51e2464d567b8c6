"""Reads of a large study: lrsearch's commands, Optuna's, and lrsearch.queries, side by side.

Builds (once) a 10,000-trial study ``bench-reads`` whose trials look like lrsearch's: 9 schedule
families with their parameters, 12-50 epochs of intermediate values, a history of 5 metrics per
epoch and the rest of lrsearch's trial record as attributes, and a mix of COMPLETE, PRUNED,
diverged and FAIL trials. The study is made by Optuna (so the schema is Optuna's) and its trials
are bulk-inserted into Optuna's tables (``INSERT ... RETURNING`` executemany), which takes about
a minute on the reference machine; the tables' planner statistics are then updated (``VACUUM
ANALYZE``, as autovacuum would). Then each read runs ``--repeats`` times, interleaved, and the
table reports the median and its ratio to ``optuna.load_study(...).get_trials()``:

- as subprocesses (Python start-up included): ``lrsearch status``, ``lrsearch studies``,
  ``lrsearch best`` and ``optuna trials`` — whatever these commands do today — and a process
  that only imports what ``lrsearch status`` imports (lrsearch's CLI, Optuna, SQLAlchemy's ORM,
  Optuna's models and the database driver), the floor of those commands;
- in-process, on one opened storage: ``queries.trial_rows``, ``queries.state_counts``,
  ``queries.family_bests``, ``queries.study_rows``, ``StudyHandle.status()`` (what ``lrsearch
  status`` runs once the study is open) and ``optuna.load_study(...).get_trials()`` (with and
  without deepcopy).

The machine may be shared: the load average before and after the runs is printed with the table.
``--quick`` leaves out the two Optuna reads (minutes of CPU for 3 repeats, which also load the
machine between the other reads), e.g. to time the commands many times at a quiet moment.

The study is deleted at the end unless ``--keep`` is given: on a shared database it would slow
every listing of studies there (``optuna.get_all_study_summaries`` loads every trial of every
study). A kept study is reused by the next run when it has ``--trials`` trials.

    python bench/reads.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
                          [--trials 10000] [--repeats 3] [--keep] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

NAME = "bench-reads"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
EPOCHS = 50
MIN_EPOCHS = 12
STEPS_PER_EPOCH = 23
CHUNK = 2000  # trials per bulk insert

STUDY_FILE = """\
[study]
name = "bench-reads"
metric = "val_accuracy"
direction = "maximize"
n_trials = {trials}

[data]
source = "digits"

[model]
type = "mlp"
hidden = [64, 32]

[training]
epochs = 50
batch_size = 64
"""


# --- building -------------------------------------------------------------------------------


def _distributions() -> tuple[Any, Any, dict[str, dict[str, Any]]]:
    """The family, learning-rate and per-family distributions of lrsearch's space."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from lrsearch.schedules import FAMILIES
    from lrsearch.schedules._registry import Budget

    budget = Budget(epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH)
    family = CategoricalDistribution(list(FAMILIES))
    lr = FloatDistribution(1e-4, 3e-2, log=True)
    per_family: dict[str, dict[str, Any]] = {}
    for name, fam in FAMILIES.items():
        dists: dict[str, Any] = {}
        for p in fam.search:
            low, high = p.bounds(budget)
            if high <= low:
                continue  # fixed by default: not a trial parameter
            if p.kind == "int":
                dists[f"{name}.{p.name}"] = IntDistribution(int(low), int(high), log=p.log)
            else:
                dists[f"{name}.{p.name}"] = FloatDistribution(low, high, log=p.log)
        per_family[name] = dists
    return family, lr, per_family


def _sample(dist: Any, rng: random.Random) -> float:
    if dist.log:
        value = math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
    else:
        value = rng.uniform(dist.low, dist.high)
    return float(round(value)) if type(dist).__name__ == "IntDistribution" else value


def _curve(epochs: int, rng: random.Random, diverged: bool) -> dict[str, list[float | None]]:
    """A history of 5 metrics (``history`` of lrsearch's trial record)."""
    peak, tau, lr = rng.uniform(0.85, 0.98), rng.uniform(2.0, 10.0), rng.uniform(1e-4, 3e-2)
    history: dict[str, list[float | None]] = {
        k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr")
    }
    for e in range(epochs):
        acc = min(peak * (1 - math.exp(-(e + 1) / tau)) + rng.gauss(0, 0.01), 0.995)
        history["accuracy"].append(acc + rng.uniform(0, 0.02))
        history["val_accuracy"].append(acc)
        history["loss"].append(-math.log(max(acc, 1e-3)) + rng.uniform(0, 0.05))
        history["val_loss"].append(-math.log(max(acc, 1e-3)) + rng.uniform(0, 0.1))
        history["lr"].append(lr * 0.5 * (1 + math.cos(math.pi * e / epochs)))
    if diverged:
        for k in ("loss", "val_loss", "accuracy", "val_accuracy"):
            history[k][-1] = None  # NaN is stored as null
    return history


def _trial(
    number: int, rng: random.Random, dists: tuple[Any, Any, dict[str, dict[str, Any]]]
) -> dict[str, Any]:
    """One trial's rows (all but ids): state, times, params, values, attributes."""
    from optuna.distributions import distribution_to_json
    from optuna.trial import TrialState

    from lrsearch.records import TrialRecord

    family_dist, lr_dist, per_family = dists
    family = family_dist.choices[rng.randrange(len(family_dist.choices))]
    r = rng.random()
    state, outcome = (
        (TrialState.COMPLETE, "complete")
        if r < 0.55
        else (TrialState.PRUNED, "pruned")
        if r < 0.85
        else (TrialState.PRUNED, "diverged")
        if r < 0.96
        else (TrialState.FAIL, None)
    )
    epochs = EPOCHS if state == TrialState.COMPLETE else rng.randint(MIN_EPOCHS, EPOCHS)
    history = _curve(epochs, rng, outcome == "diverged")
    reported = [v for v in history["val_accuracy"] if v is not None]
    lr = _sample(lr_dist, rng)
    params = {"family": (family_dist, float(family_dist.choices.index(family)))}
    params["learning_rate"] = (lr_dist, lr)
    for pname, dist in per_family[family].items():
        params[pname] = (dist, _sample(dist, rng))
    relative = {name: value for name, (_, value) in params.items() if name != "family"}
    record = TrialRecord(
        schedule={
            "family": family,
            "total_steps": EPOCHS * STEPS_PER_EPOCH,
            "params": {k.split(".")[-1]: v for k, v in relative.items()},
        },
        relative=relative,
        seed=rng.randrange(2**31),
        backend="tensorflow",
        history=history,
        outcome=outcome,
        epochs_run=epochs,
        train_seconds=epochs * rng.uniform(0.1, 0.2),
        startup_seconds=rng.uniform(0.5, 2.0),
        diverged_at_step=epochs * STEPS_PER_EPOCH - rng.randrange(STEPS_PER_EPOCH)
        if outcome == "diverged"
        else None,
        error="RuntimeError: out of memory (at objective.py:120)"
        if state == TrialState.FAIL
        else None,
    )
    start = datetime.datetime(2026, 1, 1) + datetime.timedelta(seconds=30 * number)
    # Optuna stores a pruned trial's last intermediate value as its value.
    value = reported[-1] if state != TrialState.FAIL and reported else None
    return {
        "trial": {
            "number": number,
            "state": state,
            "datetime_start": start,
            "datetime_complete": start + datetime.timedelta(seconds=0.15 * epochs),
        },
        "params": [
            (name, value, distribution_to_json(dist)) for name, (dist, value) in params.items()
        ],
        "value": value,
        "intermediate": reported,
        "attrs": {k: json.dumps(v) for k, v in record.attrs().items()},
    }


def _tables() -> dict[str, Any]:
    from optuna.storages._rdb import models

    return {t.name: t for t in models.BaseModel.metadata.sorted_tables}


def build(storage: Any, trials: int) -> None:
    """Creates the study through Optuna and bulk-inserts ``trials`` trials."""
    import optuna
    import sqlalchemy
    from optuna.storages._rdb import models

    from lrsearch.records import StudyRecord

    study = optuna.create_study(study_name=NAME, storage=storage, direction="maximize")
    text = STUDY_FILE.format(trials=trials)
    StudyRecord(
        study_file=text,
        fingerprint="f" * 64,
        data_fingerprint="d" * 64,
        versions={"lrsearch": "bench", "optuna": optuna.__version__, "keras": "3", "tf": "2"},
        n_trials=trials,
        config={
            "study": {"name": NAME, "metric": "val_accuracy", "direction": "maximize"},
            "training": {"epochs": EPOCHS, "batch_size": 64},
        },
    ).write(study)
    sid = study._study_id
    t = _tables()
    value_type = models.TrialValueModel.TrialValueType.FINITE
    inter_type = models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE
    rng = random.Random(0)
    dists = _distributions()
    returning = sqlalchemy.insert(t["trials"]).returning(
        t["trials"].c.trial_id, sort_by_parameter_order=True
    )
    with storage.engine.begin() as conn:
        for first in range(0, trials, CHUNK):
            made = [_trial(n, rng, dists) for n in range(first, min(first + CHUNK, trials))]
            ids = [
                row[0]
                for row in conn.execute(returning, [{**m["trial"], "study_id": sid} for m in made])
            ]
            params, values, inter, attrs = [], [], [], []
            for trial_id, m in zip(ids, made, strict=True):
                params += [
                    {
                        "trial_id": trial_id,
                        "param_name": n,
                        "param_value": v,
                        "distribution_json": d,
                    }
                    for n, v, d in m["params"]
                ]
                if m["value"] is not None:
                    values.append(
                        {"trial_id": trial_id, "objective": 0, "value": m["value"]}
                        | {"value_type": value_type}
                    )
                inter += [
                    {"trial_id": trial_id, "step": s, "intermediate_value": v}
                    | {"intermediate_value_type": inter_type}
                    for s, v in enumerate(m["intermediate"])
                ]
                attrs += [
                    {"trial_id": trial_id, "key": k, "value_json": v}
                    for k, v in m["attrs"].items()
                ]
            for table, rows in [
                ("trial_params", params),
                ("trial_values", values),
                ("trial_intermediate_values", inter),
                ("trial_user_attributes", attrs),
            ]:
                if rows:
                    conn.execute(sqlalchemy.insert(t[table]), rows)


def drop(storage: Any, study_id: int) -> None:
    """Deletes the study and all its rows (children first, in bulk: ``delete_study`` loads every
    trial through the ORM)."""
    import sqlalchemy

    tables = _tables()
    trials = tables["trials"]
    of_study = sqlalchemy.select(trials.c.trial_id).where(trials.c.study_id == study_id)
    with storage.engine.begin() as conn:
        for table in reversed(list(tables.values())):  # children first
            if table.name == "studies":
                continue
            if "trial_id" in table.c and table.name != "trials":
                conn.execute(table.delete().where(table.c.trial_id.in_(of_study)))
            elif "study_id" in table.c:
                conn.execute(table.delete().where(table.c.study_id == study_id))
        conn.execute(tables["studies"].delete().where(tables["studies"].c.study_id == study_id))


def settle(storage: Any) -> None:
    """Updates the planner's statistics of Optuna's tables, as autovacuum (PostgreSQL) or a
    database that has been in use a while would have them: right after a bulk insert, a planner
    without statistics may pick other plans than it does on a real study."""
    import sqlalchemy

    dialect = storage.engine.dialect.name
    names = [name for name in _tables() if name.startswith(("trial", "stud"))]
    with storage.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in names:
            if dialect == "postgresql":
                conn.execute(sqlalchemy.text(f"VACUUM ANALYZE {name}"))
            elif dialect == "mysql":
                conn.execute(sqlalchemy.text(f"ANALYZE TABLE {name}"))
        if dialect == "sqlite":
            conn.execute(sqlalchemy.text("ANALYZE"))


def ensure(storage: Any, trials: int) -> tuple[int, float]:
    """The id of a ``bench-reads`` study with ``trials`` trials (built when missing) and the
    seconds it took to build it (0 when it was there)."""
    from lrsearch import queries

    try:
        sid = storage.get_study_id_from_name(NAME)
    except KeyError:
        sid = None
    if sid is not None:
        if sum(queries.state_counts(storage, sid).values()) == trials:
            settle(storage)
            return sid, 0.0
        drop(storage, sid)
    start = time.perf_counter()
    build(storage, trials)
    built = time.perf_counter() - start
    settle(storage)
    return storage.get_study_id_from_name(NAME), built


# --- timing ---------------------------------------------------------------------------------


def _command(*args: str) -> Callable[[], None]:
    def run() -> None:
        done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")

    return run


IMPORTS_ONLY = """
import sqlalchemy.engine
import lrsearch.cli, lrsearch.study, optuna, sqlalchemy.orm
from optuna.storages._rdb import models
sqlalchemy.engine.make_url({url!r}).get_dialect().import_dbapi()
"""


def _executable(name: str) -> str:
    local = os.path.join(os.path.dirname(sys.executable), name)
    found = local if os.path.exists(local) else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed next to {sys.executable} nor on PATH")
    return found


BASELINE = "load_study().get_trials()"
SLOW = ("optuna trials", BASELINE, "load_study().get_trials(deepcopy=False)")


def reads(storage: Any, url: str, study_id: int) -> list[tuple[str, str, Callable[[], Any]]]:
    """(label, how, call) of every read timed."""
    import optuna

    from lrsearch import queries
    from lrsearch.study import StudyHandle

    lrsearch, optuna_cli = _executable("lrsearch"), _executable("optuna")
    handle = StudyHandle(optuna.load_study(study_name=NAME, storage=storage), url)
    return [
        ("lrsearch status", "subprocess", _command(lrsearch, "status", NAME, "--storage", url)),
        ("lrsearch studies", "subprocess", _command(lrsearch, "studies", "--storage", url)),
        ("lrsearch best", "subprocess", _command(lrsearch, "best", NAME, "--storage", url)),
        (
            "imports of lrsearch status",
            "subprocess",
            _command(sys.executable, "-c", IMPORTS_ONLY.format(url=url)),
        ),
        (
            "optuna trials",
            "subprocess",
            _command(optuna_cli, "trials", "--study-name", NAME, "--storage", url),
        ),
        ("queries.trial_rows", "in-process", lambda: queries.trial_rows(storage, study_id)),
        ("queries.state_counts", "in-process", lambda: queries.state_counts(storage, study_id)),
        (
            "queries.family_bests",
            "in-process",
            lambda: queries.family_bests(storage, study_id, maximize=True),
        ),
        ("queries.study_rows", "in-process", lambda: queries.study_rows(storage)),
        ("StudyHandle.status()", "in-process", handle.status),
        (
            "load_study().get_trials()",
            "in-process",
            lambda: optuna.load_study(study_name=NAME, storage=storage).get_trials(),
        ),
        (
            "load_study().get_trials(deepcopy=False)",
            "in-process",
            lambda: optuna.load_study(study_name=NAME, storage=storage).get_trials(deepcopy=False),
        ),
    ]


def time_reads(
    calls: list[tuple[str, str, Callable[[], Any]]], repeats: int
) -> dict[str, list[float]]:
    """Seconds per call, ``repeats`` rounds, the order rotated each round."""
    times: dict[str, list[float]] = {label: [] for label, _, _ in calls}
    for r in range(repeats):
        order = calls[r % len(calls) :] + calls[: r % len(calls)]
        for label, _, call in order:
            start = time.perf_counter()
            call()
            times[label].append(time.perf_counter() - start)
            print(f"  round {r + 1}: {label}: {times[label][-1]:.3f} s", file=sys.stderr)
    return times


def table(calls: list[tuple[str, str, Callable[[], Any]]], times: dict[str, list[float]]) -> str:
    """A markdown table: each run, the median, and its ratio to ``get_trials()`` (when timed)."""
    baseline = statistics.median(times[BASELINE]) if BASELINE in times else math.nan
    repeats = len(next(iter(times.values())))
    head = " | ".join(f"run {i + 1}" for i in range(repeats))
    lines = [
        f"| read | how | {head} | median | / get_trials() |",
        "|---|---|" + "---|" * repeats + "---|---|",
    ]
    for label, how, _ in calls:
        runs = " | ".join(f"{t:.3f} s" for t in times[label])
        median = statistics.median(times[label])
        ratio = "-" if math.isnan(baseline) else f"{median / baseline:.4f}"
        lines.append(f"| `{label}` | {how} | {runs} | {median:.3f} s | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="SQLAlchemy URL of the database")
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the study for the next run")
    parser.add_argument(
        "--quick", action="store_true", help="leave out the slow Optuna reads (the baseline)"
    )
    args = parser.parse_args()
    if args.trials < 1 or args.repeats < 1:
        parser.error("--trials and --repeats must be >= 1")

    import optuna

    from lrsearch import queries
    from lrsearch.storage import mask_url, open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(args.url)
    sid, built = ensure(storage, args.trials)
    counts = queries.state_counts(storage, sid)
    print(
        f"study {NAME} at {mask_url(args.url)}: {sum(counts.values())} trials {counts}"
        + (f", built in {built:.1f} s" if built else ", reused"),
        file=sys.stderr,
    )
    try:
        calls = reads(storage, args.url, sid)
        if args.quick:
            calls = [call for call in calls if call[0] not in SLOW]
        before = os.getloadavg()
        times = time_reads(calls, args.repeats)
        after = os.getloadavg()
    finally:
        if not args.keep:
            drop(storage, sid)
        storage.engine.dispose()
    print(
        f"Optuna {optuna.__version__}, {args.trials} trials, {args.repeats} repeats; "
        f"load average (1, 5, 15 min) {_load(before)} before, {_load(after)} after"
    )
    print(table(calls, times))


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()
