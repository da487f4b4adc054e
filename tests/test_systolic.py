"""Systolic arrays (SPEC 3.2): SCALE-Sim v3's compute cycles in closed form, worked by hand for small GEMMs in
every dataflow, checked against SCALE-Sim's schedule counted from its source, for every variant's GEMMs, grouped
convs and batched products; the systolic hardware fields and their bad values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwsim.cli import main
from hwsim.delay import LayerShape, layer_delay, model_delay
from hwsim.errors import HwsimError
from hwsim.hardware import HardwareConfig, get_preset, load_toml
from hwsim.systolic import (DATAFLOWS, gemm_arrays, gemm_cycles, gemm_list_cycles, layer_cycles, layer_gemms,
                            total_cycles_grid)

SA32 = get_preset("systolic32")


def conv(k, cin, cout, h, formula="eq7", d=0, groups=1, name="c", w=None):
    film = {"film_dim": d, "film_channels": cout} if formula == "eq9" else {}
    return LayerShape(name, "conv", k=k, c_in=cin, c_out=cout, h_out=h, w_out=w or h, groups=groups,
                      formula=formula, **film)


def systolic(rows, cols, dataflow="ws", **more) -> HardwareConfig:
    return HardwareConfig(arch="systolic", array_rows=rows, array_cols=cols, dataflow=dataflow, t_cycle_ns=4.0,
                          **more)


# ------------------------------------------------------------------------------------ the closed form by hand
# GEMM (M x K) @ (K x N) with M = 5, N = 3, K = 7 on a 2 x 4 array (R = 2, C = 4):
#   ws: ceil(K/R) ceil(N/C) (M + 2R + C - 2) - 1 = 4 * 1 * (5 + 4 + 4 - 2) - 1 = 43
#   os: ceil(M/R) ceil(N/C) (K + R + C - 2) - 1  = 3 * 1 * (7 + 2 + 4 - 2) - 1 = 32
#   is: ceil(K/R) ceil(M/C) (N + 2R + C - 2) - 1 = 4 * 2 * (3 + 4 + 4 - 2) - 1 = 71
@pytest.mark.parametrize(("dataflow", "cycles"), [("ws", 43), ("os", 32), ("is", 71)])
def test_small_gemm_by_hand_in_every_dataflow(dataflow, cycles):
    assert int(gemm_cycles(5, 3, 7, 2, 4, dataflow)) == cycles


# The same GEMM on a 4 x 2 array (the transposed array): ws 2 * 2 * (5 + 8 + 2 - 2) - 1 = 51,
# os 2 * 2 * (7 + 4 + 2 - 2) - 1 = 43, is 2 * 3 * (3 + 8 + 2 - 2) - 1 = 65: R and C are not interchangeable.
@pytest.mark.parametrize(("dataflow", "cycles"), [("ws", 51), ("os", 43), ("is", 65)])
def test_rows_and_columns_are_not_interchangeable(dataflow, cycles):
    assert int(gemm_cycles(5, 3, 7, 4, 2, dataflow)) == cycles


def scalesim_ws_rows(m, n, k, rows, cols):
    """SCALE-Sim's ws schedule, counted as its source builds it (scalesim-project/scale-sim-v2,
    scalesim/compute/systolic_compute_ws.py, create_filter_demand_mat): each of the row_fold = ceil(K/R) x
    col_fold = ceil(N/C) folds has R rows of weights pushed in (padded to the array), then
    ``arr_row + arr_col + T - 2`` rows while T = M inputs stream through and the sums drain; its compute
    report counts the cycles of those demand rows up to the last one (rows - 1)."""
    total = 0
    for _ in range(-(-n // cols)):
        for _ in range(-(-k // rows)):
            total += rows + (rows + cols + m - 2)
    return total - 1


def scalesim_os_rows(m, n, k, rows, cols):
    """SCALE-Sim's os schedule (scale-sim-v2 scalesim/compute/systolic_compute_os.py,
    create_filter_demand_mat): each of the ceil(M/R) x ceil(N/C) folds streams T = K operand rows, then
    ``arr_row - 1`` rows to drain, and skew_matrix adds ``arr_col - 1`` rows of pipeline fill."""
    total = 0
    for _ in range(-(-n // cols)):
        for _ in range(-(-m // rows)):
            total += k + (rows - 1) + (cols - 1)
    return total - 1


@pytest.mark.parametrize(("m", "n", "k", "rows", "cols"),
                         [(5, 3, 7, 2, 4), (1024, 64, 576, 32, 32), (64, 100, 9, 8, 8), (1, 128, 1, 25, 7)])
def test_closed_form_counts_scalesims_schedule(m, n, k, rows, cols):
    assert int(gemm_cycles(m, n, k, rows, cols, "ws")) == scalesim_ws_rows(m, n, k, rows, cols)
    assert int(gemm_cycles(m, n, k, rows, cols, "os")) == scalesim_os_rows(m, n, k, rows, cols)


def test_a_gemm_with_an_empty_dimension_costs_nothing():
    assert gemm_cycles(0, 3, 7, 2, 4, "ws").item() == 0 and gemm_cycles(5, 3, 0, 2, 4, "is").item() == 0


def test_unknown_dataflow_in_the_pure_function():
    with pytest.raises(ValueError, match="dataflow 'xs' must be one of ws, os, is"):
        gemm_cycles(1, 1, 1, 1, 1, "xs")


# ------------------------------------------------------------------------------------ layers and variants
def test_grouped_conv_is_g_gemms():
    # depthwise 3x3, 32 groups at 8x8 on 4x4 ws: each group M = 64, N = 1, K = 9:
    # ceil(9/4) ceil(1/4) (64 + 8 + 4 - 2) - 1 = 3 * 74 - 1 = 221; 32 of them = 7072
    dw = conv(3, 32, 32, 8, groups=32)
    assert [(g.m, g.n, g.k, g.count) for g in layer_gemms(dw)] == [(64, 1, 9, 32)]
    assert layer_cycles(dw, 4, 4, "ws") == 7072
    # 2 groups of 16 -> 16 at 8x8: M = 64, N = 8, K = 9 * 16 = 144: ceil(144/4) ceil(8/4) (74) - 1 = 5327; x2
    assert layer_cycles(conv(3, 32, 16, 8, groups=2), 4, 4, "ws") == 2 * (36 * 2 * 74 - 1)


def test_matmul_is_b_gemms():
    # 3 products [10, 6] @ [6, 5] (LayerShape: c_in = K = 6, c_out = 5, h_out = N = 10, w_out = b = 3) on 4x4 os:
    # ceil(10/4) ceil(5/4) (6 + 4 + 4 - 2) - 1 = 6 * 12 - 1 = 71; x3 = 213
    mm = LayerShape("attn", "matmul", k=1, c_in=6, c_out=5, h_out=10, w_out=3, formula="matmul")
    assert [(g.m, g.n, g.k, g.count) for g in layer_gemms(mm)] == [(10, 5, 6, 3)]
    assert layer_cycles(mm, 4, 4, "os") == 213


def test_linear_layer_is_one_row():
    # 512 -> 10 on 32 x 32 ws: M = 1, N = 10, K = 512: 16 * 1 * (1 + 64 + 32 - 2) - 1 = 1519
    assert layer_cycles(LayerShape("fc", "linear", k=1, c_in=512, c_out=10), 32, 32, "ws") == 1519


def test_float_noise_pass_is_one_more_streamed_row():
    # layer1.0.conv1 of ResNet18 (3x3 64->64 at 32x32) on 32x32 ws: plain 18 * 2 * (1024 + 94) - 1 = 40247;
    # FLOAT streams M + 1 = 1025 rows: 36 * 1119 - 1 = 40283, 36 cycles more (one per fold)
    assert layer_cycles(conv(3, 64, 64, 32), 32, 32, "ws") == 40247
    assert layer_cycles(conv(3, 64, 64, 32, "eq8"), 32, 32, "ws") == 40283


def test_oat_film_costs_168_percent_of_the_conv_on_a_32x32_array():
    """SPEC 3.2: FiLM +168% of ResNet18's layer1.0.conv1 on 32x32 ws (SCALE-Sim), where Eq. 9 charges 0.05%.
    film_mlp1 (1, 128, 1): 1 * 4 * (1 + 64 + 30) - 1 = 379; film_mlp2 (1, 128, 128): 4 * 4 * 95 - 1 = 1519;
    film_affine (65536, 1, 1): 65536 + 64 + 30 - 1 = 65629; sum 67527 = 1.678 x 40247."""
    oat = conv(3, 64, 64, 32, "eq9", d=1)
    assert [(g.part, g.m, g.n, g.k) for g in layer_gemms(oat)] == [
        ("layer", 1024, 64, 576), ("film_mlp1", 1, 128, 1), ("film_mlp2", 1, 128, 128), ("film_affine", 65536, 1, 1)]
    assert layer_cycles(oat, 32, 32, "ws") == 40247 + 379 + 1519 + 65629
    assert round((layer_cycles(oat, 32, 32, "ws") - 40247) / 40247, 2) == 1.68


def test_vector_lanes_run_the_film_affine_beside_the_array():
    # 16 lanes: ceil(64 * 1024 / 16) = 4096 cycles instead of 65629 on one PE
    oat = conv(3, 64, 64, 32, "eq9", d=1)
    assert layer_cycles(oat, 32, 32, "ws", vector_lanes=16) == 40247 + 379 + 1519 + 4096
    hw = systolic(32, 32, vector_lanes=16)
    assert layer_delay(oat, hw).cycles == 40247 + 379 + 1519 + 4096


def test_layer_delay_is_cycles_times_t_cycle():
    d = layer_delay(conv(3, 64, 64, 32), SA32)
    assert (d.cycles, d.reads, d.read_ns, d.delay_ns) == (40247, 0, 0.0, 40247 * 4.0)
    report = model_delay([conv(3, 64, 64, 32), conv(3, 64, 64, 32, "eq8", name="f")], SA32)
    assert report.cycles == 40247 + 40283 and report.delay_ns == (40247 + 40283) * 4.0


def test_whole_model_grid_equals_the_per_layer_sum():
    layers = [conv(3, 64, 64, 32, "eq9", d=3), conv(3, 64, 128, 7, "eq8", groups=4, w=9, name="g"),
              LayerShape("m", "matmul", k=1, c_in=33, c_out=17, h_out=50, w_out=3, formula="matmul"),
              conv(1, 3, 5, 1, "eq9", d=0, name="d0")]
    rows, cols, lanes = [1, 3, 8, 32, 7], [1, 5, 32, 25], [0, 1, 16]
    for dataflow in DATAFLOWS:
        grid = total_cycles_grid(gemm_arrays(layers), rows, cols, dataflow, lanes)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                for k, lane in enumerate(lanes):
                    expected = sum(layer_cycles(layer, r, c, dataflow, lane) for layer in layers)
                    assert grid[i, j, k] == expected
    assert gemm_list_cycles([], 4, 4, "ws") == 0


def test_resnet34_oat_and_float_on_32x32_ws():
    """SPEC 3.2: on CIFAR ResNet34 (32x32, ws, d = 1) the closed form gives OAT / base = 1.632 and FLOAT 1.007."""
    from hwsim.cost import ModelSetting
    from hwsim.shapecache import model_shapes

    ratios = {}
    for variant in ("float", "oat"):
        shapes, plain = model_shapes(ModelSetting("resnet34", variant))
        ratios[variant] = model_delay(shapes, SA32).cycles / model_delay(plain, SA32).cycles
    assert round(ratios["oat"], 3) == 1.632 and round(ratios["float"], 3) == 1.007


# ------------------------------------------------------------------------------------ hardware fields
def test_systolic32_preset():
    assert (SA32.arch, SA32.array_rows, SA32.array_cols, SA32.dataflow, SA32.t_cycle_ns, SA32.vector_lanes) == (
        "systolic", 32, 32, "ws", 4.0, 0)
    assert SA32.n_mult is None and SA32.t_read_ns is None and "SCALE-Sim" in SA32.description


def test_a_systolic_toml_needs_its_fields(tmp_path):
    path = tmp_path / "sa.toml"
    path.write_text('arch = "systolic"\narray_rows = 8\narray_cols = 8\nb_w = 8\n')
    with pytest.raises(HwsimError, match="does not set dataflow, t_cycle_ns: a systolic hardware file must set"):
        load_toml(path)
    path.write_text('arch = "systolic"\narray_rows = 8\narray_cols = 4\ndataflow = "is"\nt_cycle_ns = 2\nb_w = 8\n')
    hw = load_toml(path)
    assert (hw.array_rows, hw.array_cols, hw.dataflow, hw.vector_lanes) == (8, 4, "is", 0)
    # energies on the array price reads of the weight memory: b_io and n_bank are then required
    path.write_text(path.read_text() + "e_read_pj = 1\ne_mult_pj = 1\ne_add_pj = 1\ne_acc_pj = 1\n")
    with pytest.raises(HwsimError, match="does not set b_io, n_bank"):
        load_toml(path)


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


LAYER = "k=3,cin=64,cout=64,hout=32,wout=32"


@pytest.mark.parametrize(("hw", "override", "fragment"), [
    ("systolic32", "array_rows=0", "array_rows=0 must be an integer in [1, 65536]"),
    ("systolic32", "array_cols=-3", "array_cols=-3 must be an integer in [1, 65536]"),
    ("systolic32", "dataflow=xs", "dataflow='xs' must be one of ws, os, is"),
    ("systolic32", "t_cycle_ns=nan", "t_cycle_ns=nan must be a number in [1e-06, 1e+09]"),
    ("systolic32", "vector_lanes=-1", "vector_lanes=-1 must be an integer in [0, 4294967296]"),
    ("systolic32", "n_mult=175", "n_mult does not apply to arch 'systolic'"),
    ("systolic32", "t_read_ns=9", "t_read_ns does not apply to arch 'systolic'"),
    ("systolic32", "zero_skip=true", "zero_skip does not apply to arch 'systolic'"),
    ("asic65", "array_rows=32", "array_rows does not apply to arch 'von-neumann'"),
    ("asic65", "dataflow=ws", "dataflow does not apply to arch 'von-neumann'"),
    ("asic65", "arch=tpu", "arch='tpu' must be one of von-neumann, systolic"),
])
def test_bad_systolic_input_is_one_line_exit_2(capsys, hw, override, fragment):
    code, out, err = run_cli(capsys, "delay", "--layer", LAYER, "--hw", hw, "--set", override)
    assert code == 2 and out == "" and err.count("\n") == 1 and fragment in err, err


def test_delay_json_has_cycles_per_layer(capsys):
    code, out, _ = run_cli(capsys, "delay", "--layer", LAYER, "--layer", "k=1,cin=512,cout=10,kind=linear",
                           "--variant", "float", "--hw", "systolic32", "--format", "json")
    assert code is None or code == 0
    doc = json.loads(out)
    # the conv is FLOAT's (M + 1 rows): 40283; the classifier stays plain: 1519
    assert [layer["cycles"] for layer in doc["layers"]] == [40283, 1519]
    assert [layer["delay_ns"] for layer in doc["layers"]] == [40283 * 4.0, 1519 * 4.0]
    assert doc["totals"]["cycles"] == 41802 and doc["totals"]["delay_ns"] == 41802 * 4.0
    assert doc["hardware"]["arch"] == "systolic" and "n_mult" not in doc["hardware"]
    assert "systolic" in doc["conventions"]


@pytest.mark.parametrize(("dataflow", "cycles"), [("ws", 43), ("os", 32), ("is", 71)])
def test_set_dataflow_and_array_on_the_command_line(capsys, dataflow, cycles):
    # a 1x1 conv 7 -> 3 at 1 x 5 is the GEMM M = 5, N = 3, K = 7 of the hand-worked case above
    code, out, _ = run_cli(capsys, "delay", "--layer", "k=1,cin=7,cout=3,hout=1,wout=5", "--hw", "systolic32",
                           "--set", "array_rows=2", "--set", "array_cols=4", "--set", f"dataflow={dataflow}",
                           "--format", "json")
    assert json.loads(out)["layers"][0]["cycles"] == cycles


def test_array_sizes_broadcast():
    got = gemm_cycles(5, 3, 7, np.array([[2], [4]]), np.array([4, 2]), "ws")
    assert got.tolist() == [[43, 4 * 2 * (5 + 4 + 2 - 2) - 1], [2 * 1 * (5 + 8 + 4 - 2) - 1, 51]]
