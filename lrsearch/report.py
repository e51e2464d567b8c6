"""``lrsearch compare``: which schedule family won, by how much, and what mattered within each.

:func:`compare` reads a study back and summarizes it per family: trials, complete / pruned /
diverged / failed, best and median value, the best trial and its schedule, and parameter
importance *within* the family. Global importance over a study with conditional parameters is
distorted (each ``<family>.<param>`` exists only in that family's trials, and the family choice
dominates), so each family's importance is computed by fANOVA over that family's complete trials
alone. :func:`write_html` renders a self-contained HTML page (figures embedded as base64 PNG);
:func:`write_folder` writes the same figures as PNG files with CSV tables.

Example:
    >>> from lrsearch.report import compare, format_text
    >>> from lrsearch.study import StudyHandle
    >>> print(format_text(compare(StudyHandle.open("digits-mlp"))))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import csv
import html
import math
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrsearch._optuna import quiet_logs
from lrsearch.exceptions import LRSearchError
from lrsearch.queries import FamilyStats
from lrsearch.records import TrialRecord

if TYPE_CHECKING:
    from lrsearch.halving import FamilyRungBest
    from lrsearch.study import StudyHandle

__all__ = [
    "MIN_TRIALS_FOR_IMPORTANCE",
    "Comparison",
    "FamilyRow",
    "compare",
    "family_importance",
    "format_text",
    "render_html",
    "write_folder",
    "write_html",
]

MIN_TRIALS_FOR_IMPORTANCE = 4
IMPORTANCE = "Parameter importance within each family"


@dataclass
class FamilyRow(FamilyStats):
    """One schedule family's trials in a study: its statistics (:class:`FamilyStats`), the best
    trial's schedule, and parameter importance within the family."""

    best_schedule: dict[str, Any] = field(default_factory=dict)
    importance: dict[str, float] = field(default_factory=dict)
    importance_note: str | None = None
    epochs: int | None = None
    """In a halving study, the epochs of the highest rung the family reached: its statistics
    are that rung's trials'."""


@dataclass
class Comparison:
    """A study summarized per family, best family first."""

    study: str
    metric: str
    direction: str
    epochs: int | None
    families: list[FamilyRow]
    history: list[tuple[int, str, float, bool]]  # (number, family, value, complete)
    best_trial: int | None
    best_value: float | None
    best_family: str | None
    top: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # for the lr figure

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def counts(self) -> dict[str, int]:
        keys = ("trials", "complete", "pruned", "diverged", "failed", "running")
        return {k: sum(getattr(r, k) for r in self.families) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for row in out["families"]:
            row.pop("values")
        out.pop("history")
        out.pop("top")
        return out


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def family_importance(
    trials: Sequence[Any], family: str, *, direction: str, seed: int = 0
) -> tuple[dict[str, float], str | None]:
    """Importance of ``family``'s parameters over its complete trials (fANOVA, normalized).

    Args:
        trials: The study's trials (any family, any state).
        family: The family whose complete trials are used.
        direction: ``"maximize"`` or ``"minimize"``.
        seed: The fANOVA forest's seed (same seed, same numbers).

    Returns:
        ``({parameter: importance}, None)`` with parameter names without the family prefix,
        largest first; or ``({}, reason)`` when there is too little to say anything.
    """
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    done = [
        t
        for t in trials
        if t.state.name == "COMPLETE" and _finite(t.value) and t.params.get("family") == family
    ]
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, f"needs {MIN_TRIALS_FOR_IMPORTANCE} complete trials, has {len(done)}"
    names = sorted(set.intersection(*(set(t.params) for t in done)) - {"family"})
    varied = [n for n in names if len({repr(t.params[n]) for t in done}) > 1]
    if not varied:
        return {}, "no parameter varies across its complete trials"
    if len({t.value for t in done}) == 1:
        return {}, f"all {len(done)} complete trials have the same value"
    with quiet_logs():
        sub = optuna.create_study(direction="maximize" if direction == "maximize" else "minimize")
    sub.add_trials(done)
    try:
        raw = get_param_importances(
            sub, evaluator=FanovaImportanceEvaluator(seed=seed), params=varied
        )
    except (ValueError, RuntimeError) as exc:  # e.g. a range changed between workers
        return {}, f"importance not computable: {exc}"
    prefix = f"{family}."
    return {k.removeprefix(prefix): float(v) for k, v in raw.items()}, None


def compare(handle: StudyHandle) -> Comparison:
    """Summarizes a study per schedule family (see the module docstring).

    Raises:
        LRSearchError: The study has no trial with a schedule family.
    """
    from lrsearch.artifacts import top_schedules

    rows = handle.rows()
    complete = handle.complete_trials()
    plan = handle.halving_plan()
    reached: dict[str, FamilyRungBest] = {}
    if plan is not None:  # each family at the highest rung it reached, as status shows it
        reached = {b.family: b for b in plan.family_bests()}
        rung_of = {e.number: e.rung for e in plan.entries}

        def at_its_rung(number: int, family: str | None) -> bool:
            top = reached.get(family or "")
            return top is None or rung_of.get(number, 0) == top.rung

        rows = [r for r in rows if at_its_rung(r.number, r.family)]
        complete = [t for t in complete if at_its_rung(t.number, t.params.get("family"))]
    stats = handle.family_stats(rows)
    stats.sort(key=lambda s: -reached[s.family].rung if s.family in reached else 0)
    if not stats:
        raise LRSearchError(
            f"Study {handle.name!r} has no trial with a schedule family yet: "
            "run `lrsearch start` first."
        )
    config = handle.record.config or {}
    epochs = (config.get("training") or {}).get("epochs")
    history = []
    for r in rows:
        shown = r.value if r.state == "COMPLETE" else r.last_intermediate
        ok = r.state in ("COMPLETE", "PRUNED") and not r.diverged
        if r.family is not None and ok and shown is not None and math.isfinite(shown):
            history.append((r.number, r.family, float(shown), r.state == "COMPLETE"))
    history.sort()
    families = []
    for s in stats:
        row = FamilyRow(**vars(s))
        row.epochs = reached[s.family].epochs if s.family in reached else None
        row.importance, row.importance_note = family_importance(
            complete, s.family, direction=handle.direction
        )
        families.append(row)
    top = top_schedules(handle)
    for row in families:
        if row.best_trial is not None:
            row.best_schedule = TrialRecord.of(handle.trial(row.best_trial)).schedule or {}
    winner = families[0] if families[0].best is not None else None
    return Comparison(
        study=handle.name,
        metric=handle.record.metric or "value",
        direction=handle.direction,
        epochs=int(epochs) if epochs else None,
        families=families,
        history=history,
        best_trial=winner.best_trial if winner else None,
        best_value=winner.best if winner else None,
        best_family=winner.family if winner else None,
        top=top,
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _params(schedule: dict[str, Any]) -> str:
    from lrsearch.plots import describe_params

    return describe_params(schedule.get("params") or {}, skip=("monitor", "mode"))


def _summary(c: Comparison) -> str:
    n = c.counts()
    return (
        f"{n['trials']} trials: {n['complete']} complete, {n['pruned']} pruned, "
        f"{n['diverged']} diverged, {n['failed']} failed"
        + (f", {n['running']} running" if n["running"] else "")
    )


def format_text(c: Comparison) -> str:
    """The comparison as a terminal table plus one importance line per family."""
    lines = [f"study {c.study!r}: {c.metric} ({c.direction}), {_summary(c)}"]
    header = (
        f"{'family':<16} {'trials':>6} {'compl.':>6} {'pruned':>6} {'diverg':>6} "
        f"{'failed':>6} {'best':>8} {'median':>8}  best trial"
    )
    if any(r.epochs is not None for r in c.families):
        lines += [
            "halving: each family at the highest rung it reached, these counts its trials there "
            "(lrsearch status shows every rung)"
        ]
    lines += ["", header, "-" * len(header)]
    for r in c.families:
        trial = f"#{r.best_trial}" if r.best_trial is not None else "-"
        if r.epochs is not None:
            trial += f" ({r.epochs} epochs)"
        lines.append(
            f"{r.family:<16} {r.trials:>6} {r.complete:>6} {r.pruned:>6} {r.diverged:>6} "
            f"{r.failed:>6} {_num(r.best):>8} {_num(r.median):>8}  {trial}"
        )
    lines += ["", "parameter importance within each family (fANOVA over its complete trials):"]
    for r in c.families:
        if r.importance:
            text = ", ".join(f"{k} {v:.2f}" for k, v in r.importance.items())
        else:
            text = f"- ({r.importance_note})"
        lines.append(f"  {r.family:<16} {text}")
    if c.best_trial is not None:
        lines += [
            "",
            f"best: trial #{c.best_trial} ({c.best_family}), {c.metric}={_num(c.best_value)}",
            f"  lrsearch export {shlex.quote(c.study)} --format python",
        ]
    return "\n".join(lines)


def _figures(c: Comparison, folder: Path) -> list[tuple[Path, str]]:
    """Writes the report's figures into ``folder``; returns ``(path, heading)`` in page order."""
    from lrsearch.artifacts import STUDY_FIGURE, lr_curves, top_curves_title
    from lrsearch.plots import plot_family_values, plot_history, plot_importances, plot_lr_overlay

    written: list[tuple[Path, str]] = []
    if c.history:
        path = plot_history(
            c.history,
            metric=c.metric,
            maximize=c.maximize,
            title=(
                f"{c.study}: {c.metric} per trial (hollow: pruned, its last reported value), "
                "best so far in black"
            ),
            path=folder / "history.png",
        )
        written.append((path, "Optimization history"))
    values = {r.family: r.values for r in c.families}
    if any(values.values()):
        path = plot_family_values(
            values,
            metric=c.metric,
            title=f"{c.study}: {c.metric} of each family's complete trials (best family on top)",
            path=folder / "family_values.png",
        )
        written.append((path, "Values per family"))
    if c.epochs and c.top:
        curves = lr_curves(c.top, epochs=c.epochs)
        path = plot_lr_overlay(
            curves,
            title=top_curves_title(c.study, len(curves), c.metric),
            path=folder / STUDY_FIGURE,
        )
        written.append((path, "Learning-rate curves of the best trials"))
    importances = {r.family: r.importance for r in c.families if r.importance}
    if importances:
        path = plot_importances(
            importances,
            title=f"{c.study}: importance of each family's parameters (fANOVA within the family)",
            path=folder / "importance.png",
        )
        written.append((path, IMPORTANCE))
    return written


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
tr.best td { font-weight: 600; background: #f3f8ee; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0.1rem 0.3rem; }
.muted { color: #666; font-size: 0.85rem; }
"""


def _family_table(c: Comparison) -> str:
    head = (
        "<tr><th>family</th><th>trials</th><th>complete</th><th>pruned</th><th>diverged</th>"
        f"<th>failed</th><th>best {html.escape(c.metric)}</th><th>median</th>"
        "<th>best trial</th><th>its schedule (absolute)</th></tr>"
    )
    body = []
    for r in c.families:
        cls = ' class="best"' if r.family == c.best_family else ""
        trial = f"#{r.best_trial}" if r.best_trial is not None else "-"
        if r.epochs is not None:
            trial += f" ({r.epochs} epochs)"
        body.append(
            f"<tr{cls}><td>{html.escape(r.family)}</td><td>{r.trials}</td><td>{r.complete}</td>"
            f"<td>{r.pruned}</td><td>{r.diverged}</td><td>{r.failed}</td>"
            f"<td>{_num(r.best)}</td><td>{_num(r.median)}</td><td>{trial}</td>"
            f'<td class="text">{html.escape(_params(r.best_schedule))}</td></tr>'
        )
    return f"<table>{head}{''.join(body)}</table>"


def _importance_table(c: Comparison) -> str:
    rows = []
    for r in c.families:
        if r.importance:
            text = ", ".join(f"{html.escape(k)} {v:.2f}" for k, v in r.importance.items())
        else:
            text = f'<span class="muted">{html.escape(r.importance_note or "-")}</span>'
        rows.append(
            f'<tr><td>{html.escape(r.family)}</td><td>{r.complete}</td><td class="text">{text}'
            "</td></tr>"
        )
    head = "<tr><th>family</th><th>complete trials</th><th>importance (sums to 1)</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def render_html(c: Comparison, figures: Sequence[tuple[Path, str]]) -> str:
    """The report as one HTML page with the figures embedded (no other file needed)."""
    from lrsearch import __version__

    images: dict[str, str] = {}  # heading: <img>, in page order
    for path, heading in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        images[heading] = f'<img alt="{html.escape(heading)}" src="data:image/png;base64,{data}">'
    name, command_name = html.escape(c.study), html.escape(shlex.quote(c.study))
    if c.best_trial is not None:
        best = (
            f"<p><strong>Best: trial #{c.best_trial}, family {html.escape(c.best_family or '')}"
            f"</strong>, {html.escape(c.metric)} = {_num(c.best_value)}. Take it home with "
            f"<code>lrsearch export {command_name} --format python</code> or "
            f"<code>lrsearch retrain {command_name} --save model.keras</code>.</p>"
        )
    else:
        best = "<p>No complete trial yet.</p>"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>lrsearch compare: {name}</title><style>{_CSS}</style></head><body>",
        f"<h1>{name}: which learning-rate schedule trains best</h1>",
        f"<p>{html.escape(c.metric)} ({c.direction}); {html.escape(_summary(c))}. "
        "Pruned trials were stopped early by the pruner; diverged ones hit a NaN/inf loss.</p>",
        best,
        "<h2>Families</h2>",
        _family_table(c),
        '<p class="muted">Best and median are over each family\'s complete trials'
        + (
            " at the highest rung it reached (budget-aware halving: a family's best trial "
            "shows that rung's epochs)."
            if any(r.epochs is not None for r in c.families)
            else "."
        )
        + "</p>",
    ]
    for heading, image in images.items():
        if heading != IMPORTANCE:
            parts += [f"<h2>{heading}</h2>", image]
    parts += [
        f"<h2>{IMPORTANCE}</h2>",
        '<p class="muted">fANOVA over the family\'s own complete trials (global importance is '
        "distorted by conditional parameters). Parameters are in search units: "
        "<code>learning_rate</code> is the peak lr, warmups are in epochs, lengths are "
        "fractions of the budget. With few trials these numbers are rough; families with fewer "
        f"than {MIN_TRIALS_FOR_IMPORTANCE} complete trials get none.</p>",
        _importance_table(c),
    ]
    if IMPORTANCE in images:
        parts.append(images[IMPORTANCE])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts += [
        f'<p class="muted">lrsearch {__version__}, {stamp}.</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(c: Comparison, path: str | Path) -> Path:
    """Writes the self-contained HTML report to ``path`` (creating its folder)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lrsearch-report-") as tmp:
        text = render_html(c, _figures(c, Path(tmp)))
    out.write_text(text, encoding="utf-8")
    return out


def write_folder(c: Comparison, folder: str | Path) -> list[Path]:
    """Writes the figures as PNG files plus ``families.csv`` and ``importance.csv``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = [path for path, _ in _figures(c, out)]
    families = out / "families.csv"
    with families.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "family",
                "trials",
                "complete",
                "pruned",
                "diverged",
                "failed",
                "best",
                "median",
                "best_trial",
                "best_schedule",
            ]
        )
        for r in c.families:
            writer.writerow(
                [
                    r.family,
                    r.trials,
                    r.complete,
                    r.pruned,
                    r.diverged,
                    r.failed,
                    "" if r.best is None else r.best,
                    "" if r.median is None else r.median,
                    "" if r.best_trial is None else r.best_trial,
                    _params(r.best_schedule),
                ]
            )
    importance = out / "importance.csv"
    with importance.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["family", "parameter", "importance", "note"])
        for r in c.families:
            if r.importance:
                for k, v in r.importance.items():
                    writer.writerow([r.family, k, v, ""])
            else:
                writer.writerow([r.family, "", "", r.importance_note or ""])
    return [*written, families, importance]
