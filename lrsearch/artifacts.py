"""Pictures and files per trial in an Optuna artifact store, and a study note for the dashboard.

Every finished or pruned trial uploads, through :mod:`optuna.artifacts`, ``lr_curve.png`` (the
schedule's planned lr(t) over all steps and the lr applied at each epoch's start, which shows
plateau cuts), ``learning_curve.png`` (loss and metric per epoch, lr on a second axis) and
``history.csv``. After each finished trial the study's note (optuna-dashboard's notes) is
rewritten with the best trial and the best value per family, and a study artifact
``top_lr_curves.png`` overlays the lr curves of the best trials coloured by family.

Where artifacts go: ``--artifacts DIR`` (or ``s3://bucket/prefix``), else
``$LRSEARCH_ARTIFACTS``, else for a SQLite database ``x.db`` the folder ``x-artifacts`` next to
it. A failing store never fails a trial: the first failure is printed, the search goes on.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrsearch import settings
from lrsearch.exceptions import ConfigError
from lrsearch.records import TrialRecord

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from lrsearch._drawing import DrawingProcess
    from lrsearch.halving import Plan
    from lrsearch.study import StudyHandle

__all__ = [
    "ENV_VAR",
    "NO_STORE_WARNING",
    "ArtifactRecorder",
    "default_location",
    "open_artifact_store",
    "put_study_file",
    "upload_lr_range",
    "resolve_artifacts",
    "steps_per_epoch",
    "study_note",
    "top_curves_title",
    "lr_curves",
    "top_schedules",
]

ENV_VAR = settings.ARTIFACTS
OFF = "none"  # --artifacts none: no pictures, no study note
NO_STORE_WARNING = (
    "no artifact store: pass --artifacts DIR (a folder every worker and the dashboard see) "
    "or s3://bucket/prefix"
)
LR_CURVE = "lr_curve.png"
LEARNING_CURVE = "learning_curve.png"
HISTORY = "history.csv"
STUDY_FIGURE = "top_lr_curves.png"
LR_RANGE = "lr_range.png"  # the range test's curve (lrsearch find-lr --apply, start --find-lr)
TOP_TRIALS = 8

# A 1x1 transparent PNG: the trial's pictures until the background thread has drawn them.
PLACEHOLDER_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

_warned: set[str] = set()
_warned_lock = threading.Lock()  # warnings come from the training and the background thread


def _first_time(key: str) -> bool:
    with _warned_lock:
        first = key not in _warned
        _warned.add(key)
    return first


def _warn_once(key: str, message: str) -> None:
    if _first_time(key):
        print(f"warning: {message}", file=sys.stderr, flush=True)


def default_location(storage_url: str) -> str | None:
    """``x-artifacts`` next to the file of a ``sqlite:///path/x.db`` storage, else ``None``."""
    if not storage_url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(storage_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    db = Path(database)
    return str(db.with_name(f"{db.stem}-artifacts"))


def resolve_artifacts(setting: str | None, storage_url: str) -> str | None:
    """``setting``, else ``$LRSEARCH_ARTIFACTS``, else :func:`default_location`."""
    return setting or settings.env_text(ENV_VAR) or default_location(storage_url)


def _source(setting: str | None) -> str:
    """How messages name where the artifact location came from."""
    return (
        "--artifacts"
        if setting
        else f"${ENV_VAR}"
        if settings.env_text(ENV_VAR)
        else "the default"
    )


def open_artifact_store(location: str, source: str = "--artifacts") -> Any:
    """An Optuna artifact store: ``s3://bucket/prefix`` (boto3) or a local folder (created).

    Raises:
        ConfigError: an S3 location without a bucket, or a folder that cannot be created.
    """
    if location.startswith("s3://"):
        from optuna.artifacts import Boto3ArtifactStore

        bucket, _, prefix = location[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(
                f"{source} = {location!r} names no bucket; give s3://bucket or s3://bucket/prefix"
            )
        store = Boto3ArtifactStore(bucket)
        return _PrefixedStore(store, prefix.strip("/")) if prefix.strip("/") else store
    from optuna.artifacts import FileSystemArtifactStore

    folder = Path(location).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{source} = {location!r}: cannot create the folder ({exc.strerror}); give a "
            "writable folder, or 'none' to turn pictures off"
        ) from None
    return FileSystemArtifactStore(base_path=folder)


class _PrefixedStore:
    """An artifact store that keeps every artifact under ``prefix/`` of another store."""

    def __init__(self, inner: Any, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix

    def open_reader(self, artifact_id: str) -> Any:
        return self.inner.open_reader(f"{self.prefix}/{artifact_id}")

    def write(self, artifact_id: str, content_body: Any) -> None:
        self.inner.write(f"{self.prefix}/{artifact_id}", content_body)

    def remove(self, artifact_id: str) -> None:
        self.inner.remove(f"{self.prefix}/{artifact_id}")


def artifact_store_for(setting: str | None, storage_url: str) -> Any | None:
    """The store for ``setting``/``$LRSEARCH_ARTIFACTS``/the default; warns once if none.

    ``none`` turns artifacts off without a warning.
    """
    location = resolve_artifacts(setting, storage_url)
    if location is not None and location.lower() == OFF:
        return None
    if location is None:
        _warn_once("none", NO_STORE_WARNING)
        return None
    return open_artifact_store(location, _source(setting))


def recorder_for(setting: str | None, storage_url: str, config: Any) -> ArtifactRecorder | None:
    """The artifact recorder of a run (``None``, warned once, without a store)."""
    store = artifact_store_for(setting, storage_url)
    if store is None:
        return None
    return ArtifactRecorder(
        store,
        epochs=config.training.epochs,
        metric=config.study.metric,
        warn=lambda message: print(message, file=sys.stderr, flush=True),
    )


def put_study_file(store: Any, study: optuna.Study, filename: str, data: bytes) -> None:
    """Stores ``data`` as the study's artifact ``filename``, replacing its earlier content (one
    current file, not one per update)."""
    from optuna.artifacts import get_all_artifact_meta, upload_artifact

    existing = [m for m in get_all_artifact_meta(study) if m.filename == filename]
    if existing:
        store.write(existing[0].artifact_id, io.BytesIO(data))
        return
    with tempfile.TemporaryDirectory(prefix="lrsearch-artifacts-") as tmp:
        path = Path(tmp) / filename
        path.write_bytes(data)
        upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)


def upload_lr_range(setting: str | None, handle: StudyHandle, found: Any) -> bool:
    """Draws a range test (:class:`lrsearch.rangetest.LRRange`) as the study's artifact
    :data:`LR_RANGE`; False when there is no artifact store (``setting`` resolved as
    ``--artifacts``)."""
    from lrsearch.plots import plot_lr_range

    store = artifact_store_for(setting, handle.url)
    if store is None:
        return False
    title = lr_range_title(handle.name, found)
    with tempfile.TemporaryDirectory(prefix="lrsearch-artifacts-") as tmp:
        path = plot_lr_range(found, title=title, path=Path(tmp) / LR_RANGE)
        put_study_file(store, handle.optuna, LR_RANGE, path.read_bytes())
    return True


def lr_range_title(study_name: str, found: Any) -> str:
    return (
        f"{study_name}: learning-rate range test, {len(found.curves)} seed(s) x {found.steps} "
        f"steps; search learning_rate in [{found.low:.3g}, {found.high:.3g}]"
    )


def study_note(study: optuna.Study, metric: str) -> str:
    """The study's markdown note: best trial, best value per family, how to export."""
    from lrsearch.study import StudyHandle

    handle = StudyHandle(study, cached=True)  # in the worker: its Optuna cache is warm
    name = handle.name
    lines = [f"## {name}: best {metric} per schedule family", ""]
    best = handle.best()
    if best is not None:
        sched = best.schedule or {}
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in (sched.get("params") or {}).items()
        )
        lines += [
            f"**Best trial: #{best.number}**, {metric} = {best.value:.4f}, "
            f"family `{sched.get('family')}` ({params})",
            "",
        ]
    else:
        lines += ["No complete trial yet.", ""]
    plan = handle.halving_plan()
    if plan is None:
        lines += [f"| family | best {metric} | trial | trials |", "|---|---|---|---|"]
        for row in handle.family_stats():
            value = f"{row.best:.4f}" if row.best is not None else "-"
            number = f"#{row.best_trial}" if row.best_trial is not None else "-"
            lines.append(f"| {row.family} | {value} | {number} | {row.trials} |")
    else:  # each family at the highest rung it reached: a 1-epoch value ranks apart
        lines += [f"| family | best {metric} | trial | at rung (epochs) |", "|---|---|---|---|"]
        for b in plan.family_bests():
            lines.append(f"| {b.family} | {b.value:.4f} | #{b.number} | {b.rung} ({b.epochs}) |")
    lr_range = handle.record.lr_range
    if lr_range:
        lines += [
            "",
            f"`learning_rate` is searched in [{lr_range['low']:.3g}, {lr_range['high']:.3g}], "
            "the range a learning-rate range test suggested (lowest smoothed loss at lr "
            + ", ".join(f"{v:.3g}" for v in lr_range.get("minima", []))
            + f"; `{LR_RANGE}` shows the test).",
        ]
    lines += halving_lines(plan, metric)
    lines += confirm_lines(handle, metric)
    lines += [
        "",
        "Each trial has `lr_curve.png`, `learning_curve.png` and `history.csv` as artifacts; "
        f"the study has `{STUDY_FIGURE}` (the best trials' lr curves by family).",
        "",
        "Take the winner home:",
        "",
        "```",
        f"lrsearch export {name}                    # absolute schedule config (JSON)",
        f"lrsearch export {name} --format python    # a Keras snippet",
        f"lrsearch retrain {name} --save model.keras",
        "```",
    ]
    return "\n".join(lines)


def halving_lines(plan: Plan | None, metric: str) -> list[str]:
    """The note's rungs and family race of a ``strategy = "halving"`` study's ``plan`` (none
    without)."""
    if plan is None:
        return []
    lines = [
        "",
        "### Rungs (budget-aware halving: each rung trains whole schedules in its epochs)",
        "",
        f"| rung | epochs | trials | best {metric} | trial |",
        "|---|---|---|---|---|",
    ]
    for r in plan.stats():
        value = f"{r.best:.4f}" if r.best is not None else "-"
        number = f"#{r.best_number}" if r.best_number is not None else "-"
        lines.append(f"| {r.rung} | {r.epochs} | {sum(r.counts.values())} | {value} | {number} |")
    if plan.race is not None:
        lines += ["", *(f"- {line.strip()}" for line in plan.race.lines(plan.maximize))]
    return lines


def confirm_lines(handle: StudyHandle, metric: str) -> list[str]:
    """The note's ``lrsearch confirm`` section, from the stored replicates (none without)."""
    if not handle.counts(replicates=True):
        return []
    from lrsearch.confirm import params_text, summarize

    result = summarize(handle)
    lines = [
        "",
        f"### Confirmed: {metric} over fresh seeds (lrsearch confirm)",
        "",
        "Per configuration: its trial's value and its replicates' (same schedule, new seed).",
        "",
        "| rank | trial | family | n | mean ± sd | min..max | params |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in result.configs:
        sd = f"{c.sd:.4f}" if c.sd is not None else "-"
        lines.append(
            f"| {c.rank} | #{c.source} | {c.family} | {c.n} | {c.mean:.4f} ± {sd} | "
            f"{min(c.values):.4f}..{max(c.values):.4f} | {params_text(c.params)} |"
        )
    return [*lines, "", f"**Verdict:** {result.verdict.text}"]


def _title(schedule: dict[str, Any], number: int) -> str:
    from lrsearch.plots import describe_params

    params = describe_params(schedule.get("params") or {}, skip=("monitor", "mode"))
    return f"trial #{number}  {schedule.get('family')}: {params}"


def _built(schedule: dict[str, Any]) -> tuple[Any, int]:
    """A stored schedule built, and its total steps."""
    from lrsearch.schedules import build_schedule

    total = int(schedule["total_steps"])
    return build_schedule(schedule["family"], total_steps=total, **schedule["params"]), total


def _planned(schedule: dict[str, Any]) -> Any:
    from lrsearch.plots import schedule_values

    built, total = _built(schedule)
    return schedule_values(built, total)


def planned_momentum(schedule: dict[str, Any]) -> Any:
    """The momentum (or beta_1) at every step of a schedule that cycles it, else ``None``."""
    from lrsearch.plots import schedule_values

    built, total = _built(schedule)
    return schedule_values(built.momentum, total) if built.cycles_momentum else None


def write_history_csv(history: dict[str, list[Any]], path: Path) -> Path:
    """The per-epoch history as CSV (``epoch`` and ``lr`` first; empty cells for NaN)."""
    keys: list[str] = [k for k in ("epoch", "lr") if k in history]
    keys += sorted(k for k in history if k not in ("epoch", "lr"))
    rows = max((len(v) for v in history.values()), default=0)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        for i in range(rows):
            cells = []
            for k in keys:
                v = history[k][i] if i < len(history[k]) else None
                ok = v is not None and not (isinstance(v, float) and not math.isfinite(v))
                cells.append("" if not ok else v)
            writer.writerow(cells)
    return path


def top_schedules(
    handle: StudyHandle, *, limit: int = TOP_TRIALS
) -> list[tuple[str, dict[str, Any]]]:
    """``("#number value", schedule)`` of the best complete trials, best first."""
    out = []
    for trial in handle.top(limit):
        schedule = TrialRecord.of(trial).schedule
        if schedule:
            out.append((f"#{trial.number} {trial.value:.3f}", schedule))
    return out


def steps_per_epoch(schedule: dict[str, Any], epochs: int) -> int:
    """Steps per epoch of a stored schedule (its ``total_steps`` over the study's epochs)."""
    return max(1, int(schedule.get("total_steps", 1)) // epochs)


def top_curves_title(study_name: str, count: int, metric: str) -> str:
    """The title of the top-trials lr figure (study artifact and compare report)."""
    return (
        f"{study_name}: lr curves of the {count} best trials by {metric}, "
        "coloured by family (thick: best)"
    )


def lr_curves(
    schedules: list[tuple[str, dict[str, Any]]], *, epochs: int
) -> list[tuple[str, str, Any, int]]:
    """``(label, family, planned lr per step, steps per epoch)`` for :func:`plot_lr_overlay`."""
    curves = []
    for label, schedule in schedules:
        curves.append(
            (label, schedule["family"], _planned(schedule), steps_per_epoch(schedule, epochs))
        )
    return curves


def draw_trial_pictures(
    planned: Any,
    history: dict[str, list[Any]],
    *,
    title: str,
    steps_per_epoch: int,
    metric: str,
    momentum: Any = None,
) -> dict[str, bytes]:
    """``lr_curve.png`` and ``learning_curve.png`` of a trial, as PNG bytes by file name."""
    from lrsearch.plots import plot_learning_curve, plot_trial_lr

    with tempfile.TemporaryDirectory(prefix="lrsearch-artifacts-") as tmp:
        folder = Path(tmp)
        pictures = [
            plot_trial_lr(
                planned,
                steps_per_epoch=steps_per_epoch,
                applied=history.get("lr", []),
                title=title,
                path=folder / LR_CURVE,
                momentum=momentum,
            ),
            plot_learning_curve(history, metric=metric, title=title, path=folder / LEARNING_CURVE),
        ]
        return {path.name: path.read_bytes() for path in pictures}


def draw_study_figure(curves: list[tuple[str, str, Any, int]], *, title: str) -> bytes:
    """``top_lr_curves.png`` as PNG bytes."""
    from lrsearch.plots import plot_lr_overlay

    with tempfile.TemporaryDirectory(prefix="lrsearch-artifacts-") as tmp:
        return plot_lr_overlay(curves, title=title, path=Path(tmp) / STUDY_FIGURE).read_bytes()


class ArtifactRecorder:
    """Uploads each trial's pictures and history, and keeps the study note and figure current.

    :meth:`upload_trial` runs inside the objective, before the trial is finished (Optuna refuses
    attributes on a finished trial): it writes ``history.csv`` and attaches the two pictures as
    1x1 placeholders, then a background thread has them drawn (in a drawing process, which does
    not compete for the GIL with the training loop) and overwrites the placeholders while the
    next trial trains. :meth:`trial_finished` runs in the study's callback and queues the
    study-level work (note, top-trials figure) on the same thread; updates asked for while one is
    queued are merged into it, and the figure is redrawn only when the best trials change.
    :meth:`flush` waits for all of it (the runner calls it at the end of a run). A worker
    killed in between leaves its last trial with placeholder pictures.

    Args:
        store: An Optuna artifact store.
        epochs: Epochs per trial (for the epoch axis).
        metric: The study's metric.
        warn: Called once with the first failure's message.
        background: Draw and write in a background thread while the next trial trains.
        processes: Draw in a separate process (:mod:`lrsearch._drawing`), so drawing does not
            hold the GIL the training loop needs; falls back to the thread if it cannot run.
    """

    def __init__(
        self,
        store: Any,
        *,
        epochs: int,
        metric: str,
        warn: Callable[[str], None] | None = None,
        background: bool = True,
        processes: bool = True,
    ) -> None:
        self.store = store
        self.epochs = epochs
        self.metric = metric
        self.background = background
        self.processes = processes
        self._drawing: DrawingProcess | None = None
        self._warn = warn
        self._lock = threading.Lock()
        self._queued = False
        self._executor: ThreadPoolExecutor | None = None
        self._drawn: list[str] | None = None  # the top trials' labels of the current figure
        self._figure: tuple[list[str], list[Any]] | None = None  # (labels, curves) to draw next

    def _failed(self, what: str, exc: BaseException) -> None:
        message = (
            f"artifact store failed ({what}: {type(exc).__name__}: {exc}); "
            "trials go on without artifacts"
        )
        if self._warn is None:
            _warn_once("failed", message)
        elif _first_time("failed"):
            self._warn(f"warning: {message}")

    def upload_trial(self, trial: optuna.Trial, history: dict[str, list[Any]]) -> None:
        """Uploads ``lr_curve.png``, ``learning_curve.png`` and ``history.csv`` of ``trial``."""
        try:
            self._upload_trial(trial, history)
        except Exception as exc:  # noqa: BLE001 - artifacts never fail a trial
            self._failed(f"trial #{trial.number}", exc)

    def _upload_trial(self, trial: optuna.Trial, history: dict[str, list[Any]]) -> None:
        """Attaches the three artifacts now (Optuna only accepts them on a running trial), with
        placeholder pictures that the background thread overwrites once drawn."""
        from optuna.artifacts import upload_artifact

        schedule = TrialRecord.of(trial).schedule or {}
        planned = _planned(schedule)
        ids: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="lrsearch-artifacts-") as tmp:
            folder = Path(tmp)
            write_history_csv(history, folder / HISTORY)
            (folder / LR_CURVE).write_bytes(PLACEHOLDER_PNG)
            (folder / LEARNING_CURVE).write_bytes(PLACEHOLDER_PNG)
            for name in (HISTORY, LR_CURVE, LEARNING_CURVE):
                ids[name] = upload_artifact(
                    artifact_store=self.store, file_path=str(folder / name), study_or_trial=trial
                )
        job = partial(
            self._draw_trial,
            ids,
            planned,
            {k: list(v) for k, v in history.items()},
            _title(schedule, trial.number),
            steps_per_epoch(schedule, self.epochs),
            trial.number,
            planned_momentum(schedule),
        )
        self._run(job)

    def _draw_trial(
        self,
        ids: dict[str, str],
        planned: Any,
        history: dict[str, list[Any]],
        title: str,
        steps_per_epoch: int,
        number: int,
        momentum: Any,
    ) -> None:
        try:
            pictures = self._draw(
                partial(
                    draw_trial_pictures,
                    planned,
                    history,
                    title=title,
                    steps_per_epoch=steps_per_epoch,
                    metric=self.metric,
                    momentum=momentum,
                )
            )
            for name, data in pictures.items():
                self.store.write(ids[name], io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - artifacts never fail a trial
            self._failed(f"trial #{number} pictures", exc)

    def _draw(self, job: Callable[[], Any]) -> Any:
        """Runs a drawing ``job`` in the drawing process (no GIL shared with the training), or
        here when there is none or it broke."""
        if self.processes and self.background:
            from lrsearch._drawing import DrawingProcess, DrawingProcessError

            with self._lock:
                if self._drawing is None:
                    self._drawing = DrawingProcess()
                drawing = self._drawing
            try:
                return drawing.run(job)
            except DrawingProcessError:
                self.processes = False  # draw here from now on
        return job()

    def _run(self, job: Callable[[], None]) -> None:
        """Runs ``job`` in the background thread (in order), or now without one."""
        if not self.background:
            job()
            return
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="lrsearch-artifacts")
            self._executor.submit(job)

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Rewrites the study note and, if the best trials changed, the top-trials figure.

        The lr curves are computed here (Keras, a few ms); drawing and writing go to the
        background thread.
        """
        try:
            from lrsearch.study import StudyHandle

            top = top_schedules(StudyHandle(study, cached=True))
            labels = [label for label, _ in top]
            curves = lr_curves(top, epochs=self.epochs) if top and labels != self._drawn else None
        except Exception as exc:  # noqa: BLE001 - artifacts never fail a study
            self._failed("study figure", exc)
            curves, labels = None, []
        figure = None if curves is None else (labels, curves)
        if not self.background:
            self._update_study(study, figure)
            return
        with self._lock:
            if figure is not None:
                self._figure = figure
            if self._queued:
                return  # the queued update writes this trial's note and curves too
            self._queued = True
        self._run(partial(self._queued_update, study))

    def wait(self) -> None:
        """Waits until everything queued so far is drawn and written (the drawing process
        stays for the next trials)."""
        with self._lock:
            executor = self._executor
        if executor is not None:
            executor.submit(lambda: None).result()  # one thread, in order: all before it is done

    def flush(self) -> None:
        """Waits until everything queued is drawn and written; stops the drawing process."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        with self._lock:
            drawing, self._drawing = self._drawing, None
        if drawing is not None:
            drawing.close()

    def _queued_update(self, study: optuna.Study) -> None:
        with self._lock:
            self._queued = False
            figure, self._figure = self._figure, None
        self._update_study(study, figure)

    def _update_study(
        self, study: optuna.Study, figure: tuple[list[str], list[Any]] | None
    ) -> None:
        """Writes the note and, given ``(labels, curves)``, the figure (then marked drawn, so a
        failed upload is tried again after the next trial)."""
        try:
            from optuna_dashboard import save_note

            save_note(study, study_note(study, self.metric))
            if figure is not None:
                labels, curves = figure
                self._upload_study_figure(study, curves)
                self._drawn = labels
        except Exception as exc:  # noqa: BLE001 - artifacts never fail a study
            self._failed("study note", exc)

    def _upload_study_figure(
        self, study: optuna.Study, curves: list[tuple[str, str, Any, int]]
    ) -> None:
        title = top_curves_title(study.study_name, len(curves), self.metric)
        data = self._draw(partial(draw_study_figure, curves, title=title))
        put_study_file(self.store, study, STUDY_FIGURE, data)
