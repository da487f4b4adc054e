"""Benchmark: tracing and counting ResNet34 with hwsim against the field's counters, in one process.

Warm (imports done, one untimed call each) CPU seconds per count of CIFAR ResNet34 (batch 1, 3x32x32, one
intra-op thread), interleaved and repeated, median, and each peer's time over hwsim's:

* hwsim: trace + count (conv/linear MACs, parameters by group, memory);
* fvcore ``FlopCountAnalysis`` (jit trace + per-operator counting), torch's ``FlopCounterMode``;
* thop ``profile``, ptflops ``get_model_complexity_info``, torchinfo ``summary`` (optional extra
  ``pip install hwsim[bench]``; a peer that is not installed is reported as missing);
* a plain forward pass (what any forward-hook counter pays at least).

The MACs each reports are printed beside its time (they count different things: thop and ptflops add BN,
activations and pooling; FlopCounterMode counts 2 flops per MAC).

A second part times what a user pays on the command line for a model of their own
(``examples/my_net.py:build``), each in a fresh process, CPU seconds of the process, median: ``hwsim count`` served from the
layer-shape cache (a second run: no torch imported) against fvcore counting the same model in a fresh process
(import torch, build, ``FlopCountAnalysis``), and the ratio (goal <= 0.1).

    python benchmarks/bench_count.py [--repeats 7] [--cli-repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def cpu_median(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return times


def peers(size: tuple[int, int, int]) -> dict[str, Callable[[], int]]:
    """name -> a function that counts a ResNet34 of its own and returns the MACs (or flops) it reports."""
    import torch

    from hwsim.count import count
    from hwsim.hardware import get_preset
    from hwsim.trace import trace_model
    from models import create_model

    hw = get_preset("asic65")

    def fresh():
        return create_model("resnet34").eval()

    x = torch.rand(1, *size)
    out: dict[str, Callable[[], int]] = {}
    ours = fresh()
    out["hwsim trace + count"] = lambda: count(ours, trace_model(ours, size), hw).macs

    from fvcore.nn import FlopCountAnalysis

    fv = fresh()

    def fvcore() -> int:
        analysis = FlopCountAnalysis(fv, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analysis.total())

    out["fvcore FlopCountAnalysis"] = fvcore

    from torch.utils.flop_counter import FlopCounterMode

    fc = fresh()

    def flop_counter() -> int:
        with torch.inference_mode(), FlopCounterMode(display=False) as mode:
            fc(x)
        return mode.get_total_flops()

    out["torch FlopCounterMode (flops)"] = flop_counter
    try:
        import thop

        th = fresh()
        out["thop profile"] = lambda: int(thop.profile(th, inputs=(x,), verbose=False)[0])
    except ImportError:
        out["thop profile"] = None  # type: ignore[assignment]
    try:
        from ptflops import get_model_complexity_info

        pt = fresh()
        out["ptflops"] = lambda: int(get_model_complexity_info(pt, size, as_strings=False, print_per_layer_stat=False,
                                                               verbose=False)[0])
    except ImportError:
        out["ptflops"] = None  # type: ignore[assignment]
    try:
        from torchinfo import summary

        ti = fresh()
        out["torchinfo summary"] = lambda: int(summary(ti, input_size=(1, *size), verbose=0).total_mult_adds)
    except ImportError:
        out["torchinfo summary"] = None  # type: ignore[assignment]
    fw = fresh()

    def forward() -> int:
        with torch.inference_mode():
            fw(x)
        return 0

    out["plain forward"] = forward
    return out


FVCORE_USER = """
import sys, warnings
import torch
from fvcore.nn import FlopCountAnalysis
from models.create import load_factory
model = load_factory(sys.argv[1])().eval()
with torch.no_grad(), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    analysis = FlopCountAnalysis(model, torch.rand(1, 3, 32, 32))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    print(int(analysis.total()))
"""


def user_model_cli(repeats: int) -> None:
    """A user's model on the command line: cached ``hwsim count`` against fvcore, fresh processes, CPU s."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = f"{root / 'examples' / 'my_net.py'}:build"
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "HWSIM_CACHE_DIR": cache, "PYTHONPATH": str(root)}
        hwsim = [sys.executable, "-m", "hwsim", "count", spec, "--format", "json"]
        first = subprocess.run(hwsim, capture_output=True, text=True, env=env, cwd=root, check=True)  # fills it
        macs = json.loads(first.stdout)["totals"]["macs"]
        fvcore = [sys.executable, "-c", FVCORE_USER, spec]

        def wall(cmd: list[str]) -> float:
            """CPU seconds (user + system) of the child process: robust to load on a shared machine."""
            import resource

            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

        ours, theirs = [], []
        for _ in range(repeats):  # interleaved
            ours.append(wall(hwsim))
            theirs.append(wall(fvcore))
    fv_macs = int(subprocess.run(fvcore, capture_output=True, text=True, env=env, cwd=root,
                                 check=True).stdout.split()[-1])
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"\nUser model {spec.split('/')[-1]} (3x32x32), fresh process, CPU s, median of {repeats} interleaved")
    print(f"{'hwsim count (cached, no torch)':32s} {a:8.3f}  {macs:16,d} MACs")
    print(f"{'fvcore FlopCountAnalysis':32s} {b:8.3f}  {fv_macs:16,d} flops")
    print(f"ratio hwsim / fvcore: {a / b:.3f} (goal <= 0.1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cli-repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    size = (3, 32, 32)
    counters = peers(size)
    macs = {name: fn() for name, fn in counters.items() if fn is not None}  # warm-up, not timed
    assert macs["hwsim trace + count"] == 1_159_402_496
    times: dict[str, list[float]] = {name: [] for name in macs}
    for _ in range(args.repeats):  # interleaved: a burst of load on the machine hits every counter alike
        for name in macs:
            times[name] += cpu_median(counters[name], 1)
    ours = statistics.median(times["hwsim trace + count"])
    print(f"ResNet34 (CIFAR, 1x3x32x32), warm CPU seconds, median of {args.repeats} interleaved runs, 1 thread")
    print(f"{'counter':32s} {'cpu s':>8s} {'x hwsim':>8s} {'reports':>16s}")
    for name, fn in counters.items():
        if fn is None:
            print(f"{name:32s} {'missing':>8s}  (pip install hwsim[bench])")
            continue
        t = statistics.median(times[name])
        print(f"{name:32s} {t:8.4f} {t / ours:8.1f} {macs[name]:16,d}")
    user_model_cli(args.cli_repeats)


if __name__ == "__main__":
    main()
