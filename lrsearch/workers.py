"""Several worker processes on one machine, sharing one study through the database.

``lrsearch start FILE --workers N`` creates (or joins) the study once, then starts N copies of
``lrsearch start`` as child processes, each with an equal share of the CPU threads, and shows one
progress bar over the study's finished trials while the children print one line per trial.
Workers on other machines join the same study the same way; the database is the only thing they
share.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["thread_env", "run_workers"]


def thread_env(n_workers: int, cores: int | None = None) -> dict[str, str]:
    """Environment that gives each of ``n_workers`` processes its share of the CPU threads.

    TensorFlow reads ``TF_NUM_INTRAOP_THREADS``/``TF_NUM_INTEROP_THREADS``; JAX's XLA CPU client
    and BLAS libraries read the others.

    Example:
        >>> thread_env(2, cores=4)["TF_NUM_INTRAOP_THREADS"]
        '2'
    """
    cores = cores or os.cpu_count() or 1
    share = max(cores // max(n_workers, 1), 1)
    env = {
        "TF_NUM_INTRAOP_THREADS": str(share),
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": str(share),
        "OPENBLAS_NUM_THREADS": str(share),
        "MKL_NUM_THREADS": str(share),
    }
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        env["XLA_FLAGS"] = (
            f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={share}"
        ).strip()
    return env


def run_workers(
    n_workers: int,
    worker_args: Sequence[str],
    *,
    progress: Callable[[], tuple[int, int, str]],
    echo: Callable[[str], None] = print,
    poll_seconds: float = 2.0,
    show_bar: bool = True,
) -> int:
    """Runs ``n_workers`` copies of ``lrsearch <worker_args>``; returns the worst exit code.

    Args:
        n_workers: How many processes.
        worker_args: The ``lrsearch`` command line each worker runs (e.g. ``start FILE ...``).
        progress: Returns ``(finished, budget, best_text)`` read from the storage.
        echo: Where the workers' lines go.
        poll_seconds: How often the progress bar reads the storage.
        show_bar: Show a progress bar (on a terminal).

    On Ctrl-C every worker receives SIGINT (each queues its interrupted trial again); a second
    Ctrl-C kills them.
    """
    from tqdm.auto import tqdm

    env = {**os.environ, **thread_env(n_workers), "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen[str]] = []
    for i in range(n_workers):
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lrsearch.cli",
                    *worker_args,
                    "--worker-label",
                    f"w{i + 1}",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,  # Ctrl-C reaches the parent only; it forwards it
            )
        )
    finished, budget, best = progress()
    bar: Any = tqdm(
        total=budget,
        initial=min(finished, budget),
        desc=f"trials ({n_workers} workers)",
        unit="trial",
        disable=None if show_bar else True,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    readers = [_LineReader(p) for p in procs]
    interrupted = False
    try:
        last_poll = 0.0
        while any(p.poll() is None for p in procs) or any(r.pending() for r in readers):
            for reader in readers:
                for line in reader.lines():
                    bar.clear()
                    echo(line)
                    bar.refresh()
            if time.monotonic() - last_poll > poll_seconds:
                last_poll = time.monotonic()
                try:
                    finished, budget, best = progress()
                    bar.total, bar.n = budget, min(finished, budget)
                    bar.set_postfix_str(best)
                except Exception:  # noqa: BLE001 - the database may be restarting
                    pass
            time.sleep(0.05)
    except KeyboardInterrupt:
        interrupted = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        try:
            for p in procs:
                p.wait()
        except KeyboardInterrupt:
            for p in procs:
                p.kill()
        for reader in readers:
            for line in reader.lines(final=True):
                echo(line)
    finally:
        bar.close()
    codes = [p.wait() for p in procs]
    if interrupted:
        return 130
    return max(codes, default=0)


class _LineReader:
    """Non-blocking line reader over a child's stdout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        import threading

        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    def pending(self) -> bool:
        with self._lock:
            return bool(self._lines) or self._thread.is_alive()

    def lines(self, final: bool = False) -> list[str]:
        if final:
            self._thread.join(timeout=5)
        with self._lock:
            out, self._lines = self._lines, []
        return out
