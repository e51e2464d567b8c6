"""The learning-rate range test (Smith 2017), turned into bounds for the search.

:func:`range_test` trains the study's model on its data once, the learning rate rising
exponentially from ``min_lr`` to ``max_lr`` over ``steps`` batches (Keras's own
``ExponentialDecay`` with a rate above 1), and records each batch's own loss
(:class:`~lrsearch.divergence.DivergenceWatch` recovers it from Keras's running mean). It stops
once a short moving average of the loss exceeds :data:`EXPLODED` times its best, or a loss is
NaN/inf. The curve read afterwards is smoothed by a centred average (:func:`centered_average`),
which, unlike a moving average, does not shift the minimum to later, larger learning rates.

:func:`suggest_range` reads the bounds off several such curves (one per seed). The single points
usually read off one curve are unstable from run to run: measured on the bundled digits MLP
(docs/benchmarks.md), the steepest descent moved over four decades between seeds and "where the
loss starts falling" over three, while the learning rate at the smoothed loss's minimum moved by
1.4x (2.7x on the bundled CNN). So the range is anchored there:

- the *anchor* is the learning rate at the minimum of the smoothed loss, averaged over the seeds
  in log space (the geometric mean). Beyond it a constant learning rate stops improving the loss
  within the test, and then drives it up.
- ``high`` is :data:`HEADROOM` times the anchor, at most half the learning rate at which the
  loss exploded (but not below the anchor) and lrsearch's cap on learning rates. A schedule
  warms up and anneals, so its best *peak* can sit above the constant rate that stopped
  improving the loss: the best peak learning rates of full searches on the bundled studies
  (default and 100x wider ranges) sat at 0.35x to 1.7x the anchor.
- ``low`` is ``high`` divided by ``10 ** decades`` (two decades by default): the search's
  log-uniform sampling spends as many trials on each decade below ``high``.

The explosion point is reported and excluded. A test in which the loss never fell clearly (by
:data:`MIN_DROP` of its starting value, and well above its noise), exploded within a few steps, or
was still falling when the ramp ended gives no range: it is an error that says so.

    >>> from lrsearch.config import load_study_file
    >>> config, _ = load_study_file("studies/digits.toml")  # doctest: +SKIP
    >>> found = find_lr(config, seeds=3)  # doctest: +SKIP
    >>> found.low, found.high  # doctest: +SKIP
    (0.00087, 0.087)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrsearch.config import MAX_LEARNING_RATE
from lrsearch.exceptions import ConfigError, LRSearchError

if TYPE_CHECKING:
    from lrsearch.config import StudyConfig
    from lrsearch.data import Dataset
    from lrsearch.objective import Objective

__all__ = [
    "EXPLODED",
    "HEADROOM",
    "MIN_DROP",
    "LRRange",
    "RangeCurve",
    "default_steps",
    "find_lr",
    "range_test",
    "suggest_range",
]

SMOOTHING = 0.9
"""Weight of the past in the moving average of the loss that stops the test (about ten steps:
fastai's and Lightning's 0.98 lags fifty, far past the explosion on a test of a few hundred)."""
EXPLODED = 4.0
"""The test stops once that moving average exceeds this many times its best value."""
HEADROOM = 3.0
"""The range's top is this many times the anchor (half a decade; see the module docstring)."""
MIN_DROP = 0.01
"""A test gives bounds only if the smoothed loss fell by this fraction of its start value, and
by :data:`NOISE_UNITS` times the smoothed curve's own noise."""
NOISE_UNITS = 5.0
MIN_STEPS = 60
MAX_STEPS = 500


@dataclass(frozen=True)
class RangeCurve:
    """One range test: per batch, the learning rate it trained with and its loss."""

    seed: int
    lr: list[float]
    loss: list[float]
    smoothed: list[float]
    exploded_at: float | None = None
    """The learning rate at which the test stopped for an exploding loss (None: it ran out)."""
    window: int = 2
    """Neighbours on each side averaged into :attr:`smoothed`."""

    @property
    def best(self) -> int:
        """Index of the smoothed loss's minimum."""
        values = np.asarray(self.smoothed, dtype=float)
        return int(np.nanargmin(values)) if np.isfinite(values).any() else 0

    @property
    def lr_at_min(self) -> float:
        return self.lr[self.best]

    @property
    def drop(self) -> float:
        """How much the smoothed loss fell from its start to its minimum (a fraction of it)."""
        start = self.smoothed[0] if self.smoothed else math.nan
        if not (math.isfinite(start) and start > 0):
            return 0.0
        return float((start - self.smoothed[self.best]) / start)

    @property
    def noise(self) -> float:
        """The standard error of the smoothed loss, relative to its start: the spread of the
        losses around it over the first fifth of the test, over the root of the window."""
        n = max(len(self.loss) // 5, 2)
        raw = np.asarray(self.loss[:n]) - np.asarray(self.smoothed[:n])
        window = 2 * self.window + 1
        start = self.smoothed[0] if self.smoothed else math.nan
        if not (math.isfinite(start) and start > 0 and np.isfinite(raw).all()):
            return math.inf
        return float(np.std(raw) / math.sqrt(window) / start)

    @property
    def fell(self) -> bool:
        """Whether the loss fell clearly: by :data:`MIN_DROP` and by :data:`NOISE_UNITS` times
        :attr:`noise`."""
        return self.drop >= max(MIN_DROP, NOISE_UNITS * self.noise)

    def steepest(self) -> float:
        """The learning rate where the smoothed loss falls fastest per decade (reported, not
        used for the bounds: it is the unstable point)."""
        if self.best < 2:
            return self.lr[0]
        values = np.asarray(self.smoothed[: self.best + 1])
        slopes = np.gradient(values, np.log10(self.lr[: self.best + 1]))
        return self.lr[int(np.argmin(slopes))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "lr": self.lr,
            "loss": [v if math.isfinite(v) else None for v in self.loss],
            "smoothed": [v if math.isfinite(v) else None for v in self.smoothed],
            "exploded_at": self.exploded_at,
        }


@dataclass(frozen=True)
class LRRange:
    """The suggested search range and the evidence it was read from."""

    low: float
    high: float
    anchor: float
    """The learning rate at the smoothed loss's minimum (the geometric mean over the seeds)."""
    decades: float
    steps: int
    min_lr: float
    max_lr: float
    curves: list[RangeCurve] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def minima(self) -> list[float]:
        """The learning rate at the smoothed loss's minimum, per seed."""
        return [c.lr_at_min for c in self.curves]

    @property
    def spread(self) -> float:
        """Largest over smallest of :attr:`minima` (1.0: every seed agreed)."""
        return max(self.minima) / min(self.minima) if self.curves else 1.0

    @property
    def exploded_at(self) -> float | None:
        """The lowest learning rate at which a seed's loss exploded."""
        points = [c.exploded_at for c in self.curves if c.exploded_at is not None]
        return min(points) if points else None

    def reasoning(self) -> list[str]:
        """How the bounds were read off the curves, one line each."""
        seeds = len(self.curves)
        minima = ", ".join(f"{v:.3g}" for v in self.minima)
        steepest = ", ".join(f"{c.steepest():.3g}" for c in self.curves)
        exploded = self.exploded_at
        if seeds == 1:
            lowest = f"the smoothed loss is lowest at lr {minima}"
        else:
            lowest = (
                f"the smoothed loss is lowest at lr {minima} (spread {self.spread:.2g}x), "
                f"{self.anchor:.3g} on average (log space)"
            )
        capped = exploded is not None and self.high < HEADROOM * self.anchor
        top = "half where the loss exploded" if capped else f"{HEADROOM:g}x that"
        lines = [
            f"range test: {seeds} seed{'s' if seeds != 1 else ''} x {self.steps} steps, lr "
            f"{self.min_lr:.3g} -> {self.max_lr:.3g} (exponential), {self.seconds:.0f} s",
            lowest + ": beyond it a constant rate stops improving the loss",
            (
                f"the loss exploded (>{EXPLODED:g}x its best) at lr {exploded:.3g}: excluded"
                if exploded is not None
                else "the loss did not explode within the test"
            ),
            f"upper bound {self.high:.3g} ({top}: a schedule's warmup and decay let its peak "
            "go above the constant rate)",
            f"lower bound {self.low:.3g}, {self.decades:g} decades below (the steepest descent, "
            f"at {steepest}, is not used: it moved over decades between seeds in our "
            "measurements)",
        ]
        return lines

    def record(self) -> dict[str, Any]:
        """What is stored on the study (``StudyRecord.lr_range``): the bounds and the evidence."""
        return {
            "low": self.low,
            "high": self.high,
            "anchor": self.anchor,
            "headroom": HEADROOM,
            "decades": self.decades,
            "steps": self.steps,
            "min_lr": self.min_lr,
            "max_lr": self.max_lr,
            "minima": self.minima,
            "exploded_at": self.exploded_at,
            "seeds": [c.seed for c in self.curves],
            "seconds": round(self.seconds, 1),
        }


def default_steps(total_steps: int) -> int:
    """Steps of each seed's test: one trial's steps, within [:data:`MIN_STEPS`,
    :data:`MAX_STEPS`] (a slow starter, the bundled CNN under SGD, needs all of its 450 to show
    where its loss stops falling; shared by three seeds, they did not)."""
    return int(min(max(total_steps, MIN_STEPS), MAX_STEPS))


def range_test(
    config: StudyConfig,
    dataset: Dataset,
    *,
    seed: int,
    steps: int,
    min_lr: float = 1e-6,
    max_lr: float = 10.0,
    base_dir: Path | None = None,
) -> RangeCurve:
    """One range test on the study's model, data and optimizer (see the module docstring)."""
    from lrsearch._imports import import_keras
    from lrsearch.divergence import DivergenceWatch
    from lrsearch.objective import build_study_model, make_optimizer

    keras = import_keras()
    if not (0 < min_lr < max_lr):
        raise ValueError(f"need 0 < min_lr < max_lr. Received: {min_lr=}, {max_lr=}")
    ramp = keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=min_lr, decay_steps=steps, decay_rate=max_lr / min_lr
    )
    lrs = [min_lr * (max_lr / min_lr) ** (k / steps) for k in range(steps)]
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = build_study_model(config, dataset, base_dir)
    model.compile(optimizer=make_optimizer(config, ramp), loss=config.training.loss)
    watch = DivergenceWatch(
        math.inf, samples=len(dataset.x_train), batch_size=config.data.batch_size
    )
    losses: list[float] = []
    state: dict[str, Any] = {"average": 0.0, "best": math.inf, "exploded": None}

    class Recorder(keras.callbacks.Callback):  # type: ignore[name-defined]
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            watch.start_epoch()

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            watch.update(batch, float((logs or {})["loss"]))
            loss = float(watch.loss) if watch.loss is not None else math.nan
            losses.append(loss)
            state["average"] = SMOOTHING * state["average"] + (1 - SMOOTHING) * loss
            value = state["average"] / (1 - SMOOTHING ** len(losses))  # bias-corrected
            if math.isfinite(value):
                state["best"] = min(state["best"], value)
            blown = not math.isfinite(value) or value > EXPLODED * state["best"]
            if blown and len(losses) > 1:
                # the average lags: the explosion began where the losses last rose above the
                # limit and stayed there
                limit, start = EXPLODED * state["best"], len(losses) - 1
                while start > 0 and not (
                    math.isfinite(losses[start - 1]) and losses[start - 1] <= limit
                ):
                    start -= 1
                state["exploded"] = lrs[start]
            if blown or len(losses) >= steps:
                self.model.stop_training = True

    epochs = math.ceil(steps / dataset.steps_per_epoch(config.data.batch_size))
    model.fit(
        dataset.x_train,
        dataset.y_train,
        batch_size=config.data.batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=[Recorder()],
    )
    keras.backend.clear_session()
    n = len(losses)
    window = max(n // 20, 2)  # of the points recorded: a test that exploded early has fewer
    return RangeCurve(
        seed=seed,
        lr=lrs[:n],
        loss=losses,
        smoothed=centered_average(losses, window=window),
        exploded_at=state["exploded"],
        window=window,
    )


def centered_average(values: Sequence[float], *, window: int) -> list[float]:
    """Each value averaged with up to ``window`` neighbours on each side: smooth without the
    lag of a moving average (the minimum stays where the loss stopped improving)."""
    array = np.asarray(values, dtype=float)
    out = []
    for i in range(len(array)):
        part = array[max(i - window, 0) : i + window + 1]
        out.append(float(np.mean(part)) if np.isfinite(part).all() else math.nan)
    return out


def suggest_range(
    curves: Sequence[RangeCurve],
    *,
    decades: float = 2.0,
    steps: int,
    min_lr: float,
    max_lr: float,
    seconds: float = 0.0,
) -> LRRange:
    """The search range read off ``curves`` (see the module docstring).

    Raises:
        LRSearchError: a curve gives no range: its loss never fell clearly, exploded within a
            few steps, or was still falling when the ramp ended.
    """
    if not curves:
        raise ValueError("suggest_range needs at least one curve")
    if not decades > 0:
        raise ValueError(f"Argument `decades` must be > 0. Received: decades={decades}")
    for curve in curves:
        _check_readable(curve)
    anchor = float(math.exp(np.mean([math.log(c.lr_at_min) for c in curves])))
    exploded = [c.exploded_at for c in curves if c.exploded_at is not None]
    # 3x the anchor, at most half the explosion (never below the anchor), at most lrsearch's cap
    high = min([anchor * HEADROOM, *(max(e / 2, anchor) for e in exploded), MAX_LEARNING_RATE])
    return LRRange(
        low=high / 10**decades,
        high=high,
        anchor=anchor,
        decades=decades,
        steps=steps,
        min_lr=min_lr,
        max_lr=max_lr,
        curves=list(curves),
        seconds=seconds,
    )


def _check_readable(curve: RangeCurve) -> None:
    """Refuses a curve no range can be read off, with a line saying why and what to change."""
    n = len(curve.lr)
    if n < 4 * curve.window + 1:
        where = f"at step {n} (lr {curve.lr[-1]:.3g})" if n else "at once"
        raise LRSearchError(
            f"find-lr: the loss exploded {where} (seed {curve.seed}), too early to read a "
            "range; lower --min-lr or give the test more --steps"
        )
    if not curve.fell:
        need = max(MIN_DROP, NOISE_UNITS * curve.noise)
        needed = f"need {need:.1%}" if math.isfinite(need) else "its first losses were not finite"
        raise LRSearchError(
            f"find-lr: the loss did not fall within the range test (seed {curve.seed}: "
            f"{curve.drop:.1%} below its start, lowest at lr {curve.lr_at_min:.3g}, {needed}); "
            "give the test more steps (--steps) or a narrower ramp (--min-lr/--max-lr)"
        )
    if curve.exploded_at is None and curve.best >= n - curve.window - 1:
        raise LRSearchError(
            f"find-lr: the loss was still falling at the end of the ramp (seed {curve.seed}, lr "
            f"{curve.lr[-1]:.3g}): raise --max-lr or give the test more --steps"
        )


def find_lr(
    config: StudyConfig,
    *,
    objective: Objective | None = None,
    base_dir: Path | None = None,
    seeds: int = 1,
    steps: int | None = None,
    min_lr: float = 1e-6,
    max_lr: float = 10.0,
    decades: float = 2.0,
    echo: Callable[[str], None] | None = None,
) -> LRRange:
    """Runs the range test with ``seeds`` seeds (``study.seed``, +1, ...) and suggests a range.

    ``steps`` per seed defaults to one trial's steps (:func:`default_steps`): each seed costs
    about one trial's training (less: no validation, and it stops when the loss explodes).
    ``objective`` is the study's (its data and checked model), else one is made and checked.

    Raises:
        ConfigError, DataError: bad input (the study file fixes the learning rate, a model that
            does not build, ...), before any training.
        LRSearchError: the loss never fell (see :func:`suggest_range`).
    """
    from lrsearch.objective import Objective

    if not (0 < min_lr < max_lr):
        raise ConfigError(
            f"--min-lr {min_lr:g} must be below --max-lr {max_lr:g} (and above 0); the test "
            "ramps from one to the other"
        )
    if objective is None:
        objective = Objective(config, base_dir=base_dir)
        objective.check()
    objective.space.bounded(min_lr, max_lr)  # a file that fixes the lr: one line, no test
    dataset = objective.dataset
    steps = steps or default_steps(objective.budget.total_steps)
    started = time.perf_counter()
    curves = []
    for i in range(seeds):
        seed = (config.study.seed + i) % 2**32
        curve = range_test(
            config,
            dataset,
            seed=seed,
            steps=steps,
            min_lr=min_lr,
            max_lr=max_lr,
            base_dir=objective.base_dir,
        )
        if echo is not None:
            echo(
                f"  seed {seed}: {len(curve.lr)} steps, lowest smoothed loss "
                f"{curve.smoothed[curve.best]:.3g} at lr {curve.lr_at_min:.3g}"
            )
        curves.append(curve)
    return suggest_range(
        curves,
        decades=decades,
        steps=steps,
        min_lr=min_lr,
        max_lr=max_lr,
        seconds=time.perf_counter() - started,
    )
