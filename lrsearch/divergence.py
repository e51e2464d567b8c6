"""The divergence rule, applied to each batch's own loss.

A training diverged when a batch's loss is NaN/inf or more than ``factor`` times the first
batch's. Keras 3 does not log a batch's own loss: after each batch ``logs["loss"]`` is the running
mean of the epoch so far (a ``Mean`` metric weighted by each batch's sample count, reset when an
epoch starts). A spike at batch k moves that mean by about 1/k of its size, so a rule on the mean
lets a tenfold spike pass unless it is about ten times k times the first loss: in practice only
NaN/inf was caught. :class:`DivergenceWatch` recovers each batch's loss from two consecutive
means,

    loss_k = (n_k * mean_k - n_(k-1) * mean_(k-1)) / (n_k - n_(k-1))

with ``n_k`` the samples of the epoch seen after batch k. That is exact up to the float32 rounding
of the mean (about ``k * 1e-7`` of the mean at batch k: 0.1% after 10,000 batches), adds no op to
the compiled train step and only arithmetic to the per-batch callback lrsearch has anyway (the
batch end is also where Ctrl-C and the stop are handled). ``bench/divergence.py`` compares it with
keeping the statistics inside the train step as a metric, which measured slower on both backends.
"""

from __future__ import annotations

import math

__all__ = ["DivergenceWatch"]


class DivergenceWatch:
    """Each batch's own loss from Keras's running epoch mean, and the divergence rule on it.

    Call :meth:`start_epoch` when an epoch starts and :meth:`update` after each batch with
    ``logs["loss"]``; ``update`` returns True for a batch that diverged, and the first such
    batch is kept in :attr:`diverged_at_step` (counted from 1 over the whole training).

    Args:
        factor: A batch diverged when its loss exceeds ``factor`` times the first batch's.
        samples: Training samples per epoch.
        batch_size: Samples per batch (the last batch of an epoch may hold fewer).

    Example:
        >>> watch = DivergenceWatch(10.0, samples=10, batch_size=4)
        >>> watch.start_epoch()
        >>> [watch.update(b, mean) for b, mean in enumerate([2.0, 2.0, 10.0])]
        [False, False, True]
        >>> watch.diverged_at_step, watch.diverged_loss  # (4*2 + 4*2 + 2*x) / 10 = 10
        (3, 42.0)
    """

    def __init__(self, factor: float, *, samples: int, batch_size: int) -> None:
        if not factor > 1.0:
            raise ValueError(f"Argument `factor` must be > 1. Received: factor={factor}")
        for name, value in (("samples", samples), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Argument `{name}` must be an integer >= 1. Received: {value!r}")
        self.factor = float(factor)
        self.samples = samples
        self.batch_size = batch_size
        self.first_loss: float | None = None
        self.loss: float | None = None
        self.steps = 0
        self.diverged_at_step: int | None = None
        self.diverged_loss: float | None = None
        self._epoch_start = 0
        self._seen = 0
        self._total = 0.0
        self._tripped = False

    @property
    def limit(self) -> float:
        """The loss a batch may not exceed (infinite until the first batch)."""
        if self.first_loss is None:
            return math.inf
        return self.factor * max(abs(self.first_loss), 1e-8)

    def start_epoch(self) -> None:
        """Keras resets its running mean: so does the watch (the step count goes on)."""
        self._epoch_start = self.steps
        self._seen = 0
        self._total = 0.0

    def update(self, batch: int, running_mean: float) -> bool:
        """Takes ``logs["loss"]`` after batch ``batch`` (0-based in the epoch).

        Sets :attr:`loss` to that batch's own loss (with ``steps_per_execution > 1``, the mean
        loss of the batches since the last call).

        Returns:
            True when this batch's own loss is NaN/inf or above :attr:`limit`.
        """
        seen = min((batch + 1) * self.batch_size, self.samples)
        if seen <= self._seen:  # the same batch again: nothing new was averaged in
            return self._tripped
        total = running_mean * seen
        loss = (total - self._total) / (seen - self._seen)
        self._seen, self._total = seen, total
        self.steps = self._epoch_start + batch + 1
        self.loss = loss
        if self.first_loss is None:
            self.first_loss = loss
        self._tripped = not (math.isfinite(loss) and loss <= self.limit)
        if self._tripped and self.diverged_at_step is None:
            self.diverged_at_step = self.steps
            self.diverged_loss = loss
        return self._tripped
