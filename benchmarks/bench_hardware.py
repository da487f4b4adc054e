"""Benchmark: hwsim's systolic cycles for a whole network against SCALE-Sim 3.0.0 on the same network, and a
1e6-configuration systolic sweep beside the Von-Neumann one.

1. hwsim: the compute cycles of every layer of CIFAR ResNet18 (``--model``, ``--variant``) on an R x C array
   (:func:`hwsim.systolic.layer_cycles` over the layer records from the shipped shape cache; median of many
   calls). SCALE-Sim: ``python -m scalesim.scale`` on the files ``hwsim export --format scalesim`` writes for the
   same network and array, one run, its wall time (``--layers N``: only the first N topology rows, the rest
   extrapolated per row, stated in the output). The cycles of both are compared row by row before any ratio is
   printed. Without SCALE-Sim (``--scalesim-python``, or the ``hwtools`` extra in this Python) only hwsim's side
   is printed, and that SCALE-Sim is absent.
2. Sweeps over 1e6 configurations of ResNet34 ``oat``: the systolic closed form on every (rows, cols,
   vector_lanes) of a 100 x 100 x 100 grid (:func:`hwsim.systolic.total_cycles_grid`) against Eq. 7-9 on every
   (n_mult, n_bank) of a 10,000 x 100 grid (:func:`hwsim.delay.model_totals_grid` and the delays): medians.

    python benchmarks/bench_hardware.py [--scalesim-python /path/to/venv/bin/python] [--layers 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def scalesim_python(given: str | None) -> str | None:
    if given:
        return given
    try:
        import scalesim  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--variant", default="base")
    parser.add_argument("--array", default="32x32", help="R x C of the systolic array (default 32x32)")
    parser.add_argument("--dataflow", default="ws", choices=("ws", "os", "is"))
    parser.add_argument("--scalesim-python", default=None, help="a Python with scalesim installed")
    parser.add_argument("--layers", type=int, default=0, help="SCALE-Sim on the first N rows only (0: all)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import numpy as np

    from hwsim import systolic
    from hwsim.cost import ModelSetting
    from hwsim.delay import hardware_grid, model_totals_grid
    from hwsim.export.gemm import as_record, model_gemms
    from hwsim.export.scalesim import config_text, read_compute_report, topology_rows, topology_text, LAYOUT_HEADER
    from hwsim.hardware import get_preset
    from hwsim.shapecache import analyze, model_shapes

    rows_, cols = (int(v) for v in args.array.lower().split("x"))
    setting = ModelSetting(args.model, args.variant)
    analyze(setting)  # warm: the records come from the shape cache from here on

    def hwsim_network() -> list[int]:
        records = [as_record(r) for r in analyze(setting).trace.layers]
        return [systolic.layer_cycles(r.shape(), rows_, cols, args.dataflow) for r in records
                if r.kind == "matmul" or r.weight_nonzero > 0]

    hwsim_s = median_time(hwsim_network, max(args.repeats, 20))
    total = sum(hwsim_network())
    print(f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.model} {args.variant}, "
          f"{rows_} x {cols} {args.dataflow}")
    print(f"hwsim   : {total:,} cycles for the whole network in {hwsim_s * 1e3:.3f} ms (records from the shape "
          f"cache + closed form; median of {max(args.repeats, 20)})")

    python = scalesim_python(args.scalesim_python)
    if python is None:
        print("SCALE-Sim: absent (install the hwtools extra, or pass --scalesim-python); no ratio printed")
    else:
        records = [as_record(r) for r in analyze(setting).trace.layers]
        rows = topology_rows(model_gemms(records))
        run_rows = rows[: args.layers] if args.layers else rows
        with tempfile.TemporaryDirectory(prefix="hwsim-bench-scalesim-") as tmp:
            folder = Path(tmp)
            stem = "bench"
            (folder / f"{stem}.csv").write_text(topology_text(run_rows))
            (folder / f"{stem}.cfg").write_text(config_text(stem, rows_, cols, args.dataflow))
            (folder / "layout.csv").write_text(", ".join(LAYOUT_HEADER) + ",\n")
            start = time.perf_counter()
            done = subprocess.run([python, "-m", "scalesim.scale", "-c", f"{stem}.cfg", "-t", f"{stem}.csv", "-l",
                                   "layout.csv", "-p", "out"], cwd=folder, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)  # its progress bars
            if done.returncode:
                sys.exit(f"SCALE-Sim failed:\n{done.stderr[-2000:]}")
            scalesim_s = time.perf_counter() - start
            report = read_compute_report(folder / "out" / stem / "COMPUTE_REPORT.csv")
        ours = [int(systolic.gemm_cycles(r.gemm.m, r.gemm.n, r.gemm.k, rows_, cols, args.dataflow)) for r in run_rows]
        theirs = [line["Total Cycles"] for line in report]
        same = ours == theirs
        print(f"SCALE-Sim: {sum(theirs):,} cycles for {len(run_rows)} of {len(rows)} rows in {scalesim_s:.1f} s "
              f"(python -m scalesim.scale, traces written as it does); cycles identical row by row: {same}")
        if not same:
            print("  rows that differ:", [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b])
        elif len(run_rows) == len(rows):
            print(f"ratio    : hwsim is {scalesim_s / hwsim_s:,.0f}x faster than SCALE-Sim on the whole network")
        else:  # SCALE-Sim's time grows with the cycles it simulates: scale by them, and give the sure lower bound
            whole = scalesim_s * total / sum(theirs)
            print(f"ratio    : at least {scalesim_s / hwsim_s:,.0f}x (SCALE-Sim on {len(run_rows)} rows against hwsim "
                  f"on the whole network); about {whole / hwsim_s:,.0f}x for the whole network (SCALE-Sim's time "
                  f"scaled by cycles to {whole:,.0f} s)")

    print()
    shapes, _ = model_shapes(ModelSetting("resnet34", "oat"))
    gemms = systolic.gemm_arrays(shapes)
    axis = np.arange(1, 101)
    systolic_s = median_time(lambda: systolic.total_cycles_grid(gemms, axis, axis, "ws", np.arange(100)),
                             args.repeats)
    grid = hardware_grid(get_preset("asic65"), sparse=True, n_mult=np.arange(1, 10_001), n_bank=np.arange(1, 101))
    vn_s = median_time(lambda: model_totals_grid(shapes, grid).delay_ns(), args.repeats)
    print(f"1e6-configuration sweeps of resnet34 oat (median of {args.repeats}, in process):")
    print(f"  systolic  rows x cols x vector_lanes = 100 x 100 x 100: {systolic_s:.3f} s")
    print(f"  Von-Neumann n_mult x n_bank = 10000 x 100 (Eq. 7-9):  {vn_s:.3f} s")
    print(f"  systolic / Von-Neumann: {systolic_s / vn_s:.2f}x")


if __name__ == "__main__":
    main()
