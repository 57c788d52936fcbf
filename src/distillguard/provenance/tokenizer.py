"""The word-level tokenizer the project ships (no downloads), and stable token keys.

Green lists are computed from *token keys* (64-bit hashes of the token string), not from
vocabulary ids, so a text can be scored without knowing the vocabulary of the model that
produced it: split it into words, hash each word, score.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import xxhash

_WORD_RE = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
_SPACE_BEFORE_PUNCT = re.compile(r" ([.,;:!?)\]}'])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[{]) ")

BOS = "<bos>"
EOS = "<eos>"
PAD = "<pad>"
SPECIALS = (PAD, BOS, EOS)


def split_words(text: str) -> list[str]:
    """Words and single punctuation marks, in order."""
    return _WORD_RE.findall(text)


def join_words(words: Iterable[str]) -> str:
    """Inverse of `split_words` up to whitespace: re-splitting gives the same tokens."""
    text = " ".join(w for w in words if w not in SPECIALS)
    return _SPACE_AFTER_OPEN.sub(r"\1", _SPACE_BEFORE_PUNCT.sub(r"\1", text))


def token_key_array(tokens: Sequence[str]) -> np.ndarray:
    """uint64 key of each token string (xxh64); hashes each distinct string once."""
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    uniques, inverse = np.unique(np.asarray(tokens, dtype=object).astype(str), return_inverse=True)
    hashed = np.fromiter(
        (xxhash.xxh64_intdigest(u.encode("utf-8")) for u in uniques),
        dtype=np.uint64,
        count=len(uniques),
    )
    return hashed[inverse.reshape(-1)]


class WordVocab:
    """A closed word vocabulary (ids <-> words) with the special tokens first."""

    def __init__(self, words: Iterable[str]) -> None:
        ordered = list(SPECIALS) + sorted(set(words) - set(SPECIALS))
        self.itos: list[str] = ordered
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(ordered)}
        self.token_keys: np.ndarray = token_key_array(ordered)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def bos_id(self) -> int:
        return self.stoi[BOS]

    @property
    def eos_id(self) -> int:
        return self.stoi[EOS]

    @property
    def pad_id(self) -> int:
        return self.stoi[PAD]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> WordVocab:
        words: set[str] = set()
        for text in texts:
            words.update(split_words(text))
        return cls(words)

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        """Ids of a text; words outside the vocabulary are dropped (the caller chose the vocab)."""
        ids = [self.stoi[w] for w in split_words(text) if w in self.stoi]
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        words = []
        for i in ids:
            if i == self.eos_id:
                break
            words.append(self.itos[int(i)])
        return join_words(words)
