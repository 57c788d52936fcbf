"""Render docs/signals.md from the signal classes' docstrings (detection as code: the docs
are generated from the same text the code carries).

    .venv/bin/python -m distillguard.signals.docs > docs/signals.md
"""

from __future__ import annotations

import inspect
import re

from distillguard.signals import SIGNALS, Signal
from distillguard.signals.base import DOCSTRING_SECTIONS

_ATLAS_NAMES = {
    "AML.T0040": "ML Model Inference API Access",
    "AML.T0024": "Exfiltration via ML Inference API",
    "AML.T0005": "Create Proxy ML Model",
}


def docstring_sections(signal: Signal) -> dict[str, str]:
    """Summary plus the four sections of a signal's class docstring, as one-paragraph text.

    Accepts Google-style headings ("Captures:" on its own line) and inline bold paragraphs
    ("**Captures**: ...").
    """
    doc = inspect.getdoc(type(signal)) or ""
    names = "|".join(DOCSTRING_SECTIONS)
    pattern = rf"^(?:({names}):\s*$|\*\*({names})\*\*:\s*)"
    parts = re.split(pattern, doc, flags=re.MULTILINE)
    sections = {"Summary": parts[0]}
    for i in range(1, len(parts) - 2, 3):
        sections[parts[i] or parts[i + 1]] = parts[i + 2]
    return {k: " ".join(v.split()) for k, v in sections.items()}


def _columns(signal: Signal) -> str:
    return "<br>".join(f"`{f.name}` {f.type}" for f in signal.output)


def signals_markdown() -> str:
    """The whole docs/signals.md page."""
    lines = [
        "# Request signals (detection stage 1)",
        "",
        "Generated from the signal classes by `python -m distillguard.signals.docs`; edit the",
        "docstrings in `src/distillguard/signals/`, not this file.",
        "",
        "`distillguard.signals.compute_signals(batch)` takes a `contract.EVENTS` record batch",
        "and returns `request_id` plus the columns below, same rows, same order.",
        "`signal_schema()` is the output schema; `SIGNALS` the registry.",
        "",
        "| signal | columns | captures | false positives | analyst check | ATLAS |",
        "|---|---|---|---|---|---|",
    ]
    for signal in SIGNALS:
        s = docstring_sections(signal)
        atlas = "<br>".join(f"{a} {_ATLAS_NAMES.get(a, '')}".strip() for a in signal.atlas)
        cells = [f"`{signal.name}`", _columns(signal), s.get("Captures", ""),
                 s.get("False positives", ""), s.get("Analyst check", ""), atlas]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "## Details", ""]
    for signal in SIGNALS:
        s = docstring_sections(signal)
        lines += [f"### `{signal.name}` ({type(signal).__name__})", "", s["Summary"], ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(signals_markdown(), end="")
