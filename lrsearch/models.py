"""Model builders: the small built-in networks and user models from ``python:module:function``.

A study file's ``model.type`` picks a builder and its other ``model.*`` keys are the builder's
parameters. :func:`build_model` returns an uncompiled ``keras.Model`` ending in a softmax over the
classes; the trainer compiles it with the optimizer and schedule of each trial.

This module imports Keras only inside :func:`build_model`, so importing it (and listing
:data:`MODEL_TYPES`) stays instant.

Example:
    >>> from lrsearch.models import MODEL_TYPES, build_model
    >>> sorted(MODEL_TYPES)
    ['cnn', 'mlp']
    >>> model = build_model("mlp", input_shape=(13,), n_classes=3, params={"hidden": [16]})
    >>> model.output_shape
    (None, 3)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from lrsearch.exceptions import ConfigError, did_you_mean

if TYPE_CHECKING:  # for annotations only: Keras is imported on first use
    import keras

__all__ = ["MODEL_TYPES", "ModelType", "build_model", "check_model_params"]

_ACTIVATIONS = (
    "relu",
    "gelu",
    "silu",
    "swish",
    "elu",
    "selu",
    "tanh",
    "sigmoid",
    "softplus",
    "leaky_relu",
    "relu6",
    "mish",
    "linear",
)


@dataclass(frozen=True)
class ModelType:
    """A built-in model type: what it is and its parameters with defaults.

    Attributes:
        name: The ``model.type`` value.
        description: One line for help texts.
        defaults: Every parameter with its default value.
        params: Every parameter with a one-line description.

    Example:
        >>> MODEL_TYPES["mlp"].defaults["hidden"]
        [64, 32]
    """

    name: str
    description: str
    defaults: Mapping[str, Any]
    params: Mapping[str, str]


MODEL_TYPES: dict[str, ModelType] = {
    "mlp": ModelType(
        name="mlp",
        description="Dense layers on flattened inputs (any data)",
        defaults={"hidden": [64, 32], "dropout": 0.0, "activation": "relu"},
        params={
            "hidden": "units of each hidden Dense layer, e.g. [64, 32] ([]: none)",
            "dropout": "dropout rate after each hidden layer, in [0, 1)",
            "activation": "activation of the hidden layers (a Keras activation name)",
        },
    ),
    "cnn": ModelType(
        name="cnn",
        description="Conv2D + MaxPooling2D blocks, global average pooling, Dense (image data)",
        defaults={"filters": [16, 32], "kernel_size": 3, "dense": 64, "dropout": 0.0},
        params={
            "filters": "filters of each Conv2D block, e.g. [16, 32]; a block pools (2x2) while "
            "the feature map is at least 2x2",
            "kernel_size": "Conv2D kernel size (square)",
            "dense": "units of the Dense layer before the output (0: none)",
            "dropout": "dropout rate before the output layer, in [0, 1)",
        },
    ),
}
"""The built-in model types by name."""


def build_model(
    spec: str,
    *,
    input_shape: tuple[int, ...],
    n_classes: int,
    params: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
    data_name: str | None = None,
) -> keras.Model:
    """Builds an uncompiled ``keras.Model`` mapping one sample to class probabilities.

    Args:
        spec: ``"mlp"``, ``"cnn"`` or ``"python:module:function"``. A python function is called as
            ``function(input_shape=..., n_classes=..., **params)`` and must return a
            ``keras.Model``; its module is imported from ``base_dir`` (else the current directory)
            or ``sys.path``, and that folder stays on ``sys.path`` during the call (so the
            function may import a module beside it when called).
        input_shape: Shape of one sample, e.g. ``(8, 8, 1)`` or ``(13,)``.
        n_classes: Number of classes (the softmax width).
        params: The type's parameters (see :data:`MODEL_TYPES`); omitted ones take defaults.
        base_dir: The study file's folder.
        data_name: The data source, only to make error messages concrete.

    Returns:
        The model (a ``keras.Model``, not compiled).

    Raises:
        ConfigError: Unknown type or parameter, a wrong parameter type or value, a ``cnn`` on
            non-image data, or a ``python:`` target that cannot be imported, raises (the message
            names the user's file and line and the exception) or does not return a
            ``keras.Model``. The message names the study-file field.

    Example:
        >>> model = build_model("cnn", input_shape=(8, 8, 1), n_classes=10)
        >>> model.output_shape
        (None, 10)
    """
    params = dict(params or {})
    input_shape = _check_input_shape(input_shape)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ConfigError(f"n_classes must be an integer >= 2. Received: {n_classes!r}")
    if not isinstance(spec, str):
        raise ConfigError(f"model.type must be a string. Received: {_shown(spec)}")
    spec = spec.strip()
    if spec.startswith("python:"):
        return _build_python(spec, input_shape, n_classes, params, base_dir)
    resolved = check_model_params(spec, params)
    builder: Callable[..., Any] = _build_mlp if spec == "mlp" else _build_cnn
    return builder(input_shape, n_classes, resolved, data_name)


def check_model_params(spec: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Checks a built-in model type and its parameters without importing Keras.

    The study-file schema runs this when the file is read, so a typo is reported before any
    data is loaded. (``activation`` is checked against Keras when the model is built.)

    Args:
        spec: A ``model.type`` other than ``python:...``.
        params: The other ``model.*`` keys.

    Returns:
        The parameters with defaults filled in.

    Raises:
        ConfigError: An unknown type or parameter, or a value of the wrong type or range; the
            message starts with the field (``model.hidden must be ...``).

    Example:
        >>> check_model_params("mlp", {"hidden": [8]})["hidden"]
        [8]
    """
    if spec not in MODEL_TYPES:
        hint = did_you_mean(spec, MODEL_TYPES)
        raise ConfigError(
            f"model.type = {_shown(spec)} is not a model type.{hint} Use one of: "
            f"{', '.join(MODEL_TYPES)}, or 'python:module:function' for your own model."
        )
    model_type = MODEL_TYPES[spec]
    for key in params:
        if key not in model_type.defaults:
            hint = did_you_mean(str(key), model_type.defaults)
            raise ConfigError(
                f"model.{_cut(str(key))} is not a parameter of {spec!r}.{hint} Parameters of "
                f"{spec!r}: {', '.join(model_type.defaults)}."
            )
    resolved = {**model_type.defaults, **params}
    if spec == "mlp":
        _int_list("hidden", resolved["hidden"], allow_empty=True)
        _rate("dropout", resolved["dropout"])
        if not isinstance(resolved["activation"], str):
            _activation_error(resolved["activation"])
    else:
        _int_list("filters", resolved["filters"], allow_empty=False)
        _positive_int("kernel_size", resolved["kernel_size"])
        _positive_int("dense", resolved["dense"], minimum=0)
        _rate("dropout", resolved["dropout"])
    return resolved


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any) -> str:
    """``repr(value)`` cut to 80 characters, for messages."""
    return _cut(repr(value))


# --- parameter checks -------------------------------------------------------------------------


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if not shape or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ConfigError(
            f"input_shape must be a non-empty tuple of positive integers. Received: "
            f"{input_shape!r}"
        )
    return shape


def _int_list(name: str, value: Any, *, allow_empty: bool) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, list | tuple)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        or (not value and not allow_empty)
    ):
        example = "[64, 32]" if name == "hidden" else "[16, 32]"
        what = "a list" if allow_empty else "a non-empty list"
        raise ConfigError(
            f"model.{name} must be {what} of positive integers, e.g. {name} = {example}. "
            f"Received: {_shown(value)}"
        )
    return list(value)


def _positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"model.{name} must be an integer >= {minimum}. Received: {_shown(value)}"
        )
    return value


def _rate(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0.0 <= float(value) < 1.0
    ):
        raise ConfigError(f"model.{name} must be a number in [0, 1). Received: {_shown(value)}")
    return float(value)


def _activation(keras: Any, value: Any) -> str:
    if isinstance(value, str):
        try:
            keras.activations.get(value)
            return value
        except (ValueError, TypeError):
            pass
    _activation_error(value)


def _activation_error(value: Any) -> NoReturn:
    hint = did_you_mean(_cut(str(value)), _ACTIVATIONS)
    raise ConfigError(
        f"model.activation = {_shown(value)} is not a Keras activation.{hint} Common ones: "
        f"{', '.join(_ACTIVATIONS)}."
    )


# --- builders ---------------------------------------------------------------------------------


def _build_mlp(
    input_shape: tuple[int, ...], n_classes: int, params: dict[str, Any], data_name: str | None
) -> Any:
    hidden = _int_list("hidden", params["hidden"], allow_empty=True)
    dropout = _rate("dropout", params["dropout"])
    from lrsearch._imports import import_keras

    keras = import_keras()
    activation = _activation(keras, params["activation"])
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    for units in hidden:
        x = layers.Dense(units, activation=activation)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mlp")


def _build_cnn(
    input_shape: tuple[int, ...], n_classes: int, params: dict[str, Any], data_name: str | None
) -> Any:
    if len(input_shape) != 3:
        data = f"data {data_name!r}" if data_name else "the data"
        kind = "tabular" if len(input_shape) == 1 else f"shaped {input_shape}"
        raise ConfigError(
            f"model.type = 'cnn' needs image data (h, w, c); {data} is {kind}. "
            "Use model.type = 'mlp'."
        )
    filters = _int_list("filters", params["filters"], allow_empty=False)
    kernel_size = _positive_int("kernel_size", params["kernel_size"])
    dense = _positive_int("dense", params["dense"], minimum=0)
    dropout = _rate("dropout", params["dropout"])
    from lrsearch._imports import import_keras

    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = inputs
    height, width = input_shape[0], input_shape[1]
    for n_filters in filters:
        x = layers.Conv2D(n_filters, kernel_size, padding="same", activation="relu")(x)
        if min(height, width) >= 2:  # pool while the map is at least 2x2 (digits are 8x8)
            x = layers.MaxPooling2D(2)(x)
            height, width = height // 2, width // 2
    x = layers.GlobalAveragePooling2D()(x)
    if dense:
        x = layers.Dense(dense, activation="relu")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn")


def _build_python(
    spec: str,
    input_shape: tuple[int, ...],
    n_classes: int,
    params: dict[str, Any],
    base_dir: Path | None,
) -> Any:
    from lrsearch._imports import import_keras
    from lrsearch.data import _call_user_function, _import_callable

    target = spec.removeprefix("python:")
    function = _import_callable(target, base_dir=base_dir, error=ConfigError, field="model.type")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins and C functions have none
        signature = None
    if signature is not None:
        try:
            signature.bind(input_shape=input_shape, n_classes=n_classes, **params)
        except TypeError as exc:
            accepted = [n for n in signature.parameters if n not in ("input_shape", "n_classes")]
            unknown = [key for key in params if key not in signature.parameters]
            hint = ""
            if unknown:
                hint = did_you_mean(
                    unknown[0], accepted, quote=lambda close: f"{close!r} for model.{unknown[0]}"
                )
            raise ConfigError(
                f"model.type = {_shown(spec)} cannot be called with input_shape, n_classes and "
                f"model parameters {sorted(params)}: {exc}.{hint} It must accept "
                "function(input_shape=..., n_classes=..., **params)."
            ) from exc
    keras = import_keras()
    model = _call_user_function(
        function,
        target,
        {"input_shape": input_shape, "n_classes": n_classes, **params},
        base_dir=base_dir,
        error=ConfigError,
        field="model.type",
        doing="building the model",
    )
    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"model.type = {_shown(spec)} returned {type(model).__name__}, not a keras.Model. The "
            "function must build and return the (uncompiled) model."
        )
    return model
