"""Data sources: every dataset a study can train on, as one immutable :class:`Dataset`.

A source is a short string (a study file's ``data.source``):

- ``digits``, ``breast_cancer``, ``wine``: scikit-learn's bundled datasets (no download);
- ``npz:PATH``: arrays ``x_train``, ``y_train`` and optionally ``x_val``, ``y_val`` (or Keras-style
  ``x_test``, ``y_test``);
- ``csv:PATH``: a header row, a label column and numeric feature columns;
- ``keras:mnist``, ``keras:fashion_mnist``, ``keras:cifar10``: ``keras.datasets`` (downloaded into
  ``~/.keras`` on first use; their test split is the validation split);
- ``python:module:function``: a function of yours returning the arrays.

Labels always become ``int64`` class ids ``0..n_classes-1`` (the sorted distinct labels), features
``float32``. Tabular features are standardized with the training split's statistics; images are
``(n, h, w, c)`` floats in ``[0, 1]``. Only numpy is imported at module level: scikit-learn and
Keras are imported when a source needs them.

Example:
    >>> from lrsearch.data import load_dataset
    >>> ds = load_dataset("wine", validation_split=0.25, seed=1)
    >>> ds.kind, ds.input_shape, ds.n_classes
    ('tabular', (13,), 3)
    >>> ds.steps_per_epoch(32)
    5
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import importlib
import math
import os
import sys
import traceback
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrsearch.exceptions import ConfigError, DataError, LRSearchError, did_you_mean

__all__ = [
    "BUILTIN_SOURCES",
    "KERAS_SOURCES",
    "SOURCE_FORMS",
    "Dataset",
    "check_source",
    "clear_cache",
    "load_dataset",
    "source_problem",
]

BUILTIN_SOURCES: dict[str, str] = {
    "digits": "scikit-learn 8x8 handwritten digits, 1797 images, 10 classes",
    "breast_cancer": "scikit-learn breast cancer, 569 samples x 30 features, 2 classes",
    "wine": "scikit-learn wine, 178 samples x 13 features, 3 classes",
}
"""The built-in sources that need no file and no download, with a one-line description."""

KERAS_SOURCES: dict[str, str] = {
    "mnist": "28x28 grey digits, 60000 + 10000 images, 10 classes",
    "fashion_mnist": "28x28 grey clothing, 60000 + 10000 images, 10 classes",
    "cifar10": "32x32 colour objects, 50000 + 10000 images, 10 classes",
}
"""The ``keras:NAME`` sources (downloaded into ``~/.keras`` on first use)."""

SOURCE_FORMS: tuple[str, ...] = (
    *BUILTIN_SOURCES,
    "npz:PATH",
    "csv:PATH",
    *(f"keras:{name}" for name in KERAS_SOURCES),
    "python:module:function",
)
"""Every valid form of a source string, for help texts and error messages."""

_SCHEMES = ("npz", "csv", "keras", "python")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded, split and preprocessed dataset; its arrays are read-only.

    Attributes:
        name: The source string it was loaded from.
        x_train: ``float32`` features, ``(n, h, w, c)`` for images or ``(n, features)``.
        y_train: ``int64`` class ids in ``0..n_classes-1``.
        x_val: Validation features, same layout as ``x_train``.
        y_val: Validation class ids.
        n_classes: Number of classes.
        kind: ``"image"`` or ``"tabular"``.

    Example:
        >>> ds = load_dataset("digits")
        >>> ds.input_shape, ds.x_train.dtype.name, ds.y_train.dtype.name
        ((8, 8, 1), 'float32', 'int64')
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_classes: int
    kind: str
    _fingerprint: list[str] = field(default_factory=list, init=False, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample, ``x_train.shape[1:]``.

        Example:
            >>> load_dataset("breast_cancer").input_shape
            (30,)
        """
        return tuple(int(d) for d in self.x_train.shape[1:])

    def fingerprint(self) -> str:
        """A SHA-256 hex digest of the four arrays (bytes, shapes and dtypes), stable across runs.

        Two datasets with equal arrays have equal fingerprints, whatever their source string.

        Example:
            >>> len(load_dataset("wine").fingerprint())
            64
        """
        if not self._fingerprint:
            digest = hashlib.sha256()
            for label, array in (
                ("x_train", self.x_train),
                ("y_train", self.y_train),
                ("x_val", self.x_val),
                ("y_val", self.y_val),
            ):
                contiguous = np.ascontiguousarray(array)
                digest.update(f"{label}|{contiguous.dtype.str}|{contiguous.shape}|".encode())
                digest.update(contiguous.tobytes())
            self._fingerprint.append(digest.hexdigest())
        return self._fingerprint[0]

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches in one epoch over the training split, ``ceil(n_train / batch_size)``.

        Raises:
            ConfigError: ``batch_size`` is not a positive integer.

        Example:
            >>> load_dataset("digits").steps_per_epoch(100)
            15
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer. Received: {batch_size!r}")
        return math.ceil(len(self.x_train) / batch_size)


def load_dataset(
    source: str,
    *,
    validation_split: float = 0.2,
    seed: int = 0,
    label_column: str = "label",
    limit: int | None = None,
    base_dir: Path | None = None,
) -> Dataset:
    """Loads, splits and preprocesses a data source (cached per process).

    Args:
        source: One of :data:`SOURCE_FORMS` (e.g. ``"digits"``, ``"npz:data/train.npz"``).
        validation_split: Fraction held out for validation when the source has no validation
            arrays; in (0, 1). The split is stratified when every class allows it.
        seed: Seed of the split (same seed, same split).
        label_column: The label column of a ``csv:`` source.
        limit: Keep only the first ``limit`` training samples (after the split).
        base_dir: Folder that relative paths and ``python:`` modules resolve against (the study
            file's folder); the current directory when ``None``.

    Returns:
        The :class:`Dataset`. The same arguments return the same object within a process.

    Raises:
        ConfigError: A mistake in the source string itself (see :func:`check_source`), a path
            that names no file or a ``python:`` module that is not there (like a typo in the
            study file: the CLI exits 2).
        DataError: A file or function that is there but cannot be read, raises, or gives invalid
            data (the CLI exits 1); the message says what is wrong and how to fix it.

    Example:
        >>> ds = load_dataset("digits", validation_split=0.25, seed=0, limit=100)
        >>> ds.x_train.shape, ds.kind
        ((100, 8, 8, 1), 'image')
    """
    source = check_source(source)
    if (
        isinstance(validation_split, bool)
        or not isinstance(validation_split, int | float)
        or not 0.0 < float(validation_split) < 1.0
    ):
        raise DataError(f"data.validation_split must be in (0, 1). Received: {validation_split!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise DataError(
            f"seed must be an integer in [0, 2**32) (study.seed). Received: {_shown(seed)}"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"data.limit must be a positive integer or unset. Received: {limit!r}")
    if not isinstance(label_column, str) or not label_column:
        raise DataError(f"data.label_column must be a column name. Received: {label_column!r}")

    scheme, _, rest = source.partition(":")
    location: str | None = None  # the resolved file, or the folder python: modules import from
    stamp: tuple[int, int] | None = None
    if scheme in ("npz", "csv"):
        path = _resolve_file(source, rest, base_dir)
        stat = path.stat()
        location, stamp = os.fspath(path), (stat.st_mtime_ns, stat.st_size)
    elif scheme == "python":
        location = os.fspath(Path(base_dir or Path.cwd()).resolve())
    return _load_cached(
        source, float(validation_split), seed, label_column, limit, location, stamp
    )


def check_source(source: Any) -> str:
    """Checks the form of a source string, without touching files, modules or the network.

    This is what the study-file schema checks for ``data.source``: an unknown name or scheme, a
    ``keras:`` dataset that does not exist, ``npz:`` or ``csv:`` without a path, a malformed
    ``python:module:function``. Whether the file or module is there is :func:`load_dataset`'s
    business.

    Returns:
        The source without surrounding whitespace (around the path or name too).

    Raises:
        ConfigError: ``data.source = '...': what is wrong``, with a did-you-mean and the valid
            forms.

    Example:
        >>> check_source(" wine ")
        'wine'
        >>> check_source("digts")
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.ConfigError: data.source = 'digts': not a data source. Did you mean 'digits'? ...
    """  # noqa: E501
    problem = source_problem(source)
    if problem is not None:
        raise ConfigError(f"data.source = {_shown(source)}: {problem}")
    scheme, sep, rest = str(source).strip().partition(":")
    return f"{scheme}:{rest.strip()}" if sep else scheme


def source_problem(source: Any) -> str | None:
    """What is wrong with the form of ``source`` (one sentence and the fix), or ``None``.

    Example:
        >>> source_problem("keras:mnst")
        "unknown Keras dataset 'mnst'. Did you mean 'mnist'? Use one of: keras:mnist, ..."
    """
    if not isinstance(source, str):
        return f"must be a string such as 'digits' or 'npz:PATH', not {type(source).__name__}"
    source = source.strip()
    if not source:
        return f"is empty; use one of: {', '.join(SOURCE_FORMS)}"
    scheme, sep, rest = source.partition(":")
    rest = rest.strip()
    if not sep:
        if source in BUILTIN_SOURCES:
            return None
        hint = did_you_mean(source, [*BUILTIN_SOURCES, *(f"keras:{k}" for k in KERAS_SOURCES)])
        if not hint and source.lower().endswith((".npz", ".csv")):
            hint = f" Did you mean '{source.lower()[-3:]}:{_cut(source)}'?"
        return f"not a data source.{hint} Valid forms: {', '.join(SOURCE_FORMS)}."
    if scheme in ("npz", "csv"):
        if not rest:
            return f"lacks a path; write '{scheme}:PATH' (relative to the study file's folder)"
        return None
    if scheme == "keras":
        if rest in KERAS_SOURCES:
            return None
        return (
            f"unknown Keras dataset {_shown(rest)}.{did_you_mean(rest.lower(), KERAS_SOURCES)} "
            "Use one of: " + ", ".join(f"keras:{name}" for name in KERAS_SOURCES) + "."
        )
    if scheme == "python":
        return _target_problem(rest)
    after = _cut(source[len(scheme) + 1 :])
    hint = did_you_mean(scheme, _SCHEMES, quote=lambda close: f"'{close}:{after}'")
    return f"unknown scheme {_shown(scheme + ':')}.{hint} Valid forms: {', '.join(SOURCE_FORMS)}."


def _target_problem(target: str) -> str | None:
    """What is wrong with ``module:function`` (a ``python:`` source or model type), or None."""
    module_name, sep, attr = target.rpartition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not sep or not module_name or not attr:
        return "must have the form 'python:module:function'"
    if not all(part.isidentifier() for part in module_name.split(".")):
        return (
            f"{_shown(module_name)} is not a module name; use the form 'python:module:function' "
            "with Python identifiers (letters, digits, underscores), the module as Python "
            f"imports it from the study file's folder.{_file_hint(module_name, attr)}"
        )
    if not attr.isidentifier():
        return f"{_shown(attr)} is not a function name; use the form 'python:module:function'"
    return None


def _file_hint(module_name: str, attr: str) -> str:
    """ " Did you mean 'python:loaders:load'?" for a module given as a file path."""
    stem = Path(module_name.replace("\\", "/")).name.removesuffix(".py")
    if stem != module_name and stem.isidentifier():
        return f" Did you mean 'python:{stem}:{_cut(attr)}'?"
    return ""


def _module_hint(module_name: str, folder: Path) -> str:
    """ " Did you mean 'loaders'?" from the modules in the study file's folder."""
    try:
        names = [p.stem for p in folder.glob("*.py")]
    except OSError:
        return ""
    return did_you_mean(module_name, names)


def clear_cache() -> None:
    """Forgets every dataset :func:`load_dataset` has cached in this process.

    Example:
        >>> clear_cache()
    """
    _load_cached.cache_clear()


# --- loading ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _load_cached(
    source: str,
    validation_split: float,
    seed: int,
    label_column: str,
    limit: int | None,
    location: str | None,
    stamp: tuple[int, int] | None,
) -> Dataset:
    """Loads a validated source; ``stamp`` (mtime, size) makes a changed file load again."""
    del stamp  # only part of the cache key
    scheme, _, rest = source.partition(":")
    if scheme == "npz":
        raw = _read_npz(source, Path(str(location)))
    elif scheme == "csv":
        raw = _read_csv(source, Path(str(location)), label_column)
    elif scheme == "keras":
        raw = _read_keras(rest)
    elif scheme == "python":
        raw = _read_python(source, rest, Path(str(location)))
    else:
        raw = _read_sklearn(source)
    return _prepare(source, raw, validation_split=validation_split, seed=seed, limit=limit)


@dataclass
class _Raw:
    """Arrays as a source delivers them, before checks, split and preprocessing."""

    x_train: Any
    y_train: Any
    x_val: Any = None
    y_val: Any = None
    kind: str | None = None  # None: inferred from x's number of axes


def _read_sklearn(name: str) -> _Raw:
    from sklearn import datasets

    if name == "digits":
        bunch = datasets.load_digits()
        images = np.asarray(bunch.images, dtype=np.float32) / 16.0
        return _Raw(images[..., None], bunch.target, kind="image")
    loader = datasets.load_breast_cancer if name == "breast_cancer" else datasets.load_wine
    bunch = loader()
    return _Raw(bunch.data, bunch.target, kind="tabular")


def _read_keras(name: str) -> _Raw:
    from lrsearch._imports import import_keras

    try:
        keras = import_keras()
        module = getattr(keras.datasets, name)
        (x_train, y_train), (x_val, y_val) = module.load_data()
    except Exception as exc:  # offline, a corrupt cache, a missing backend, ...
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        raise DataError(
            f"Cannot load keras:{name}: {reason}. It downloads on first use; run once with "
            "network access, or use a local npz: source."
        ) from exc
    return _Raw(x_train, y_train, x_val, y_val, kind="image")


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip
_NPY_MAGIC = b"\x93NUMPY"


def _looks_like(head: bytes) -> str:
    """What a file's first bytes look like, for "not a valid .npz file (...)"."""
    text = head.decode("utf-8", errors="replace")  # the last character may be cut in two
    odd = sum(1 for c in text if not (c.isprintable() or c in "\t\r\n") or c == "\ufffd")
    return "it holds text" if odd <= 1 else "it holds other binary data"


def _read_npz(source: str, path: Path) -> _Raw:
    where = f"'{path}' (data.source = {_shown(source)})"
    how = "save the arrays with numpy.savez(path, x_train=..., y_train=...)"
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError as exc:
        raise DataError(f"Cannot read {where}: {exc}") from exc
    if head.startswith(_NPY_MAGIC):
        raise DataError(f"{where} holds a single array (.npy), not an .npz archive; {how}.")
    if not head.startswith(_ZIP_MAGIC):
        # numpy would call any other file "pickled (object) data", which misleads
        what = "empty" if not head else _looks_like(head)
        raise DataError(f"{where} is not a valid .npz (numpy zip) file ({what}); {how}.")
    arrays: dict[str, Any] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as exc:
                    if "allow_pickle" not in str(exc):
                        raise
                    raise DataError(
                        f"{where}: array {key!r} holds Python objects (dtype object), which "
                        "are not loaded (they could run code); save numeric arrays."
                    ) from None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = _one_line(str(exc)) or type(exc).__name__
        raise DataError(
            f"{where} is not a valid .npz (numpy zip) file ({reason}); {how}."
        ) from exc
    if "x_val" not in arrays and "y_val" not in arrays and {"x_test", "y_test"} <= arrays.keys():
        arrays["x_val"], arrays["y_val"] = arrays["x_test"], arrays["y_test"]
    missing = [key for key in ("x_train", "y_train") if key not in arrays]
    if ("x_val" in arrays) != ("y_val" in arrays):
        missing.append("y_val" if "x_val" in arrays else "x_val")
    if missing:
        found = ", ".join(sorted(arrays)) or "no arrays"
        raise DataError(
            f"'{path}' (data.source = {source!r}) lacks array(s) {', '.join(missing)}; found: "
            f"{found}. An npz source needs x_train and y_train, optionally x_val and y_val."
        )
    return _Raw(arrays["x_train"], arrays["y_train"], arrays.get("x_val"), arrays.get("y_val"))


def _read_csv(source: str, path: Path, label_column: str) -> _Raw:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read '{path}' (data.source = {source!r}): {exc}") from exc
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(text.splitlines(), dialect) if any(c.strip() for c in row)]
    if not rows:
        raise DataError(f"'{path}' (data.source = {source!r}) is empty.")
    header = [name.strip() for name in rows[0]]
    if label_column not in header:
        raise DataError(
            f"'{path}' has no label column {label_column!r} (data.label_column); its columns are "
            f"{', '.join(header)}.{did_you_mean(label_column, header)}"
        )
    if len(rows) == 1:
        raise DataError(f"'{path}' (data.source = {source!r}) has a header but no data rows.")
    label_at = header.index(label_column)
    features = [i for i in range(len(header)) if i != label_at]
    if not features:
        raise DataError(f"'{path}' has no feature columns besides {label_column!r}.")
    x = np.empty((len(rows) - 1, len(features)), dtype=np.float64)
    labels: list[str] = []
    for r, row in enumerate(rows[1:]):
        line = r + 2
        if len(row) != len(header):
            raise DataError(
                f"'{path}', line {line}: {len(row)} fields, the header has {len(header)}."
            )
        labels.append(row[label_at].strip())
        for j, i in enumerate(features):
            try:
                x[r, j] = float(row[i])
            except ValueError:
                raise DataError(
                    f"'{path}', line {line}, column {header[i]!r}: {row[i]!r} is not a number. "
                    f"Feature columns must be numeric; the label column is {label_column!r}."
                ) from None
    return _Raw(x, _parse_labels(labels), kind="tabular")


def _parse_labels(labels: list[str]) -> np.ndarray:
    """CSV labels as ints, else floats, else strings (so they sort naturally)."""
    for kind in (int, float):
        try:
            return np.array([kind(label) for label in labels])
        except ValueError:
            pass
    return np.array(labels, dtype=str)


def _read_python(source: str, target: str, base: Path) -> _Raw:
    function = _import_callable(target, base_dir=base, error=DataError, field="data.source")
    result = _call_user_function(
        function, target, base_dir=base, error=DataError, field="data.source"
    )
    where = f"{target}() (data.source = {_shown(source)})"
    if isinstance(result, Mapping):
        keys = set(result)
        if not {"x_train", "y_train"} <= keys or ("x_val" in keys) != ("y_val" in keys):
            raise DataError(
                f"{where} returned a dict with keys {', '.join(sorted(map(str, keys)))}; it needs "
                "x_train and y_train, optionally x_val and y_val."
            )
        return _Raw(result["x_train"], result["y_train"], result.get("x_val"), result.get("y_val"))
    if isinstance(result, tuple | list) and len(result) in (2, 4):
        return _Raw(*result)
    raise DataError(
        f"{where} returned {type(result).__name__}; return a dict with x_train, y_train "
        "(optionally x_val, y_val), a tuple (x, y) or a tuple (x_train, y_train, x_val, y_val)."
    )


# --- checks, split and preprocessing ----------------------------------------------------------


def _prepare(
    source: str, raw: _Raw, *, validation_split: float, seed: int, limit: int | None
) -> Dataset:
    x_train = _features(source, "x_train", raw.x_train)
    y_train = _labels(source, "y_train", raw.y_train)
    _check_lengths(source, "x_train", x_train, "y_train", y_train)
    has_val = raw.x_val is not None
    x_val, y_val = x_train[:0], y_train[:0]
    if has_val:
        x_val = _features(source, "x_val", raw.x_val)
        y_val = _labels(source, "y_val", raw.y_val)
        _check_lengths(source, "x_val", x_val, "y_val", y_val)
        if x_val.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{source}: x_val samples have shape {x_val.shape[1:]}, x_train samples "
                f"{x_train.shape[1:]}; they must match."
            )
    kind = raw.kind or ("image" if x_train.ndim >= 3 else "tabular")
    if kind == "image":
        x_train = _as_image(source, "x_train", x_train)
        if has_val:
            x_val = _as_image(source, "x_val", x_val)

    # Class ids: the sorted distinct labels of both splits become 0..k-1.
    classes, ids = np.unique(
        np.concatenate([y_train, y_val]) if has_val else y_train, return_inverse=True
    )
    ids = ids.reshape(-1).astype(np.int64)
    if len(classes) < 2:
        raise DataError(
            f"{source}: the labels hold {len(classes)} class ({classes.tolist()}); "
            "classification needs at least 2."
        )
    y_train, y_val = (ids[: len(y_train)], ids[len(y_train) :]) if has_val else (ids, ids[:0])

    if not has_val:
        x_train, x_val, y_train, y_val = _split(source, x_train, y_train, validation_split, seed)
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]

    if kind == "tabular":
        mean = x_train.mean(axis=0, dtype=np.float64)
        std = x_train.std(axis=0, dtype=np.float64)
        std[std == 0] = 1.0
        x_train = (x_train - mean) / std
        x_val = (x_val - mean) / std
    return Dataset(
        name=source,
        x_train=_frozen(x_train, np.float32),
        y_train=_frozen(y_train, np.int64),
        x_val=_frozen(x_val, np.float32),
        y_val=_frozen(y_val, np.int64),
        n_classes=len(classes),
        kind=kind,
    )


def _frozen(array: np.ndarray, dtype: type[np.generic]) -> np.ndarray:
    """``array`` as a contiguous, read-only ``dtype`` array (a private copy: see ``_features``)."""
    out = np.ascontiguousarray(array, dtype=dtype)
    out.setflags(write=False)
    return out


def _features(source: str, name: str, value: Any) -> np.ndarray:
    try:
        x = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: {name} is not an array: {exc}") from exc
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{source}: {name} has dtype {x.dtype}; features must be numbers.")
    if x.ndim < 2:
        raise DataError(
            f"{source}: {name} has shape {x.shape}; features need a sample axis and at least "
            "one feature axis, (n, features) or (n, h, w[, c])."
        )
    if len(x) == 0:
        raise DataError(f"{source}: {name} is empty (0 samples).")
    scale = x.dtype == np.uint8  # 8-bit images
    x = x.astype(np.float32)  # a copy: the caller's arrays are never frozen or shared
    if scale:
        x /= 255.0
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise DataError(
            f"{source}: {name} contains {bad} NaN or infinite value(s); clean or impute them."
        )
    return x


def _labels(source: str, name: str, value: Any) -> np.ndarray:
    try:
        y = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: {name} is not an array: {exc}") from exc
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and y.shape[1] > 1 and np.issubdtype(y.dtype, np.number):
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise DataError(
                f"{source}: {name} has shape {y.shape} but is not one-hot; give class ids, "
                "shape (n,)."
            )
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise DataError(f"{source}: {name} has shape {y.shape}; labels must be shape (n,).")
    if len(y) == 0:
        raise DataError(f"{source}: {name} is empty (0 samples).")
    if y.dtype == object:
        y = y.astype(str)
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DataError(f"{source}: {name} contains NaN or infinite labels.")
    return y


def _check_lengths(source: str, xn: str, x: np.ndarray, yn: str, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise DataError(
            f"{source}: {xn} has {len(x)} samples but {yn} has {len(y)}; they must be equal."
        )


def _as_image(source: str, name: str, x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        return x[..., None]
    if x.ndim != 4:
        raise DataError(
            f"{source}: {name} has shape {x.shape}; images must be (n, h, w) or (n, h, w, c)."
        )
    return x


def _split(
    source: str, x: np.ndarray, y: np.ndarray, validation_split: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    kwargs: dict[str, Any] = {"test_size": validation_split, "random_state": seed}
    try:
        parts = train_test_split(x, y, stratify=y, **kwargs)
    except ValueError:  # a class too small to stratify, or fewer test samples than classes
        try:
            parts = train_test_split(x, y, **kwargs)
        except ValueError as exc:
            raise DataError(
                f"{source}: cannot split {len(x)} samples with validation_split = "
                f"{validation_split}: {exc}"
            ) from exc
    x_train, x_val, y_train, y_val = parts
    return x_train, x_val, y_train, y_val


# --- sources and paths ------------------------------------------------------------------------


def _resolve_file(source: str, rest: str, base_dir: Path | None) -> Path:
    rest = rest.strip()
    path = Path(rest).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()) / path
    path = path.resolve()
    if path.is_dir():
        raise ConfigError(
            f"Data file {_shown(rest)} is a folder (data.source = {_shown(source)}); give the "
            "path of the file."
        )
    if not path.is_file():
        # like a typo in the study file (click's Path(exists=True) is a usage error too)
        where = "the study file's folder" if base_dir is not None else "the current folder"
        raise ConfigError(
            f"Data file {_shown(rest)} not found (data.source = {_shown(source)}, looked for "
            f"{_shown(str(path))}); give a path relative to {where} or an absolute one."
        )
    return path


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    entry = os.fspath(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def _import_callable(
    target: str, *, base_dir: Path | None, error: type[LRSearchError], field: str
) -> Callable[..., Any]:
    """Imports ``module:function`` (``target`` without the ``python:`` prefix).

    ``base_dir`` (else the current directory) is put on ``sys.path`` while importing, so a module
    beside the study file is found.

    Raises:
        ConfigError: The target is malformed, the module is not there, or it has no such
            function (a typo in the study file).
        LRSearchError: Of class ``error``: the module fails while importing (a syntax error, an
            exception, a missing dependency: the message names the file and line). Messages
            name ``field``.
    """
    spec = f"python:{target}"
    problem = _target_problem(target)
    if problem is not None:
        raise ConfigError(f"{field} = {_shown(spec)}: {problem}")
    module_name, _, attr = target.rpartition(":")
    module_name, attr = module_name.strip(), attr.strip()
    folder = Path(base_dir or Path.cwd()).resolve()
    importlib.invalidate_caches()
    try:
        with _on_sys_path(folder):
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            module_name == exc.name or module_name.startswith(f"{exc.name}.")
        ):
            raise ConfigError(
                f"Cannot import module {module_name!r} ({field} = {_shown(spec)}): {exc}. It is "
                f"looked up in {folder} and on sys.path."
                + (_file_hint(module_name, attr) or _module_hint(module_name, folder))
            ) from exc
        raise error(
            _user_failure(f"{field} = {_shown(spec)}", f"importing {module_name}", exc, folder)
        ) from exc
    except Exception as exc:  # noqa: BLE001 - user code: any error, reported on one line
        raise error(
            _user_failure(f"{field} = {_shown(spec)}", f"importing {module_name}", exc, folder)
        ) from exc
    function = getattr(module, attr, None)
    if function is None:
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ConfigError(
            f"Module {module_name!r} has no function {attr!r} ({field} = {_shown(spec)})."
            f"{did_you_mean(attr, names)}"
        )
    if not callable(function):
        raise ConfigError(
            f"{module_name}.{attr} is a {type(function).__name__}, not a function "
            f"({field} = {_shown(spec)})."
        )
    return function


def _call_user_function(
    function: Callable[..., Any],
    target: str,
    kwargs: Mapping[str, Any] | None = None,
    *,
    base_dir: Path | None,
    error: type[LRSearchError],
    field: str,
    doing: str | None = None,
) -> Any:
    """Calls a ``python:`` function with its folder on ``sys.path`` for the whole call.

    A module it imports only when called (a helper beside the study file) is found, and any
    exception it raises becomes one line naming ``field``, what was being done (``doing``,
    default ``calling NAME()``), the exception and the user's file and line.

    Raises:
        LRSearchError: Of class ``error``, for any ``Exception`` the function raises; the
            user's exception is its ``__cause__``.
    """
    folder = Path(base_dir or Path.cwd()).resolve()
    name = target.rpartition(":")[2].strip()
    try:
        with _on_sys_path(folder):
            return function(**(kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - user code: any error, reported on one line
        spec = f"python:{target}"
        raise error(
            _user_failure(f"{field} = {_shown(spec)}", doing or f"calling {name}()", exc, folder)
        ) from exc


def _user_failure(what: str, doing: str, exc: BaseException, folder: Path) -> str:
    """``"<what>: calling load() failed: ValueError: msg (at /dir/mod.py:5)"``.

    The place is a syntax error's own, else the innermost traceback frame in ``folder`` (the
    user's code rather than numpy's or Keras's), else the innermost frame outside Python's,
    the installed packages' and lrsearch's own files. (The same form as
    ``lrsearch.objective.describe_error``.)
    """
    place = None
    if isinstance(exc, SyntaxError) and exc.filename:
        message = exc.msg or "invalid syntax"
        place = f"{exc.filename}:{exc.lineno}"
    else:
        message = str(exc)
        frame = user_frame(traceback.extract_tb(exc.__traceback__), folder)
        if frame is not None:
            place = f"{frame.filename}:{frame.lineno}"
    message = " ".join(message.split()) or "(no message)"
    text = f"{type(exc).__name__}: {_cut(message, 300)}"
    return f"{what}: {doing} failed: {text}" + (f" (at {place})" if place else "")


def user_frame(
    frames: list[traceback.FrameSummary], folder: Path | None
) -> traceback.FrameSummary | None:
    """The innermost frame in ``folder``, else in no file of Python's, the installed packages'
    or lrsearch's; ``None`` if there is none."""
    import sysconfig

    own = os.path.dirname(os.path.abspath(__file__)) + os.sep
    system = tuple(
        os.path.join(os.path.abspath(p), "") for p in sysconfig.get_paths().values() if p
    )
    foreign = [
        f
        for f in frames
        if not f.filename.startswith("<")
        and not os.path.abspath(f.filename).startswith((own, *system))
    ]
    inside = [f for f in frames if folder is not None and _inside(f.filename, folder)]
    candidates = inside or foreign
    return candidates[-1] if candidates else None


def _inside(filename: str, folder: Path) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False


def _cut(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, ``...`` marking a cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters."""
    return _cut(repr(value), limit)


def _one_line(text: str) -> str:
    """Escapes line breaks and other unprintables, so a message stays on one line."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )
