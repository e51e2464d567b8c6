"""The drawing process behind the artifact pictures: results, errors, its death, its parent's."""

from __future__ import annotations

import functools
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lrsearch._drawing import DrawingProcess, DrawingProcessError

REPO = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def drawing() -> Iterator[DrawingProcess]:
    process = DrawingProcess()
    yield process
    process.close()


def test_runs_jobs_in_another_process_and_returns_their_results(
    drawing: DrawingProcess,
) -> None:
    child = drawing.run(os.getpid)
    assert child != os.getpid()
    assert drawing.run(os.getpid) == child  # one process for every job
    assert drawing.run(functools.partial(sorted, [3, 1, 2])) == [1, 2, 3]


def test_a_failing_job_is_an_error_here_and_the_process_goes_on(drawing: DrawingProcess) -> None:
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        drawing.run(functools.partial(divmod, 1, 0))
    assert drawing.run(functools.partial(divmod, 7, 2)) == (3, 1)


def test_a_process_dying_in_a_job_is_reported_and_the_next_job_starts_a_new_one(
    drawing: DrawingProcess,
) -> None:
    first = drawing.run(os.getpid)
    with pytest.raises(DrawingProcessError):
        drawing.run(functools.partial(os._exit, 3))
    second = drawing.run(os.getpid)
    assert second != first and _alive(second)


def test_a_process_killed_between_jobs_is_replaced(drawing: DrawingProcess) -> None:
    first = drawing.run(os.getpid)
    os.kill(first, signal.SIGKILL)
    time.sleep(0.2)
    assert drawing.run(os.getpid) != first


def test_a_job_that_cannot_be_sent_fails_alone(drawing: DrawingProcess) -> None:
    child = drawing.run(os.getpid)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        drawing.run(lambda: 1)  # a lambda cannot be pickled
    assert drawing.run(os.getpid) == child  # the same process carries on


def test_close_ends_the_process(drawing: DrawingProcess) -> None:
    child = drawing.run(os.getpid)
    drawing.close()
    time.sleep(0.2)
    assert not _alive(child)


def test_the_process_ends_with_its_parent_and_never_reruns_its_script(tmp_path: Path) -> None:
    """An unguarded user script (no ``if __name__ == "__main__"``) runs once: the drawing
    process does not import the parent's main script, unlike a spawned multiprocessing child."""
    marker = tmp_path / "ran"
    script = tmp_path / "user_script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, time
            from lrsearch._drawing import DrawingProcess
            with open({str(marker)!r}, "a") as f:
                f.write("x")
            print(DrawingProcess().run(os.getpid), flush=True)
            time.sleep(60)
            """
        ),
        encoding="utf-8",
    )
    parent = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)
    assert marker.read_text() == "x"
