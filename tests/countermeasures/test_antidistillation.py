"""Antidistillation sampling hook: the objective, its first-order estimate, and the filters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillguard.countermeasures.antidistillation import (
    AntidistillationConfig,
    AntidistillationHook,
    adjusted_logits,
    distillation_gain,
    next_logits_fn,
    perturbed_proxy,
)
from distillguard.errors import UserError


def _log_softmax(x: np.ndarray) -> np.ndarray:
    return torch.log_softmax(torch.from_numpy(x), -1).numpy()


def test_lambda_zero_is_the_teacher_at_temperature():
    rng = np.random.default_rng(0)
    t, p, q = rng.normal(size=(3, 4, 11))
    out = adjusted_logits(t, p, q, AntidistillationConfig(lam=0.0, tau=0.7))
    np.testing.assert_allclose(out, _log_softmax(t) / 0.7, atol=1e-12)


def test_numpy_and_torch_agree():
    rng = np.random.default_rng(1)
    t, p, q = rng.normal(size=(3, 2, 9))
    cfg = AntidistillationConfig(lam=2.0, eps=0.1, min_teacher_prob=0.05)
    a = adjusted_logits(t, p, q, cfg)
    b = adjusted_logits(*(torch.from_numpy(x) for x in (t, p, q)), cfg).double().numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_min_teacher_prob_keeps_only_plausible_tokens():
    teacher = np.log(np.array([[0.90, 0.08, 0.02]]))
    gain_favours_last = np.array([[0.0, 0.0, 50.0]])
    cfg = AntidistillationConfig(lam=1.0, eps=1.0, min_teacher_prob=0.05)
    out = adjusted_logits(teacher, np.zeros((1, 3)), gain_favours_last, cfg)
    assert np.isneginf(out[0, 2]) and np.isfinite(out[0, :2]).all()
    free = adjusted_logits(
        teacher, np.zeros((1, 3)), gain_favours_last, AntidistillationConfig(1, 1)
    )
    assert free[0].argmax() == 2  # without the floor the poisoning token wins


def test_finite_difference_matches_the_gradient_inner_product():
    """Delta(x) ≈ <grad l, grad log p_P(x)>, the first-order rise of l after training on x."""
    torch.manual_seed(0)
    v, d = 7, 5
    proxy = torch.nn.Sequential(torch.nn.Embedding(v, d), torch.nn.Linear(d, v)).double()
    ctx = torch.tensor([[3]])
    held_out = torch.tensor([1, 4, 4, 2])

    def downstream_loss(model):  # cross-entropy of held-out "correct" next tokens after ctx
        logits = model(ctx)[0, -1].expand(len(held_out), v)
        return torch.nn.functional.cross_entropy(logits, held_out)

    eps = 1e-6
    moved = perturbed_proxy(proxy, downstream_loss, eps)
    with torch.no_grad():
        gain = distillation_gain(proxy(ctx)[:, -1], moved(ctx)[:, -1], eps)[0].numpy()
    params = list(proxy.parameters())
    grad_l = torch.autograd.grad(downstream_loss(proxy), params)
    exact = []
    for x in range(v):
        grad_x = torch.autograd.grad(torch.log_softmax(proxy(ctx)[0, -1], -1)[x], params)
        exact.append(sum(float((a * b).sum()) for a, b in zip(grad_l, grad_x, strict=True)))
    np.testing.assert_allclose(gain, exact, rtol=1e-3, atol=1e-6)
    # the central difference (Savani et al.'s Algorithm 1) agrees, more tightly
    lower = perturbed_proxy(proxy, downstream_loss, 1e-3, sign=-1)
    upper = perturbed_proxy(proxy, downstream_loss, 1e-3)
    with torch.no_grad():
        central = distillation_gain(lower(ctx)[:, -1], upper(ctx)[:, -1], 1e-3, central=True)
    np.testing.assert_allclose(central[0].numpy(), exact, rtol=1e-5, atol=1e-8)
    # and it predicts the actual loss change after one small SGD step on token x
    x = int(np.argmax(gain))
    eta = 1e-3
    step = perturbed_proxy(proxy, lambda m: torch.log_softmax(m(ctx)[0, -1], -1)[x], eta)
    with torch.no_grad():
        change = float(downstream_loss(step) - downstream_loss(proxy))
    assert change == pytest.approx(eta * exact[x], rel=0.05)


def test_hook_shifts_mass_towards_tokens_that_hurt_the_proxy():
    torch.manual_seed(1)
    v = 6
    teacher = torch.nn.Sequential(torch.nn.Embedding(v, 8), torch.nn.Linear(8, v))
    proxy = torch.nn.Sequential(torch.nn.Embedding(v, 8), torch.nn.Linear(8, v))
    ids = torch.tensor([[2], [5]])
    target = torch.tensor([0, 0])

    def loss(model):
        return torch.nn.functional.cross_entropy(model(ids)[:, -1], target)

    lower = perturbed_proxy(proxy, loss, 1e-3, sign=-1)
    upper = perturbed_proxy(proxy, loss, 1e-3)
    hook = AntidistillationHook(
        next_logits_fn(lower), next_logits_fn(upper), AntidistillationConfig(lam=0.5, eps=1e-3)
    )
    with torch.no_grad():
        t_logits = teacher(ids)[:, -1]
        plain = torch.softmax(t_logits, -1)
        poisoned = torch.softmax(hook(ids, t_logits), -1)
    # training on token 0 lowers the proxy's loss on target 0, so antidistillation avoids it
    assert (poisoned[:, 0] < plain[:, 0]).all()


def test_bad_config_is_a_user_error():
    with pytest.raises(UserError):
        AntidistillationConfig(eps=0)
    with pytest.raises(UserError):
        AntidistillationConfig(min_teacher_prob=2)
