"""The report's Markdown: tables of the frontier, of the cost per series and of every point, with the figures.

Formatting only: every number is a cell of the joined table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["FRONTIER_COLUMNS", "POINT_COLUMNS", "SANITY_COLUMNS", "SERIES_COLUMNS", "markdown_table",
           "render_report"]

#: Columns of the frontier and all-points tables, in this order (those the table has).
FRONTIER_COLUMNS: tuple[str, ...] = (
    "series", "lambda_label", "run_name", "checkpoint", "lambda_n", "lambda_th", "width", "density", "ca", "ra",
    "ca_std", "ra_std", "n_draws", "eot", "params", "memory_bytes", "macs", "delay_ns", "norm_delay", "norm_memory")
POINT_COLUMNS: tuple[str, ...] = (*FRONTIER_COLUMNS[:4], "attack_label", *FRONTIER_COLUMNS[4:], "front_ca",
                                  "front_ra", "front_joint")
SANITY_COLUMNS: tuple[str, ...] = ("run_name", "checkpoint", "lambda_n", "width", "n_images", "check", "values",
                                   "verdict", "rule")
SERIES_COLUMNS: tuple[str, ...] = (
    "series", "model", "dataset", "params", "memory_bytes", "norm_memory", "macs", "delay_ns", "norm_delay",
    "conv_norm_delay_min", "conv_norm_delay_mean", "conv_norm_delay_max", "energy_pj", "norm_energy",
    "epoch_time_s", "norm_epoch_time")


def _cell(value: Any) -> str:
    """Integers in full, floats with four significant digits (or whole when >= 1000), NaN as an empty cell."""
    if isinstance(value, bool):
        return "yes" if value else ""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return str(int(value))
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(df: pd.DataFrame, columns: Sequence[str]) -> str:
    """``df`` as a GitHub Markdown table of the named columns that it has (``_(none)_`` when empty)."""
    cols = [c for c in columns if c in df.columns]
    if df.empty:
        return "_(none)_"
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df[cols].itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def render_report(*, command: str, cost: str, hardware: Mapping[str, Any], attack: str, checkpoint: str,
                  frontier: pd.DataFrame, series: pd.DataFrame, points: pd.DataFrame,
                  reference: pd.DataFrame, figures: Mapping[str, str], sanity: pd.DataFrame | None = None) -> str:
    """The whole report.md.

    Args:
        command: the one command that regenerates the report.
        cost: the frontier's cost axis.
        hardware: the HardwareConfig fields the delay columns were computed under.
        attack, checkpoint: how the measured points were selected (described in words).
        frontier, series, points, reference: the tables to print.
        figures: caption -> relative path of a PNG.
        sanity: the runs' gradient-masking checks (``sanity.csv`` rows with ``run_name``), if any.
    """
    hw_rows = " ".join(f"`{k}={v}`" for k, v in hardware.items() if k != "description")
    parts = [
        "# hwsim report",
        "",
        "Regenerate with:",
        "",
        "```sh",
        command,
        "```",
        "",
        "## Conventions",
        "",
        "- CA and RA are accuracies in percent on the evaluated images; RA is under the attack "
        f"`{attack}` (points of other attacks are in `points.csv` but not compared). Checkpoint: {checkpoint}.",
        "- Randomised settings (a forward that draws noise: FLOAT with lambda_n > 0) are attacked with EOT "
        "(`eot` noise draws averaged per attack gradient) and scored over `n_draws` noise draws: CA and RA are "
        "the means over the draws, `ca_std` / `ra_std` their standard deviations; a sample is robust on a draw "
        "when it is classified correctly there at the clean image and at every attack candidate. "
        "Deterministic settings have `n_draws` 1, `eot` 0 and zero spreads.",
        "- `lambda_label`: the training lambda for PGD-AT runs (one model per lambda), else the inference "
        "knob lambda_n.",
        "- Costs are computed by `hwsim.cost.model_cost` for the exact network that runs: model, variant, "
        "dataset, FiLM dim, BN kind, width and density of each row (lambda_n and lambda_th do not change "
        "the network). `params`: active parameters; `memory_bytes`: weight parameters x b_w / 8 (BN and "
        "alpha excluded, as in the FLOAT paper's Fig. 7b); `macs`: multiply-accumulates of conv and linear "
        "layers; `delay_ns`: analytical ASIC delay (FLOAT paper Eq. 7-9) of all conv and linear layers.",
        "- `norm_delay`: delay over that of the plain (`base`) network at the same width. `norm_memory`: "
        "memory over that of the plain network at full width and density. `norm_memory_max`: memory over "
        "the largest model of the same architecture in the table (Fig. 1's normalisation). "
        "`conv_norm_delay_*`: min / mean / max over the conditional conv layers of t_V / t (Fig. 7c).",
        "- `energy_pj` (when the hardware has energy fields): energy per inference in pJ (SPEC 3.1: weight "
        "reads, MACs, FLOAT's noise, OAT's FiLM; no activation traffic); `norm_energy`: over that of the plain "
        "network at the same width. The accuracy-vs-energy frontier is drawn beside the chosen cost's.",
        f"- Hardware: {hw_rows}.",
        f"- Pareto frontier: cost `{cost}` lower is better, CA and RA higher are better; a point is on the "
        "frontier when no other point is at least as good in all three and better in one. Identical points "
        "are all kept. `front_ca` / `front_ra` mark the 2-D frontiers of one accuracy against the cost "
        "(the step lines of the frontier figure). Reference points are drawn but never on a frontier.",
        "- Training time per epoch: mean `epoch_time_s` of `metrics.jsonl`, averaged over the runs of a series "
        "trained as several models (PGD-AT: one per lambda); `norm_epoch_time` is relative to the fastest "
        "series of the same model and dataset, so it depends on the machine the runs trained on.",
        "",
        f"## Pareto frontier ({cost}; CA and RA jointly)",
        "",
        markdown_table(frontier, FRONTIER_COLUMNS),
        "",
    ]
    for caption, path in figures.items():
        parts += [f"### {caption}", "", f"![{caption}]({path})", ""]
    parts += ["## Cost per series", "", markdown_table(series, SERIES_COLUMNS), ""]
    if not reference.empty:
        parts += ["## Reference points (published)", "",
                  markdown_table(reference, ("label", "variant", "width", "density", "ca", "ra", "memory_bytes",
                                             "norm_memory", "source", "cost_note")), ""]
    if sanity is not None and not sanity.empty:
        verdicts = sanity["verdict"].astype(str)
        parts += ["## Gradient-masking checks (`sanity.csv`)", "",
                  f"Checks of Athalye et al. 2018 / Carlini et al. 2019 at each run's most robust setting "
                  f"(`hwsim eval RUN --sanity`): {int((verdicts == 'pass').sum())} pass, "
                  f"{int((verdicts == 'FAIL').sum())} FAIL, {int((verdicts == 'skip').sum())} skipped. A FAIL "
                  "means the run's RA is not trustworthy as measured (see the rule column).", "",
                  markdown_table(sanity, SANITY_COLUMNS), ""]
    parts += [f"## Every point ({len(points)} rows)", "", markdown_table(points, POINT_COLUMNS), ""]
    return "\n".join(parts)
