"""Study files: TOML in, validated objects out.

A study file has the sections ``[study]``, ``[data]``, ``[model]``, ``[training]``, ``[space]``
and ``[[baseline]]``; every field is documented in the README. :func:`load_study_file` reads and
validates one; every mistake becomes a :class:`~lrsearch.exceptions.ConfigError` whose one-line
message names the file, the field, the value and the fix.

Example:
    >>> cfg = parse_study_config({"study": {"name": "demo"}})
    >>> cfg.study.metric, cfg.study.direction, cfg.training.epochs
    ('val_accuracy', 'maximize', 10)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lrsearch.exceptions import ConfigError
from lrsearch.schedules import FAMILIES

__all__ = [
    "BaselineConfig",
    "DataConfig",
    "ModelConfig",
    "PrunerConfig",
    "SamplerConfig",
    "SpaceConfig",
    "StudyConfig",
    "StudySection",
    "TrainingConfig",
    "comparable",
    "config_diff",
    "load_study_file",
    "parse_study_config",
]

METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
_MAXIMIZED = ("accuracy", "val_accuracy")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplerConfig(_Strict):
    """``[study.sampler]``: which Optuna sampler proposes the trials."""

    name: Literal["tpe", "random", "qmc", "cmaes"] = "tpe"
    n_startup_trials: int = Field(8, ge=0)


class PrunerConfig(_Strict):
    """``[study.pruner]``: which Optuna pruner stops unpromising trials, and from when."""

    name: Literal["median", "hyperband", "successive_halving", "none"] = "median"
    start_fraction: float = Field(0.5, ge=0.0, le=1.0)
    n_startup_trials: int = Field(4, ge=0)
    reduction_factor: int = Field(3, ge=2)


class StudySection(_Strict):
    """``[study]``: the study's name, objective, budget, sampler and pruner."""

    name: str = Field(min_length=1, max_length=500)
    metric: Literal["val_accuracy", "val_loss", "accuracy", "loss"] = "val_accuracy"
    direction: Literal["maximize", "minimize"] | None = None
    n_trials: int = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()

    @field_validator("sampler", "pruner", mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _default_direction(self) -> StudySection:
        if self.direction is None:
            direction = "maximize" if self.metric in _MAXIMIZED else "minimize"
            object.__setattr__(self, "direction", direction)
        return self


class DataConfig(_Strict):
    """``[data]``: where the data comes from and how it is batched."""

    source: str = Field("digits", min_length=1)
    validation_split: float = Field(0.2, gt=0.0, lt=1.0)
    batch_size: int = Field(64, ge=1)
    label_column: str = "label"
    limit: int | None = Field(None, ge=1)


class ModelConfig(BaseModel):
    """``[model]``: ``type`` (``mlp``, ``cnn`` or ``python:module:function``) plus its params."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field("mlp", min_length=1)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainingConfig(_Strict):
    """``[training]``: epochs, optimizer and loss of every trial."""

    epochs: int = Field(10, ge=1, le=100_000)
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    loss: str = "sparse_categorical_crossentropy"
    divergence_factor: float = Field(10.0, gt=1.0)
    backend: Literal["tensorflow", "jax"] = "tensorflow"


Value = float | int | bool | str
RangeSpec = Value | list[Value] | dict[str, Any]


class SpaceConfig(BaseModel):
    """``[space]``: the families searched, the learning-rate range and per-family overrides.

    Per-family tables (``[space.onecycle]``) map a search parameter to a range ``[low, high]``,
    a table ``{low, high, log}``, a list of choices, or a single value that fixes it; an absolute
    schedule parameter (``three_phase = true``) may be fixed too.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    families: list[str] = Field(default_factory=lambda: list(FAMILIES), min_length=1)
    learning_rate: RangeSpec | None = None

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_family_name(name)
        if len(set(value)) != len(value):
            raise ValueError("lists a family twice")
        return value

    @model_validator(mode="after")
    def _known_tables(self) -> SpaceConfig:
        for name, table in (self.model_extra or {}).items():
            _check_family_name(name)
            if not isinstance(table, dict):
                raise ValueError(
                    f"`space.{name}` must be a table of that family's parameters, "
                    f"e.g. [space.{name}]"
                )
            family = FAMILIES[name]
            known = [p.name for p in family.search] + list(family.param_names)
            for key in table:
                if key not in known:
                    close = difflib.get_close_matches(key, known, n=1)
                    hint = f" Did you mean `{close[0]}`?" if close else ""
                    raise ValueError(
                        f"`space.{name}.{key}` is not a parameter of {name}.{hint} "
                        f"Searchable: {', '.join(p.name for p in family.search) or 'none'}"
                    )
        return self

    def family_overrides(self, family: str) -> dict[str, Any]:
        return dict((self.model_extra or {}).get(family, {}))


class BaselineConfig(BaseModel):
    """``[[baseline]]``: a fixed configuration enqueued as one of the study's first trials.

    Keys are the family, an optional ``name``, ``learning_rate``, and the family's search
    parameters (relative units) or absolute schedule parameters.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    family: str
    name: str | None = None
    learning_rate: float = Field(gt=0)

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        _check_family_name(value)
        return value

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StudyConfig(_Strict):
    """A whole study file."""

    study: StudySection
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    space: SpaceConfig = SpaceConfig()
    baseline: list[BaselineConfig] = Field(default_factory=list)

    def normalized(self) -> dict[str, Any]:
        """A JSON-ready dict with every default filled in (what is stored on the study)."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """sha256 of :meth:`normalized`, minus the fields that may change between runs."""
        data = comparable(self.normalized())
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


_MAY_CHANGE = {"study": ("n_trials", "timeout"), "training": ("backend",)}


def comparable(normalized: dict[str, Any]) -> dict[str, Any]:
    """A normalized config without the fields that may differ between runs of one study
    (the budget, the timeout and the Keras backend, a per-run choice)."""
    data = json.loads(json.dumps(normalized))
    for section, keys in _MAY_CHANGE.items():
        for key in keys:
            data.get(section, {}).pop(key, None)
    return data


def _check_family_name(name: str) -> None:
    if name not in FAMILIES:
        close = difflib.get_close_matches(name, FAMILIES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown schedule family {name!r}.{hint} Known: {', '.join(FAMILIES)}")


def _format_error(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        *parent, last = [str(p) for p in err["loc"]]
        fields = _fields_at(parent)
        close = difflib.get_close_matches(last, fields, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        where = ".".join(parent) or "the file"
        return f"unknown field `{loc}`.{hint} Fields of {where}: {', '.join(fields)}"
    if kind == "missing":
        return f"`{loc}` is required"
    msg = msg.removeprefix("Value error, ")
    if kind.startswith("value_error") and msg.startswith("`"):
        return msg
    value = err.get("input")
    shown = f" = {value!r}" if not isinstance(value, dict | list) or len(repr(value)) < 60 else ""
    return f"`{loc}`{shown}: {msg[0].lower() + msg[1:] if msg else msg}"


def _fields_at(path: list[str]) -> list[str]:
    model: Any = StudyConfig
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def parse_study_config(data: dict[str, Any], *, source: str = "study file") -> StudyConfig:
    """Validates a study file's parsed content.

    Raises:
        ConfigError: one line naming ``source``, the field, the value and the fix.
    """
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        errors = [_format_error(e) for e in exc.errors()]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(_one_line(f"{source}: {errors[0]}{more}")) from None


def _one_line(text: str) -> str:
    """Escapes line breaks and other unprintables (a quoted TOML key may hold them)."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def load_study_file(path: str | Path) -> tuple[StudyConfig, str]:
    """Reads and validates a study file.

    Returns:
        The validated config and the file's text (stored with the study).

    Raises:
        ConfigError: missing file, TOML syntax error, or a field that does not validate.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"Study file '{p}' not found; give the path of a .toml file (see studies/)."
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"Study file '{p}' is a directory; give a .toml file in it.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read study file '{p}': {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: TOML syntax error: {exc}") from None
    return parse_study_config(data, source=str(p)), text


def config_diff(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two normalized configs.

    Example:
        >>> config_diff({"training": {"epochs": 5}}, {"training": {"epochs": 8}})
        ['training.epochs: 5 -> 8']
    """
    out: list[str] = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(config_diff(a, b, f"{name}."))
        elif a != b:
            out.append(f"{name}: {json.dumps(a)} -> {json.dumps(b)}")
    return out
