from __future__ import annotations

import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from lrsearch.cli import cli
from lrsearch.schedules import FAMILIES


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_help_does_not_import_frameworks() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); from lrsearch.cli import cli\n"
        "try:\n    cli(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'optuna', 'jax', 'matplotlib')"
        " if m in sys.modules))"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    elapsed = time.perf_counter() - start
    assert out.strip().splitlines()[-1] == "[]"
    assert elapsed < 5  # the whole interpreter start; typically ~0.2 s


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["schedules", "plot", "-h"],
        *([name, "--help"] for name in sorted(cli.commands)),
    ],
)
def test_every_help_has_an_example(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 0
    assert "Examples:" in result.output
    assert "lrsearch " in result.output


def test_schedules_lists_every_family_and_param(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["schedules"])
    assert result.exit_code == 0, result.output
    for family in FAMILIES.values():
        assert family.name in result.output
        for param in family.params:
            assert param.name in result.output
    assert "total_steps - warmup_steps" in result.output  # derived defaults are explained
    own = result.output.split("schedule_free", 1)[1]
    assert "trains with keras.optimizers.ScheduleFreeAdamW" in own
    assert "not by default" in own
    assert result.output.count("not by default") == 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_plot_writes_a_png(runner: CliRunner, tmp_path, family: str) -> None:
    out = tmp_path / f"{family}.png"
    result = runner.invoke(
        cli,
        [
            "schedules",
            "plot",
            family,
            "--learning-rate",
            "0.1",
            "--epochs",
            "3",
            "--steps-per-epoch",
            "20",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000  # a drawn figure, not an empty canvas
    assert "max 0.1" in result.output
    cycles = FAMILIES[family].param_names.count("cycle_momentum") == 1
    assert ("momentum cycles" in result.output) == cycles
    if cycles:  # drawn on a second axis; without cycling the picture has none
        flat = tmp_path / "flat.png"
        args = ["schedules", "plot", family, "--learning-rate", "0.1", "--epochs", "3"]
        args += ["--steps-per-epoch", "20", "--cycle-momentum", "false", "-o", str(flat)]
        again = runner.invoke(cli, args)
        assert again.exit_code == 0 and "momentum" not in again.output, again.output
        assert flat.read_bytes() != out.read_bytes()


def test_plot_parses_dashes_underscores_flags_and_equals(runner: CliRunner, tmp_path) -> None:
    out = tmp_path / "o.png"
    result = runner.invoke(
        cli,
        [
            "schedules",
            "plot",
            "onecycle",
            "--learning_rate=0.2",
            "--pct-start",
            "0.25",
            "--three-phase",
            "--anneal",
            "linear",
            "--epochs",
            "4",
            "--steps-per-epoch",
            "25",
            "-o",
            str(out),
            "--log",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "max 0.2" in result.output
    assert out.exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["schedules", "plot", "cosin"], "Did you mean 'cosine'?"),
        (["schedules", "plot", "onecycle", "--pct-strat", "0.3"], "Did you mean `pct_start`?"),
        (["schedules", "plot", "onecycle", "--pct-start", "1.5"], "pct_start=1.5"),
        (["schedules", "plot", "cosine", "--alpha", "lots"], "Argument `alpha` must be a number"),
        (["schedules", "plot", "cosine", "--alpha"], "--alpha needs a value"),
        (["schedules", "plot", "cosine", "stray"], "Unexpected argument 'stray'"),
        (["schedulez"], "Did you mean 'schedules'?"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runner: CliRunner, args: list[str], needle: str) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1
