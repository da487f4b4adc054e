"""Regenerate ``compute_reports.csv``: SCALE-Sim 3.0.0's cycles and filter reads for the layers hwsim exports.

Run from the repository root with hwsim's environment; SCALE-Sim runs in a second one (it needs numpy < 2.3):

    python tests/data/scalesim/regenerate.py --scalesim-python /work/venv-hwtools/bin/python

What is run (CIFAR ResNet18, the zoo's ``resnet18``, exported by :mod:`hwsim.export.scalesim`):

* ``full``: SCALE-Sim's simulator as ``python -m scalesim.scale`` runs it (``scalesim.scale_sim.scalesim``,
  compute and memory simulation; traces not written), on: every distinct row of the base network and of OAT
  (``film_mlp1``, ``film_mlp2``, ``film_affine``) and two FLOAT rows (a conv with its noise row, the GEMM
  (M + 1, N, K)) at 32 x 32 ws; and three layers (``conv1``, ``layer4.0.shortcut.0``, ``linear``) at every other
  array and dataflow. Cycles: the report's ``Total Cycles`` (``Stall Cycles`` is 0 in every run here). The
  whole simulator on everything would take hours of a shared CPU: 95% of its time is the memory simulation.
* ``compute``: SCALE-Sim's compute model alone (its operand matrices and ``systolic_compute_{ws,os,is}`` demand
  matrices), without the memory simulation that takes 95% of a run (13.6 s per ResNet18 layer at 32 x 32): on
  every distinct layer of base, FLOAT and OAT at 8 x 8, 25 x 7 and 32 x 32 in ws, os and is. With no stall its
  ``Total Cycles`` is the index of the last demand row (the cycle the last output is written), so cycles =
  demand rows - 1; filter reads = its filter requests, as the full report's. Where both ran they agree
  (tests/test_systolic_vs_scalesim.py checks it). Input-stationary rows are limited to those SCALE-Sim
  computes in reasonable time (:data:`IS_BUDGET`: its is schedule is built in time quadratic in the folds).

Rows are deduplicated by (M, N, K) and conv geometry before running (ResNet18's 21 layers have 12 shapes).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "compute_reports.csv"
ARRAYS = ((8, 8), (25, 7), (32, 32))
DATAFLOWS = ("ws", "os", "is")
VARIANTS = ("base", "float", "oat")
SAMPLE = ("conv1", "layer4.0.shortcut.0", "linear")
FLOAT_SAMPLE = ("layer3.0.shortcut.0", "layer4.0.conv1")
#: SCALE-Sim 3.0.0 builds its input-stationary demand matrices by concatenating every fold onto the matrix so far
#: (``systolic_compute_is.create_*_demand_mat``): time grows with folds x cycles, hours for ResNet18's large layers
#: (ceil(K/R) ceil(M/C) = 9,216 folds for layer1.0.conv1 at 8 x 8, 2,048 for a FiLM affine at 32 x 32). Rows
#: above this folds x cycles are left out of the is runs.
IS_BUDGET = 6 * 10**7
COLUMNS = ("array", "dataflow", "run", "variant", "scalesim_name", "layer", "part", "m", "n", "k",
           "ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "num_filter", "stride",
           "cycles", "stall_cycles", "filter_reads", "seconds")


# ------------------------------------------------------------------------- in SCALE-Sim's environment
def run_folder(folder: Path, mode: str) -> None:
    """Run SCALE-Sim on ``folder``'s topology (``run.json``: stem) and write ``result.json``."""
    spec = json.loads((folder / "run.json").read_text())
    cfg, topo, layout = (str(folder / f"{spec['stem']}.cfg"), str(folder / f"{spec['stem']}.csv"),
                         str(folder / "layout.csv"))
    results = []
    if mode == "full":
        from scalesim.scale_sim import scalesim

        start = time.perf_counter()
        sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout)
        sim.run_scale(top_path=str(folder / "out"))
        seconds = time.perf_counter() - start
        report = folder / "out" / spec["stem"]
        compute = list(csv.reader(open(report / "COMPUTE_REPORT.csv")))[1:]
        detail = list(csv.reader(open(report / "DETAILED_ACCESS_REPORT.csv")))
        col = [h.strip() for h in detail[0]].index("SRAM Filter Reads")
        for line, access in zip(compute, detail[1:]):
            results.append({"cycles": int(float(line[2])), "stall_cycles": int(float(line[3])),
                            "filter_reads": int(float(access[col])), "seconds": seconds / len(compute)})
    else:
        from scalesim.compute.operand_matrix import operand_matrix
        from scalesim.compute.systolic_compute_is import systolic_compute_is
        from scalesim.compute.systolic_compute_os import systolic_compute_os
        from scalesim.compute.systolic_compute_ws import systolic_compute_ws
        from scalesim.layout_utils import layouts
        from scalesim.scale_config import scale_config
        from scalesim.topology_utils import topologies

        config = scale_config()
        config.read_conf_file(cfg)
        topology = topologies()
        topology.load_arrays(topofile=topo)
        lay = layouts()
        lay.load_arrays(layoutfile=layout)
        kind = {"ws": systolic_compute_ws, "os": systolic_compute_os, "is": systolic_compute_is}[config.df]
        for i in range(topology.get_num_layers()):  # as single_layer_sim.run does, up to the memory system
            start = time.perf_counter()
            op = operand_matrix()
            op.set_params(layer_id=i, config_obj=config, topoutil_obj=topology, layoututil_obj=lay)
            _, ifmap = op.get_ifmap_matrix()
            _, filt = op.get_filter_matrix()
            _, ofmap = op.get_ofmap_matrix()
            compute = kind()
            extra = {}
            if config.df == "ws":
                extra = dict(sparsity_ratio_N=1, sparsity_ratio_M=1, ifmap_op_mat_original=op.ifmap_addr_matrix_original,
                             sparsity_filter_array=op.sparse_filter_array)
            compute.set_params(config_obj=config, ifmap_op_mat=ifmap, filter_op_mat=filt, ofmap_op_mat=ofmap, **extra)
            compute.get_prefetch_matrices()
            _, _, ofmap_demand = compute.get_demand_matrices()
            results.append({"cycles": ofmap_demand.shape[0] - 1, "stall_cycles": "",
                            "filter_reads": int(compute.get_filter_requests()),
                            "seconds": time.perf_counter() - start})
    (folder / "result.json").write_text(json.dumps(results))


# ------------------------------------------------------------------------------- in hwsim's environment
def records(variant: str):
    from hwsim.cost import ModelSetting
    from hwsim.shapecache import analyze

    return analyze(ModelSetting("resnet18", variant)).trace.layers


def distinct(rows, seen: set) -> list:
    """Rows whose SCALE-Sim input (geometry) was not run yet."""
    out = []
    for row in rows:
        key = row.cells()[1:]
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def affordable(row, r: int, c: int, df: str) -> bool:
    """Whether SCALE-Sim computes this row in reasonable time (see :data:`IS_BUDGET`)."""
    from hwsim import systolic

    if df != "is":
        return True
    g = row.gemm
    folds = -(-g.k // r) * -(-g.m // c)
    return folds * int(systolic.gemm_cycles(g.m, g.n, g.k, r, c, df)) <= IS_BUDGET


def jobs() -> list[tuple[str, str, int, int, str, list]]:
    """(run, variant, rows, cols, dataflow, topology rows) of every SCALE-Sim run to make."""
    from hwsim.export.gemm import model_gemms
    from hwsim.export.scalesim import topology_rows

    rows = {v: topology_rows(model_gemms(records(v))) for v in VARIANTS}
    out = []
    for r, c in ARRAYS:
        for df in DATAFLOWS:
            seen: set = set()
            for variant in VARIANTS:
                out.append(("compute", variant, r, c, df,
                            [x for x in distinct(rows[variant], seen) if affordable(x, r, c, df)]))
            if (r, c, df) == (32, 32, "ws"):  # SCALE-Sim's whole simulator on every distinct base and OAT row
                seen = set()
                out.append(("full", "base", r, c, df, distinct(rows["base"], seen)))
                out.append(("full", "oat", r, c, df, distinct(rows["oat"], seen)))
                out.append(("full", "float", r, c, df, [x for x in rows["float"] if x.gemm.layer in FLOAT_SAMPLE]))
            else:
                out.append(("full", "base", r, c, df, [x for x in rows["base"] if x.gemm.layer in SAMPLE]))
    return [job for job in out if job[5]]


def harvest(folder: Path, run: str) -> list[dict]:
    """The rows of every finished run (``jobN/result.json``) in an interrupted regeneration's work directory."""
    from hwsim.export.gemm import model_gemms
    from hwsim.export.scalesim import read_topology, topology_rows

    exported = {v: {row.name: row for row in topology_rows(model_gemms(records(v)))} for v in VARIANTS}
    table = []
    for job in sorted(folder.glob("job*")):
        if not (job / "result.json").exists():
            continue
        stem = json.loads((job / "run.json").read_text())["stem"]
        _, variant, array, df = stem.split("_")
        r, c = (int(v) for v in array.split("x"))
        results = json.loads((job / "result.json").read_text())
        for cells, result in zip(read_topology(job / f"{stem}.csv"), results, strict=True):
            row = exported[variant][cells[0]]
            assert row.cells() == cells, (stem, cells)
            table.append(_line(run, variant, r, c, df, row, result))
    return table


def _line(run, variant, r, c, df, row, result) -> dict:
    g = row.gemm
    return {"array": f"{r}x{c}", "dataflow": df, "run": run, "variant": variant, "scalesim_name": row.name,
            "layer": g.layer, "part": g.part, "m": g.m, "n": g.n, "k": g.k, "ifmap_h": row.ifmap_h,
            "ifmap_w": row.ifmap_w, "filter_h": row.filter_h, "filter_w": row.filter_w, "channels": row.channels,
            "num_filter": row.num_filter, "stride": row.stride, **result, "seconds": f"{result['seconds']:.3f}"}


def write(out: Path, table: list[dict]) -> None:
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scalesim-python", default="python", help="a Python with scalesim 3.0.0 installed")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=("full", "compute"), help="make only these runs (others kept)")
    parser.add_argument("--output", default=str(OUT), help="the table to write (default: %(default)s)")
    parser.add_argument("--arrays", default=None, help="only these arrays, e.g. 32x32,25x7 (default: all)")
    parser.add_argument("--dataflows", default=None, help="only these dataflows, e.g. is (default: all)")
    parser.add_argument("--variants", default=None, help="only these variants, e.g. float,oat (default: all)")
    parser.add_argument("--harvest", default=None, metavar="DIR",
                        help="collect the finished runs of an interrupted regeneration's work directory instead")
    args = parser.parse_args()
    out = Path(args.output)
    if args.run:
        run_folder(Path(args.run), args.mode)
        return
    sys.path.insert(0, str(HERE.parent.parent.parent))
    from hwsim.export.scalesim import config_text, topology_text, LAYOUT_HEADER

    if args.harvest:
        write(out, harvest(Path(args.harvest), args.only or "compute"))
        return
    kept = []
    if args.only and out.exists():
        kept = [row for row in csv.DictReader(open(out)) if row["run"] != args.only]
    table: list[dict] = []
    todo = [job for job in jobs() if (not args.only or job[0] == args.only)
            and (not args.arrays or f"{job[2]}x{job[3]}" in args.arrays.split(","))
            and (not args.dataflows or job[4] in args.dataflows.split(","))
            and (not args.variants or job[1] in args.variants.split(","))]
    todo.sort(key=lambda job: job[0] == "full" and (job[2], job[3], job[4]) != (32, 32, "ws"))  # 32 x 32 ws first
    with tempfile.TemporaryDirectory(prefix="hwsim-scalesim-") as tmp:
        for n, (run, variant, r, c, df, rows) in enumerate(todo):
            folder = Path(tmp) / f"job{n}"
            folder.mkdir()
            stem = f"resnet18_{variant}_{r}x{c}_{df}"
            (folder / f"{stem}.csv").write_text(topology_text(rows))
            (folder / f"{stem}.cfg").write_text(config_text(stem, r, c, df))
            (folder / "layout.csv").write_text(", ".join(LAYOUT_HEADER) + ",\n")
            (folder / "run.json").write_text(json.dumps({"stem": stem}))
            start = time.perf_counter()
            subprocess.run([args.scalesim_python, __file__, "--run", str(folder), "--mode", run], check=True)
            print(f"{run:8s} {stem:28s} {len(rows):3d} rows {time.perf_counter() - start:7.1f} s", flush=True)
            results = json.loads((folder / "result.json").read_text())
            for row, result in zip(rows, results, strict=True):
                table.append(_line(run, variant, r, c, df, row, result))
            write(out, kept + table)  # after every run: an interrupted regeneration keeps what it made
    print(f"wrote {len(kept) + len(table)} rows to {out}")


if __name__ == "__main__":
    main()
