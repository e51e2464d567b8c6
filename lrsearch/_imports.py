"""Lazy, quiet imports of the heavy frameworks.

TensorFlow's C++ runtime writes start-up lines ("Could not find cuda drivers ...") straight to
file descriptor 2 before any log level applies. :func:`import_keras` imports Keras (and with it
the backend) with that descriptor pointed at a temporary file, and replays the text only if the
import fails.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

__all__ = ["BACKENDS", "check_backend", "import_keras", "quiet_stderr", "select_backend"]

BACKENDS = ("tensorflow", "jax")
_EXTRA = {"tensorflow": "tensorflow", "jax": "lrsearch[jax]"}


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silences file descriptor 2 (C and C++ writers included); replays it on an exception."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. under a test runner)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        except BaseException:
            os.dup2(saved, fd)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def import_keras() -> ModuleType:
    """Returns the ``keras`` module, importing it (and its backend) quietly the first time."""
    module = sys.modules.get("keras")
    if module is not None and hasattr(module, "ops"):
        return module
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_stderr():
        module = importlib.import_module("keras")
        # The first op initialises the backend's devices, which prints too.
        module.ops.convert_to_numpy(module.ops.zeros(()))
    return module


def select_backend(name: str | None = None) -> str:
    """Chooses Keras's backend for this process; call it before Keras is imported.

    Args:
        name: ``"tensorflow"`` or ``"jax"``; ``None`` keeps ``$KERAS_BACKEND`` (default
            ``tensorflow``).

    Returns:
        The backend in force.

    Raises:
        ConfigError: an unknown backend, one that is not installed, or Keras already imported
            with another backend in this process.
    """
    from lrsearch.exceptions import ConfigError

    name = check_backend(name)
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        current = keras.backend.backend()
        if current != name:
            raise ConfigError(
                f"Keras is already running on {current!r} in this process; backend {name!r} "
                "needs a fresh process (run lrsearch again with --backend)."
            )
        return name
    os.environ["KERAS_BACKEND"] = name
    return name


def check_backend(name: str | None = None) -> str:
    """The backend ``name`` (else ``$KERAS_BACKEND``, else ``tensorflow``) if it is known and
    installed; imports nothing.

    Raises:
        ConfigError: an unknown backend, or one that is not installed.
    """
    from lrsearch.exceptions import ConfigError

    name = name or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if name not in BACKENDS:
        raise ConfigError(
            f"Unknown Keras backend {name!r}; use one of {', '.join(BACKENDS)} "
            "(training.backend, --backend or KERAS_BACKEND)."
        )
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # e.g. sys.modules[name] is None
        found = False
    if not found:
        raise ConfigError(
            f"Keras backend {name!r} is not installed: pip install '{_EXTRA[name]}'."
        )
    return name
