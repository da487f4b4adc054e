"""SCALE-Sim v3 input files from hwsim's layer records (SPEC 3.3): a topology CSV, a config and a layout.

What is written to a folder, so that ``python -m scalesim.scale -c STEM.cfg -t STEM.csv -l layout.csv -p out``
runs in it as it is:

* ``STEM.csv``, the topology in SCALE-Sim's conv form: the header ``Layer name, IFMAP Height, IFMAP Width, Filter
  Height, Filter Width, Channels, Num Filter, Strides,`` and one row per GEMM of :mod:`hwsim.export.gemm`, every
  row ending with a comma (its parser drops the last field). A 2-D conv is written as a convolution: SCALE-Sim
  has no padding, so the input is the part the outputs read, ``IFMAP = (H_o - 1) s + k``, and its output is
  again H_o x W_o (with one stride for both axes, as SCALE-Sim has: the height's; a dilated kernel is written
  at its k, whose MACs it is). Everything else (linears, activation products, a FLOAT layer with its noise row, the FiLM steps) is
  a GEMM (M, N, K) written as the convolution SCALE-Sim's own GEMM reader makes of it: an M x K input, one
  1 x K filter per column, ``name, M, K, 1, K, 1, N, 1,``. A grouped conv is one row per group, a batched
  product one row per product.
* ``STEM.cfg``: the array (``ArrayHeight`` = rows R, ``ArrayWidth`` = columns C) and dataflow of the hardware; a
  Von-Neumann machine (the FLOAT paper's ASIC) becomes the R x C array with R C = n_mult closest to square,
  R >= C (25 x 7 for asic65's 175 multipliers), weight-stationary (its weights stay while activations stream).
  SRAM sizes and bandwidth are SCALE-Sim's example values (64 kB each, bandwidth estimated): they change its
  memory traces and stall estimate, not its compute cycles.
* ``layout.csv``: the header of a layout file and no layer (SCALE-Sim opens it even when no custom layout is on).
* ``hwsim_rows.csv``: which hwsim layer and part each topology row is, and its M, N, K (SCALE-Sim's report
  numbers its rows from 0 in this order).

Row names are the hwsim layer names made safe for SCALE-Sim: characters other than letters, digits, ``_``,
``.`` and ``-`` become ``_``, and ``DP`` becomes ``Dp`` (SCALE-Sim splits a row whose name contains ``DP`` into
one depthwise layer per channel).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hwsim.export.gemm import Gemm, model_gemms

TOPOLOGY_HEADER = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels",
                   "Num Filter", "Strides")
#: SCALE-Sim's layout header (its ``layouts/conv_nets/*.csv``); the file holds no layer.
LAYOUT_HEADER = ("Layer name", "IFMAP Height Intraline Factor", "IFMAP Width Intraline Factor",
                 "Filter Height Intraline Factor", "Filter Width Intraline Factor", "Channel Intraline Factor",
                 "Num Filter Intraline Factor", "IFMAP Height Intraline Order", "IFMAP Width Intraline Order",
                 "Channel Intraline Order", "IFMAP Height Interline Order", "IFMAP Width Interline Order",
                 "Channel Interline Order", "Num Filter Intraline Order", "Channel Intraline Order",
                 "Filter Height Intraline Order", "Filter Width Intraline Order", "Num Filter Interline Order",
                 "Channel Interline Order", "Filter Height Interline Order", "Filter Width Interline Order")
ROWS_HEADER = ("row", "scalesim_name", "layer", "part", "index", "m", "n", "k", "noise")
DATAFLOWS = ("ws", "os", "is")
#: The command the written folder runs with (STEM replaced).
COMMAND = "python -m scalesim.scale -c {stem}.cfg -t {stem}.csv -l layout.csv -p out"


@dataclass(frozen=True)
class TopologyRow:
    """One row of the topology CSV and the GEMM it is."""

    name: str
    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    num_filter: int
    stride: int
    gemm: Gemm

    def cells(self) -> tuple:
        return (self.name, self.ifmap_h, self.ifmap_w, self.filter_h, self.filter_w, self.channels,
                self.num_filter, self.stride)


def von_neumann_array(n_mult: int) -> tuple[int, int]:
    """The R x C array with R C = n_mult closest to square, R >= C.

    >>> von_neumann_array(175), von_neumann_array(256), von_neumann_array(7)
    ((25, 7), (16, 16), (7, 1))
    """
    cols = max(c for c in range(1, math.isqrt(n_mult) + 1) if n_mult % c == 0)
    return n_mult // cols, cols


def array_of(hw) -> tuple[int, int, str]:
    """(rows, cols, dataflow) of the hardware: a systolic array's own, a Von-Neumann machine's as
    :func:`von_neumann_array` and ``ws``."""
    if getattr(hw, "arch", "von-neumann") == "systolic":
        return hw.array_rows, hw.array_cols, hw.dataflow
    rows, cols = von_neumann_array(hw.n_mult)
    return rows, cols, "ws"


def safe_name(name: str) -> str:
    """A layer name SCALE-Sim reads back unchanged and never takes for a depthwise layer.

    >>> safe_name("layer1.0.conv1"), safe_name("blocks.DPconv,x")
    ('layer1.0.conv1', 'blocks.Dpconv_x')
    """
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name).replace("DP", "Dp") or "layer"


def topology_rows(gemms: Sequence[Gemm]) -> list[TopologyRow]:
    """The topology rows of ``gemms``, named uniquely (``layer``, ``layer.g3`` for a group, ``layer.b1`` for a
    batched product, ``layer.film_mlp1`` ... for the FiLM's steps)."""
    counts: dict[tuple[str, str], int] = {}
    for gemm in gemms:
        counts[(gemm.layer, gemm.part)] = counts.get((gemm.layer, gemm.part), 0) + 1
    rows, used = [], set()
    for gemm in gemms:
        name = safe_name(gemm.layer)
        if gemm.part.startswith("film_"):
            name += f".{gemm.part}"
        if counts[(gemm.layer, gemm.part)] > 1:
            name += f".{'b' if gemm.part == 'matmul' else 'g'}{gemm.index}"
        base, n = name, 1
        while name in used:  # two layers whose names differ only in unsafe characters
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        if gemm.conv_form:  # SCALE-Sim has one stride for both axes: the input it reads gives H_o x W_o with it
            kh, kw, s = gemm.kernel_h, gemm.kernel_w, gemm.stride_h
            rows.append(TopologyRow(name, (gemm.h_out - 1) * s + kh, (gemm.w_out - 1) * s + kw, kh, kw,
                                    gemm.channels, gemm.n, s, gemm))
        else:
            rows.append(TopologyRow(name, gemm.m, gemm.k, 1, gemm.k, 1, gemm.n, 1, gemm))
    return rows


def topology_text(rows: Iterable[TopologyRow]) -> str:
    """The topology CSV: SCALE-Sim's header and rows, each line ending with a comma."""
    lines = [", ".join(TOPOLOGY_HEADER) + ","]
    lines += [", ".join(str(cell) for cell in row.cells()) + "," for row in rows]
    return "\n".join(lines) + "\n"


def config_text(run_name: str, rows: int, cols: int, dataflow: str) -> str:
    """A SCALE-Sim config for an R x C array and a dataflow (SCALE-Sim's example memory settings)."""
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow {dataflow!r} is not one of {', '.join(DATAFLOWS)}")
    return f"""[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:   64
FilterSramSzkB:  64
OfmapSramSzkB:   64
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : {dataflow}
MemoryBanks:   1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def write_scalesim(records: Iterable, hw, folder: str | Path, stem: str,
                   array: tuple[int, int, str] | None = None) -> list[TopologyRow]:
    """Write ``STEM.csv``, ``STEM.cfg``, ``layout.csv``, ``hwsim_rows.csv`` and ``README.txt`` into ``folder``
    (which exists) for the layer records of one model; ``array``: (rows, cols, dataflow), default
    :func:`array_of` ``(hw)``. Returns the topology rows."""
    folder = Path(folder)
    rows_, cols, dataflow = array or array_of(hw)
    rows = topology_rows(model_gemms(records))
    (folder / f"{stem}.csv").write_text(topology_text(rows), encoding="utf-8")
    (folder / f"{stem}.cfg").write_text(config_text(stem, rows_, cols, dataflow), encoding="utf-8")
    (folder / "layout.csv").write_text(", ".join(LAYOUT_HEADER) + ",\n", encoding="utf-8")
    with open(folder / "hwsim_rows.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(ROWS_HEADER)
        for i, row in enumerate(rows):
            g = row.gemm
            writer.writerow((i, row.name, g.layer, g.part, g.index, g.m, g.n, g.k, int(g.noise)))
    lanes = getattr(hw, "vector_lanes", 0) or 0
    vector = (f"Note: hwsim costs the FiLM affine rows on {lanes} vector lanes beside the array; SCALE-Sim has no "
              "vector unit and runs them on the array, so its cycles for the .film_affine rows are not hwsim's.\n"
              if lanes and any(r.gemm.part == "film_affine" for r in rows) else "")
    (folder / "README.txt").write_text(
        f"SCALE-Sim v3 input written by hwsim: a {rows_} x {cols} array, dataflow {dataflow}.\n"
        f"Run it here with\n\n    {COMMAND.format(stem=stem)}\n\n"
        f"(SCALE-Sim 3.0.0 needs numpy < 2.3). Its out/{stem}/COMPUTE_REPORT.csv numbers the rows of {stem}.csv "
        "from 0; hwsim_rows.csv says which hwsim layer and part each row is. Convs are written as convolutions "
        "without padding (IFMAP = (H_o - 1) s + k); everything else as the GEMM (M, N, K) in conv form "
        "(M x K input, N filters of 1 x K).\n" + vector, encoding="utf-8")
    return rows


# ------------------------------------------------------------------------------------------ reading back
def read_topology(path: str | Path) -> list[tuple]:
    """The rows of a conv-form topology CSV as SCALE-Sim 3.0.0 parses them (``topology_utils.load_arrays_conv``:
    skip the header and blank lines, split on commas, drop the last field, strip): (name, ifmap_h, ifmap_w,
    filter_h, filter_w, channels, num_filter, stride)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines()[1:]:
        line = line.strip()
        if not line:
            continue
        cells = [c.strip() for c in line.split(",")[:-1]]
        rows.append((cells[0], *(int(c) for c in cells[1:8])))
    return rows


def scalesim_gemm(row: tuple) -> tuple[int, int, int]:
    """(M, N, K) that SCALE-Sim derives from a conv-form row (``topology_utils.topo_calc_hyperparams``: output
    ``ceil((I - F + s) / s)`` per axis, window ``F_h F_w C``)."""
    _, ih, iw, fh, fw, channels, filters, stride = row
    oh, ow = -(-(ih - fh + stride) // stride), -(-(iw - fw + stride) // stride)
    return oh * ow, filters, fh * fw * channels


def read_compute_report(path: str | Path) -> list[dict[str, float]]:
    """SCALE-Sim's ``COMPUTE_REPORT.csv`` as one dict per layer (keys stripped; ``LayerID`` and the cycles
    as ints)."""
    with open(path, encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    header = [h.strip() for h in table[0]]
    out = []
    for line in table[1:]:
        if not any(cell.strip() for cell in line):
            continue
        row = {}
        for key, cell in zip(header, line):
            if key:
                value = float(cell)
                row[key] = int(value) if value.is_integer() and ("Cycles" in key or key == "LayerID") else value
        out.append(row)
    return out
