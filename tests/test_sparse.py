"""Sparse learning (FLOATS): exact prune/regrow on hand-set states, Eq. 5 after every step, channel masks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from hwsim.train.algorithms import AttackSettings, create_algorithm
from hwsim.train.config import make_config
from hwsim.train.protocol import StepContext
from hwsim.train.sparse import SparseLearning, prune_rate
from hwsim.train.trainer import train
from models import create_model


class Masked(nn.Module):
    def __init__(self, weight: list[float], mask: list[float], shape: tuple[int, ...]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight).view(shape))
        self.register_buffer("weight_mask", torch.tensor(mask).view(shape))


def _two_layers(a: Masked, b: Masked) -> nn.Module:
    model = nn.Module()
    model.a, model.b = a, b
    return model


def test_irregular_prune_regrow_on_hand_set_momentum() -> None:
    model = _two_layers(Masked([0.9, -0.1, 0.5, 0.0], [1, 1, 1, 0], (2, 2, 1, 1)),
                        Masked([0.2, 0.8, -0.3, 0.05, 0.0, 0.0], [1, 1, 1, 1, 0, 0], (2, 3, 1, 1)))
    sparse = SparseLearning(density=0.7, granularity="irregular")
    sparse.attach(model)
    assert sparse.budget == 7  # floor(0.7 x 10 prunable weights)
    sparse.momentum["a"].copy_(torch.tensor([0.1, 0.1, 0.1, 0.9]).view(2, 2, 1, 1))
    sparse.momentum["b"].copy_(torch.tensor([0.3, -0.3, 0.3, 0.3, 0.5, 0.2]).view(2, 3, 1, 1))
    # shares from mean |momentum| of active weights: a 0.1, b 0.3 -> 1/4, 3/4 of the regrowth.
    # p = 0.5 prunes ceil(1.5) = 2 of a (|0.1|, |0.5|) and ceil(2) = 2 of b (|0.05|, |0.2|): 4 weights.
    # a regrows floor(4/4) = 1 where its inactive momentum is largest (index 3, 0.9); b regrows 3: index 4
    # (0.5), then the tie at 0.3 by position: indices 0 and 3 (pruned a moment ago, so they keep their value).
    moved = sparse.prune_regrow(0.5)
    assert model.a.weight_mask.flatten().tolist() == [1, 0, 0, 1]
    assert model.b.weight_mask.flatten().tolist() == [1, 1, 1, 1, 1, 0]  # 0.8 and -0.3 survive
    assert moved == {"sparse_pruned": 4, "sparse_regrown": 4, "sparse_moved": 2}
    sparse.apply(None)
    assert model.a.weight.flatten().tolist() == pytest.approx([0.9, 0.0, 0.0, 0.0])
    assert model.b.weight.flatten().tolist() == pytest.approx([0.2, 0.8, -0.3, 0.05, 0.0, 0.0])


def test_channel_prune_regrow_moves_whole_input_channels() -> None:
    c = Masked([1, 0.1, 0, 1, 0.1, 0], [1, 1, 0, 1, 1, 0], (2, 3, 1, 1))  # 3 input channels of 2 weights
    d = Masked([0.5, 0, 0.5, 0, 0.5, 0], [1, 0, 1, 0, 1, 0], (3, 2, 1, 1))  # 2 input channels of 3 weights
    model = _two_layers(c, d)
    sparse = SparseLearning(density=0.6, granularity="channel")
    sparse.attach(model)
    assert sparse.budget == 7
    sparse.momentum["a"].copy_(torch.tensor([0.1, 0.1, 0.4, 0.1, 0.1, 0.3]).view(2, 3, 1, 1))
    sparse.momentum["b"].copy_(torch.tensor([0.3, 0.2, 0.3, 0.2, 0.3, 0.2]).view(3, 2, 1, 1))
    # prune: a's channel 1 (f = 0.02 < 2) and b's channel 0 (its only one): 2 + 3 = 5 weights.
    # regrowth shares 1/4 (a) and 3/4 (b): a's floor(5/4) = 1 weight is less than a channel; b's 3 weights
    # buy one channel: channel 0 (momentum norm 0.52 > 0.35). The 2 left over go to the largest inactive
    # momentum that fits: a's channel 2 (norm 0.5, 2 weights).
    moved = sparse.prune_regrow(0.5)
    assert model.a.weight_mask[0, :, 0, 0].tolist() == [1, 0, 1]
    assert model.b.weight_mask[0, :, 0, 0].tolist() == [1, 0]
    for layer in (model.a, model.b):  # all-or-nothing per input channel
        per_channel = layer.weight_mask.sum(dim=(0, 2, 3))
        assert set(per_channel.tolist()) <= {0.0, float(layer.weight_mask.shape[0])}
    assert moved == {"sparse_pruned": 5, "sparse_regrown": 5, "sparse_moved": 2}


def test_prune_rate_cosine_decay() -> None:
    assert prune_rate(0.5, 1, 4) == 0.5
    assert prune_rate(0.5, 2, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)) / 2)
    assert prune_rate(0.5, 3, 4) == pytest.approx(0.25)
    assert prune_rate(0.3, 4, 4) == pytest.approx(0.3 * (1 + math.cos(3 * math.pi / 4)) / 2)


@pytest.mark.parametrize("granularity", ["irregular", "channel"])
def test_initial_masks_hold_global_density_without_emptying_a_layer(granularity: str) -> None:
    torch.manual_seed(0)
    variant = "floats-i" if granularity == "irregular" else "floats-c"
    model = create_model("resnet18", variant, density=0.1)
    sparse = SparseLearning(0.1, granularity)
    sparse.attach(model)
    sparse.init_masks()
    total = sum(layer.weight.numel() for layer in sparse.layers)
    active = sum(int(layer.module.weight_mask.sum()) for layer in sparse.layers)
    assert active <= math.floor(0.1 * total) and active >= math.floor(0.1 * total) - 4608  # < one channel
    if granularity == "irregular":
        assert active == math.floor(0.1 * total)
    for layer in sparse.layers:  # a per-layer start: every layer within one unit of d n_l, none empty
        units = int(layer.active_units().sum())
        assert units >= 1 and abs(units - 0.1 * layer.n_units) <= 1, (layer.name, units, layer.n_units)


def test_eq5_holds_after_every_step_and_masked_weights_and_momentum_are_zero(one_thread) -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", "floats-i", density=0.3).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sparse = SparseLearning(0.3, "irregular")
    checks: list[tuple[int, bool, bool]] = []

    class Check:
        def after_step(self, ctx: StepContext) -> None:
            active = sum(int(layer.weight.count_nonzero()) for layer in sparse.layers)
            zero_w = all(bool((layer.weight[layer.module.weight_mask == 0] == 0).all()) for layer in sparse.layers)
            zero_m = all(bool((optimizer.state[layer.weight]["momentum_buffer"][layer.module.weight_mask == 0]
                               == 0).all()) for layer in sparse.layers)
            checks.append((active, zero_w, zero_m))

    ctx = StepContext.local(model, optimizer, epochs=3, hooks=(sparse, Check()))
    sparse.setup(ctx)
    algorithm = create_algorithm("pgd-at", AttackSettings(steps=1), lambda_=0.5)
    g = torch.Generator().manual_seed(0)
    masks = []
    for epoch in (1, 2, 3):
        for _ in range(3):
            x, y = torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
            algorithm.train_step(ctx, x, y)
        metrics = sparse.end_epoch(ctx, epoch)
        masks.append(torch.cat([layer.module.weight_mask.flatten() for layer in sparse.layers]))
        assert metrics["active_weights"] == sparse.budget
    assert len(checks) == 9
    assert all(active <= sparse.budget and zero_w and zero_m for active, zero_w, zero_m in checks)
    assert not torch.equal(masks[0], masks[1])  # masks move every epoch but the last
    assert torch.equal(masks[1], masks[2])


def test_floats_run_records_sparse_metrics_and_saves_zero_weights_where_masked(tmp_path: Path) -> None:
    config = make_config({"model": "small_cnn", "dataset": "synthetic", "synthetic_size": 160, "val_size": 32,
                          "batch_size": 32, "attack_steps": 1, "epochs": 3, "device": "cpu",
                          "variant": "floats-c", "algorithm": "float", "density": 0.4, "prune_rate": 0.3})
    run = train(config, tmp_path / "run")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["prune_rate"] for m in lines] == pytest.approx([0.3, 0.3 * (1 + math.cos(math.pi / 3)) / 2, 0.0])
    assert all(m["density"] <= 0.4 and m["density"] > 0.35 for m in lines)
    assert lines[0]["sparse_pruned"] > 0 and lines[-1]["sparse_pruned"] == 0
    assert set(lines[0]["layer_density"]) == {"features.4", "features.8"}
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    for name in ("features.4", "features.8"):
        mask, weight = state[f"{name}.weight_mask"], state[f"{name}.weight"]
        assert bool((weight[mask == 0] == 0).all())
        per_channel = mask.sum(dim=(0, 2, 3))
        assert set(per_channel.tolist()) <= {0.0, float(mask.shape[0] * 9)}


def test_count_and_delay_of_a_trained_run_use_its_final_masks(tmp_path: Path, capsys) -> None:
    from hwsim.cli import main

    config = make_config({"model": "small_cnn", "dataset": "synthetic", "synthetic_size": 96, "val_size": 32,
                          "batch_size": 32, "attack_steps": 1, "epochs": 2, "device": "cpu",
                          "variant": "floats-c", "algorithm": "float", "density": 0.4})
    run = train(config, tmp_path / "run")
    masks = {k: v for k, v in torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"].items()
             if k.endswith("weight_mask")}

    def count(*extra: str) -> dict:
        with pytest.raises(SystemExit) as exc:
            main(["count", "small_cnn", "--variant", "floats-c", "--format", "json", *extra])
        assert exc.value.code == 0
        return json.loads(capsys.readouterr().out)

    trained, built = count("--masks", str(run)), count("--density", "0.4")
    assert trained["setting"]["density"] == 0.4  # the run's, read from its config
    trained, built = trained["totals"], built["totals"]
    prunable = sum(m.numel() for m in masks.values())
    assert trained["params_nonzero"] == trained["params"] - prunable + sum(int(m.sum()) for m in masks.values())
    assert trained["params_nonzero"] != built["params_nonzero"] or trained["macs"] != built["macs"]
    bare = tmp_path / "bare.pt"  # a checkpoint without its run directory around it
    bare.write_bytes((run / "checkpoints" / "last.pt").read_bytes())
    for args, message in (
            (["delay", "small_cnn", "--variant", "float", "--masks", str(run)], "--masks applies only to masked"),
            (["count", "small_cnn", "--variant", "floats-c", "--density", "0.4", "--masks", str(run)],
             "--density does not apply with --masks"),
            (["count", "small_cnn", "--variant", "floats-i", "--masks", str(run)],
             "holds the masks of a 'floats-c' run; cost it as --variant floats-c"),
            (["count", "small_cnn", "--variant", "floats-i", "--masks", str(bare)],
             "holds the masks of a 'floats-c' run"),  # the checkpoint itself says what it was trained as
            (["count", "small_cnn", "--variant", "floats-c", "--dataset", "mnist", "--masks", str(run)],
             "was trained on synthetic (a cifar10 network), not costed as mnist: pass --dataset cifar10")):
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and message in err, (args, err)


def test_a_step_amp_skipped_leaves_the_growth_momentum_alone() -> None:
    model = _two_layers(Masked([0.9, -0.1, 0.5, 0.0], [1, 1, 1, 0], (2, 2, 1, 1)),
                        Masked([0.2, 0.8, -0.3, 0.05, 0.0, 0.0], [1, 1, 1, 1, 0, 0], (2, 3, 1, 1)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparse = SparseLearning(density=0.7)
    ctx = StepContext.local(model, optimizer, hooks=(sparse,))
    ctx.scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    sparse.setup(ctx)
    before = {k: v.clone() for k, v in sparse.momentum.items()}
    loss = (model.a.weight.sum() + model.b.weight.sum()) * float("inf")  # every gradient inf
    ctx.scaler.scale(loss).backward()
    ctx.optimizer_step()
    assert ctx.step_skipped and ctx.scaler.get_scale() < 8.0
    assert all(torch.equal(before[k], sparse.momentum[k]) for k in before)
    assert model.a.weight.flatten().tolist() == pytest.approx([0.9, -0.1, 0.5, 0.0])  # step skipped, masks kept
    loss = model.a.weight.sum() + model.b.weight.sum()
    ctx.scaler.scale(loss).backward()
    ctx.optimizer_step()
    assert not ctx.step_skipped and torch.equal(sparse.momentum["a"], torch.ones(2, 2, 1, 1))
