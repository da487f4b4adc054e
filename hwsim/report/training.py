"""Training cost per run (SPEC 6.3; FLOAT paper Fig. 7a) and BulletTrain's theoretical against measured speedup.

Everything comes from each run's ``metrics.jsonl`` (the trainer's per-epoch ledger) and ``config.json``:

- ``epoch_time_s``: mean measured seconds per epoch; ``train_macs_per_epoch``: mean of the ledger's
  ``train_macs`` ((forward + 2 x backward sample-passes) x forward MACs per image, hwsim's counter);
- ``passes_per_image``: (forward + backward sample-passes) / training images of an epoch, and
  ``attack_passes_per_image`` the same for attack iterations only;
- for a BulletTrain run, ``bt_theoretical_speedup`` (mean of the per-epoch Eq. 7 values) next to the
  ``measured_speedup`` (seconds per epoch of the run it accelerates / its own) and ``pass_speedup`` (the same
  ratio of passes per image). The run it accelerates is the run among those given whose config is the same
  in everything but BulletTrain's options (and where and how it ran: device, workers, versions).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["TRAINING_COLUMNS", "training_cost", "plot_training_cost", "render_training_section"]

TRAINING_COLUMNS: tuple[str, ...] = (
    "run_name", "algorithm", "variant", "bullettrain", "epochs", "epoch_time_s", "train_macs_per_epoch",
    "passes_per_image", "attack_passes_per_image", "optimizer_steps_per_epoch", "final_ca", "final_ra",
    "bt_theoretical_speedup", "bt_theoretical_pooled", "bt_expected_pass_speedup", "measured_speedup",
    "pass_speedup", "baseline_run")
#: Config keys that do not make a run a different training: BulletTrain's own options, and where it ran.
_NOT_COMPARED = {"bullettrain", "bt_steps", "bt_p", "bt_gamma", "device", "workers", "data_dir", "versions",
                 "git_commit", "world_size", "amp"}


def _mean(records: list[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in records if r.get(key) is not None]
    return sum(values) / len(values) if values else math.nan


def _pooled(records: list[dict[str, Any]]) -> float:
    """Eq. 7 over the whole run, (N + 1) / mean(denominator), computed like the pass ratio: the harmonic mean
    of the per-epoch values (N + 1) / denominator_e (the plain mean of those overstates it)."""
    values = [float(r["bt_theoretical_speedup"]) for r in records if r.get("bt_theoretical_speedup")]
    return len(values) / sum(1 / v for v in values) if values else math.nan


def _run_row(run: Path) -> dict[str, Any] | None:
    metrics, config_path = run / "metrics.jsonl", run / "config.json"
    if not metrics.is_file() or not config_path.is_file():
        return None
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    records = [r for r in records if "fwd_passes" in r and r.get("images")]  # runs from before the ledger: none
    if not records:
        return None
    config = json.loads(config_path.read_text())
    passes = [(r["fwd_passes"] + r["bwd_passes"]) / r["images"] for r in records]
    attack = [(r["attack_fwd_passes"] + r["attack_bwd_passes"]) / r["images"] for r in records]
    row: dict[str, Any] = {
        "run_dir": str(run), "run_name": run.name, "algorithm": config.get("algorithm"),
        "variant": config.get("variant"), "bullettrain": bool(config.get("bullettrain", False)),
        "epochs": len(records), "epoch_time_s": _mean(records, "epoch_time_s"),
        "train_macs_per_epoch": _mean(records, "train_macs"),
        "passes_per_image": sum(passes) / len(passes),
        "attack_passes_per_image": sum(attack) / len(attack),
        "optimizer_steps_per_epoch": _mean(records, "optimizer_steps"),
        "final_ca": records[-1].get("ca"), "final_ra": records[-1].get("ra"),
        "bt_theoretical_speedup": _mean(records, "bt_theoretical_speedup"),
        "bt_theoretical_pooled": _pooled(records),
    }
    steps = config.get("attack_steps")
    # Eq. 7 counts attack steps + 1 weight update, each a forward and a backward; BulletTrain adds one clean
    # forward per image to classify the samples, which Eq. 7 leaves out: with N the baseline's steps and D =
    # (N + 1) / pooled Eq. 7's mean denominator, the passes per image are 2 (N + 1) against 2 D + 1
    pooled = row["bt_theoretical_pooled"]
    row["bt_expected_pass_speedup"] = (2 * (steps + 1) / (2 * (steps + 1) / pooled + 1)
                                       if isinstance(steps, int) and pooled == pooled else math.nan)
    row["_training"] = json.dumps({k: v for k, v in config.items() if k not in _NOT_COMPARED}, sort_keys=True)
    return row


def training_cost(runs: list[str | Path]) -> pd.DataFrame:
    """One row per run with a ledger (:data:`TRAINING_COLUMNS`); runs without metrics are left out."""
    rows = [row for row in (_run_row(Path(r)) for r in runs) if row is not None]
    if not rows:
        return pd.DataFrame(columns=list(TRAINING_COLUMNS))
    table = pd.DataFrame(rows)
    table["measured_speedup"] = math.nan
    table["pass_speedup"] = math.nan
    table["baseline_run"] = ""
    for i, row in table[table["bullettrain"]].iterrows():
        same = (table["_training"] == row["_training"]) & ~table["bullettrain"]
        if same.any():
            base = table[same].iloc[0]
            table.loc[i, "measured_speedup"] = base["epoch_time_s"] / row["epoch_time_s"]
            table.loc[i, "pass_speedup"] = base["passes_per_image"] / row["passes_per_image"]
            table.loc[i, "baseline_run"] = base["run_name"]
    return table[list(TRAINING_COLUMNS)]


def plot_training_cost(table: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Seconds per epoch and training MACs per epoch per run, side by side (FLOAT paper Fig. 7a style)."""
    from hwsim.report import plots

    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(plots._STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(10.5, 0.9 + 0.42 * max(len(table), 2)), squeeze=False,
                                 layout="constrained")
        labels = [f"{r.run_name}" for r in table.itertuples()]
        for ax, column, title in ((axes[0][0], "epoch_time_s", "measured seconds per epoch"),
                                  (axes[0][1], "train_macs_per_epoch", "training MACs per epoch")):
            values = table[column].tolist()
            colours = [plots.OKABE_ITO[1] if bt else plots.OKABE_ITO[0] for bt in table["bullettrain"]]
            ax.barh(range(len(values)), values, color=colours)
            ax.set_yticks(range(len(values)), labels)
            ax.invert_yaxis()
            ax.set_xlabel(title)
            ax.set_xlim(0, 1.3 * max([v for v in values if v == v] or [1]))  # room for the labels
            if column == "train_macs_per_epoch":
                ax.xaxis.set_major_formatter(EngFormatter())
                for y, (value, passes) in enumerate(zip(values, table["passes_per_image"])):
                    ax.annotate(f"{passes:.1f} passes/img", (value, y), xytext=(3, 0), textcoords="offset points",
                                va="center", fontsize=8)
        fig.suptitle("Training cost per run (orange: BulletTrain); FLOAT paper Fig. 7a style")
        paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
        for path in paths:
            fig.savefig(path, dpi=150 if path.suffix == ".png" else None)
        plt.close(fig)
    return paths


def render_training_section(table: pd.DataFrame, figure: str) -> str:
    """The report's Markdown section on training cost (empty when no run has a ledger)."""
    from hwsim.report.markdown import markdown_table

    if table.empty:
        return ""
    cost_cols = ("run_name", "algorithm", "variant", "bullettrain", "epochs", "epoch_time_s", "train_macs_per_epoch",
                 "passes_per_image", "attack_passes_per_image", "optimizer_steps_per_epoch", "final_ca", "final_ra")
    parts = ["## Training cost", "",
             "Per run, from its `metrics.jsonl`: measured seconds per epoch; training MACs per epoch = (forward + "
             "2 x backward sample-passes) x forward MACs per image (hwsim's counter, at each pass's width; a "
             "backward pass is counted as two forward passes); passes per image = (forward + backward "
             "sample-passes) / training images, attack passes the same for attack iterations only. Validation "
             "is not counted. CA/RA: last epoch's validation, one noise draw for noisy settings (the evaluation "
             "tables above give means over draws with their spread).", "", markdown_table(table, cost_cols), "",
             f"![Training cost per run]({figure})", ""]
    bt = table[table["bullettrain"]]
    if not bt.empty:
        parts += ["### BulletTrain: theoretical vs measured speedup", "",
                  "Theoretical (`bt_theoretical_speedup`): BulletTrain Eq. 7, (N + 1) / (F_B N_B + F_R N_R + F_O N_O "
                  "+ 1), from each epoch's outlier / boundary / robust fractions, averaged over epochs; "
                  "`bt_theoretical_pooled` is the same over the whole run computed like the pass ratio, (N + 1) / "
                  "mean denominator (the harmonic mean of the per-epoch values, lower than their mean). Eq. 7 "
                  "counts the attack steps and the weight update; BulletTrain also runs one clean forward per "
                  "image to classify the samples, which Eq. 7 leaves out, so an epoch costs 2 x Eq. 7's "
                  "denominator + 1 passes per image against the baseline's 2 (N + 1): "
                  "`bt_expected_pass_speedup`. Measured: `pass_speedup`, the ratio of passes per image of the run "
                  "it accelerates (same config but for BulletTrain, `baseline_run`) to its own, which should "
                  "equal the expected one; `measured_speedup`, the same ratio of seconds per epoch (the machine's "
                  "load and the per-batch overheads move it). The series table above compares BulletTrain with "
                  "the same like-for-like run.", "",
                  markdown_table(bt, ("run_name", "baseline_run", "bt_theoretical_speedup", "bt_theoretical_pooled",
                                      "bt_expected_pass_speedup", "pass_speedup", "measured_speedup", "final_ca",
                                      "final_ra")), ""]
    return "\n".join(parts)
