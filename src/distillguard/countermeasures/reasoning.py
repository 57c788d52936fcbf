"""Reasoning withheld or summarised: the thinking trace a flagged account sees.

A harvested step-by-step trace is the most valuable part of an answer for distillation: a
student trained on full traces learns the procedure, one trained on answers alone must find it
by itself. For flagged accounts the trace is replaced by a short summary (default) or withheld.

The default summariser is *extractive and deterministic*: it keeps the few sentences of the
trace that best represent it (most frequent content words, plus a bonus for the final sentence,
where conclusions live), in their original order, verbatim. Same trace in, same summary out, so
retries cannot be compared to reconstruct the trace. Any callable with the `Summariser`
signature can replace it (an abstractive model, a template, a policy-specific redactor).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# A sentence ends at . ! ? followed by white space, or at a line break (3.14 stays whole).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "so",
        "that",
        "the",
        "then",
        "this",
        "to",
        "was",
        "we",
        "were",
        "which",
        "will",
        "with",
        "you",
    ]
)
WITHHELD_NOTE = "[reasoning withheld]"


@runtime_checkable
class Summariser(Protocol):
    """Turns a reasoning trace into the text shown instead of it."""

    def __call__(self, reasoning: str) -> str: ...


def split_sentences(text: str) -> list[str]:
    """Non-empty sentences of `text`, stripped, in order."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


@dataclass(frozen=True)
class ExtractiveSummariser:
    """Keep the `max_sentences` most representative sentences, verbatim and in order.

    Score of a sentence = mean over its content words of the word's frequency in the whole
    trace (a centroid score: sentences about what the trace is mostly about), times
    `last_bonus` for the final sentence. Ties go to the earlier sentence. The result is cut to
    `max_chars` at a word boundary.
    """

    max_sentences: int = 2
    max_chars: int = 400
    last_bonus: float = 1.5
    prefix: str = "Summary of reasoning: "

    def __call__(self, reasoning: str) -> str:
        sentences = split_sentences(reasoning)
        if not sentences:
            return ""
        keep = sorted(self._top(sentences))
        text = " ".join(sentences[i] for i in keep)
        return self.prefix + _cut(text, self.max_chars)

    def _top(self, sentences: list[str]) -> list[int]:
        words = [[w for w in _WORD.findall(s.lower()) if w not in _STOPWORDS] for s in sentences]
        freq = Counter(w for ws in words for w in ws)
        scores = [sum(freq[w] for w in ws) / len(ws) if ws else 0.0 for ws in words]
        scores[-1] *= self.last_bonus
        ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
        return ranked[: max(self.max_sentences, 0)]


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    head = text[:max_chars].rsplit(" ", 1)[0]
    return head.rstrip() + " …"


def withhold(reasoning: str) -> str:
    """The trace replaced by a fixed note (nothing of it is shown)."""
    return WITHHELD_NOTE if reasoning else reasoning


def summarise(reasoning: str | None, summariser: Summariser | None = None) -> str | None:
    """The text shown instead of `reasoning` (None stays None: no trace, nothing to do)."""
    if reasoning is None:
        return None
    return (summariser or ExtractiveSummariser())(reasoning)
