"""Censorship-safe rewrite requests."""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from distillguard.signals._content import rows_flagged
from distillguard.signals.base import (
    ATLAS_EXFIL_INFERENCE,
    ATLAS_PROXY_MODEL,
    Signal,
    bool_array,
)

GATE = (
    r"politic|sensitiv|censor|regulat|socialist|official|government|narrative|compliant|"
    r"comply|neutral|controvers|mainland|china|chinese|party|敏感|审查|政治|价值观|官方|"
    r"合规|规定|法规|和谐|改写|重写"
)
_REWRITE = (
    r"(?:rewrite|re-write|rephrase|revise|paraphrase|edit|modify|adjust|sanitize|sanitise|"
    r"soften|neutrali[sz]e|redraft|adapt|transform|convert|change|alter|tone down|clean up|"
    r"make)"
)
_SAFE_TARGET = (
    r"(?:politically (?:sensitive|neutral|safe|correct|acceptable|appropriate)|"
    r"sensitive (?:topics?|content|issues?|political|information|parts|events?)|"
    r"censor(?:ship|ed|s)?(?:[- ](?:safe|friendly|compliant|proof))?|"
    r"(?:comply|compliant|compliance|consistent|in line|aligned?) with (?:the )?"
    r"(?:chinese |china'?s |prc |local |government |official |mainland |party )"
    r"(?:regulations?|laws?|policy|policies|censorship|rules|guidelines|values|position|stance)|"
    r"core socialist values|official (?:position|narrative|stance|line|government position)|"
    r"government'?s? (?:position|stance|narrative|line)|"
    r"avoid(?:s|ing)? (?:mentioning|any mention|criticism|criticizing|criticising|"
    r"controversial|political|sensitive)|"
    r"(?:safe|acceptable|suitable|publishable) (?:for|in) (?:publication in )?"
    r"(?:mainland )?(?:china|chinese (?:audiences|users|platforms|regulators)))"
)
PATTERNS = (
    _REWRITE + r"\b[^\n]{0,120}" + _SAFE_TARGET,
    _SAFE_TARGET + r"[^\n]{0,120}\b" + _REWRITE + r"\b",
    r"core socialist values|censorship[- ](?:safe|friendly|compliant|proof)",
    # Chinese: rewrite/modify ... sensitive / political / censorship / core values / official.
    r"(?:改写|重写|修改|润色|调整|转述|删改|规避)[^。\n]{0,40}(?:敏感|政治|审查|价值观|官方|合规|和谐)|"
    r"(?:敏感|政治|审查|价值观|官方|合规|和谐)[^。\n]{0,40}(?:改写|重写|修改|润色|调整|规避)|"
    r"社会主义核心价值观|符合[^。\n]{0,10}(?:法律法规|规定|监管|审查)",
)
PATTERN = "|".join(f"(?:{p})" for p in PATTERNS)


class CensorSignal(Signal):
    """Censorship-safe rewrite request: rewrite an answer so it passes political censorship.

    Fires when a rewrite/soften/neutralise verb meets a political-censorship target
    (politically sensitive/neutral, sensitive topics, censorship-safe, compliant with
    Chinese/government regulations, core socialist values, the official position), in either
    order within a line, and on the Chinese equivalents (改写...敏感, 社会主义核心价值观, ...).

    Captures:
        Distilling the target's answers on politically sensitive topics and having it
        rewrite them into censorship-compliant versions, to build alignment data for a
        student model that must pass domestic censorship.

    False positives:
        Journalists, researchers and trust-and-safety teams studying censorship (they ask
        *about* it; that alone does not fire without a rewrite verb nearby); communications
        teams asking for a "politically neutral" tone on a policy memo; localisation
        vendors. Ordinary rewrites ("make my email more professional") do not fire.

    Analyst check:
        Is the payload the model's own earlier answer on a sensitive topic (Tiananmen,
        Xinjiang, Taiwan, Tibet...) being re-written, and is it templated across accounts?
        One newsroom vs. thousands of accounts with the same wrapper.

    ATLAS:
        AML.T0024 (exfiltration via inference API), AML.T0005 (create proxy model).
    """

    name: ClassVar[str] = "censor"
    output: ClassVar[pa.Schema] = pa.schema([pa.field("censor", pa.bool_())])
    atlas: ClassVar[tuple[str, ...]] = (ATLAS_EXFIL_INFERENCE, ATLAS_PROXY_MODEL)

    def compute(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        return {"censor": bool_array(rows_flagged(batch, GATE, PATTERN))}
