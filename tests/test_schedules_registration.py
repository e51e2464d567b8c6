"""``import lrsearch.schedules`` registers every Keras schedule class, in a fresh process too.

The README says an exported schedule loads with
``keras.optimizers.schedules.deserialize(json.load(f))`` after ``import lrsearch.schedules``, and a
retrained model with ``keras.saving.load_model`` after the same import. The classes live in a
private module that imports Keras, so these run the documented snippet in a fresh interpreter
(the test process has long imported everything), in both import orders; a schedule that is not
registered deserializes to its class name, a plain string.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lrsearch._imports import import_keras
from lrsearch.export import export_schedule
from lrsearch.schedules import FAMILIES, build_schedule
from lrsearch.space import Budget, SearchSpace

keras = import_keras()

BUDGET = Budget(epochs=4, steps_per_epoch=10)
STEPS = (0, 5, 20, 39)


def _records() -> dict[str, dict[str, Any]]:
    """One trial-style schedule record per family, from the default space's midpoints."""
    from lrsearch.config import SpaceConfig

    space = SearchSpace.from_config(SpaceConfig(families=list(FAMILIES)), BUDGET)
    records: dict[str, dict[str, Any]] = {}
    for name in FAMILIES:
        relative = {"learning_rate": 0.01}
        for p, dim in space.dimensions[name]:
            relative[p.name] = dim.corners()[0]
        records[name] = space.point(name, relative).record()
    return records


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every family's ``lrsearch export --format keras`` output (one JSON file per
    family), the config and values each should deserialize to, and a saved ``.keras`` model whose
    optimizer runs a onecycle schedule."""
    folder = tmp_path_factory.mktemp("exported")
    expected: dict[str, Any] = {}
    for name, record in _records().items():
        (folder / f"{name}.json").write_text(export_schedule(record, "keras"))
        schedule = build_schedule(name, total_steps=record["total_steps"], **record["params"])
        values = [float(schedule(step)) for step in STEPS]
        expected[name] = {"config": schedule.get_config(), "values": values}
    onecycle = build_schedule("onecycle", total_steps=40, learning_rate=0.05)
    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=onecycle), loss="mse")
    model.save(folder / "model.keras")
    expected["model"] = {"lr0": float(onecycle(0))}  # learning_rate / div_factor
    (folder / "expected.json").write_text(json.dumps(expected))
    return folder


CHECK = """
    expected = json.loads(open("expected.json").read())
    model_lr0 = expected.pop("model")["lr0"]
    for name, want in expected.items():
        with open(f"{name}.json") as f:
            schedule = keras.optimizers.schedules.deserialize(json.load(f))
        assert not isinstance(schedule, str), (name, schedule)
        assert type(schedule).__module__.startswith("lrsearch."), (name, type(schedule))
        assert schedule.get_config() == want["config"], name
        got = [float(schedule(step)) for step in STEPS]
        assert all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(got, want["values"])), (
            name, got, want["values"]
        )
    print("deserialized", len(expected))
    model = keras.saving.load_model("model.keras")
    lr = model.optimizer.get_config()["learning_rate"]
    assert lr["class_name"] == "OneCycleSchedule", lr
    assert float(model.optimizer.learning_rate) == model_lr0
    print("loaded", lr["config"]["learning_rate"])
"""

IMPORT_ORDERS = {
    "keras-first": "import json\nimport keras\nimport lrsearch.schedules\n",
    "lrsearch-first": "import json\nimport lrsearch.schedules\nimport keras\n",
}


@pytest.mark.parametrize("order", IMPORT_ORDERS)
def test_readme_snippets_in_a_fresh_process(exported: Path, order: str) -> None:
    """The README's calls, as written, in a fresh process: ``deserialize`` returns every family's
    schedule (not its class name) and ``keras.saving.load_model`` restores the optimizer's
    schedule."""
    code = IMPORT_ORDERS[order] + f"STEPS = {STEPS!r}\n" + textwrap.dedent(CHECK)
    out = _run(code, exported)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-4:] == ["deserialized", str(len(FAMILIES)), "loaded", "0.05"]


def test_import_stays_light_without_keras() -> None:
    """Without Keras imported, ``import lrsearch.schedules`` (and the CLI) import no Keras."""
    code = """
        import sys
        import lrsearch.cli, lrsearch.config, lrsearch.schedules
        print(sorted(m for m in ("keras", "tensorflow", "jax") if m in sys.modules))
    """
    out = _run(code, Path.cwd())
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"
