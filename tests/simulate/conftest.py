"""Shared simulator runs: generated once per test session (each takes a second or two)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.simulate import simulate

SEED_REPORT_TEST_SCALE = 0.002  # ~67k events: enough for volume ratios and timing shapes


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    simulate("small", seed=1, out=out)
    return out


@pytest.fixture(scope="session")
def seed_report_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seed-report")
    simulate("seed-report", scale=SEED_REPORT_TEST_SCALE, seed=2, out=out)
    return out
