"""Benchmark: tracing and counting ResNet34 with hwsim vs fvcore's FlopCountAnalysis; CLI wall time.

1. In one process, on the same model object: median time of hwsim's trace + count (conv/linear MACs and
   parameters) against fvcore's ``FlopCountAnalysis`` (jit trace + per-operator counting), and their ratio.
2. Wall time of the whole command ``hwsim delay resnet34 --variant oat`` next to ``python -c "import torch"``,
   each the median of several fresh processes.

    python benchmarks/bench_count.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def wall(cmd: list[str], repeats: int) -> float:
    def run() -> None:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return median_time(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from fvcore.nn import FlopCountAnalysis
    import torch

    from hwsim.count import count, fvcore_macs
    from hwsim.hardware import get_preset
    from hwsim.trace import trace_model
    from models import create_model

    model = create_model("resnet34").eval()
    hw = get_preset("asic65")

    def ours() -> int:
        return count(model, trace_model(model, (3, 32, 32)), hw).macs

    def theirs() -> int:
        analysis = FlopCountAnalysis(model, torch.rand(1, 3, 32, 32))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analysis.total()

    assert ours() == sum(fvcore_macs(model, (3, 32, 32)).values()) == 1_159_402_496
    theirs()  # warm both up once (imports, oneDNN primitives)
    t_ours, t_theirs = median_time(ours, args.repeats), median_time(theirs, args.repeats)
    print(f"trace + count resnet34 (median of {args.repeats}): hwsim {t_ours:.3f} s, fvcore {t_theirs:.3f} s, "
          f"fvcore / hwsim = {t_theirs / t_ours:.1f}x   (aim >= 2x)")

    cli = wall([sys.executable, "-m", "hwsim", "delay", "resnet34", "--variant", "oat"], args.repeats)
    imp = wall([sys.executable, "-c", "import torch"], args.repeats)
    print(f"`hwsim delay resnet34 --variant oat` wall {cli:.2f} s; `python -c 'import torch'` {imp:.2f} s; "
          f"difference {cli - imp:.2f} s   (aim <= 1 s)")


if __name__ == "__main__":
    main()
