"""Benchmark: Eq. 7-9 over 36 layer shapes x 100,000 hardware configurations.

Peer: a plain per-layer Python loop doing the same integer arithmetic for every (layer, configuration).
Prints layer-evaluations per second for both and their ratio, and checks that both give the same total.

    python benchmarks/bench_delay.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hwsim.delay import LayerShape, delay_grid, hardware_grid
from hwsim.hardware import get_preset


def resnet34_convs() -> list[LayerShape]:
    """The 36 conv layers of a CIFAR ResNet34 (stem, 32 block convs, 3 shortcuts), alternately Eq. 7/8/9."""
    shapes = [(3, 3, 64, 32)]
    c_in, size = 64, 32
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            s = stride if b == 0 else 1
            out = size // s
            shapes.append((3, c_in, width, out))
            shapes.append((3, width, width, out))
            if s != 1 or c_in != width:
                shapes.append((1, c_in, width, out))
            c_in, size = width, out
    formulas = ("eq7", "eq8", "eq9")
    return [
        LayerShape(f"conv{i}", "conv", k=k, c_in=ci, c_out=co, h_out=h, w_out=h, formula=formulas[i % 3],
                   film_dim=1 if formulas[i % 3] == "eq9" else 0, film_channels=co if formulas[i % 3] == "eq9" else 0)
        for i, (k, ci, co, h) in enumerate(shapes)
    ]


def python_loop(layers: list[LayerShape], grid) -> float:
    """The peer: one Python-level evaluation per (layer, configuration), integer ceilings as in the model."""
    rows = [(l.weights, l.positions, l.formula, l.film_weights) for l in layers]
    total = 0.0
    for b_io, b_w, n_bank, n_mult, t_read, t_mult in zip(
        grid.b_io.tolist(), grid.b_w.tolist(), grid.n_bank.tolist(), grid.n_mult.tolist(),
        grid.t_read_ns.tolist(), grid.t_mult_ns.tolist(), strict=True
    ):
        words = b_io * n_bank
        for w, pos, formula, f in rows:
            reads = -(-((w + f) * b_w) // words)
            passes = -(-w // n_mult)
            mult = passes * pos
            if formula == "eq8":
                mult += passes
            elif formula == "eq9":
                mult += -(-f // n_mult)
            total += reads * t_read + mult * t_mult
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    layers = resnet34_convs()
    axes = {"n_mult": list(range(1, 1001)), "n_bank": list(range(1, 21)), "b_io": [8, 16, 32, 64, 128]}
    hw = get_preset("asic65")
    dense, open_ = hardware_grid(hw, **axes), hardware_grid(hw, sparse=True, **axes)
    work = len(layers) * len(dense)
    print(f"{len(layers)} layers x {len(dense):,} hardware configurations = {work:,} layer-evaluations")

    def timed(grid) -> tuple[float, float]:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = delay_grid(layers, grid)
            times.append(time.perf_counter() - start)
        return float(np.median(times)), float(out.delay_ns.sum())

    vec_dense, dense_total = timed(dense)
    vec, vec_total = timed(open_)
    assert dense_total == vec_total

    start = time.perf_counter()
    loop_total = python_loop(layers, dense)
    loop = time.perf_counter() - start

    assert abs(vec_total - loop_total) <= 1e-9 * loop_total, (vec_total, loop_total)
    print(f"vectorised, open grid (median of {args.repeats}):  {vec:8.3f} s  {work / vec:14,.0f} layer-evals/s")
    print(f"vectorised, dense grid (median of {args.repeats}): {vec_dense:8.3f} s  {work / vec_dense:14,.0f} layer-evals/s")
    print(f"python loop (1 run):                  {loop:8.3f} s  {work / loop:14,.0f} layer-evals/s")
    print(f"ratio open grid / loop: {loop / vec:.1f}x; dense grid / loop: {loop / vec_dense:.1f}x"
          "   (aim: >= 2e7 layer-evals/s and >= 50x)")


if __name__ == "__main__":
    main()
