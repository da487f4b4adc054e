"""The cost side of the FLOAT paper, recomputed by hwsim and set next to the paper's reported values.

Regenerate the committed report with::

    python -m hwsim.report.paper --out reports/paper

Models and datasets are the paper's (supplement Sec. 1.3): ResNet34 on CIFAR-10, WRN16-8 on SVHN, WRN40-2 on
STL-10, each as ``base`` (what PGD-AT trains), ``float`` and ``oat``. OAT is costed with the paper's
convention: FiLM lambda encoding d = 1 and single BN (``film_dim=1, bn="single"``); FLOAT with its dual BN
(``bn="dual"``), which memory excludes anyway. The reported values live in ``hwsim/data/float_paper_costs.csv``
with the table or section each comes from.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim.errors import HwsimError
from hwsim.files import check_output_dir, staged_dir
from hwsim.report.join import attach_costs
from hwsim.report.markdown import markdown_table

__all__ = ["PAPER_SETUPS", "PAPER_VARIANTS", "COMMAND", "paper_costs", "paper_values", "paper_comparison",
           "write_paper_report", "main"]

#: (model, dataset) pairs of the paper's cost figures and its supplement's Table 1.
PAPER_SETUPS: tuple[tuple[str, str], ...] = (("resnet34", "cifar10"), ("wrn16_8", "svhn"), ("wrn40_2", "stl10"))
#: variant -> (film_dim, bn) as the paper costs it.
PAPER_VARIANTS: dict[str, tuple[int, str]] = {"base": (1, "single"), "float": (1, "dual"), "oat": (1, "single")}
#: The command that regenerates reports/paper (printed at the top of its README).
COMMAND = "python -m hwsim.report.paper --out reports/paper"
#: Number of lambdas of the paper's Fig. 6/7 comparison (S_lambda = {0, 0.2, 0.7, 1}): PGD-AT needs a model each.
N_LAMBDAS = 4

_SERIES = {"base": "PGD-AT:1T", "float": "FLOAT", "oat": "OAT"}


def paper_costs(hw: Any = None, cost_fn: Callable[..., Any] | None = None) -> pd.DataFrame:
    """hwsim's cost of every paper model x variant under ``hw`` (default asic65).

    Returns:
        One row per (model, dataset, variant) with the cost columns of :func:`hwsim.report.join.attach_costs`
        plus ``series`` (the paper's name: PGD-AT:1T for one base model) and ``weight_params`` =
        memory_bytes x 8 / b_w (the parameters counted in the memory, BN and alpha excluded);
        ``nonzero_params`` is left out (see the comment in the code).
    """
    if hw is None:
        from hwsim.hardware import get_preset

        hw = get_preset("asic65")
    rows = [{"model": m, "dataset": d, "variant": v, "film_dim": PAPER_VARIANTS[v][0], "bn": PAPER_VARIANTS[v][1],
             "width": 1.0, "density": 1.0} for m, d in PAPER_SETUPS for v in PAPER_VARIANTS]
    table = attach_costs(pd.DataFrame(rows), hw=hw, cost_fn=cost_fn)
    table.insert(3, "series", [_SERIES[v] for v in table["variant"]])
    table["weight_params"] = table["memory_bytes"] * 8 // int(hw.b_w)
    # nonzero_params of an untrained dense model counts chance zeros of its random init: not a property of
    # the network, and it would make the committed report differ run to run
    return table.drop(columns="nonzero_params")


def paper_values() -> pd.DataFrame:
    """The paper's reported cost numbers (``hwsim/data/float_paper_costs.csv``), each with its source."""
    with resources.files("hwsim").joinpath("data/float_paper_costs.csv").open("r", encoding="utf-8") as f:
        return pd.read_csv(f)


def _storage(costs: pd.DataFrame) -> pd.DataFrame:
    """Fig. 7(b): weight storage per series, PGD-AT for one lambda (1T) and for all N_LAMBDAS (one model each)."""
    rows = []
    for (model, dataset), group in costs.groupby(["model", "dataset"], sort=False):
        mem = dict(zip(group["variant"], group["memory_bytes"]))
        for name, value in (("PGD-AT:1T", mem["base"]), (f"PGD-AT:{N_LAMBDAS}T", N_LAMBDAS * mem["base"]),
                            ("FLOAT", mem["float"]), ("OAT", mem["oat"])):
            rows.append({"model": model, "dataset": dataset, "series": name, "memory_bytes": int(value),
                         "ratio_vs_float": value / mem["float"]})
    return pd.DataFrame(rows)


def paper_comparison(costs: pd.DataFrame, values: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every reported number next to hwsim's, with the relative difference (hwsim / paper - 1).

    Quantities: ``params`` is compared with hwsim's ``weight_params`` (the paper counts the conv and FC
    weights: FLOAT's 21.28M equals the plain ResNet34), ``macs`` with hwsim's conv + linear MACs (the paper's
    "FLOPs" are these MACs), ``memory_bytes`` directly, ``storage_ratio_vs_float`` with OAT / FLOAT memory,
    and ``conv_delay_vs_float_max`` ("FLOAT up to 1.66x faster than OAT") with the ratio of the tallest bars
    of Fig. 7(c), conv_norm_delay_max(OAT) / conv_norm_delay_max(FLOAT).
    """
    values = paper_values() if values is None else values
    by_key = costs.set_index(["model", "dataset", "variant"])
    rows = []
    for rec in values.to_dict("records"):
        key = (rec["model"], rec["dataset"], rec["variant"])
        if key not in by_key.index:
            raise HwsimError(f"paper value for {key} has no hwsim cost row; paper setups: {PAPER_SETUPS}")
        mine = by_key.loc[key]
        float_row = by_key.loc[(rec["model"], rec["dataset"], "float")]
        quantity = rec["quantity"]
        if quantity == "params":
            hwsim_value, what = mine["weight_params"], "weight parameters (memory_bytes x 8 / b_w)"
        elif quantity == "macs":
            hwsim_value, what = mine["macs"], "conv + linear MACs"
        elif quantity == "memory_bytes":
            hwsim_value, what = mine["memory_bytes"], "weight bytes at b_w bits"
        elif quantity == "storage_ratio_vs_float":
            hwsim_value, what = mine["memory_bytes"] / float_row["memory_bytes"], "memory(OAT) / memory(FLOAT)"
        elif quantity == "conv_delay_vs_float_max":
            hwsim_value = mine["conv_norm_delay_max"] / float_row["conv_norm_delay_max"]
            what = "max t_O/t over max t_F/t (conditional convs)"
        else:
            raise HwsimError(f"unknown quantity {quantity!r} in float_paper_costs.csv")
        rows.append({"model": rec["model"], "dataset": rec["dataset"], "variant": rec["variant"],
                     "quantity": quantity, "hwsim": float(hwsim_value), "paper": float(rec["value"]),
                     "difference": float(hwsim_value) / float(rec["value"]) - 1.0, "hwsim_counts": what,
                     "source": rec["source"], "note": rec.get("note") if isinstance(rec.get("note"), str) else ""})
    return pd.DataFrame(rows)


def _readme(costs: pd.DataFrame, storage: pd.DataFrame, comparison: pd.DataFrame, hw: Any) -> str:
    shown = comparison.assign(difference=[f"{d:+.2%}" for d in comparison["difference"]])
    hw_fields = " ".join(f"`{k}={v}`" for k, v in hw.as_dict().items() if k != "description")
    big = comparison[(comparison["difference"].abs() > 0.01) | (comparison["note"] != "")]
    notes = "\n".join(
        f"- {r.model} {r.variant} {r.quantity}: hwsim {r.hwsim:.6g} vs paper {r.paper:.6g} "
        f"({r.difference:+.2%}).{' ' + r.note + '.' if r.note else ''}"
        for r in big.itertuples()) or "- none."
    return "\n".join([
        "# The FLOAT paper's cost side, recomputed by hwsim",
        "",
        "Regenerate (a test fails when this directory is out of date):",
        "",
        "```sh",
        COMMAND,
        "```",
        "",
        "Models: ResNet34 / CIFAR-10, WRN16-8 / SVHN, WRN40-2 / STL-10 (supplement Sec. 1.3) as `base` (what "
        "PGD-AT trains), `float` and `oat`. OAT is costed as the paper does: FiLM lambda encoding d = 1, "
        "single BN. `params` counts every parameter of the network that runs (BN, alpha and FiLM included); "
        "`weight_params` = memory_bytes x 8 / b_w counts what the memory counts (conv, FiLM and linear "
        "weights; BN and alpha excluded, as in Fig. 7b). `macs`: multiply-accumulates of conv and linear "
        "layers. Delays: FLOAT paper Eq. 7-9 under the hardware below. `conv_norm_delay_*`: min / mean / max "
        "over the conditional conv layers of t_V / t, the statistics of Fig. 7(c).",
        "",
        f"Hardware: {hw_fields}.",
        "",
        "## hwsim's numbers (`costs.csv`)",
        "",
        markdown_table(costs, ("model", "dataset", "series", "params", "weight_params", "memory_bytes", "macs",
                               "delay_ns", "norm_delay", "norm_memory", "conv_norm_delay_min",
                               "conv_norm_delay_mean", "conv_norm_delay_max")),
        "",
        f"## Fig. 7(b): parameter storage (`storage.csv`; PGD-AT:{N_LAMBDAS}T = one model per lambda)",
        "",
        markdown_table(storage, ("model", "dataset", "series", "memory_bytes", "ratio_vs_float")),
        "",
        "![storage of ResNet34 / CIFAR-10](storage.png)",
        "",
        "## Fig. 7(c): conditional CONV delay of ResNet34 / CIFAR-10, normalised to the plain conv",
        "",
        "![conv delay](conv_delay.png)",
        "",
        "## Next to the paper's reported values (`comparison.csv`)",
        "",
        markdown_table(shown, ("model", "dataset", "variant", "quantity", "hwsim", "paper", "difference",
                               "hwsim_counts", "source")),
        "",
        "Differences above 1%, and what explains them where we know:",
        "",
        notes,
        "",
    ])


def write_paper_report(out: str | Path, hw: Any = None, cost_fn: Callable[..., Any] | None = None) -> list[str]:
    """Write README.md, costs.csv, storage.csv, comparison.csv and the two figures into ``out``.

    Written into a temporary directory next to ``out`` and moved into place at the end, with the marker
    ``.hwsim-report``; an existing ``out`` is replaced only when it is empty or has that marker (a report).

    Returns:
        The file names written, sorted.
    """
    if hw is None:
        from hwsim.hardware import get_preset

        hw = get_preset("asic65")
    check_output_dir(out)  # before the costs are computed: a refusal costs nothing
    out = Path(out)
    costs = paper_costs(hw, cost_fn)
    storage = _storage(costs)
    comparison = paper_comparison(costs)
    with staged_dir(out) as tmp:
        from hwsim.report import plots  # matplotlib only when the report is written

        costs.to_csv(tmp / "costs.csv", index=False, float_format="%.10g")
        storage.to_csv(tmp / "storage.csv", index=False, float_format="%.10g")
        comparison.to_csv(tmp / "comparison.csv", index=False, float_format="%.10g")
        # the plot functions read "series" and "origin"; the bars are hwsim's own numbers for ResNet34 (Fig. 7)
        tidy = costs[costs["model"] == "resnet34"].assign(origin="run")
        # Fig. 7(b) also shows PGD-AT:4T (one model per lambda), which only the storage table has
        r34 = storage[storage["model"] == "resnet34"]
        plain = float(r34.loc[r34["series"] == "PGD-AT:1T", "memory_bytes"].iloc[0])
        plots.plot_storage(r34.assign(origin="run", norm_memory=r34["memory_bytes"] / plain), tmp / "storage")
        plots.plot_conv_delay(tidy, tmp / "conv_delay")
        for svg in tmp.glob("*.svg"):
            svg.unlink()  # the README embeds PNGs; SVGs would double the committed size
        (tmp / "README.md").write_text(_readme(costs, storage, comparison, hw), encoding="utf-8")
        files = sorted(p.name for p in tmp.iterdir())
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hwsim.report.paper --out DIR [--hw PRESET|FILE.toml] [--set KEY=VALUE ...]``."""
    parser = argparse.ArgumentParser(prog="python -m hwsim.report.paper", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="reports/paper", help="output directory (default: reports/paper)")
    parser.add_argument("--hw", default="asic65", help="hardware preset or TOML file (default: asic65)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        from hwsim.hardware import load_hardware

        files = write_paper_report(args.out, load_hardware(args.hw, args.overrides))
    except HwsimError as exc:
        print(f"hwsim: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
