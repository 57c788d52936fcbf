"""Calibrated parameters of real API traffic, read from the committed `data/calibration.json`.

`bench/calibrate.py` derives that file from the public traces in ../shared/data; the simulator
never reads those traces itself.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np


@cache
def calibration() -> dict:
    path = Path(str(resources.files("distillguard.simulate") / "data" / "calibration.json"))
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def token_params(profile: str) -> tuple[float, float, float, float]:
    """(mu_in, sigma_in, mu_out, sigma_out) of lognormal token lengths for a length profile."""
    p = calibration()["token_profiles"][profile]
    return p["input"]["mu"], p["input"]["sigma"], p["output"]["mu"], p["output"]["sigma"]


def _from_quantiles(rng: np.random.Generator, quantiles: list[float], n: int) -> np.ndarray:
    probs = np.linspace(0.0, 1.0, len(quantiles))
    return np.interp(rng.random(n), probs, np.asarray(quantiles, dtype=np.float64))


def draw_client_cv(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-client inter-arrival CVs distributed like real API clients' (ServeGen)."""
    return _from_quantiles(rng, calibration()["client_cv"]["quantiles"], n)
