"""Transformers count completely (SPEC 3, 5): token linears per position, attention products as ``matmul``
records whether written with ``@`` or through ``scaled_dot_product_attention``, views free, LayerNorm /
GELU / softmax in ``--ops all``, every stored parameter in ``memory_bytes``."""

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hwsim.cli import cli
from hwsim.count import count
from hwsim.delay import model_delay
from hwsim.hardware import get_preset
from hwsim.trace import trace_model

IMAGE, PATCH, DIM, DEPTH, HEADS, MLP, CLASSES = 32, 8, 64, 2, 4, 128, 10
TOKENS = (IMAGE // PATCH) ** 2 + 1  # 16 patches and the class token


class Attention(nn.Module):
    def __init__(self, sdpa: bool) -> None:
        super().__init__()
        self.sdpa = sdpa
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4).unbind(0)
        if self.sdpa:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) * (c // HEADS) ** -0.5
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, sdpa: bool) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(DIM), Attention(sdpa)
        self.norm2 = nn.LayerNorm(DIM)
        self.mlp = nn.Sequential(nn.Linear(DIM, MLP), nn.GELU(), nn.Linear(MLP, DIM))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, sdpa: bool) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, DIM, PATCH, PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, TOKENS, DIM))
        self.blocks = nn.Sequential(*(Block(sdpa) for _ in range(DEPTH)))
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# Hand-derived: the patch conv runs at 4 x 4 positions; every token linear at each of the 17 tokens; per
# head q k^T is [17, 16] @ [16, 17] and attn v is [17, 17] @ [17, 16]; the head reads the class token only.
PATCH_MACS = PATCH * PATCH * 3 * DIM * (IMAGE // PATCH) ** 2
BLOCK_LINEAR_MACS = TOKENS * (DIM * 3 * DIM + DIM * DIM + DIM * MLP + MLP * DIM)
BLOCK_MATMUL_MACS = HEADS * (TOKENS * (DIM // HEADS) * TOKENS + TOKENS * TOKENS * (DIM // HEADS))
TOTAL_MACS = PATCH_MACS + DEPTH * (BLOCK_LINEAR_MACS + BLOCK_MATMUL_MACS) + DIM * CLASSES
BLOCK_PARAMS = 2 * 2 * DIM + (DIM * 3 * DIM + 3 * DIM) + (DIM * DIM + DIM) + (DIM * MLP + MLP) + (MLP * DIM + DIM)
TOTAL_PARAMS = (3 * PATCH * PATCH * DIM + DIM) + DIM + TOKENS * DIM + DEPTH * BLOCK_PARAMS + 2 * DIM + \
    (DIM * CLASSES + CLASSES)


def test_the_hand_derivation_itself():
    assert TOTAL_MACS == 1_385_344 and DEPTH * BLOCK_MATMUL_MACS == 73_984 and TOTAL_PARAMS == 81_226


@pytest.mark.parametrize("sdpa", [False, True])
def test_vit_counts_equal_the_hand_derived_total(sdpa):
    model = ViT(sdpa)
    trace = trace_model(model, (3, IMAGE, IMAGE))
    counts = count(model, trace, get_preset("asic65"))
    assert counts.macs == TOTAL_MACS
    assert counts.macs_by_kind == {"conv": PATCH_MACS, "linear": TOTAL_MACS - PATCH_MACS - DEPTH * BLOCK_MATMUL_MACS,
                                   "matmul": DEPTH * BLOCK_MATMUL_MACS}
    assert counts.unsupported == {}  # unbind, permute, expand, cat, ... are free views and shape ops
    assert trace.layer("blocks.0.attn.qkv").h_out == TOKENS  # the weight reused at every token
    products = [r for r in trace.layers if r.kind == "matmul"]
    assert [(r.w_out, r.h_out, r.c_in, r.c_out) for r in products] == [(HEADS, TOKENS, 16, TOKENS),
                                                                       (HEADS, TOKENS, TOKENS, 16)] * DEPTH
    assert all(r.params == 0 for r in products)
    # every stored parameter outside BN and alpha is memory: cls token, positional embedding, LayerNorms
    assert counts.params.total == TOTAL_PARAMS
    assert counts.params.groups["other"] == DIM + TOKENS * DIM + (2 * DEPTH + 1) * 2 * DIM
    assert counts.memory_bytes == TOTAL_PARAMS  # 8-bit weights
    assert counts.ops["norm"] == (2 * DEPTH + 1) * TOKENS * DIM
    assert counts.ops["softmax"] == DEPTH * HEADS * TOKENS * TOKENS
    assert counts.ops["activation"] == DEPTH * TOKENS * MLP  # GELU


def test_sdpa_and_manual_attention_trace_the_same_products():
    manual, fused = (trace_model(ViT(s), (3, IMAGE, IMAGE)) for s in (False, True))
    shape = lambda t: [(r.kind, r.c_in, r.c_out, r.h_out, r.w_out) for r in t.layers]  # noqa: E731
    assert shape(manual) == shape(fused)


def test_flop_counter_agrees_where_it_sees_the_products():
    """FlopCounterMode (2 flops per MAC) is the independent check on the manual version; on CPU it misses
    the products inside scaled_dot_product_attention, which hwsim counts."""
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            ViT(False)(torch.rand(1, 3, IMAGE, IMAGE))
        assert counter.get_total_flops() == 2 * TOTAL_MACS
        counter = FlopCounterMode(display=False)
        with counter:
            ViT(True)(torch.rand(1, 3, IMAGE, IMAGE))
        assert counter.get_total_flops() == 2 * (TOTAL_MACS - DEPTH * BLOCK_MATMUL_MACS)


def test_matmul_records_use_the_matmul_formula_without_reads():
    trace = trace_model(ViT(True), (3, IMAGE, IMAGE))
    report = model_delay(trace.shapes(), get_preset("asic65"))
    qk = next(d for d in report.layers if d.layer.kind == "matmul")
    # b ceil(K M / n_mult) N: 4 heads x ceil(16 * 17 / 175) x 17 tokens passes of 4 ns, no reads
    assert (qk.layer.formula, qk.reads, qk.mult_passes, qk.delay_ns) == ("matmul", 0, 4 * 2 * 17, 544.0)


def test_vit_through_the_cli(tmp_path):
    path = tmp_path / "vit.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})\n"
                    "from test_transformers import ViT\n\ndef make():\n    return ViT(True)\n")
    out = CliRunner().invoke(cli, ["count", f"{path}:make", "--input-size", "32", "--ops", "all", "--format", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["totals"]["macs"] == TOTAL_MACS and doc["unsupported_ops"] == {}
    assert doc["setting"]["dataset"] == "custom"
    assert {layer["formula"] for layer in doc["layers"] if layer["kind"] == "matmul"} == {"matmul"}


def test_compare_a_vit_in_every_variant_that_applies(tmp_path, capsys):
    from hwsim.cli import main

    path = tmp_path / "vit.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})\n"
                    "from test_transformers import ViT\n\ndef make():\n    return ViT(False)\n")
    with pytest.raises(SystemExit) as exc:
        main(["compare", f"{path}:make", "--input-size", "32", "--format", "json"])
    captured = capsys.readouterr()
    assert exc.value.code == 0
    rows = {row["variant"]: row for row in json.loads(captured.out)["variants"]}
    # SPEC 4.2: every variant applies to a transformer. float: one alpha per weight layer but the head (the
    # patch conv and four linears per block); oat: a FiLM(1, 64) = 2*64 + 128 + 128*128 + 128 params after
    # each of the 2 * DEPTH + 1 LayerNorms; the MACs of the layers do not change
    assert list(rows) == ["base", "float", "oat", "floats-i", "floats-c", "float-slim", "oat-slim", "floats-slim"]
    assert rows["float"]["params"] == TOTAL_PARAMS + 1 + 4 * DEPTH and rows["float"]["macs"] == TOTAL_MACS
    assert rows["oat"]["params"] == TOTAL_PARAMS + (2 * DEPTH + 1) * (2 * DIM + 2 * DIM + 4 * DIM * DIM + 2 * DIM)
    assert rows["oat"]["macs"] == TOTAL_MACS
    assert rows["floats-i"]["params_nonzero"] < rows["float"]["params"]
