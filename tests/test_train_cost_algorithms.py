"""Fast, Free, TRADES, MART and BulletTrain against hand-computed cases; the training-cost ledger's counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwsim.train.algorithms import AttackSettings, create_algorithm
from hwsim.train.bullettrain import BOUNDARY, OUTLIER, ROBUST, BulletTrain, classify, theoretical_speedup
from hwsim.train.losses import mart_loss, trades_loss
from hwsim.train.protocol import StepContext
from models import create_model

EPS = 0.1


class Linear(nn.Module):
    """f(x) = W vec(x) + b on 1x2x2 images: gradients we can write down."""

    def __init__(self, weight: list[list[float]], bias: list[float]) -> None:
        super().__init__()
        self.fc = nn.Linear(4, len(bias))
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(weight))
            self.fc.bias.copy_(torch.tensor(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


W = [[1.0, -2.0, 0.5, 0.0], [-1.0, 1.0, 0.0, 2.0], [0.5, 0.5, -1.0, -0.5]]
B = [0.1, -0.2, 0.0]
X = torch.tensor([[[[0.2, 0.9], [0.5, 0.05]]], [[[0.7, 0.3], [0.0, 1.0]]]])
Y = torch.tensor([0, 2])


def _input_grad_sign(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """sign of d CE / dx for the linear model: W^T (softmax(Wx + b) - onehot(y)), per sample."""
    z = x @ weight.T + bias
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return np.sign(p @ weight)


def test_fast_is_fgsm_from_a_uniform_start_with_step_one_and_a_quarter_eps() -> None:
    model = Linear(W, B)
    fast = create_algorithm("fast", AttackSettings(eps=EPS, step_size=0.01, steps=7))
    torch.manual_seed(3)
    x_adv = fast.perturb(StepContext.local(model), X, Y)
    torch.manual_seed(3)
    start = (X + torch.empty_like(X).uniform_(-EPS, EPS)).clamp(0, 1).flatten(1).numpy()
    x = X.flatten(1).numpy()
    step = start + 1.25 * EPS * _input_grad_sign(np.array(W), np.array(B), start, Y.numpy())
    want = np.clip(np.clip(step, x - EPS, x + EPS), 0, 1)
    np.testing.assert_allclose(x_adv.flatten(1).numpy(), want, atol=1e-6)
    assert not np.allclose(want, np.clip(x + 1.25 * EPS * _input_grad_sign(np.array(W), np.array(B), x, Y.numpy()),
                                         0, 1))  # the random start matters for this case


def test_free_replays_update_weights_and_the_persistent_perturbation_as_by_hand() -> None:
    model = Linear(W, B)
    lr = 0.5
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    free = create_algorithm("free", AttackSettings(eps=EPS), replays=2)
    ctx = StepContext.local(model, optimizer)
    free.train_step(ctx, X, Y)
    free.train_step(ctx, X, Y)  # a second batch starts from the delta the first left (it persists)
    weight, bias, delta = np.array(W), np.array(B), np.zeros((2, 4))
    x = X.flatten(1).numpy()
    for _ in range(4):  # one forward/backward per replay: weight step and delta step from the same gradient
        xa = np.clip(x + delta, 0, 1)
        z = xa @ weight.T + bias
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(2), Y.numpy()] -= 1
        g = p / 2  # mean over the batch
        grad_x, grad_w, grad_b = g @ weight, g.T @ xa, g.sum(0)
        delta = np.clip(delta + EPS * np.sign(grad_x), -EPS, EPS)
        weight, bias = weight - lr * grad_w, bias - lr * grad_b
    np.testing.assert_allclose(model.fc.weight.detach().numpy(), weight, atol=1e-6)
    np.testing.assert_allclose(model.fc.bias.detach().numpy(), bias, atol=1e-6)
    np.testing.assert_allclose(free.delta.flatten(1).numpy(), delta, atol=1e-7)
    assert ctx.ledger.totals() == {"fwd_passes": 8, "bwd_passes": 8, "attack_fwd_passes": 0,
                                   "attack_bwd_passes": 0, "optimizer_steps": 4}
    assert free.loop_epochs(10) == 5 and create_algorithm("free", AttackSettings(), replays=8).loop_epochs(10) == 2


CLEAN = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, 0.5]])
ADV = torch.tensor([[0.5, 1.5, 0.0], [1.0, 0.0, 0.2]])
LABELS = torch.tensor([0, 2])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_trades_loss_by_hand() -> None:
    p, q = _softmax(CLEAN.numpy().astype(np.float64)), _softmax(ADV.numpy().astype(np.float64))
    ce = -np.log(p[[0, 1], [0, 2]]).mean()
    kl = (p * np.log(p / q)).sum(1).mean()
    assert float(trades_loss(CLEAN, ADV, LABELS, beta=6.0)) == pytest.approx(ce + 6 * kl, rel=1e-6)
    assert float(trades_loss(CLEAN, CLEAN, LABELS, beta=6.0)) == pytest.approx(ce, rel=1e-6)


def test_mart_loss_by_hand() -> None:
    p, q = _softmax(CLEAN.numpy().astype(np.float64)), _softmax(ADV.numpy().astype(np.float64))
    # boosted CE on x': CE(q, y) - log(1 - the largest wrong-class probability)
    ce_adv = -np.log(q[[0, 1], [0, 2]])
    runner_up = np.array([q[0, 1], q[1, 0]])  # sample 0: class 1 beats 0; sample 1: class 0 is the top wrong one
    bce = (ce_adv - np.log(1.0001 - runner_up)).mean()
    kl = (p * (np.log(p + 1e-12) - np.log(q + 1e-12))).sum(1)
    weighted = (kl * (1.0000001 - p[[0, 1], [0, 2]])).mean()
    assert float(mart_loss(CLEAN, ADV, LABELS, beta=6.0)) == pytest.approx(bce + 6 * weighted, rel=1e-5)


def test_bullettrain_classification_allocation_and_fr_update() -> None:
    # correct and confident (robust), correct and unsure (boundary), wrong (outlier)
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.6, 0.5, 0.4], [3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.9, 0.0]])
    y = torch.tensor([0, 0, 0, 0, 0])
    probs = _softmax(logits.numpy().astype(np.float64))
    sign = np.where(probs.argmax(1) == 0, 1.0, -1.0)
    svar = sign * probs.var(1)
    for f_r in (0.4, 0.8):
        threshold = np.quantile(svar, 1 - f_r)
        want = np.where(svar < 0, OUTLIER, np.where(svar < threshold, BOUNDARY, ROBUST))
        assert classify(logits, y, f_r).tolist() == want.tolist()
    # F_R = 0 (the estimate's start): no robust sample (the literal percentile would class the top one robust)
    assert classify(logits, y, 0.0).tolist() == np.where(svar < 0, OUTLIER, BOUNDARY).tolist()
    assert classify(logits, y, 0.4).tolist() == [ROBUST, BOUNDARY, ROBUST, OUTLIER, BOUNDARY]
    bt = BulletTrain(k=7, n_r=2)
    attack = AttackSettings(eps=0.03, step_size=0.007, steps=7)
    bt.f_r["1"] = 0.4
    plan = bt.allocate(logits, y, 1.0, attack)
    assert [(rows.tolist(), steps) for rows, steps, _ in plan] == [([3], 0), ([1, 4], 7), ([0, 2], 2)]
    assert plan[1][2] == pytest.approx(0.007) and plan[2][2] == pytest.approx(1.7 * 0.03 / 2)
    bt.observe(logits, y, 1.0)  # 4 of 5 correct
    assert bt.f_r["1"] == pytest.approx(0.9 * 0.4 + 0.1 * 0.8 * 0.8)
    metrics = bt.end_epoch(StepContext.local(Linear(W, B)), 1)
    assert (metrics["bt_f_o"], metrics["bt_f_b"], metrics["bt_f_r"]) == (0.2, 0.4, 0.4)
    assert metrics["bt_theoretical_speedup"] == pytest.approx(8 / (0.4 * 7 + 0.4 * 2 + 1))
    assert theoretical_speedup(0.0, 1.0, 0.0, 10, 0, 10, 1) == 1.0


@pytest.mark.parametrize("algorithm", ["pgd-at", "trades", "mart"])
def test_a_batch_of_outliers_costs_no_attack_pass(algorithm: str) -> None:
    model = Linear(W, [0.0, 0.0, 50.0])  # predicts class 2 for everything
    y = torch.tensor([0, 1])
    alg = create_algorithm(algorithm, AttackSettings(eps=EPS, step_size=0.02, steps=5))
    ctx = StepContext.local(model, hooks=())
    bt = BulletTrain(k=5)
    bt.setup(ctx)
    ctx.hooks = [alg, bt]
    alg.train_step(ctx, X, y)
    totals = ctx.ledger.totals()
    assert totals["attack_fwd_passes"] == totals["attack_bwd_passes"] == 0
    assert bt.counts == [2, 0, 0]
    if algorithm == "pgd-at":  # no clean logits with gradients: one no-grad forward to classify, one to train
        assert (totals["fwd_passes"], totals["bwd_passes"]) == (4, 2)
    else:  # the clean forward classifies and its logits stand in for the adversarial ones
        assert (totals["fwd_passes"], totals["bwd_passes"]) == (2, 2)


def _ledger(algorithm: str, variant: str, batch: int, **options) -> tuple[dict, StepContext]:
    torch.manual_seed(0)
    model = create_model("small_cnn", variant).train()
    ctx = StepContext.local(model)
    x, y = torch.rand(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    alg = create_algorithm(algorithm, AttackSettings(steps=3), **options)
    alg.train_step(ctx, x, y)
    return ctx.ledger.totals(), ctx


def test_ledger_counts_exactly_per_algorithm(one_thread) -> None:
    k, b = 3, 12
    assert _ledger("pgd-at", "base", b)[0] == {"fwd_passes": (k + 1) * b, "bwd_passes": (k + 1) * b,
                                               "attack_fwd_passes": k * b, "attack_bwd_passes": k * b,
                                               "optimizer_steps": 1}
    assert _ledger("pgd-at", "base", b, lambda_=0.5)[0]["fwd_passes"] == (k + 2) * b
    half = b // 2  # float: clean half, attacked half
    assert _ledger("float", "float", b)[0] == {"fwd_passes": half + (k + 1) * half, "bwd_passes": half + (k + 1) * half,
                                               "attack_fwd_passes": k * half, "attack_bwd_passes": k * half,
                                               "optimizer_steps": 1}
    adv = b - math.ceil(b / 6)  # oat: every sample clean, those with lambda > 0 attacked too
    assert _ledger("oat", "oat", b)[0] == {"fwd_passes": b + (k + 1) * adv, "bwd_passes": b + (k + 1) * adv,
                                           "attack_fwd_passes": k * adv, "attack_bwd_passes": k * adv,
                                           "optimizer_steps": 1}
    assert _ledger("fast", "base", b)[0] == {"fwd_passes": 2 * b, "bwd_passes": 2 * b, "attack_fwd_passes": b,
                                             "attack_bwd_passes": b, "optimizer_steps": 1}
    assert _ledger("free", "base", b, replays=4)[0] == {"fwd_passes": 4 * b, "bwd_passes": 4 * b,
                                                        "attack_fwd_passes": 0, "attack_bwd_passes": 0,
                                                        "optimizer_steps": 4}
    # trades: the clean forward, the attack's clean probabilities (no backward), k attack steps, x' forward
    assert _ledger("trades", "base", b)[0] == {"fwd_passes": (k + 3) * b, "bwd_passes": (k + 2) * b,
                                               "attack_fwd_passes": (k + 1) * b, "attack_bwd_passes": k * b,
                                               "optimizer_steps": 1}
    totals, ctx = _ledger("pgd-at", "base", b)
    assert ctx.ledger.train_macs({1.0: 1000}) == (totals["fwd_passes"] + 2 * totals["bwd_passes"]) * 1000


def test_bullettrain_ledger_is_the_sum_of_its_allocation(one_thread) -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", "base").train()
    ctx = StepContext.local(model)
    alg = create_algorithm("trades", AttackSettings(steps=4))
    bt = BulletTrain(k=4, n_r=2)
    bt.setup(ctx)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    bt.f_r["1"] = 0.5
    alg.train_step(ctx, x, y)
    n_o, n_b, n_r = bt.counts
    assert n_o + n_b + n_r == 16
    attacked = n_b + n_r  # every row with steps: one KL-reference forward, its steps, one training forward
    totals = ctx.ledger.totals()
    assert totals["attack_bwd_passes"] == 4 * n_b + 2 * n_r
    assert totals["attack_fwd_passes"] == 4 * n_b + 2 * n_r + attacked
    assert totals["fwd_passes"] == 16 + totals["attack_fwd_passes"] + attacked
    assert totals["bwd_passes"] == 16 + totals["attack_bwd_passes"] + attacked


def test_training_cost_table_pairs_a_bullettrain_run_with_the_run_it_accelerates(tmp_path) -> None:
    import json

    from hwsim.report.training import training_cost

    def run(name: str, bullettrain: bool, seconds: float, passes: int, speedup: float | None = None) -> str:
        d = tmp_path / name
        d.mkdir()
        config = {"model": "small_cnn", "variant": "base", "algorithm": "pgd-at", "dataset": "mnist", "eps": 0.3,
                  "attack_steps": 7, "bullettrain": bullettrain}
        (d / "config.json").write_text(json.dumps(config))
        line = {"epoch": 1, "epoch_time_s": seconds, "images": 100, "fwd_passes": passes, "bwd_passes": passes,
                "attack_fwd_passes": passes - 100, "attack_bwd_passes": passes - 100, "optimizer_steps": 4,
                "train_macs": 3 * passes * 10, "ca": 90.0, "ra": 60.0}
        if speedup is not None:
            line["bt_theoretical_speedup"] = speedup
        (d / "metrics.jsonl").write_text(json.dumps(line) + "\n" + json.dumps({**line, "epoch": 2}) + "\n")
        return str(d)

    table = training_cost([run("plain", False, 8.0, 800), run("bt", True, 4.0, 300, 2.5)]).set_index("run_name")
    other = json.loads((tmp_path / "plain" / "config.json").read_text()) | {"eps": 0.1}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps(other))
    (tmp_path / "other" / "metrics.jsonl").write_text((tmp_path / "plain" / "metrics.jsonl").read_text())
    alone = training_cost([str(tmp_path / "other"), str(tmp_path / "bt")]).set_index("run_name")
    assert alone.loc["bt", "baseline_run"] == "" and math.isnan(alone.loc["bt", "measured_speedup"])
    assert table.loc["plain", "passes_per_image"] == 16.0 and table.loc["plain", "attack_passes_per_image"] == 14.0
    assert table.loc["bt", "measured_speedup"] == 2.0 and table.loc["bt", "pass_speedup"] == pytest.approx(16 / 6)
    assert table.loc["bt", "baseline_run"] == "plain" and table.loc["bt", "bt_theoretical_speedup"] == 2.5
    assert table.loc["plain", "train_macs_per_epoch"] == 24000 and math.isnan(table.loc["plain", "measured_speedup"])
