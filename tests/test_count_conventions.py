"""Counting conventions on hand-built models with hand-computed answers: weight sharing, memory bytes (bitmap
map, rounding), pruned-away layers, the plain network behind norm_delay, BNs of other widths, token inputs
and exact pruning density. Each test goes through public functions (trace_model, count, model_cost, the CLI),
so it survives a rewrite of the tracer's internals; CONTRIBUTING.md lists the mutant each one kills."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from hwsim.cli import main
from hwsim.cost import model_cost
from hwsim.count import count
from hwsim.delay import model_delay
from hwsim.hardware import apply_overrides, get_preset
from hwsim.trace import trace_model
from models import create_model

ASIC65 = get_preset("asic65")
BITMAP = apply_overrides(ASIC65, ["sparse_storage=bitmap"])


class SharedConv(nn.Module):
    """One conv applied twice (weight sharing), then a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=True)  # 144 weights + 4 biases
        self.fc = nn.Linear(4, 10)  # 40 + 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.conv(x)).mean((2, 3)))


def test_a_module_called_twice_stores_its_parameters_once(one_thread):
    model = SharedConv()
    trace = trace_model(model, (4, 8, 8))
    report = count(model, trace, ASIC65)
    assert report.params.total == report.params.active == report.params.nonzero == 148 + 50
    assert report.memory_bytes == 198  # 8-bit weights: one byte per stored parameter, the conv's once
    assert report.macs == 2 * 144 * 64 + 40  # MACs per call: the conv runs twice
    delay = model_delay(trace.shapes(), ASIC65)  # each call streams the weights again (Eq. 7 per call)
    conv = -(-144 * 8 // 64) * 9 + -(-144 // 175) * 64 * 4
    fc = -(-40 * 8 // 64) * 9 + 1 * 4
    assert delay.delay_ns == 2 * conv + fc


def test_a_module_called_twice_through_the_cli(capsys, tmp_path, one_thread):
    path = tmp_path / "shared.py"
    path.write_text("from torch import nn\n"
                    "class M(nn.Module):\n"
                    "    def __init__(self):\n"
                    "        super().__init__()\n"
                    "        self.conv = nn.Conv2d(4, 4, 3, padding=1)\n"
                    "        self.fc = nn.Linear(4, 10)\n"
                    "    def forward(self, x):\n"
                    "        return self.fc(self.conv(self.conv(x)).mean((2, 3)))\n"
                    "def make():\n"
                    "    return M()\n")
    with pytest.raises(SystemExit) as exc:
        main(["count", f"{path}:make", "--input-size", "4,8,8", "--format", "json"])
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert exc.value.code == 0
    assert (totals["params"], totals["params_total"], totals["params_nonzero"]) == (198, 198, 198)
    assert totals["memory_bytes"] == 198 and totals["macs"] == 18_472


def _masked_conv(c_in: int, c_out: int, every: int = 0) -> nn.Conv2d:
    """A bias-free 3x3 conv whose torch.nn.utils.prune mask keeps every ``every``-th weight (0: none)."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    mask = torch.zeros(c_out * c_in * 9)
    if every:
        mask[::every] = 1
    prune.custom_from_mask(conv, "weight", mask.view(c_out, c_in, 3, 3))
    return conv


def test_bitmap_memory_charges_the_one_bit_map(one_thread):
    model = nn.Sequential(_masked_conv(4, 4, every=3))  # W = 144, nnz = 48, every channel keeps some weights
    trace = trace_model(model, (4, 6, 6))
    assert count(model, trace, ASIC65).memory_bytes == 144  # dense storage: every weight at 8 bits
    # bitmap: nnz values at 8 bits + 1 bit per weight = 384 + 144 bits = 66 bytes (48 without the map)
    assert count(model, trace, BITMAP).memory_bytes == 66
    assert model_delay(trace.shapes(), BITMAP).layers[0].reads == -(-(48 * 8 + 144) // 64)


def test_memory_bytes_round_up(hw6_path, one_thread):
    from hwsim.hardware import load_toml

    hw6 = load_toml(hw6_path)  # b_w = 6
    model = nn.Sequential(nn.Conv2d(1, 1, 3, bias=False))  # 9 weights x 6 bits = 54 bits = 6.75 bytes
    trace = trace_model(model, (1, 5, 5))
    assert count(model, trace, hw6).memory_bytes == 7
    model = nn.Sequential(nn.Conv2d(1, 1, 3, bias=True))  # 10 parameters = 60 bits = 7.5 bytes
    assert count(model, trace_model(model, (1, 5, 5)), hw6).memory_bytes == 8


def test_a_layer_pruned_to_nothing_costs_nothing(capsys, tmp_path, one_thread):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), _masked_conv(4, 4),
                          nn.Conv2d(4, 4, 3, padding=1, bias=False))
    trace = trace_model(model, (3, 8, 8))
    assert [shape.name for shape in trace.shapes()] == ["0", "2"]  # the empty layer is not in the delay model
    report = count(model, trace, ASIC65)
    assert report.macs == (108 + 144) * 64  # the empty layer computes nothing
    assert report.memory_bytes == 108 + 144 and report.params.nonzero == 108 + 144
    layer0 = -(-108 * 8 // 64) * 9 + -(-108 // 175) * 64 * 4
    layer2 = -(-144 * 8 // 64) * 9 + -(-144 // 175) * 64 * 4
    assert model_delay(trace.shapes(), ASIC65).delay_ns == layer0 + layer2


def test_a_zoo_layer_pruned_to_nothing_through_the_cli(capsys, one_thread):
    """floats-c at a low density prunes a whole small_cnn conv away (global channel ranking allows it): the
    commands cost the rest instead of failing on a layer of 0 channels."""
    def names(*args: str) -> list[str]:
        with pytest.raises(SystemExit) as exc:
            main([*args, "small_cnn", "--dataset", "mnist", "--format", "json"])
        out, err = capsys.readouterr()
        assert exc.value.code == 0, err
        return [layer["name"] for layer in json.loads(out)["layers"]]

    every = names("count")
    for command in ("count", "delay"):
        kept = names(command, "--variant", "floats-c", "--density", "0.02")
        assert set(kept) < set(every) and kept[-1] == every[-1]  # a conv is gone, the classifier stays


def test_plain_network_of_a_channel_pruned_model_has_every_channel(one_thread):
    """norm_delay divides by the same network plain and dense: floats-c's base delay is base's delay."""
    pruned = model_cost("small_cnn", "floats-c", dataset="mnist", density=0.5)
    base = model_cost("small_cnn", "base", dataset="mnist")
    assert pruned.delay_ns < 0.8 * base.delay_ns  # channel pruning shrinks the effective shapes ...
    assert pruned.base_delay_ns == base.delay_ns  # ... but not the plain network it is normalised by
    assert pruned.norm_delay == pruned.delay_ns / base.delay_ns


def test_bns_of_another_width_are_stored_but_not_active(one_thread):
    half = model_cost("small_cnn", "float-slim", dataset="mnist", width=0.5)
    full = model_cost("small_cnn", "float-slim", dataset="mnist", width=1.0)
    from hwsim.cost import ModelSetting, analyze

    a_half = analyze(ModelSetting("small_cnn", "float-slim", "mnist", width=0.5)).counts.params
    a_full = analyze(ModelSetting("small_cnn", "float-slim", "mnist", width=1.0)).counts.params
    assert a_half.groups["bn"] == a_full.groups["bn"] > 0  # every width's BN is stored
    # widths {0.5, 1.0}: each BN serves exactly one width, so the two active sets partition the stored BNs
    assert a_half.active_groups["bn"] + a_full.active_groups["bn"] == a_full.groups["bn"]
    assert 0 < a_half.active_groups["bn"] < a_full.active_groups["bn"]
    assert half.params < full.params


class Tokens(nn.Module):
    """A linear layer applied to 6 tokens of 8 features (input (1, 1, 6, 8) viewed as (1, 6, 8))."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(1, 2))


def test_a_linear_layer_on_tokens_runs_once_per_token(one_thread):
    trace = trace_model(Tokens(), (1, 6, 8))
    (record,) = trace.layers
    assert record.h_out * record.w_out == 6  # positions = tokens
    assert record.macs == 6 * 8 * 5
    (delay,) = model_delay(trace.shapes(), ASIC65).layers
    assert delay.mult_passes == 1 * 6 and delay.reads == -(-40 * 8 // 64)


@pytest.mark.parametrize("fraction", [0.6, 0.9, 0.9999])
def test_irregular_density_keeps_exactly_round_of_d_times_p(fraction, one_thread):
    """FLOATS-i keeps round(d P) weights, exactly (not within one): choose d so that d P = k + fraction."""
    probe = create_model("small_cnn", "floats-i", dataset="mnist", density=1.0)
    prunable = sum(m.weight.numel() for m in probe.modules() if hasattr(m, "weight_mask"))
    k = prunable // 3
    density = (k + fraction) / prunable
    expected = round(density * prunable)
    assert expected == k + 1  # the fraction rounds up, where int() would truncate to k
    model = create_model("small_cnn", "floats-i", dataset="mnist", density=density)
    kept = sum(int(m.weight_mask.sum()) for m in model.modules() if hasattr(m, "weight_mask"))
    assert kept == expected
    traced = trace_model(model, (1, 28, 28))
    masked = [r for r in traced.layers if r.masked]
    assert sum(r.weight_nonzero for r in masked) == expected


class DetachInPlace(nn.Module):
    """A user model that calls ``detach_()``: data movement, free by convention like ``detach()``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).detach_()


def test_detach_in_place_is_free_not_unsupported(one_thread):
    trace = trace_model(DetachInPlace(), (3, 8, 8))
    assert trace.unsupported == {}
    assert [r.name for r in trace.layers] == ["conv"]
