"""Scoring indicators: small named rules over account fingerprints or cluster evidence.

Each indicator maps a table of features to a strength in [0, 1] per row and a reason an analyst
can read, with the numbers behind it. Indicators are combined by noisy-OR in `scoring.risk`.
Vectorised over NumPy columns; no per-row Python on the scoring path except for formatting
the reasons of rows that fire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Columns = dict[str, np.ndarray]


def ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 at or below `lo`, 1 at or above `hi`, linear between; NaN counts as 0."""
    out = (np.asarray(x, dtype=float) - lo) / (hi - lo)
    # Bare ufuncs (fmax takes the non-NaN side): np.nan_to_num and np.clip cost ~10 us a call
    # in Python-level checks, and the live service evaluates every indicator per POST.
    return np.minimum(np.fmax(out, 0.0), 1.0)


def filled(x: np.ndarray, value: float) -> np.ndarray:
    """`x` as floats with NaN replaced by `value` (infinities kept: every use compares or
    ramps them, where they act as the largest finite value did)."""
    x = np.asarray(x, dtype=float)
    return np.where(np.isnan(x), value, x)


@dataclass(frozen=True)
class Indicator:
    """A named rule: `strength(cols) -> [0,1]` per row and `reason(cols, i) -> str`."""

    name: str
    weight: float
    strength: Callable[[Columns], np.ndarray]
    reason: Callable[[Columns, int], str]


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _extraction_share(c: Columns) -> np.ndarray:
    return np.nanmax(
        np.vstack([c["cot_share"], c["rubric_share"], c["censor_share"], c["train_shaped_share"]]),
        axis=0,
    )


def _extraction_reason(c: Columns, i: int) -> str:
    kinds = {
        "chain-of-thought elicitation": c["cot_share"][i],
        "rubric/reward-model grading": c["rubric_share"][i],
        "censorship-safe rewrites": c["censor_share"][i],
        "training-data-shaped output": c["train_shaped_share"][i],
    }
    top = sorted(((v, k) for k, v in kinds.items() if v > 0.05), reverse=True)[:2]
    asks = " and ".join(f"{k} ({_pct(v)})" for v, k in top)
    return f"requests ask for {asks}"


def _has(c: Columns, name: str) -> np.ndarray:
    return filled(c[name], 0.0)


ACCOUNT_INDICATORS: tuple[Indicator, ...] = (
    Indicator(
        "extraction_asks",
        0.55,
        # Hidden-reasoning elicitation, reward-model grading and censorship-safe rewrites are
        # rare in customer traffic: even a tenth of an account's requests is unusual.
        lambda c: ramp(_extraction_share(c), 0.03, 0.3),
        _extraction_reason,
    ),
    Indicator(
        "ip_rotation",
        0.45,
        lambda c: ramp(_has(c, "home_ips_per_request"), 0.15, 0.6) * (_has(c, "requests") >= 20),
        lambda c, i: (
            f"used {int(c['home_ips'][i])} residential or unclassified IPs for "
            f"{int(c['requests'][i])} requests (rotating proxy pool)"
        ),
    ),
    Indicator(
        "proxy_network",
        0.35,
        lambda c: ramp(_has(c, "proxy_share"), 0.05, 0.5),
        lambda c, i: f"{_pct(c['proxy_share'][i])} of requests via known proxy or Tor exits",
    ),
    Indicator(
        # Commercial VPNs are mostly privacy-minded people: weak on its own.
        "vpn",
        0.1,
        lambda c: ramp(_has(c, "vpn_share"), 0.5, 0.9),
        lambda c, i: f"{_pct(c['vpn_share'][i])} of requests via commercial VPN exits",
    ),
    Indicator(
        "template_reuse",
        0.15,
        lambda c: ramp(_has(c, "top_template_share"), 0.3, 0.8) * (_has(c, "requests") >= 20),
        lambda c, i: f"{_pct(c['top_template_share'][i])} of requests use one prompt template",
    ),
    Indicator(
        "one_shot",
        0.1,
        lambda c: (1 - ramp(_has(c, "followup_share"), 0.02, 0.2)) * (_has(c, "requests") >= 50),
        lambda c, i: f"{_pct(1 - c['followup_share'][i])} of requests are single-turn",
    ),
    Indicator(
        "round_the_clock",
        0.1,
        lambda c: ramp(_has(c, "hour_entropy"), 4.1, 4.45) * (_has(c, "requests") >= 100),
        lambda c, i: f"active round the clock (hour entropy {c['hour_entropy'][i]:.2f} bits)",
    ),
    Indicator(
        "fresh_account",
        0.1,
        lambda c: 1 - ramp(filled(c["age_days"], 999.0), 3.0, 30.0),
        lambda c, i: f"account {c['age_days'][i]:.0f} days old at its first request",
    ),
    Indicator(
        "disposable_email",
        0.3,
        lambda c: _has(c, "disposable"),
        lambda c, i: "signed up with a disposable e-mail domain",
    ),
    Indicator(
        "fast_adoption",
        0.1,
        lambda c: 1 - ramp(filled(c["adopt_lag_h"], 1e9), 24.0, 96.0),
        lambda c, i: f"used a newly released model {c['adopt_lag_h'][i]:.0f} h after release",
    ),
)


CLUSTER_INDICATORS: tuple[Indicator, ...] = (
    Indicator(
        "dense",
        0.5,
        lambda c: (
            ramp(np.log2(np.maximum(_has(c, "density_ratio"), 1.0)), 3.0, 6.0)
            * (_has(c, "size") >= 5)
        ),
        lambda c, i: (
            f"{int(c['size'][i])} accounts share {c['density_ratio'][i]:.0f}x more evidence "
            "with each other than random accounts do"
        ),
    ),
    Indicator(
        "hydra",
        0.5,
        # Strangers behind one VPN exit or NAT are a network community, not a hydra: size
        # counts only when members also share templates, timing or identity.
        lambda c: (
            ramp(_has(c, "size"), 2.0, 8.0)
            * np.maximum.reduce(
                [
                    _has(c, "content_linked"),
                    _has(c, "sync_linked"),
                    _has(c, "identity_linked"),
                    _has(c, "twin_linked"),
                ]
            )
        ),
        lambda c, i: f"one of {int(c['size'][i])} linked accounts",
    ),
    Indicator(
        "shared_templates",
        0.6,
        lambda c: ramp(_has(c, "content_linked"), 0.3, 0.8) * (_has(c, "size") >= 3),
        lambda c, i: (
            f"{_pct(c['content_linked'][i])} of {int(c['size'][i])} linked accounts send the "
            f"same prompt templates (overlap {_pct(c['content_overlap'][i])} of requests)"
        ),
    ),
    Indicator(
        "shared_network",
        0.35,
        lambda c: ramp(_has(c, "network_linked"), 0.3, 0.8) * (_has(c, "size") >= 3),
        lambda c, i: (
            f"shares IPs or subnets with {int(c['network_partners'][i])} linked accounts "
            "in the same days"
        ),
    ),
    Indicator(
        "synchronised",
        0.35,
        lambda c: ramp(_has(c, "sync_linked"), 0.3, 0.8) * (_has(c, "size") >= 3),
        lambda c, i: "sends the same templates as linked accounts in the same 15-minute windows",
    ),
    Indicator(
        "shared_identity",
        0.4,
        lambda c: ramp(_has(c, "identity_linked"), 0.2, 0.6),
        lambda c, i: "shares payment or device fingerprints with linked accounts",
    ),
    Indicator(
        "behavioural_twins",
        0.35,
        lambda c: ramp(_has(c, "twin_linked"), 0.3, 0.8) * (_has(c, "size") >= 3),
        lambda c, i: "behaves near-identically to linked accounts (capability mix, asks, timing)",
    ),
    Indicator(
        "batch_signup",
        0.3,
        lambda c: ramp(_has(c, "signup_linked"), 0.3, 0.8) * (_has(c, "size") >= 3),
        lambda c, i: "signed up in a batch with linked accounts (same hour and domain)",
    ),
)


# What a linked group does, judged on its pooled traffic: with thousands of requests, rates
# that are unremarkable in one account are far outside what customer groups show.
CLUSTER_BEHAVIOUR: tuple[Indicator, ...] = (
    Indicator(
        "group_extraction_asks",
        0.8,
        lambda c: ramp(_has(c, "extraction_rate"), 0.02, 0.10) * (_has(c, "size") >= 3),
        lambda c, i: (
            f"{_pct(c['extraction_rate'][i])} of the group's {int(c['requests'][i]):,} requests "
            "ask for hidden reasoning, grading or censorship-safe rewrites"
        ),
    ),
    Indicator(
        "group_proxies",
        0.35,
        lambda c: ramp(_has(c, "proxy_rate"), 0.05, 0.3) * (_has(c, "size") >= 3),
        lambda c, i: f"{_pct(c['proxy_rate'][i])} of the group's requests via known proxies",
    ),
    Indicator(
        "group_fresh_accounts",
        0.2,
        lambda c: ramp(_has(c, "fresh_share"), 0.3, 0.9) * (_has(c, "size") >= 3),
        lambda c, i: f"{_pct(c['fresh_share'][i])} of the group's accounts are under 60 days old",
    ),
    Indicator(
        "group_disposable",
        0.3,
        lambda c: ramp(_has(c, "disposable_share"), 0.1, 0.5) * (_has(c, "size") >= 3),
        lambda c, i: (
            f"{_pct(c['disposable_share'][i])} of the group signed up with disposable e-mail"
        ),
    ),
)


def noisy_or(
    indicators: tuple[Indicator, ...], cols: Columns, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Combined score and the (n, k) matrix of weighted strengths, for ranking reasons."""
    contrib = np.zeros((n, len(indicators)))
    for j, ind in enumerate(indicators):
        contrib[:, j] = ind.weight * np.minimum(np.maximum(ind.strength(cols), 0.0), 1.0)
    return 1.0 - np.prod(1.0 - contrib, axis=1), contrib
