"""Sweeps: factorised totals equal the per-configuration model; the Pareto set equals a brute-force one;
CSV written in chunks equals the table renderer's CSV."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim.sweep as sweep_module
from hwsim.cli import cli
from hwsim.delay import LayerShape, delay_grid, hardware_grid, model_delay, model_totals_grid
from hwsim.hardware import HardwareConfig, get_preset
from hwsim.output import render_rows
from hwsim.sweep import Sweep, rows, write_csv

ASIC65 = get_preset("asic65")
LAYERS = [
    LayerShape("stem", "conv", k=3, c_in=3, c_out=64, h_out=32, w_out=32),
    LayerShape("a", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32, formula="eq8"),
    LayerShape("b", "conv", k=3, c_in=64, c_out=128, h_out=16, w_out=16, formula="eq9", film_dim=1,
               film_channels=128),
    LayerShape("dw", "conv", k=3, c_in=128, c_out=128, h_out=16, w_out=16, groups=128, nnz=500),
    LayerShape("fc", "linear", k=1, c_in=128, c_out=10),
]
PLAIN = [LayerShape(l.name, l.kind, l.k, l.c_in, l.c_out, l.h_out, l.w_out, l.groups) for l in LAYERS]

axis_values = {
    "b_io": st.lists(st.sampled_from([4, 8, 16, 24, 64]), min_size=1, max_size=3),
    "b_w": st.lists(st.sampled_from([1, 4, 6, 8, 16]), min_size=1, max_size=3),
    "n_bank": st.lists(st.integers(1, 12), min_size=1, max_size=4),
    "n_mult": st.lists(st.integers(1, 400), min_size=1, max_size=5),
    "t_read_ns": st.lists(st.sampled_from([0.5, 1.0, 3.0, 9.0, 12.5]), min_size=1, max_size=3),
    "t_mult_ns": st.lists(st.sampled_from([0.25, 1.0, 2.0, 4.0]), min_size=1, max_size=3),
}


@st.composite
def grids(draw):
    names = draw(st.lists(st.sampled_from(sorted(axis_values)), min_size=1, max_size=6, unique=True))
    return {name: draw(axis_values[name]) for name in names}  # repeated values: ties in the Pareto set


@settings(max_examples=60, deadline=None)
@given(grids())
def test_factorised_totals_equal_the_full_layer_by_configuration_sum(axes):
    dense = [LayerShape(**{**l.__dict__, "nnz": None}) for l in LAYERS]
    full = delay_grid(dense, hardware_grid(ASIC65, **axes))  # (layers, configs)
    open_ = model_totals_grid(LAYERS, hardware_grid(ASIC65, sparse=True, **axes))
    expected = np.asarray(full.reads).sum(0) * full_grid_t(axes, "t_read_ns") + \
        np.asarray(full.mult_passes).sum(0) * full_grid_t(axes, "t_mult_ns")
    assert np.array_equal(open_.delay_ns().reshape(-1), expected)
    index = np.arange(len(expected))[::-3]
    assert np.array_equal(open_.delay_ns(index), expected[index])


def full_grid_t(axes, name):
    return hardware_grid(ASIC65, **axes).__getattribute__(name)


def test_totals_match_the_single_configuration_model():
    grid = hardware_grid(ASIC65, sparse=True, n_mult=[64, 175], b_w=[6, 8], t_read_ns=[9.0, 2.5])
    totals = model_totals_grid(LAYERS, grid).delay_ns().reshape(-1)
    dense = [LayerShape(**{**l.__dict__, "nnz": None}) for l in LAYERS]
    for i, (b_w, n_mult, t_read) in enumerate((b, m, t) for b in (6, 8) for m in (64, 175) for t in (9.0, 2.5)):
        hw = HardwareConfig(b_w=b_w, n_mult=n_mult, t_read_ns=t_read)
        assert totals[i] == model_delay(dense, hw).delay_ns


def brute_pareto(sweep: Sweep) -> list[int]:
    cols = sweep.columns(np.arange(len(sweep)), hw_size=True)
    size, delay = cols["hw_size"], cols["delay_ns"]
    keep = [i for i in range(len(sweep))
            if not np.any((size <= size[i]) & (delay <= delay[i]) & ((size < size[i]) | (delay < delay[i])))]
    return sorted(keep, key=lambda i: (size[i], i))


@settings(max_examples=80, deadline=None)
@given(grids())
def test_pareto_equals_brute_force(axes):
    sweep = Sweep(hardware_grid(ASIC65, sparse=True, **axes), tuple(axes), LAYERS, PLAIN)
    assert sweep.pareto().tolist() == brute_pareto(sweep)


def test_pareto_keeps_ties_and_drops_dominated_configurations():
    # n_bank x n_mult = 4 both ways; b_io 8 and 16 tie when reads are the same; bigger arrays never slower
    sweep = Sweep(hardware_grid(ASIC65, sparse=True, n_bank=[1, 2, 4], n_mult=[1, 2, 4]), ("n_bank", "n_mult"),
                  LAYERS, PLAIN)
    kept = sweep.columns(sweep.pareto(), hw_size=True)
    assert sorted(kept["hw_size"].tolist()) == kept["hw_size"].tolist()
    assert np.all(np.diff(kept["delay_ns"]) <= 0)
    assert sweep.pareto().tolist() == brute_pareto(sweep)
    with pytest.raises(ValueError, match="open grid"):
        Sweep(hardware_grid(ASIC65, n_mult=[1, 2]), ("n_mult",), LAYERS, PLAIN).pareto()


@pytest.mark.parametrize("chunk", [1, 7, 1 << 18])
def test_chunked_csv_equals_the_table_renderers_csv(chunk, monkeypatch):
    monkeypatch.setattr(sweep_module, "CHUNK", chunk)
    sweep = Sweep(hardware_grid(ASIC65, sparse=True, n_mult=[64, 175, 256], t_mult_ns=[0.3, 4.0],
                                n_bank=[2, 4]), ("n_mult", "t_mult_ns", "n_bank"), LAYERS, PLAIN)
    out = io.StringIO()
    seen = []
    write_csv(sweep, out.write, progress=lambda done, total: seen.append((done, total)))
    assert out.getvalue() == render_rows(rows(sweep), "csv") + "\n"
    assert seen[-1] == (12, 12) and len(seen) == -(-12 // chunk)
    hw = HardwareConfig(n_mult=64, t_mult_ns=0.3, n_bank=2)
    dense = [LayerShape(**{**l.__dict__, "nnz": None}) for l in LAYERS]
    total, plain = model_delay(dense, hw).delay_ns, model_delay(PLAIN, hw).delay_ns
    assert rows(sweep)[0] == {"n_mult": 64, "t_mult_ns": 0.3, "n_bank": 2, "delay_ns": total,
                              "plain_delay_ns": plain, "norm_delay": total / plain}


def invoke(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_pareto_and_csv(tmp_path, one_thread):
    grid = ["--grid", "n_mult=50:400:50", "--grid", "n_bank=1,2,4", "--grid", "b_io=8,16"]
    doc = json.loads(invoke("sweep", "resnet18", "--variant", "oat", *grid, "--format", "json"))
    full = json.loads(invoke("sweep", "resnet18", "--variant", "oat", *grid, "--pareto", "--format", "json"))
    assert len(doc["rows"]) == 48 and "pareto" not in doc and full["pareto"] == "n_mult x n_bank vs delay_ns"
    front = [(r["n_mult"] * r["n_bank"], r["delay_ns"]) for r in full["rows"]]
    points = [(r["n_mult"] * r["n_bank"], r["delay_ns"]) for r in doc["rows"]]
    expected = sorted({p for p in points if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points)})
    assert sorted(set(front)) == expected and all(r["b_io"] == 16 for r in full["rows"])
    out = tmp_path / "s.csv"
    invoke("sweep", "resnet18", "--variant", "oat", *grid, "--format", "csv", "-o", str(out))
    lines = out.read_text().splitlines()
    assert lines[0] == "n_mult,n_bank,b_io,delay_ns,plain_delay_ns,norm_delay" and len(lines) == 49
    assert lines[1].split(",")[:4] == ["50", "1", "8", repr(doc["rows"][0]["delay_ns"])]


def test_sweep_json_names_the_setting_it_costed(capsys) -> None:
    import json

    from hwsim.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["sweep", "small_cnn", "--dataset", "mnist", "--variant", "float-slim", "--width", "0.5",
              "--grid", "n_mult=64,128", "--format", "json"])
    document = json.loads(capsys.readouterr().out)
    assert exc.value.code == 0 and len(document["rows"]) == 2
    assert (document["setting"]["width"], document["setting"]["dataset"]) == (0.5, "mnist")
