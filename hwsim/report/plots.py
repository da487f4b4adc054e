"""Report plots (matplotlib, Agg backend): every number drawn is a column of the joined table.

Each function takes the tidy DataFrame of :func:`hwsim.report.join.join` (or the subset a report selected)
and a path stem, writes ``stem.png`` and ``stem.svg`` and returns both paths. Plots only lay out: they pick
rows and columns, never compute a cost or an accuracy. Colours follow the Okabe-Ito palette, which stays
distinguishable under the common colour-vision deficiencies; markers differ per series as well, so that the
figures also read in grey scale. Reference (published) points are hollow black-edged markers.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

from hwsim.report.join import series_costs  # noqa: E402

__all__ = ["plot_tradeoff", "plot_accuracy_vs_memory", "plot_conv_delay", "plot_training_time",
           "plot_storage", "plot_frontier", "OKABE_ITO", "AXIS_LABELS"]

#: Okabe & Ito (2008) colour-blind-safe palette, black left out (reserved for reference points).
OKABE_ITO: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
                              "#999999")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

#: Axis titles with units for the columns a plot can show.
AXIS_LABELS: dict[str, str] = {
    "params": "parameters (active)",
    "nonzero_params": "non-zero parameters",
    "memory_bytes": "weight memory",
    "macs": "MACs (conv + linear)",
    "delay_ns": "delay (ns)",
    "base_delay_ns": "delay of the plain network (ns)",
    "norm_delay": "delay / delay of the plain network",
    "conv_norm_delay_min": "min conditional conv delay / plain",
    "conv_norm_delay_mean": "mean conditional conv delay / plain",
    "conv_norm_delay_max": "max conditional conv delay / plain",
    "norm_memory": "memory / memory of the plain network",
    "norm_memory_max": "normalised memory (1 = largest model)",
    "energy_pj": "energy per inference (pJ)",
    "base_energy_pj": "energy of the plain network (pJ)",
    "norm_energy": "energy / energy of the plain network",
    "ca": "clean accuracy CA (%)",
    "ra": "robust accuracy RA (%)",
}

_STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
          "xtick.labelsize": 9, "ytick.labelsize": 9, "svg.hashsalt": "hwsim", "axes.grid": True,
          "grid.alpha": 0.3}


def _style(series: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Colour and marker per series, in the order given (stable across a report's plots).

    Past the palette's length the markers shift by one per round, so that no two series share both colour
    and marker (the 9th series is the 1st colour with the 2nd marker).
    """
    n = len(OKABE_ITO)
    return {s: (OKABE_ITO[i % n], _MARKERS[(i + i // n) % len(_MARKERS)]) for i, s in enumerate(series)}


def _all_series(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["series"])) if "series" in df.columns else []


def _save(fig: Figure, stem: str | Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return paths


def _panels(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One panel per model/dataset pair, titled with it."""
    if df.empty or "model" not in df.columns:
        return [("", df)]
    groups = df.groupby(["model", "dataset"], sort=False, dropna=False)
    return [(f"{m} / {d}", g) for (m, d), g in groups]


def _no_data(ax: plt.Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in the table", ha="center", va="center", transform=ax.transAxes)


def _legend(fig: Figure, axes: Sequence[plt.Axes]) -> None:
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if handles:
        fig.legend([handles[lab] for lab in labels], labels, loc="outside lower center",
                   ncol=min(3, len(labels)), frameon=False)


def _ticks(ax: plt.Axes, labels: Sequence[str]) -> None:
    """Series names as x tick labels, wrapped so that neighbours never overlap."""
    wrapped = ["\n(".join(textwrap.fill(part, width=16, break_long_words=False)
                           for part in str(s).split(" (")) for s in labels]
    ax.set_xticks(range(len(labels)), wrapped, rotation=30 if len(labels) > 5 else 0,
                  ha="right" if len(labels) > 5 else "center", fontsize=8.5)


def _engineering(axis: matplotlib.axis.Axis, column: str) -> None:
    """Counts and bytes with SI prefixes (21.3 MB, 1.16 G) instead of a 1e7 offset; other axes untouched."""
    if column == "memory_bytes":
        axis.set_major_formatter(EngFormatter(unit="B"))
    elif column in ("params", "nonzero_params", "macs"):
        axis.set_major_formatter(EngFormatter())


def _fmt_lambda(lam: float) -> str:
    return "" if lam is None or (isinstance(lam, float) and math.isnan(lam)) else f"λ={lam:g}"


def plot_tradeoff(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """CA-RA trade-off per series, points labelled by lambda (paper Fig. 6).

    x = CA, y = RA, one panel per model/dataset; the points of a series are joined in lambda order, so the
    most robust setting sits top-left as in the paper.
    """
    styles = _style(_all_series(df))
    with plt.rc_context(_STYLE):
        panels = _panels(df)
        fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 5.0), squeeze=False,
                                 layout="constrained")
        for ax, (title, part) in zip(axes[0], panels):
            if part.empty:
                _no_data(ax, "accuracy points")
            for series, rows in part.groupby("series", sort=False):
                colour, marker = styles[series]
                ref = rows["origin"].eq("reference").all()
                rows = rows.sort_values("lambda_label")
                if ref:
                    ax.scatter(rows["ca"], rows["ra"], marker=marker, facecolors="none", edgecolors="black",
                               s=45, label=f"{series} (published)", zorder=3)
                else:
                    ax.plot(rows["ca"], rows["ra"], marker=marker, color=colour, label=series, lw=1.4, ms=6)
                # one label per distinct point: coinciding settings share it ("λ=0.7, 1")
                labels: dict[tuple[float, float], list[str]] = {}
                for ca, ra, lam in zip(rows["ca"], rows["ra"], rows["lambda_label"]):
                    text = _fmt_lambda(lam)
                    if text and text not in labels.setdefault((ca, ra), []):
                        labels[(ca, ra)].append(text)
                for (ca, ra), texts in labels.items():
                    text = "λ=" + ", ".join(t.removeprefix("λ=") for t in texts) if texts else ""
                    ax.annotate(text, (ca, ra), textcoords="offset points", xytext=(4, 4), fontsize=7.5,
                                color="black" if ref else colour)
            ax.set_xlabel(AXIS_LABELS["ca"])
            ax.set_ylabel(AXIS_LABELS["ra"])
            ax.set_title(title)
        fig.suptitle("CA-RA trade-off per variant")
        _legend(fig, axes[0])
        return _save(fig, stem)


def plot_accuracy_vs_memory(df: pd.DataFrame, stem: str | Path, memory: str = "norm_memory_max") -> list[Path]:
    """CA and RA vs normalised memory (paper Fig. 1): one row of panels per model/dataset, CA left, RA right.

    ``memory`` is the x column: ``norm_memory_max`` (the paper's normalisation by the largest model) or
    ``norm_memory`` (relative to the plain network).
    """
    styles = _style(_all_series(df))
    with plt.rc_context(_STYLE):
        panels = _panels(df)
        fig, axes = plt.subplots(len(panels), 2, figsize=(10, 3.8 * len(panels) + 1), squeeze=False,
                                 layout="constrained")
        for row, (title, part) in zip(axes, panels):
            for ax, acc in zip(row, ("ca", "ra")):
                if part.empty:
                    _no_data(ax, "accuracy points")
                for series, rows in part.groupby("series", sort=False):
                    colour, marker = styles[series]
                    if rows["origin"].eq("reference").all():
                        ax.scatter(rows[memory], rows[acc], marker=marker, facecolors="none",
                                   edgecolors="black", s=45, label=f"{series} (published)", zorder=3)
                    else:
                        ax.scatter(rows[memory], rows[acc], marker=marker, color=colour, s=36, label=series,
                                   alpha=0.85)
                ax.set_xlabel(AXIS_LABELS[memory])
                ax.set_ylabel(AXIS_LABELS[acc])
                ax.set_title(f"{title}: {acc.upper()}" if title else acc.upper())
        fig.suptitle("Accuracy vs normalised memory (every knob setting)")
        _legend(fig, axes.ravel())
        return _save(fig, stem)


def _series_bars(df: pd.DataFrame) -> pd.DataFrame:
    """One bar per network (series_costs), measured rows only."""
    return series_costs(df[df["origin"] == "run"]) if "origin" in df.columns else series_costs(df)


def plot_conv_delay(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Normalised conditional-conv delay per series: bar at the mean, whiskers at min and max (Fig. 7c).

    The values are ``conv_norm_delay_min / _mean / _max`` (t_V / t per conditional conv layer under the
    report's hardware); 1.0 means no slower than the plain conv.
    """
    table = _series_bars(df)
    styles = _style(list(table["series"]))
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(max(5.0, 1.5 * len(table) + 1.5), 4.4), layout="constrained")
        if table.empty:
            _no_data(ax, "cost rows")
        x = range(len(table))
        mean, lo, hi = (table[c] for c in ("conv_norm_delay_mean", "conv_norm_delay_min", "conv_norm_delay_max"))
        ax.bar(x, mean, color=[styles[s][0] for s in table["series"]], width=0.6, label="mean")
        ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="none", ecolor="black", capsize=6, lw=1.2,
                    label="min / max")
        for xi, m in zip(x, mean):
            ax.annotate(f"{m:.3f}", (xi, m), textcoords="offset points", xytext=(0, -12), ha="center",
                        fontsize=8, color="white" if m > 0.2 else "black")
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        _ticks(ax, list(table["series"]))
        ax.set_ylabel("conv delay / plain conv delay")
        ax.set_title("Conditional CONV layer delay (min / mean / max)")
        ax.margins(y=0.15)
        ax.legend(loc="upper left", ncol=2, fontsize=8)
        return _save(fig, stem)


def _bar_chart(table: pd.DataFrame, column: str, ratio: str | None, ylabel: str, title: str,
               stem: str | Path, what: str) -> list[Path]:
    styles = _style(list(table["series"]))
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(max(5.0, 1.5 * len(table) + 1.5), 4.4), layout="constrained")
        table = table[table[column].notna()] if column in table.columns else table.iloc[:0]
        if table.empty:
            _no_data(ax, what)
        else:
            x = list(range(len(table)))
            ax.bar(x, table[column], color=[styles[s][0] for s in table["series"]], width=0.6)
            if ratio is not None:
                for xi, v, r in zip(x, table[column], table[ratio]):
                    ax.annotate(f"{r:.2f}x", (xi, v), textcoords="offset points", xytext=(0, 3), ha="center",
                                fontsize=8.5)
            _ticks(ax, list(table["series"]))
            ax.margins(y=0.12)
            _engineering(ax.yaxis, column)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        return _save(fig, stem)


def plot_training_time(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Mean training time per epoch per series, labelled with the ratio to the fastest run (Fig. 7a)."""
    return _bar_chart(_series_bars(df), "epoch_time_s", "norm_epoch_time", "training time per epoch (s)",
                      "Training time per epoch (label: x fastest)", stem, "training times (metrics.jsonl)")


def plot_storage(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Weight storage per series in bytes, labelled with the ratio to the plain network (Fig. 7b)."""
    return _bar_chart(_series_bars(df), "memory_bytes", "norm_memory", "weight memory",
                      "Parameter storage, BN and α excluded (label: x plain)", stem, "cost rows")


def plot_frontier(df: pd.DataFrame, stem: str | Path, cost: str = "memory_bytes") -> list[Path]:
    """CA and RA vs ``cost`` for every point, the 2-D frontier of each drawn as a step line.

    Reads the boolean columns ``front_ca`` / ``front_ra`` (set by the report from
    :func:`hwsim.report.pareto.pareto_front`); the step is drawn "post": the best accuracy reachable within a
    cost budget is that of the last frontier point at or below it.
    """
    styles = _style(_all_series(df))
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.8), squeeze=False, layout="constrained")
        for ax, acc in zip(axes[0], ("ca", "ra")):
            if df.empty:
                _no_data(ax, "points")
            for series, rows in df.groupby("series", sort=False):
                colour, marker = styles[series]
                ax.scatter(rows[cost], rows[acc], marker=marker, color=colour, s=34, alpha=0.8, label=series)
            flag = f"front_{acc}"
            if flag in df.columns and df[flag].any():
                front = df[df[flag].astype(bool)].sort_values(cost)
                xs, ys = list(front[cost]), list(front[acc])
                xmax = df[cost].max()
                if xmax > xs[-1]:
                    xs.append(xmax)
                    ys.append(ys[-1])
                ax.step(xs, ys, where="post", color="black", lw=1.3, label="Pareto frontier")
                # ringed too: when every point shares one cost the step line has no length to show
                ax.scatter(front[cost], front[acc], s=110, facecolors="none", edgecolors="black", linewidths=1.2,
                           zorder=3)
            ax.set_xlabel(AXIS_LABELS.get(cost, cost))
            _engineering(ax.xaxis, cost)
            ax.set_ylabel(AXIS_LABELS[acc])
            ax.set_title(f"{acc.upper()} vs {cost}")
        _legend(fig, axes[0])
        return _save(fig, stem)
