"""Registers the Keras schedule classes as soon as Keras is there, without importing Keras.

``keras.optimizers.schedules.deserialize`` and ``keras.saving.load_model`` find a class
registered as ``lrsearch>...`` only once the module defining it has run, and that module imports
Keras (seconds). ``import lrsearch.schedules`` must stay instant (the CLI imports it for
``FAMILIES``), yet the README's ``import lrsearch.schedules`` has to be enough for both calls. So:

- Keras already imported: the classes are registered at once;
- otherwise a finder on ``sys.meta_path`` waits for ``import keras`` and registers the classes
  right after Keras's own ``__init__`` has run, then removes itself.

Example:
    >>> import sys
    >>> import lrsearch.schedules
    >>> "keras" in sys.modules or any(isinstance(f, KerasWatcher) for f in sys.meta_path)
    True
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

__all__ = ["KerasWatcher", "register_when_keras_is_imported"]

_MODULES = ("lrsearch.schedules._keras",)


def _register() -> None:
    """Imports the modules whose classes carry ``register_keras_serializable``."""
    for name in _MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - never break the user's `import keras`
            warnings.warn(
                f"lrsearch could not register its Keras schedules ({name}): "
                f"{type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            return


def _ready(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return not getattr(spec, "_initializing", False)


class KerasWatcher:
    """A ``sys.meta_path`` finder that registers lrsearch's classes once ``keras`` has loaded.

    It finds nothing itself: for ``keras`` it asks the other finders and wraps the loader's
    ``exec_module`` (on that one loader instance, so the module's loader keeps its type). A
    ``find_spec`` that is not followed by an import (``importlib.util.find_spec("keras")``)
    leaves it in place for the real import.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != "keras":
            return None
        spec = None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if spec is None or exec_module is None:
            return spec
        watcher = self

        def exec_then_register(module: ModuleType) -> None:
            exec_module(module)
            watcher.remove()
            _register()

        loader.exec_module = exec_then_register  # type: ignore[union-attr]
        return spec

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def register_when_keras_is_imported() -> None:
    """Registers the classes now if Keras is imported, else as soon as it is."""
    module: Any = sys.modules.get("keras")
    if module is not None:
        if _ready(module):
            _register()
        return  # a Keras still importing (we are inside it) registers nothing: no class needs it
    if not any(isinstance(f, KerasWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, KerasWatcher())
