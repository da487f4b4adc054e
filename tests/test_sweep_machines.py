"""Sweeps with energy and over systolic arrays: every row equals the single-configuration model, the Pareto sets
(size vs energy, size vs systolic delay) equal brute-force ones, and the CLI refuses fields of the other arch."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.cli import main
from hwsim.delay import LayerShape, hardware_grid, model_delay, model_energy
from hwsim.hardware import apply_overrides, get_preset
from hwsim.sweep import Sweep, SystolicSweep

ASIC65 = get_preset("asic65")
SA32 = get_preset("systolic32")
LAYERS = [
    LayerShape("stem", "conv", k=3, c_in=3, c_out=64, h_out=32, w_out=32),
    LayerShape("a", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32, formula="eq8"),
    LayerShape("b", "conv", k=3, c_in=64, c_out=128, h_out=16, w_out=16, formula="eq9", film_dim=1,
               film_channels=128),
    LayerShape("dw", "conv", k=3, c_in=128, c_out=128, h_out=16, w_out=16, groups=128),
    LayerShape("fc", "linear", k=1, c_in=128, c_out=10),
]
PLAIN = [LayerShape(l.name, l.kind, l.k, l.c_in, l.c_out, l.h_out, l.w_out, l.groups) for l in LAYERS]


def brute_front(size, cost, n):
    keep = [i for i in range(n)
            if not np.any((size <= size[i]) & (cost <= cost[i]) & ((size < size[i]) | (cost < cost[i])))]
    return sorted(keep, key=lambda i: (size[i], i))


# ------------------------------------------------------------------------------------ energy on the ASIC
def test_energy_rows_equal_the_single_configuration_energy():
    axes = {"b_w": [4, 8, 16], "n_mult": [64, 175], "b_io": [16, 32]}
    sweep = Sweep(hardware_grid(ASIC65, sparse=True, **axes), tuple(axes), LAYERS, PLAIN, hardware=ASIC65,
                  energy=True)
    cols = sweep.columns(np.arange(len(sweep)))
    i = 0
    for b_io in axes["b_io"]:
        for b_w in axes["b_w"]:
            for n_mult in axes["n_mult"]:
                # e_read_pj prices a step of the base 16 x 4 bits: a 32-bit port's step costs twice as much
                hw = apply_overrides(ASIC65, [f"b_w={b_w}", f"n_mult={n_mult}", f"b_io={b_io}",
                                              f"e_read_pj={274.0 * b_io / 16}"])
                assert cols["energy_pj"][i] == model_energy(LAYERS, hw).energy_pj
                assert cols["plain_energy_pj"][i] == model_energy(PLAIN, hw).energy_pj
                assert cols["delay_ns"][i] == model_delay(LAYERS, hw).delay_ns
                i += 1
    # at the base width the sweep's energy is the single configuration's, to the last bit
    at_base = Sweep(hardware_grid(ASIC65, sparse=True, n_mult=[175]), ("n_mult",), LAYERS, PLAIN,
                    hardware=ASIC65, energy=True)
    assert at_base.columns(np.array([0]))["energy_pj"][0] == model_energy(LAYERS, ASIC65).energy_pj


axis_values = {
    "b_io": st.lists(st.sampled_from([4, 8, 16, 64]), min_size=1, max_size=3),
    "b_w": st.lists(st.sampled_from([1, 4, 8, 16]), min_size=1, max_size=3),
    "n_bank": st.lists(st.integers(1, 12), min_size=1, max_size=4),
    "n_mult": st.lists(st.integers(1, 400), min_size=1, max_size=4),
    "t_read_ns": st.lists(st.sampled_from([1.0, 9.0]), min_size=1, max_size=2),
    "t_mult_ns": st.lists(st.sampled_from([1.0, 4.0]), min_size=1, max_size=2),
}


@st.composite
def grids(draw):
    names = draw(st.lists(st.sampled_from(sorted(axis_values)), min_size=1, max_size=6, unique=True))
    return {name: draw(axis_values[name]) for name in names}


@settings(max_examples=60, deadline=None)
@given(grids())
def test_energy_pareto_equals_brute_force(axes):
    sweep = Sweep(hardware_grid(ASIC65, sparse=True, **axes), tuple(axes), LAYERS, PLAIN, hardware=ASIC65,
                  energy=True)
    cols = sweep.columns(np.arange(len(sweep)), hw_size=True)
    assert sweep.pareto_energy().tolist() == brute_front(cols["hw_size"], cols["energy_pj"], len(sweep))


# ------------------------------------------------------------------------------------ systolic arrays
def test_systolic_rows_equal_the_single_configuration_model():
    axes = {"array_rows": [4, 32], "array_cols": [7, 32], "vector_lanes": [0, 8], "t_cycle_ns": [1.0, 2.5]}
    sweep = SystolicSweep(SA32, axes, LAYERS, PLAIN, energy=True)
    cols = sweep.columns(np.arange(len(sweep)))
    i = 0
    for r in axes["array_rows"]:
        for c in axes["array_cols"]:
            for lanes in axes["vector_lanes"]:
                for t in axes["t_cycle_ns"]:
                    hw = dataclasses.replace(SA32, array_rows=r, array_cols=c, vector_lanes=lanes, t_cycle_ns=t)
                    report = model_delay(LAYERS, hw)
                    assert (cols["cycles"][i], cols["delay_ns"][i]) == (report.cycles, report.delay_ns)
                    assert cols["plain_delay_ns"][i] == model_delay(PLAIN, hw).delay_ns
                    assert cols["energy_pj"][i] == model_energy(LAYERS, hw).energy_pj
                    assert [cols[name][i] for name in axes] == [r, c, lanes, t]
                    i += 1


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       cols=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       lanes=st.lists(st.sampled_from([0, 1, 64]), min_size=1, max_size=2),
       t_cycle=st.lists(st.sampled_from([1.0, 2.0, 3.5]), min_size=1, max_size=2))
def test_systolic_pareto_equals_brute_force(rows, cols, lanes, t_cycle):
    axes = {"array_rows": rows, "array_cols": cols, "vector_lanes": lanes, "t_cycle_ns": t_cycle}
    sweep = SystolicSweep(SA32, axes, LAYERS, PLAIN)
    c = sweep.columns(np.arange(len(sweep)), hw_size=True)
    assert sweep.pareto().tolist() == brute_front(c["hw_size"], c["delay_ns"], len(sweep))


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize(("args", "fragment"), [
    (["--hw", "systolic32", "--grid", "n_mult=1,2"], "--grid n_mult does not apply to arch 'systolic'"),
    (["--grid", "array_rows=8,16"], "--grid array_rows does not apply to arch 'von-neumann'"),
    (["--hw", "systolic32", "--grid", "b_w=4,8"], "--grid b_w cannot be swept on arch 'systolic'"),
    (["--hw", "systolic32", "--grid", "array_rows=0,8"], "array_rows=0 must be an integer in [1, 65536]"),
    (["--grid", "n_mult=1,2", "--pareto-by", "energy"], "--pareto-by applies with --pareto only"),
    (["--grid", "n_mult=1,2", "--energy", "--set", "e_read_pj=-1"], "e_read_pj=-1.0 must be a number"),
])
def test_bad_sweeps_are_one_line_exit_2(capsys, args, fragment):
    code, out, err = run_cli(capsys, "sweep", "resnet18", *args)
    assert code == 2 and out == "" and err.count("\n") == 1 and fragment in err, err


def test_cli_systolic_sweep_json(capsys):
    code, out, _ = run_cli(capsys, "sweep", "resnet18", "--variant", "oat", "--hw", "systolic32",
                           "--grid", "array_rows=16,32", "--grid", "array_cols=32", "--energy", "--format", "json")
    doc = json.loads(out)
    # the 32 x 32 row is the systolic32 preset itself
    row = [r for r in doc["rows"] if r["array_rows"] == 32][0]
    from hwsim.cost import ModelSetting
    from hwsim.shapecache import model_shapes

    shapes, plain = model_shapes(ModelSetting("resnet18", "oat"))
    assert row["cycles"] == model_delay(shapes, SA32).cycles
    assert row["energy_pj"] == model_energy(shapes, SA32).energy_pj
    assert round(row["norm_energy"], 4) == 1.2791 and doc["hardware"]["arch"] == "systolic"


def test_the_von_neumann_grid_refuses_a_systolic_base():
    from hwsim.errors import HwsimError

    with pytest.raises(HwsimError, match="'systolic32' is a systolic array"):
        hardware_grid(SA32, n_mult=[1])


def test_systolic_energy_pareto_is_the_smallest_arrays():
    # energy does not depend on the array (each MAC once, each weight read once): every configuration of the
    # smallest arrays is on the front, nothing larger is
    axes = {"array_rows": [8, 4, 16], "array_cols": [2, 8], "t_cycle_ns": [1.0, 3.0]}
    sweep = SystolicSweep(SA32, axes, LAYERS, PLAIN, energy=True)
    c = sweep.columns(np.arange(len(sweep)), hw_size=True)
    front = sweep.pareto("energy").tolist()
    assert front == brute_front(c["hw_size"], c["energy_pj"], len(sweep))
    assert sorted(c["hw_size"][front].tolist()) == [8, 8]  # 4 x 2 at both clocks
