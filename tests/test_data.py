"""Tests of :mod:`lrsearch.data`: every source, the split, preprocessing, errors and the cache."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrsearch.data import Dataset, clear_cache, load_dataset
from lrsearch.exceptions import ConfigError, DataError


def _module(tmp_path: Path, body: str) -> str:
    """Writes a uniquely named module into ``tmp_path`` and returns its name."""
    name = f"lrs_data_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    return name


def _tabular_npz(path: Path, n: int = 60, **extra: Any) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(n, 4))
    y = np.arange(n) % 3
    np.savez(path, x_train=x, y_train=y, **extra)
    return path


def _assert_frozen(ds: Dataset) -> None:
    for array in (ds.x_train, ds.y_train, ds.x_val, ds.y_val):
        assert not array.flags.writeable
    with pytest.raises(ValueError):
        ds.x_train[0] = 0


# --- built-ins --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "shape", "n_classes", "kind", "total"),
    [
        ("digits", (8, 8, 1), 10, "image", 1797),
        ("breast_cancer", (30,), 2, "tabular", 569),
        ("wine", (13,), 3, "tabular", 178),
    ],
)
def test_builtins(
    source: str, shape: tuple[int, ...], n_classes: int, kind: str, total: int
) -> None:
    ds = load_dataset(source)
    assert ds.name == source
    assert ds.input_shape == shape
    assert ds.x_val.shape[1:] == shape
    assert (ds.n_classes, ds.kind) == (n_classes, kind)
    assert ds.x_train.dtype == np.float32 and ds.x_val.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.y_val.dtype == np.int64
    assert len(ds.x_train) == len(ds.y_train) and len(ds.x_val) == len(ds.y_val)
    assert len(ds.x_train) + len(ds.x_val) == total
    assert len(ds.x_val) == pytest.approx(0.2 * total, abs=1)
    assert set(np.unique(ds.y_train)) == set(range(n_classes))
    assert set(np.unique(ds.y_val)) == set(range(n_classes))  # stratified
    if kind == "image":
        assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
        assert ds.x_train.max() == 1.0
    _assert_frozen(ds)
    assert ds.steps_per_epoch(32) == -(-len(ds.x_train) // 32)


def test_split_is_stratified() -> None:
    ds = load_dataset("breast_cancer", validation_split=0.3, seed=3)
    assert ds.y_train.mean() == pytest.approx(ds.y_val.mean(), abs=0.01)


def test_split_is_deterministic_under_the_seed() -> None:
    first = load_dataset("wine", seed=7)
    clear_cache()
    again = load_dataset("wine", seed=7)
    assert again is not first
    for a, b in zip(
        (first.x_train, first.y_train, first.x_val, first.y_val),
        (again.x_train, again.y_train, again.x_val, again.y_val),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    other = load_dataset("wine", seed=8)
    assert not np.array_equal(other.y_train, first.y_train)
    assert other.fingerprint() != first.fingerprint()


def test_validation_split_sets_the_size() -> None:
    ds = load_dataset("digits", validation_split=0.5)
    assert abs(len(ds.x_train) - len(ds.x_val)) <= 1


def test_limit_keeps_the_first_training_samples() -> None:
    full = load_dataset("digits", seed=1)
    small = load_dataset("digits", seed=1, limit=50)
    assert small.x_train.shape == (50, 8, 8, 1)
    np.testing.assert_array_equal(small.x_train, full.x_train[:50])
    np.testing.assert_array_equal(small.x_val, full.x_val)


def test_steps_per_epoch() -> None:
    ds = load_dataset("digits", limit=100)
    assert [ds.steps_per_epoch(b) for b in (1, 32, 100, 101)] == [100, 4, 1, 1]
    with pytest.raises(ValueError, match="batch_size"):
        ds.steps_per_epoch(0)


# --- preprocessing ----------------------------------------------------------------------------


def test_standardization_uses_train_statistics_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x_train = rng.normal(5.0, 3.0, size=(40, 3))
    x_train[:, 2] = 7.0  # constant: std 0 -> 1
    x_val = rng.normal(-20.0, 10.0, size=(10, 3))  # very different: must not enter the stats
    y_train, y_val = np.arange(40) % 2, np.arange(10) % 2
    path = tmp_path / "t.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
    ds = load_dataset(f"npz:{path}")
    assert ds.kind == "tabular"
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[2] = 1.0
    np.testing.assert_allclose(ds.x_train, (x_train - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.x_val, (x_val - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.x_train[:, :2].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train[:, :2].std(axis=0), 1.0, atol=1e-5)
    assert np.all(ds.x_train[:, 2] == 0.0)


def test_standardization_after_a_split_uses_the_train_part(tmp_path: Path) -> None:
    ds = load_dataset(f"npz:{_tabular_npz(tmp_path / 's.npz')}")
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    assert not np.allclose(ds.x_val.mean(axis=0), 0.0, atol=1e-5)


def test_images_are_not_standardized(tmp_path: Path) -> None:
    x = np.random.default_rng(2).uniform(0.2, 0.4, size=(30, 5, 5)).astype(np.float32)
    path = tmp_path / "img.npz"
    np.savez(path, x_train=x, y_train=np.arange(30) % 2)
    ds = load_dataset(f"npz:{path}")
    assert ds.kind == "image" and ds.input_shape == (5, 5, 1)
    assert 0.2 <= ds.x_train.min() and ds.x_train.max() <= 0.4


# --- npz --------------------------------------------------------------------------------------


def test_npz_with_validation_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(20, 6, 6, 3), dtype=np.uint8)
    xv = rng.integers(0, 256, size=(8, 6, 6, 3), dtype=np.uint8)
    path = tmp_path / "v.npz"
    np.savez(path, x_train=x, y_train=np.arange(20) % 4 + 1, x_val=xv, y_val=np.arange(8) % 4 + 1)
    ds = load_dataset(f"npz:{path}", validation_split=0.5)  # ignored: val arrays given
    assert ds.kind == "image" and ds.input_shape == (6, 6, 3)
    assert (len(ds.x_train), len(ds.x_val), ds.n_classes) == (20, 8, 4)
    np.testing.assert_allclose(ds.x_train, x / 255.0, rtol=1e-6)  # uint8 scaled to [0, 1]
    np.testing.assert_array_equal(ds.y_train, np.arange(20) % 4)  # labels 1..4 -> 0..3
    np.testing.assert_array_equal(ds.y_val, np.arange(8) % 4)


def test_npz_without_validation_arrays_is_split(tmp_path: Path) -> None:
    ds = load_dataset(f"npz:{_tabular_npz(tmp_path / 'd.npz', n=100)}", validation_split=0.25)
    assert (len(ds.x_train), len(ds.x_val), ds.input_shape) == (75, 25, (4,))


def test_npz_keras_style_test_arrays_are_the_validation(tmp_path: Path) -> None:
    path = tmp_path / "k.npz"
    x = np.zeros((10, 4, 4), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(10) % 2, x_test=x[:3], y_test=np.arange(3) % 2)
    ds = load_dataset(f"npz:{path}")
    assert (len(ds.x_train), len(ds.x_val), ds.input_shape) == (10, 3, (4, 4, 1))


def test_relative_paths_resolve_against_base_dir_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    _tabular_npz(tmp_path / "sub" / "r.npz")
    assert load_dataset("npz:r.npz", base_dir=tmp_path / "sub").input_shape == (4,)
    monkeypatch.chdir(tmp_path)
    assert load_dataset("npz:sub/r.npz").input_shape == (4,)


def test_npz_with_wrong_array_names_lists_the_names_found(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, features=np.zeros((4, 2)), target=np.zeros(4))
    with pytest.raises(DataError) as info:
        load_dataset(f"npz:{path}")
    message = str(info.value)
    assert "x_train" in message and "y_train" in message
    assert "found: features, target" in message


def test_npz_with_x_val_but_no_y_val(tmp_path: Path) -> None:
    path = _tabular_npz(tmp_path / "h.npz", x_val=np.zeros((3, 4)))
    with pytest.raises(DataError, match="y_val"):
        load_dataset(f"npz:{path}")


def test_not_an_npz_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_text("not a zip")
    with pytest.raises(
        DataError, match=r"is not a valid \.npz \(numpy zip\) file \(it holds text\)"
    ):
        load_dataset(f"npz:{path}")


@pytest.mark.parametrize(
    "content",
    [b"x,y\n1,2\n", b"", b"PK\x03\x04 truncated", pickle.dumps({"x_train": [1, 2]})],
    ids=["text", "empty", "broken-zip", "pickle"],
)
def test_a_file_named_npz_that_is_not_a_zip(tmp_path: Path, content: bytes) -> None:
    """A text (or empty, or pickle) file named .npz: says it is no .npz (numpy zip) file; numpy's
    own words for it ("contains pickled (object) data", "allow_pickle") would mislead."""
    path = tmp_path / "train.npz"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_dataset("npz:train.npz", base_dir=tmp_path)
    message = str(info.value)
    assert f"'{path}' (data.source = 'npz:train.npz') is not a valid .npz (numpy zip) file" in (
        message
    )
    assert "numpy.savez" in message  # the fix
    assert "pickle" not in message.lower()
    assert "\n" not in message


def test_npz_holding_an_object_array_says_so(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, x_train=np.array([{"a": 1}, None], dtype=object), y_train=np.arange(2))
    with pytest.raises(DataError) as info:
        load_dataset("npz:obj.npz", base_dir=tmp_path)
    message = str(info.value)
    assert "array 'x_train'" in message and "Python objects" in message
    assert "allow_pickle" not in message


def test_npz_holding_a_single_npy_array(tmp_path: Path) -> None:
    path = tmp_path / "one.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros((3, 2)))
    with pytest.raises(DataError, match=r"holds a single array \(\.npy\), not an \.npz archive"):
        load_dataset("npz:one.npz", base_dir=tmp_path)


# --- csv --------------------------------------------------------------------------------------


def test_csv_with_string_labels(tmp_path: Path) -> None:
    names = ["dog", "bird", "cat"]
    code = {"bird": 0.0, "cat": 5.0, "dog": 10.0}
    lines = ["a,species,code"]
    for i in range(30):
        name = names[i % 3]
        lines.append(f"{i * 0.5},{name},{code[name]}")
    path = tmp_path / "animals.csv"
    path.write_text("\n".join(lines) + "\n")
    ds = load_dataset(f"csv:{path}", label_column="species", validation_split=0.3)
    assert (ds.kind, ds.input_shape, ds.n_classes) == ("tabular", (2,), 3)
    assert len(ds.x_train) + len(ds.x_val) == 30
    # Sorted label order: bird=0, cat=1, dog=2; "code" grows with it, also after standardizing.
    codes = ds.x_train[:, 1]
    for label in range(3):
        assert len(np.unique(codes[ds.y_train == label])) == 1
    order = [float(codes[ds.y_train == label][0]) for label in range(3)]
    assert order == sorted(order)


def test_csv_integer_labels_sort_numerically(tmp_path: Path) -> None:
    rows = ["x,label"] + [f"{i},{(2, 9, 10)[i % 3]}" for i in range(12)]
    path = tmp_path / "n.csv"
    path.write_text("\n".join(rows))
    ds = load_dataset(f"csv:{path}", validation_split=0.25, seed=0)
    # x = i and label = (2, 9, 10)[i % 3]: i % 3 == class id when 2 < 9 < 10 sort as numbers.
    x_raw = np.rint(np.concatenate([ds.x_train, ds.x_val])[:, 0] * 1e3)
    y = np.concatenate([ds.y_train, ds.y_val])
    by_x = y[np.argsort(x_raw)]
    np.testing.assert_array_equal(by_x, np.arange(12) % 3)


def test_csv_missing_label_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("a,b,labels\n1,2,x\n3,4,y\n")
    with pytest.raises(DataError, match="no label column 'label'.*Did you mean 'labels'"):
        load_dataset(f"csv:{path}")


def test_csv_non_numeric_feature(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a,label\n1,x\nhello,y\n")
    with pytest.raises(DataError, match="line 3, column 'a': 'hello' is not a number"):
        load_dataset(f"csv:{path}")


# --- python: ----------------------------------------------------------------------------------


def test_python_source_returning_a_dict(tmp_path: Path) -> None:
    name = _module(
        tmp_path,
        """
        import numpy as np

        def load():
            x = np.arange(80, dtype=float).reshape(20, 4)
            return {"x_train": x, "y_train": np.arange(20) % 2,
                    "x_val": x[:6], "y_val": np.arange(6) % 2}
        """,
    )
    ds = load_dataset(f"python:{name}:load", base_dir=tmp_path)
    assert (len(ds.x_train), len(ds.x_val), ds.input_shape, ds.kind) == (20, 6, (4,), "tabular")


def test_python_source_tuples_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(
        tmp_path,
        """
        import numpy as np

        def pair():
            return np.ones((30, 7, 7)), np.arange(30) % 3

        def four():
            return np.ones((10, 2)), np.arange(10) % 2, np.ones((4, 2)), np.arange(4) % 2
        """,
    )
    monkeypatch.chdir(tmp_path)
    ds = load_dataset(f"python:{name}:pair")
    assert (ds.kind, ds.input_shape, len(ds.x_train) + len(ds.x_val)) == ("image", (7, 7, 1), 30)
    ds = load_dataset(f"python:{name}:four")
    assert (len(ds.x_train), len(ds.x_val)) == (10, 4)


def test_python_source_import_failure_names_the_module(tmp_path: Path) -> None:
    """A module that is not there is a typo in the study file: ConfigError (exit 2)."""
    with pytest.raises(ConfigError) as info:
        load_dataset("python:lrs_no_such_module_xyz:load", base_dir=tmp_path)
    message = str(info.value)
    assert "Cannot import module 'lrs_no_such_module_xyz'" in message
    assert "No module named" in message


def test_python_source_missing_function_suggests(tmp_path: Path) -> None:
    """The module is there but the study file names no function of it: a typo, exit 2."""
    name = _module(tmp_path, "def load_data():\n    return None\n")
    with pytest.raises(
        ConfigError, match=f"Module '{name}' has no function 'load_dta'.*Did you mean 'load_data'"
    ):
        load_dataset(f"python:{name}:load_dta", base_dir=tmp_path)


def _user_folder(tmp_path: Path, files: dict[str, str]) -> Path:
    """Writes modules (name -> source) into a study folder and returns it."""
    folder = tmp_path / "study"
    folder.mkdir()
    for name, body in files.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(body).lstrip())
    return folder


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def test_python_source_imports_a_sibling_when_called(tmp_path: Path) -> None:
    """The study folder is on sys.path for the whole call, not only for the import."""
    loader, helpers = _unique("lrs_loader"), _unique("lrs_helpers")
    folder = _user_folder(
        tmp_path,
        {
            loader: f"""
                def load():
                    import {helpers}
                    return {helpers}.arrays()
                """,
            helpers: """
                import numpy as np

                def arrays():
                    return np.ones((20, 3)), np.arange(20) % 2
                """,
        },
    )
    ds = load_dataset(f"python:{loader}:load", base_dir=folder)
    assert ds.input_shape == (3,)
    assert str(folder) not in sys.path  # and taken off again


def _user_error(folder: Path, source: str) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(source, base_dir=folder)
    assert not isinstance(info.value, ConfigError)
    message = str(info.value)
    assert "\n" not in message
    assert f"data.source = {source!r}" in message
    return message


def test_python_source_raising_names_the_file_and_line(tmp_path: Path) -> None:
    name = _unique("lrs_raises")
    folder = _user_folder(
        tmp_path,
        {
            name: """
                import numpy as np

                def load():
                    x = np.ones((4, 2))
                    raise ValueError("no rows in\\nthe table")
                """
        },
    )
    message = _user_error(folder, f"python:{name}:load")
    assert f"(at {folder / name}.py:5)" in message
    assert "calling load() failed: ValueError: no rows in the table" in message  # one line


def test_python_source_error_in_a_sibling_names_the_innermost_user_frame(tmp_path: Path) -> None:
    loader, helpers = _unique("lrs_loader"), _unique("lrs_helpers")
    folder = _user_folder(
        tmp_path,
        {
            loader: f"""
                from {helpers} import read

                def load():
                    return read("x")
                """,
            helpers: """
                def read(key):
                    table = {}
                    return table[key]
                """,
        },
    )
    message = _user_error(folder, f"python:{loader}:load")
    assert f"(at {folder / helpers}.py:3)" in message
    assert "KeyError: 'x'" in message


def test_python_source_missing_sibling_when_called(tmp_path: Path) -> None:
    name = _unique("lrs_loader")
    folder = _user_folder(
        tmp_path, {name: "def load():\n    import lrs_gone_helpers_xyz\n    return None\n"}
    )
    message = _user_error(folder, f"python:{name}:load")
    assert f"(at {folder / name}.py:2)" in message
    assert "ModuleNotFoundError: No module named 'lrs_gone_helpers_xyz'" in message


@pytest.mark.parametrize("where", ["module", "sibling"])
def test_python_source_syntax_error_names_the_file_and_line(tmp_path: Path, where: str) -> None:
    loader, helpers = _unique("lrs_loader"), _unique("lrs_helpers")
    broken = "def arrays(:\n    return 1\n"
    files = (
        {loader: "import numpy\n\n" + broken}
        if where == "module"
        else {loader: f"def load():\n    import {helpers}\n", helpers: "x = 1\n" + broken}
    )
    folder = _user_folder(tmp_path, files)
    message = _user_error(folder, f"python:{loader}:load")
    culprit, line = (loader, 3) if where == "module" else (helpers, 2)
    assert f"(at {folder / culprit}.py:{line})" in message
    assert "SyntaxError:" in message


def test_python_source_error_at_import_names_the_file_and_line(tmp_path: Path) -> None:
    name = _unique("lrs_loader")
    folder = _user_folder(
        tmp_path, {name: "import lrs_not_installed_xyz\n\ndef load():\n    return None\n"}
    )
    message = _user_error(folder, f"python:{name}:load")  # a DataError: the module is there
    assert f"(at {folder / name}.py:1)" in message
    assert "ModuleNotFoundError: No module named 'lrs_not_installed_xyz'" in message


def test_python_source_long_error_message_is_cut(tmp_path: Path) -> None:
    name = _unique("lrs_loader")
    folder = _user_folder(tmp_path, {name: "def load():\n    raise RuntimeError('x' * 100_000)\n"})
    message = _user_error(folder, f"python:{name}:load")
    assert len(message) < 1000
    assert "RuntimeError: xxx" in message and "..." in message


def test_python_source_bad_return(tmp_path: Path) -> None:
    name = _module(
        tmp_path,
        "def a():\n    return 42\n\ndef b():\n    return {'x': 1, 'y': 2}\n",
    )
    with pytest.raises(DataError, match="returned int"):
        load_dataset(f"python:{name}:a", base_dir=tmp_path)
    with pytest.raises(DataError, match="keys x, y; it needs x_train and y_train"):
        load_dataset(f"python:{name}:b", base_dir=tmp_path)


@pytest.mark.parametrize(
    "source", ["python:just_a_module", "python::load", "python:mod:", "python:my-mod:load"]
)
def test_python_source_malformed(source: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset(source)
    assert f"data.source = {source!r}" in str(info.value)
    assert "python:module:function" in str(info.value)


def test_python_source_given_a_file_path_suggests_the_module() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'python:loaders:load'"):
        load_dataset("python:loaders.py:load")


# --- errors -----------------------------------------------------------------------------------


def test_missing_file_message() -> None:
    """A path that names no file is a study-file mistake (like click's Path(exists=True)): a
    ConfigError, exit 2; a file that is there but unreadable is a DataError."""
    with pytest.raises(ConfigError) as info:
        load_dataset("npz:x.npz", base_dir=Path("/nonexistent-lrsearch-dir"))
    assert str(info.value) == (
        "Data file 'x.npz' not found (data.source = 'npz:x.npz', looked for "
        "'/nonexistent-lrsearch-dir/x.npz'); give a path relative to the study file's folder or "
        "an absolute one."
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("digts", "data.source = 'digts': not a data source. Did you mean 'digits'?"),
        ("breast-cancer", "Did you mean 'breast_cancer'?"),
        (
            "nzp:a.npz",
            "data.source = 'nzp:a.npz': unknown scheme 'nzp:'. Did you mean 'npz:a.npz'?",
        ),
        ("train.csv", "Did you mean 'csv:train.csv'?"),
        ("keras:mnst", "data.source = 'keras:mnst': unknown Keras dataset 'mnst'"),
        ("keras:imagenet", "data.source = 'keras:imagenet': unknown Keras dataset 'imagenet'"),
        ("imagenet", "data.source = 'imagenet': not a data source. Valid forms:"),
        ("npz:", "data.source = 'npz:': lacks a path; write 'npz:PATH'"),
        ("csv:  ", "data.source = 'csv:  ': lacks a path; write 'csv:PATH'"),
    ],
)
def test_unknown_source(source: str, expected: str) -> None:
    """A typo in data.source is a ConfigError (exit 2), like every other study-file typo."""
    with pytest.raises(ConfigError) as info:
        load_dataset(source)
    message = str(info.value)
    assert expected in message
    if not source.startswith(("keras:", "npz:", "csv:")):
        for form in ("digits", "npz:PATH", "csv:PATH", "keras:mnist", "python:module:function"):
            assert form in message


def test_check_source_needs_no_file_system() -> None:
    """The form check that the study-file schema runs: forms only, paths are not looked at."""
    from lrsearch.data import check_source

    assert check_source(" npz:/no/such/file.npz ") == "npz:/no/such/file.npz"
    assert check_source("python:nowhere_xyz:load") == "python:nowhere_xyz:load"
    assert check_source("csv: train.csv ") == "csv:train.csv"
    with pytest.raises(ConfigError, match="Did you mean 'digits'"):
        check_source("digts")
    with pytest.raises(ConfigError, match="Did you mean 'mnist'"):
        check_source("keras:MNIST")


def test_seed_beyond_32_bits() -> None:
    """Not reported as a split problem: the seed is named."""
    with pytest.raises(
        DataError, match=r"seed must be an integer in \[0, 2\*\*32\) \(study.seed\)"
    ):
        load_dataset("wine", seed=2**32)


@pytest.mark.parametrize("split", [0, 0.0, 1, 1.0, 1.5, -0.1, "0.2"])
def test_validation_split_out_of_range(split: object) -> None:
    with pytest.raises(DataError, match=r"validation_split must be in \(0, 1\)"):
        load_dataset("wine", validation_split=split)  # type: ignore[arg-type]


def test_bad_limit() -> None:
    with pytest.raises(DataError, match="limit"):
        load_dataset("wine", limit=0)


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        (
            {"x_train": np.zeros((5, 2)), "y_train": np.arange(4) % 2},
            "5 samples but y_train has 4",
        ),
        ({"x_train": np.zeros((0, 2)), "y_train": np.zeros(0)}, "x_train is empty"),
        (
            {"x_train": np.array([[1.0, np.nan]] * 4), "y_train": np.arange(4) % 2},
            "x_train contains 4 NaN",
        ),
        ({"x_train": np.zeros((6, 2)), "y_train": np.ones(6)}, "classification needs at least 2"),
        ({"x_train": np.zeros(6), "y_train": np.arange(6) % 2}, "x_train has shape (6,)"),
        (
            {
                "x_train": np.zeros((6, 2)),
                "y_train": np.arange(6) % 2,
                "x_val": np.zeros((2, 3)),
                "y_val": np.arange(2),
            },
            "must match",
        ),
    ],
    ids=["length", "empty", "nan", "one-class", "1-d", "val-shape"],
)
def test_invalid_arrays(tmp_path: Path, arrays: dict[str, Any], expected: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        load_dataset(f"npz:{path}")
    assert expected in str(info.value)
    assert "npz:" in str(info.value)  # names the source


def test_keras_source_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lrsearch._imports import import_keras

    keras = import_keras()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))

    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("[Errno 101] Network is unreachable")

    # keras.utils.get_file is the public downloader; the dataset modules bind it at import, so
    # patch the name their load_data looks up too (still only the downloader).
    monkeypatch.setattr(keras.utils, "get_file", offline)
    for name in ("mnist", "fashion_mnist", "cifar10"):
        loader = sys.modules[getattr(keras.datasets, name).load_data.__module__]
        monkeypatch.setattr(loader, "get_file", offline)
        with pytest.raises(DataError) as info:
            load_dataset(f"keras:{name}")
        assert str(info.value) == (
            f"Cannot load keras:{name}: [Errno 101] Network is unreachable. It downloads on "
            "first use; run once with network access, or use a local npz: source."
        )


# --- fingerprint and cache --------------------------------------------------------------------


def _fixed_dataset(x_train: np.ndarray | None = None) -> Dataset:
    x = np.arange(12, dtype=np.float32).reshape(3, 4) if x_train is None else x_train
    y = np.array([0, 1, 0], dtype=np.int64)
    return Dataset("fixed", x, y, x[:1], y[:1], n_classes=2, kind="tabular")


def test_fingerprint_is_stable_across_runs() -> None:
    # A constant: the digest covers only bytes, shapes and dtypes, never ids or timestamps.
    assert _fixed_dataset().fingerprint() == (
        "07455e4e8644f99789f661fef35a0f5d3cfa74b27609513009c6e4b19e7d1847"
    )
    clear_cache()
    first = load_dataset("digits").fingerprint()
    clear_cache()
    assert load_dataset("digits").fingerprint() == first


def test_fingerprint_is_sensitive_to_the_data() -> None:
    base = _fixed_dataset().fingerprint()
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    x[2, 3] = 11.5
    assert _fixed_dataset(x).fingerprint() != base
    same_bytes = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert _fixed_dataset(same_bytes).fingerprint() == base
    assert _fixed_dataset(same_bytes.reshape(3, 2, 2)).fingerprint() != base  # shape
    assert _fixed_dataset(same_bytes.astype(np.float64)).fingerprint() != base  # dtype
    assert load_dataset("wine", seed=0).fingerprint() != load_dataset("wine", seed=1).fingerprint()


def test_cache_returns_the_same_object(tmp_path: Path) -> None:
    assert load_dataset("digits") is load_dataset("digits", validation_split=0.2, seed=0)
    assert load_dataset("digits", seed=1) is not load_dataset("digits", seed=2)
    path = _tabular_npz(tmp_path / "c.npz")
    first = load_dataset("npz:c.npz", base_dir=tmp_path)
    assert load_dataset("npz:c.npz", base_dir=tmp_path) is first
    assert load_dataset(f"npz:{path}").fingerprint() == first.fingerprint()  # same data
    _tabular_npz(tmp_path / "c.npz", n=90)  # the file changed: loaded again
    changed = load_dataset("npz:c.npz", base_dir=tmp_path)
    assert changed is not first and len(changed.x_train) + len(changed.x_val) == 90


def test_caller_arrays_are_not_frozen(tmp_path: Path) -> None:
    name = _module(
        tmp_path,
        """
        import numpy as np

        X = np.ones((10, 3), dtype=np.float32)

        def load():
            return X, np.arange(10) % 2, X[:4], np.arange(4) % 2
        """,
    )
    ds = load_dataset(f"python:{name}:load", base_dir=tmp_path)
    assert sys.modules[name].X.flags.writeable
    _assert_frozen(ds)


def test_import_is_light() -> None:
    code = (
        "import sys, lrsearch.data\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
