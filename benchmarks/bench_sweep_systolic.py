"""Benchmark: a 1e6-configuration systolic-array sweep against the 1e6-configuration Von-Neumann one (issue 19).

Whole commands in fresh processes (interleaved, repeated; medians), ResNet34 ``oat`` from the layer-shape cache:
``--grid array_rows=1:1000:1 --grid array_cols=1:1000:1`` on ``systolic32`` (SCALE-Sim v3's cycles of every
layer's GEMMs, in closed form) against ``--grid n_mult=1:10000:1 --grid n_bank=1:100:1`` on ``asic65``
(Eq. 7-9), each written as Parquet (needs the ``parquet`` extra) and as the ``--pareto`` front. The aim: the
systolic sweep within 1.5x the Von-Neumann one's time.

    python benchmarks/bench_sweep_systolic.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from bench_cli import HWSIM, medians, run

GRIDS = {
    "von-neumann": ["--grid", "n_mult=1:10000:1", "--grid", "n_bank=1:100:1"],
    "systolic": ["--hw", "systolic32", "--grid", "array_rows=1:1000:1", "--grid", "array_cols=1:1000:1"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    out = tempfile.mkdtemp(prefix="hwsim-bench-systolic-")
    env = {**os.environ, "HWSIM_CACHE_DIR": os.path.join(out, "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("HWSIM_NO_CACHE", None)
    base = [*HWSIM, "sweep", "resnet34", "--variant", "oat"]
    cases = {}
    for arch, grid in GRIDS.items():
        cases[f"{arch} 1e6 parquet"] = [*base, *grid, "--format", "parquet", "-o", os.path.join(out, f"{arch}.pq")]
        cases[f"{arch} 1e6 --pareto"] = [*base, *grid, "--pareto", "--format", "csv",
                                         "-o", os.path.join(out, f"{arch}.csv")]
    results: dict[str, list] = {name: [] for name in cases}
    for cmd in cases.values():  # warm-up (fills the cache), not counted
        run(cmd, env)
    for _ in range(args.repeats):
        for name, cmd in cases.items():
            results[name].append(run(cmd, env))
    med = medians(results)
    print(f"hwsim sweep resnet34 --variant oat, 1e6 configurations; median of {args.repeats} fresh processes, "
          f"interleaved; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs ({sys.platform})")
    print(f"{'case':28s} {'wall s':>7s} {'cpu s':>7s} {'MiB':>6s}")
    for name, (wall, cpu, rss) in med.items():
        print(f"{name:28s} {wall:7.3f} {cpu:7.3f} {rss:6.0f}")
    for kind in ("parquet", "--pareto"):
        ratio = med[f"systolic 1e6 {kind}"][0] / med[f"von-neumann 1e6 {kind}"][0]
        print(f"systolic / von-neumann wall time, {kind}: {ratio:.2f}x (aim: at most 1.5x)")


if __name__ == "__main__":
    main()
