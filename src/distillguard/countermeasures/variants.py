"""Watermark and canary variants for flagged accounts, from the provenance toolkit.

Nothing is reimplemented here: the green-list watermark is
`distillguard.provenance.watermark.WatermarkProcessor` (a sampler-side logits processor) and
canaries are `distillguard.provenance.canary.make_canary` (a keyed rewrite of the answer text).
This module only decides *which key* an account's answers carry. One key (the default) keeps
every flagged account's answers on one green list, which is what a radioactivity test of a
student trained on a whole campaign needs; `per_account=True` derives a key per account
(HMAC of the master secret and the account id) so a positive test also says whose answers were
used, at the price of testing one key per suspected account (Bonferroni).

The provenance modules import SciPy, so they are imported only when a variant is served.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distillguard.provenance.keys import WatermarkKey
    from distillguard.provenance.watermark import WatermarkConfig, WatermarkProcessor


@dataclass(frozen=True)
class ProvenanceKeys:
    """The provider's watermark/canary key, optionally derived per account."""

    master: WatermarkKey
    per_account: bool = False

    def for_account(self, account_id: str) -> WatermarkKey:
        if not self.per_account:
            return self.master
        from distillguard.provenance.keys import WatermarkKey

        secret = self.master.digest(f"account\x00{account_id}".encode())
        tag = hashlib.sha256(account_id.encode()).hexdigest()[:8]
        return WatermarkKey(secret=secret, key_id=f"{self.master.key_id}/{tag}")


def canary_answer(prompt: str, answer: str, key: WatermarkKey) -> str:
    """The keyed canary variant of `answer` (same meaning, keyed phrasings)."""
    from distillguard.provenance.canary import make_canary

    return make_canary(prompt, answer, key).text


def watermark_processor(
    key: WatermarkKey,
    config: WatermarkConfig | None = None,
    vocab_size: int = 0,
    token_keys: Any = None,
) -> WatermarkProcessor:
    """The sampler-side watermark for one flagged request (add it to the logits processors)."""
    from distillguard.provenance.watermark import WatermarkConfig, WatermarkProcessor

    return WatermarkProcessor(key, config or WatermarkConfig(), vocab_size, token_keys)
