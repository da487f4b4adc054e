"""hwsim's systolic cycles (SPEC 3.2's closed form, :mod:`hwsim.systolic`) against SCALE-Sim 3.0.0's own numbers.

``tests/data/scalesim/compute_reports.csv`` holds SCALE-Sim's cycles and filter reads for every distinct layer
of CIFAR ResNet18 as hwsim exports it (base, FLOAT, OAT) on 8 x 8, 25 x 7 and 32 x 32 arrays in ws, os and is,
produced by ``tests/data/scalesim/regenerate.py`` (see its docstring: ``full`` rows are SCALE-Sim's simulator,
``compute`` rows its compute model without the memory simulation). No SCALE-Sim is needed here; the last test
runs the real tool on an export when the ``hwtools`` extra is installed.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hwsim import systolic
from hwsim.export.gemm import as_record, model_gemms
from hwsim.export.scalesim import read_compute_report, scalesim_gemm, topology_rows

DATA = Path(__file__).resolve().parent / "data" / "scalesim" / "compute_reports.csv"
ARRAYS = {"8x8": (8, 8), "25x7": (25, 7), "32x32": (32, 32)}
GEOMETRY = ("ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "num_filter", "stride")


@pytest.fixture(scope="module")
def table() -> list[dict]:
    rows = list(csv.DictReader(open(DATA)))
    for row in rows:
        for key in ("m", "n", "k", "cycles", "filter_reads", *GEOMETRY):
            row[key] = int(row[key])
    return rows


def test_the_stored_reports_cover_every_array_dataflow_and_variant(table):
    covered = {(r["array"], r["dataflow"], r["variant"]) for r in table if r["run"] == "compute"}
    assert covered == {(a, d, v) for a in ARRAYS for d in ("ws", "os", "is") for v in ("base", "float", "oat")}
    full = {(r["array"], r["dataflow"]) for r in table if r["run"] == "full"}
    assert full == {(a, d) for a in ARRAYS for d in ("ws", "os", "is")}
    parts = {r["part"] for r in table}
    assert parts == {"conv", "linear", "film_mlp1", "film_mlp2", "film_affine"}
    assert any(r["m"] == r["ifmap_h"] and r["filter_h"] == 1 and r["variant"] == "float" for r in table)  # noise rows


def test_closed_form_equals_scalesim_on_every_stored_row(table):
    for r in table:
        rows, cols = ARRAYS[r["array"]]
        assert systolic.gemm_cycles(r["m"], r["n"], r["k"], rows, cols, r["dataflow"]) == r["cycles"], r


def test_each_row_is_scalesims_reading_of_its_geometry(table):
    for r in table:
        assert scalesim_gemm((r["scalesim_name"], *(r[g] for g in GEOMETRY))) == (r["m"], r["n"], r["k"])


def test_full_runs_had_no_stall_and_agree_with_the_compute_model(table):
    full = [r for r in table if r["run"] == "full"]
    assert all(r["stall_cycles"] == "0" for r in full)
    # every distinct base and OAT row and two FLOAT rows at 32 x 32 ws; three layers at each other configuration
    assert len([r for r in full if (r["array"], r["dataflow"]) == ("32x32", "ws")]) == 12 + 12 + 2
    compute = {(r["array"], r["dataflow"], *(r[g] for g in GEOMETRY)): r for r in table if r["run"] == "compute"}
    matched = 0
    for r in full:
        twin = compute.get((r["array"], r["dataflow"], *(r[g] for g in GEOMETRY)))
        if twin is not None:
            assert (twin["cycles"], twin["filter_reads"]) == (r["cycles"], r["filter_reads"]), r
            matched += 1
    assert matched == len(full)


def test_filter_reads(table):
    """SCALE-Sim's filter SRAM reads: in ws K N, each weight once, as hwsim's read count (SPEC 3.2); in os the
    weights are read again for every fold of the M output rows over the R array rows, K N ceil(M / R); in is
    for every fold of the M inputs over the C columns, K N ceil(M / C)."""
    ws = [r for r in table if r["dataflow"] == "ws"]
    assert ws and all(r["filter_reads"] == r["k"] * r["n"] for r in ws)
    for r in (r for r in table if r["dataflow"] != "ws"):
        rows, cols = ARRAYS[r["array"]]
        folds = -(-r["m"] // (rows if r["dataflow"] == "os" else cols))
        assert r["filter_reads"] == r["k"] * r["n"] * folds, r


#: Every (array, dataflow, variant) whose rows all ran: SCALE-Sim builds its input-stationary schedule in time
#: quadratic in the folds, so is on the small arrays and OAT's FiLM affines in is left rows out (see regenerate.py).
COMPLETE = [(a, d, v) for a in sorted(ARRAYS) for d in ("ws", "os") for v in ("base", "float", "oat")] + \
    [("32x32", "is", "base"), ("32x32", "is", "float")]


@pytest.mark.parametrize(("array", "dataflow", "variant"), COMPLETE)
def test_resnet18_layer_by_layer(table, variant, array, dataflow):
    """Every layer of the network hwsim exports costs in hwsim exactly the cycles SCALE-Sim gave its rows."""
    from hwsim.cost import ModelSetting
    from hwsim.shapecache import analyze

    measured = {tuple(r[g] for g in GEOMETRY): r["cycles"] for r in table
                if r["array"] == array and r["dataflow"] == dataflow}
    records = [as_record(r) for r in analyze(ModelSetting("resnet18", variant)).trace.layers]
    per_layer: dict[str, int] = {}
    for row in topology_rows(model_gemms(records)):
        per_layer[row.gemm.layer] = per_layer.get(row.gemm.layer, 0) + measured[row.cells()[1:]]
    rows, cols = ARRAYS[array]
    assert len(per_layer) == 21
    for record in records:
        assert systolic.layer_cycles(record.shape(), rows, cols, dataflow) == per_layer[record.name], record.name


def test_film_costs_168_percent_of_its_conv_on_a_32x32_ws_array(table):
    """SPEC 3.2's finding, from SCALE-Sim's numbers: Eq. 9 charges the FiLM ~0.05%, the array +168%."""
    at = {(r["scalesim_name"], r["m"], r["n"], r["k"]): r["cycles"] for r in table
          if r["array"] == "32x32" and r["dataflow"] == "ws"}
    conv = next(c for (name, m, n, k), c in at.items() if (m, n, k) == (1024, 64, 576))
    film = sum(next(c for (name, m, n, k), c in at.items() if (m, n, k) == shape)
               for shape in ((1, 128, 1), (1, 128, 128), (65536, 1, 1)))
    assert conv == 40247 and round(film / conv, 2) == 1.68


@pytest.mark.slow
def test_real_scalesim_runs_the_export(tmp_path):
    """Opt-in: export, run ``python -m scalesim.scale`` as the README says, compare. SCALE-Sim runs in this Python
    (the ``hwtools`` extra) or in the one ``HWSIM_SCALESIM_PYTHON`` names (SCALE-Sim 3.0.0 needs numpy < 2.3, so
    it often lives in an environment of its own)."""
    python = os.environ.get("HWSIM_SCALESIM_PYTHON")
    if python is None:
        pytest.importorskip("scalesim.scale")  # not tests/data/scalesim, a namespace package on sys.path
        python = sys.executable
    from hwsim.cli import main

    out = tmp_path / "export"
    with pytest.raises(SystemExit) as exc:
        main(["export", "small_cnn", "--variant", "oat", "--input-size", "3,8,8", "--format", "scalesim",
              "--hw", "systolic32", "--set", "array_rows=8", "--set", "array_cols=4", "--out", str(out)])
    assert exc.value.code == 0
    stem = "small_cnn_oat"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([python, "-m", "scalesim.scale", "-c", f"{stem}.cfg", "-t", f"{stem}.csv", "-l",
                    "layout.csv", "-p", "out"], cwd=out, check=True, capture_output=True, env=env)
    report = read_compute_report(out / "out" / stem / "COMPUTE_REPORT.csv")
    rows = list(csv.DictReader(open(out / "hwsim_rows.csv")))
    assert len(report) == len(rows) == 3 + 3 * 3 + 1  # 3 convs with a FiLM each, the classifier
    for line, row in zip(report, rows, strict=True):
        expected = systolic.gemm_cycles(int(row["m"]), int(row["n"]), int(row["k"]), 8, 4, "ws")
        assert line["Total Cycles"] == expected and line["Stall Cycles"] == 0, row
