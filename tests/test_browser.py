"""``lrsearch dashboard`` in a real browser: headless Chromium driven by Playwright.

Uses Debian's ``chromium`` (``/usr/bin/chromium``, or ``$LRSEARCH_CHROMIUM``), never a browser
that Playwright downloads; ``bash .ci/chromium`` installs it. Without it the tests are skipped
locally and fail under ``CI``. Screenshots go to ``test-output/`` (``$LRSEARCH_SCREENSHOTS``) and
are listed at the end of the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.artifacts import get_all_artifact_meta

from lrsearch.cli import cli
from tests.helpers import PNG, free_port, start, tiny_study_file

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("LRSEARCH_CHROMIUM", "/usr/bin/chromium")
# As root in a container, and quiet on a closed network (no update/sync/metrics connections).
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--metrics-recording-only",
]
VIEWPORT = {"width": 1400, "height": 1000}
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which(CHROMIUM)
    if path is None:
        message = f"Chromium not found at {CHROMIUM}: install it with `bash .ci/chromium`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real two-trial lrsearch study with its artifacts in ``x-artifacts``."""
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'x.db'}"
    study_file = tiny_study_file(folder, "tiny")
    result = CliRunner().invoke(cli, ["start", str(study_file), "--storage", url, "--no-progress"])
    assert result.exit_code == 0, (result.output, result.exception)
    study = optuna.load_study(study_name="tiny", storage=url)
    return {
        "url": url,
        "artifacts": folder / "x-artifacts",
        "study_id": study._study_id,
        "best": study.best_trial.number,
        "trials": [t.number for t in study.trials],
    }


@pytest.fixture
def dashboard(trained: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    proc = start(["--storage", trained["url"], *getattr(request, "param", [])], port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_study_note_and_a_trials_lr_curve_are_visible(
    trained: dict[str, Any],
    dashboard: str,
    page: Any,
    screenshot_dir: Path,
    saved_screenshot: list[Path],
) -> None:
    expect = playwright_api.expect
    study_path = f"/dashboard/studies/{trained['study_id']}"

    # From the study list to the study, as a user clicks.
    page.goto(f"{dashboard}/dashboard")
    page.get_by_text(re.compile(r"^\d+\. tiny$")).click()  # the study's card: "1. tiny"
    expect(page).to_have_url(re.compile(re.escape(study_path) + "$"))
    expect(page.get_by_text("Study Artifacts")).to_be_visible()
    expect(page.locator('img[alt="top_lr_curves.png"]')).to_be_visible()

    # The study note lrsearch keeps: best trial and the table of families.
    page.goto(f"{dashboard}{study_path}/note")
    expect(page.get_by_text("tiny: best val_accuracy per schedule family")).to_be_visible()
    expect(page.locator("strong", has_text=f"Best trial: #{trained['best']}")).to_be_visible()
    expect(page.locator("th", has_text="best val_accuracy")).to_be_visible()
    expect(page.get_by_text("lrsearch retrain tiny --save model.keras")).to_be_visible()
    note_shot = screenshot_dir / "dashboard-note.png"
    page.screenshot(path=str(note_shot))
    saved_screenshot.append(note_shot)

    # A trial: pick it in the trial list, its lr curve shows.
    number = trained["trials"][-1]
    page.goto(f"{dashboard}{study_path}/trials")
    page.get_by_text(f"Trial {number}", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(rf"^Trial {number} "))).to_be_visible()
    image = page.locator('img[alt="lr_curve.png"]')
    image.scroll_into_view_if_needed()
    expect(image).to_be_visible()
    page.wait_for_function(
        "i => i.complete && i.naturalWidth > 0", arg=image.element_handle(), timeout=TIMEOUT_MS
    )
    width, height = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert (width, height) == (880, 495)  # plot_trial_lr: 8 x 4.5 in at 110 dpi

    # The picture the browser shows is the artifact this trial uploaded, byte for byte.
    study = optuna.load_study(study_name="tiny", storage=trained["url"])
    trial = next(t for t in study.trials if t.number == number)
    meta = next(
        m
        for m in get_all_artifact_meta(trial, storage=study._storage)
        if m.filename == "lr_curve.png"
    )
    shown = page.request.get(image.evaluate("i => i.src")).body()
    assert shown[:8] == PNG
    assert shown == (trained["artifacts"] / meta.artifact_id).read_bytes()

    # Long attributes wrap (lrsearch's CSS): nothing pushes the page sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
    trial_shot = screenshot_dir / "dashboard-trial.png"
    image.evaluate("i => i.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(trial_shot))
    saved_screenshot.append(trial_shot)


@pytest.mark.parametrize("dashboard", [["--read-only"]], indirect=True)
def test_read_only_dashboard_refuses_a_delete_from_the_ui(
    trained: dict[str, Any],
    dashboard: str,
    page: Any,
    screenshot_dir: Path,
    saved_screenshot: list[Path],
) -> None:
    expect = playwright_api.expect
    page.goto(f"{dashboard}/dashboard")
    card = page.locator(".MuiCard-root", has_text="tiny")
    expect(card).to_be_visible()
    card.get_by_test_id("DeleteIcon").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Delete study")).to_be_visible()
    artifacts = sorted(p.name for p in trained["artifacts"].iterdir())
    assert artifacts  # the trials' pictures, which the dialog offers to delete too
    dialog.get_by_label("Remove associated trial/study artifacts.").check()
    with page.expect_response(lambda r: r.request.method == "DELETE") as response:
        dialog.get_by_role("button", name="Yes").click()
    assert response.value.status == 403
    assert "read-only" in response.value.json()["reason"]
    failed = page.get_by_text(f"Failed to delete study (id={trained['study_id']})")
    expect(failed).to_be_visible()
    expect(dialog).to_be_hidden()
    page.wait_for_function(  # the snackbar has slid in
        "e => e.getBoundingClientRect().left >= 0", arg=failed.element_handle()
    )
    shot = screenshot_dir / "dashboard-read-only-delete.png"
    page.screenshot(path=str(shot))
    saved_screenshot.append(shot)

    names = [s.study_name for s in optuna.get_all_study_summaries(trained["url"])]
    assert names == ["tiny"]
    assert len(optuna.load_study(study_name="tiny", storage=trained["url"]).trials) == 2
    assert sorted(p.name for p in trained["artifacts"].iterdir()) == artifacts
