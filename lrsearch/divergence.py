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
of the mean (about ``k * 1e-7`` of the mean at batch k: 0.1% after 10,000 batches) and adds no op
to the compiled train step. Calls may come out of order and from several threads: a callback that
declares itself ``async_safe`` lets Keras run its batch ends in a thread pool (on JAX), so that
the training loop does not wait for each step's result; the watch puts the batches back in order.
``bench/divergence.py`` measures it against a bare ``fit``, the previous rule, and a watch kept
inside the compiled train step as a metric.
"""

from __future__ import annotations

import math
import threading

__all__ = ["DivergenceWatch"]


class DivergenceWatch:
    """Each batch's own loss from Keras's running epoch mean, and the divergence rule on it.

    Call :meth:`start_epoch` when an epoch starts and :meth:`update` after each batch with
    ``logs["loss"]``; ``update`` returns True once a batch diverged, and the first such batch is
    kept in :attr:`diverged_at_step` (counted from 1 over the whole training).

    Args:
        factor: A batch diverged when its loss exceeds ``factor`` times the first batch's.
        samples: Training samples per epoch.
        batch_size: Samples per batch (the last batch of an epoch may hold fewer).
        steps_per_execution: The model's ``steps_per_execution`` (Keras then reports every that
            many batches).

    Example:
        >>> watch = DivergenceWatch(10.0, samples=10, batch_size=4)
        >>> watch.start_epoch()
        >>> [watch.update(b, mean) for b, mean in enumerate([2.0, 2.0, 10.0])]
        [False, False, True]
        >>> watch.diverged_at_step, watch.diverged_loss  # (4*2 + 4*2 + 2*x) / 10 = 10
        (3, 42.0)
    """

    def __init__(
        self, factor: float, *, samples: int, batch_size: int, steps_per_execution: int = 1
    ) -> None:
        if not factor > 1.0:
            raise ValueError(f"Argument `factor` must be > 1. Received: factor={factor}")
        integers = (
            ("samples", samples),
            ("batch_size", batch_size),
            ("steps_per_execution", steps_per_execution),
        )
        for name, value in integers:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Argument `{name}` must be an integer >= 1. Received: {value!r}")
        self.factor = float(factor)
        self.samples = samples
        self.batch_size = batch_size
        self.steps_per_execution = steps_per_execution
        self.first_loss: float | None = None
        self.loss: float | None = None
        self.steps = 0
        self.diverged_at_step: int | None = None
        self.diverged_loss: float | None = None
        self._epoch_start = 0
        self._seen = 0
        self._total = 0.0
        self._last = -1
        self._pending: dict[int, float] = {}
        self._lock = threading.Lock()

    @property
    def limit(self) -> float:
        """The loss a batch may not exceed (infinite until the first batch)."""
        if self.first_loss is None:
            return math.inf
        return self.factor * max(abs(self.first_loss), 1e-8)

    def start_epoch(self) -> None:
        """Keras resets its running mean: so does the watch (the step count goes on)."""
        with self._lock:
            self._epoch_start = self.steps
            self._seen = 0
            self._total = 0.0
            self._last = -1
            self._pending.clear()

    def update(self, batch: int, running_mean: float) -> bool:
        """Takes ``logs["loss"]`` after batch ``batch`` (0-based in the epoch).

        Batches reported out of order wait until the ones before them arrive. :attr:`loss` is
        the own loss of the latest batch taken in (with ``steps_per_execution > 1``, the mean
        loss of the batches since the previous report).

        Returns:
            True once a batch's own loss was NaN/inf or above :attr:`limit` (this batch's or an
            earlier one's).
        """
        with self._lock:
            self._pending[batch] = running_mean
            while self._pending:
                nearest = min(self._pending)
                if nearest > self._last + self.steps_per_execution:
                    break  # an earlier batch is still to come
                self._take(nearest, self._pending.pop(nearest))
            return self.diverged_at_step is not None

    def _take(self, batch: int, running_mean: float) -> None:
        seen = min((batch + 1) * self.batch_size, self.samples)
        if seen <= self._seen:  # the same batch again: nothing new was averaged in
            return
        total = running_mean * seen
        loss = (total - self._total) / (seen - self._seen)
        self._seen, self._total, self._last = seen, total, batch
        self.steps = self._epoch_start + batch + 1
        self.loss = loss
        if self.first_loss is None:
            self.first_loss = loss
        if self.diverged_at_step is None and not (math.isfinite(loss) and loss <= self.limit):
            self.diverged_at_step = self.steps
            self.diverged_loss = loss
