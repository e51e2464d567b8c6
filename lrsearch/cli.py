"""The ``lrsearch`` command line: thin click commands over the library.

This is the only module that imports click. It imports nothing heavy at module level: Keras,
TensorFlow and Optuna are imported inside the commands that need them, so ``lrsearch --help``
answers at once.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import click

from lrsearch import __version__
from lrsearch.exceptions import (
    Interrupted,
    LRSearchError,
    ReportedError,
    ScheduleError,
    did_you_mean,
    exit_code_for,
)
from lrsearch.storage import mask_text

__all__ = ["cli", "main"]


def _invoke_reporting_errors(invoke: Any, ctx: click.Context) -> Any:
    """Runs a command; lrsearch's errors become one line ``Error: ...`` and the exit code of
    :func:`lrsearch.exceptions.exit_code_for` (2 bad input, 1 environment, 130 Ctrl-C)."""
    try:
        return invoke(ctx)
    except Interrupted as exc:
        click.echo(str(exc), err=True)
        ctx.exit(130)
    except ReportedError as exc:
        ctx.exit(exc.exit_code)  # already printed by the worker that failed
    except LRSearchError as exc:
        click.echo(f"Error: {_one_line(mask_text(str(exc)))}", err=True)
        ctx.exit(exit_code_for(exc))
    except Exception as exc:
        from lrsearch.storage import describe_storage_error, is_storage_error

        if not is_storage_error(exc):
            raise
        click.echo(f"Error: {_one_line(describe_storage_error(exc))}", err=True)
        ctx.exit(1)


def _one_line(text: str, limit: int = 1000) -> str:
    """A message on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


class _Command(click.Command):
    def invoke(self, ctx: click.Context) -> Any:
        return _invoke_reporting_errors(super().invoke, ctx)


class _Group(click.Group):
    """A group whose commands report lrsearch's errors as one line, with "did you mean"."""

    command_class = _Command

    def invoke(self, ctx: click.Context) -> Any:
        return _invoke_reporting_errors(super().invoke, ctx)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            hint = did_you_mean(name, self.list_commands(ctx), quote="'")
            raise click.UsageError(f"No such command '{name}'.{hint}", ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lrsearch")
def cli() -> None:
    """Find the learning-rate schedule that trains your Keras model best.

    \b
    Every trial of an Optuna study is a real Keras training with a sampled
    schedule family (cosine, one-cycle, warmup-stable-decay, ...) and its
    parameters, stored in a SQL database that optuna-dashboard reads.

    \b
    Examples:
      lrsearch start studies/digits.toml      # run the default study (SQLite)
      lrsearch status digits-mlp              # how it is going
      lrsearch best digits-mlp --json         # the winning schedule
      lrsearch confirm digits-mlp             # the top 3 again with fresh seeds
      lrsearch schedules                      # the schedule families
      lrsearch schedules plot onecycle --learning-rate 0.1 -o onecycle.png
    """


_STORAGE_HELP = (
    "SQLAlchemy URL of the study database  [default: $LRSEARCH_STORAGE, else "
    "sqlite:///lrsearch.db]"
)


def _storage_option(f: Any) -> Any:
    return click.option("--storage", metavar="URL", default=None, help=_STORAGE_HELP)(f)


_ARTIFACTS_HELP = (
    "Artifact store for trial pictures: a folder every worker and the dashboard see, or "
    "s3://bucket/prefix; 'none' turns them off  [default: $LRSEARCH_ARTIFACTS, else "
    "NAME-artifacts next to a SQLite file NAME.db]"
)


def _trial_option(f: Any) -> Any:
    return click.option(
        "--trial", "trial_number", type=int, default=None, help="Trial number [default: best]."
    )(f)


def _artifacts_option(f: Any) -> Any:
    return click.option("--artifacts", metavar="DIR", default=None, help=_ARTIFACTS_HELP)(f)


_MAX_PACK = 64  # lrsearch.config.MAX_PACK (not imported: --help stays light); a test compares


class _PackType(click.ParamType):
    """``--pack``: ``auto`` or a whole number from 1 to the limit."""

    name = "pack"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if value == "auto":
            return "auto"
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if 1 <= number <= _MAX_PACK:
            return number
        self.fail(f"{value!r} is not 'auto' or a whole number from 1 to {_MAX_PACK}.", param, ctx)


def _backend_option(f: Any) -> Any:
    return click.option(
        "--backend",
        type=click.Choice(["tensorflow", "jax"]),
        default=None,
        help="Keras backend  [default: $KERAS_BACKEND, else the file's training.backend]",
    )(f)


def _run_options(f: Any) -> Any:
    """Options shared by ``start`` and ``resume``."""
    for option in reversed(
        [
            _storage_option,
            _artifacts_option,
            click.option(
                "--n-trials",
                type=click.IntRange(min=1),
                default=None,
                help="The study's total budget of finished trials, over all workers.",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=None,
                metavar="SECONDS",
                help="Stop starting new trials after this many seconds.",
            ),
            click.option(
                "--workers",
                type=click.IntRange(min=1),
                default=1,
                show_default=True,
                help="Worker processes on this machine (CPU threads split between them).",
            ),
            click.option(
                "--pack",
                type=_PackType(),
                default=None,
                metavar="K|auto",
                help="Train K trials at once in one packed model (1: one by one; auto: "
                "calibrated)  [default: the file's training.pack, auto]",
            ),
            click.option(
                "--no-progress", is_flag=True, help="No progress bar (lines still print)."
            ),
            _backend_option,
        ]
    ):
        f = option(f)
    return f


def _run(
    config: Any,
    text: str,
    *,
    base_dir: Any,
    storage: str | None,
    study_name: str | None,
    n_trials: int | None,
    timeout: float | None,
    allow_changed: bool,
    workers: int,
    no_progress: bool,
    backend: str | None,
    pack: int | str | None,
    artifacts: str | None = None,
    find_lr: bool = False,
) -> None:
    """Runs the study in worker processes and prints where it stands."""
    import time

    from lrsearch.runner import run_study

    started = time.perf_counter()
    summary = run_study(
        config,
        study_file_text=text,
        base_dir=base_dir,
        storage_url=storage,
        study_name=study_name,
        n_trials=n_trials,
        timeout=timeout,
        allow_changed=allow_changed,
        workers=workers,
        progress=not no_progress,
        echo=click.echo,
        echo_err=lambda line: click.echo(line, err=True),
        backend=backend,
        artifacts=artifacts,
        pack=pack,
        find_lr=find_lr,
    )
    counts = ", ".join(f"{v} {k.lower()}" for k, v in sorted(summary.counts.items()))
    seconds = time.perf_counter() - started
    click.echo(
        f"done: {summary.finished}/{summary.n_trials} finished ({counts}); "
        f"{summary.ran} trial(s) run here in {seconds:.0f}s"
        + (f" by {workers} workers" if workers > 1 else "")
    )
    if summary.best is not None:
        best = summary.best
        sched = best.schedule or {}
        click.echo(
            f"best: trial #{best.number} {config.study.metric}={best.value:.4f} "
            f"{sched.get('family', '')} {json.dumps(sched.get('params', {}))}"
        )
    name, url = shlex.quote(summary.study_name), shlex.quote(summary.storage_url)
    click.echo(f"look closer: lrsearch dashboard --storage {url}")
    click.echo(f"             lrsearch compare {name} --storage {url} -o report.html")


@cli.command()
@click.argument("study_file", type=click.Path(path_type=str))
@_run_options
@click.option("--study-name", default=None, help="Use this name instead of the file's.")
@click.option(
    "--allow-changed",
    is_flag=True,
    help="Join an existing study even if its stored study file differs.",
)
@click.option(
    "--find-lr",
    "find_lr",
    is_flag=True,
    help="If the study is new, run a learning-rate range test first and search "
    "learning_rate inside the range it suggests (see lrsearch find-lr).",
)
def start(
    study_file: str,
    storage: str | None,
    artifacts: str | None,
    n_trials: int | None,
    timeout: float | None,
    workers: int,
    pack: int | str | None,
    no_progress: bool,
    backend: str | None,
    study_name: str | None,
    allow_changed: bool,
    find_lr: bool,
) -> None:
    """Create or join the study of STUDY_FILE and run trials until its budget is met.

    Every trial trains the file's model with a sampled schedule and reports the
    monitored metric each epoch, so the pruner stops unpromising ones. Run the
    same command on more machines against one database and they share the
    study; run it again after a stop and it resumes. Ctrl-C stops cleanly: the
    interrupted trial runs again on resume.

    \b
    Examples:
      lrsearch start studies/digits.toml
      lrsearch start studies/digits.toml --n-trials 60       # raise the budget
      lrsearch start studies/digits.toml --workers 2         # two processes here
      lrsearch start studies/digits.toml --pack 8            # 8 trials per packed fit
      lrsearch start studies/digits.toml --find-lr           # a range test bounds the lr
      lrsearch start studies/cnn-digits.toml --storage postgresql+psycopg://me:pw@db/optuna
    """
    from pathlib import Path

    from lrsearch.config import check_study_name, load_study_file

    config, text = load_study_file(study_file)
    if study_name is not None:
        check_study_name(study_name, field="--study-name")
    _run(
        config,
        text,
        base_dir=Path(study_file).resolve().parent,
        storage=storage,
        study_name=study_name,
        n_trials=n_trials,
        timeout=timeout,
        allow_changed=allow_changed,
        workers=workers,
        no_progress=no_progress,
        backend=backend,
        pack=pack,
        artifacts=artifacts,
        find_lr=find_lr,
    )


@cli.command("find-lr")
@click.argument("study_file", type=click.Path(path_type=str))
@click.option(
    "-o",
    "--output",
    type=click.Path(writable=True),
    default=None,
    help="The loss-vs-lr picture  [default: NAME-lr-range.png, NAME the study's]",
)
@click.option(
    "--apply",
    is_flag=True,
    help="Store the range in the study (created if new): every worker's search then samples "
    "learning_rate inside it.",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="Tests to run (seeds study.seed, +1, ...), each about one trial's cost; their "
    "minima are averaged in log space.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=30),
    default=None,
    help="Steps per test, at least 30  [default: one trial's steps, 60 to 500]",
)
@click.option(
    "--min-lr", type=click.FloatRange(min=0, min_open=True), default=1e-6, show_default=True
)
@click.option(
    "--max-lr", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True
)
@click.option(
    "--decades",
    type=click.FloatRange(min=0, min_open=True, max=10),
    default=2.0,
    show_default=True,
    help="Width of the range: its low bound is this many decades below its high one.",
)
@_storage_option
@_artifacts_option
@click.option("--study-name", default=None, help="Use this name instead of the file's.")
@_backend_option
@click.option(
    "--allow-changed",
    is_flag=True,
    help="With --apply: store into an existing study even if its stored study file differs.",
)
def find_lr(
    study_file: str,
    output: str | None,
    apply: bool,
    seeds: int,
    steps: int | None,
    min_lr: float,
    max_lr: float,
    decades: float,
    storage: str | None,
    artifacts: str | None,
    study_name: str | None,
    backend: str | None,
    allow_changed: bool,
) -> None:
    """Run a learning-rate range test on STUDY_FILE's model and data, and suggest
    the range the search's learning_rate should take.

    One short training with the learning rate rising exponentially from
    --min-lr to --max-lr, recording the smoothed loss of each batch; it stops
    once the loss explodes. The range's high bound is the learning rate where
    the loss stopped improving (averaged over --seeds in log space), its low
    bound --decades below; the reasoning is printed and the curve drawn. With
    --apply the range is stored in the study (and the picture as its artifact
    lr_range.png), so `lrsearch start` searches inside it on every worker.

    \b
    Examples:
      lrsearch find-lr studies/digits.toml                 # suggest a range
      lrsearch find-lr studies/digits.toml --apply         # ... and search inside it
      lrsearch find-lr studies/cnn-digits.toml --seeds 3 -o cnn-lr.png
      lrsearch start studies/digits.toml --find-lr         # a new study: test first
    """
    import os
    from pathlib import Path

    from lrsearch._imports import select_backend
    from lrsearch.artifacts import LR_RANGE, lr_range_title, upload_lr_range
    from lrsearch.config import check_study_name, load_study_file
    from lrsearch.outputs import check_output_file
    from lrsearch.plots import plot_lr_range
    from lrsearch.rangetest import find_lr as run_find_lr
    from lrsearch.runner import prepare_study

    config, text = load_study_file(study_file)
    if study_name is not None:
        check_study_name(study_name, field="--study-name")
    name = study_name or config.study.name
    output = output or f"{name}-lr-range.png"
    check_output_file(output, option="-o")
    if apply:  # the storage and the study checked before the test, not after
        from lrsearch.study import StudyHandle, study_exists

        if study_exists(name, storage) and not allow_changed:
            StudyHandle.open(name, storage).check_same_file(config)
    select_backend(backend or os.environ.get("KERAS_BACKEND") or config.training.backend)
    base_dir = Path(study_file).resolve().parent
    click.echo(f"range test on {name!r}: {seeds} seed(s), lr {min_lr:g} -> {max_lr:g}")
    found = run_find_lr(
        config,
        base_dir=base_dir,
        seeds=seeds,
        steps=steps,
        min_lr=min_lr,
        max_lr=max_lr,
        decades=decades,
        echo=click.echo,
    )
    for line in found.reasoning():
        click.echo(line)
    click.echo(f"search range: learning_rate in [{found.low:.3g}, {found.high:.3g}]")
    plot_lr_range(found, title=lr_range_title(name, found), path=output)
    click.echo(f"picture: {output}")
    if not apply:
        click.echo(
            f"to search inside it: lrsearch find-lr {shlex.quote(study_file)} --apply, or "
            f"learning_rate = [{found.low:.3g}, {found.high:.3g}] under [space]"
        )
        return
    prepared = prepare_study(
        config,
        study_file_text=text,
        base_dir=base_dir,
        storage_url=storage,
        study_name=study_name,
        allow_changed=allow_changed,
        backend=backend,
        lr_range=found.record(),
        echo=lambda line: None,
    )
    handle = prepared.handle
    click.echo(
        f"stored in study {handle.name!r} ({handle.masked_url}): every worker that starts or "
        "resumes it from now on samples learning_rate inside the range"
    )
    if upload_lr_range(artifacts, handle, found):
        click.echo(f"the picture is the study's artifact {LR_RANGE} (optuna-dashboard)")


@cli.command()
@click.argument("name")
@_run_options
def resume(
    name: str,
    storage: str | None,
    artifacts: str | None,
    n_trials: int | None,
    timeout: float | None,
    workers: int,
    pack: int | str | None,
    no_progress: bool,
    backend: str | None,
) -> None:
    """Continue study NAME from the database alone, until its budget is met.

    The study file stored with the study is used; its budget is the stored one
    unless --n-trials raises it. Relative data paths resolve from the current
    folder.

    \b
    Examples:
      lrsearch resume digits-mlp
      lrsearch resume digits-mlp --n-trials 80 --workers 2
      lrsearch resume digits-mlp --storage postgresql+psycopg://me:pw@db/optuna
    """

    from lrsearch.study import StudyHandle

    handle = StudyHandle.open(name, storage)
    config, text = handle.config()
    _run(
        config,
        text,
        base_dir=None,  # relative data paths: from the current folder
        storage=storage,
        study_name=name,
        n_trials=n_trials or handle.record.budget,
        timeout=timeout,
        allow_changed=False,
        workers=workers,
        no_progress=no_progress,
        backend=backend,
        pack=pack,
        artifacts=artifacts,
    )


@cli.command()
@click.argument("name")
@_storage_option
def reap(name: str, storage: str | None) -> None:
    """Fail the stale trials of study NAME now and queue them to run again.

    A trial is stale when its worker stopped sending heartbeats (killed,
    crashed, machine gone) for longer than the grace period
    ($LRSEARCH_GRACE_PERIOD, default 120 s). Workers do this on their own;
    this command does it on demand.

    \b
    Examples:
      lrsearch reap digits-mlp
      lrsearch reap digits-mlp --storage postgresql+psycopg://me:pw@db/optuna
    """
    from lrsearch.study import StudyHandle

    numbers = StudyHandle.open(name, storage).reap()
    if numbers:
        listed = ", ".join(f"#{n}" for n in numbers)
        click.echo(f"failed {len(numbers)} stale trial(s) ({listed}); queued to run again")
    else:
        click.echo("no stale trials")


@cli.command()
@_storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def studies(storage: str | None, as_json: bool) -> None:
    """List the studies in a storage.

    \b
    Examples:
      lrsearch studies
      lrsearch studies --storage postgresql://me:pw@db/optuna --json
    """
    from lrsearch.study import list_studies

    rows = [
        {
            "name": r.name,
            "direction": r.direction,
            "n_trials": r.n_trials,
            "budget": r.budget,
            "best": r.best,
            "metric": r.metric,
            "created": r.created.isoformat(" ", "seconds") if r.created else "",
        }
        for r in list_studies(storage)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no studies yet; create one with: lrsearch start STUDY_FILE")
        return
    for r in rows:
        best = f"{r['best']:.4f}" if r["best"] is not None else "-"
        budget = f"/{r['budget']}" if r["budget"] else ""
        click.echo(
            f"{r['name']:<30} {r['n_trials']:>4}{budget:<5} trials  best {r['metric'] or 'value'}"
            f"={best} ({r['direction']})  created {r['created']}"
        )


@cli.command()
@click.argument("name")
@_storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(name: str, storage: str | None, as_json: bool) -> None:
    """Show a study's progress: trials per state, best per family, running trials.

    \b
    Examples:
      lrsearch status digits-mlp
      lrsearch status digits-mlp --storage sqlite:///runs/lrsearch.db --json
    """
    from lrsearch.study import StudyHandle

    info = StudyHandle.open(name, storage).status().to_dict()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    counts = ", ".join(f"{v} {k}" for k, v in sorted(info["counts"].items())) or "no trials"
    budget = f" of a budget of {info['budget']}" if info["budget"] else ""
    if info["rungs"] and info["budget"]:
        budget = f" ({info['budget']} new configurations, then promotions)"
    click.echo(f"study {info['name']!r} ({info['direction']} {info['metric']}): {counts}{budget}")
    if info["lr_range"]:
        low, high = info["lr_range"]["low"], info["lr_range"]["high"]
        click.echo(f"learning_rate searched in [{low:.3g}, {high:.3g}] (a range test's, find-lr)")
    if info["replicates"]:
        replicated = ", ".join(f"{v} {k}" for k, v in sorted(info["replicates"].items()))
        click.echo(f"replicates (lrsearch confirm; not in the budget): {replicated}")
    if info["rungs"]:
        click.echo("rungs (budget-aware halving: whole schedules in each rung's epochs):")
        for r in info["rungs"]:
            states = ", ".join(f"{v} {k}" for k, v in sorted(r["counts"].items())) or "none"
            best = (
                "" if r["best"] is None else f"  best {r['best']:.4f} (trial #{r['best_number']})"
            )
            click.echo(f"  rung {r['rung']}  {r['epochs']:>4} epochs  {states}{best}")
    for line in info["race"]:
        click.echo(line)
    if info["best_per_family"]:
        rungs = any("rung" in b for b in info["best_per_family"].values())
        click.echo("best per family" + (" (at the highest rung it reached):" if rungs else ":"))
        for family, b in info["best_per_family"].items():
            at = f", rung {b['rung']}: {b['epochs']} epochs" if "rung" in b else ""
            click.echo(f"  {family:<16} {b['value']:.4f}  (trial #{b['number']}{at})")
    for f in info["failed"]:
        click.echo(f"failed: trial #{f['number']} {f['family'] or '?'}: {f['error']}")
    for r in info["running"]:
        stale = "  STALE (no heartbeat: lrsearch reap)" if r.get("stale") else ""
        click.echo(
            f"running: trial #{r['number']} {r['family'] or ''} since {r['started']}{stale}"
        )


@cli.command()
@click.argument("name")
@_storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the schedule config too).")
def best(name: str, storage: str | None, as_json: bool) -> None:
    """Show a study's best trial and its schedule in absolute units.

    The printed schedule is exactly what lrsearch.schedules.build_schedule takes.

    \b
    Examples:
      lrsearch best digits-mlp
      lrsearch best digits-mlp --json > best.json
    """
    from lrsearch.study import StudyHandle

    handle = StudyHandle.open(name, storage)
    info = {
        **handle.require_best().to_dict(),
        "metric": handle.record.metric,
        "study": handle.name,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    sched = info.get("schedule") or {}
    click.echo(
        f"study {info['study']!r}: best trial #{info['number']}, "
        f"{info['metric']}={info['value']:.4f}"
    )
    click.echo(f"family: {sched.get('family')}  (total_steps={sched.get('total_steps')})")
    for key, value in (sched.get("params") or {}).items():
        click.echo(f"  {key} = {value!r}")


@cli.command()
@click.argument("name")
@click.option(
    "-o",
    "--output",
    type=click.Path(writable=True),
    default=None,
    help="report.html: one self-contained page; any other path: a folder of PNGs and CSVs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@_storage_option
def compare(name: str, output: str | None, as_json: bool, storage: str | None) -> None:
    """Compare the schedule families of study NAME.

    Per family: trials, complete/pruned/diverged/failed, best and median
    value, the best trial's schedule, and parameter importance within the
    family (fANOVA over its own complete trials). With -o, also the
    optimization history, the values per family, the best trials' lr
    curves and the importance charts.

    \b
    Examples:
      lrsearch compare digits-mlp                     # table in the terminal
      lrsearch compare digits-mlp -o report.html      # open it in a browser
      lrsearch compare digits-mlp -o report/          # PNGs + families.csv
      lrsearch compare digits-mlp --json
    """
    from lrsearch.outputs import check_output_file, check_output_folder
    from lrsearch.report import compare as run_compare
    from lrsearch.report import format_text, write_folder, write_html

    html = output is not None and output.lower().endswith((".html", ".htm"))
    if output is not None:
        check = check_output_file if html else check_output_folder
        check(output, option="-o")
    from lrsearch.study import StudyHandle

    comparison = run_compare(StudyHandle.open(name, storage))
    if as_json:
        click.echo(json.dumps(comparison.to_dict(), indent=2))
    else:
        click.echo(format_text(comparison))
    if output is None:
        return
    click.echo(f"writing {output} ...", err=True)
    if html:
        written = [write_html(comparison, output)]
    else:
        written = write_folder(comparison, output)
    click.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)


@cli.command()
@click.argument("name")
@_trial_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "keras", "python"]),
    default="json",
    show_default=True,
    help="json: the absolute config; keras: keras serialize() JSON; python: a snippet.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="File to write  [default: standard output]",
)
@_storage_option
def export(
    name: str, trial_number: int | None, fmt: str, output: str | None, storage: str | None
) -> None:
    """Export the schedule of study NAME's best trial (or --trial N).

    \b
    json    what lrsearch.schedules.build_schedule takes
    keras   keras.optimizers.schedules.serialize() output; load it with
            keras.optimizers.schedules.deserialize after import lrsearch.schedules
    python  a snippet: pure Keras where a built-in is exactly equivalent

    \b
    Examples:
      lrsearch export digits-mlp
      lrsearch export digits-mlp --trial 12 --format python
      lrsearch export digits-mlp --format keras -o schedule.json
    """
    from lrsearch.export import export_schedule, trial_schedule
    from lrsearch.outputs import check_output_file
    from lrsearch.study import StudyHandle

    if output is not None:
        check_output_file(output, option="-o")
    schedule, frozen = trial_schedule(StudyHandle.open(name, storage), trial_number)
    text = export_schedule(schedule, fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    from pathlib import Path

    Path(output).write_text(text, encoding="utf-8")
    click.echo(f"wrote {output} (trial #{frozen.number}, {schedule['family']}, {fmt})", err=True)


@cli.command()
@click.argument("name")
@_trial_option
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Epochs  [default: the study's]"
)
@click.option(
    "--save",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="The .keras file to write (model, optimizer and schedule).",
)
@_storage_option
def retrain(
    name: str, trial_number: int | None, epochs: int | None, save: str, storage: str | None
) -> None:
    """Train the best trial (or --trial N) of study NAME again and save the model.

    Uses the study's stored data, model and optimizer settings, the trial's
    schedule and seed; relative data paths resolve from the current folder.
    The --save path is checked before the training. Load the file with
    keras.saving.load_model after import lrsearch.schedules.

    \b
    Examples:
      lrsearch retrain digits-mlp --save best.keras
      lrsearch retrain digits-mlp --trial 7 --epochs 30 --save t7.keras
    """
    from lrsearch.retrain import retrain as run_retrain

    r = run_retrain(name, save, storage_url=storage, trial=trial_number, epochs=epochs)
    value = f"{r.metric}={r.value:.4f}" if r.value is not None else "no value"
    if r.trial_value is not None and r.value is not None:
        if f"{r.trial_value:.4f}" != f"{r.value:.4f}":  # as shown: a stacked pack, --epochs
            value += f" (the trial: {r.trial_value:.4f})"
    click.echo(
        f"trial #{r.trial} ({r.family}, seed {r.seed}) trained {r.epochs} epochs: {value}; "
        f"saved {r.path}"
    )


@cli.command()
@click.argument("name")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="How many of the best configurations (distinct schedules) to train again.",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1, max=100),
    default=3,
    show_default=True,
    help="Fresh seeds per configuration (replicates already trained are kept).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes on this machine.",
)
@_backend_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar (lines still print).")
@_storage_option
@_artifacts_option
def confirm(
    name: str,
    top: int,
    seeds: int,
    workers: int,
    backend: str | None,
    as_json: bool,
    no_progress: bool,
    storage: str | None,
    artifacts: str | None,
) -> None:
    """Train study NAME's best configurations again with fresh seeds, and test the winner.

    Each of the --top best complete trials with distinct schedules gets --seeds
    replicates: trials of the same study that train its exact schedule with a
    new seed (marked lrsearch.replicate_of; not counted against the budget).
    Per configuration the sample is the trial's value plus its replicates';
    the table shows n, mean ± sd and min..max, and the verdict says whether the
    best (by mean) is distinguishable from the runner-up: Welch's t-test,
    one-sided, p < 0.05. Running it again, or on several machines at once,
    trains each replicate once.

    \b
    Examples:
      lrsearch confirm digits-mlp                       # top 3, 3 fresh seeds each
      lrsearch confirm digits-mlp --top 2 --seeds 5 --workers 2
      lrsearch confirm digits-mlp --json
    """
    from lrsearch.confirm import confirm as run_confirm
    from lrsearch.confirm import format_text

    result = run_confirm(
        name,
        storage_url=storage,
        top=top,
        seeds=seeds,
        workers=workers,
        backend=backend,
        progress=not no_progress,
        echo=lambda line: click.echo(line, err=as_json),
        echo_err=lambda line: click.echo(line, err=True),
        artifacts=artifacts,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(format_text(result))


@cli.command()
@_storage_option
@_artifacts_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--read-only", "readonly", is_flag=True, help="Refuse every request but GET/HEAD.")
def dashboard(
    storage: str | None, artifacts: str | None, host: str, port: int, readonly: bool
) -> None:
    """Serve optuna-dashboard on the study database, trial pictures included.

    optuna-dashboard has no login and lets any visitor delete a study: it
    listens on loopback unless --host says otherwise (then a warning is
    printed), and --read-only refuses every request that would change data.

    \b
    Examples:
      lrsearch dashboard                                   # http://127.0.0.1:8080/
      lrsearch dashboard --storage sqlite:///runs/x.db --port 8081
      lrsearch dashboard --host 0.0.0.0 --read-only --artifacts /shared/art
    """
    from lrsearch.artifacts import artifact_store_for
    from lrsearch.dashboard import serve
    from lrsearch.storage import resolve_storage_url

    url = resolve_storage_url(storage)
    store = artifact_store_for(artifacts, url)
    try:
        serve(url, artifact_store=store, host=host, port=port, readonly=readonly, echo=click.echo)
    except OSError as exc:
        raise LRSearchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


# --- schedules --------------------------------------------------------------------------------


@cli.group(cls=_Group, invoke_without_command=True)
@click.pass_context
def schedules(ctx: click.Context) -> None:
    """List the schedule families with their parameters and defaults.

    \b
    Examples:
      lrsearch schedules
      lrsearch schedules plot cosine --warmup-steps 200 --epochs 20 -o cosine.png
    """
    if ctx.invoked_subcommand is not None:
        return
    from lrsearch.schedules import FAMILIES

    for family in FAMILIES.values():
        click.echo(click.style(family.name, bold=True) + f"  {family.summary}")
        click.echo(f"  reference: {family.reference}")
        if family.optimizer:
            click.echo(
                f"  trains with keras.optimizers.{family.optimizer} (training.optimizer 'adam' "
                "or 'adamw'), alone, never in a pack"
            )
        if not family.searched_by_default:
            click.echo("  searched when space.families lists it (not by default)")
        width = max(len(p.name) for p in family.params)
        for p in family.params:
            kind = "|".join(p.choices) if p.choices else p.kind
            click.echo(f"    {p.name:<{width}}  {kind:<10} = {p.default_text:<32} {p.help}")
        if family.needs_total_steps:
            click.echo(f"    {'total_steps':<{width}}  {'int':<10} = {'the training budget':<32}")
        click.echo()


def _parse_extra_params(family_name: str, args: list[str]) -> dict[str, Any]:
    """Parses ``--pct-start 0.3 --three-phase --anneal=linear`` against a family's params."""
    from lrsearch.schedules import get_family

    family = get_family(family_name)
    params: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ScheduleError(
                f"Unexpected argument {arg!r}; give parameters as --name value "
                f"(see 'lrsearch schedules' for {family.name}'s parameters)."
            )
        key, eq, inline = arg[2:].partition("=")
        name = key.replace("-", "_")
        negated = name.startswith("no_") and name[3:] in family.param_names
        if negated:
            name = name[3:]
        param = family.param(name)
        if param.kind == "bool" and not eq:
            nxt = args[i + 1] if i + 1 < len(args) else None
            if nxt is not None and nxt.lower() in ("true", "false", "1", "0", "yes", "no"):
                text, i = nxt, i + 2
            else:
                text, i = ("false" if negated else "true"), i + 1
        elif eq:
            text, i = inline, i + 1
        elif i + 1 < len(args):
            text, i = args[i + 1], i + 2
        else:
            raise ScheduleError(f"Option --{key} needs a value.")
        params[name] = _parse_value(param.kind, name, text)
    return params


def _parse_value(kind: str, name: str, text: str) -> Any:
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ScheduleError(f"Argument `{name}` must be true or false. Received: {name}={text!r}")
    if kind in ("float", "int"):
        try:
            return float(text) if kind == "float" else _parse_int(text)
        except ValueError:
            raise ScheduleError(
                f"Argument `{name}` must be a number. Received: {name}={text!r}"
            ) from None
    return text


def _parse_int(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)  # "1e3" is fine; 1.5 is rejected by the registry with its name


@schedules.command(
    "plot",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("family")
@click.option("--epochs", type=click.IntRange(min=1, max=1_000_000), default=20, show_default=True)
@click.option(
    "--steps-per-epoch",
    type=click.IntRange(min=1, max=1_000_000),
    default=100,
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="PNG file to write  [default: FAMILY.png]",
)
@click.option("--log", "log_scale", is_flag=True, help="Log-scale the learning-rate axis.")
@click.pass_context
def plot(
    ctx: click.Context,
    family: str,
    epochs: int,
    steps_per_epoch: int,
    output: str | None,
    log_scale: bool,
) -> None:
    """Draw a family's learning rate over a training, to see it before searching it.

    FAMILY's parameters are given as options named after them (dashes or
    underscores); the rest take their defaults (see 'lrsearch schedules').

    \b
    Examples:
      lrsearch schedules plot onecycle --learning-rate 0.1 --epochs 10 -o onecycle.png
      lrsearch schedules plot wsd --warmup-steps 100 --decay-shape sqrt --log
      lrsearch schedules plot cosine_restarts --first-decay-steps 200 --t-mul 1
    """
    from lrsearch.outputs import check_output_file
    from lrsearch.schedules import get_family, resolve_params

    params = _parse_extra_params(family, ctx.args)
    output = str(check_output_file(output or f"{family}.png", option="-o"))  # before matplotlib
    from lrsearch.plots import curve_steps, describe_params, plot_schedule, schedule_values

    if family == "warmup_decay":
        params.setdefault("steps_per_epoch", steps_per_epoch)
    total = epochs * steps_per_epoch
    resolved = resolve_params(family, total_steps=total, **params)
    schedule = get_family(family).schedule_class(**resolved)
    steps = curve_steps(total)
    values = schedule_values(schedule, total, steps=steps)
    momentum = None
    if schedule.cycles_momentum:
        momentum = schedule_values(schedule.momentum, total, steps=steps)
    note = None
    if family == "plateau":
        note = "Plateau cuts depend on the monitored metric during training; shown without cuts."
    out = plot_schedule(
        values,
        steps_per_epoch=steps_per_epoch,
        title=f"{family}: {describe_params(resolved, skip=('total_steps',))}",
        path=output,
        log_scale=log_scale,
        note=note,
        steps=steps,
        momentum=momentum,
    )
    sampled = f", drawn at {len(steps):,} of its {total:,} steps" if len(steps) < total else ""
    click.echo(
        f"wrote {out} ({family}, {epochs} epochs x {steps_per_epoch} steps; "
        f"lr from {values[0]:.3g} to {values[-1]:.3g}, max {values.max():.3g}{sampled}"
        + (
            f"; momentum cycles {momentum.min():.3g}-{momentum.max():.3g}"
            if momentum is not None
            else ""
        )
        + ")"
    )


def main() -> None:
    """Console-script entry point."""
    from lrsearch.workers import quiet_experimental_warnings

    quiet_experimental_warnings()
    cli(prog_name="lrsearch")


if __name__ == "__main__":  # pragma: no cover
    main()
