"""A drawing process: runs picture-drawing jobs away from the training process's GIL.

``python -m lrsearch._drawing`` reads pickled jobs (zero-argument callables, e.g. a
``functools.partial`` of a module-level function) from standard input and writes each pickled
``(ok, result or error text)`` back, length-prefixed. It is started with :mod:`subprocess`
rather than :mod:`multiprocessing` on purpose: a spawned ``multiprocessing`` child first re-runs
the parent's main script, which in a user's unguarded script would be their whole study. The
child leaves Ctrl-C to its parent and exits when its parent's end of the pipe closes (the parent
ended, however it ended).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

__all__ = ["DrawingProcess", "DrawingProcessError"]

_HEADER = 8


class DrawingProcessError(RuntimeError):
    """The drawing process could not run a job (it died, or never started)."""


def _write(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(_HEADER, "big") + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER)
    if len(header) < _HEADER:
        raise EOFError
    size = int.from_bytes(header, "big")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


class DrawingProcess:
    """One ``python -m lrsearch._drawing`` child, started on the first :meth:`run`."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def run(self, job: Callable[[], Any]) -> Any:
        """Runs ``job`` in the child and returns its result.

        Raises:
            DrawingProcessError: The child died or could not start; the caller draws itself.
            RuntimeError: The job raised (its text).
        """
        data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)  # a bad job fails here, alone
        with self._lock:
            try:
                proc = self._start()
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(len(data).to_bytes(_HEADER, "big") + data)
                proc.stdin.flush()
                ok, value = _read(proc.stdout)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                self._stop()
                raise DrawingProcessError(f"drawing process failed: {exc!r}") from exc
        if not ok:
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        """Ends the child (it finishes the job it has, if any)."""
        with self._lock:
            self._stop()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop()  # a child that died between jobs: close its pipes
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lrsearch._drawing"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        return self._proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()  # EOF: the child's loop ends
            except OSError:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def main() -> None:
    """The child's loop: one job in, one result out, until standard input closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    jobs = sys.stdin.buffer
    results = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints can't break the protocol
    while True:
        try:
            job = _read(jobs)
        except EOFError:
            return
        try:
            outcome = (True, job())
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which carries on
            outcome = (False, f"{type(exc).__name__}: {exc}")
        _write(results, outcome)


if __name__ == "__main__":
    main()
