"""Counting fixes after issues 18 and 21 (SPEC 5, 5.2, 4.2): free parameters at a slim width, the group of
LayerNorm / GroupNorm weights, and projection shortcuts that end with a LayerNorm or a GroupNorm.

Every expected number is derived by hand in the comments (weights + biases per layer).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import torch
import torch.nn.functional as F
from torch import nn

from hwsim.count import count
from hwsim.hardware import get_preset
from hwsim.trace import trace_model
from models import create_model, set_knobs
from models.layers import CondNorm, FiLM

STANDINS = Path(__file__).parent / "variant_standins.py"


def _counts(model, size=(3, 32, 32), hw="asic65"):
    trace = trace_model(model, size)
    return trace, count(model, trace, get_preset(hw))


def film(c: int, d: int = 1) -> int:
    """FiLM(d, C): Linear(d, 2C) + Linear(2C, 2C) with biases = 2dC + 2C + 4C^2 + 2C."""
    return 2 * d * c + 2 * c + 4 * c * c + 2 * c


# --- 1. free parameters follow the width -----------------------------------------------------------------------

def test_zoo_vit_tiny_counts_its_class_token_and_positions_at_the_active_width():
    """vit_tiny float-slim at width 0.5 (64 -> 32 features), by hand:
    class token 1 x 32, positional embedding 65 x 32 (64 patches + class token) = 2,112 active of 4,224 stored;
    7 LayerNorms (2 per block x 3 + final) at 32 features: 7 x (32 + 32) = 448 (group other, item 2);
    backbone: patch conv 3 -> 32 at 4 x 4, no bias = 1,536; per block in_proj 32 -> 96 (3,168), out_proj 32 -> 32
    (1,056), fc1 32 -> 64 (2,112), fc2 64 -> 32 (2,080) = 8,416 x 3 = 25,248; head 32 -> 10 = 330: 27,114;
    alpha: 13 (patch conv + 4 linears x 3 blocks)."""
    model = create_model("vit_tiny", "float-slim", bn="single")
    set_knobs(model, width=0.5)
    _, counts = _counts(model)
    params = counts.params
    assert params.active_groups["other"] == 32 + 65 * 32 + 7 * 64 == 2560
    assert params.active_groups["bn"] == 0
    assert params.active_groups["backbone"] == 27114 and params.active_groups["alpha"] == 13
    assert params.active == 27114 + 13 + 2560 == 29687
    assert counts.memory_bytes == 27114 + 2560  # b_w = 8: one byte each; alpha excluded
    # stored: every width's LayerNorms (64 + 32 features each) and the whole embeddings
    assert params.groups["other"] == 64 + 65 * 64 + 7 * 2 * (64 + 32)


def test_cli_count_vit_tiny_slim_half_width():
    """`hwsim count vit_tiny --variant float-slim --width 0.5`: the numbers of the test above, in the output."""
    import json

    from click.testing import CliRunner

    from hwsim.cli import cli

    result = CliRunner().invoke(cli, ["count", "vit_tiny", "--variant", "float-slim", "--width", "0.5", "--no-cache",
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    totals = json.loads(result.output)["totals"]
    assert (totals["params"], totals["memory_bytes"]) == (29687, 29674)
    assert totals["params_by_group"]["other"] == 2560 and totals["params_by_group"]["bn"] == 0


def test_parametrized_free_parameters_of_a_user_vit_count_their_active_slice():
    """The stand-in ViT (dim 32, 17 tokens) made slim by surgery: its class token and positional embedding
    follow the width through torch.nn.utils.parametrize. At width 0.5: class token 16 + positions 17 x 16 =
    288, and 5 LayerNorms (2 per block x 2 + final) x (16 + 16) = 160: 448 active in group other (at full width
    the same rule gives 32 + 17 x 32 + 5 x 64 = 896)."""
    model = create_model(f"{STANDINS}:vit", "float-slim", dataset="custom", input_size=(3, 32, 32), bn="single")
    assert any("parametrizations.class_token" in n for n, _ in model.named_parameters())
    set_knobs(model, width=0.5)
    _, half = _counts(model)
    assert half.params.active_groups["other"] == 16 + 17 * 16 + 5 * 32 == 448
    set_knobs(model, width=1.0)
    _, full = _counts(model)
    assert full.params.active_groups["other"] == 32 + 17 * 32 + 5 * 64 == 896
    assert half.params.groups == full.params.groups  # what is stored does not depend on the width


class _ComputedToken(nn.Module):
    """A free parameter read through a computed copy (``2 * token``): the tracer cannot see which entries
    the copy's slice came from, so all of them count."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1, bias=False)
        self.token = nn.Parameter(torch.zeros(1, 8, 1, 1))
        self.fc = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        y = self.conv(x) + (2 * self.token)[:, :8]
        return self.fc(y.mean(dim=(2, 3))[:, :4])


def test_a_free_parameter_read_whole_or_through_a_computed_copy_counts_whole():
    model = _ComputedToken()
    _, counts = _counts(model, (3, 4, 4))
    assert counts.params.active_groups["other"] == 8


# --- 2. LayerNorm / GroupNorm weights are group other, plain, dual or switchable ----------------------------------

def test_dual_layernorms_are_other_and_stored_in_memory():
    """Stand-in ViT, float with --bn dual: 5 LayerNorm(32) pairs = 5 x 2 x 64 = 640 in other (both serve: the
    dual-BN convention counts norm_C and norm_A), plus class token 32 and positions 17 x 32 = 544: 1,216;
    memory at b_w = 8 = backbone + other (alpha excluded)."""
    model = create_model(f"{STANDINS}:vit", "float", dataset="custom", input_size=(3, 32, 32), bn="dual")
    assert isinstance(model.ln, CondNorm)
    _, counts = _counts(model)
    groups = counts.params.active_groups
    assert groups["bn"] == 0
    assert groups["other"] == 5 * 2 * 64 + 32 + 17 * 32 == 1216
    assert counts.memory_bytes == groups["backbone"] + 1216


def test_dual_batchnorms_stay_bn_and_out_of_memory():
    """BNActNet (timm's BatchNormAct2d) with --bn dual: 4 BNs of 16, 32, 32, 32 features, 2 copies each:
    2 x 2 x (16 + 32 + 32 + 32) = 448 in group bn, none in other; memory = backbone only."""
    model = create_model(f"{STANDINS}:bnact", "float", dataset="custom", input_size=(3, 32, 32), bn="dual")
    _, counts = _counts(model)
    groups = counts.params.active_groups
    assert groups["bn"] == 448 and groups["other"] == 0
    assert counts.memory_bytes == groups["backbone"] == 432 + 4608 + 9216 + 512 + 330


def test_switchable_groupnorm_counts_its_active_width_in_other(tmp_path):
    """conv 3->16 (+bias), GroupNorm(4, 16), conv 16->32 (+bias), GroupNorm(4, 32), head 32->10, float-slim:
    at width 0.5 the active GroupNorms are GroupNorm(4, 8) and GroupNorm(4, 16): 2 x 8 + 2 x 16 = 48 in other;
    stored: both widths, 2 x (16 + 8) + 2 x (32 + 16) = 144."""
    path = tmp_path / "gn.py"
    path.write_text(
        "from torch import nn\n\ndef make():\n    return nn.Sequential(\n"
        "        nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),\n"
        "        nn.Conv2d(16, 32, 3, 2, 1), nn.GroupNorm(4, 32), nn.ReLU(),\n"
        "        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))\n")
    model = create_model(f"{path}:make", "float-slim", dataset="custom", input_size=(3, 8, 8), bn="single")
    set_knobs(model, width=0.5)
    _, counts = _counts(model, (3, 8, 8))
    assert counts.params.active_groups["other"] == 48 and counts.params.active_groups["bn"] == 0
    assert counts.params.groups["other"] == 144


# --- 3. projection shortcuts that end with a LayerNorm or a GroupNorm ------------------------------------------------

GN_NET = '''
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.gn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.GroupNorm(2, 8)
        self.conv2, self.gn2 = nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.GroupNorm(4, 16)
        self.conv3, self.gn3 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.GroupNorm(4, 16)
        self.shortcut = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.GroupNorm(4, 16))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.gn1(self.conv1(x)))
        y = self.gn3(self.conv3(F.relu(self.gn2(self.conv2(x)))))
        return self.fc(F.relu(y + self.shortcut(x)).mean(dim=(2, 3)))


def make():
    return Net()
'''


def test_groupnorm_on_a_projection_shortcut_gets_no_film(tmp_path):
    """oat (d = 1): FiLMs after gn1 (8), gn2 (16) and gn3 (16), none after shortcut.1:
    film(8) + 2 film(16) = 304 + 2 x 1,120 = 2,544 FiLM parameters (a FiLM on the shortcut would add 1,120).
    Base: convs 216 + 1,152 + 2,304 + 128, GroupNorms 16 + 32 + 32 + 32, fc 170 = 4,082."""
    path = tmp_path / "gnres.py"
    path.write_text(GN_NET)
    model = create_model(f"{path}:make", "oat", dataset="custom", input_size=(3, 8, 8), film_dim=1, bn="single")
    assert not any(isinstance(m, FiLM) for m in model.shortcut.modules())
    assert isinstance(model.gn3[1], FiLM) and isinstance(model.gn1[1], FiLM)
    trace, counts = _counts(model, (3, 8, 8))
    assert counts.params.active_groups["film"] == film(8) + 2 * film(16) == 2544
    assert counts.params.total == 4082 + 2544
    assert sorted(f.name for f in trace.films) == ["gn1.1", "gn2.1", "gn3.1"]


class _LNShortcut(nn.Module):
    """Token residual: body LayerNorm -> Linear -> Linear -> LayerNorm, shortcut Linear -> LayerNorm."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.body = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 16), nn.LayerNorm(16))
        self.shortcut = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        t = self.embed(x.flatten(2).transpose(1, 2))
        return self.head(F.relu(self.body(t) + self.shortcut(t)).mean(dim=1))


def test_layernorm_on_a_projection_shortcut_is_found_by_the_data_flow():
    from hwsim.trace import trace_model as trace

    flow = trace(_LNShortcut(), (4, 2, 2)).flow
    assert flow.shortcut_norms == ("shortcut.1",)


def test_layernorm2d_on_a_projection_shortcut_is_found_after_its_permutes():
    """A channels-first LayerNorm2d (permute, layer_norm, permute) on the shortcut: its module output, not the
    layer_norm op's, is what enters the add."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("standins", STANDINS)
    standins = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(standins)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.n1 = nn.Conv2d(3, 8, 3, padding=1), standins.LayerNorm2d(8)
            self.conv2, self.n2 = nn.Conv2d(8, 8, 3, padding=1), standins.LayerNorm2d(8)
            self.conv3, self.n3 = nn.Conv2d(8, 16, 3, padding=1), standins.LayerNorm2d(16)
            self.shortcut = nn.Sequential(nn.Conv2d(8, 16, 1), standins.LayerNorm2d(16))
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = self.n1(self.conv1(x))
            y = self.n3(self.conv3(self.n2(self.conv2(x))))
            return self.fc((y + self.shortcut(x)).mean(dim=(2, 3)))

    flow = trace_model(Net(), (3, 8, 8)).flow
    assert flow.shortcut_norms == ("shortcut.1",)


# --- 4. count --masks RUN costs the network the run trained, as the report does -----------------------------------

@pytest.mark.slow
def test_count_with_the_masks_of_a_dual_bn_run_agrees_with_the_report(tmp_path, capsys):
    """A floats-c small_cnn run trained with --bn dual (and the trainer's d = 128): `hwsim count --masks RUN`
    builds the run's dual BNs, as the report's cost of that run does. small_cnn's BNs: 16 + 32 + 64 = 112
    features, weight and bias: 224 parameters per copy, so a single-BN count would be 224 short."""
    import json

    import pandas as pd

    from hwsim.cli import main
    from hwsim.report.join import attach_costs
    from hwsim.train.config import make_config
    from hwsim.train.trainer import train

    config = make_config({"model": "small_cnn", "dataset": "synthetic", "synthetic_size": 64, "val_size": 32,
                          "batch_size": 32, "attack_steps": 1, "epochs": 1, "device": "cpu", "bn": "dual",
                          "film_dim": 128, "variant": "floats-c", "algorithm": "float", "density": 0.5})
    run = train(config, tmp_path / "run")

    def count(*extra: str) -> dict:
        with pytest.raises(SystemExit) as exc:
            main(["count", "small_cnn", "--variant", "floats-c", "--format", "json", "--no-cache", *extra])
        assert exc.value.code == 0
        return json.loads(capsys.readouterr().out)

    counted = count("--masks", str(run))
    assert counted["setting"]["bn"] == "dual"
    row = {"model": "small_cnn", "variant": "floats-c", "dataset": "synthetic", "film_dim": 0, "bn": "dual",
           "width": 1.0, "density": 0.5, "run_dir": str(run), "checkpoint": "last", "origin": "run"}
    reported = attach_costs(pd.DataFrame([row])).iloc[0]
    totals = counted["totals"]
    assert totals["params"] == int(reported["params"])
    assert totals["params_nonzero"] == int(reported["nonzero_params"])
    assert totals["memory_bytes"] == int(reported["memory_bytes"])
    assert totals["params_by_group"]["bn"] == 2 * 224
    assert count("--masks", str(run), "--bn", "dual")["totals"]["params"] == totals["params"]  # the same, said
    with pytest.raises(SystemExit) as exc:
        main(["count", "small_cnn", "--variant", "floats-c", "--bn", "single", "--masks", str(run)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "--bn single conflicts" in err and "--bn dual" in err
