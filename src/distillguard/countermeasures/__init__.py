"""Countermeasures: make flagged accounts' responses worthless for distillation (issue 10).

A gateway applies them to the responses of requests whose `distillguard serve` decision names
them (`decision["countermeasures"]`); unflagged traffic is never touched. See
docs/countermeasures.md.

* `reasoning`: the thinking trace summarised (extractive, deterministic) or withheld.
* `variants`: watermark and canary variants from `distillguard.provenance`, per account key.
* `caps`: lower output-length caps and a thinking budget.
* `antidistillation`: the antidistillation sampling hook (Savani et al., 2025).
* `gate`: `apply(decision, response)`, `apply_chat`, `request_params`, `sampling_hooks`.

Importing this package needs only NumPy; SciPy (provenance) and torch are imported lazily.
"""

from distillguard.countermeasures.antidistillation import (
    AntidistillationConfig,
    AntidistillationHook,
    adjusted_logits,
    distillation_gain,
)
from distillguard.countermeasures.caps import Caps, cap_request, truncate_words
from distillguard.countermeasures.gate import (
    DEFAULT_SETTINGS,
    KNOWN,
    ServedResponse,
    Settings,
    apply,
    apply_chat,
    last_user_prompt,
    measures_of,
    request_params,
    sampling_hooks,
)
from distillguard.countermeasures.reasoning import (
    ExtractiveSummariser,
    Summariser,
    split_sentences,
    summarise,
    withhold,
)
from distillguard.countermeasures.variants import ProvenanceKeys, canary_answer

__all__ = [
    "DEFAULT_SETTINGS",
    "KNOWN",
    "AntidistillationConfig",
    "AntidistillationHook",
    "Caps",
    "ExtractiveSummariser",
    "ProvenanceKeys",
    "ServedResponse",
    "Settings",
    "Summariser",
    "adjusted_logits",
    "apply",
    "apply_chat",
    "canary_answer",
    "cap_request",
    "distillation_gain",
    "last_user_prompt",
    "measures_of",
    "request_params",
    "sampling_hooks",
    "split_sentences",
    "summarise",
    "truncate_words",
    "withhold",
]
