"""Pictures: a schedule's learning rate over the steps of a training.

matplotlib is imported inside the functions with the non-interactive Agg backend, so importing this
module costs nothing and works without a display.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "describe_params",
    "family_colours",
    "plot_family_values",
    "plot_history",
    "plot_importances",
    "plot_learning_curve",
    "plot_lr_overlay",
    "plot_lr_range",
    "plot_schedule",
    "plot_trial_lr",
    "curve_steps",
    "schedule_values",
]


MAX_POINTS = 4000
"""At most this many steps are evaluated and drawn for a curve: a picture shows no more."""


def curve_steps(total_steps: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Every step ``0 .. total_steps - 1``, or ``max_points`` of them evenly spread (the first
    and the last included) when there are more.

    Example:
        >>> curve_steps(5).tolist(), curve_steps(10**12, max_points=3).tolist()
        ([0, 1, 2, 3, 4], [0, 499999999999, 999999999999])
    """
    if total_steps <= max_points:
        return np.arange(total_steps, dtype="int64")
    spread = np.linspace(0, total_steps - 1, max_points, dtype="float64")
    return np.unique(np.round(spread).astype("int64"))


def schedule_values(
    schedule: Any, total_steps: int, *, beyond: int = 0, steps: np.ndarray | None = None
) -> np.ndarray:
    """Evaluates a Keras schedule at ``steps`` (default ``0 .. total_steps + beyond - 1``) in
    one call."""
    from lrsearch._imports import import_keras

    keras = import_keras()
    if steps is None:
        steps = np.arange(total_steps + beyond, dtype="int64")
    return np.asarray(keras.ops.convert_to_numpy(schedule(steps)), dtype="float64")


def describe_params(params: Mapping[str, Any], *, skip: Sequence[str] = ()) -> str:
    """``"learning_rate=0.1, pct_start=0.3"`` with floats shortened for titles and log lines."""
    parts = []
    for name, value in params.items():
        if name in skip:
            continue
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{name}={text}")
    return ", ".join(parts)


# Fixed layouts of the two per-trial pictures (drawn for every trial: no tight_layout pass).
TRIAL_LR_MARGINS = {"left": 0.1, "right": 0.97, "bottom": 0.11, "top": 0.88}
TRIAL_LR_MOMENTUM_MARGINS = {**TRIAL_LR_MARGINS, "right": 0.89}  # room for the momentum axis
LEARNING_CURVE_MARGINS = {
    "left": 0.065,
    "right": 0.935,
    "bottom": 0.11,
    "top": 0.86,
    "wspace": 0.42,
}


def _save(fig: Any, path: str | Path, margins: dict[str, float] | None = None) -> Path:
    """Lays the figure out and writes it (creating the folder); the caller closes it.

    ``margins`` (``subplots_adjust`` arguments) skip ``tight_layout``, which draws the figure once
    more to measure it: a third of the time of the per-trial pictures.
    """
    if margins is None:
        fig.tight_layout()
    else:
        fig.subplots_adjust(**margins)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _scale(factor: float) -> Any:
    def apply(x: Any) -> Any:
        return np.asarray(x) * factor

    return apply


def plot_schedule(
    values: np.ndarray,
    *,
    steps_per_epoch: int,
    title: str,
    path: str | Path,
    log_scale: bool = False,
    note: str | None = None,
    steps: np.ndarray | None = None,
    momentum: np.ndarray | None = None,
) -> Path:
    """Draws lr(t) against epochs (and steps on the top axis) and writes a PNG.

    Args:
        values: The learning rate at each step of ``steps``.
        steps: The steps of ``values`` (default ``0, 1, ...``).
        steps_per_epoch: Steps per epoch, for the epoch axis.
        title: The figure title (family and key parameters).
        path: Where to write the PNG.
        log_scale: Log-scale the learning-rate axis.
        note: A line of small text under the plot (e.g. what the curve leaves out).
        momentum: The momentum (or Adam's beta_1) at each step of ``steps``, drawn on a second
            axis, for a schedule that cycles it.

    Returns:
        The path written.
    """
    at = np.arange(len(values)) if steps is None else steps
    epochs = at / steps_per_epoch
    fig, ax = _subplots(figsize=(8, 4.5))
    try:
        ax.plot(epochs, values, color="tab:blue", linewidth=1.8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.set_title(textwrap.fill(title, 100), fontsize=9)
        ax.grid(True, alpha=0.3)
        if log_scale:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlim(0, max(epochs[-1], 1e-9) if len(epochs) else 1)
        _momentum_axis(ax, epochs, momentum)
        top = ax.secondary_xaxis(
            "top",
            functions=(_scale(steps_per_epoch), _scale(1 / steps_per_epoch)),
        )
        top.set_xlabel("optimizer step")
        if note:
            fig.text(0.01, 0.01, note, fontsize=8, color="0.35")
        fig.tight_layout(rect=(0, 0.03 if note else 0, 1, 1))
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        fig.clear()
    return out


def _momentum_axis(ax: Any, epochs: np.ndarray, momentum: np.ndarray | None) -> None:
    """Draws ``momentum`` (a cycled momentum or beta_1) against a second y axis on the right."""
    if momentum is None:
        return
    right = ax.twinx()
    right.plot(epochs, momentum, color="tab:orange", linewidth=1.2, linestyle="--")
    right.set_ylabel("momentum / beta_1 (dashed)", color="tab:orange")
    right.tick_params(axis="y", colors="tab:orange")
    low, high = float(np.min(momentum)), float(np.max(momentum))
    pad = max((high - low) * 0.1, 0.01)
    right.set_ylim(low - pad, high + pad)


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kw: Any) -> Any:
    """``(figure, axes)`` on matplotlib's object API with the Agg canvas: no pyplot, no global
    state, so figures can be drawn in a background thread while the main one trains."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kw)


def plot_trial_lr(
    planned: np.ndarray,
    *,
    steps_per_epoch: int,
    applied: Sequence[float | None],
    title: str,
    path: str | Path,
    momentum: np.ndarray | None = None,
) -> Path:
    """Draws a trial's planned lr(t) over every step and the lr applied at each epoch's start.

    The markers differ from the line where a plateau schedule cut the learning rate.

    Args:
        planned: The schedule's learning rate at each step of the whole budget.
        steps_per_epoch: Steps per epoch, for the epoch axis.
        applied: The learning rate applied at the first step of each epoch that ran.
        title: The figure title (family and key parameters).
        path: Where to write the PNG.
        momentum: The cycled momentum (or beta_1) at each step, on a second axis, or ``None``.

    Returns:
        The path written.
    """
    epochs = np.arange(len(planned)) / steps_per_epoch
    fig, ax = _subplots(figsize=(8, 4.5))
    try:
        ax.plot(epochs, planned, color="tab:blue", linewidth=1.8, label="planned lr(t)")
        xs = [i for i, v in enumerate(applied) if v is not None]
        ys = [v for v in applied if v is not None]
        if xs:
            ax.plot(xs, ys, "o", color="tab:red", markersize=5, label="applied at epoch start")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.set_title(textwrap.fill(title, 100), fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.set_xlim(0, max(epochs[-1], 1e-9) if len(epochs) else 1)
        ax.legend(loc="best", fontsize=8)
        _momentum_axis(ax, epochs, momentum)
        margins = TRIAL_LR_MARGINS if momentum is None else TRIAL_LR_MOMENTUM_MARGINS
        out = _save(fig, path, margins=margins)
    finally:
        fig.clear()
    return out


def plot_learning_curve(
    history: Mapping[str, Sequence[float | None]],
    *,
    metric: str,
    title: str,
    path: str | Path,
) -> Path:
    """Draws train/validation loss and the metric per epoch, the lr on a second axis.

    Args:
        history: Per-epoch lists (``epoch``, ``lr``, ``loss``, ``val_loss``, ...).
        metric: The study's metric; its train/validation pair is drawn next to the loss.
        title: The figure title.
        path: Where to write the PNG.

    Returns:
        The path written.
    """
    epochs = list(history.get("epoch", []))
    base = metric.removeprefix("val_")
    score = "accuracy" if base in ("loss", "accuracy") else base

    def series(key: str) -> list[float]:
        return [np.nan if v is None else float(v) for v in history.get(key, [])]

    fig, (ax_loss, ax_metric) = _subplots(1, 2, figsize=(11, 4.5))
    try:
        for ax, key, label in ((ax_loss, "loss", "loss"), (ax_metric, score, score)):
            for prefix, style, name in (("", "-", "train"), ("val_", "--", "validation")):
                values = series(prefix + key)
                if values:
                    ax.plot(epochs, values, style, marker="o", markersize=3, label=name)
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            lr_ax = ax.twinx()
            lr_ax.plot(epochs, series("lr"), ":", color="0.4", label="lr at epoch start")
            lr_ax.set_ylabel("learning rate", color="0.4")
            lr_ax.tick_params(axis="y", colors="0.4")
            lines = ax.get_legend_handles_labels()
            more = lr_ax.get_legend_handles_labels()
            ax.legend(lines[0] + more[0], lines[1] + more[1], loc="best", fontsize=8)
        fig.suptitle(textwrap.fill(title, 120), fontsize=9)
        out = _save(fig, path, margins=LEARNING_CURVE_MARGINS)
    finally:
        fig.clear()
    return out


def family_colours(families: Sequence[str]) -> dict[str, Any]:
    """A fixed colour per family (registry order), the same in every figure of a study."""
    import matplotlib

    from lrsearch.schedules import FAMILIES

    cmap = matplotlib.colormaps["tab10"]
    order = list(FAMILIES)
    extra = sorted(f for f in set(families) if f not in FAMILIES)
    return {
        f: cmap((order.index(f) if f in FAMILIES else len(order) + extra.index(f)) % 10)
        for f in families
    }


def plot_lr_overlay(
    curves: Sequence[tuple[str, str, np.ndarray, int]],
    *,
    title: str,
    path: str | Path,
) -> Path:
    """Overlays several trials' lr curves against epochs, coloured by family.

    Args:
        curves: ``(label, family, values per step, steps_per_epoch)`` for each trial, best first.
        title: The figure title.
        path: Where to write the PNG.

    Returns:
        The path written.
    """
    colours = family_colours(sorted({family for _, family, _, _ in curves}))
    fig, ax = _subplots(figsize=(9, 5))
    try:
        for rank, (label, family, values, steps_per_epoch) in enumerate(curves):
            x = np.arange(len(values)) / steps_per_epoch
            ax.plot(
                x,
                np.where(values > 0, values, np.nan),  # log axis: a warmup from 0 starts later
                color=colours[family],
                linewidth=2.6 if rank == 0 else 1.3,
                alpha=1.0 if rank == 0 else 0.8,
                linestyle="-" if rank < 4 else "--",
                label=f"{label} {family}",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate (log)")
        ax.set_yscale("log")
        ax.set_title(textwrap.fill(title, 110), fontsize=9)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(title="trial, value, family", fontsize=8, loc="best")
        out = _save(fig, path)
    finally:
        fig.clear()
    return out


def _robust_limits(values: Sequence[float], *, maximize: bool) -> tuple[float, float] | None:
    """y limits that keep the good end readable: from the best value to twice the distance
    to the lower decile (for ``maximize``), so a few very bad trials don't squash the rest."""
    if len(values) < 5:
        return None
    v = np.asarray(values, dtype="float64")
    best = v.max() if maximize else v.min()
    typical = np.percentile(v, 10 if maximize else 90)
    span = abs(best - typical) or abs(best) * 0.05 or 1.0
    if maximize:
        low, high = best - 2.5 * span, best + 0.15 * span
    else:
        low, high = best - 0.15 * span, best + 2.5 * span
    return float(low), float(high)


def plot_history(
    points: Sequence[tuple[int, str, float, bool]],
    *,
    metric: str,
    maximize: bool,
    title: str,
    path: str | Path,
) -> Path:
    """Each trial's value against its number, coloured by family, with the best so far.

    Args:
        points: ``(trial number, family, value, complete)``; a pruned trial's value is its last
            reported one and is drawn hollow.
        metric: The study's metric (y label).
        maximize: Whether larger is better (for the best-so-far line).
        title: The figure title.
        path: Where to write the PNG.

    Returns:
        The path written.
    """
    colours = family_colours(sorted({family for _, family, _, _ in points}))
    limits = _robust_limits([v for _, _, v, c in points if c], maximize=maximize)
    if limits is not None and all(limits[0] <= v <= limits[1] for _, _, v, _ in points):
        limits = None  # everything fits: let matplotlib choose
    fig, ax = _subplots(figsize=(9, 4.8))
    try:
        clipped = 0
        for family, colour in colours.items():
            for complete in (True, False):
                xs = [n for n, f, _, c in points if f == family and c is complete]
                ys = np.asarray([v for _, f, v, c in points if f == family and c is complete])
                if not xs:
                    continue
                if limits is not None:  # far-off values sit on the edge as triangles
                    low, high = limits
                    off = (ys < low) | (ys > high)
                    clipped += int(off.sum())
                    ax.scatter(
                        np.asarray(xs)[off],
                        np.clip(ys[off], low, high),
                        marker="v" if maximize else "^",
                        s=36,
                        color=colour,
                        zorder=3,
                    )
                    xs, ys = list(np.asarray(xs)[~off]), ys[~off]
                ax.scatter(
                    xs,
                    ys,
                    s=36,
                    color=colour if complete else "none",
                    edgecolors=colour,
                    linewidths=1.3,
                    zorder=3,
                )
        for family, colour in colours.items():  # every family in the legend, pruned-only too
            ax.scatter([], [], s=36, color=colour, label=family)
        best_x, best_y, best = [], [], None
        for n, _, v, c in sorted(points):
            if c and (best is None or (v > best if maximize else v < best)):
                best = v
            if best is not None:
                best_x.append(n)
                best_y.append(best)
        if best_x:
            ax.step(best_x, best_y, where="post", color="black", linewidth=1.4, label="best")
        ax.scatter([], [], s=36, color="none", edgecolors="0.4", label="pruned (last value)")
        if clipped:
            ax.scatter(
                [],
                [],
                marker="v" if maximize else "^",
                color="0.4",
                label=f"off the axis ({clipped})",
            )
        if limits is not None:
            ax.set_ylim(*limits)
        ax.set_xlabel("trial")
        ax.set_ylabel(metric)
        ax.set_title(textwrap.fill(title, 110), fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        out = _save(fig, path)
    finally:
        fig.clear()
    return out


def plot_family_values(
    values: Mapping[str, Sequence[float]],
    *,
    metric: str,
    title: str,
    path: str | Path,
) -> Path:
    """The complete trials' values of each family, one row a family: points, range, quartiles
    (shaded) and median (black tick).

    Args:
        values: Per family (best family first), the values of its complete trials.
        metric: The study's metric (x label).
        title: The figure title.
        path: Where to write the PNG.

    Returns:
        The path written.
    """
    families = list(values)
    colours = family_colours(families)
    fig, ax = _subplots(figsize=(9, 0.9 + 0.45 * max(len(families), 1)))
    try:
        rows = list(range(len(families), 0, -1))  # best family on top
        rng = np.random.default_rng(0)
        for r, family in zip(rows, families, strict=True):
            v = np.asarray(values[family], dtype="float64")
            if len(v) == 0:
                continue
            q1, med, q3 = np.percentile(v, [25, 50, 75])  # range, quartiles, median, by hand
            ax.plot([v.min(), v.max()], [r, r], color="0.6", linewidth=1, zorder=1)
            ax.plot([q1, q3], [r, r], color="0.35", linewidth=6, alpha=0.35, zorder=2)
            ax.plot([med, med], [r - 0.28, r + 0.28], color="black", linewidth=1.6, zorder=4)
            jitter = rng.uniform(-0.12, 0.12, size=len(v))
            ax.scatter(v, r + jitter, s=18, color=colours[family], alpha=0.85, zorder=3)
        ax.set_yticks(rows, [f"{f} ({len(values[f])})" for f in families])
        ax.set_ylim(0.4, len(families) + 0.6)
        ax.set_xlabel(metric)
        ax.set_title(textwrap.fill(title, 110), fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
        out = _save(fig, path)
    finally:
        fig.clear()
    return out


def plot_importances(
    importances: Mapping[str, Mapping[str, float]],
    *,
    title: str,
    path: str | Path,
) -> Path:
    """One small bar chart per family: its parameters' importances, largest on top.

    Args:
        importances: Per family, parameter name to importance (summing to 1).
        title: The figure title.
        path: Where to write the PNG.

    Returns:
        The path written.
    """
    families = [f for f in importances if importances[f]]
    colours = family_colours(families)
    cols = min(3, max(len(families), 1))
    rows = max(1, -(-len(families) // cols))
    fig, axes = _subplots(rows, cols, figsize=(3.6 * cols, 0.6 + 2.2 * rows), squeeze=False)
    try:
        for ax in axes.flat[len(families) :]:
            ax.axis("off")
        for ax, family in zip(axes.flat, families, strict=False):
            items = list(importances[family].items())[::-1]  # largest on top
            ax.barh([n for n, _ in items], [v for _, v in items], color=colours[family])
            ax.set_xlim(0, 1)
            ax.set_title(family, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(True, axis="x", alpha=0.3)
        fig.suptitle(textwrap.fill(title, 120), fontsize=9)
        out = _save(fig, path)
    finally:
        fig.clear()
    return out


def plot_lr_range(found: Any, *, title: str, path: str | Path) -> Path:
    """Draws a range test (:class:`lrsearch.rangetest.LRRange`): each seed's loss and smoothed
    loss against the learning rate (log x), the suggested range shaded, its bounds marked.

    Returns:
        The path written.
    """
    fig, ax = _subplots(figsize=(8, 4.5))
    try:
        top = []
        for i, curve in enumerate(found.curves):
            colour = f"C{i % 10}"
            ax.plot(curve.lr, curve.loss, color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(
                curve.lr, curve.smoothed, color=colour, linewidth=1.8, label=f"seed {curve.seed}"
            )
            ax.plot([curve.lr_at_min], [curve.smoothed[curve.best]], "o", color=colour)
            finite = [v for v in curve.smoothed if np.isfinite(v)]
            if finite:
                top.append(finite[0])
        ax.axvspan(found.low, found.high, color="tab:green", alpha=0.12, label="search range")
        for x, label in ((found.low, "low"), (found.high, "high")):
            ax.axvline(x, color="tab:green", linestyle="--", linewidth=1)
            ax.annotate(
                f"{label} {x:.3g}",
                (x, 1),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                rotation=90,
                va="top",
                ha="right",
            )
        if found.exploded_at is not None:
            ax.axvline(
                found.exploded_at,
                color="tab:red",
                linestyle=":",
                linewidth=1,
                label=f"exploded {found.exploded_at:.3g}",
            )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (rising exponentially during the test)")
        ax.set_ylabel("training loss per batch (smoothed: thick)")
        ax.set_title(textwrap.fill(title, 100), fontsize=9)
        if top:  # the start of the curves and below; an explosion is cut off
            low = min(min(v for v in c.smoothed if np.isfinite(v)) for c in found.curves)
            high = max(top)
            ax.set_ylim(low - 0.1 * (high - low), high + 0.6 * (high - low))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        out = _save(fig, path)
    finally:
        fig.clear()
    return out
