from __future__ import annotations

# Tests of the study-file schema (lrsearch/config.py), without Keras or training:
# 1. every shipped study file loads, and the defaults (direction from the metric, sampler and
#    pruner as a plain string or a table);
# 2. every kind of mistake is a one-line ConfigError naming the file, the field and the fix;
# 3. the fingerprint ignores what may change between runs (n_trials, timeout), and config_diff
#    names the changed fields;
# 4. Hypothesis fuzz of the loader: arbitrary text and random nested structures built from the
#    real section and field names give a StudyConfig or a ConfigError, never another exception.
import math
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrsearch.config import (
    METRICS,
    PrunerConfig,
    SamplerConfig,
    StudyConfig,
    check_study_name,
    config_diff,
    load_study_file,
    parse_study_config,
)
from lrsearch.exceptions import ConfigError
from lrsearch.schedules import DEFAULT_FAMILIES, FAMILIES

STUDIES = Path(__file__).resolve().parents[1] / "studies"
STUDY_FILES = sorted(STUDIES.glob("*.toml"))
HEADER = '[study]\nname = "t"\n'


def parse(**sections: Any) -> StudyConfig:
    data: dict[str, Any] = {"study": {"name": "t"}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_study_config(data)


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- 1. shipped files and defaults ------------------------------------------------------------


def test_there_are_shipped_study_files() -> None:
    assert {p.name for p in STUDY_FILES} >= {
        "digits.toml",
        "cnn-digits.toml",
        "article-baselines.toml",
    }


@pytest.mark.parametrize("path", STUDY_FILES, ids=[p.stem for p in STUDY_FILES])
def test_every_shipped_study_file_loads(path: Path) -> None:
    cfg, text = load_study_file(path)
    assert isinstance(cfg, StudyConfig)
    assert text == path.read_text(encoding="utf-8")
    assert cfg.study.name
    assert cfg.study.direction == ("maximize" if "acc" in cfg.study.metric else "minimize")
    assert set(cfg.space.families) <= set(FAMILIES)
    # normalized() is JSON-ready and validates back to the same config
    assert parse_study_config(cfg.normalized()) == cfg
    assert len(cfg.fingerprint()) == 64


def test_shipped_files_content() -> None:
    digits, _ = load_study_file(STUDIES / "digits.toml")
    assert digits.study.sampler == SamplerConfig(name="tpe")  # given as a plain string
    assert digits.study.pruner.name == "median"
    assert digits.study.pruner.n_startup_trials == 6
    assert digits.space.families == list(DEFAULT_FAMILIES)  # every schedule family by default
    assert digits.space.learning_rate == [1e-4, 3e-2]
    assert digits.model.params == {"hidden": [64, 32], "dropout": 0.1}

    cnn, _ = load_study_file(STUDIES / "cnn-digits.toml")
    assert cnn.study.pruner == PrunerConfig(
        name="hyperband", start_fraction=0.3, reduction_factor=3
    )
    assert cnn.training.optimizer == "sgd"
    assert cnn.space.family_overrides("onecycle") == {"pct_start": [0.15, 0.45], "anneal": "cos"}
    assert cnn.space.family_overrides("plateau") == {"patience": [1, 3]}
    assert cnn.space.family_overrides("cosine") == {}

    article, _ = load_study_file(STUDIES / "article-baselines.toml")
    assert [b.family for b in article.baseline] == [
        "cosine",
        "warmup_decay",
        "polynomial",
        "plateau",
    ]
    warmup = article.baseline[1]
    assert warmup.learning_rate == 0.002
    assert warmup.params == {
        "warmup_epochs": 4,
        "warmup_start_factor": 0.6,
        "decay_rate": 0.95,
        "staircase": True,
    }


def test_defaults() -> None:
    cfg = parse()
    assert cfg.study.metric == "val_accuracy"
    assert cfg.study.direction == "maximize"
    assert cfg.study.n_trials == 20
    assert cfg.study.timeout is None
    assert cfg.study.sampler == SamplerConfig()
    assert cfg.study.pruner == PrunerConfig()
    assert cfg.data.validation_split == 0.2
    assert cfg.training.epochs == 10
    assert cfg.space.families == list(DEFAULT_FAMILIES)
    assert set(FAMILIES) - set(DEFAULT_FAMILIES) == {"schedule_free"}  # an opt-in baseline
    assert cfg.space.learning_rate is None
    assert cfg.baseline == []


@pytest.mark.parametrize(
    ("metric", "direction"),
    [
        ("val_accuracy", "maximize"),
        ("accuracy", "maximize"),
        ("val_loss", "minimize"),
        ("loss", "minimize"),
    ],
)
def test_direction_follows_the_metric(metric: str, direction: str) -> None:
    assert parse(study={"metric": metric}).study.direction == direction


def test_explicit_direction_wins() -> None:
    cfg = parse(study={"metric": "val_loss", "direction": "maximize"})
    assert cfg.study.direction == "maximize"


@pytest.mark.parametrize("name", ["tpe", "random", "qmc", "cmaes"])
def test_sampler_as_string_or_table(name: str) -> None:
    as_string = parse(study={"sampler": name}).study.sampler
    as_table = parse(study={"sampler": {"name": name}}).study.sampler
    assert as_string == as_table == SamplerConfig(name=name)
    tuned = parse(study={"sampler": {"name": name, "n_startup_trials": 3}}).study.sampler
    assert tuned.n_startup_trials == 3


@pytest.mark.parametrize("name", ["median", "hyperband", "successive_halving", "none"])
def test_pruner_as_string_or_table(name: str) -> None:
    as_string = parse(study={"pruner": name}).study.pruner
    as_table = parse(study={"pruner": {"name": name}}).study.pruner
    assert as_string == as_table == PrunerConfig(name=name)
    tuned = parse(study={"pruner": {"name": name, "start_fraction": 0.25}}).study.pruner
    assert tuned.start_fraction == 0.25


def test_sampler_and_pruner_from_toml(tmp_path: Path) -> None:
    text = HEADER + 'sampler = "random"\n[study.pruner]\nname = "none"\n'
    cfg, _ = load_study_file(write(tmp_path, text))
    assert cfg.study.sampler.name == "random"
    assert cfg.study.pruner.name == "none"


def test_model_keeps_extra_params_and_space_keeps_family_tables(tmp_path: Path) -> None:
    text = (
        HEADER + '[model]\ntype = "cnn"\nfilters = [8]\n'
        "[space]\nfamilies = ['onecycle']\n[space.onecycle]\nthree_phase = true\n"
        "pct_start = { low = 0.2, high = 0.4 }\n"
    )
    cfg, _ = load_study_file(write(tmp_path, text))
    assert cfg.model.type == "cnn"
    assert cfg.model.params == {"filters": [8]}
    assert cfg.space.family_overrides("onecycle") == {
        "three_phase": True,
        "pct_start": {"low": 0.2, "high": 0.4},
    }


def test_config_is_frozen() -> None:
    cfg = parse()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError on frozen models
        cfg.training.epochs = 3  # type: ignore[misc]


# --- 2. errors --------------------------------------------------------------------------------


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nope.toml"


def _directory(tmp_path: Path) -> Path:
    path = tmp_path / "adir.toml"
    path.mkdir()
    return path


def _text(text: str) -> Callable[[Path], Path]:
    return lambda tmp_path: write(tmp_path, text)


# (id, file maker, the field the message must name, further fragments)
ERRORS: list[tuple[str, Callable[[Path], Path], str, tuple[str, ...]]] = [
    ("missing-file", _missing, "nope.toml", ("not found",)),
    ("directory", _directory, "adir.toml", ("is a directory",)),
    (
        "toml-syntax",
        _text(HEADER + "n_trials = = 3\n"),
        "study.toml",
        ("TOML syntax error", "line 3"),
    ),
    (
        "toml-duplicate-key",
        _text(HEADER + 'name = "u"\n'),
        "study.toml",
        ("TOML syntax error", "line 3"),
    ),
    (
        "unknown-section",
        _text(HEADER + "[trainin]\nepochs = 3\n"),
        "trainin",
        ("unknown field", "Did you mean `training`?"),
    ),
    (
        "unknown-field",
        _text(HEADER + "[training]\nepoch = 3\n"),
        "training.epoch",
        ("unknown field", "Did you mean `epochs`?"),
    ),
    (
        "unknown-study-field",
        _text(HEADER + "n_trial = 3\n"),
        "study.n_trial",
        ("Did you mean `n_trials`?",),
    ),
    ("missing-study", _text("[training]\nepochs = 3\n"), "study", ("is required",)),
    ("missing-name", _text("[study]\nn_trials = 3\n"), "study.name", ("is required",)),
    (
        "unknown-family",
        _text(HEADER + "[space]\nfamilies = ['cosin']\n"),
        "space.families",
        ("unknown schedule family 'cosin'", "Did you mean 'cosine'?"),
    ),
    (
        "duplicate-family",
        _text(HEADER + "[space]\nfamilies = ['wsd', 'wsd']\n"),
        "space.families",
        ("twice",),
    ),
    (
        "no-family",
        _text(HEADER + "[space]\nfamilies = []\n"),
        "space.families",
        ("at least 1",),
    ),
    (
        "unknown-family-table",
        _text(HEADER + "[space.cosin]\nalpha = 0.1\n"),
        "space",
        ("'cosin'", "Did you mean 'cosine'?"),
    ),
    (
        "family-not-a-table",
        _text(HEADER + "[space]\ncosine = 3\n"),
        "space.cosine",
        ("must be a table", "[space.cosine]"),
    ),
    (
        "unknown-family-param",
        _text(HEADER + "[space.onecycle]\npct_strat = 0.2\n"),
        "space.onecycle.pct_strat",
        ("not a parameter of onecycle", "Did you mean `pct_start`?"),
    ),
    (
        "negative-epochs",
        _text(HEADER + "[training]\nepochs = -3\n"),
        "training.epochs",
        ("-3", "greater than or equal to 1"),
    ),
    (
        "epochs-not-a-number",
        _text(HEADER + "[training]\nepochs = 'ten'\n"),
        "training.epochs",
        ("'ten'",),
    ),
    (
        "zero-trials",
        _text(HEADER + "n_trials = 0\n"),
        "study.n_trials",
        ("= 0", "greater than or equal to 1"),
    ),
    (
        "bad-sampler-string",
        _text(HEADER + "sampler = 'tpee'\n"),
        "study.sampler.name",
        ("'tpee'", "'tpe'"),
    ),
    (
        "bad-sampler-table",
        _text(HEADER + "[study.sampler]\nname = 'grid'\n"),
        "study.sampler.name",
        ("'grid'", "'random'"),
    ),
    (
        "bad-pruner",
        _text(HEADER + "pruner = 'medain'\n"),
        "study.pruner.name",
        ("'medain'", "'median'"),
    ),
    (
        "bad-metric",
        _text(HEADER + "metric = 'val_acc'\n"),
        "study.metric",
        ("'val_acc'", "'val_accuracy'"),
    ),
    (
        "bad-validation-split",
        _text(HEADER + "[data]\nvalidation_split = 1.5\n"),
        "data.validation_split",
        ("1.5", "less than 1"),
    ),
    (
        "zero-batch-size",
        _text(HEADER + "[data]\nbatch_size = 0\n"),
        "data.batch_size",
        ("= 0", "greater than or equal to 1"),
    ),
    (
        "nan-timeout",
        _text(HEADER + "timeout = nan\n"),
        "study.timeout",
        ("nan",),
    ),
    (
        "bad-optimizer",
        _text(HEADER + "[training]\noptimizer = 'adagrad'\n"),
        "training.optimizer",
        ("'adagrad'", "'adam'"),
    ),
    (
        "baseline-unknown-family",
        _text(HEADER + "[[baseline]]\nfamily = 'cosin'\nlearning_rate = 0.1\n"),
        "baseline.0.family",
        ("'cosin'", "Did you mean 'cosine'?"),
    ),
    (
        "baseline-without-lr",
        _text(HEADER + "[[baseline]]\nfamily = 'cosine'\n"),
        "baseline.0.learning_rate",
        ("is required",),
    ),
    # strict types: no string, bool or float where an integer is expected
    (
        "quoted-n-trials",
        _text(HEADER + 'n_trials = "5"\n'),
        "study.n_trials",
        ("= '5'", "a whole number", "without quotes: 5"),
    ),
    (
        "float-n-trials",
        _text(HEADER + "n_trials = 5.0\n"),
        "study.n_trials",
        ("= 5.0", "a whole number"),
    ),
    (
        "bool-epochs",
        _text(HEADER + "[training]\nepochs = true\n"),
        "training.epochs",
        ("= True", "a whole number", "not true/false"),
    ),
    (
        "quoted-validation-split",
        _text(HEADER + "[data]\nvalidation_split = '0.2'\n"),
        "data.validation_split",
        ("= '0.2'", "a number", "without quotes: 0.2"),
    ),
    (
        "bool-momentum",
        _text(HEADER + "[training]\nmomentum = false\n"),
        "training.momentum",
        ("= False", "a number", "not true/false"),
    ),
    (
        "number-name",
        _text("[study]\nname = 5\n"),
        "study.name",
        ("= 5", "a string", 'in quotes: "5"'),
    ),
    (
        "log-yes",
        _text(HEADER + "[space.onecycle]\npct_start = {low = 0.2, high = 0.4, log = 'yes'}\n"),
        "space.onecycle.pct_start.log",
        ("'yes'", "true or false"),
    ),
    (
        "log-yes-lr",
        _text(HEADER + "[space]\nlearning_rate = {low = 1e-4, high = 0.1, log = 'no'}\n"),
        "space.learning_rate.log",
        ("'no'", "true or false"),
    ),
    (
        "range-table-without-high",
        _text(HEADER + "[space.onecycle]\npct_start = {low = 0.2}\n"),
        "space.onecycle.pct_start",
        ("{low, high, log}",),
    ),
    (
        "range-table-unknown-key",
        _text(HEADER + "[space.onecycle]\npct_start = {low = 0.2, high = 0.3, lgo = true}\n"),
        "space.onecycle.pct_start",
        ("lgo", "{low, high, log}"),
    ),
    (
        "range-table-string-bound",
        _text(HEADER + "[space.onecycle]\npct_start = {low = '0.2', high = 0.3}\n"),
        "space.onecycle.pct_start.low",
        ("'0.2'", "finite number"),
    ),
    (
        "inf-in-family-range",
        _text(HEADER + "[space.cosine]\nalpha = [0.0, inf]\n"),
        "space.cosine.alpha",
        ("inf", "finite"),
    ),
    # finite numbers in sensible ranges
    (
        "huge-fixed-lr",
        _text(HEADER + "[space]\nlearning_rate = 1e308\n"),
        "space.learning_rate",
        ("1e+308", "<= 10"),
    ),
    (
        "huge-lr-range",
        _text(HEADER + "[space]\nlearning_rate = [1e-4, 1e308]\n"),
        "space.learning_rate",
        ("1e+308", "<= 10"),
    ),
    (
        "inf-lr-table",
        _text(HEADER + "[space]\nlearning_rate = {low = 1e-4, high = inf}\n"),
        "space.learning_rate.high",
        ("inf", "finite"),
    ),
    (
        "zero-lr-range",
        _text(HEADER + "[space]\nlearning_rate = [0, 0.1]\n"),
        "space.learning_rate",
        ("> 0",),
    ),
    (
        "string-lr",
        _text(HEADER + "[space]\nlearning_rate = 'fast'\n"),
        "space.learning_rate",
        ("'fast'", "[low, high]"),
    ),
    (
        "bool-lr",
        _text(HEADER + "[space]\nlearning_rate = true\n"),
        "space.learning_rate",
        ("True",),
    ),
    (
        "huge-baseline-lr",
        _text(HEADER + "[[baseline]]\nfamily = 'cosine'\nlearning_rate = 1e308\n"),
        "baseline.0.learning_rate",
        ("1e+308", "less than or equal to 10"),
    ),
    (
        "quoted-baseline-lr",
        _text(HEADER + "[[baseline]]\nfamily = 'cosine'\nlearning_rate = '0.1'\n"),
        "baseline.0.learning_rate",
        ("'0.1'", "without quotes: 0.1"),
    ),
    (
        "inf-weight-decay",
        _text(HEADER + "[training]\nweight_decay = inf\n"),
        "training.weight_decay",
        ("= inf", "finite number"),
    ),
    (
        "large-weight-decay",
        _text(HEADER + "[training]\nweight_decay = 5.0\n"),
        "training.weight_decay",
        ("5.0", "less than or equal to 1"),
    ),
    (
        "nan-momentum",
        _text(HEADER + "[training]\nmomentum = nan\n"),
        "training.momentum",
        ("nan", "finite number"),
    ),
    (
        "inf-divergence-factor",
        _text(HEADER + "[training]\ndivergence_factor = inf\n"),
        "training.divergence_factor",
        ("inf", "finite number"),
    ),
    (
        "inf-baseline-param",
        _text(
            HEADER + "[[baseline]]\nfamily = 'cosine'\nlearning_rate = 0.1\nwarmup_epochs = inf\n"
        ),
        "baseline.0.warmup_epochs",
        ("inf", "finite number"),
    ),
    (
        "unknown-model-type",
        _text(HEADER + "[model]\ntype = 'mpl'\n"),
        "model.type",
        ("'mpl'", "Did you mean 'mlp'?"),
    ),
    (
        "model-param-type",
        _text(HEADER + "[model]\nhidden = 'lots'\n"),
        "model.hidden",
        ("'lots'", "list of positive integers"),
    ),
    (
        "model-param-typo",
        _text(HEADER + "[model]\nhiden = [8]\n"),
        "model.hiden",
        ("Did you mean 'hidden'?",),
    ),
    (
        "cnn-param-value",
        _text(HEADER + "[model]\ntype = 'cnn'\nkernel_size = 0\n"),
        "model.kernel_size",
        (">= 1",),
    ),
    (
        "seed-2-32",
        _text(HEADER + "seed = 4294967296\n"),
        "study.seed",
        ("4294967296", "less than 4294967296"),
    ),
    (
        "empty-label-column",
        _text(HEADER + "[data]\nlabel_column = ''\n"),
        "data.label_column",
        ("at least 1 character",),
    ),
    # study names
    (
        "name-with-newline",
        _text('[study]\nname = "a\\nb"\n'),
        "study.name",
        ("'a\\nb'", "line break", "one line of printable characters"),
    ),
    (
        "name-with-tab",
        _text('[study]\nname = "a\\tb"\n'),
        "study.name",
        ("U+0009", "position 2"),
    ),
    (
        "blank-name",
        _text('[study]\nname = "   "\n'),
        "study.name",
        ("blank",),
    ),
    (
        "name-with-outer-spaces",
        _text('[study]\nname = " demo "\n'),
        "study.name",
        ("spaces", "'demo'"),
    ),
    # data.source typos are caught when the file is read
    (
        "source-typo",
        _text(HEADER + "[data]\nsource = 'digts'\n"),
        "data.source",
        ("'digts'", "Did you mean 'digits'?"),
    ),
    (
        "source-unknown-keras",
        _text(HEADER + "[data]\nsource = 'keras:imagenet'\n"),
        "data.source",
        ("'keras:imagenet'", "keras:mnist"),
    ),
    (
        "source-without-path",
        _text(HEADER + "[data]\nsource = 'npz:'\n"),
        "data.source",
        ("'npz:'", "npz:PATH"),
    ),
    (
        "source-malformed-python",
        _text(HEADER + "[data]\nsource = 'python:loader'\n"),
        "data.source",
        ("python:module:function",),
    ),
    (
        "model-type-malformed-python",
        _text(HEADER + "[model]\ntype = 'python:build'\n"),
        "model.type",
        ("python:module:function",),
    ),
    (
        "schedule-free-with-sgd",
        _text(
            HEADER
            + "[training]\noptimizer = 'sgd'\n[space]\nfamilies = ['cosine', 'schedule_free']\n"
        ),
        "space.families",
        ("schedule_free", "ScheduleFreeAdamW", "training.optimizer = 'adam' or 'adamw'", "'sgd'"),
    ),
    (
        "schedule-free-baseline-with-sgd",
        _text(
            HEADER
            + "[training]\noptimizer = 'sgd'\n[space]\nfamilies = ['schedule_free']\n"
            + "[[baseline]]\nfamily = 'schedule_free'\nlearning_rate = 0.01\n"
        ),
        "space.families",
        ("schedule_free", "training.optimizer"),
    ),
    (
        "baseline-negative-lr",
        _text(HEADER + "[[baseline]]\nfamily = 'cosine'\nlearning_rate = -0.1\n"),
        "baseline.0.learning_rate",
        ("-0.1", "greater than 0"),
    ),
]


@pytest.mark.parametrize(
    ("maker", "field", "fragments"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_bad_study_file_gives_one_line_config_error(
    tmp_path: Path, maker: Callable[[Path], Path], field: str, fragments: tuple[str, ...]
) -> None:
    path = maker(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_study_file(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert str(path) in message  # names the file
    assert field in message  # names the field
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "text",
    [
        '[study]\nname = "' + "n" * 100_000 + '"\n',
        HEADER + '[data]\nsource = "' + "d" * 100_000 + '"\n',
        HEADER + "[space]\nfamilies = ['" + "f" * 100_000 + "']\n",
        HEADER + '"' + "k" * 100_000 + '" = 1\n',
        HEADER + "[space.cosine]\n" + "a" * 100_000 + " = 1\n",
        HEADER + "[space]\nlearning_rate = '" + "l" * 100_000 + "'\n",
    ],
    ids=["name", "source", "family", "key", "family-key", "lr"],
)
def test_long_values_are_cut_in_messages(tmp_path: Path, text: str) -> None:
    """A 100,000-character value gives a short line, the value cut with '...'."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_study_file(path)
    message = str(info.value)
    assert len(message) < 600 + len(str(path)), message[:1000]
    assert "..." in message


@pytest.mark.parametrize("name", ["demo", "lr search #3", "études-2024", "a" * 500, "x"])
def test_check_study_name_accepts(name: str) -> None:
    assert check_study_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("a\nb", ("line break (U+000A) at position 2",)),
        ("a\rb", ("U+000D",)),
        ("\x00", ("control character (U+0000) at position 1",)),
        ("a\u2028b", ("line break (U+2028)",)),
        ("a\u202eb", ("U+202E",)),
        ("", ("is empty",)),
        ("  ", ("blank",)),
        ("x" * 501, ("501 characters", "at most 500")),
        (" x", ("spaces",)),
    ],
)
def test_check_study_name_refuses(name: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        check_study_name(name, field="--study-name")
    message = str(info.value)
    assert message.startswith("--study-name ")
    assert "\n" not in message and "\r" not in message and "\u2028" not in message
    assert len(message) < 400
    for fragment in fragments:
        assert fragment in message


def test_check_study_name_refuses_a_non_string() -> None:
    with pytest.raises(ConfigError, match="study.name"):
        check_study_name(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("section", "values"),
    [
        ("study", {"n_trials": 3, "seed": 2**32 - 1, "timeout": 60}),
        ("training", {"weight_decay": 1, "momentum": 0, "divergence_factor": 2}),
        ("space", {"learning_rate": 10}),
        ("space", {"learning_rate": [1e-5, 10]}),
        ("space", {"learning_rate": {"low": 1e-4, "high": 1, "log": False}}),
        ("space", {"onecycle": {"pct_start": {"low": 0.2, "high": 0.4, "log": True}}}),
        ("space", {"onecycle": {"anneal": ["cos", "linear"], "three_phase": True}}),
        ("data", {"source": "npz:/nowhere/yet.npz"}),  # the file is looked for when loading
        ("data", {"source": "python:loaders:load"}),
        ("model", {"type": "python:nets:build", "anything": "goes", "width": 1e9}),
        ("model", {"type": "cnn", "filters": 8, "dense": 0}),
    ],
)
def test_boundary_values_are_accepted(section: str, values: dict[str, Any]) -> None:
    """Ints where floats are expected, the largest seed and learning rate, booleans as booleans."""
    cfg = parse(**{section: values})
    assert parse_study_config(cfg.normalized()) == cfg


def test_loaded_values_have_their_declared_types() -> None:
    cfg = parse(training={"weight_decay": 0}, study={"timeout": 60})
    assert type(cfg.training.weight_decay) is float and type(cfg.study.timeout) is float
    assert type(cfg.study.n_trials) is int


def test_several_errors_are_counted_on_one_line() -> None:
    with pytest.raises(ConfigError, match=r"\(and 2 more\)") as info:
        parse(training={"epochs": 0, "momentum": 2.0}, data={"batch_size": 0})
    assert "\n" not in str(info.value)


def test_keys_with_line_breaks_stay_on_one_line(tmp_path: Path) -> None:
    text = HEADER + '"a\\nb" = 1\n[space.cosine]\n"c\\rd" = 2\n'
    with pytest.raises(ConfigError) as info:
        load_study_file(write(tmp_path, text))
    assert "\n" not in str(info.value) and "\r" not in str(info.value)


def test_parse_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^my.toml: `training.epochs`"):
        parse_study_config({"study": {"name": "t"}, "training": {"epochs": 0}}, source="my.toml")


# --- 3. fingerprint and diff ------------------------------------------------------------------


def test_fingerprint_is_stable_for_the_same_content(tmp_path: Path) -> None:
    a = HEADER + "[training]\nepochs = 4\noptimizer = 'sgd'\n"
    b = "[training]\noptimizer = 'sgd'\nepochs = 4\n" + HEADER  # same content, other order
    cfg_a, _ = load_study_file(write(tmp_path, a, "a.toml"))
    cfg_b, _ = load_study_file(write(tmp_path, b, "b.toml"))
    assert cfg_a.fingerprint() == cfg_b.fingerprint() == cfg_a.fingerprint()
    # an explicit default is the same study as an implicit one
    assert parse().fingerprint() == parse(training={"epochs": 10}).fingerprint()


@pytest.mark.parametrize(
    "study", [{"n_trials": 99}, {"timeout": 60.0}, {"n_trials": 1, "timeout": 1.5}]
)
def test_fingerprint_ignores_n_trials_and_timeout(study: dict[str, Any]) -> None:
    assert parse(study=study).fingerprint() == parse().fingerprint()


@pytest.mark.parametrize(
    "change",
    [
        {"training": {"epochs": 11}},
        {"study": {"seed": 1}},
        {"study": {"metric": "val_loss"}},
        {"space": {"families": ["cosine"]}},
        {"space": {"learning_rate": [1e-3, 1e-1]}},
        {"model": {"hidden": [8]}},
        {"baseline": [{"family": "cosine", "learning_rate": 0.1}]},
    ],
    ids=["epochs", "seed", "metric", "families", "learning_rate", "model", "baseline"],
)
def test_fingerprint_changes_with_the_study(change: dict[str, Any]) -> None:
    assert parse(**change).fingerprint() != parse().fingerprint()


def test_config_diff_lists_dotted_field_names() -> None:
    stored = parse().normalized()
    current = parse(
        training={"epochs": 12},
        study={"n_trials": 50, "sampler": "random"},
        space={"learning_rate": [1e-3, 1e-1]},
    ).normalized()
    diff = config_diff(stored, current)
    assert [line.split(":")[0] for line in diff] == [
        "space.learning_rate",
        "study.n_trials",
        "study.sampler.name",
        "training.epochs",
    ]
    assert "training.epochs: 10 -> 12" in diff
    assert 'study.sampler.name: "tpe" -> "random"' in diff
    assert config_diff(stored, stored) == []


def test_config_diff_of_missing_keys() -> None:
    assert config_diff({"a": {"b": 1}}, {}) == ['a: {"b": 1} -> null']
    assert config_diff({}, {"x": [1]}) == ["x: null -> [1]"]


# --- 4. fuzz ----------------------------------------------------------------------------------

_FUZZ_DIR = Path(tempfile.mkdtemp(prefix="lrsearch-config-fuzz-"))


def _load_text(text: str) -> None:
    path = _FUZZ_DIR / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    try:
        cfg, _ = load_study_file(path)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    assert isinstance(cfg, StudyConfig)
    assert len(cfg.fingerprint()) == 64


_TOML_ALPHABET = st.sampled_from(list("[]{}=.\"'#,\n -_0123456789aenstrufl") + ["\t", "é"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=200),
        st.text(_TOML_ALPHABET, max_size=120),
        st.text(max_size=80).map(lambda t: HEADER + t),
        st.text(_TOML_ALPHABET, max_size=80).map(lambda t: HEADER + t),
    )
)
def test_fuzz_arbitrary_text(text: str) -> None:
    _load_text(text)


def toml_str(s: str) -> str:
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    """A tiny TOML writer: every value inline (tables as inline tables)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_str(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_str(k)} = {toml_value(v)}\n" for k, v in data.items())


def test_tiny_toml_writer_round_trips() -> None:
    data = {
        "study": {"name": 'a"b\\c\n\x7f', "timeout": 1e-05, "seed": -3},
        "x y": [1, 2.5, "s", True, [], {}, {"k": ["v"]}],
        "f": [float("inf"), float("-inf")],
    }
    assert tomllib.loads(toml_document(data)) == data
    assert math.isnan(tomllib.loads(toml_document({"n": float("nan")}))["n"])


_junk_key = st.text(max_size=10)
_scalar = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
)
_anything = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_junk_key, inner, max_size=4)
    ),
    max_leaves=8,
)


def _mostly(likely: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> Any:
    """``likely`` three times out of four (``one_of`` would weigh the branches evenly)."""
    return st.sampled_from([likely, likely, likely, rare]).flatmap(lambda s: s)


def _field(*plausible: Any) -> st.SearchStrategy[Any]:
    """Mostly plausible values of a field, sometimes anything."""
    if not plausible:
        return _anything
    return _mostly(st.sampled_from(plausible), _anything)


_junk = _mostly(st.just({}), st.dictionaries(_junk_key, _anything, max_size=2))


def _section(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A section with some of its real fields and sometimes junk ones."""
    return st.builds(
        lambda real, junk: {**junk, **real}, st.fixed_dictionaries({}, optional=fields), _junk
    )


_names = st.sampled_from(list(FAMILIES) + ["cosin", "", "Cosine"])
_engine = _section(
    {
        "name": _field("tpe", "random", "median", "hyperband", "none", "qmc", "x"),
        "n_startup_trials": _field(0, 3, -1),
        "start_fraction": _field(0.0, 0.5, 1.5),
        "reduction_factor": _field(2, 3, 1),
    }
)
_study = _section(
    {
        "name": _field("s", "", "x" * 501),
        "metric": _field(*METRICS, "acc"),
        "direction": _field("maximize", "minimize", "up"),
        "n_trials": _field(1, 20, 0, "5", 5.0, True),
        "timeout": _field(1.0, 0.0, float("inf"), 60),
        "seed": _field(0, 7, -1, 2**32 - 1, 2**32),
        "sampler": st.one_of(_engine, _field("tpe", "random", "cmaes", "grid")),
        "pruner": st.one_of(_engine, _field("median", "successive_halving", "none")),
    }
)
_data = _section(
    {
        "source": _field("digits", "csv:x.csv", ""),
        "validation_split": _field(0.2, 0.0, 1.0, float("nan")),
        "batch_size": _field(32, 0),
        "label_column": _field("label"),
        "limit": _field(100, 0),
    }
)
_model = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries({}, optional={"type": _field("mlp", "cnn", "python:m:f", "")}),
    st.dictionaries(_junk_key, _anything, max_size=3),
)
_training = _section(
    {
        "epochs": _field(1, 10, 0, 100_001, True, "3"),
        "optimizer": _field("sgd", "adam", "adamw", "rmsprop"),
        "momentum": _field(0.0, 0.9, 1.0, float("nan")),
        "weight_decay": _field(0.0, 1e-4, -1.0, 1, float("inf"), 2.0),
        "loss": _field("mse"),
        "divergence_factor": _field(10.0, 1.0),
    }
)
_param_names = sorted(
    {p.name for f in FAMILIES.values() for p in f.search}
    | {n for f in FAMILIES.values() for n in f.param_names}
    | {"pct_strat"}
)
_range = _field(
    0.1,
    1,
    True,
    "cos",
    [0.1, 0.5],
    [],
    ["cos"],
    {"low": 0.1, "high": 0.2},
    {"low": 0.1, "high": 0.2, "log": True},
    {"low": 0.1, "high": 0.2, "log": "yes"},
    [0.0, float("inf")],
)
_family_table = st.one_of(
    st.dictionaries(st.sampled_from(_param_names), _range, max_size=3), _range
)
_space = st.builds(
    lambda base, tables: {**tables, **base},
    st.fixed_dictionaries(
        {},
        optional={
            "families": st.one_of(st.lists(_names, max_size=4), _anything),
            "learning_rate": _field(
                0.01, [1e-4, 1e-1], {"low": 1e-3, "high": 1.0}, -1, 1e308, [1e-4, 11], "0.1"
            ),
        },
    ),
    st.dictionaries(st.one_of(_names, _junk_key), _family_table, max_size=2),
)
_baseline = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries(
        {},
        optional={
            "family": _names,
            "name": _field("b"),
            "learning_rate": _field(0.01, 0.0, -1.0, 1e308, 10, "0.1"),
        },
    ),
    st.dictionaries(st.one_of(st.sampled_from(_param_names), _junk_key), _range, max_size=3),
)
_named_study = _study.map(lambda d: {**d, "name": "s"})
_document = st.builds(
    lambda real, junk: {**junk, **real},
    st.fixed_dictionaries(
        {"study": _mostly(_named_study, st.one_of(_study, _anything))},
        optional={
            "data": _data,
            "model": _model,
            "training": _training,
            "space": _space,
            "baseline": st.one_of(st.lists(_baseline, max_size=3), _anything),
        },
    ),
    st.dictionaries(_junk_key, _anything, max_size=1),
)


def _assert_strict(cfg: StudyConfig) -> None:
    """What a loaded config promises: declared ints are ints (not bools), floats are finite,
    learning rates and the seed in range, every free value finite."""
    for section in (cfg.study, cfg.study.sampler, cfg.study.pruner, cfg.data, cfg.training):
        for name, info in type(section).model_fields.items():
            value = getattr(section, name)
            if info.annotation in (int, int | None) and value is not None:
                assert type(value) is int, (name, value)
            if info.annotation in (float, float | None) and value is not None:
                assert type(value) is float and math.isfinite(value), (name, value)
    assert 0 <= cfg.study.seed < 2**32
    assert cfg.training.weight_decay <= 1

    def finite(value: Any) -> bool:
        if isinstance(value, float):
            return math.isfinite(value)
        if isinstance(value, list):
            return all(finite(v) for v in value)
        if isinstance(value, dict):
            return all(finite(v) for v in value.values())
        return True

    assert finite(cfg.normalized())
    lr = cfg.space.learning_rate
    bounds = [lr] if isinstance(lr, int | float) else lr if isinstance(lr, list) else []
    if isinstance(lr, dict):
        bounds = [lr["low"], lr["high"]]
        assert isinstance(lr.get("log", False), bool)
    assert all(0 < b <= 10 for b in bounds)
    assert all(0 < b.learning_rate <= 10 for b in cfg.baseline)
    for family in cfg.space.families:
        for spec in cfg.space.family_overrides(family).values():
            if isinstance(spec, dict):
                assert isinstance(spec.get("log", False), bool)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_document)
def test_fuzz_structured_study_files(data: dict[str, Any]) -> None:
    text = toml_document(data)
    path = _FUZZ_DIR / "structured.toml"
    path.write_text(text, encoding="utf-8")
    try:
        cfg, _ = load_study_file(path)
    except ConfigError as exc:
        message = str(exc)
        assert "TOML syntax error" not in message, text  # the writer made valid TOML
        assert message.startswith(str(path)) and "\n" not in message
    else:
        assert isinstance(cfg, StudyConfig)
        assert len(cfg.fingerprint()) == 64
        _assert_strict(cfg)
    # the dict route gives the same answer as the file
    try:
        parse_study_config(data)
    except ConfigError as exc:
        assert "\n" not in str(exc)
