"""Shared test plumbing: where screenshots go, and a summary line naming them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SAVED: list[Path] = []


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """``$LRSEARCH_SCREENSHOTS`` or ``test-output/`` in the checkout (git-ignored)."""
    folder = Path(os.environ.get("LRSEARCH_SCREENSHOTS", REPO / "test-output"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def saved_screenshot() -> list[Path]:
    """Append a screenshot's path here and the run's summary prints it."""
    return _SAVED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SAVED:
        terminalreporter.section("screenshots")
        for path in _SAVED:
            terminalreporter.write_line(str(path))
