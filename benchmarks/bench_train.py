"""Seconds per training epoch of PGD-AT, FLOAT and OAT on the same model, data and batch size.

Prints the per-epoch times, the ratios OAT/FLOAT and PGD-AT/FLOAT (FLOAT paper Fig. 7a: 1.43x and 1.37x on
a GPU with ResNet34 on CIFAR-10), and the trainer's overhead against a minimal hand-written FLOAT loop
(same model, data, augmentation and attack; target under 5 %). Times are the training part of an epoch
(validation excluded), the best of ``--repeats`` epochs after one warm-up epoch.

    python benchmarks/bench_train.py --model small_cnn --images 4096 --batch-size 64

With fewer images an epoch is a dozen steps and the per-epoch noise of a shared CPU swamps the trainer's
overhead (1,024 images gave +7.6 % once, -33 % another time); 4,096 images take about 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hwsim.train import _models
from hwsim.train.algorithms import AttackSettings
from hwsim.train.config import make_config
from hwsim.train.data import augment, load_split, train_val_split
from hwsim.train.trainer import build_model, train

RUNS = (("pgd-at", "base"), ("float", "float"), ("oat", "oat"))


def trainer_epoch_seconds(common: dict, algorithm: str, variant: str, repeats: int) -> float:
    config = make_config({**common, "algorithm": algorithm, "variant": variant, "epochs": repeats + 1})
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        train(config, run)
        times = [json.loads(line)["epoch_time_s"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    return min(times[1:])  # first epoch is warm-up


def hand_float_epoch_seconds(common: dict, repeats: int) -> float:
    """A minimal FLOAT loop: no registry, no checkpoints, no metrics, no progress bars."""
    config = make_config({**common, "algorithm": "float", "variant": "float"})
    torch.manual_seed(config.seed)
    full = load_split(config.dataset, "train", synthetic_size=config.synthetic_size)
    train_set, _ = train_val_split(full, min(config.val_size, len(full) // 5), config.seed)
    model = build_model(config)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    attack = AttackSettings(config.eps, config.step_size, config.attack_steps)
    loader = torch.utils.data.DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=True)
    times = []
    for _ in range(repeats + 1):
        model.train()
        start = time.perf_counter()
        for images, labels in loader:
            x = augment(images)
            half = len(x) // 2
            _models.set_knobs(model, lambda_n=0.0)
            loss_c = F.cross_entropy(model(x[:half]), labels[:half])
            _models.set_knobs(model, lambda_n=1.0)
            x_adv = attack.run(model, x[half:], labels[half:])
            loss_a = F.cross_entropy(model(x_adv), labels[half:])
            _models.set_knobs(model, lambda_n=0.0)
            loss = 0.5 * loss_c + 0.5 * loss_a
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--images", type=int, default=4096, help="synthetic training images (incl. 20%% val)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--attack-steps", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    images = args.images
    common = {"model": args.model, "dataset": "synthetic", "synthetic_size": images, "val_size": images // 5,
              "batch_size": args.batch_size, "attack_steps": args.attack_steps, "device": args.device}
    seconds = {alg: trainer_epoch_seconds(common, alg, variant, args.repeats) for alg, variant in RUNS}
    hand = hand_float_epoch_seconds(common, args.repeats)
    print(f"model {args.model}, {images - images // 5} training images, batch {args.batch_size}, "
          f"PGD-{args.attack_steps}, device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for alg, _ in RUNS:
        print(f"  {alg:7s} {seconds[alg]:8.2f} s/epoch")
    print(f"  OAT / FLOAT    = {seconds['oat'] / seconds['float']:.2f}x  (paper, GPU, ResNet34: 1.43x)")
    print(f"  PGD-AT / FLOAT = {seconds['pgd-at'] / seconds['float']:.2f}x  (paper, GPU, ResNet34: 1.37x)")
    print(f"  hand-written FLOAT loop {hand:.2f} s/epoch; trainer overhead "
          f"{100 * (seconds['float'] / hand - 1):+.1f} %")


if __name__ == "__main__":
    main()
