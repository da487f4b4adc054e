"""Attacks: eps ball and [0, 1] range, monotone PGD trace, FGSM = one PGD step, agreement with ART."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwsim.errors import HwsimError
from hwsim.train.attacks import (apgd, attack_context, cw_margin_loss, cw_pgd, dlr_loss, eot_gradient, fgsm,
                                  oat_step_size, pgd)
from hwsim.train.evaluate import art_apgd, art_pgd

EPS = 8 / 255


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, 10))


def batch(n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_pgd_stays_in_eps_ball_and_image_range(loss: str) -> None:
    model = tiny_net().eval()
    x, y = batch()
    x_adv = pgd(model, x, y, eps=EPS, step_size=3 / 255, steps=5, loss=loss)
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > EPS / 2  # it actually moved


def test_pgd_loss_trace_is_non_decreasing_in_eval_mode() -> None:
    # A linear model: the CE loss is convex in x, so a small signed step never lowers it.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x, y = batch()
    trace: list[float] = []
    pgd(model, x, y, eps=EPS, step_size=0.5 / 255, steps=10, random_start=False, trace=trace)
    assert len(trace) == 10
    assert all(b >= a - 1e-5 for a, b in zip(trace, trace[1:])), trace
    assert trace[-1] > trace[0] + 1e-3


def test_fgsm_equals_one_pgd_step_of_size_eps() -> None:
    model = tiny_net().eval()
    x, y = batch()
    expected = pgd(model, x, y, eps=EPS, step_size=EPS, steps=1, random_start=False)
    assert torch.equal(fgsm(model, x, y, eps=EPS), expected)
    # every pixel that is not clipped moved by exactly eps
    inside = (expected > 0) & (expected < 1)
    assert torch.allclose((expected - x).abs()[inside], torch.full_like(x[inside], EPS), atol=1e-6)


def test_attack_leaves_mode_and_param_flags_alone() -> None:
    model = tiny_net().train()
    x, y = batch()
    pgd(model, x, y, steps=2)
    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    with attack_context(model, "eval"):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_cw_margin_and_oat_step() -> None:
    logits = torch.tensor([[2.0, 5.0, 1.0], [0.0, -1.0, 3.0], [0.0, 80.0, 1.0]])
    # -max(z_y - max_other + 50, 0): correct by 3 -> -53; wrong by 3 -> -47; wrong by 80 -> 0 (stops)
    assert cw_margin_loss(logits, torch.tensor([1, 0, 0])).tolist() == [-53.0, -47.0, 0.0]
    assert oat_step_size(8 / 255, 7) == pytest.approx(10 / 255 / 7)  # 1.25 eps < eps + 4/255
    assert oat_step_size(16 / 255, 10) == pytest.approx(20 / 255 / 10)  # eps + 4/255 is the smaller
    with pytest.raises(HwsimError, match="unknown attack loss"):
        pgd(tiny_net(), *batch(), loss="l2")


def _train_tiny(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _quadrant_model(n: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Separable data (class = which quadrant is brightest) and a tiny CNN trained on it, so that a trained
    model has a non-trivial RA."""
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 3, 8, 8, generator=g) * 0.5
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 0.08
    torch.manual_seed(0)
    model = _train_tiny(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                      nn.Flatten(), nn.Linear(32, 4)), x, y)
    return model, x, y


def test_our_pgd_agrees_with_art_within_one_point() -> None:
    model, x, y = _quadrant_model(400)
    torch.manual_seed(0)
    ours = (model(pgd(model, x, y, eps=EPS, step_size=2 / 255, steps=10)).argmax(1) == y).float().mean()
    theirs = (model(art_pgd(model, x, y, eps=EPS, step_size=2 / 255, steps=10)).argmax(1) == y).float().mean()
    clean = (model(x).argmax(1) == y).float().mean()
    assert clean > 0.9 and 0.2 < ours < clean - 0.2  # the attack is meaningful on this model
    assert abs(float(ours - theirs)) * 100 <= 1.0


def test_cw_pgd_is_pgd_on_the_margin() -> None:
    model = tiny_net().eval()
    x, y = batch()
    torch.manual_seed(5)
    a = cw_pgd(model, x, y, steps=3)
    torch.manual_seed(5)
    b = pgd(model, x, y, steps=3, loss="cw")
    assert torch.equal(a, b)


def test_cw_gradient_matches_hand_computed_one() -> None:
    # z = A x: d loss / d x = A[j*] - A[y] (j* the strongest other class) while z_y - z_j* + 50 > 0, else 0.
    a = torch.tensor([[30.0, 0.0, 0.0, 0.0], [0.0, 30.0, 0.0, 0.0], [0.0, 0.0, 30.0, -10.0]])
    model = nn.Linear(4, 3, bias=False)
    model.weight.data.copy_(a)
    x = torch.tensor([[3.0, 0.5, 0.0, 0.0],    # class 0 correct by 75 (> 50: the old clamp gave no gradient)
                      [1.0, 1.2, 0.0, 0.0],    # class 0 wrong by 6: still pushed
                      [0.0, 4.0, 0.0, 0.0]])   # class 0 wrong by 120 (> 50): stops
    y = torch.tensor([0, 0, 0])
    grad, value = eot_gradient(model, x, y, loss="cw")
    expected = torch.stack([a[1] - a[0], a[1] - a[0], torch.zeros(4)])
    assert torch.equal(grad, expected)
    assert value.tolist() == [-125.0, -44.0, 0.0]


def test_dlr_loss_is_scale_and_shift_invariant() -> None:
    logits = torch.tensor([[4.0, 1.0, 0.0, 2.0]])
    y = torch.tensor([0])
    # -(4 - 2) / (4 - 1)
    assert dlr_loss(logits, y).item() == pytest.approx(-2 / 3)
    assert dlr_loss(3 * logits + 7, y).item() == pytest.approx(-2 / 3)


class GradientNoiseNet(nn.Module):
    """A two-class linear model whose forward adds a tiny random term with a huge random input gradient.

    Logit margin ``w.(x - 0.5) + a sum_i e_i sin(omega x_i)``, ``e ~ N(0, 1)`` drawn at every forward: the
    values move by ~1e-3 but each input gradient coordinate carries noise ``a omega e_i cos(omega x_i)``
    about 7x the signal ``w_i = +-1``, so a one-draw signed gradient is nearly a coin flip per pixel while the
    mean over many draws points along ``w``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w", torch.randint(0, 2, (dim,), generator=g).float() * 2 - 1)
        self.a, self.omega = 1e-4, 1e5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        e = torch.randn(flat.shape[1], device=x.device)
        margin = (flat - 0.5) @ self.w + self.a * (e * torch.sin(self.omega * flat)).sum(1)
        return torch.stack([torch.zeros_like(margin), margin], 1)


def test_eot_breaks_a_randomised_model_that_one_draw_pgd_does_not() -> None:
    dim, eps = 48, 0.1
    model = GradientNoiseNet(dim)
    # images whose clean margin is 0.6 of what a perfect eps-attack removes (dim * eps)
    g = torch.Generator().manual_seed(1)
    x = (0.5 + 0.25 * torch.rand(64, dim, generator=g) * model.w).clamp(0, 1)
    shift = (0.6 * dim * eps - (x - 0.5) @ model.w) / dim
    x = (x + shift[:, None] * model.w).clamp(0.2, 0.8)
    y = torch.ones(64, dtype=torch.long)
    assert bool((model(x).argmax(1) == 1).all())

    def robust(eot: int) -> float:
        torch.manual_seed(0)
        x_adv = pgd(model, x, y, eps=eps, step_size=eps / 4, steps=10, eot=eot)
        return float((model(x_adv).argmax(1) == y).float().mean())

    one, averaged = robust(1), robust(100)
    assert one >= 0.9  # the single-draw attack leaves almost every sample correct
    assert averaged <= 0.1  # the EOT attack breaks almost all of them


def test_apgd_agrees_with_art_and_beats_fgsm_on_a_trained_model() -> None:
    model, x, y = _quadrant_model(200)
    acc = lambda images: float((model(images).argmax(1) == y).float().mean()) * 100
    torch.manual_seed(0)
    x_adv = apgd(model, x, y, eps=EPS, steps=100, loss="ce")
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    ours, theirs = acc(x_adv), acc(art_apgd(model, x, y, eps=EPS, loss="cross_entropy"))
    assert 10 < ours < acc(x) - 20  # meaningful on this model
    assert abs(ours - theirs) <= 3.0
    assert ours <= acc(fgsm(model, x, y, eps=EPS)) + 1.0
