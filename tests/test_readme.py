"""The README's code, run exactly as written, each block in a fresh Python process.

Every ```python block runs as is; every ```bash block of the "From Python" section (the
commands that feed those snippets) runs through the shell with ``lrsearch`` on the PATH. They run
in one folder holding a small study named ``digits-mlp`` in ``lrsearch.db``, the default study's
name and storage, so the commands work as a user who ran the quick start would type them.
(The quick start's own commands are run by the quick-start check from a fresh clone.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)

STUDY = """\
[study]
name = "digits-mlp"
n_trials = 1
pruner = "none"

[data]
source = "digits"
limit = 240

[model]
type = "mlp"
hidden = [8]

[training]
epochs = 4

[space]
families = ["onecycle"]
"""


def blocks(language: str, section: str | None = None) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    if section is not None:
        start = text.index(f"### {section}\n")
        end = text.find("\n## ", start)
        text = text[start : end if end >= 0 else None]
    return [m[2] for m in BLOCK.finditer(text) if m[1] == language]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("LRSEARCH_")}
    out["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), out.get("PATH", "")])
    out["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a one-trial ``digits-mlp`` study in ``lrsearch.db``, then the README's
    bash commands of "From Python" run there in order."""
    where = tmp_path_factory.mktemp("readme")
    (where / "digits.toml").write_text(STUDY, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "lrsearch.cli", "start", "digits.toml", "--no-progress"],
        cwd=where,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for script in blocks("bash", "From Python"):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=where,
            env=env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, (script, done.stdout + done.stderr)
    return where


def test_the_readme_has_the_snippets_this_file_runs() -> None:
    assert len(blocks("python")) >= 2
    assert blocks("bash", "From Python")


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_snippet_runs_as_written(folder: Path, index: int) -> None:
    code = blocks("python")[index]
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"README python block {index}:\n{code}\n{run.stdout}{run.stderr}"
    assert "Traceback" not in run.stderr


def test_the_loaded_schedule_is_lrsearchs(folder: Path) -> None:
    """The export-and-load snippet gives the schedule object, not the string Keras returns for
    an unregistered class (what it did in a fresh process before)."""
    code = next(b for b in blocks("python") if "deserialize" in b)
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env(), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("OneCycleSchedule "), run.stdout
