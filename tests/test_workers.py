"""Multi-worker operation on real processes and real databases: no mocks.

* ``lrsearch start --workers 3`` on SQLite, PostgreSQL and MariaDB shares one study and meets
  its budget;
* a worker killed with SIGKILL mid-trial: the other worker fails its trial (no heartbeat) and
  runs the same configuration again;
* ``status`` shows such a trial as STALE, ``reap`` fails and queues it, ``resume`` finishes
  the study from the database alone;
* a worker survives a PostgreSQL restart;
* docker-compose.yml is coherent, and its worker and dashboard command lines work against a
  real PostgreSQL.

Every lrsearch process imports TensorFlow (several seconds), so the studies are tiny and the
processes few. Studies on the shared servers get unique names and are deleted afterwards.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
import sqlalchemy.engine
import sqlalchemy.exc
import yaml
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.pool import NullPool

from lrsearch.records import TrialRecord
from lrsearch.workers import thread_env
from tests.servers import server_url

REPO = Path(__file__).resolve().parent.parent
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SHORT_EPOCHS = 4  # onecycle needs > 10 steps: 4 epochs x 4 steps
MID_EPOCHS = 12  # a trial of a few seconds: long enough to be caught running
LONG_EPOCHS = 60  # trials of 3-9 s: a server restart surely falls inside a training

# A worker's line about a finished trial: "[w2] #3    cosine  lr=..."
WORKER_TRIAL_LINE = re.compile(r"^\[(w\d+)\] #(\d+)\s")
TRIAL_LINE = re.compile(r"^#(\d+)\s")


# --- helpers ------------------------------------------------------------------------------------


def study_text(name: str, *, n_trials: int, epochs: int) -> str:
    return f"""\
[study]
name = "{name}"
n_trials = {n_trials}
seed = 0
pruner = "none"

[data]
source = "digits"
limit = 200
batch_size = 64

[model]
type = "mlp"
hidden = [8]

[training]
epochs = {epochs}

[space]
families = ["cosine", "onecycle"]
learning_rate = [1e-3, 3e-2]
"""


def write_study(folder: Path, name: str, *, n_trials: int, epochs: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(study_text(name, n_trials=n_trials, epochs=epochs), encoding="utf-8")
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def child_env(**extra: str) -> dict[str, str]:
    """The environment of an lrsearch child: quiet TensorFlow, unbuffered, no inherited storage
    or heartbeat settings, this interpreter's scripts first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRSEARCH_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


class Proc:
    """A child process whose merged stdout/stderr lines are collected with their arrival times."""

    def __init__(self, cmd: list[str], *, env: dict[str, str], cwd: Path) -> None:
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    @classmethod
    def lrsearch(cls, *args: str, env: dict[str, str], cwd: Path) -> Proc:
        return cls([sys.executable, "-m", "lrsearch.cli", *args], env=env, cwd=cwd)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.cmd[3:]} did not finish within {timeout:.0f}s:\n{self.output}")
        self._thread.join(timeout=10)
        return code

    def kill(self) -> None:
        """SIGKILL (kill -9)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._thread.join(timeout=10)


def run_lrsearch(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``python -m lrsearch.cli ARGS``; the caller checks the exit code."""
    return subprocess.run(
        [sys.executable, "-m", "lrsearch.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_strays(marker: str) -> None:
    """SIGKILLs leftover processes started by a test: those with ``marker`` (a unique tmp path
    or study name) on their command line, e.g. ``--workers`` children after a failure."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and "lrsearch" in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


class Reader:
    """Reads a study's trials straight from the database; a connection per call, so it works
    across a server restart and holds nothing open."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.storage = optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": NullPool})

    def trials(self, name: str) -> list[FrozenTrial]:
        try:
            study_id = self.storage.get_study_id_from_name(name)
        except KeyError:
            return []
        return self.storage.get_all_trials(study_id, deepcopy=False)

    def trial(self, trial_id: int) -> FrozenTrial:
        return self.storage.get_trial(trial_id)

    def delete(self, name: str) -> None:
        try:
            optuna.delete_study(study_name=name, storage=self.storage)
        except KeyError:
            pass


def finished(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state in FINISHED]


def in_state(trials: list[FrozenTrial], state: TrialState) -> list[FrozenTrial]:
    return [t for t in trials if t.state == state]


def params_key(trial: FrozenTrial) -> str:
    return json.dumps(trial.params, sort_keys=True)


def wait_for(
    predicate: Callable[[], Any],
    *,
    what: str,
    timeout: float = 150,
    procs: tuple[Proc, ...] = (),
    interval: float = 0.2,
) -> Any:
    """Polls ``predicate`` until it returns something truthy; fails if a process in ``procs``
    exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                pytest.fail(f"{proc.cmd[3:]} exited before {what}:\n{proc.output}")
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    outputs = "\n".join(p.output for p in procs)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{outputs}")


def running_with_reports(reader: Reader, name: str) -> list[FrozenTrial]:
    """The study's RUNNING trials that already reported an epoch (so they are inside fit)."""
    return [t for t in in_state(reader.trials(name), TrialState.RUNNING) if t.intermediate_values]


@pytest.fixture
def pg_url() -> str:
    return server_url("postgresql")


# --- 1. lrsearch start --workers 3 --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_three_workers_share_one_study_and_meet_the_budget(kind: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'workers.db'}" if kind == "sqlite" else server_url(kind)
    name = unique("workers")
    n_trials, n_workers = 4, 3
    study_file = write_study(tmp_path, name, n_trials=n_trials, epochs=SHORT_EPOCHS)
    reader: Reader | None = None
    try:
        result = run_lrsearch(
            "start",
            str(study_file),
            "--workers",
            str(n_workers),
            "--storage",
            url,
            env=child_env(),
            cwd=tmp_path,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "database is locked" not in output.lower(), output
        assert "Traceback" not in output, output

        reader = Reader(url)
        trials = reader.trials(name)
        done = finished(trials)
        overshoot = len(done) - n_trials
        print(
            f"\n[{kind}] {n_workers} workers: {len(done)} finished of {n_trials} (overshoot "
            f"{overshoot}); states {sorted(t.state.name for t in trials)}"
        )
        assert 0 <= overshoot <= n_workers - 1, [t.state for t in trials]
        assert not in_state(trials, TrialState.FAIL), output
        assert not in_state(trials, TrialState.RUNNING)
        assert not in_state(trials, TrialState.WAITING)

        # Every worker labels its lines; every trial was reported by exactly one worker.
        for i in range(1, n_workers + 1):
            assert f"[w{i}] done: " in output, output
        reported: dict[int, list[str]] = {}
        for line in output.splitlines():
            match = WORKER_TRIAL_LINE.match(line)
            if match:
                reported.setdefault(int(match[2]), []).append(match[1])
        assert sorted(reported) == sorted(t.number for t in trials), output
        assert all(len(labels) == 1 for labels in reported.values()), reported
        assert f"done: {len(done)}/{n_trials} finished" in result.stdout

        # Different sampler seeds per worker: no two trials share a configuration.
        distinct = {params_key(t) for t in done}
        assert len(distinct) >= 2
        assert len(distinct) == len(done), [t.params for t in done]
    finally:
        kill_strays(str(tmp_path))
        (reader or Reader(url)).delete(name)


# --- 2. kill -9 of a worker mid-trial ------------------------------------------------------------


@pytest.mark.slow
def test_killed_workers_trial_is_failed_and_rerun_by_the_other_worker(
    tmp_path: Path, pg_url: str
) -> None:
    name = unique("kill")
    n_trials = 4
    study_file = write_study(tmp_path, name, n_trials=n_trials, epochs=MID_EPOCHS)
    env = child_env(LRSEARCH_HEARTBEAT_INTERVAL="1", LRSEARCH_GRACE_PERIOD="3")
    args = ("start", str(study_file), "--storage", pg_url, "--no-progress")
    reader = Reader(pg_url)
    a = Proc.lrsearch(*args, env=env, cwd=tmp_path)
    b = Proc.lrsearch(*args, env=env, cwd=tmp_path)
    try:
        # Both workers inside a trial at once: whichever trial is A's, A dies inside it.
        wait_for(
            lambda: len(running_with_reports(reader, name)) == 2,
            what="both workers to be inside a trial",
            procs=(a, b),
        )
        a.kill()
        killed_at = datetime.datetime.now()  # Optuna stamps trials with the local naive time
        code = b.wait(timeout=180)
        assert code == 0, b.output
        assert "Traceback" not in b.output, b.output

        trials = reader.trials(name)
        failed = in_state(trials, TrialState.FAIL)
        assert len(failed) == 1, [(t.number, t.state.name) for t in trials]
        killed = failed[0]
        assert killed.intermediate_values, "the killed trial was mid-training"
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
        assert len(retries) == 1, [(t.number, t.system_attrs) for t in trials]
        retry = retries[0]
        assert retry.state == TrialState.COMPLETE
        assert retry.params == killed.params
        assert retry.number > killed.number
        assert re.search(rf"^#{retry.number}\s", b.output, re.MULTILINE), b.output
        assert not in_state(trials, TrialState.RUNNING)
        assert not in_state(trials, TrialState.WAITING)
        done = finished(trials)
        assert n_trials <= len(done) <= n_trials + 1, [(t.number, t.state.name) for t in trials]
        # The two workers sampled different configurations (only the retry repeats one).
        sampled = [t for t in done if t is not retry]
        assert len({params_key(t) for t in sampled}) == len(sampled), [t.params for t in done]

        assert retry.datetime_start is not None
        seconds = (retry.datetime_start - killed_at).total_seconds()
        print(
            f"\nkill -9 -> retried trial #{retry.number} (of #{killed.number}) started after "
            f"{seconds:.1f}s (heartbeat 1s, grace 3s); {len(done)}/{n_trials} finished"
        )
        assert 0 < seconds < 60
    finally:
        a.kill()
        b.kill()
        reader.delete(name)


# --- 3. status STALE, reap, resume ---------------------------------------------------------------


@pytest.mark.slow
def test_status_shows_stale_reap_queues_it_and_resume_finishes_from_the_database(
    tmp_path: Path, pg_url: str
) -> None:
    name = unique("reap")
    n_trials = 2
    files = tmp_path / "files"
    study_file = write_study(files, name, n_trials=n_trials, epochs=MID_EPOCHS)
    grace = 2
    env = child_env(LRSEARCH_HEARTBEAT_INTERVAL="1", LRSEARCH_GRACE_PERIOD=str(grace))
    reader = Reader(pg_url)
    worker = Proc.lrsearch(
        "start", str(study_file), "--storage", pg_url, "--no-progress", env=env, cwd=files
    )
    try:
        (running,) = wait_for(
            lambda: running_with_reports(reader, name), what="a running trial", procs=(worker,)
        )
        worker.kill()
        time.sleep(grace + 1.5)  # the last heartbeat is now older than the grace period

        status = run_lrsearch("status", name, "--storage", pg_url, env=env, cwd=tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        lines = [s for s in status.stdout.splitlines() if s.startswith("running: ")]
        assert len(lines) == 1, status.stdout
        assert lines[0].startswith(f"running: trial #{running.number} "), status.stdout
        assert "STALE" in lines[0], status.stdout
        # status only reports: the trial is still RUNNING in the database
        assert reader.trial(running._trial_id).state == TrialState.RUNNING

        reap = run_lrsearch("reap", name, "--storage", pg_url, env=env, cwd=tmp_path)
        assert reap.returncode == 0, reap.stdout + reap.stderr
        expected = f"failed 1 stale trial(s) (#{running.number}); queued to run again"
        assert expected in reap.stdout, reap.stdout
        trials = reader.trials(name)
        assert [(t.number, t.state) for t in trials] == [
            (running.number, TrialState.FAIL),
            (running.number + 1, TrialState.WAITING),
        ]
        queued = trials[1]
        assert queued.system_attrs["failed_trial"] == running.number
        assert queued.params == running.params

        # Resume from another folder, with the study file gone: only the database is left.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        shutil.rmtree(files)
        resume = run_lrsearch(
            "resume", name, "--storage", pg_url, "--no-progress", env=env, cwd=elsewhere
        )
        output = resume.stdout + resume.stderr
        assert resume.returncode == 0, output
        assert f"{MID_EPOCHS} epochs per trial, budget {n_trials} trials" in output, output
        assert f"done: {n_trials}/{n_trials} finished" in output, output
        assert list(elsewhere.iterdir()) == []  # nothing written here: the storage was given

        trials = reader.trials(name)
        assert not in_state(trials, TrialState.RUNNING)
        assert not in_state(trials, TrialState.WAITING)
        assert len(finished(trials)) == n_trials
        retried = reader.trial(queued._trial_id)
        assert retried.state == TrialState.COMPLETE
        assert retried.params == running.params
        assert retried.system_attrs["failed_trial"] == running.number
        assert TrialRecord.of(retried).epochs_run == MID_EPOCHS
    finally:
        worker.kill()
        reader.delete(name)


# --- 4. PostgreSQL restarts mid-study -----------------------------------------------------------


def _pg_version(url: str) -> str:
    """The local PostgreSQL cluster version for pg_ctlcluster, or skip (fail under CI)."""

    def unavailable(reason: str) -> None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)

    if shutil.which("pg_ctlcluster") is None:
        unavailable("pg_ctlcluster is not installed")
    if os.geteuid() != 0:
        unavailable("restarting PostgreSQL with pg_ctlcluster needs root")
    host = sqlalchemy.engine.make_url(url).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        unavailable(f"the test PostgreSQL at {host} is not the local cluster")
    versions = sorted(
        (p.name for p in Path("/etc/postgresql").glob("*") if (p / "main").is_dir()),
        key=lambda v: [int(x) for x in v.split(".") if x.isdigit()],
    )
    if not versions:
        unavailable("no PostgreSQL cluster 'main' under /etc/postgresql")
    return versions[-1]


def _ensure_pg_running(version: str) -> None:
    status = subprocess.run(
        ["pg_ctlcluster", version, "main", "status"], capture_output=True, text=True
    )
    if status.returncode != 0:
        subprocess.run(["pg_ctlcluster", version, "main", "start"], check=True, timeout=120)


@pytest.fixture
def pg_cluster(pg_url: str) -> Iterator[str]:
    """The local cluster's version; PostgreSQL is running again after the test, whatever
    happened."""
    version = _pg_version(pg_url)
    try:
        yield version
    finally:
        _ensure_pg_running(version)
        server_url("postgresql")  # answers again


@pytest.mark.slow
def test_worker_survives_a_postgresql_restart(
    tmp_path: Path, pg_url: str, pg_cluster: str
) -> None:
    name = unique("restart")
    n_trials = 2
    study_file = write_study(tmp_path, name, n_trials=n_trials, epochs=LONG_EPOCHS)
    reader = Reader(pg_url)
    worker = Proc.lrsearch(
        "start",
        str(study_file),
        "--storage",
        pg_url,
        "--no-progress",
        env=child_env(),
        cwd=tmp_path,
    )
    try:
        # Early in a training: the restart falls inside it, while the worker reports epochs.
        (running,) = wait_for(
            lambda: [
                t
                for t in running_with_reports(reader, name)
                if len(t.intermediate_values) <= LONG_EPOCHS // 6
            ],
            what="a trial early in its training",
            procs=(worker,),
            interval=0.1,
        )
        before = len(finished(reader.trials(name)))
        restart_at = time.monotonic()
        # Down for a few seconds (a bare restart can be quicker than the worker's next call,
        # which then never sees the outage): the worker reports every epoch, so it hits it.
        for action in ("stop", "start"):
            subprocess.run(
                ["pg_ctlcluster", pg_cluster, "main", action],
                check=True,
                capture_output=True,
                timeout=120,
            )
            if action == "stop":
                time.sleep(3)
        up_at = time.monotonic()

        code = worker.wait(timeout=240)
        assert code == 0, worker.output
        assert "Traceback" not in worker.output, worker.output
        # The worker did hit the outage, and waited it out.
        assert "lost the database connection" in worker.output, worker.output
        trials = reader.trials(name)
        after = finished(trials)
        assert before <= len(after)
        assert len(after) == n_trials, [(t.number, t.state) for t in trials]
        assert not in_state(trials, TrialState.FAIL), worker.output
        assert not in_state(trials, TrialState.RUNNING)
        # The trial running across the restart went on to its last epoch.
        across = reader.trial(running._trial_id)
        assert across.state == TrialState.COMPLETE
        assert TrialRecord.of(across).epochs_run == LONG_EPOCHS
        assert sorted(across.intermediate_values) == list(range(1, LONG_EPOCHS + 1))

        # The worker's next trial line after the restart began: its next finished trial.
        lines_after = [(t, s) for t, s in worker.lines if t > restart_at and TRIAL_LINE.match(s)]
        assert lines_after, worker.output
        line_at, line = lines_after[0]
        print(
            f"\npg_ctlcluster restart took {up_at - restart_at:.1f}s (trial "
            f"#{running.number} at epoch {len(running.intermediate_values)}/{LONG_EPOCHS}); "
            f"next trial line ({line.split()[0]}) {line_at - restart_at:.1f}s after the restart "
            f"began; finished {before} -> {len(after)}"
        )
        assert line_at - restart_at < 60
    finally:
        worker.kill()
        _ensure_pg_running(pg_cluster)
        reader.delete(name)


@pytest.fixture
def pg_refusing(pg_url: str) -> Iterator[Callable[[float], threading.Timer]]:
    """``refuse(seconds)``: the test database refuses new connections for that long (as while
    it restarts) without disturbing the sessions others have open; re-allowed whatever
    happens."""
    url = sqlalchemy.engine.make_url(pg_url)
    database = url.database
    admin = sqlalchemy.create_engine(
        url.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )

    def allow(value: bool) -> None:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {value}'))

    try:
        allow(True)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"cannot toggle connections to {database}: {exc}")
        pytest.skip(f"cannot toggle connections to {database} (needs a superuser): {exc}")

    def refuse(seconds: float) -> threading.Timer:
        allow(False)
        timer = threading.Timer(seconds, allow, args=(True,))
        timer.start()
        return timer

    try:
        yield refuse
    finally:
        allow(True)
        admin.dispose()


def test_study_calls_wait_while_postgresql_refuses_connections(
    pg_url: str, pg_refusing: Callable[[float], threading.Timer]
) -> None:
    """Every storage call a worker makes between and inside trials (get_trials, ask, suggest,
    report, tell, best_trial) waits while the server is unreachable instead of failing.

    Optuna wraps an RDBStorage in a cache that calls some private methods of it directly
    (get_trials, ask, suggest, best_trial); those must retry too. In-process, no TensorFlow.
    """
    from lrsearch.storage import open_storage

    name = unique("outage")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(pg_url)
    study = optuna.create_study(storage=storage, study_name=name)
    held: dict[str, Any] = {}

    def ask() -> None:
        held["trial"] = study.ask()

    calls: list[tuple[str, Callable[[], Any]]] = [
        ("get_trials", lambda: study.get_trials(deepcopy=False)),
        ("ask", ask),
        ("suggest", lambda: held["trial"].suggest_float("x", 0.0, 1.0)),
        ("report", lambda: held["trial"].report(0.5, 1)),
        ("tell", lambda: study.tell(held["trial"], 0.5)),
        ("best_trial", lambda: study.best_trial),
    ]
    try:
        for what, call in calls:
            storage.engine.dispose()  # the next call needs a new connection
            timer = pg_refusing(0.4)
            started = time.monotonic()
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - reported as the failure
                pytest.fail(f"{what} failed while PostgreSQL refused connections: {exc!r}")
            finally:
                timer.join()
            assert time.monotonic() - started >= 0.35, f"{what} did not need the database"
        (trial,) = study.get_trials()
        assert trial.state == TrialState.COMPLETE and trial.value == 0.5
        assert 0.0 <= trial.params["x"] <= 1.0
        assert trial.intermediate_values == {1: 0.5}
    finally:
        storage.engine.dispose()
        Reader(pg_url).delete(name)


# --- 5. docker-compose.yml ----------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


def _env_example() -> dict[str, str]:
    out = {}
    for line in (REPO / ".env.example").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _compose_default(text: str, var: str) -> str | None:
    """The default of ``${VAR:-default}`` in ``text``."""
    match = re.search(rf"(?<!\$)\$\{{{var}:?-([^}}]*)\}}", text)
    return match[1] if match else None


def _shell_command(command: list[str] | str) -> list[str]:
    """A compose ``command`` as the container runs it: ``$$`` is compose's escape for ``$``."""
    parts = [command] if isinstance(command, str) else command
    return [part.replace("$$", "$") for part in parts]


def test_docker_compose_file_is_coherent() -> None:
    compose = _compose()
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    services = compose["services"]
    assert {"postgres", "dashboard", "worker"} <= set(services)

    postgres = services["postgres"]
    health = postgres["healthcheck"]
    assert "pg_isready" in " ".join(health["test"])
    volumes = set(compose.get("volumes") or {})
    mounts = [str(v).split(":") for v in postgres["volumes"]]
    assert any(src in volumes and dst == "/var/lib/postgresql/data" for src, dst, *_ in mounts)
    for service in ("dashboard", "worker"):
        depends = services[service]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"

    # Only the dashboard publishes a port, on the loopback interface: it has no authentication.
    for name, service in services.items():
        for port in service.get("ports", []):
            assert name == "dashboard"
            assert str(port).startswith("127.0.0.1:"), port
    assert services["dashboard"]["ports"]

    dashboard = " ".join(_shell_command(services["dashboard"]["command"]))
    assert re.search(r"\bexec optuna-dashboard\b", dashboard), dashboard
    assert "$LRSEARCH_STORAGE" in dashboard
    worker = " ".join(_shell_command(services["worker"]["command"]))
    assert re.search(r"\bexec lrsearch start \"\$STUDY_FILE\" --no-progress\b", worker), worker
    for service in ("dashboard", "worker"):
        assert services[service]["environment"]["LRSEARCH_STORAGE"].startswith(
            "postgresql+psycopg://"
        )

    # The worker's study file is in the repository (and in the image: COPY studies).
    env_example = _env_example()
    default = _compose_default(text, "STUDY_FILE")
    assert default, "STUDY_FILE needs a default"
    for study_file in {default, env_example["STUDY_FILE"]}:
        assert (REPO / study_file).is_file(), study_file
    assert re.search(r"^COPY studies\b", (REPO / "Dockerfile").read_text(), re.MULTILINE)

    # .env.example defines every variable the compose file reads (not $$escaped ones).
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
    assert used, "the compose file reads its settings from the environment"
    assert used <= set(env_example), used - set(env_example)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_compose_worker_and_dashboard_commands_run_against_postgresql(
    tmp_path: Path, pg_url: str
) -> None:
    services = _compose()["services"]
    name = unique("compose")
    n_trials = 2
    study_file = write_study(tmp_path, name, n_trials=n_trials, epochs=SHORT_EPOCHS)
    reader = Reader(pg_url)
    dashboard: subprocess.Popen[str] | None = None
    try:
        # The worker's command line, as in the container, on a tiny study and the local server.
        worker_cmd = _shell_command(services["worker"]["command"])
        env = child_env(STUDY_FILE=str(study_file), LRSEARCH_STORAGE=pg_url)
        worker = subprocess.run(
            worker_cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
        )
        output = worker.stdout + worker.stderr
        assert worker.returncode == 0, output
        assert f"done: {n_trials}/{n_trials} finished" in output, output
        trials = reader.trials(name)
        assert [t.state for t in trials] == [TrialState.COMPLETE] * n_trials

        # The dashboard's command line, bound to loopback on a free port.
        port = _free_port()
        dashboard_cmd = _shell_command(services["dashboard"]["command"])
        script = dashboard_cmd[-1]
        assert "--host 0.0.0.0" in script and "--port 8080" in script, script
        dashboard_cmd[-1] = script.replace("--host 0.0.0.0", "--host 127.0.0.1").replace(
            "--port 8080", f"--port {port}"
        )
        dashboard = subprocess.Popen(
            dashboard_cmd,
            env=child_env(LRSEARCH_STORAGE=pg_url),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        api = f"http://127.0.0.1:{port}/api/studies"

        def answers() -> dict[str, Any] | None:
            assert dashboard is not None
            if dashboard.poll() is not None:
                pytest.fail(f"optuna-dashboard exited: {dashboard.communicate()[0]}")
            try:
                with urllib.request.urlopen(api, timeout=5) as response:
                    if response.status == 200:
                        return json.loads(response.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return None
            return None

        listing = wait_for(answers, what="optuna-dashboard to answer", timeout=60, interval=0.3)
        studies = {s["study_name"]: s for s in listing["study_summaries"]}
        assert name in studies, sorted(studies)
    finally:
        if dashboard is not None:
            dashboard.terminate()
            try:
                dashboard.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                dashboard.kill()
                dashboard.communicate()
        kill_strays(str(tmp_path))
        reader.delete(name)


# --- 6. several processes started at the same instant on an empty database ----------------------


@pytest.fixture
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database on the server of ``request.param`` (dropped after)."""
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    base = server_url(kind)
    name = f"lrs_fresh_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    url = sqlalchemy.engine.make_url(base).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        kill_strays(str(tmp_path))
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(
                    sqlalchemy.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("fresh_database", ["sqlite", "postgresql", "mysql"], indirect=True)
def test_four_processes_started_together_on_an_empty_database_all_work(
    fresh_database: str, tmp_path: Path
) -> None:
    """What ``docker compose up --scale worker=4`` does on its first start: four plain
    ``lrsearch start`` processes (not ``--workers``) racing to create the schema and the study."""
    name = unique("fresh")
    n_trials, n_procs = 6, 4
    study_file = write_study(tmp_path, name, n_trials=n_trials, epochs=SHORT_EPOCHS)
    env = child_env(**thread_env(n_procs))
    args = ("start", str(study_file), "--storage", fresh_database, "--no-progress")
    procs = [Proc.lrsearch(*args, env=env, cwd=tmp_path) for _ in range(n_procs)]
    codes = [p.wait(timeout=300) for p in procs]
    outputs = "\n---\n".join(p.output for p in procs)
    assert codes == [0] * n_procs, outputs
    assert "Traceback" not in outputs, outputs

    summaries = optuna.get_all_study_summaries(fresh_database)
    assert [s.study_name for s in summaries] == [name], outputs  # created once
    trials = Reader(fresh_database).trials(name)
    done = finished(trials)
    assert n_trials <= len(done) <= n_trials + n_procs - 1, [t.state for t in trials]
    assert not in_state(trials, TrialState.FAIL), outputs
    # Four sampler seeds: the first samples of the four processes differ.
    assert len({params_key(t) for t in done}) == len(done), [t.params for t in done]
    headers = [p for p in procs if f"study '{name}'" in p.output]
    assert len(headers) == n_procs, outputs


# --- 7. a timeout is a timeout for the whole command ---------------------------------------------


@pytest.mark.slow
def test_workers_timeout_bounds_the_whole_command(tmp_path: Path) -> None:
    """``--workers 2 --timeout S``: no trial starts after S seconds from the command's start
    (the supervisor used to train the rest of the budget alone after its workers stopped)."""
    url = f"sqlite:///{tmp_path / 'timeout.db'}"
    name = unique("timeout")
    study_file = write_study(tmp_path, name, n_trials=200, epochs=SHORT_EPOCHS)
    timeout = 25.0
    started = datetime.datetime.now()  # Optuna stamps trials with the local naive time
    result = run_lrsearch(
        "start",
        str(study_file),
        "--storage",
        url,
        "--workers",
        "2",
        "--timeout",
        str(timeout),
        "--no-progress",
        env=child_env(),
        cwd=tmp_path,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    trials = Reader(url).trials(name)
    assert 0 < len(finished(trials)) < 200, output
    latest = max(t.datetime_start for t in trials if t.datetime_start is not None)
    assert (latest - started).total_seconds() <= timeout + 1.0, (latest, started, output)
    assert not in_state(trials, TrialState.RUNNING)


# --- 8. a RUNNING trial that never sent a heartbeat ----------------------------------------------


@pytest.mark.slow
def test_running_trial_without_heartbeat_is_stale_after_the_grace_period(
    tmp_path: Path, pg_url: str
) -> None:
    """A worker that died between Optuna's ``ask()`` and its first heartbeat leaves a RUNNING
    trial with no heartbeat row. It must count as stale once older than the grace period:
    ``status`` marks it, ``reap`` fails and queues it, and ``start`` never waits without bound."""
    name = unique("noheart")
    study_file = write_study(tmp_path, name, n_trials=2, epochs=SHORT_EPOCHS)
    env = child_env(LRSEARCH_HEARTBEAT_INTERVAL="1", LRSEARCH_GRACE_PERIOD="3")
    args = ("start", str(study_file), "--storage", pg_url, "--no-progress")
    reader = Reader(pg_url)
    try:
        first = run_lrsearch(*args, "--n-trials", "1", env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        # The orphan: asked through a storage without heartbeats, as a worker killed right
        # after ask() leaves it.
        orphan = optuna.load_study(study_name=name, storage=reader.storage).ask()
        time.sleep(4)  # older than the grace period

        status = run_lrsearch("status", name, "--storage", pg_url, env=env, cwd=tmp_path)
        assert re.search(rf"running: trial #{orphan.number} .*STALE", status.stdout), (
            status.stdout + status.stderr
        )
        reap = run_lrsearch("reap", name, "--storage", pg_url, env=env, cwd=tmp_path)
        assert f"(#{orphan.number})" in reap.stdout, reap.stdout + reap.stderr
        assert reader.trial(orphan._trial_id).state == TrialState.FAIL

        # Another orphan; this time nobody reaps: start must take it over, not wait forever.
        orphan2 = optuna.load_study(study_name=name, storage=reader.storage).ask()
        time.sleep(4)
        second = run_lrsearch(*args, "--n-trials", "3", env=env, cwd=tmp_path, timeout=120)
        assert second.returncode == 0, second.stdout + second.stderr
        assert reader.trial(orphan2._trial_id).state == TrialState.FAIL
        trials = reader.trials(name)
        assert not in_state(trials, TrialState.RUNNING)
        assert len(finished(trials)) >= 3
    finally:
        reader.delete(name)


# --- 9. memory stays flat over a long study ------------------------------------------------------


LEAKY_MODEL = """
import numpy as np
import keras

_KEPT = []


def leaky(input_shape, n_classes, **params):
    _KEPT.append(np.ones(750_000))  # 6 MB kept per model built, as rebuilt Keras models once did
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))
"""


def _memory_run(
    tmp_path: Path, name: str, n_trials: int, model: str, **env: str
) -> tuple[Proc, float]:
    """Runs a study of ``n_trials`` 2-epoch trials; returns the process and how much its tree's
    memory grew from the 6th finished trial to the end."""
    from bench.memory import tree_rss_mb

    text = study_text(name, n_trials=n_trials, epochs=2)  # short trials: no onecycle
    text = text.replace('"onecycle"', '"constant"').replace('type = "mlp"', f'type = "{model}"')
    study_file = tmp_path / f"{name}.toml"
    study_file.write_text(text, encoding="utf-8")
    (tmp_path / "leaky_models.py").write_text(LEAKY_MODEL, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    proc = Proc.lrsearch(
        "start",
        str(study_file),
        "--storage",
        url,
        "--artifacts",
        "none",
        "--no-progress",
        "--pack",
        "1",
        env=child_env(**env),
        cwd=tmp_path,
    )
    peak: dict[int, float] = {}
    while proc.alive():
        done = sum(1 for _, line in proc.lines if TRIAL_LINE.match(line))
        peak[done] = max(peak.get(done, 0.0), tree_rss_mb(proc.pid))
        time.sleep(0.2)
    assert proc.wait(timeout=10) == 0, proc.output
    assert f"done: {n_trials}/{n_trials} finished" in proc.output, proc.output
    at = min(n for n in peak if n >= 6)
    growth = max(mb for n, mb in peak.items() if n >= at) - peak[at]
    print(f"\nmemory from trial {at} to {n_trials}: {growth:+.0f} MB")
    return proc, growth


@pytest.mark.slow
def test_worker_memory_stays_flat_because_the_model_is_compiled_once(tmp_path: Path) -> None:
    """A short run of what ``bench/memory.py`` measures over 200 trials: one trial at a time
    (``--pack 1``), every trial loaded into the model the worker compiled once, so memory does
    not grow from trial to trial and no worker needs replacing (each rebuilt model once kept
    ~5 MB)."""
    proc, growth = _memory_run(tmp_path, unique("flat"), 26, "mlp", LRSEARCH_RECYCLE_MB="30")
    assert growth < 20
    assert "worker replaced" not in proc.output, proc.output


@pytest.mark.slow
def test_a_worker_that_grows_is_replaced_and_memory_stays_bounded(tmp_path: Path) -> None:
    """A model function that keeps 6 MB per model it builds: with a recycle limit of 30 MB the
    worker is replaced by a fresh process and the command's memory stays within it."""
    limit = 30
    proc, growth = _memory_run(
        tmp_path,
        unique("leaky"),
        16,
        "python:leaky_models:leaky",
        LRSEARCH_RECYCLE_MB=str(limit),
    )
    assert growth < limit + 30
    assert "worker replaced by a fresh process" in proc.output, proc.output
