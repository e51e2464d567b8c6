"""Bad input of every kind through the ``lrsearch`` command line: one clear line, never more.

Each case is a study file, data source, storage URL, flag, output path or environment value a
user could type. Every one must end with

* the exit code of the README's rule: 2 for bad input (a flag, a study-file field, an environment
  variable, a malformed URL), 1 for an environment that fails (an unreachable database);
* exactly one ``Error:`` line, naming the field, option or variable;
* no traceback, and no password (``s3cretpw``, wherever it sits in a URL);
* no study and no database created (each case runs in an empty folder);
* an answer within seconds (no retry of a permanent error).

The cases run in-process through click's runner: most never import Keras, and the few that
build a model run it once in a worker process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from lrsearch.cli import cli

SECRET = "s3cretpw"
VALID = """\
[study]
name = "fuzz"
n_trials = 2

[data]
source = "digits"
limit = 240

[training]
epochs = 4
"""


@dataclass
class Case:
    """One bad input: the command line, files to write first, environment, what must happen."""

    id: str
    args: list[str]
    code: int
    needle: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    seconds: float = 20.0


def study(*replace: tuple[str, str], extra: str = "") -> dict[str, str | bytes]:
    """``s.toml``: the valid file with text replaced and ``extra`` appended."""
    text = VALID
    for old, new in replace:
        assert old in text, old
        text = text.replace(old, new)
    return {"s.toml": text + extra}


def field_case(id: str, old: str, new: str, needle: str, code: int = 2) -> Case:
    return Case(id, ["start", "s.toml"], code, needle, study((old, new)))


def extra_case(id: str, extra: str, needle: str, code: int = 2) -> Case:
    return Case(id, ["start", "s.toml"], code, needle, study(extra=extra))


STUDY_FILE_CASES = [
    field_case("n_trials-string", "n_trials = 2", 'n_trials = "5"', "study.n_trials"),
    field_case("n_trials-zero", "n_trials = 2", "n_trials = 0", "study.n_trials"),
    field_case("n_trials-float", "n_trials = 2", "n_trials = 2.5", "study.n_trials"),
    field_case("epochs-bool", "epochs = 4", "epochs = true", "training.epochs"),
    field_case("epochs-negative", "epochs = 4", "epochs = -3", "training.epochs"),
    field_case("epochs-huge", "epochs = 4", "epochs = 100000000000", "training.epochs"),
    field_case("limit-zero", "limit = 240", "limit = 0", "data.limit"),
    field_case("limit-string", "limit = 240", 'limit = "all"', "data.limit"),
    field_case("name-empty", 'name = "fuzz"', 'name = ""', "study.name"),
    field_case("name-huge", 'name = "fuzz"', f'name = "{"n" * 100_000}"', "study.name"),
    field_case("name-newline", 'name = "fuzz"', 'name = "a\\nb"', "study.name"),
    field_case("source-typo", '"digits"', '"digts"', "data.source"),
    field_case("source-keras-unknown", '"digits"', '"keras:imagenet"', "data.source"),
    field_case("source-npz-empty", '"digits"', '"npz:"', "data.source"),
    field_case("source-python-malformed", '"digits"', '"python:nocolon"', "data.source"),
    field_case("source-number", 'source = "digits"', "source = 3", "data.source"),
    field_case("source-missing-npz", '"digits"', '"npz:missing.npz"', "missing.npz"),
    field_case("source-missing-csv", '"digits"', '"csv:missing.csv"', "missing.csv"),
    extra_case("unknown-section", "[modle]\ntype = 'mlp'\n", "modle"),
    extra_case("families-typo", "[space]\nfamilies = ['cosin']\n", "cosine"),
    extra_case("families-empty", "[space]\nfamilies = []\n", "space.families"),
    extra_case("lr-huge", "[space]\nlearning_rate = 1e308\n", "learning_rate"),
    extra_case("lr-negative", "[space]\nlearning_rate = [-1.0, 0.1]\n", "learning_rate"),
    extra_case(
        "log-string",
        "[space]\nfamilies = ['cosine']\n[space.cosine]\nalpha = {low = 0.0, high = 0.5, "
        "log = 'yes'}\n",
        "log",
    ),
    extra_case("space-param-typo", "[space.onecycle]\npct_strat = 0.3\n", "pct_start"),
    extra_case("model-type-typo", "[model]\ntype = 'mlpp'\n", "model.type"),
    extra_case("model-python-missing", "[model]\ntype = 'python:nomodule:build'\n", "model.type"),
    extra_case("model-param-string", "[model]\nhidden = 'lots'\n", "model.hidden"),
    extra_case(
        "baseline-family", "[[baseline]]\nfamily = 'cosin'\nlearning_rate = 0.1\n", "cosin"
    ),
    extra_case(
        "baseline-lr-negative",
        "[[baseline]]\nfamily = 'cosine'\nlearning_rate = -0.1\n",
        "baseline",
    ),
    extra_case("toml-syntax", "[study\n", "TOML syntax error"),
]


def _training(id: str, line: str, needle: str) -> Case:
    return Case(id, ["start", "s.toml"], 2, needle, study(("epochs = 4", f"epochs = 4\n{line}")))


def _study_line(id: str, line: str, needle: str) -> Case:
    return Case(
        id, ["start", "s.toml"], 2, needle, study(("n_trials = 2", f"n_trials = 2\n{line}"))
    )


STUDY_FILE_CASES += [
    _study_line("seed-2-32", "seed = 4294967296", "study.seed"),
    _study_line("seed-negative", "seed = -1", "study.seed"),
    _study_line("unknown-study-field", "n_trails = 3", "study.n_trails"),
    _study_line("metric-typo", "metric = 'val_acc'", "study.metric"),
    _study_line("direction-typo", "direction = 'up'", "study.direction"),
    _study_line("sampler-typo", "sampler = 'tpx'", "study.sampler"),
    _study_line("pruner-typo", "pruner = 'median2'", "study.pruner"),
    _study_line("timeout-negative", "timeout = -5", "study.timeout"),
    _training("optimizer-typo", "optimizer = 'adamm'", "training.optimizer"),
    _training("weight-decay-inf", "weight_decay = inf", "training.weight_decay"),
    _training("weight-decay-nan", "weight_decay = nan", "training.weight_decay"),
    _training("momentum-one", "momentum = 1.0", "training.momentum"),
    _training("divergence-one", "divergence_factor = 1", "training.divergence_factor"),
    _training("backend-torch", "backend = 'torch'", "training.backend"),
    _training("loss-number", "loss = 3", "training.loss"),
]

FILE_CASES = [
    Case("study-file-missing", ["start", "nothere.toml"], 2, "nothere.toml"),
    Case("study-file-directory", ["start", "."], 2, "directory"),
    Case("study-file-binary", ["start", "s.toml"], 2, "s.toml", {"s.toml": b"\x00\xff\xfe"}),
    Case("study-file-empty", ["start", "s.toml"], 2, "study", {"s.toml": ""}),
    Case(
        "npz-is-text",
        ["start", "s.toml"],
        1,
        "not a valid .npz",
        {**study(('"digits"', '"npz:data.npz"')), "data.npz": "just text\n"},
    ),
    Case(
        "csv-no-label",
        ["start", "s.toml"],
        1,
        "label",
        {**study(('"digits"', '"csv:data.csv"')), "data.csv": "a,b\n1,2\n3,4\n"},
    ),
]


def url_cases() -> list[Case]:
    urls = {
        "password": f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db",
        "query": f"postgresql+psycopg://u@127.0.0.1:1/db?password={SECRET}",
        "space-inside": f"postgresql+psycopg://u:a {SECRET}@127.0.0.1:1/db",
        "mysql": f"mysql+pymysql://root:{SECRET}@127.0.0.1:1/test",
        "encoded": f"postgresql+psycopg://u:{SECRET}%40x@127.0.0.1:1/db",
    }
    cases = []
    for name, url in urls.items():
        for command in (["studies"], ["status", "fuzz"], ["best", "fuzz"]):
            cases.append(
                Case(f"url-{name}-{command[0]}", [*command, "--storage", url], 1, "storage")
            )
    malformed = {
        "no-scheme": f"postgres:{SECRET}@host/db",
        "not-a-url": "notaurl",
        "no-driver": f"postgresql+nosuchdriver://u:{SECRET}@h/db",
        "in-memory": "sqlite://",
        "in-memory-2": "sqlite:///:memory:",
        "http": f"http://u:{SECRET}@host/x",
        "at-inside": f"postgresql+psycopg://u:s3c@{SECRET}@127.0.0.1:1/db",
    }
    for name, url in malformed.items():
        for command in (["studies"], ["start", "s.toml"]):
            cases.append(
                Case(
                    f"url-{name}-{command[0]}",
                    [*command, "--storage", url],
                    2,
                    "storage",
                    study() if command[0] == "start" else {},
                )
            )
    cases.append(
        Case(
            "url-sqlite-no-folder",
            ["studies", "--storage", "sqlite:////nonexistent/x.db"],
            2,
            "nonexistent",
        )
    )
    cases.append(
        Case("url-env", ["studies"], 1, "storage", env={"LRSEARCH_STORAGE": urls["password"]})
    )
    cases.append(
        Case(
            "url-env-garbage",
            ["studies"],
            2,
            "LRSEARCH_STORAGE",
            env={"LRSEARCH_STORAGE": f"garbage {SECRET}"},
        )
    )
    return cases


FLAG_CASES = [
    Case(
        "workers-2-error-once",  # found by the first worker, before the others start
        ["start", "s.toml", "--workers", "2"],
        2,
        "training.loss",
        study(("epochs = 4", "epochs = 4\nloss = 'sparse_categoricl_crossentropy'")),
        seconds=90,
    ),
    Case("n-trials-zero", ["start", "s.toml", "--n-trials", "0"], 2, "--n-trials", study()),
    Case("n-trials-text", ["start", "s.toml", "--n-trials", "abc"], 2, "--n-trials", study()),
    Case("flag-timeout-negative", ["start", "s.toml", "--timeout", "-1"], 2, "--timeout", study()),
    Case("workers-zero", ["start", "s.toml", "--workers", "0"], 2, "--workers", study()),
    Case("flag-backend-torch", ["start", "s.toml", "--backend", "torch"], 2, "--backend", study()),
    Case(
        "study-name-long",
        ["start", "s.toml", "--study-name", "x" * 600],
        2,
        "--study-name",
        study(),
    ),
    Case(
        "study-name-newline",
        ["start", "s.toml", "--study-name", "a\nb"],
        2,
        "--study-name",
        study(),
    ),
    Case("port-text", ["dashboard", "--port", "abc"], 2, "--port"),
    Case("port-huge", ["dashboard", "--port", "70000"], 2, "--port"),
    Case("trial-text", ["export", "fuzz", "--trial", "x"], 2, "--trial"),
    Case("format-xml", ["export", "fuzz", "--format", "xml"], 2, "--format"),
    Case("unknown-command", ["strat", "s.toml"], 2, "start"),
    Case("unknown-option", ["start", "s.toml", "--n-trails", "3"], 2, "--n-trails", study()),
    Case("plot-family-typo", ["schedules", "plot", "cosin"], 2, "cosine"),
    Case(
        "plot-param-value", ["schedules", "plot", "onecycle", "--pct-start", "2"], 2, "pct_start"
    ),
    Case(
        "plot-param-typo", ["schedules", "plot", "onecycle", "--pct-strat", "0.3"], 2, "pct_start"
    ),
    Case("plot-epochs-zero", ["schedules", "plot", "cosine", "--epochs", "0"], 2, "--epochs"),
    Case(
        "plot-epochs-huge",
        ["schedules", "plot", "cosine", "--epochs", "10000000000"],
        2,
        "--epochs",
    ),
    Case("retrain-not-keras", ["retrain", "fuzz", "--save", "model.h5"], 2, ".keras"),
    Case("resume-no-database", ["resume", "nothere"], 2, "no database"),
]

OUTPUT_CASES = [
    Case("export-no-folder", ["export", "fuzz", "-o", "no-such-dir/x.json"], 2, "-o"),
    Case("export-to-folder", ["export", "fuzz", "-o", "sub"], 2, "-o", {"sub/keep": ""}),
    Case("export-unwritable", ["export", "fuzz", "-o", "/proc/x.json"], 2, "-o"),
    Case("compare-onto-file", ["compare", "fuzz", "-o", "out.txt"], 2, "-o", {"out.txt": "x"}),
    Case("compare-unwritable", ["compare", "fuzz", "-o", "/proc/report.html"], 2, "-o"),
    Case("compare-folder-unwritable", ["compare", "fuzz", "-o", "/proc/report/"], 2, "-o"),
    Case("compare-under-file", ["compare", "fuzz", "-o", "f/report"], 2, "-o", {"f": "x"}),
    Case("retrain-no-folder", ["retrain", "fuzz", "--save", "no-such-dir/m.keras"], 2, "--save"),
    Case("retrain-unwritable", ["retrain", "fuzz", "--save", "/proc/m.keras"], 2, "--save"),
    Case("plot-no-folder", ["schedules", "plot", "cosine", "-o", "no-such-dir/x.png"], 2, "-o"),
    Case("plot-unwritable", ["schedules", "plot", "cosine", "-o", "/proc/x.png"], 2, "-o"),
]

ENV_CASES = [
    Case(
        "heartbeat-text",
        ["status", "fuzz"],
        2,
        "LRSEARCH_HEARTBEAT_INTERVAL",
        env={"LRSEARCH_HEARTBEAT_INTERVAL": "abc"},
    ),
    Case(
        "heartbeat-zero",
        ["start", "s.toml"],
        2,
        "LRSEARCH_HEARTBEAT_INTERVAL",
        study(),
        env={"LRSEARCH_HEARTBEAT_INTERVAL": "0"},
    ),
    Case(
        "heartbeat-negative",
        ["reap", "fuzz"],
        2,
        "LRSEARCH_HEARTBEAT_INTERVAL",
        env={"LRSEARCH_HEARTBEAT_INTERVAL": "-5"},
    ),
    Case(
        "grace-negative",
        ["start", "s.toml"],
        2,
        "LRSEARCH_GRACE_PERIOD",
        study(),
        env={"LRSEARCH_GRACE_PERIOD": "-1"},
    ),
    Case(
        "grace-below-interval",
        ["status", "fuzz"],
        2,
        "LRSEARCH_GRACE_PERIOD",
        env={"LRSEARCH_HEARTBEAT_INTERVAL": "30", "LRSEARCH_GRACE_PERIOD": "10"},
    ),
    Case(
        "grace-text",
        ["reap", "fuzz"],
        2,
        "LRSEARCH_GRACE_PERIOD",
        env={"LRSEARCH_GRACE_PERIOD": "2 minutes"},
    ),
    Case(
        "recycle-text",
        ["start", "s.toml"],
        2,
        "LRSEARCH_RECYCLE_MB",
        study(),
        env={"LRSEARCH_RECYCLE_MB": "lots"},
    ),
    Case(
        "artifacts-s3-no-bucket",
        ["dashboard"],
        2,
        "LRSEARCH_ARTIFACTS",
        env={"LRSEARCH_ARTIFACTS": "s3://"},
    ),
    Case(
        "keras-backend-torch",
        ["start", "s.toml"],
        2,
        "KERAS_BACKEND",
        study(),
        env={"KERAS_BACKEND": "torch"},
    ),
]

CASES = STUDY_FILE_CASES + FILE_CASES + url_cases() + FLAG_CASES + OUTPUT_CASES + ENV_CASES


def test_there_are_at_least_a_hundred_cases_with_unique_ids() -> None:
    assert len(CASES) >= 100, len(CASES)
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("LRSEARCH_") or k == "KERAS_BACKEND"]:
        monkeypatch.delenv(name)

    started = time.monotonic()
    result = CliRunner().invoke(cli, case.args, env=case.env)
    seconds = time.monotonic() - started

    output = result.output
    assert result.exit_code == case.code, (output, result.exception)
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert case.needle.lower() in errors[0].lower(), errors[0]
    assert len(errors[0]) < 1500, len(errors[0])
    assert SECRET not in output, output
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, f"created {set(after) - set(before)}"
    assert seconds < case.seconds, seconds
