"""Provenance: watermark served answers and test whether a suspect model was distilled from them.

Core modules (watermark, radioactivity, canary, keys, tokenizer, corpus) need only NumPy and
SciPy; `tinylm` and `experiment` need torch (the optional `provenance` extra).

Names are imported on first use (PEP 562): the CLI imports `provenance.keys` to register its
commands, and loading SciPy's statistics for every `distillguard` invocation cost seconds.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "Canary": "canary",
    "CanaryCheck": "canary",
    "canary_check": "canary",
    "make_canary": "canary",
    "WatermarkKey": "keys",
    "load_key": "keys",
    "new_key": "keys",
    "save_key": "keys",
    "closed_mode_test": "radioactivity",
    "null_calibration": "radioactivity",
    "reading_mode_test": "radioactivity",
    "soft_reading_mode_test": "radioactivity",
    "Detection": "watermark",
    "WatermarkConfig": "watermark",
    "WatermarkProcessor": "watermark",
    "detect_ids": "watermark",
    "detect_keys": "watermark",
    "detect_text": "watermark",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
