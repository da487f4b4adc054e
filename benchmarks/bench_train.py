"""Seconds, passes and MACs per training epoch of every algorithm on the same model, data and batch size.

Prints, per algorithm (PGD-AT, FLOAT, OAT, Fast, Free, TRADES, MART, and PGD-AT / TRADES / MART with
BulletTrain): seconds per epoch, forward + backward sample-passes per image and training MACs per image from
the run's ledger, each with its ratio to PGD-AT; the ratios OAT/FLOAT and PGD-AT/FLOAT (FLOAT paper Fig. 7a:
1.43x and 1.37x on a GPU with ResNet34 on CIFAR-10); BulletTrain's theoretical (Eq. 7) against its measured
speedup; and the trainer's overhead against a minimal hand-written FLOAT loop (same model, data,
augmentation and attack; target under 5 %). Times are the training part of an epoch (validation excluded),
the best of ``--repeats`` epochs after one warm-up epoch. Free's "epoch" is one pass over the data with m
replays per batch (m optimizer steps per batch).

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

#: (label, algorithm, variant, extra config)
RUNS = (("pgd-at", "pgd-at", "base", {}), ("float", "float", "float", {}), ("oat", "oat", "oat", {}),
        ("fast", "fast", "base", {}), ("free", "free", "base", {"replays": 8}),
        ("trades", "trades", "base", {}), ("mart", "mart", "base", {}),
        ("pgd-at+bt", "pgd-at", "base", {"bullettrain": True}), ("trades+bt", "trades", "base", {"bullettrain": True}),
        ("mart+bt", "mart", "base", {"bullettrain": True}))


def trainer_epoch(common: dict, algorithm: str, variant: str, extra: dict, repeats: int) -> dict:
    """Best epoch time of ``repeats`` epochs after a warm-up, with the ledger's passes and MACs per image."""
    epochs = (repeats + 1) * extra.get("replays", 1)  # Free: E epochs are ceil(E / m) passes
    config = make_config({**common, "algorithm": algorithm, "variant": variant, "epochs": epochs, **extra})
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        train(config, run)
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = lines[-1]
    return {"seconds": min(m["epoch_time_s"] for m in lines[1:]),
            "passes": (last["fwd_passes"] + last["bwd_passes"]) / last["images"],
            "macs": last["train_macs"] / last["images"],
            "bt_theory": sum(m.get("bt_theoretical_speedup", 0) for m in lines[1:]) / max(len(lines) - 1, 1)}


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
    parser.add_argument("--only", help="comma-separated labels to run (pgd-at always runs: it is the reference)")
    args = parser.parse_args()
    images = args.images
    common = {"model": args.model, "dataset": "synthetic", "synthetic_size": images, "val_size": images // 5,
              "batch_size": args.batch_size, "attack_steps": args.attack_steps, "device": args.device}
    wanted = set(args.only.split(",")) if args.only else None
    results = {label: trainer_epoch(common, alg, variant, extra, args.repeats)
               for label, alg, variant, extra in RUNS if wanted is None or label in wanted or label == "pgd-at"}
    hand = hand_float_epoch_seconds(common, args.repeats)
    print(f"model {args.model}, {images - images // 5} training images, batch {args.batch_size}, "
          f"PGD-{args.attack_steps}, device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    ref = results["pgd-at"]
    print(f"  {'algorithm':10s} {'s/epoch':>8s} {'x PGD-AT':>8s} {'passes/img':>10s} {'x PGD-AT':>8s} "
          f"{'MACs/img':>12s} {'x PGD-AT':>8s}")
    for label, r in results.items():
        print(f"  {label:10s} {r['seconds']:8.2f} {r['seconds'] / ref['seconds']:8.2f} {r['passes']:10.2f} "
              f"{r['passes'] / ref['passes']:8.2f} {r['macs']:12.4g} {r['macs'] / ref['macs']:8.2f}")
    if "oat" in results and "float" in results:
        print(f"  OAT / FLOAT    = {results['oat']['seconds'] / results['float']['seconds']:.2f}x  "
              "(paper, GPU, ResNet34: 1.43x)")
        print(f"  PGD-AT / FLOAT = {ref['seconds'] / results['float']['seconds']:.2f}x  (paper, GPU, ResNet34: 1.37x)")
    for label, r in results.items():
        if label.endswith("+bt") and label[:-3] in results:
            base = results[label[:-3]]
            print(f"  {label}: theoretical speedup (Eq. 7) {r['bt_theory']:.2f}x, measured "
                  f"{base['seconds'] / r['seconds']:.2f}x in time, {base['passes'] / r['passes']:.2f}x in passes")
    print(f"  hand-written FLOAT loop {hand:.2f} s/epoch; trainer overhead "
          f"{100 * (results['float']['seconds'] / hand - 1):+.1f} %" if "float" in results else "")


if __name__ == "__main__":
    main()
