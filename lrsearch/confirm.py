"""``lrsearch confirm``: train the top configurations again with fresh seeds, and say whether the
best one is really better than the next.

A search ranks configurations by one training each, so the winner may have won on a lucky seed.
:func:`confirm` takes the ``top`` best complete search trials with distinct schedules, queues
``seeds`` replicates of each (trials of the same study, marked
:attr:`~lrsearch.records.TrialRecord.replicate_of`, so the dashboard shows them; the study's
budget never counts them), trains them with the study's own runner (in ``workers`` processes,
shared with any other ``confirm`` on the same study), and summarizes each configuration.

**The sample** of a configuration is its source trial's value plus the values of its COMPLETE
replicates (a replicate is never pruned; one that diverged or failed is counted apart). The
source's value was selected for being high, so it biases the mean a little toward the search's
result; with a few replicates the sample still shows how much seeds move the metric.

**The test:** the configurations are ranked by mean; the best is *distinguishable* from the
runner-up when Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``), one-sided in the
study's direction, gives p < :data:`ALPHA`. With fewer than 2 values in either sample there is
no test ("not enough runs").

**Seeds** (:func:`replicate_seed`): replicate ``i`` of trial ``n`` trains with
``(study.seed - 1 - (n * SEED_STRIDE + i)) mod 2**32``, counting down from ``study.seed`` while
search trials count up (``study.seed + n``), so no replicate shares a seed with a search trial
(for fewer than about 4 billion trials) or with another replicate (``i < SEED_STRIDE``), and the
same replicate always has the same seed. A replicate is known by its source and seed.

**Several processes:** queueing only adds the replicates (source, seed) that do not exist yet
(in any state but FAIL), so running ``confirm`` again adds none. Two processes queueing at the
same instant may both queue one; the copy with the higher trial number is then ended FAIL
without training when it is taken (``duplicate_of``,
:class:`lrsearch.objective.DuplicateReplicate`), so every replicate trains once.

    >>> result = confirm("digits-mlp", top=3, seeds=3)  # doctest: +SKIP
    >>> print(format_text(result))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lrsearch import queries
from lrsearch._optuna import storage_of, study_id
from lrsearch.exceptions import ConfigError, LRSearchError
from lrsearch.records import TrialRecord, family_of

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from lrsearch.study import StudyHandle

__all__ = [
    "ALPHA",
    "MAX_SEEDS",
    "SEED_STRIDE",
    "Confirmation",
    "ConfiguredStats",
    "Verdict",
    "confirm",
    "format_text",
    "queue_replicates",
    "replicate_seed",
    "summarize",
    "top_sources",
    "verdict",
]

ALPHA = 0.05
"""The one-sided Welch's t-test's threshold: distinguishable when p < ALPHA."""
SEED_STRIDE = 1000
"""Seeds reserved per source trial (:func:`replicate_seed`)."""
MAX_SEEDS = 100
"""The most replicates per configuration ``confirm`` queues (``--seeds``)."""
RULE = f"distinguishable when p < {ALPHA}, Welch's t-test, one-sided"


def replicate_seed(study_seed: int, source: int, index: int) -> int:
    """The seed of replicate ``index`` (0-based) of trial ``source``.

    Counts down from ``study_seed - 1`` while search trials count up from ``study_seed``.

    Example:
        >>> replicate_seed(0, 0, 0), replicate_seed(0, 0, 1), replicate_seed(0, 3, 0)
        (4294967295, 4294967294, 4294964295)
    """
    if not 0 <= index < SEED_STRIDE:
        raise ValueError(f"index must be in [0, {SEED_STRIDE}), but got {index=}.")
    return (study_seed - 1 - (source * SEED_STRIDE + index)) % 2**32


@dataclass(frozen=True)
class ConfiguredStats:
    """One configuration's sample: its source trial's value and its complete replicates'."""

    rank: int
    source: int
    family: str
    params: dict[str, Any]
    """The source's parameters in search units (``relative``)."""
    values: list[float]
    """The source's value first, then its complete replicates' (by trial number)."""
    replicates: list[int]
    """The numbers of its complete replicates."""
    not_counted: int = 0
    """Replicates that diverged, failed, or have not finished yet."""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float | None:
        """The sample standard deviation (ddof=1); ``None`` with one value."""
        return statistics.stdev(self.values) if self.n >= 2 else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(n=self.n, mean=self.mean, sd=self.sd, min=min(self.values))
        out["max"] = max(self.values)
        return out


@dataclass(frozen=True)
class Verdict:
    """Whether the best configuration (by mean) is distinguishable from the runner-up."""

    text: str
    distinguishable: bool | None
    """None when there is no test (no runner-up, fewer than 2 values)."""
    p_value: float | None = None
    rule: str = RULE


@dataclass
class Confirmation:
    """What ``lrsearch confirm`` reports: the configurations ranked by mean, and the verdict."""

    study: str
    metric: str
    direction: str
    configs: list[ConfiguredStats]
    verdict: Verdict
    queued: int = 0
    """How many replicates this call queued."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "metric": self.metric,
            "direction": self.direction,
            "configs": [c.to_dict() for c in self.configs],
            "verdict": asdict(self.verdict),
            "queued": self.queued,
        }


def top_sources(handle: StudyHandle, top: int) -> list[FrozenTrial]:
    """The ``top`` best COMPLETE search trials (no replicates; a halving study's top rung)
    with distinct schedules, best first; of trials with the same stored schedule the better
    (then earlier) one counts.

    Raises:
        LRSearchError: the study has no complete trial.
    """
    rows = handle.ranked_rows()
    if not rows:
        raise LRSearchError(
            f"Study {handle.name!r} has no completed trial to confirm yet; run it first "
            f"(lrsearch resume {handle.name})."
        )
    storage = storage_of(handle.optuna)
    seen: set[str] = set()
    found: list[FrozenTrial] = []
    for row in rows:
        trial = storage.get_trial(row.trial_id)
        key = json.dumps(TrialRecord.of(trial).schedule, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        found.append(trial)
        if len(found) == top:
            break
    return found


def queue_replicates(handle: StudyHandle, sources: list[FrozenTrial], seeds: int) -> int:
    """Queues the replicates ``0..seeds-1`` of each source that do not exist yet (a replicate
    exists when a trial with its source and seed is in any state but FAIL); returns how many
    it queued.

    Raises:
        ConfigError: ``seeds`` out of range.
    """
    if not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"seeds must be from 1 to {MAX_SEEDS}, but got {seeds=}.")
    config, _ = handle.config()
    storage, sid = storage_of(handle.optuna), study_id(handle.optuna)
    existing = {
        (r.source, r.seed) for r in queries.replicate_rows(storage, sid) if r.state != "FAIL"
    }
    queued = 0
    for source in sources:
        for index in range(seeds):
            seed = replicate_seed(config.study.seed, source.number, index)
            if (source.number, seed) in existing:
                continue
            record = TrialRecord(replicate_of=source.number, seed=seed)
            handle.optuna.enqueue_trial(
                dict(source.params), user_attrs=record.attrs(), skip_if_exists=False
            )
            queued += 1
    return queued


def verdict(best: ConfiguredStats, runner_up: ConfiguredStats | None, maximize: bool) -> Verdict:
    """Welch's t-test, one-sided, of ``best``'s values against ``runner_up``'s.

    Example:
        >>> a = ConfiguredStats(1, 0, "cosine", {}, [0.96, 0.97, 0.96], [1, 2])
        >>> b = ConfiguredStats(2, 3, "wsd", {}, [0.90, 0.91, 0.90], [4, 5])
        >>> verdict(a, b, maximize=True).distinguishable
        True
    """
    if runner_up is None:
        return Verdict(f"#{best.source} is the only configuration: no runner-up", None)
    first = f"#{best.source} ({best.family})"
    second = f"#{runner_up.source} ({runner_up.family})"
    if best.n < 2 or runner_up.n < 2:
        return Verdict(
            f"{first} vs {second}: not enough runs (the test needs 2 values each)", None
        )
    from scipy import stats

    test = stats.ttest_ind(
        best.values,
        runner_up.values,
        equal_var=False,
        alternative="greater" if maximize else "less",
    )
    p = float(test.pvalue)
    test_name = "Welch's t-test, one-sided"
    if math.isnan(p):
        return Verdict(
            f"{first} is not distinguishable from {second}: no spread in either sample", False
        )
    if p < ALPHA:
        return Verdict(
            f"{first} is distinguishable from {second}: p = {p:.3g} < {ALPHA} ({test_name})",
            True,
            p,
        )
    return Verdict(
        f"{first} is not distinguishable from {second}: p = {p:.3g} >= {ALPHA} ({test_name})",
        False,
        p,
    )


def summarize(handle: StudyHandle, sources: list[int] | None = None) -> Confirmation:
    """The configurations of ``sources`` (trial numbers; default: every trial that has
    replicates) ranked by mean, with the verdict, from the stored trials alone."""
    storage, sid = storage_of(handle.optuna), study_id(handle.optuna)
    replicates = queries.replicate_rows(storage, sid)
    if sources is None:
        sources = sorted({r.source for r in replicates})
    configs = []
    for number in sources:
        trial = handle.trial(number)
        mine = [r for r in replicates if r.source == number]
        done = [
            r
            for r in mine
            if r.state == "COMPLETE" and r.value is not None and math.isfinite(r.value)
        ]
        record = TrialRecord.of(trial)
        # a replicate is known by its seed: one interrupted (or taken over from a dead worker)
        # and queued again is one replicate, counted once, complete if its re-run completed;
        # a same-instant duplicate (ended untrained) is none
        duplicates = {
            r.trial_id
            for r in mine
            if r.state == "FAIL"
            and TrialRecord.of(storage.get_trial(r.trial_id)).duplicate_of is not None
        }
        missing = {r.seed for r in mine if r.trial_id not in duplicates} - {r.seed for r in done}
        configs.append(
            ConfiguredStats(
                rank=0,
                source=number,
                family=family_of(trial) or "?",
                params=dict(record.relative or trial.params),
                values=[float(trial.value if trial.value is not None else math.nan)]
                + [float(r.value) for r in done if r.value is not None],
                replicates=[r.number for r in done],
                not_counted=len(missing),
            )
        )
    sign = -1.0 if handle.maximize else 1.0
    configs.sort(key=lambda c: (sign * c.mean, c.source))
    configs = [ConfiguredStats(**{**asdict(c), "rank": i + 1}) for i, c in enumerate(configs)]
    if configs:
        result = verdict(configs[0], configs[1] if len(configs) > 1 else None, handle.maximize)
    else:
        result = Verdict("no replicates yet", None)
    return Confirmation(
        study=handle.name,
        metric=handle.record.metric or "value",
        direction=handle.direction,
        configs=configs,
        verdict=result,
    )


def confirm(
    name: str,
    *,
    storage_url: str | None = None,
    top: int = 3,
    seeds: int = 3,
    workers: int | None = None,
    backend: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    echo_err: Callable[[str], None] | None = None,
    artifacts: str | None = None,
) -> Confirmation:
    """Queues ``seeds`` replicates of each of study ``name``'s ``top`` configurations (those
    missing), trains every queued replicate with the study's runner (in ``workers`` processes,
    or in this one), and returns the summary of those configurations.

    Raises:
        ConfigError: ``top`` or ``seeds`` out of range, or no such study.
        LRSearchError: the study has no complete trial.
    """
    from lrsearch.study import StudyHandle

    if top < 1:
        raise ConfigError(f"top must be >= 1, but got {top=}.")
    handle = StudyHandle.open(name, storage_url)
    config, text = handle.config()
    sources = top_sources(handle, top)
    queued = queue_replicates(handle, sources, seeds)
    if handle.counts(replicates=True).get("waiting", 0):
        from lrsearch.runner import run_study

        run_study(
            config,
            study_file_text=text,
            storage_url=handle.url,
            study_name=name,
            n_trials=handle.record.budget,
            workers=workers,
            progress=progress,
            echo=echo,
            echo_err=echo_err,
            backend=backend,
            artifacts=artifacts,
            replicates=True,
        )
    result = summarize(handle, [t.number for t in sources])
    result.queued = queued
    return result


def format_text(result: Confirmation) -> str:
    """The table ``lrsearch confirm`` prints, and the verdict line."""
    lines = [
        f"study {result.study!r}: {result.metric} per configuration ({result.direction}), "
        "the source trial and its replicates",
        f"{'rank':<5} {'trial':<6} {'family':<15} {'n':>3}  {'mean ± sd':<17} "
        f"{'min..max':<15} params",
    ]
    for c in result.configs:
        sd = f"{c.sd:.4f}" if c.sd is not None else "-"
        extra = f" (+{c.not_counted} not complete)" if c.not_counted else ""
        lines.append(
            f"{c.rank:<5} #{c.source:<5} {c.family:<15} {c.n:>3}  "
            f"{c.mean:.4f} ± {sd:<8} {min(c.values):.4f}..{max(c.values):.4f}  "
            f"{params_text(c.params)}{extra}"
        )
    lines.append(f"verdict: {result.verdict.text}")
    return "\n".join(lines)


def params_text(params: dict[str, Any]) -> str:
    """``lr=0.00284 pct_start=0.42 anneal=cos``: parameters in search units, as trial lines
    show them."""
    parts = []
    for key, value in params.items():
        label = "lr" if key == "learning_rate" else key
        parts.append(f"{label}={value:.3g}" if isinstance(value, float) else f"{label}={value}")
    return " ".join(parts)
