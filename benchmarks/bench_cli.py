"""Benchmark: what a user waits for, whole commands in fresh processes, against starting Python with torch.

Each command runs as its own process, interleaved with the others and repeated; per command the median wall
time, CPU time (user + system of the child) and peak resident memory, and the ratios against
``python -c "import torch"`` and ``python -c "import hwsim"`` (the aims: the cost commands at most 0.5x
``import torch``, ``hw list`` within 2x ``import hwsim``). The zoo's default settings come from the shipped
layer-shape cache; ``--no-cache`` rows trace afresh (what every run cost before the cache). A private,
empty cache directory is used, so a user's cache does not flatter the figures.

    python benchmarks/bench_cli.py [--repeats 5] [--slow-repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
HWSIM = [PY, "-m", "hwsim"]

COMMANDS: dict[str, list[str]] = {
    'python -c "import torch"': [PY, "-c", "import torch"],
    'python -c "import hwsim"': [PY, "-c", "import hwsim"],
    "hwsim hw list": [*HWSIM, "hw", "list"],
    "hwsim delay resnet34 --variant oat": [*HWSIM, "delay", "resnet34", "--variant", "oat"],
    "hwsim count resnet34 --variant oat": [*HWSIM, "count", "resnet34", "--variant", "oat"],
    "hwsim compare resnet34": [*HWSIM, "compare", "resnet34"],
    "hwsim compare resnet34 --variants (all 8 named)": [
        *HWSIM, "compare", "resnet34", "--variants",
        "base,float,oat,floats-i,floats-c,float-slim,oat-slim,floats-slim"],
    "hwsim sweep resnet34 --variant oat (200 configs)": [
        *HWSIM, "sweep", "resnet34", "--variant", "oat", "--grid", "n_mult=8:400:8", "--grid", "n_bank=1,2,4,8"],
    "hwsim delay resnet34 --variant oat --no-cache": [*HWSIM, "delay", "resnet34", "--variant", "oat", "--no-cache"],
}
SLOW = {"hwsim compare resnet34 --no-cache": [*HWSIM, "compare", "resnet34", "--no-cache"],
        "hwsim count resnet34 --input-size 32 --no-cache": [*HWSIM, "count", "resnet34", "--input-size", "32",
                                                            "--no-cache"],
        "hwsim count resnet34 --input-size 512 --no-cache": [*HWSIM, "count", "resnet34", "--input-size", "512",
                                                             "--no-cache"]}


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, CPU s of the child, peak RSS MiB of the child)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()}")
    proc.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def medians(results: dict[str, list[tuple[float, float, float]]]) -> dict[str, tuple[float, float, float]]:
    """Median (wall s, cpu s, peak MiB) per command over its repeated runs (commands never run are left out)."""
    return {name: tuple(statistics.median(r[i] for r in rows) for i in range(3))  # type: ignore[misc]
            for name, rows in results.items() if rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slow-repeats", type=int, default=1, help="repeats of `compare --no-cache` (0: skip)")
    args = parser.parse_args()

    env = {**os.environ, "HWSIM_CACHE_DIR": tempfile.mkdtemp(prefix="hwsim-bench-cache-"), "OMP_NUM_THREADS": "1"}
    env.pop("HWSIM_NO_CACHE", None)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in (*COMMANDS, *SLOW)}
    for name, cmd in COMMANDS.items():  # warm the page cache once; not counted
        run(cmd, env)
    for repeat in range(max(args.repeats, args.slow_repeats)):
        for name, cmd in COMMANDS.items():
            if repeat < args.repeats:
                results[name].append(run(cmd, env))
        for name, cmd in SLOW.items():
            if repeat < args.slow_repeats:
                results[name].append(run(cmd, env))

    med = medians(results)
    torch_wall, torch_cpu, _ = med['python -c "import torch"']
    hwsim_wall, hwsim_cpu, _ = med['python -c "import hwsim"']
    print(f"{len(COMMANDS)} commands interleaved, median of {args.repeats} fresh processes "
          f"(compare --no-cache: {args.slow_repeats}); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'command':52s} {'wall s':>7s} {'cpu s':>7s} {'MiB':>6s} {'cpu/torch':>9s} {'cpu/hwsim':>9s} "
          f"{'wall/torch':>10s}")
    for name, (wall, cpu, rss) in med.items():
        print(f"{name:52s} {wall:7.3f} {cpu:7.3f} {rss:6.0f} {cpu / torch_cpu:9.2f} {cpu / hwsim_cpu:9.2f} "
              f"{wall / torch_wall:10.2f}")
    delay = med["hwsim delay resnet34 --variant oat"]
    hw_list = med["hwsim hw list"]
    print(f"aims: delay {delay[1] / torch_cpu:.2f}x import torch in CPU (<= 0.5, moonshot 0.1); "
          f"hw list {hw_list[1] / hwsim_cpu:.2f}x import hwsim in CPU (<= 2)")
    if "hwsim count resnet34 --input-size 512 --no-cache" in med:
        small, large = (med[f"hwsim count resnet34 --input-size {s} --no-cache"][2] for s in (32, 512))
        print(f"peak memory of a fresh trace at 512x512 / at 32x32: {large / small:.2f}x (<= 1.5)")


if __name__ == "__main__":
    main()
