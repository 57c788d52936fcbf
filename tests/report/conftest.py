"""Fixtures: synthetic detect run directories (see rundir_factory) shared by the report tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.report.rundir_factory import FakeRun, build_run_dir


@pytest.fixture(scope="session")
def fake_run_master(tmp_path_factory: pytest.TempPathFactory) -> FakeRun:
    return build_run_dir(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture
def fake_run(fake_run_master: FakeRun, tmp_path: Path) -> FakeRun:
    """A private copy per test, so tests may write reports and exports into it."""
    dst = tmp_path / "run"
    shutil.copytree(fake_run_master.path, dst)
    return FakeRun(**{**fake_run_master.__dict__, "path": dst})


@pytest.fixture
def quiet_run(tmp_path: Path) -> FakeRun:
    """A run in which no campaign was detected."""
    return build_run_dir(tmp_path / "quiet", with_campaigns=False)
