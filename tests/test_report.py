"""``lrsearch compare``: per-family summary, importance within a family, the HTML report."""

from __future__ import annotations

import base64
import csv
import math
import re
import statistics
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner

from lrsearch.cli import cli
from lrsearch.report import (
    MIN_TRIALS_FOR_IMPORTANCE,
    compare,
    family_importance,
    format_text,
    write_folder,
    write_html,
)
from lrsearch.study import StudyHandle
from tests.helpers import PNG, tiny_study_file
from tests.servers import server_url

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _schedule(family: str) -> dict[str, Any]:
    return {"family": family, "total_steps": 20, "params": {"learning_rate": 0.01}}


def synthetic_study(url: str, name: str = "syn") -> optuna.Study:
    """A real Optuna study shaped like lrsearch's: ``cosine`` trials whose value depends on
    ``cosine.alpha`` alone, a few ``onecycle`` trials, pruned, diverged and failed ones."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    fam = optuna.distributions.CategoricalDistribution(["cosine", "onecycle"])
    alpha = optuna.distributions.FloatDistribution(0.0, 0.5)
    pct = optuna.distributions.FloatDistribution(0.1, 0.5)
    for i in range(12):
        a, rate = (i % 6) / 10, 10 ** (-4 + (i * 7 % 12) / 4)
        study.add_trial(
            optuna.trial.create_trial(
                params={"family": "cosine", "learning_rate": rate, "cosine.alpha": a},
                distributions={"family": fam, "learning_rate": lr, "cosine.alpha": alpha},
                value=0.5 + a,  # alpha alone decides
                user_attrs={"schedule": _schedule("cosine")},
            )
        )
    one = {"family": fam, "learning_rate": lr, "onecycle.pct_start": pct}
    for value, state, outcome, last in (
        (0.7, "COMPLETE", None, None),
        (0.6, "COMPLETE", None, None),
        (None, "PRUNED", None, 0.3),
        (None, "PRUNED", "diverged", math.nan),
        (None, "FAIL", None, None),
    ):
        attrs: dict[str, Any] = {"schedule": _schedule("onecycle")}
        if outcome:
            attrs["outcome"] = outcome
        study.add_trial(
            optuna.trial.create_trial(
                params={"family": "onecycle", "learning_rate": 0.01, "onecycle.pct_start": 0.3},
                distributions=one,
                value=value,
                state=optuna.trial.TrialState[state],
                intermediate_values={} if last is None else {0: 0.2, 1: last},
                user_attrs=attrs,
            )
        )
    return study


@pytest.fixture
def syn(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'syn.db'}"
    synthetic_study(url)
    return url


def test_counts_best_and_median_per_family(syn: str) -> None:
    c = compare(StudyHandle.open("syn", syn))
    assert [r.family for r in c.families] == ["cosine", "onecycle"]  # best family first
    cosine, onecycle = c.families
    assert (cosine.trials, cosine.complete, cosine.pruned) == (12, 12, 0)
    assert cosine.best == pytest.approx(1.0) and cosine.best_trial == 5
    assert cosine.median == pytest.approx(
        statistics.median([0.5 + (i % 6) / 10 for i in range(12)])
    )
    assert (onecycle.trials, onecycle.complete, onecycle.pruned) == (5, 2, 1)
    assert (onecycle.diverged, onecycle.failed) == (1, 1)
    assert onecycle.best == pytest.approx(0.7) and onecycle.median == pytest.approx(0.65)
    assert (c.best_trial, c.best_family, c.best_value) == (5, "cosine", pytest.approx(1.0))
    assert c.metric == "value" and c.epochs is None  # not made by lrsearch: no stored config


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_the_same_comparison_from_a_database_server(kind: str, syn: str) -> None:
    url = server_url(kind)
    name = f"syn-{uuid.uuid4().hex[:8]}"
    synthetic_study(url, name)
    try:
        served = compare(StudyHandle.open(name, url))
        local = compare(StudyHandle.open("syn", syn))
        assert served.to_dict() | {"study": "syn"} == local.to_dict()
        assert served.history == local.history
    finally:
        optuna.delete_study(study_name=name, storage=url)


def test_history_has_complete_values_and_a_pruned_trials_last_value(syn: str) -> None:
    c = compare(StudyHandle.open("syn", syn))
    assert len(c.history) == 12 + 2 + 1  # the diverged trial's NaN and the failed one are out
    pruned = [p for p in c.history if not p[3]]
    assert pruned == [(14, "onecycle", 0.3, False)]
    assert [p[0] for p in c.history] == sorted(p[0] for p in c.history)


def test_importance_within_a_family_finds_the_parameter_that_decides(syn: str) -> None:
    study = optuna.load_study(study_name="syn", storage=syn)
    importance, note = family_importance(study.trials, "cosine", direction="maximize")
    assert note is None
    assert list(importance) == ["alpha", "learning_rate"]  # prefix dropped, largest first
    assert importance["alpha"] > 0.8
    assert sum(importance.values()) == pytest.approx(1.0)
    again, _ = family_importance(study.trials, "cosine", direction="maximize")
    assert again == importance  # seeded: the same numbers every time


def test_too_few_trials_or_nothing_varying_give_a_reason(syn: str) -> None:
    study = optuna.load_study(study_name="syn", storage=syn)
    importance, note = family_importance(study.trials, "onecycle", direction="maximize")
    assert importance == {}
    assert note == f"needs {MIN_TRIALS_FOR_IMPORTANCE} complete trials, has 2"
    same = [t for t in study.trials if t.params.get("family") == "onecycle"] * 2
    same = [t for t in same if t.state.name == "COMPLETE"]
    assert family_importance(same, "onecycle", direction="maximize")[1] == (
        "no parameter varies across its complete trials"
    )


def test_text_table(syn: str) -> None:
    text = format_text(compare(StudyHandle.open("syn", syn)))
    assert "17 trials: 14 complete, 1 pruned, 1 diverged, 1 failed" in text
    assert re.search(r"^cosine\s+12\s+12\s+0\s+0\s+0\s+1\.0000\s+0\.7500\s+#5$", text, re.M)
    assert re.search(r"^  cosine\s+alpha \d\.\d\d, learning_rate \d\.\d\d$", text, re.M)
    assert "onecycle         - (needs 4 complete trials, has 2)" in text
    assert "lrsearch export syn --format python" in text


def _embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_html_is_one_self_contained_page(syn: str, tmp_path: Path) -> None:
    out = write_html(compare(StudyHandle.open("syn", syn)), tmp_path / "sub" / "report.html")
    page = out.read_text(encoding="utf-8")
    pngs = _embedded_pngs(page)
    assert len(pngs) == 3  # history, values per family, importance (no lr curves: no config)
    assert all(p[:8] == PNG and len(p) > 5_000 for p in pngs)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch
    assert "<h1>syn: which learning-rate schedule trains best</h1>" in page
    assert '<tr class="best"><td>cosine</td><td>12</td>' in page


def test_folder_has_figures_and_csv_tables(syn: str, tmp_path: Path) -> None:
    written = write_folder(compare(StudyHandle.open("syn", syn)), tmp_path / "rep")
    names = sorted(p.name for p in written)
    assert names == [
        "families.csv",
        "family_values.png",
        "history.png",
        "importance.csv",
        "importance.png",
    ]
    rows = list(csv.DictReader((tmp_path / "rep" / "families.csv").open(encoding="utf-8")))
    assert [(r["family"], r["trials"], r["best_trial"]) for r in rows] == [
        ("cosine", "12", "5"),
        ("onecycle", "5", "12"),
    ]
    imp = list(csv.DictReader((tmp_path / "rep" / "importance.csv").open(encoding="utf-8")))
    assert imp[0]["family"] == "cosine" and imp[0]["parameter"] == "alpha"
    assert imp[-1]["note"].startswith("needs 4 complete trials")


# --- through the CLI, on a study lrsearch trained -----------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("compare")
    url = f"sqlite:///{folder / 'x.db'}"
    study_file = tiny_study_file(folder, "cmp", families='["cosine", "constant"]')
    text = study_file.read_text().replace("n_trials = 2", "n_trials = 6")
    study_file.write_text(text)
    result = CliRunner().invoke(cli, ["start", str(study_file), "--storage", url, "--no-progress"])
    assert result.exit_code == 0, (result.output, result.exception)
    return {"url": url, "folder": folder}


def test_compare_command_writes_the_html_report(trained: dict[str, Any]) -> None:
    out = trained["folder"] / "report.html"
    result = CliRunner().invoke(
        cli, ["compare", "cmp", "--storage", trained["url"], "-o", str(out)]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "study 'cmp': val_accuracy (maximize), 6 trials" in result.output
    study = optuna.load_study(study_name="cmp", storage=trained["url"])
    best = study.best_trial
    assert f"best: trial #{best.number}" in result.output
    page = out.read_text(encoding="utf-8")
    assert len(_embedded_pngs(page)) >= 3  # lr curves of a real study are in
    assert "Learning-rate curves of the best trials" in page
    for family in {t.params["family"] for t in study.trials}:
        assert f"<td>{family}</td>" in page


def test_compare_json(trained: dict[str, Any]) -> None:
    import json

    result = CliRunner().invoke(cli, ["compare", "cmp", "--storage", trained["url"], "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["study"] == "cmp" and data["metric"] == "val_accuracy"
    assert sum(f["trials"] for f in data["families"]) == 6
    assert "values" not in data["families"][0]


def test_compare_unknown_study_is_a_one_line_error(trained: dict[str, Any]) -> None:
    result = CliRunner().invoke(cli, ["compare", "cmq", "--storage", trained["url"]])
    assert result.exit_code != 0
    assert "No study named 'cmq'" in result.output and "Did you mean 'cmp'?" in result.output
    assert "Traceback" not in result.output


def test_compare_empty_study_says_what_to_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    optuna.create_study(study_name="empty", storage=url)
    result = CliRunner().invoke(cli, ["compare", "empty", "--storage", url])
    assert result.exit_code != 0
    assert "no trial with a schedule family yet" in result.output


def test_names_are_escaped_in_the_page_and_quoted_in_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'esc.db'}"
    name = 'a<b>&"c d'
    synthetic_study(url, name)
    c = compare(StudyHandle.open(name, url))
    page = write_html(c, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<b>" not in page and "a<b" not in page
    assert "<h1>a&lt;b&gt;&amp;&quot;c d: which" in page
    assert "lrsearch export &#x27;a&lt;b&gt;&amp;&quot;c d&#x27; --format python" in page
    assert "lrsearch export 'a<b>&\"c d' --format python" in format_text(c)
