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
    "plot_learning_curve",
    "plot_lr_overlay",
    "plot_schedule",
    "plot_trial_lr",
    "schedule_values",
]


def schedule_values(schedule: Any, total_steps: int, *, beyond: int = 0) -> np.ndarray:
    """Evaluates a Keras schedule at steps ``0 .. total_steps + beyond - 1`` in one call."""
    from lrsearch._imports import import_keras

    keras = import_keras()
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


def _save(fig: Any, path: str | Path) -> Path:
    """Lays the figure out and writes it (creating the folder); the caller closes it."""
    fig.tight_layout()
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
) -> Path:
    """Draws lr(t) against epochs (and steps on the top axis) and writes a PNG.

    Args:
        values: The learning rate at each step.
        steps_per_epoch: Steps per epoch, for the epoch axis.
        title: The figure title (family and key parameters).
        path: Where to write the PNG.
        log_scale: Log-scale the learning-rate axis.
        note: A line of small text under the plot (e.g. what the curve leaves out).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    epochs = np.arange(len(values)) / steps_per_epoch
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
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
        plt.close(fig)
    return out


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_trial_lr(
    planned: np.ndarray,
    *,
    steps_per_epoch: int,
    applied: Sequence[float | None],
    title: str,
    path: str | Path,
) -> Path:
    """Draws a trial's planned lr(t) over every step and the lr applied at each epoch's start.

    The markers differ from the line where a plateau schedule cut the learning rate.

    Args:
        planned: The schedule's learning rate at each step of the whole budget.
        steps_per_epoch: Steps per epoch, for the epoch axis.
        applied: The learning rate applied at the first step of each epoch that ran.
        title: The figure title (family and key parameters).
        path: Where to write the PNG.

    Returns:
        The path written.
    """
    plt = _pyplot()
    epochs = np.arange(len(planned)) / steps_per_epoch
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
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
        out = _save(fig, path)
    finally:
        plt.close(fig)
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
    plt = _pyplot()
    epochs = list(history.get("epoch", []))
    base = metric.removeprefix("val_")
    score = "accuracy" if base in ("loss", "accuracy") else base

    def series(key: str) -> list[float]:
        return [np.nan if v is None else float(v) for v in history.get(key, [])]

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
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
        out = _save(fig, path)
    finally:
        plt.close(fig)
    return out


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
    plt = _pyplot()
    families = sorted({family for _, family, _, _ in curves})
    cmap = plt.get_cmap("tab10")
    colours = {family: cmap(i % 10) for i, family in enumerate(families)}
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
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
        plt.close(fig)
    return out
