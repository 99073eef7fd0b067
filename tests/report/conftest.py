"""Fixtures for the report tests: a fresh copy of the recorded run directory for every test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.rundir import RunDirectory

RECORDED_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "run_recorded"


@pytest.fixture
def recorded_run(tmp_path: Path) -> RunDirectory:
    """A writable copy of tests/fixtures/run_recorded (reports are written into it)."""
    copy = tmp_path / "run_recorded"
    shutil.copytree(RECORDED_RUN, copy)
    return RunDirectory(copy)
