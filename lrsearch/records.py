"""What lrsearch stores: every attribute key of a study and of a trial, defined once.

lrsearch writes plain Optuna user attributes, so ``optuna trials`` and optuna-dashboard show them
as they are. Each key is namespaced ``lrsearch.<field>``; studies written before the keys were
namespaced (``schedule``, ``relative``, ``history``, ``outcome``, ``seed``, ``backend`` and the
timings were bare) are read through each key's legacy names, so old databases keep working.

The rest of lrsearch reads fields of :class:`TrialRecord` and :class:`StudyRecord`, never
attribute strings:

    >>> record = TrialRecord(seed=7, outcome="complete")
    >>> record.attrs()
    {'lrsearch.outcome': 'complete', 'lrsearch.seed': 7}
    >>> TrialRecord.from_attrs({"seed": 7}).seed  # a study written by an older lrsearch
    7
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from lrsearch.schedules import stored_schedule

if TYPE_CHECKING:
    import optuna

__all__ = [
    "NAMESPACE",
    "StudyRecord",
    "TrialRecord",
    "family_of",
    "stored_names",
]

NAMESPACE = "lrsearch."


def _key(name: str, *legacy: str) -> Any:
    """A dataclass field stored as ``lrsearch.<name>``, read from ``legacy`` names too."""
    return field(default=None, metadata={"key": NAMESPACE + name, "legacy": legacy})


class _HasUserAttrs(Protocol):
    @property
    def user_attrs(self) -> dict[str, Any]: ...


class _Writable(Protocol):
    def set_user_attr(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True)
class _Record:
    """Shared reading and writing of a record's fields as user attributes."""

    def attrs(self) -> dict[str, Any]:
        """The fields that are set, under their stored keys (what ``write`` writes)."""
        return {
            f.metadata["key"]: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not None
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Any:
        """The record stored in ``attrs`` (a trial's or a study's ``user_attrs``)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            for name in (f.metadata["key"], *f.metadata["legacy"]):
                if name in attrs:
                    values[f.name] = attrs[name]
                    break
        return cls(**values)

    def write(self, target: _Writable) -> None:
        """Writes the fields that are set onto ``target`` (a trial or a study)."""
        for key, value in self.attrs().items():
            target.set_user_attr(key, value)

    @classmethod
    def key(cls, name: str) -> str:
        """The stored key of field ``name``."""
        return str(_field(cls, name).metadata["key"])


def _field(cls: type, name: str) -> Any:
    for f in fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def stored_names(record: type[_Record], name: str) -> tuple[str, ...]:
    """Every key field ``name`` may be stored under, the current one first (for queries).

    >>> stored_names(TrialRecord, "outcome")
    ('lrsearch.outcome', 'outcome')
    """
    f = _field(record, name)
    return (f.metadata["key"], *f.metadata["legacy"])


@dataclass(frozen=True)
class TrialRecord(_Record):
    """Everything lrsearch writes on a trial (each field ``None`` until written).

    A trial's schedule and seed are written when it starts, the rest when it ends; a queued
    trial (a baseline, a retry) carries ``baseline``, ``retry_of`` and ``seed`` from the start.
    """

    schedule: dict[str, Any] | None = _key("schedule", "schedule")
    """The absolute schedule: ``{"family", "params", "total_steps"}`` (``build_schedule``); a
    parameter its family gained since it was stored reads as what the trial ran with
    (:func:`~lrsearch.schedules.stored_schedule`)."""
    relative: dict[str, Any] | None = _key("relative", "relative")
    """The sampled parameters in search units (lr, fractions of the run, ...)."""
    seed: int | None = _key("seed", "seed")
    """Weights and batch order; a retry keeps the seed of the trial it repeats."""
    backend: str | None = _key("backend", "backend")
    history: dict[str, list[float | None]] | None = _key("history", "history")
    """Per-epoch metrics (NaN and inf stored as null) and the applied learning rate."""
    outcome: str | None = _key("outcome", "outcome")
    """``"complete"``, ``"pruned"`` or ``"diverged"``."""
    epochs_run: int | None = _key("epochs_run", "epochs_run")
    train_seconds: float | None = _key("train_seconds", "train_seconds")
    startup_seconds: float | None = _key("startup_seconds", "startup_seconds")
    diverged_at_step: int | None = _key("diverged_at_step", "diverged_at_step")
    baseline: dict[str, Any] | None = _key("baseline")
    """A ``[[baseline]]`` schedule queued by the study file: family, relative, absolute."""
    retry_of: int | None = _key("retry_of")
    """The number of the interrupted trial this one runs again."""
    interrupted: bool | None = _key("interrupted")
    """True when Ctrl-C stopped the trial (it is queued again)."""
    error: str | None = _key("error")
    """Why the trial failed: ``"Type: message (at file.py:12)"``."""
    pack_size: int | None = _key("pack_size")
    """The slots of the packed model the trial trained in (:mod:`lrsearch.packing`)."""
    shuffle_seed: int | None = _key("shuffle_seed")
    """A packed trial's batch order, shared by its pack (``seed`` then seeds its weights)."""
    shuffle_epoch: int | None = _key("shuffle_epoch")
    """The pack's epoch (0-based) a packed trial joined at: it saw ``shuffle_seed``'s batch
    order from that epoch on (0: from the pack's start)."""
    replicate_of: int | None = _key("replicate_of")
    """The number of the trial whose configuration this one trains again with a fresh seed
    (``lrsearch confirm``, :mod:`lrsearch.confirm`): it trains exactly that trial's stored
    schedule, is never pruned, and is not counted against the study's budget. A replicate is
    known by its source and its seed; set from the moment it is queued."""
    duplicate_of: int | None = _key("duplicate_of")
    """On a replicate or a promotion ended FAIL without training: the lower-numbered trial
    that is the same replicate (same source and seed) or the same promotion (same source),
    queued by another process at the same instant."""
    rung: int | None = _key("rung")
    """Budget-aware successive halving (:mod:`lrsearch.halving`): the rung (0: the lowest)
    whose epochs the trial trained its whole schedule in; set from the moment it is created."""
    rung_epochs: int | None = _key("rung_epochs")
    """The epochs of the trial's rung: its whole schedule compressed into them."""
    promoted_from: int | None = _key("promoted_from")
    """The trial of the rung below whose configuration this one trains longer."""
    race: str | None = _key("race")
    """The family whose place in the family race (at rung 0) this trial takes."""
    twin_of: int | None = _key("twin_of")
    """A race trial that trains another's configuration with its own seed: the pair measures
    the noise the race's rule allows for (never promoted)."""

    #: Optuna's own system attribute on a trial its heartbeat retry enqueued.
    OPTUNA_RETRY_OF: ClassVar[str] = "failed_trial"

    def __post_init__(self) -> None:
        if isinstance(self.schedule, Mapping):
            object.__setattr__(self, "schedule", stored_schedule(self.schedule))

    @classmethod
    def of(cls, trial: _HasUserAttrs) -> TrialRecord:
        """The record of a trial (frozen or running)."""
        return cls.from_attrs(trial.user_attrs)

    def carried(self, retry_of: int) -> TrialRecord:
        """What a queued re-run of this trial carries: its seed, baseline and source (a
        replicate's), its rung and place (halving), and which trial it repeats (the same
        experiment: the same seed)."""
        return TrialRecord(
            seed=self.seed,
            baseline=self.baseline,
            retry_of=retry_of,
            replicate_of=self.replicate_of,
            rung=self.rung,
            rung_epochs=self.rung_epochs,
            promoted_from=self.promoted_from,
            race=self.race,
            twin_of=self.twin_of,
        )

    @property
    def diverged(self) -> bool:
        return self.outcome == "diverged"

    @property
    def copied(self) -> str:
        """What a trial that may be made twice at one instant repeats: ``"promotion"`` (a
        halving promotion) or ``"replicate"`` (``lrsearch confirm``); see :attr:`duplicate_of`."""
        return "promotion" if self.promoted_from is not None else "replicate"

    @property
    def replicate(self) -> bool:
        """A replicate of another trial (:attr:`replicate_of`), not a search trial."""
        return self.replicate_of is not None


def family_of(trial: optuna.Trial | optuna.trial.FrozenTrial) -> str | None:
    """A trial's schedule family: its stored schedule's, else its ``family`` parameter."""
    record = TrialRecord.of(trial)
    family = (record.schedule or {}).get("family") or (record.baseline or {}).get("family")
    family = family or trial.params.get("family")
    return str(family) if family else None


@dataclass(frozen=True)
class StudyRecord(_Record):
    """Everything lrsearch writes on a study."""

    study_file: str | None = _key("study_file")
    """The study file's text, as read (``lrsearch resume`` runs from it)."""
    fingerprint: str | None = _key("fingerprint")
    """Hash of the normalized config's fields that change results."""
    data_fingerprint: str | None = _key("data_fingerprint")
    versions: dict[str, str] | None = _key("versions")
    """lrsearch, Optuna, Keras and backend versions of the worker that created the study."""
    n_trials: int | None = _key("n_trials")
    """The study's budget of finished trials, over all workers (the last one set)."""
    lr_range: dict[str, Any] | None = _key("lr_range")
    """The learning-rate range a range test stored (``lrsearch find-lr --apply``, ``start
    --find-lr``): ``{"low", "high", ...}`` and its evidence (:meth:`lrsearch.rangetest.LRRange.
    record`). Every worker's search samples ``learning_rate`` inside it instead of the study
    file's range."""
    config: dict[str, Any] | None = _key("config")
    """The normalized study file: written last, so joiners wait for it (all else is set)."""

    @classmethod
    def of(cls, study: optuna.Study | _HasUserAttrs) -> StudyRecord:
        return cls.from_attrs(study.user_attrs)

    @property
    def metric(self) -> str | None:
        """The monitored metric of the stored config (``val_accuracy``, ...)."""
        metric = ((self.config or {}).get("study") or {}).get("metric")
        return str(metric) if metric else None

    @property
    def budget(self) -> int | None:
        return int(self.n_trials) if self.n_trials else None
