"""Study files: TOML in, validated objects out.

A study file has the sections ``[study]``, ``[data]``, ``[model]``, ``[training]``, ``[space]``
and ``[[baseline]]``; every field is documented in the README. :func:`load_study_file` reads and
validates one; every mistake becomes a :class:`~lrsearch.exceptions.ConfigError` whose one-line
message names the file, the field, the value (cut to 80 characters) and the fix.

Values are strict: a number in quotes, ``true`` where a number belongs or ``5.0`` where a whole
number belongs is refused rather than converted (a whole number may stand for a float). Floats
must be finite (no ``inf`` or ``nan``), and some have sensible upper bounds: learning rates at most
:data:`MAX_LEARNING_RATE`, ``training.weight_decay`` at most :data:`MAX_WEIGHT_DECAY`, and
``study.seed`` below ``2**32`` (what NumPy, scikit-learn and Keras take).

Example:
    >>> cfg = parse_study_config({"study": {"name": "demo"}})
    >>> cfg.study.metric, cfg.study.direction, cfg.training.epochs
    ('val_accuracy', 'maximize', 10)
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lrsearch.exceptions import ConfigError, did_you_mean
from lrsearch.schedules import DEFAULT_FAMILIES, FAMILIES

__all__ = [
    "MAX_LEARNING_RATE",
    "MAX_WEIGHT_DECAY",
    "STUDY_NAME_MAX_LENGTH",
    "BaselineConfig",
    "DataConfig",
    "ModelConfig",
    "PrunerConfig",
    "SamplerConfig",
    "SpaceConfig",
    "StudyConfig",
    "StudySection",
    "TrainingConfig",
    "check_study_name",
    "comparable",
    "config_diff",
    "load_study_file",
    "optimizer_mismatch",
    "parse_study_config",
]

METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
_MAXIMIZED = ("accuracy", "val_accuracy")

MAX_LEARNING_RATE = 10.0
"""The largest learning rate a study file may give (fixed, a range bound or a baseline's)."""

MAX_WEIGHT_DECAY = 1.0
"""The largest ``training.weight_decay`` (AdamW's decoupled decay; 0.1 is already strong)."""

MAX_PACK = 64
"""The most trials ``training.pack`` trains in one packed ``fit`` (:mod:`lrsearch.packing`)."""

STUDY_NAME_MAX_LENGTH = 500
"""The longest study name: Optuna keeps it in a ``VARCHAR(512)`` column."""

_SEED_LIMIT = 2**32
_SHOWN = 80  # characters of a value shown in a message


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


_LOOSE = ConfigDict(extra="allow", frozen=True, strict=True, allow_inf_nan=False)
"""Sections that also hold free keys (model parameters, family tables, baseline parameters):
the declared fields are strict, the free keys are checked by their own validators."""


def check_study_name(name: str, field: str = "study.name") -> str:
    """Checks a study name: one line of printable characters, 1 to 500 of them.

    Args:
        name: The name (``study.name`` or ``--study-name``).
        field: How the message names where it came from.

    Returns:
        ``name`` unchanged.

    Raises:
        ConfigError: One line naming ``field``, the (cut) value and what is wrong.

    Example:
        >>> check_study_name("digits-lr")
        'digits-lr'
        >>> check_study_name("a\\nb", field="--study-name")
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.ConfigError: --study-name 'a\\nb': has a line break (U+000A) at ...
    """
    if not isinstance(name, str):
        raise ConfigError(f"{_where(field)} {_shown(name)}: must be a string")
    problem = _study_name_problem(name)
    if problem is not None:
        raise ConfigError(_one_line(f"{_where(field)} {_shown(name)}: {problem}"))
    return name


def _where(field: str) -> str:
    """``--study-name`` for an option, ``study.name =`` for a study-file field."""
    return field if field.startswith("-") else f"{field} ="


def _study_name_problem(name: str) -> str | None:
    if not name:
        return "is empty; give the study a name"
    if not name.strip():
        return "is blank; give the study a name"
    if len(name) > STUDY_NAME_MAX_LENGTH:
        return (
            f"has {len(name)} characters; a study name has at most {STUDY_NAME_MAX_LENGTH} "
            "(Optuna's column)"
        )
    for position, char in enumerate(name, start=1):
        if not char.isprintable():
            return (
                f"has a {_char_kind(char)} (U+{ord(char):04X}) at position {position}; a study "
                "name must be one line of printable characters"
            )
    if name != name.strip():
        return f"starts or ends with spaces; write {_shown(name.strip())}"
    return None


_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def _char_kind(char: str) -> str:
    if char in _LINE_BREAKS:
        return "line break"
    if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
        return "control character"
    return "invisible or non-printable character"


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


class HalvingConfig(_Strict):
    """``[study.halving]``: budget-aware successive halving (``strategy = "halving"``,
    :mod:`lrsearch.halving`)."""

    eta: int = Field(3, ge=2)
    """Each rung keeps the best 1/eta of the one below and trains eta times longer."""
    min_epochs: int | None = Field(None, ge=1)
    """The lowest rung's epochs (default: the epochs / eta^2, at least 1)."""
    race: bool = True
    """Race the families at the lowest rung; families clearly behind take no more trials."""
    race_trials: int = Field(2, ge=1)
    """Configurations per family in the race (each family's first one also trains twice)."""


class StudySection(_Strict):
    """``[study]``: the study's name, objective, budget, sampler and pruner."""

    name: str = Field(min_length=1, max_length=STUDY_NAME_MAX_LENGTH)
    metric: Literal["val_accuracy", "val_loss", "accuracy", "loss"] = "val_accuracy"
    direction: Literal["maximize", "minimize"] | None = None
    n_trials: int = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0, lt=_SEED_LIMIT)
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    strategy: Literal["prune", "halving"] = "prune"
    """``prune``: every trial trains the full epochs, the pruner stops it early; ``halving``:
    rungs of whole schedules compressed to fewer epochs (``n_trials`` new configurations)."""
    halving: HalvingConfig = HalvingConfig()

    @field_validator("sampler", "pruner", mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _one_line_name(cls, value: str) -> str:
        problem = _study_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

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
    label_column: str = Field("label", min_length=1)
    limit: int | None = Field(None, ge=1)

    @field_validator("source")
    @classmethod
    def _source_form(cls, value: str) -> str:
        from lrsearch.data import source_problem  # numpy: only once a file is validated

        problem = source_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class ModelConfig(BaseModel):
    """``[model]``: ``type`` (``mlp``, ``cnn`` or ``python:module:function``) plus its params."""

    model_config = _LOOSE

    type: str = Field("mlp", min_length=1)

    @model_validator(mode="after")
    def _known_type_and_params(self) -> ModelConfig:
        """A built-in type and its parameters, or the form of ``python:module:function`` (its
        module is imported when the model is built, from the study file's folder)."""
        spec = self.type.strip()
        if spec.startswith("python:"):
            from lrsearch.data import source_problem

            problem = source_problem(spec)
            if problem is not None:
                raise ValueError(f"`model.type` = {_shown(self.type)}: {problem}")
            return self
        from lrsearch.models import check_model_params

        try:
            check_model_params(spec, self.params)
        except ConfigError as exc:  # "model.hidden must be ...": names its field already
            raise ValueError(str(exc)) from None
        return self

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainingConfig(_Strict):
    """``[training]``: epochs, optimizer and loss of every trial."""

    epochs: int = Field(10, ge=1, le=100_000)
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0, le=MAX_WEIGHT_DECAY)
    loss: str = "sparse_categorical_crossentropy"
    divergence_factor: float = Field(10.0, gt=1.0)
    backend: Literal["tensorflow", "jax"] = "tensorflow"
    pack: Annotated[int, Field(ge=1, le=MAX_PACK)] | Literal["auto"] = "auto"
    """Trials trained at once in one packed model (:mod:`lrsearch.packing`); ``"auto"``: a
    short calibration picks it for the built-in models, 1 for a ``python:`` model."""


Value = float | int | bool | str
RangeSpec = Value | list[Value] | dict[str, Any]


class SpaceConfig(BaseModel):
    """``[space]``: the families searched, the learning-rate range and per-family overrides.

    Per-family tables (``[space.onecycle]``) map a search parameter to a range ``[low, high]``,
    a table ``{low, high, log}``, a list of choices, or a single value that fixes it; an absolute
    schedule parameter (``three_phase = true``) may be fixed too.
    """

    model_config = _LOOSE

    families: list[str] = Field(default_factory=lambda: list(DEFAULT_FAMILIES), min_length=1)
    learning_rate: RangeSpec | None = None

    @field_validator("learning_rate")
    @classmethod
    def _learning_rate_range(cls, value: RangeSpec | None) -> RangeSpec | None:
        if value is not None:
            _check_learning_rate_spec("space.learning_rate", value)
        return value

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
            for key, spec in table.items():
                if key not in known:
                    hint = did_you_mean(key, known, quote="`")
                    raise ValueError(
                        f"`space.{name}.{_cut(key, 60)}` is not a parameter of {name}.{hint} "
                        f"Searchable: {', '.join(p.name for p in family.search) or 'none'}"
                    )
                _check_range_spec(f"space.{name}.{key}", spec)
        return self

    def family_overrides(self, family: str) -> dict[str, Any]:
        return dict((self.model_extra or {}).get(family, {}))


class BaselineConfig(BaseModel):
    """``[[baseline]]``: a fixed configuration enqueued as one of the study's first trials.

    Keys are the family, an optional ``name``, ``learning_rate``, and the family's search
    parameters (relative units) or absolute schedule parameters.
    """

    model_config = _LOOSE

    family: str
    name: str | None = None
    learning_rate: float = Field(gt=0, le=MAX_LEARNING_RATE)

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

    @model_validator(mode="after")
    def _finite_baseline_params(self) -> StudyConfig:
        for i, entry in enumerate(self.baseline):
            for key, value in entry.params.items():
                _check_finite(f"baseline.{i}.{_cut(str(key), 60)}", value)
        return self

    @model_validator(mode="after")
    def _rungs_fit_the_epochs(self) -> StudyConfig:
        if self.study.strategy != "halving":
            return self
        epochs, low = self.training.epochs, self.study.halving.min_epochs
        if epochs < 2:
            raise ValueError(
                f"`study.strategy` = 'halving' needs training.epochs >= 2 for two rungs "
                f"(it is {epochs}); raise training.epochs or use strategy = 'prune'"
            )
        if low is not None and low >= epochs:
            raise ValueError(
                f"`study.halving.min_epochs` = {low} must be below training.epochs ({epochs}): "
                "the lowest rung trains fewer epochs than the full training"
            )
        return self

    @model_validator(mode="after")
    def _optimizer_fits_families(self) -> StudyConfig:
        wanted = [*self.space.families, *(b.family for b in self.baseline)]
        for name in dict.fromkeys(wanted):
            if FAMILIES[name].optimizer and self.training.optimizer == "sgd":
                raise ValueError(optimizer_mismatch(name, self.training.optimizer))
        return self

    def with_pack(self, pack: int | str) -> StudyConfig:
        """This config with ``training.pack = pack`` (validated: one line naming ``--pack``)."""
        whole = isinstance(pack, int) and not isinstance(pack, bool) and 1 <= pack <= MAX_PACK
        if not whole and pack != "auto":
            raise ConfigError(
                f"--pack must be 'auto' or a whole number from 1 to {MAX_PACK}. Received: {pack!r}"
            )
        training = self.training.model_copy(update={"pack": pack})
        return self.model_copy(update={"training": training})

    def normalized(self) -> dict[str, Any]:
        """A JSON-ready dict with every default filled in (what is stored on the study)."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """sha256 of :meth:`normalized`, minus the fields that may change between runs."""
        data = comparable(self.normalized())
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


_MAY_CHANGE = {"study": ("n_trials", "timeout"), "training": ("backend", "pack")}


def comparable(normalized: dict[str, Any]) -> dict[str, Any]:
    """A normalized config without the fields that may differ between runs of one study
    (the budget, the timeout and the Keras backend, a per-run choice)."""
    data = json.loads(json.dumps(normalized))
    for section, keys in _MAY_CHANGE.items():
        for key in keys:
            data.get(section, {}).pop(key, None)
    return data


def optimizer_mismatch(family: str, optimizer: str) -> str:
    """The line for a family that trains with its own Adam-like optimizer in a study whose
    ``training.optimizer`` is not Adam-like."""
    own = FAMILIES[family].optimizer
    return (
        f"`space.families`: {family} trains with keras.optimizers.{own}, which needs "
        f"training.optimizer = 'adam' or 'adamw' (it is {optimizer!r}); set that, or remove "
        f"{family} from space.families and [[baseline]]"
    )


def _check_family_name(name: str) -> None:
    if name not in FAMILIES:
        hint = did_you_mean(name, FAMILIES)
        raise ValueError(
            f"unknown schedule family {_shown(name)}.{hint} Known: {', '.join(FAMILIES)}"
        )


_RANGE_KEYS = ("low", "high", "log")
_RANGE_FORMS = "[low, high], {low, high, log} (e.g. {low = 0.1, high = 0.5, log = true})"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_finite(where: str, value: Any) -> None:
    """Refuses ``inf`` and ``nan`` anywhere in a free value (lists and tables included)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"`{where}` = {value!r}: must be a finite number (no inf or nan)")
    if isinstance(value, list):
        for item in value:
            _check_finite(where, item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_finite(f"{where}.{_cut(str(key), 60)}", item)


def _check_range_spec(where: str, spec: Any) -> None:
    """A ``[space.FAMILY]`` value: a fixed value, a list ([low, high] or choices), or a table
    ``{low, high, log}`` with number bounds and a boolean ``log``. Finite numbers everywhere."""
    _check_finite(where, spec)
    if not isinstance(spec, dict):
        return
    unknown = [k for k in spec if k not in _RANGE_KEYS]
    if unknown or "low" not in spec or "high" not in spec:
        what = f"unknown key `{_cut(str(unknown[0]), 60)}`" if unknown else "needs low and high"
        raise ValueError(
            f"`{where}` = {_shown(spec)}: {what}; a range table is {{low, high, log}}"
        )
    for key in ("low", "high"):
        if not _is_number(spec[key]):
            raise ValueError(
                f"`{where}.{key}` = {_shown(spec[key])}: must be a finite number"
                + (" (without quotes)" if isinstance(spec[key], str) else "")
            )
    if "log" in spec and not isinstance(spec["log"], bool):
        raise ValueError(
            f"`{where}.log` = {_shown(spec['log'])}: must be true or false"
            + (" (without quotes)" if isinstance(spec["log"], str) else "")
        )


def _check_learning_rate_spec(where: str, spec: Any) -> None:
    """``space.learning_rate``: a number, [low, high] or {low, high, log}, each bound in
    (0, MAX_LEARNING_RATE]."""
    if isinstance(spec, list):
        if len(spec) != 2 or not all(_is_number(v) for v in spec):
            raise ValueError(f"`{where}` = {_shown(spec)}: a range is [low, high], two numbers")
        bounds = list(spec)
    elif isinstance(spec, dict):
        _check_range_spec(where, spec)
        bounds = [spec["low"], spec["high"]]
    elif _is_number(spec):
        bounds = [spec]
    else:
        raise ValueError(
            f"`{where}` = {_shown(spec)}: must be a number > 0 (a fixed learning rate) or a "
            f"range: {_RANGE_FORMS}"
        )
    log = not isinstance(spec, dict) or spec.get("log", True)
    for bound in bounds:
        if not math.isfinite(bound):
            raise ValueError(f"`{where}` = {_shown(spec)}: must be finite numbers (no inf or nan)")
        if bound <= 0:
            why = " (a log range needs low > 0)" if log and len(bounds) == 2 else ""
            raise ValueError(f"`{where}` = {_shown(spec)}: a learning rate must be > 0{why}")
        if bound > MAX_LEARNING_RATE:
            raise ValueError(
                f"`{where}` = {_shown(spec)}: a learning rate must be > 0 and "
                f"<= {MAX_LEARNING_RATE:g}"
            )


def _cut(text: str, limit: int = _SHOWN) -> str:
    """``text`` cut to ``limit`` characters, ``...`` marking the cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any) -> str:
    """A value as a message shows it: its repr, cut to 80 characters."""
    return _cut(repr(value))


def _type_hint(kind: str, value: Any) -> str | None:
    """The fix for a strict-type error: what the value must be and how to write it."""
    text = value.strip() if isinstance(value, str) else None
    if kind in ("int_type", "int_from_float", "int_parsing"):
        hint = ""
        if isinstance(value, bool):
            hint = " (a number, not true/false)"
        elif text is not None and text.lstrip("+-").isascii() and text.lstrip("+-").isdigit():
            hint = f" (write it without quotes: {text})"
        elif isinstance(value, float) and math.isfinite(value) and value == int(value):
            hint = f" (write {int(value)})"
        return f"must be a whole number{hint}"
    if kind in ("float_type", "float_parsing"):
        hint = ""
        if isinstance(value, bool):
            hint = " (a number, not true/false)"
        elif text is not None and _parses_as_float(text):
            hint = f" (write it without quotes: {text})"
        return f"must be a number{hint}"
    if kind == "finite_number":
        return "must be a finite number (no inf or nan)"
    if kind == "string_type":
        if isinstance(value, bool | int | float):
            shown = str(value).lower() if isinstance(value, bool) else repr(value)
            return f'must be a string (put it in quotes: "{shown}")'
        return "must be a string"
    if kind == "bool_type":
        return "must be true or false" + (" (without quotes)" if text is not None else "")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a table"
    if kind == "list_type":
        return "must be a list, e.g. [..., ...]"
    return None


def _parses_as_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _format_error(err: Any) -> str:
    parts = [_cut(str(p), 60) for p in err["loc"]]
    loc = ".".join(parts)
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        *parent, last = [str(p) for p in err["loc"]]
        fields = _fields_at(parent)
        hint = did_you_mean(last, fields, quote="`")
        where = ".".join(parent) or "the file"
        return f"unknown field `{loc}`.{hint} Fields of {where}: {', '.join(fields)}"
    if kind == "missing":
        return f"`{loc}` is required"
    value = err.get("input")
    msg = msg.removeprefix("Value error, ")
    if kind.startswith("value_error") and (
        msg.startswith("`") or msg.startswith((f"{loc}.", f"{loc} "))
    ):
        return msg  # it names its field already
    msg = _type_hint(kind, value) or msg.replace("Input should", "must", 1).replace(
        "String should", "must", 1
    )
    shown = (
        f" = {_shown(value)}"
        if not isinstance(value, dict | list) or len(repr(value)) < 60
        else ""
    )
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
