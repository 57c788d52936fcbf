"""Antidistillation sampling (Savani et al., 2025, "Antidistillation Sampling", arXiv:2504.13146).

Objective. The teacher T samples each next token x from an adjusted distribution

    p~(x | x<t)  ∝  exp( log p_T(x | x<t) / tau  +  lam * Delta(x | x<t) )

where Delta(x) estimates how much *training a student on x* would raise that student's loss on
the task. The real student is unknown, so a proxy student P (parameters theta) stands in, with a
downstream loss l(theta) (e.g. its cross-entropy on held-out correct solutions). One SGD step of
size eta on the token x moves theta by eta * grad log p_P(x | x<t; theta), which changes l by,
to first order,

    l(theta + eta * grad log p_P(x)) - l(theta)  ≈  eta * < grad l(theta), grad log p_P(x | x<t) >.

Delta(x) is that inner product (eta drops into lam). Computing a gradient per vocabulary entry
would be far too costly; the inner product is a directional derivative of log p_P(x) along
grad l, so a finite difference gives it for *every* token with two forward passes:

    Delta(x)  ≈  [ log p_P(x | x<t; theta + eps * grad l(theta)) - log p_P(x | x<t; theta) ] / eps.

Savani et al.'s Algorithm 1 uses the central difference, more accurate at the same eps:

    Delta(x)  ≈  [ log p_P(x; theta + eps * grad l) - log p_P(x; theta - eps * grad l) ] / (2 eps)

(`central=True`, the default: the hook's two proxies are theta - eps g and theta + eps g);
`central=False` is the one-sided form above (proxies theta and theta + eps g). The perturbed
proxies are built once (`perturbed_proxy`, `sign=-1` for the lower one), not per token.
lam = 0 is ordinary sampling from the teacher at temperature tau; larger lam poisons the traces
more and costs more teacher likelihood (the paper's trade-off curve). `min_teacher_prob`
(our addition, off by default) restricts the choice to tokens the teacher itself finds
plausible (p_T(x) >= min_teacher_prob * max p_T), so where the teacher is sure (a digit, a
final answer) the token is kept and only its genuine alternatives are re-ranked.

The hook has the logits-processor signature `(input_ids, teacher_logits) -> logits`, like
`provenance.watermark.WatermarkProcessor`, on NumPy arrays or torch tensors. torch is imported
only by the torch helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from distillguard.errors import UserError


@dataclass(frozen=True)
class AntidistillationConfig:
    """lam: poisoning weight; eps: the finite-difference step used to build the perturbed proxy;
    tau: teacher temperature; min_teacher_prob: plausibility floor relative to the top token;
    central: central difference (Savani et al.'s Algorithm 1) or one-sided."""

    lam: float = 1.0
    eps: float = 1e-4
    tau: float = 1.0
    min_teacher_prob: float = 0.0
    central: bool = True

    def __post_init__(self) -> None:
        if self.eps <= 0 or self.tau <= 0:
            raise UserError("antidistillation: eps and tau must be > 0")
        if not 0.0 <= self.min_teacher_prob <= 1.0:
            raise UserError("antidistillation: min_teacher_prob must be in [0, 1]")


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _log_softmax(x: Any) -> Any:
    if _is_torch(x):  # float32 at least; float64 kept (finite differences need the digits)
        return (x if str(x.dtype) == "torch.float64" else x.float()).log_softmax(-1)
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def distillation_gain(
    lower_logits: Any, upper_logits: Any, eps: float, central: bool = False
) -> Any:
    """Delta(x) for every token: the first-order rise of the proxy's downstream loss if it were
    trained on x. `upper_logits`: the proxy at theta + eps * grad l; `lower_logits`: at theta
    (one-sided) or at theta - eps * grad l (`central=True`, divided by 2 eps)."""
    step = 2.0 * eps if central else eps
    return (_log_softmax(upper_logits) - _log_softmax(lower_logits)) / step


def adjusted_logits(
    teacher_logits: Any, lower_logits: Any, upper_logits: Any, config: AntidistillationConfig
) -> Any:
    """Logits of the antidistillation distribution (B, V); softmax and sample from them.

    `lower_logits`/`upper_logits`: the proxy at theta -/+ eps * grad l (central) or at theta
    and theta + eps * grad l (`config.central=False`)."""
    log_pt = _log_softmax(teacher_logits)
    out = log_pt / config.tau + config.lam * distillation_gain(
        lower_logits, upper_logits, config.eps, config.central
    )
    if config.min_teacher_prob <= 0:
        return out
    floor = float(np.log(config.min_teacher_prob))
    if _is_torch(log_pt):
        implausible = log_pt < log_pt.max(-1, keepdim=True).values + floor
        return out.masked_fill(implausible, -float("inf"))
    implausible = log_pt < log_pt.max(-1, keepdims=True) + floor
    return np.where(implausible, -np.inf, out)


class AntidistillationHook:
    """Logits processor: teacher logits -> antidistillation logits, given the proxy's two views.

    `lower(input_ids)` and `upper(input_ids)` return next-token logits (B, V) of the proxy
    student at theta - eps * grad l and theta + eps * grad l (central, the default), or at theta
    and theta + eps * grad l (`config.central=False`); see `perturbed_proxy`, `next_logits_fn`.
    """

    def __init__(
        self,
        lower: Callable[[Any], Any],
        upper: Callable[[Any], Any],
        config: AntidistillationConfig | None = None,
    ) -> None:
        self.lower, self.upper = lower, upper
        self.config = config or AntidistillationConfig()

    def __call__(self, input_ids: Any, teacher_logits: Any) -> Any:
        return adjusted_logits(
            teacher_logits, self.lower(input_ids), self.upper(input_ids), self.config
        )


def perturbed_proxy(
    proxy: Any,
    downstream_loss: Callable[[Any], Any],
    eps: float,
    normalise: bool = False,
    sign: float = 1.0,
) -> Any:
    """A copy of the torch module `proxy` with parameters theta + sign * eps * grad l(theta).

    `downstream_loss(model)` returns the scalar loss l whose rise we want (e.g. the model's
    cross-entropy on held-out correct solutions). `normalise=True` steps along the unit vector
    grad l / |grad l| instead, so `eps` is a parameter distance whatever the gradient's size
    (Delta is then the gain per unit of |grad l|; lam absorbs the scale).
    """
    import copy

    import torch

    proxy.zero_grad(set_to_none=True)
    loss = downstream_loss(proxy)
    params = [p for p in proxy.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    if normalise:
        norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None))
        eps = eps / max(float(norm), 1e-12)
    moved = copy.deepcopy(proxy)
    with torch.no_grad():
        moved_params = [p for p in moved.parameters() if p.requires_grad]
        for p, g in zip(moved_params, grads, strict=True):
            if g is not None:
                p.add_(g, alpha=sign * eps)
    moved.eval()
    return moved


def next_logits_fn(model: Any) -> Callable[[Any], Any]:
    """`ids (B, T) -> next-token logits (B, V)` of a causal torch LM returning (B, T, V)."""
    import torch

    @torch.no_grad()
    def fn(ids: Any) -> Any:
        return model(ids)[:, -1, :].float()

    return fn
