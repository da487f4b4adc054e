"""Shared helpers for the report tests: tiny hand-written run directories and a fake cost function.

(Not a test module: imported by the test_report_* files.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

EVAL_HEADER = ["run", "checkpoint", "model", "variant", "dataset", "film_dim", "bn", "algorithm", "density",
               "width", "lambda_n", "lambda_th", "attack", "eps", "step_size", "steps", "n_images", "ca", "ra"]


def write_run(root: Path, name: str, *, variant: str, algorithm: str, points: list[tuple[float, float, float]],
              model: str = "small_cnn", dataset: str = "mnist", width: float = 1.0, density: float = 1.0,
              film_dim: int = 1, bn: str = "dual", epoch_times: tuple[float, ...] = (2.0, 4.0),
              train_lambda: float | None = None, checkpoints: tuple[str, ...] = ("last",),
              attacks: tuple[str, ...] = ("pgd7",)) -> Path:
    """A run directory with config.json, metrics.jsonl and eval.csv; points are (lambda_n, ca, ra)."""
    run = root / name
    run.mkdir(parents=True)
    config = {"model": model, "variant": variant, "dataset": dataset, "film_dim": film_dim, "bn": bn,
              "widths": [width], "density": density, "algorithm": algorithm, "epochs": len(epoch_times),
              "batch_size": 32, "lr": 0.1, "versions": {}, "git_commit": "0" * 40}
    if train_lambda is not None:
        config["pgd_lambda"] = train_lambda
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": i, "train_loss": 1.0, "ca": 50.0, "ra": 20.0, "epoch_time_s": t,
                    "images_per_s": 100.0, "lr": 0.1}) + "\n" for i, t in enumerate(epoch_times)))
    rows = []
    for ckpt in checkpoints:
        for attack in attacks:
            for lam, ca, ra in points:
                shift = 0.0 if ckpt == "last" else 1.0  # "best" rows differ so that a test can tell them apart
                rows.append([name, ckpt, model, variant, dataset, film_dim, bn, algorithm, density, width, lam,
                             0.0, attack, 8 / 255, 2 / 255, 7 if attack == "pgd7" else 1, 100, ca + shift,
                             ra + shift])
    pd.DataFrame(rows, columns=EVAL_HEADER).to_csv(run / "eval.csv", index=False)
    return run


@dataclass(frozen=True)
class FakeCost:
    params: int
    nonzero_params: int
    memory_bytes: int
    macs: int
    delay_ns: float
    base_delay_ns: float
    norm_delay: float
    conv_norm_delay_min: float
    conv_norm_delay_mean: float
    conv_norm_delay_max: float


class FakeCostFn:
    """Cost that encodes its key: memory 1000 for base, 1500 for oat, 1010 for others, times width^2 x density.

    Records every call so that tests can check that each distinct key is computed once.
    """

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.masks: list[str | None] = []
        self.widths: list[tuple[float, ...] | None] = []

    def __call__(self, model, variant="base", *, dataset="cifar10", film_dim=1, bn="single", width=1.0,
                 density=1.0, hw=None, masks=None, widths=None):
        from hwsim.variants import check_options

        # as model_cost does: an option the variant does not use is refused, never ignored
        given = {"film_dim": film_dim != 1, "bn": bn != "single", "width": width != 1.0, "density": density != 1.0,
                 "widths": widths is not None}
        check_options(variant, {k: k for k, v in given.items() if v})
        self.calls.append((model, variant, dataset, film_dim, bn, width, density, hw))
        self.masks.append(masks)
        self.widths.append(widths)
        per_variant = {"base": 1000, "oat": 1500}.get(variant, 1010)
        memory = int(per_variant * width * width * density)
        delay = {"base": 100.0, "oat": 150.0}.get(variant, 120.0) * width
        return FakeCost(params=memory + 7, nonzero_params=memory, memory_bytes=memory, macs=memory * 10,
                        delay_ns=delay, base_delay_ns=100.0 * width, norm_delay=delay / (100.0 * width),
                        conv_norm_delay_min=1.0, conv_norm_delay_mean=delay / 100.0 / width,
                        conv_norm_delay_max=delay / 90.0 / width)


def standard_runs(root: Path) -> list[Path]:
    """Four runs: PGD-AT at two lambdas, FLOAT, OAT (small_cnn / mnist)."""
    return [
        write_run(root, "pgd0", variant="base", algorithm="pgd-at", bn="single", train_lambda=0.0,
                  points=[(0.0, 98.0, 10.0)], epoch_times=(1.0, 1.0)),
        write_run(root, "pgd1", variant="base", algorithm="pgd-at", bn="single", train_lambda=1.0,
                  points=[(0.0, 90.0, 60.0)], epoch_times=(1.0, 1.0)),
        write_run(root, "float", variant="float", algorithm="float",
                  points=[(0.0, 97.0, 20.0), (0.2, 95.0, 40.0), (0.7, 93.0, 55.0), (1.0, 91.0, 62.0)],
                  epoch_times=(1.1, 1.1)),
        write_run(root, "oat", variant="oat", algorithm="oat",
                  points=[(0.0, 96.0, 15.0), (0.2, 94.0, 35.0), (0.7, 92.0, 50.0), (1.0, 89.0, 58.0)],
                  epoch_times=(1.5, 1.5)),
    ]
