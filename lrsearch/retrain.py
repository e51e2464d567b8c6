"""Train a trial's configuration again and save the model, its optimizer and schedule included."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrsearch.exceptions import ConfigError

__all__ = ["RetrainResult", "retrain"]


@dataclass
class RetrainResult:
    """What :func:`retrain` did."""

    study: str
    trial: int
    family: str
    epochs: int
    seed: int
    metric: str
    value: float | None
    trial_value: float | None  # what the trial itself reached
    path: Path
    history: dict[str, list[float]]


def retrain(
    name: str,
    save: str | Path,
    *,
    storage_url: str | None = None,
    trial: int | None = None,
    epochs: int | None = None,
    base_dir: Path | None = None,
) -> RetrainResult:
    """Trains trial ``trial`` (default: the best) of study ``name`` again and saves the model.

    The study's stored configuration (data, model, optimizer), the trial's absolute schedule and
    its seed (and a packed trial's batch order, ``shuffle_seed`` from ``shuffle_epoch`` on) are
    used; a plateau schedule gets its :class:`~lrsearch.schedules.PlateauCallback`. A trial
    that joined a running pack is replayed by a pack of one slot (its model then saved with a
    fresh optimizer state).
    With ``epochs`` the training runs that long on the same schedule (its steps past the
    trial's budget hold the schedule's end value).

    Args:
        name: The study.
        save: A ``.keras`` file to write.
        storage_url: The study database.
        trial: A trial number; default the best trial.
        epochs: Epochs to train; default the study's.
        base_dir: Where relative data paths and ``python:`` targets resolve (default: cwd).

    Raises:
        ConfigError: a path that does not end in ``.keras``, or an unknown trial.
    """
    from lrsearch.outputs import check_output_file

    path = Path(save)
    if path.suffix != ".keras":
        raise ConfigError(f"--save {str(save)!r}: the file name must end in .keras")
    check_output_file(path, option="--save")  # before any import, read or training

    from lrsearch._imports import select_backend
    from lrsearch.export import trial_schedule
    from lrsearch.objective import load_data, train
    from lrsearch.records import TrialRecord
    from lrsearch.schedules._plateau import detach_scale
    from lrsearch.space import SchedulePoint
    from lrsearch.study import StudyHandle

    handle = StudyHandle.open(name, storage_url)
    config, _ = handle.config()
    select_backend(os.environ.get("KERAS_BACKEND") or config.training.backend)
    schedule, frozen = trial_schedule(handle, trial)
    record = TrialRecord.of(frozen)
    seed = record.seed if record.seed is not None else config.study.seed + frozen.number
    dataset = load_data(config, base_dir)  # None: relative paths from the current folder
    point = SchedulePoint.from_record(record)
    if record.shuffle_epoch:
        # it joined a running pack: the pack's batch order from that epoch on, replayed by a
        # pack of one slot that loads it there
        from lrsearch.packing import PackTrainer

        trainer = PackTrainer(config, dataset, 1, base_dir=base_dir)
        (result,) = trainer.train(
            [point],
            seeds=[seed],
            shuffle_seed=record.shuffle_seed if record.shuffle_seed is not None else seed,
            epochs=epochs,
            skip_epochs=record.shuffle_epoch,
        )
        result.extra["model"] = trainer.export(0, point)
    else:
        result = train(
            config,
            dataset,
            point,
            seed=seed,
            epochs=epochs,
            keep_model=True,
            base_dir=base_dir,
            shuffle_seed=record.shuffle_seed,  # a packed trial's batch order (else seed's)
        )
    model: Any = result.extra["model"]
    detach_scale(model.optimizer)  # else Keras loads none of the optimizer's variables
    model.save(path)
    return RetrainResult(
        study=name,
        trial=frozen.number,
        family=schedule["family"],
        epochs=result.epochs_run,
        seed=seed,
        metric=config.study.metric,
        value=result.value,
        trial_value=frozen.value,
        path=path,
        history=result.history,
    )
