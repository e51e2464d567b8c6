"""Plain helpers several test modules share: a tiny study file, PNG bytes, a dashboard process.

Test modules import these (``from tests.helpers import ...``) instead of importing from one
another, so running one test file never collects another's tests or fixtures.

Example:
    >>> from tests.helpers import PNG
    >>> PNG[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["PNG", "TINY_TOML", "free_port", "pytest_under_jax", "start", "tiny_study_file"]

PNG = b"\x89PNG\r\n\x1a\n"
"""The eight-byte signature every PNG file starts with."""

TINY_TOML = """\
[study]
name = "{name}"
n_trials = {n_trials}
seed = 0
pruner = "none"

[data]
source = "digits"
limit = 200

[model]
type = "mlp"
hidden = [8]

[training]
{training}

[space]
families = {families}
"""
"""A study on 200 digits with a tiny MLP; ``{name}``, ``{n_trials}``, ``{training}`` (lines)
and ``{families}`` to fill in."""


def tiny_study_file(
    folder: Path,
    name: str,
    families: str = '["cosine", "plateau"]',
    *,
    n_trials: int = 2,
    **training: int | str,
) -> Path:
    """Writes ``folder/<name>.toml`` from :data:`TINY_TOML` and returns its path.

    Args:
        folder: Where to write the file.
        name: The study name (also the file's stem).
        families: A TOML array of family names for ``space.families``.
        n_trials: The study's budget.
        **training: ``[training]`` values (``epochs`` defaults to 2), e.g. ``pack=3``.

    Example:
        >>> import tempfile
        >>> tiny_study_file(Path(tempfile.mkdtemp()), "tiny").name
        'tiny.toml'
    """
    values = {"epochs": 2, **training}
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in values.items())
    text = TINY_TOML.format(name=name, n_trials=n_trials, training=lines, families=families)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], port: int) -> subprocess.Popen[str]:
    """Starts ``lrsearch dashboard --port <port> <args>`` and returns once the port answers.

    The caller terminates the process. Raises :class:`AssertionError` with the process's output
    if it exits first, or if the port does not answer within 60 seconds.

    Example:
        >>> proc = start(["--storage", "sqlite:///x.db"], free_port())  # doctest: +SKIP
        >>> proc.terminate()  # doctest: +SKIP
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrsearch.cli", "dashboard", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.communicate())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("dashboard did not start")


def pytest_under_jax(module: str, selection: str, *, timeout: float = 900) -> None:
    """Runs ``pytest module -k selection`` with Keras on JAX in a fresh process (Keras fixes its
    backend at import) and fails with the run's last lines unless every selected test passed."""
    import pytest

    pytest.importorskip("jax")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", module]
        + ["-k", selection],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=root,
        timeout=timeout,
    )
    tail = "\n".join(proc.stdout.splitlines()[-15:])
    assert proc.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail and "error" not in tail.lower(), tail
