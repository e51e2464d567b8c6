"""Worker processes: every trial of ``lrsearch start`` trains in a child process.

The command's own process is a supervisor that imports neither Keras nor the backend. It starts
worker processes (``python -m lrsearch.workers``), hands each its job on standard input (the
storage URL never appears on a command line, where any local user could read it), and

* starts one worker first and the others only once it has opened the study, so a study-file or
  model error is printed once and the study is created once;
* replaces a worker whose memory grew by more than ``$LRSEARCH_RECYCLE_MB`` (Keras and
  TensorFlow leak a few MB per built model), so a long study's memory stays flat;
* stops starting workers at the run's deadline (``--timeout``): a timeout bounds the whole
  command;
* forwards Ctrl-C (each worker queues its interrupted trial again), and its death takes the
  workers with it (they watch their standard input and exit when it closes).

With several workers each gets an equal share of the CPU threads and a label (``[w1]``) on its
lines; the supervisor shows one progress bar over the study's finished trials.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lrsearch.study import RunSummary

__all__ = ["RunReport", "WorkerJob", "run_in_workers", "run_workers", "thread_env"]

RECYCLE_EXIT = 75
"""A worker's exit code when it stops to be replaced (memory grew); the budget is not met."""


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


@dataclass
class WorkerJob:
    """Everything a worker process needs to open the study and run its trials."""

    config: dict[str, Any]
    storage_url: str
    study_file_text: str = ""
    base_dir: str | None = None
    study_name: str | None = None
    n_trials: int | None = None
    allow_changed: bool = False
    backend: str | None = None
    artifacts: str | None = None
    deadline: float | None = None  # time.time() after which no trial starts
    progress: bool = True
    recycle_mb: int | None = None
    label: str = ""
    announce: bool = False  # print the study's header line once it is open
    n_workers: int = 1  # how many workers this run has (for the header line)
    replicates: bool = False  # train queued replicates only (lrsearch confirm)


@dataclass
class RunReport:
    """What the workers of one run did."""

    study_name: str | None = None
    budget: int | None = None
    ran: int = 0
    recycled: int = 0
    exit_code: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


# --- the supervisor ----------------------------------------------------------------------------


class _Worker:
    """One worker process: its job, its pipes, and a thread collecting its status events."""

    def __init__(self, job: WorkerJob, env: dict[str, str]) -> None:
        read_fd, write_fd = os.pipe()
        self.job = job
        self.events: list[dict[str, Any]] = []
        self.lines: list[tuple[str, bool]] = []  # (line, from stderr)
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lrsearch.workers", str(write_fd)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            pass_fds=(write_fd,),
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it forwards it
        )
        os.close(write_fd)
        assert self.proc.stdin is not None
        # The job goes in, stdin stays open: the worker exits when it closes (we died).
        self.proc.stdin.write(json.dumps(asdict(job)) + "\n")
        self.proc.stdin.flush()
        self._threads = [
            threading.Thread(target=self._read_events, args=(read_fd,), daemon=True),
            threading.Thread(target=self._read_lines, args=(self.proc.stdout, False), daemon=True),
            threading.Thread(target=self._read_lines, args=(self.proc.stderr, True), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_events(self, fd: int) -> None:
        with os.fdopen(fd, encoding="utf-8") as pipe:
            for line in pipe:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                with self._lock:
                    self.events.append(event)

    def _read_lines(self, stream: IO[str] | None, err: bool) -> None:
        assert stream is not None
        for line in stream:
            with self._lock:
                self.lines.append((line.rstrip("\n"), err))

    def take_lines(self) -> list[tuple[str, bool]]:
        with self._lock:
            out, self.lines = self.lines, []
        return out

    def event(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return next((e for e in self.events if e.get("event") == name), None)

    def finish(self) -> int:
        """Waits for the process and its readers; closes its standard input."""
        code = self.proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        return code

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signum)
            except OSError:
                pass


def _echo(line: str, err: bool) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


def run_workers(
    job: WorkerJob,
    n_workers: int = 1,
    *,
    progress: Callable[[str], tuple[int, int, str]] | None = None,
    echo: Callable[[str, bool], None] = _echo,
    show_bar: bool = True,
    poll_seconds: float = 2.0,
) -> RunReport:
    """Runs the study's trials in ``n_workers`` worker processes until the budget is met.

    Args:
        job: The study and run settings; each worker gets a copy with its own label.
        n_workers: Processes on this machine (CPU threads split evenly between them).
        progress: Returns ``(finished, budget, best_text)`` for a study name, read from the
            storage for the progress bar.
        echo: Called with each line the workers print and whether it came from stderr.
        show_bar: Show a progress bar over the study's finished trials (on a terminal).
        poll_seconds: How often the progress bar reads the storage.

    Returns:
        What the workers did; ``exit_code`` is 130 after Ctrl-C, else the worst worker's code
        (0 when every worker ended normally).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if n_workers > 1:
        env.update(thread_env(n_workers))
    report = RunReport()
    labels = [f"w{i + 1}" for i in range(n_workers)] if n_workers > 1 else [""]

    def spawn(label: str, announce: bool) -> _Worker:
        fields = {
            **asdict(job),
            "label": label,
            "announce": announce,
            "progress": False,
            "n_workers": n_workers,
        }
        return _Worker(WorkerJob(**fields), env)

    def show(lines: list[tuple[str, bool]]) -> None:
        for line, err in lines:
            if bar is not None:
                bar.clear()
            echo(line, err)
            if bar is not None:
                bar.refresh()

    def past_deadline() -> bool:
        return job.deadline is not None and time.time() >= job.deadline

    bar: Any = None
    active: dict[str, _Worker] = {}
    codes: list[int] = []
    interrupted = False
    try:
        first = spawn(labels[0], announce=True)
        active[labels[0]] = first
        # The others start once the first has opened the study (or failed to).
        while first.event("prepared") is None and first.proc.poll() is None:
            show(first.take_lines())
            time.sleep(0.05)
        show(first.take_lines())
        prepared = first.event("prepared")
        if prepared is not None:
            report.study_name, report.budget = prepared["study"], prepared["budget"]
            for label in labels[1:]:
                active[label] = spawn(label, announce=False)
            if progress is not None and show_bar:
                bar = _bar(n_workers)
        last_poll = 0.0
        while active:
            news = False
            for label, worker in list(active.items()):
                lines = worker.take_lines()
                news = news or bool(lines)
                show(lines)
                if worker.proc.poll() is None:
                    continue
                code = worker.finish()
                show(worker.take_lines())
                _collect(report, worker)
                del active[label]
                if code == RECYCLE_EXIT:
                    report.recycled += 1
                    if not past_deadline():
                        active[label] = spawn(label, announce=False)
                    continue
                codes.append(code)
            if bar is not None and report.study_name and progress is not None:
                if news or time.monotonic() - last_poll > poll_seconds:
                    last_poll = time.monotonic()
                    _update_bar(bar, progress, report.study_name)
            time.sleep(0.05)
    except KeyboardInterrupt:
        interrupted = True
        for worker in active.values():
            worker.signal(signal.SIGINT)
        try:
            for worker in active.values():
                worker.finish()
        except KeyboardInterrupt:
            for worker in active.values():
                worker.signal(signal.SIGKILL)
        for worker in active.values():
            show(worker.take_lines())
            _collect(report, worker)
    finally:
        if bar is not None:
            bar.close()
        for worker in active.values():  # an error in the supervisor: leave nothing behind
            worker.signal(signal.SIGKILL)
    report.exit_code = 130 if interrupted else max(codes, default=0)
    return report


def _collect(report: RunReport, worker: _Worker) -> None:
    done = worker.event("done")
    if done is not None:
        report.ran += int(done.get("ran", 0))
    report.events.extend(worker.events)


def _bar(n_workers: int) -> Any:
    """A progress bar on stderr (tqdm shows none when stderr is not a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=1,
        desc="trials" if n_workers == 1 else f"trials ({n_workers} workers)",
        unit="trial",
        disable=None,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _update_bar(bar: Any, progress: Callable[[str], tuple[int, int, str]], name: str) -> None:
    try:
        finished, budget, best = progress(name)
    except Exception:  # noqa: BLE001 - the database may be restarting; the workers retry
        return
    bar.total, bar.n = budget, min(finished, budget)
    bar.set_postfix_str(best)


def run_in_workers(
    job: WorkerJob, workers: int, *, echo: Callable[[str, bool], None] = _echo
) -> RunSummary:
    """Runs ``job`` in ``workers`` worker processes (``lrsearch start``) and returns where the
    study stands after them (see :func:`lrsearch.runner.run_study`, which builds the job).

    Raises:
        ReportedError: a worker failed; its error line was printed through ``echo``.
    """
    from lrsearch.exceptions import ReportedError
    from lrsearch.study import StudyHandle

    started = time.perf_counter()
    url = job.storage_url
    handles: dict[str, StudyHandle] = {}

    def read_progress(name: str) -> tuple[int, int, str]:
        if name not in handles:
            handles[name] = StudyHandle.open(name, url)
        handle = handles[name]
        best = handle.best()
        text = f"best={best.value:.4f} (#{best.number})" if best else ""
        if job.replicates:  # lrsearch confirm: the replicates queued so far
            counts = handle.counts(replicates=True)
            done = sum(counts.get(k, 0) for k in ("complete", "pruned", "diverged"))
            return done, done + counts.get("running", 0) + counts.get("waiting", 0), text
        done, _ = handle.progress()
        return done, handle.record.budget or 0, text

    report = run_workers(job, workers, progress=read_progress, echo=echo, show_bar=job.progress)
    if report.exit_code or report.study_name is None:
        raise ReportedError("a worker failed (its error is printed above)", report.exit_code or 1)
    handle = StudyHandle.open(report.study_name, url)
    return handle.summary(ran=report.ran, seconds=time.perf_counter() - started)


# --- the worker process -------------------------------------------------------------------------


def quiet_experimental_warnings() -> None:
    """Hides Optuna's "experimental" warnings for this process (a command's entry point only).

    The heartbeat, its retry callback and TPE's multivariate/group/constant_liar options are
    "experimental" in Optuna but long-standing and used on purpose; the warnings would only
    alarm users.
    """
    import warnings

    warnings.filterwarnings("ignore", message=r".*\bis experimental\b")
    warnings.filterwarnings("ignore", message=r".*\bis an experimental feature\b")


def _die_with_supervisor(stdin: IO[str]) -> None:
    """Exits this process at once when the supervisor's end of standard input closes."""

    def watch() -> None:
        while stdin.read(4096):
            pass
        os._exit(137)

    threading.Thread(target=watch, daemon=True, name="lrsearch-lifeline").start()


def _worker_main(status_fd: int) -> int:
    """Runs one worker: opens the study from the job on stdin and runs trials."""
    from lrsearch.exceptions import Interrupted, LRSearchError, exit_code_for

    status = os.fdopen(status_fd, "w", encoding="utf-8", buffering=1)

    def send(event: str, **data: Any) -> None:
        status.write(json.dumps({"event": event, **data}) + "\n")
        status.flush()

    job = WorkerJob(**json.loads(sys.stdin.readline()))
    _die_with_supervisor(sys.stdin)
    quiet_experimental_warnings()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # its INFO lines repeat ours
    prepared = False

    def on_prepared(**info: Any) -> None:
        nonlocal prepared
        prepared = True
        send("prepared", **info)

    def fail(message: str, code: int) -> int:
        # Before the study is open the error is the command's (reported once, unlabelled);
        # after, it is this worker's.
        where = f" [{job.label}]" if job.label and prepared else ""
        print(f"Error: {' '.join(message.split())}{where}", file=sys.stderr, flush=True)
        return code

    try:
        from lrsearch.runner import run_job

        summary = run_job(job, on_prepared=on_prepared)
    except Interrupted as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:
        return 130
    except LRSearchError as exc:
        from lrsearch.storage import mask_text

        return fail(mask_text(str(exc)), exit_code_for(exc))
    except Exception as exc:
        from lrsearch.storage import describe_storage_error, is_storage_error

        if not is_storage_error(exc):
            raise
        return fail(describe_storage_error(exc), 1)
    send("done", ran=summary.ran, recycled=summary.recycled, finished=summary.finished)
    prefix = f"[{job.label}] " if job.label else ""
    if summary.recycled:
        print(
            f"{prefix}worker replaced by a fresh process after {summary.ran} trial(s): its "
            f"memory grew by more than {job.recycle_mb} MB (LRSEARCH_RECYCLE_MB)",
            flush=True,
        )
        return RECYCLE_EXIT
    if job.label:
        print(f"{prefix}done: {summary.ran} trial(s) run in {summary.seconds:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(int(sys.argv[1])))
