"""Benchmark: `hwsim sweep` from 1e2 to 1e7 hardware configurations, time and peak memory, whole commands.

Each size runs as a fresh process (interleaved, repeated; medians): every configuration written to a file as
CSV and as Parquet (needs the ``parquet`` extra), and ``--pareto`` (only the non-dominated configurations of
delay vs n_mult x n_bank). Ratios are against the 200-configuration sweep (aim: 1e6 within 3x). ResNet34
``oat`` comes from the shipped layer-shape cache, as a user's second sweep of a model would.

    python benchmarks/bench_sweep.py [--repeats 3] [--max-csv 1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from bench_cli import HWSIM, medians, run


def grid(n: int) -> list[str]:
    """n configurations: n_mult = 1..min(n, 10^4), then n_bank = 1..n / 10^4."""
    mults = min(n, 10_000)
    args = ["--grid", f"n_mult=1:{mults}:1"]
    if n > mults:
        args += ["--grid", f"n_bank=1:{n // mults}:1"]
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-csv", type=int, default=1_000_000,
                        help="largest sweep written in full as CSV (1e7 rows are about 600 MB of text)")
    args = parser.parse_args()

    out = tempfile.mkdtemp(prefix="hwsim-bench-sweep-")
    env = {**os.environ, "HWSIM_CACHE_DIR": os.path.join(out, "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("HWSIM_NO_CACHE", None)
    base = [*HWSIM, "sweep", "resnet34", "--variant", "oat"]
    cases = {"200 (reference)": [*base, "--grid", "n_mult=1:50:1", "--grid", "n_bank=1:4:1", "--format", "csv",
                                 "-o", os.path.join(out, "ref.csv")]}
    for exp in range(2, 8):
        n = 10 ** exp
        if n <= args.max_csv:
            cases[f"1e{exp} csv"] = [*base, *grid(n), "--format", "csv", "-o", os.path.join(out, f"{exp}.csv")]
        cases[f"1e{exp} parquet"] = [*base, *grid(n), "--format", "parquet",
                                     "-o", os.path.join(out, f"{exp}.parquet")]
        cases[f"1e{exp} --pareto"] = [*base, *grid(n), "--pareto", "--format", "csv",
                                      "-o", os.path.join(out, f"{exp}p.csv")]
    results: dict[str, list] = {name: [] for name in cases}
    for name, cmd in cases.items():  # warm-up, not counted
        run(cmd, env)
    for _ in range(args.repeats):
        for name, cmd in cases.items():
            results[name].append(run(cmd, env))
    med = medians(results)
    ref_wall, ref_cpu, ref_rss = med["200 (reference)"]
    print(f"hwsim sweep resnet34 --variant oat; median of {args.repeats} fresh processes, interleaved; "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs ({sys.platform})")
    print(f"{'configurations':18s} {'wall s':>7s} {'cpu s':>7s} {'MiB':>6s} {'cpu/200':>8s} {'wall/200':>8s} "
          f"{'MiB/200':>8s}")
    for name, (wall, cpu, rss) in med.items():
        print(f"{name:18s} {wall:7.3f} {cpu:7.3f} {rss:6.0f} {cpu / ref_cpu:8.2f} {wall / ref_wall:8.2f} "
              f"{rss / ref_rss:8.2f}")
    at_1e6 = [f"{kind} {med[f'1e6 {kind}'][1] / ref_cpu:.2f}x CPU" for kind in ("csv", "parquet", "--pareto")
              if f"1e6 {kind}" in med]
    print(f"aim: 1e6 within 3x the 200-config sweep: {', '.join(at_1e6)}")


if __name__ == "__main__":
    main()
