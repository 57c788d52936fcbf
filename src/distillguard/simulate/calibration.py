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


def token_params(
    profile: str, output_profile: str | None = None
) -> tuple[float, float, float, float]:
    """(mu_in, sigma_in, mu_out, sigma_out) of lognormal token lengths (natural log)."""
    p = calibration()["token_profiles"][profile]
    o = calibration()["token_profiles"][output_profile or profile]
    return p["input"]["mu"], p["input"]["sigma"], o["output"]["mu"], o["output"]["sigma"]


def tokens_per_image() -> float:
    return float(calibration()["tokens_per_image"])


def _from_quantiles(rng: np.random.Generator, quantiles: list[float], n: int) -> np.ndarray:
    probs = np.linspace(0.0, 1.0, len(quantiles))
    return np.interp(rng.random(n), probs, np.asarray(quantiles, dtype=np.float64))


def draw_client_cv(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-client inter-arrival CVs distributed like real API clients' (ServeGen)."""
    return _from_quantiles(rng, calibration()["client_cv"]["quantiles"], n)
