"""Provenance: watermark served answers and test whether a suspect model was distilled from them.

Core modules (watermark, radioactivity, canary, keys, tokenizer, corpus) need only NumPy and
SciPy; `tinylm` and `experiment` need torch (the optional `provenance` extra).
"""

from distillguard.provenance.canary import Canary, CanaryCheck, canary_check, make_canary
from distillguard.provenance.keys import WatermarkKey, load_key, new_key, save_key
from distillguard.provenance.radioactivity import (
    closed_mode_test,
    null_calibration,
    reading_mode_test,
    soft_reading_mode_test,
)
from distillguard.provenance.watermark import (
    Detection,
    WatermarkConfig,
    WatermarkProcessor,
    detect_ids,
    detect_keys,
    detect_text,
)

__all__ = [
    "Canary",
    "CanaryCheck",
    "Detection",
    "WatermarkConfig",
    "WatermarkKey",
    "WatermarkProcessor",
    "canary_check",
    "closed_mode_test",
    "detect_ids",
    "detect_keys",
    "detect_text",
    "load_key",
    "make_canary",
    "new_key",
    "null_calibration",
    "reading_mode_test",
    "save_key",
    "soft_reading_mode_test",
]
