"""CPU seconds per image of ``hwsim eval`` and ``hwsim eval --sanity`` against a plain PGD-20 evaluation.

The peer is a PGD-20 loop written here by hand on the same model, images and settings: the run's FLOAT model at
its most robust setting (lambda_n = 1, randomised), every gradient averaged over ``--eot`` noise draws, and
CA / RA counted over ``--noise-draws`` scoring passes. It has no candidate bookkeeping, no clean-pass reuse,
no progress bars and no table. Printed: CPU-s per image of the peer, of ``evaluate_run(..., ["pgd20"])`` at
the same setting and of ``sanity_run`` (its ten-odd attacks), each with its ratio to the peer. Goal (issue 22):
sanity at most 15x the plain PGD-20 evaluation. CPU time is ``time.process_time`` of this process (the
machine's load does not count), with one thread.

    python benchmarks/bench_eval.py --images 60 --eot 10 --noise-draws 5

The model is ``small_cnn`` trained for one epoch as FLOAT on synthetic data (a few seconds): cost per image
does not depend on how well it is trained, only on how many samples stay robust (attacks of the evaluation
run only on those) -- the printed CA / RA say how many did.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hwsim.train import data
from hwsim.train.config import make_config
from hwsim.train.evaluate import evaluate_run, knob_context, load_run, load_test_set, robust_setting
from hwsim.train.sanity import sanity_run
from hwsim.train.trainer import train


def hand_pgd20(run_dir: Path, images: int, eot: int, draws: int, batch_size: int) -> tuple[float, float, float]:
    """(CPU-s per image, CA, RA) of a hand-written PGD-20 evaluation with EOT and scoring draws."""
    run = load_run(run_dir, "last", torch.device("cpu"))
    config, model = run.config, run.model
    test = load_test_set(config, images, None)
    eps, step = config.eps, config.step_size
    start = time.process_time()
    clean = robust = 0
    torch.manual_seed(0)
    with knob_context(model, config.variant, robust_setting(config)):
        for p in model.parameters():
            p.requires_grad_(False)
        for first in range(0, len(test), batch_size):
            x = data.to_float(test.images[first:first + batch_size])
            y = test.labels[first:first + batch_size]
            x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
            for _ in range(20):
                grad = torch.zeros_like(x)
                for _ in range(eot):
                    x_in = x_adv.clone().requires_grad_(True)
                    grad += torch.autograd.grad(F.cross_entropy(model(x_in), y, reduction="sum"), x_in)[0]
                x_adv = torch.min(torch.max(x_adv + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
            with torch.no_grad():
                for _ in range(draws):
                    ok = model(x).argmax(1) == y
                    clean += int(ok.sum())
                    robust += int((ok & (model(x_adv).argmax(1) == y)).sum())
    seconds = time.process_time() - start
    n = len(test) * draws
    return seconds / len(test), 100 * clean / n, 100 * robust / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60, help="test images evaluated")
    parser.add_argument("--eot", type=int, default=10)
    parser.add_argument("--noise-draws", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "float"
        config = make_config({"model": "small_cnn", "dataset": "synthetic", "synthetic_size": 1000,
                              "val_size": 200, "variant": "float", "algorithm": "float", "epochs": 1,
                              "batch_size": 64, "device": "cpu", "eps": 8 / 255, "step_size": 2 / 255})
        train(config, run)
        plain, ca, ra = hand_pgd20(run, args.images, args.eot, args.noise_draws, args.batch_size)
        options = dict(n_images=args.images, eot=args.eot, noise_draws=args.noise_draws, batch_size=args.batch_size,
                       device="cpu", write=False)
        start = time.process_time()
        table = evaluate_run(run, ["pgd20"], lambda_n=[1.0], lambda_th=[0.0], **options)
        evaluation = (time.process_time() - start) / args.images
        start = time.process_time()
        sanity_run(run, **options)
        sanity = (time.process_time() - start) / args.images
    row = table.iloc[0]
    print(f"small_cnn FLOAT at lambda_n 1 (randomised), {args.images} images, PGD-20, eot {args.eot}, "
          f"{args.noise_draws} noise draws, torch {torch.__version__}, 1 thread")
    print(f"  hand-written PGD-20 loop  {plain:8.4f} CPU-s/image  (CA {ca:.1f}, RA {ra:.1f})")
    print(f"  hwsim eval --attack pgd20 {evaluation:8.4f} CPU-s/image  {evaluation / plain:6.2f}x the hand loop  "
          f"(CA {row['ca']:.1f}, RA {row['ra']:.1f})")
    print(f"  hwsim eval --sanity       {sanity:8.4f} CPU-s/image  {sanity / plain:6.2f}x the hand loop  "
          f"(goal <= 15x)")


if __name__ == "__main__":
    main()
