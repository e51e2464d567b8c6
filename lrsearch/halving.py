"""Budget-aware successive halving: rungs of whole schedules, promoted asynchronously.

``[study] strategy = "halving"``. A pruner judges the *prefix* of a schedule: one-cycle near
its peak, WSD's stable phase or a long cosine look worse early than they end (short-horizon
bias). Here every rung trains each of its configurations with its **whole** schedule
compressed into the rung's epochs (:meth:`lrsearch.schedules.Budget.compressed`: the search
layer's relative units make this exact), so a rung compares whole, annealed schedules:

- Rung epochs: ``min_epochs``, ``x eta``, ``x eta^2``, ... while the full training stays at
  least eta times longer, then the study's epochs (the last rung is the full training).
  Rung 0 takes ``n_trials`` new configurations.
- Promotion is asynchronous (ASHA): a configuration in the top ``1/eta`` of the finished
  trials of its rung is trained again at the next rung, as a new trial (``promoted_from``),
  while the rung's promotions stay within ``1/eta`` of its finished trials: plain ASHA
  promotes every trial that was ever in the top ``1/eta``, and with TPE's results improving
  over the search that was 1.8x the plan's trials at the second rung (bench/efficiency.py).
  Once a rung can get no more trials its best is promoted if it is not up yet, so the search
  always ends with its best lowest-rung configuration trained longer, and with a full-budget
  training.
- The **family race**: rung 0 begins with ``race_trials`` configurations per family, and each
  family's first configuration trained once more with another seed (its *twin*). Once those
  are done, a family whose best is behind the median family's best by more than twice the
  seed noise (the root-mean-square difference within the twin pairs) takes no further trials
  and is never promoted. New configurations then go to the surviving families in turn.

All state lives in the study's trials (:class:`~lrsearch.records.TrialRecord`'s ``rung``,
``rung_epochs``, ``promoted_from``, ``race``, ``twin_of``): a :class:`Plan` is read from the
trials each time a worker wants work, so several workers and a resumed study follow the same
plan. Two workers promoting one configuration at the same instant: the higher-numbered copy
ends untrained (``duplicate_of``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lrsearch.records import TrialRecord, family_of

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from lrsearch.config import StudyConfig

__all__ = [
    "WAIT",
    "FamilyRungBest",
    "Job",
    "Plan",
    "Race",
    "RungStats",
    "create_trial",
    "planned_epochs",
    "planned_trials",
    "rung_epochs",
]

RACE_NOISE_FACTOR = 2.0
"""A family is dropped when behind the median family's best by more than this many times the
seed noise of a single run (the root-mean-square difference within twin pairs)."""

NOISY_RUNG = 0.5
"""The race warns that its rung ranks mostly seed noise when the seed's variance (half the
mean squared twin difference) is more than this share of the variance between the race's
configurations."""

WAIT: Literal["wait"] = "wait"
"""What :meth:`Plan.next` gives when no trial can start now but running ones may make one."""


def rung_epochs(config: StudyConfig) -> tuple[int, ...]:
    """The epochs of each rung, lowest first; the last is the study's epochs.

    >>> from lrsearch.config import StudyConfig
    >>> config = StudyConfig.model_validate(
    ...     {"study": {"name": "s", "strategy": "halving"}, "training": {"epochs": 10}})
    >>> rung_epochs(config)
    (1, 3, 10)
    """
    epochs, halving = config.training.epochs, config.study.halving
    low = halving.min_epochs or max(epochs // halving.eta**2, 1)
    rungs = [low]  # then x eta while the full training stays at least eta times longer
    while rungs[-1] * halving.eta * halving.eta <= epochs:
        rungs.append(rungs[-1] * halving.eta)
    return (*rungs, epochs)


def planned_trials(config: StudyConfig, budget: int | None = None) -> int:
    """The trials a halving study trains when no promotion runs ahead (synchronous halving):
    ``budget`` (default ``n_trials``) at rung 0, a 1/eta of them at each rung up (at least
    one), and the race's twins. Asynchronous promotion may train a few more."""
    return sum(n for n, _ in _planned(config, budget))


def planned_epochs(config: StudyConfig, budget: int | None = None) -> int:
    """The training epochs of :func:`planned_trials` (each trial its rung's epochs)."""
    return sum(n * epochs for n, epochs in _planned(config, budget))


def _planned(config: StudyConfig, budget: int | None) -> list[tuple[int, int]]:
    """``(trials, epochs)`` per rung, the race's twins at rung 0 apart."""
    eta, kept = config.study.halving.eta, budget or config.study.n_trials
    rungs = rung_epochs(config)
    planned = []
    for epochs in rungs:
        planned.append((kept, epochs))
        kept = max(kept // eta, 1)
    if config.study.halving.race and len(config.space.families) >= 3:
        planned.append((len(config.space.families), rungs[0]))
    return planned


@dataclass(frozen=True)
class Job:
    """A trial to create: at ``rung``, with ``params`` fixed and ``record`` written on it."""

    kind: Literal["waiting", "new", "race", "twin", "promote"]
    rung: int
    epochs: int
    params: dict[str, Any] = field(default_factory=dict)
    record: TrialRecord = TrialRecord()

    def describe(self) -> str:
        what = {
            "waiting": "a queued trial",
            "new": "a new configuration",
            "race": f"a race configuration of {self.record.race}",
            "twin": f"trial #{self.record.twin_of} again with another seed",
            "promote": f"trial #{self.record.promoted_from} promoted",
        }[self.kind]
        return f"{what} at rung {self.rung} ({self.epochs} epochs)"


@dataclass(frozen=True)
class _Entry:
    """A search trial as the plan sees it."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None
    family: str | None
    params: dict[str, Any]
    record: TrialRecord
    retry: bool

    @property
    def rung(self) -> int:
        return int(self.record.rung or 0)

    @property
    def pending(self) -> bool:
        return self.state in ("RUNNING", "WAITING")

    @property
    def finished(self) -> bool:
        """Trained to its end: complete, or pruned (diverged)."""
        return self.state in ("COMPLETE", "PRUNED")


@dataclass(frozen=True)
class Race:
    """The family race's outcome: per family its best race value, the noise, who is out."""

    bests: dict[str, float | None]
    noise: float | None
    pairs: int
    median: float | None
    dropped: tuple[str, ...]
    spread: float | None = None
    """The standard deviation of the race configurations' values (three or more)."""
    epochs: int = 1
    """The rung's epochs."""
    longer: int | None = None
    """A ``min_epochs`` to advise when the rung is too noisy (the next rung's), if any."""

    @property
    def noise_share(self) -> float | None:
        """The seed's share of the variance between the race's configurations: a single
        run's seed variance (half the mean squared twin difference) over their variance."""
        if self.noise is None or not self.spread:
            return None
        return (self.noise**2 / 2) / self.spread**2

    def lines(self, maximize: bool) -> list[str]:
        """The decision and its evidence, for ``status`` and the study note."""
        if self.noise is None or self.median is None:
            return ["family race: no family dropped (no twin pair finished, so no noise estimate)"]
        share = self.noise_share
        warning = []
        if share is not None and share > NOISY_RUNG:
            fix = (
                f"raise study.halving.min_epochs (min_epochs = {self.longer})"
                if self.longer is not None
                else "raise training.epochs or use strategy = 'prune'"
            )
            seed_sd = self.noise / math.sqrt(2)
            warning = [
                f"  warning: at {self.epochs} epoch{'s' if self.epochs > 1 else ''} a result's "
                f"seed noise (sd {seed_sd:.3g}) is not small against the spread between "
                f"configurations (sd {self.spread:.3g}): this rung ranks mostly seed noise; {fix}"
            ]
        margin = RACE_NOISE_FACTOR * self.noise
        rule = (
            f"rule: a family whose best is {'below' if maximize else 'above'} the median "
            f"family's best ({self.median:.4g}) by more than {RACE_NOISE_FACTOR:g} x seed "
            f"noise ({self.noise:.3g}, rms of {self.pairs} twin pair(s)) = {margin:.3g} is "
            "dropped"
        )
        bests = ", ".join(
            f"{f} {'-' if v is None else f'{v:.4g}'}"
            for f, v in sorted(self.bests.items(), key=lambda kv: _rank(kv[1], maximize))
        )
        out = f"dropped: {', '.join(self.dropped)}" if self.dropped else "no family dropped"
        return [f"family race: {out}", f"  {rule}", f"  race bests: {bests}", *warning]


@dataclass(frozen=True)
class FamilyRungBest:
    """A family's best complete trial at the highest rung the family reached."""

    family: str
    value: float
    number: int
    rung: int
    epochs: int


@dataclass(frozen=True)
class RungStats:
    """One rung's trials for ``status``: epochs, counts per state, best value and trial."""

    rung: int
    epochs: int
    counts: dict[str, int]
    best: float | None
    best_number: int | None


def _rank(value: float | None, maximize: bool) -> float:
    """Sort key, best first; no value last."""
    if value is None or not math.isfinite(value):
        return math.inf
    return -value if maximize else value


class Plan:
    """A halving study's plan, read from its trials: which trial to train next.

    Example:
        >>> plan = Plan(config, study.get_trials(deepcopy=False))  # doctest: +SKIP
        >>> plan.next()  # doctest: +SKIP
        Job(kind='race', rung=0, epochs=1, params={'family': 'cosine'}, ...)
    """

    def __init__(
        self, config: StudyConfig, trials: list[FrozenTrial], *, budget: int | None = None
    ) -> None:
        self.config = config
        self.rungs = rung_epochs(config)
        self.eta = config.study.halving.eta
        self.maximize = config.study.direction == "maximize"
        self.families = tuple(config.space.families)
        self.budget = budget or config.study.n_trials  # new configurations
        self.entries = [_entry(t) for t in trials if not TrialRecord.of(t).replicate]
        self._racing = config.study.halving.race and len(self.families) >= 3
        self.race = self._race() if self._racing else None

    # --- reading -------------------------------------------------------------------------

    def at(self, rung: int) -> list[_Entry]:
        """The rung's trials, without duplicates ended untrained."""
        return [e for e in self.entries if e.rung == rung and e.record.duplicate_of is None]

    @property
    def configurations(self) -> int:
        """New configurations started at rung 0 (not twins, not re-runs): what
        ``n_trials`` counts."""
        return sum(1 for e in self.at(0) if e.record.twin_of is None and not e.retry)

    @property
    def dropped(self) -> tuple[str, ...]:
        return self.race.dropped if self.race is not None else ()

    def _ranked(self, rung: int) -> tuple[list[_Entry], int]:
        """The rung's finished trials that may be promoted, best first, and how many of
        them were finished (the 1/eta counts all, diverged ones included)."""
        finished = [e for e in self.at(rung) if e.finished and e.record.twin_of is None]
        eligible = [
            e
            for e in finished
            if e.state == "COMPLETE"
            and e.value is not None
            and math.isfinite(e.value)
            and e.family not in self.dropped
        ]
        eligible.sort(key=lambda e: (_rank(e.value, self.maximize), e.number))
        return eligible, len(finished)

    def _promotable(self, rung: int, closed: bool) -> list[_Entry]:
        """Trials of ``rung`` to promote now, best first: of its top 1/eta not yet at the next
        rung, as many as keep the rung's promotions at 1/eta of its finished trials (the plan's
        cost); once the rung is closed, its best too if it is not up yet."""
        ranked, finished = self._ranked(rung)
        keep = finished // self.eta
        promoted = {e.record.promoted_from for e in self.entries if e.rung == rung + 1}
        room = keep - sum(1 for e in self.at(rung) if e.number in promoted)
        out = [e for e in ranked[:keep] if e.number not in promoted][: max(room, 0)]
        if closed and not out and ranked and ranked[0].number not in promoted:
            out = [ranked[0]]
        return out

    # --- the race ------------------------------------------------------------------------

    def _race_entries(self, family: str) -> list[_Entry]:
        return [
            e
            for e in self.at(0)
            if e.record.race == family and e.record.twin_of is None and not e.retry
        ]

    def _race_jobs(self) -> list[Job]:
        """Race trials still to create: a family's next configuration (fewest first), then
        each family's twin once its first configuration completed."""
        jobs: list[Job] = []
        counts = {f: len(self._race_entries(f)) for f in self.families}
        short = [f for f in self.families if counts[f] < self.config.study.halving.race_trials]
        if short:
            family = min(short, key=lambda f: (counts[f], self.families.index(f)))
            jobs.append(self._job("race", 0, {"family": family}, race=family))
        for family in self._untwinned():
            first = next(e for e in self._race_entries(family) if e.state == "COMPLETE")
            jobs.append(
                self._job("twin", 0, dict(first.params), race=family, twin_of=first.number)
            )
        return jobs

    def _untwinned(self) -> list[str]:
        """Families with a complete race configuration and no twin yet (one twin each)."""
        twinned = {e.record.race for e in self.at(0) if e.record.twin_of is not None}
        return [
            f
            for f in self.families
            if f not in twinned and any(e.state == "COMPLETE" for e in self._race_entries(f))
        ]

    def _race(self) -> Race | None:
        """The race's outcome once every race trial and twin has finished; None before."""
        wanted = self.config.study.halving.race_trials
        bests: dict[str, float | None] = {}
        for family in self.families:
            entries = self._race_entries(family)
            if len(entries) < wanted or any(e.pending for e in entries):
                return None
            values = [e.value for e in entries if e.state == "COMPLETE" and e.value is not None]
            values = [v for v in values if math.isfinite(v)]
            bests[family] = (max if self.maximize else min)(values) if values else None
        twins = [e for e in self.at(0) if e.record.twin_of is not None]
        if any(e.pending for e in twins):
            return None
        by_number = {e.number: e for e in self.entries}
        diffs = []
        for twin in twins:
            source = (
                by_number.get(int(twin.record.twin_of))
                if twin.record.twin_of is not None
                else None
            )
            if twin.state == "COMPLETE" and source is not None and source.state == "COMPLETE":
                assert twin.value is not None and source.value is not None
                diffs.append(twin.value - source.value)
        if self._untwinned():  # a twin still to train: not decided
            return None
        known = [v for v in bests.values() if v is not None]
        if not diffs or not known:
            return Race(bests, None, len(diffs), None, ())
        raced = [
            e.value
            for f in self.families
            for e in self._race_entries(f)
            if e.state == "COMPLETE" and e.value is not None and math.isfinite(e.value)
        ]
        spread = statistics.stdev(raced) if len(raced) >= 3 else None
        longer = self.rungs[0] * self.eta
        noise = math.sqrt(sum(d * d for d in diffs) / len(diffs))
        median = statistics.median(known)
        margin = RACE_NOISE_FACTOR * noise
        dropped = tuple(
            f
            for f, v in bests.items()
            if v is not None and (median - v if self.maximize else v - median) > margin
        )
        return Race(
            bests,
            noise,
            len(diffs),
            median,
            dropped,
            spread,
            self.rungs[0],
            longer if longer < self.rungs[-1] else None,
        )

    # --- what next -------------------------------------------------------------------------

    def _job(self, kind: Any, rung: int, params: dict[str, Any], **record: Any) -> Job:
        epochs = self.rungs[rung]
        return Job(
            kind,
            rung,
            epochs,
            params,
            TrialRecord(rung=rung, rung_epochs=epochs, **record),
        )

    def _rung0_jobs(self) -> list[Job]:
        """Rung-0 trials that may start now: the race's (its configurations while the
        budget lasts, its twins), else a new configuration while the budget lasts."""
        left = self.configurations < self.budget
        if self._racing and self.race is None:
            race = [j for j in self._race_jobs() if j.kind == "twin" or left]
            if race:
                return race
        if not left:
            return []
        if not self._racing:
            return [self._job("new", 0, {})]
        alive = [f for f in self.families if f not in self.dropped]
        counts = {f: sum(1 for e in self.at(0) if e.family == f) for f in alive}
        family = min(alive, key=lambda f: (counts[f], self.families.index(f)))
        return [self._job("new", 0, {"family": family})]

    def next(self) -> Job | Literal["wait"] | None:
        """The next trial to train: a queued one first, then a promotion (the highest rung's
        best first: full-budget results come early), then a rung-0 configuration (the race
        first); :data:`WAIT` when none can start until a running trial ends; None when the
        search is done."""
        if any(e.state == "WAITING" for e in self.entries):
            return self._job("waiting", 0, {})
        rung0 = self._rung0_jobs()
        closed = not rung0 and not any(e.pending for e in self.at(0))
        promotion: Job | None = None
        for rung in range(len(self.rungs) - 1):
            promotable = self._promotable(rung, closed)
            if promotable:
                entry = promotable[0]
                promotion = self._job(
                    "promote", rung + 1, dict(entry.params), promoted_from=entry.number
                )
            closed = closed and not promotable and not any(e.pending for e in self.at(rung + 1))
        if promotion is not None:
            return promotion
        if rung0:
            return rung0[0]
        if any(e.pending for e in self.entries):
            return WAIT
        return None

    # --- for status ------------------------------------------------------------------------

    def stats(self) -> list[RungStats]:
        """Per rung: epochs, trials per state, the best value and its trial."""
        out = []
        for rung, epochs in enumerate(self.rungs):
            entries = self.at(rung)
            counts: dict[str, int] = {}
            for e in entries:
                state = "diverged" if e.record.outcome == "diverged" else e.state.lower()
                counts[state] = counts.get(state, 0) + 1
            ranked, _ = self._ranked(rung)
            best = ranked[0] if ranked else None
            out.append(
                RungStats(
                    rung,
                    epochs,
                    counts,
                    best.value if best else None,
                    best.number if best else None,
                )
            )
        return out

    def full_trainings(self) -> set[int]:
        """Numbers of the top rung's trials (trained the study's full epochs)."""
        return {e.number for e in self.at(len(self.rungs) - 1)}

    def family_bests(self) -> list[FamilyRungBest]:
        """Each family's best complete value at the highest rung it reached (a 1-epoch value
        does not compare with a full training's): ranked by that rung, then by value."""
        found: dict[str, FamilyRungBest] = {}
        for e in self.entries:
            if e.family is None or e.value is None or not math.isfinite(e.value):
                continue
            if e.state != "COMPLETE" or e.record.duplicate_of is not None:
                continue
            have = found.get(e.family)
            if have is None or (e.rung, -_rank(e.value, self.maximize)) > (
                have.rung,
                -_rank(have.value, self.maximize),
            ):
                found[e.family] = FamilyRungBest(
                    e.family, e.value, e.number, e.rung, self.rungs[e.rung]
                )
        return sorted(found.values(), key=lambda b: (-b.rung, _rank(b.value, self.maximize)))

    def best_number(self) -> int | None:
        """The best complete trial of the top rung (the search's pick), if any."""
        top = self.stats()[-1]
        return top.best_number


def _entry(trial: FrozenTrial) -> _Entry:
    record = TrialRecord.of(trial)
    fixed = trial.system_attrs.get("fixed_params") or {}
    return _Entry(
        number=trial.number,
        state=trial.state.name,
        value=trial.value if trial.state.name == "COMPLETE" else None,
        family=family_of(trial) or fixed.get("family"),
        params=dict(trial.params) or dict(fixed),
        record=record,
        retry=record.retry_of is not None or TrialRecord.OPTUNA_RETRY_OF in trial.system_attrs,
    )


def create_trial(study: optuna.Study, job: Job) -> optuna.Trial:
    """Creates ``job``'s trial RUNNING (ours at once: no other worker can pop it), its
    parameters fixed and its record written; a ``"waiting"`` job pops a queued trial (a
    fresh one, as rung 0, if another worker popped it first)."""
    import optuna
    from optuna.trial import TrialState

    from lrsearch._optuna import storage_of, study_id

    if job.kind == "waiting":
        trial = study.ask()
        if TrialRecord.of(trial).rung is None:  # a baseline or a fresh sample: rung 0
            job.record.write(trial)
        return trial
    storage = storage_of(study)
    template = optuna.trial.create_trial(
        state=TrialState.RUNNING,
        system_attrs={"fixed_params": job.params} if job.params else {},
        user_attrs=job.record.attrs(),
    )
    trial_id = storage.create_new_trial(study_id(study), template_trial=template)
    return optuna.Trial(study, trial_id)
