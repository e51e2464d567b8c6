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

__all__ = ["schedule_values", "plot_schedule", "describe_params"]


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
