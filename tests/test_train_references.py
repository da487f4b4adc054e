"""Training steps side by side with transcriptions of their reference code (issue 22).

Each ``_reference_*`` function below re-states, line for line in our own words, what the cited reference
repository does; hwsim's step runs on an identical copy of the same tiny model, inputs and seed, and the two
must agree to float precision. The models have BatchNorm, so the order of train-mode and eval-mode forwards
shows in the results.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwsim.train.algorithms import AttackSettings, create_algorithm, probe_pgd
from hwsim.train.config import make_config
from hwsim.train.bullettrain import BOUNDARY, OUTLIER, ROBUST, BulletTrain, classify
from hwsim.train.protocol import StepContext
from hwsim.train.sparse import prune_count

EPS, STEP, STEPS = 0.031, 0.007, 3


class TinyBN(nn.Module):
    """conv -> BN -> ReLU -> linear on 1x4x4 images, 3 classes."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(64, 3)
        with torch.no_grad():
            for p in self.parameters():  # fresh running statistics (0, 1) stay far from the batch's
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def _data(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


# -- TRADES and MART: the attack first ------------------------------------------------------------------

def _reference_trades(model, x, y, step_size, eps, steps, beta):
    """yaodongyu/TRADES ``trades.py`` ``trades_loss`` (l_inf): eval mode for the attack (KL, summed, against
    the clean softmax recomputed every step), then train mode: CE of model(x) + beta / B x summed KL of
    model(x') against a second forward of x."""
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn(x.shape)
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum")
        grad = torch.autograd.grad(kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    model.train()
    x_adv = x_adv.clamp(0.0, 1.0).detach()
    logits = model(x)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / len(x)) * F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1),
                                            reduction="sum")
    return loss_natural + beta * loss_robust, x_adv


def _reference_mart(model, x, y, step_size, eps, steps, beta):
    """YisenWang/MART ``mart.py`` ``mart_loss``: eval mode for the CE attack, then train mode: model(x), then
    model(x'); boosted CE + beta x KL weighted by 1.0000001 - p_y(x)."""
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn(x.shape)
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_ce = F.cross_entropy(model(x_adv), y)
        grad = torch.autograd.grad(loss_ce, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    model.train()
    x_adv = x_adv.clamp(0.0, 1.0).detach()
    logits = model(x)
    logits_adv = model(x_adv)
    adv_probs = F.softmax(logits_adv, dim=1)
    top2 = torch.argsort(adv_probs, dim=1)[:, -2:]
    new_y = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    loss_adv = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), new_y)
    nat_probs = F.softmax(logits, dim=1)
    true_probs = torch.gather(nat_probs, 1, y.unsqueeze(1).long()).squeeze()
    kl = F.kl_div(torch.log(adv_probs + 1e-12), nat_probs, reduction="none").sum(dim=1)
    loss_robust = (1.0 / len(x)) * torch.sum(kl * (1.0000001 - true_probs))
    return loss_adv + float(beta) * loss_robust, x_adv


@pytest.mark.parametrize("name, reference", [("trades", _reference_trades), ("mart", _reference_mart)])
def test_trades_and_mart_step_matches_the_reference_attack_first(name, reference) -> None:
    x, y = _data()
    ours, theirs = TinyBN().train(), TinyBN().train()
    torch.manual_seed(5)
    ref_loss, ref_adv = reference(theirs, x, y, STEP, EPS, STEPS, 6.0)
    ref_loss.backward()

    algorithm = create_algorithm(name, AttackSettings(EPS, STEP, STEPS, "eval"))
    seen = []
    perturb = algorithm.perturb
    algorithm.perturb = lambda *a, **k: seen.append(perturb(*a, **k)) or seen[-1]
    ctx = StepContext.local(ours)
    torch.manual_seed(5)
    loss = algorithm.loss(ctx, x, y)
    loss.backward()
    loss = loss.detach()
    assert ours.training  # the attack's eval mode is undone
    torch.testing.assert_close(seen[0], ref_adv, rtol=0, atol=1e-7)
    assert float(loss) == pytest.approx(float(ref_loss.detach()), rel=1e-6)
    for got, want in zip(_grads(ours), _grads(theirs)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    if name == "mart":  # the same train-mode forwards in the same order: x, then x'
        torch.testing.assert_close(ours.bn.running_mean, theirs.bn.running_mean)
        torch.testing.assert_close(ours.bn.running_var, theirs.bn.running_var)


def test_trades_clean_forward_before_the_attack_would_change_x_adv() -> None:
    """The check above can fail: had the clean train-mode forward run first (the order before issue 22), the
    attack would see updated BN running statistics and another x'."""
    x, y = _data()
    model, reference_model = TinyBN().train(), TinyBN().train()
    torch.manual_seed(5)
    _, ref_adv = _reference_trades(reference_model, x, y, STEP, EPS, STEPS, 6.0)
    model(x)  # one train-mode forward moves the running statistics
    torch.manual_seed(5)
    x_adv = create_algorithm("trades", AttackSettings(EPS, STEP, STEPS, "eval")).perturb(
        StepContext.local(model), x, y)
    assert float(((x_adv - ref_adv).abs() > 1e-6).float().mean()) > 0.1  # > 10% of the pixels of x' differ


# -- Free AT: clamp inside the graph, one persistent buffer ------------------------------------------------

class Lin(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.fc = nn.Linear(16, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(3, 16, generator=g))
            self.fc.bias.copy_(torch.randn(3, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _reference_free(model, batches, replays, eps, lr, batch_size):
    """mahyarnajibi/FreeAdversarialTraining ``main_free.py`` ``train``: one global noise buffer of the batch
    size; per replay, noise = buffer[:n] with grad, input + noise clamped in place (in the graph), forward,
    zero_grad, backward, buffer[:n] += fgsm_step x sign(noise.grad), buffer clamped to clip_eps, SGD step
    (fgsm_step = clip_eps = eps; normalisation is the identity here)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    noise_data = torch.zeros(batch_size, *batches[0][0].shape[1:])
    for x, y in batches:
        for _ in range(replays):
            noise_batch = noise_data[0:x.size(0)].clone().requires_grad_(True)
            in1 = x + noise_batch
            in1.clamp_(0, 1.0)
            loss = F.cross_entropy(model(in1), y)
            optimizer.zero_grad()
            loss.backward()
            noise_data[0:x.size(0)] += eps * torch.sign(noise_batch.grad)
            noise_data.clamp_(-eps, eps)
            optimizer.step()
    return noise_data


def _saturated_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(4)
    out = []
    for n in (4, 4, 3, 4):  # a smaller batch, then a full one again (the buffer's last row is kept)
        x = torch.rand(n, 1, 4, 4, generator=g)
        x = torch.where(x < 0.3, torch.zeros_like(x), torch.where(x > 0.7, torch.ones_like(x), x))
        out.append((x, torch.randint(0, 3, (n,), generator=g)))
    return out


def test_free_matches_the_reference_at_saturated_pixels_and_across_a_smaller_batch() -> None:
    batches, eps, lr = _saturated_batches(), 0.1, 0.2
    theirs, ours = Lin(), Lin()
    ref_delta = _reference_free(theirs, batches, 3, eps, lr, 4)
    free = create_algorithm("free", AttackSettings(eps=eps), replays=3)
    ctx = StepContext.local(ours, torch.optim.SGD(ours.parameters(), lr=lr))
    for x, y in batches:
        free.train_step(ctx, x, y)
    torch.testing.assert_close(free.delta, ref_delta, rtol=0, atol=1e-7)
    torch.testing.assert_close(ours.fc.weight, theirs.fc.weight, rtol=1e-6, atol=1e-6)
    # the case exercises both differences: saturated pixels (x + delta outside [0, 1]) and a kept last row
    x0 = batches[0][0]
    assert bool(((x0 + ref_delta) > 1).any() or ((x0 + ref_delta) < 0).any())
    assert bool(ref_delta[3].abs().sum() > 0)


def test_free_delta_does_not_move_where_the_clamp_cuts_the_gradient() -> None:
    """One replay by hand: x = 1 with delta = +eps leaves [0, 1], so its gradient is 0 and delta stays."""
    free = create_algorithm("free", AttackSettings(eps=0.1), replays=1)
    model = Lin()
    x = torch.full((1, 1, 4, 4), 0.5)
    x[0, 0, 0, 3] = 1.0
    y = torch.tensor([0])
    free.delta = torch.full_like(x, 0.1)
    free.train_step(StepContext.local(model, torch.optim.SGD(model.parameters(), lr=0.0)), x, y)
    with torch.no_grad():  # d CE / d x = W^T (softmax(z) - onehot(y)) at the clamped image (lr 0: W unchanged)
        w, b = Lin().fc.weight, Lin().fc.bias
        z = (x + 0.1).clamp(0, 1).flatten(1) @ w.T + b
        g = ((F.softmax(z, 1) - F.one_hot(y, 3)) @ w).view_as(x)
    assert float(torch.sign(g[0, 0, 0, 3])) == -1.0  # the clamped image's gradient would move this pixel to 0
    want = (0.1 + 0.1 * torch.sign(g)).clamp(-0.1, 0.1)
    want[0, 0, 0, 3] = 0.1  # x + delta = 1.1 is outside [0, 1]: gradient 0, delta stays
    torch.testing.assert_close(free.delta, want)


class NaNOnce(Lin):
    """The input gradient of its first backward is not finite (as in a step the AMP grad scaler skips): inf,
    whose sign (+1, finite) would move delta by eps, and NaN (sign 0 in torch, NaN where it propagates)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1 and x.requires_grad:
            x.register_hook(lambda grad: torch.full_like(grad, float("inf")).index_fill_(0, torch.tensor([0]),
                                                                                        float("nan")))
        return super().forward(x)


def test_free_keeps_delta_finite_after_a_non_finite_input_gradient() -> None:
    model = NaNOnce()
    free = create_algorithm("free", AttackSettings(eps=0.1), replays=2)
    x, y = _data(3)
    free.train_step(StepContext.local(model, torch.optim.SGD(model.parameters(), lr=0.0)), x, y)
    assert bool(torch.isfinite(free.delta).all())
    # the first replay left delta at 0; the second moved every pixel by eps (no pixel saturates from 0 < x < 1)
    reference = Lin()
    noise = torch.zeros_like(x, requires_grad=True)
    F.cross_entropy(reference((x + noise).clamp(0, 1)), y).backward()
    torch.testing.assert_close(free.delta, 0.1 * torch.sign(noise.grad))


# -- Fast AT: the shipped early-stop rule -----------------------------------------------------------------

def _reference_probe_accuracy(model, x, y, eps, alpha, iters):
    """locuslab/fast_adversarial ``CIFAR10/train_fgsm.py`` (after each epoch, model still in train mode) with
    ``attack_pgd(model, X, y, epsilon, pgd_alpha, 5, 1)`` of ``CIFAR10/utils.py``: uniform start clamped to the
    image range; per iteration only the still-correct samples move; stop when none is; then the accuracy of
    model(X + delta) (no grad), a fraction."""
    delta = torch.zeros_like(x).uniform_(-eps, eps)
    delta = torch.max(torch.min(delta, 1 - x), 0 - x)
    delta.requires_grad = True
    for _ in range(iters):
        output = model(x + delta)
        index = torch.where(output.max(1)[1] == y)
        if len(index[0]) == 0:
            break
        F.cross_entropy(output, y).backward()
        grad = delta.grad.detach()
        d, g = delta[index[0]], grad[index[0]]
        d = torch.clamp(d + alpha * torch.sign(g), -eps, eps)
        d = torch.max(torch.min(d, 1 - x[index[0]]), 0 - x[index[0]])
        delta.data[index[0]] = d
        delta.grad.zero_()
    with torch.no_grad():
        output = model(torch.clamp(x + delta, 0, 1))
    return (output.max(1)[1] == y).sum().item() / y.size(0)


def test_fast_probe_is_the_reference_train_mode_pgd_on_the_current_epochs_first_batch() -> None:
    fast = create_algorithm("fast", AttackSettings(eps=0.3, step_size=0.1, steps=1, mode="train"), early_stop=True)
    model = TinyBN().train()
    ctx = StepContext.local(model, torch.optim.SGD(model.parameters(), lr=0.0))
    batches = [_data(8, seed) for seed in (10, 11, 12)]
    ctx.new_epoch(1)
    fast.loss(ctx, *batches[0])
    ctx.new_epoch(2)
    fast.loss(ctx, *batches[1])
    fast.loss(ctx, *batches[2])
    assert torch.equal(fast.probe[0], batches[1][0])  # epoch 2's first batch, not the run's first
    reference_model = copy.deepcopy(model)
    torch.manual_seed(9)
    want = _reference_probe_accuracy(reference_model, *batches[1], 0.3, 0.1, 5)
    torch.manual_seed(9)
    metrics = fast.end_epoch(ctx, 2)
    assert metrics["probe_pgd_acc"] == pytest.approx(100 * want)
    assert model.training  # the probe ran in, and left the model in, train mode
    torch.testing.assert_close(model.bn.running_mean, reference_model.bn.running_mean)  # train-mode forwards
    torch.manual_seed(9)
    model.eval()
    x_eval = probe_pgd(model, *batches[1], 0.3, 0.1, 5)
    with torch.no_grad():
        eval_acc = float((model(x_eval).argmax(1) == batches[1][1]).float().mean())
    assert eval_acc != pytest.approx(want)  # an eval-mode probe would see another accuracy here


@pytest.mark.parametrize("previous", [None, 0.0, 1.0])
def test_fast_end_epoch_stops_on_a_drop_of_more_than_twenty_points(previous) -> None:
    fast = create_algorithm("fast", AttackSettings(eps=0.3, step_size=0.1, steps=1, mode="train"), early_stop=True)
    model = TinyBN().train()
    ctx = StepContext.local(model)
    ctx.new_epoch(1)
    fast.loss(ctx, *_data(8, 10))
    torch.manual_seed(9)
    acc = _reference_probe_accuracy(copy.deepcopy(model), *_data(8, 10), 0.3, 0.1, 5)
    assert acc < 0.8  # so that a previous 100% is a drop of more than 20 points
    fast.probe_acc = previous
    torch.manual_seed(9)
    fast.end_epoch(ctx, 1)
    assert (ctx.stop_reason is not None) == (previous == 1.0)
    assert fast.probe_acc == acc


@pytest.mark.parametrize("previous", [0.8, 0.75, 0.7999, 0.6, 1.0])
def test_fast_end_epoch_compares_fractions_as_the_reference(previous) -> None:
    """``robust_acc - prev_robust_acc < -0.2`` on fractions (train_fgsm.py): 3/5 after 4/5 is
    0.6 - 0.8 = -0.20000000000000007, a stop there, where points (60 < 80 - 20) said no."""
    fast = create_algorithm("fast", AttackSettings(eps=0.0, step_size=0.0, steps=1, mode="train"), early_stop=True)
    model = Lin()
    ctx = StepContext.local(model)
    x, _ = _data(5, 2)
    with torch.no_grad():
        y = model(x).argmax(1)  # eps 0: the probe accuracy is the clean one
    y[:2] = (y[:2] + 1) % 3  # 3 of 5 correct
    ctx.new_epoch(1)
    fast.loss(ctx, x, y)
    fast.probe_acc = previous
    metrics = fast.end_epoch(ctx, 1)
    assert metrics["probe_pgd_acc"] == pytest.approx(60.0) and fast.probe_acc == 3 / 5
    assert (ctx.stop_reason is not None) == (3 / 5 - previous < -0.2)  # the reference's line
    assert (ctx.stop_reason is not None) == (previous in (0.8, 1.0))


# -- Sparse learning: the prune count ----------------------------------------------------------------------

def test_prune_count_is_the_reference_ceil_of_the_float_product() -> None:
    """TimDettmers/sparse_learning ``funcs.py`` ``magnitude_prune`` and ``core.py``: num_remove =
    math.ceil(prune_rate * nonzeros)."""
    assert prune_count(0.07, 100) == 8  # 0.07 * 100 = 7.000000000000001 in floats; ceil(7 - 1e-9) gave 7
    assert prune_count(0.001, 1000) == 1  # exactly 1.0 in floats (the binary 0.001 times 1000 exceeds 1)
    for p in (0.0, 0.07, 0.1, 0.25, 0.3, 0.5, 0.0611, 0.49999):
        for active in (0, 1, 7, 13, 100, 333, 1000, 4097):
            num_remove = math.ceil(p * active)  # the reference's line
            assert prune_count(p, active) == num_remove


# -- BulletTrain at F_R = 0 ------------------------------------------------------------------------------

def test_bullettrain_at_zero_robust_fraction_classes_nothing_robust() -> None:
    # identical logits, all correct: F_R = 0 (the start of training) means no robust sample, so every sample
    # gets N_B steps; the literal percentile reading would give the whole batch N_R steps
    logits = torch.tensor([[2.0, 0.0, 0.0]] * 4)
    y = torch.zeros(4, dtype=torch.long)
    assert classify(logits, y, 0.0).tolist() == [BOUNDARY] * 4
    bt = BulletTrain(k=10, n_r=1)
    plan = bt.allocate(logits, y, 1.0, AttackSettings(eps=0.031, step_size=0.007, steps=10))
    assert [(len(rows), steps) for rows, steps, _ in plan] == [(0, 0), (4, 10), (0, 1)]
    # distinct values: at F_R = 0 the most confident sample is a boundary one too; outliers stay outliers
    logits = torch.tensor([[5.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    assert classify(logits, torch.zeros(3, dtype=torch.long), 0.0).tolist() == [BOUNDARY, BOUNDARY, OUTLIER]
    # above zero the percentile rule holds: F_R = 0.5 over SVar (v0 > v1 > -v2): threshold = median = v1
    assert classify(logits, torch.zeros(3, dtype=torch.long), 0.5).tolist() == [ROBUST, ROBUST, OUTLIER]


# -- defaults from the papers ------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["trades", "mart"])
def test_trades_and_mart_default_to_their_papers_attack(algorithm) -> None:
    """yaodongyu/TRADES ``train_trades_cifar10.py`` and YisenWang/MART ``train_wideresnet.py``: --epsilon 0.031,
    --num-steps 10, --step-size 0.007 (the TRADES and MART papers' CIFAR-10 setting)."""
    config = make_config({"algorithm": algorithm})
    assert (config.eps, config.step_size, config.attack_steps) == (0.031, 0.007, 10)
    assert make_config({"algorithm": algorithm, "bullettrain": True}).bt_steps == (0, 10, 1)  # N_B = the paper's k
    given = make_config({"algorithm": algorithm, "eps": "8/255", "attack_steps": 7, "step_size": "2/255"})
    assert (given.eps, given.step_size, given.attack_steps) == (8 / 255, 2 / 255, 7)
    oat = make_config({"algorithm": algorithm, "step_size": "oat"})  # OAT's rule over the paper's eps and k
    assert oat.step_size == pytest.approx(min(1.25 * 0.031, 0.031 + 4 / 255) / 10)
    plain = make_config({"algorithm": "pgd-at"})  # the others keep FLOAT's PGD-7 at 8/255, step 2/255
    assert (plain.eps, plain.step_size, plain.attack_steps) == (8 / 255, 2 / 255, 7)
