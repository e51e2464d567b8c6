"""Tests of :mod:`lrsearch.models`: the built-in networks, python: models and the errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrsearch._imports import import_keras
from lrsearch.exceptions import ConfigError
from lrsearch.models import MODEL_TYPES, build_model

keras = import_keras()

DIGITS: dict[str, Any] = {"input_shape": (8, 8, 1), "n_classes": 10}


def _module(tmp_path: Path, body: str) -> str:
    name = f"lrs_models_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    return name


def _probabilities(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def _assert_softmax(model: Any, input_shape: tuple[int, ...], n_classes: int) -> None:
    x = np.random.default_rng(0).uniform(size=(5, *input_shape)).astype(np.float32)
    out = _probabilities(model, x)
    assert out.shape == (5, n_classes)
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def _dense_units(model: Any) -> list[int]:
    return [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_model_types_registry() -> None:
    assert set(MODEL_TYPES) == {"mlp", "cnn"}
    assert MODEL_TYPES["mlp"].defaults == {
        "hidden": [64, 32],
        "dropout": 0.0,
        "activation": "relu",
    }
    assert MODEL_TYPES["cnn"].defaults == {
        "filters": [16, 32],
        "kernel_size": 3,
        "dense": 64,
        "dropout": 0.0,
    }
    for model_type in MODEL_TYPES.values():
        assert set(model_type.params) == set(model_type.defaults)


@pytest.mark.parametrize("spec", ["mlp", "cnn"])
def test_builtins_on_digits_shapes(spec: str) -> None:
    model = build_model(spec, **DIGITS)
    assert isinstance(model, keras.Model)
    assert model.name == spec
    assert not model.compiled
    assert model.input_shape == (None, 8, 8, 1)
    assert model.output_shape == (None, 10)
    assert model.count_params() < 20_000  # tiny
    _assert_softmax(model, (8, 8, 1), 10)


def test_mlp_parameters_are_applied() -> None:
    model = build_model(
        "mlp",
        input_shape=(13,),
        n_classes=3,
        params={"hidden": [7, 5], "dropout": 0.25, "activation": "tanh"},
    )
    assert _dense_units(model) == [7, 5, 3]
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [layer.rate for layer in dropouts] == [0.25, 0.25]
    assert not any(isinstance(layer, keras.layers.Flatten) for layer in model.layers)
    _assert_softmax(model, (13,), 3)
    assert _dense_units(build_model("mlp", input_shape=(4,), n_classes=2, params={"hidden": []}))
    assert (
        _dense_units(build_model("mlp", input_shape=(4,), n_classes=2, params={"hidden": 6}))[0]
        == 6
    )


def test_cnn_pools_only_while_the_map_is_at_least_2x2() -> None:
    model = build_model("cnn", **DIGITS, params={"filters": [4, 4, 4, 4, 4], "dense": 0})
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert (len(convs), len(pools)) == (5, 3)  # 8 -> 4 -> 2 -> 1, then no more pooling
    assert _dense_units(model) == [10]
    _assert_softmax(model, (8, 8, 1), 10)


def test_cnn_on_rgb_images() -> None:
    model = build_model("cnn", input_shape=(12, 12, 3), n_classes=4, params={"dropout": 0.1})
    _assert_softmax(model, (12, 12, 3), 4)


def test_cnn_on_tabular_data() -> None:
    with pytest.raises(ConfigError) as info:
        build_model("cnn", input_shape=(13,), n_classes=3, data_name="wine")
    assert str(info.value) == (
        "model.type = 'cnn' needs image data (h, w, c); data 'wine' is tabular. "
        "Use model.type = 'mlp'."
    )
    with pytest.raises(ConfigError, match="needs image data"):
        build_model("cnn", input_shape=(13,), n_classes=3)


# --- python: models ---------------------------------------------------------------------------


_USER_MODEL = """
from lrsearch._imports import import_keras


def tiny(input_shape, n_classes, width=4):
    keras = import_keras()
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(width, activation="relu")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="tiny")


def not_a_model(input_shape, n_classes):
    return [input_shape, n_classes]
"""


def test_python_model(tmp_path: Path) -> None:
    name = _module(tmp_path, _USER_MODEL)
    model = build_model(f"python:{name}:tiny", **DIGITS, params={"width": 3}, base_dir=tmp_path)
    assert model.name == "tiny"
    assert _dense_units(model) == [3, 10]
    _assert_softmax(model, (8, 8, 1), 10)


def test_python_model_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(tmp_path, _USER_MODEL)
    monkeypatch.chdir(tmp_path)
    assert build_model(f"python:{name}:tiny", input_shape=(5,), n_classes=2).output_shape == (
        None,
        2,
    )


def test_python_model_must_return_a_keras_model(tmp_path: Path) -> None:
    name = _module(tmp_path, _USER_MODEL)
    with pytest.raises(ConfigError, match="returned list, not a keras.Model"):
        build_model(f"python:{name}:not_a_model", **DIGITS, base_dir=tmp_path)


def test_python_model_import_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_model("python:lrs_missing_models_xyz:build", **DIGITS, base_dir=tmp_path)
    message = str(info.value)
    assert "Cannot import module 'lrs_missing_models_xyz'" in message
    assert "model.type = 'python:lrs_missing_models_xyz:build'" in message

    name = _module(tmp_path, _USER_MODEL)
    with pytest.raises(ConfigError, match="has no function 'tinny'.*Did you mean 'tiny'"):
        build_model(f"python:{name}:tinny", **DIGITS, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="python:module:function"):
        build_model("python:nofunction", **DIGITS)


def test_python_model_unknown_parameter(tmp_path: Path) -> None:
    name = _module(tmp_path, _USER_MODEL)
    with pytest.raises(ConfigError, match="Did you mean 'width' for model.widht"):
        build_model(f"python:{name}:tiny", **DIGITS, params={"widht": 3}, base_dir=tmp_path)


def _study_folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "study"
    folder.mkdir()
    for name, body in files.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(body).lstrip())
    return folder


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def test_python_model_imports_a_sibling_when_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a trial: called from elsewhere, with base_dir the study folder, twice."""
    models, layers = _unique("lrs_models"), _unique("lrs_layers")
    folder = _study_folder(
        tmp_path,
        {
            models: f"""
                def build(input_shape, n_classes):
                    import {layers}
                    return {layers}.tiny(input_shape, n_classes)
                """,
            layers: _USER_MODEL,
        },
    )
    monkeypatch.chdir(tmp_path)  # not the study folder
    for _ in range(2):  # build_model runs in every trial
        model = build_model(f"python:{models}:build", **DIGITS, base_dir=folder)
        assert model.output_shape == (None, 10)
    assert str(folder) not in sys.path


def _user_error(folder: Path, spec: str) -> str:
    with pytest.raises(ConfigError) as info:
        build_model(spec, **DIGITS, base_dir=folder)
    message = str(info.value)
    assert "\n" not in message
    assert f"model.type = {spec!r}" in message
    return message


def test_python_model_raising_names_the_file_and_line(tmp_path: Path) -> None:
    name = _unique("lrs_models")
    folder = _study_folder(
        tmp_path,
        {
            name: """
                def build(input_shape, n_classes):
                    if len(input_shape) != 1:
                        raise ValueError(f"wants flat input, got {input_shape}")
                """
        },
    )
    message = _user_error(folder, f"python:{name}:build")
    assert f"(at {folder / name}.py:3)" in message
    assert "building the model failed: ValueError: wants flat input, got (8, 8, 1)" in message


def test_python_model_error_inside_keras_names_the_user_line(tmp_path: Path) -> None:
    """The innermost frame in the study folder, not Keras's own."""
    name = _unique("lrs_models")
    folder = _study_folder(
        tmp_path,
        {
            name: """
                import keras

                def build(input_shape, n_classes):
                    inputs = keras.Input(shape=input_shape)
                    x = keras.layers.Dense(-3)(inputs)
                    return keras.Model(inputs, x)
                """
        },
    )
    message = _user_error(folder, f"python:{name}:build")
    assert f"(at {folder / name}.py:5)" in message
    assert "ValueError:" in message


def test_python_model_missing_sibling_when_called(tmp_path: Path) -> None:
    name = _unique("lrs_models")
    folder = _study_folder(
        tmp_path,
        {name: "def build(input_shape, n_classes):\n    import lrs_gone_layers_xyz\n"},
    )
    message = _user_error(folder, f"python:{name}:build")
    assert f"(at {folder / name}.py:2)" in message
    assert "ModuleNotFoundError: No module named 'lrs_gone_layers_xyz'" in message


def test_python_model_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    name = _unique("lrs_models")
    folder = _study_folder(
        tmp_path, {name: "import keras\n\ndef build(input_shape n_classes):\n    pass\n"}
    )
    message = _user_error(folder, f"python:{name}:build")
    assert f"importing {name} failed: SyntaxError:" in message
    assert f"(at {folder / name}.py:3)" in message


# --- errors -----------------------------------------------------------------------------------


def test_unknown_parameter_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        build_model("mlp", **DIGITS, params={"hidden_sizes": [8]})
    assert str(info.value).startswith(
        "model.hidden_sizes is not a parameter of 'mlp'. Did you mean 'hidden'? "
    )
    assert "hidden, dropout, activation" in str(info.value)
    with pytest.raises(ConfigError, match="model.filter is not a parameter of 'cnn'.*'filters'"):
        build_model("cnn", **DIGITS, params={"filter": [8]})


@pytest.mark.parametrize(
    ("spec", "params", "expected"),
    [
        ("mlp", {"hidden": "64"}, "model.hidden must be a list of positive integers"),
        ("mlp", {"hidden": [64, 0]}, "model.hidden"),
        ("mlp", {"hidden": [64.0]}, "model.hidden"),
        ("mlp", {"dropout": 1.0}, r"model.dropout must be a number in \[0, 1\)"),
        ("mlp", {"dropout": "0.1"}, "model.dropout"),
        ("mlp", {"activation": "rleu"}, "model.activation = 'rleu'.*Did you mean 'relu'"),
        ("cnn", {"filters": []}, "model.filters must be a non-empty list"),
        ("cnn", {"filters": ["16"]}, "model.filters"),
        ("cnn", {"kernel_size": 0}, "model.kernel_size must be an integer >= 1"),
        ("cnn", {"kernel_size": True}, "model.kernel_size"),
        ("cnn", {"dense": -1}, "model.dense must be an integer >= 0"),
        ("cnn", {"dropout": -0.5}, "model.dropout"),
    ],
)
def test_wrong_parameter_values(spec: str, params: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        build_model(spec, **DIGITS, params=params)


def test_unknown_type_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        build_model("mpl", **DIGITS)
    assert "model.type = 'mpl' is not a model type. Did you mean 'mlp'?" in str(info.value)
    assert "python:module:function" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"input_shape": (), "n_classes": 3}, "input_shape"),
        ({"input_shape": (8, 0), "n_classes": 3}, "input_shape"),
        ({"input_shape": (8,), "n_classes": 1}, "n_classes"),
    ],
)
def test_bad_shapes(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        build_model("mlp", **kwargs)


def test_import_is_light() -> None:
    code = (
        "import sys, lrsearch.models\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
