"""Reports that join accuracy (eval tables) with hwsim's cost: Pareto frontiers, plots, tables.

Entry point: :func:`build_report`. Pieces: :mod:`hwsim.report.join` (the tidy table),
:mod:`hwsim.report.pareto` (frontiers), :mod:`hwsim.report.plots`, :mod:`hwsim.report.markdown`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim.files import check_output_dir, staged_dir
from hwsim.report.join import ENERGY_FIELDS, check_cost_axis, read_sanity, select_points, series_costs
from hwsim.report.join import join as join_table
from hwsim.report.markdown import render_report
from hwsim.report.pareto import pareto_front

__all__ = ["ReportResult", "build_report", "FIGURES"]

#: Figure file stems (under ``figures/``) and their captions, in report order.
FIGURES: dict[str, str] = {
    "frontier": "Accuracy vs cost with the Pareto frontiers",
    "tradeoff": "CA-RA trade-off per variant (FLOAT paper Fig. 6)",
    "accuracy_vs_memory": "Accuracy vs normalised memory (Fig. 1)",
    "conv_delay": "Normalised conditional CONV delay, min / mean / max (Fig. 7c)",
    "training_time": "Training time per epoch (Fig. 7a)",
    "storage": "Parameter storage (Fig. 7b)",
}


@dataclass(frozen=True, eq=False)
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes:
        out: the report directory.
        files: every file written, relative to ``out``, sorted.
        points: the joined table (also ``points.csv``).
        frontier: the joint frontier rows (also ``frontier.csv``).
        command: the command that regenerates the report.
    """

    out: Path
    files: tuple[str, ...]
    points: pd.DataFrame
    frontier: pd.DataFrame
    command: str


def _default_command(runs: Sequence[str | Path], out: Path, hw: Any, reference: str | Path | None,
                     cost: str) -> str:
    args = ["hwsim", "report", *map(str, runs), "--out", str(out)]
    name = getattr(hw, "name", None)
    if name and name != "custom":
        args += ["--hw", str(name)]
    if reference is not None:
        args += ["--reference", str(reference)]
    args += ["--cost", cost]
    return shlex.join(args)


def _flag_frontiers(table: pd.DataFrame, selected: pd.DataFrame, cost: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mark the 2-D and joint frontiers of the selected rows in the whole table; return it and the joint rows."""
    table = table.copy()
    fronts = {name: pareto_front(selected, cost, gains)
              for name, gains in (("front_ca", "ca"), ("front_ra", "ra"), ("front_joint", ("ca", "ra")))}
    for name, front in fronts.items():
        table[name] = table.index.isin(front.index)
    return table, table.loc[fronts["front_joint"].index]


#: Caption of the accuracy-vs-energy frontier, drawn when the costs have energy and the frontier's axis is not it.
ENERGY_FIGURE = "Accuracy vs energy with the Pareto frontiers"


def _energy_frontier(selected: pd.DataFrame, cost: str) -> pd.DataFrame | None:
    """``selected`` with ``front_ca`` / ``front_ra`` flagged against ``energy_pj``, or None when the points have
    no energy (hardware without energy fields) or the report's frontier is already on energy."""
    if cost == "energy_pj" or "energy_pj" not in selected.columns or not selected["energy_pj"].notna().any():
        return None
    out = selected.copy()
    for name, gain in (("front_ca", "ca"), ("front_ra", "ra")):
        out[name] = out.index.isin(pareto_front(selected, "energy_pj", gain).index)
    return out


def build_report(runs: Sequence[str | Path], out: str | Path, hw: Any = None, reference: str | Path | None = None,
                 cost: str = "memory_bytes", *, checkpoint: str | None = None, attack: str | None = None,
                 cost_fn: Callable[..., Any] | None = None, command: str | None = None) -> ReportResult:
    """Join the runs with cost, find the Pareto frontier and write the report into ``out``.

    Writes ``points.csv`` (the joined table, every row), ``frontier.csv`` (the joint CA/RA/cost frontier),
    ``sanity.csv`` (every run's gradient-masking checks, when a run has them), ``report.md`` and
    ``figures/*.png`` + ``figures/*.svg`` (:data:`FIGURES`), and the marker ``.hwsim-report``
    (:data:`hwsim.files.DIR_MARKER`). Everything is written into a temporary directory next to ``out`` and moved
    into place at the end: on error ``out`` is left as it was (absent, or the previous report). An existing
    ``out`` is replaced only when it is empty or a report (it has the marker); never a run directory, one that
    holds a run or lies inside one, the current directory or a filesystem root.

    Args:
        runs: run directories (eval.csv required; config.json, metrics.jsonl optional).
        out: the report directory (a previous report there is replaced; see above).
        hw: ``HardwareConfig`` for the delay columns; None: the ``asic65`` preset.
        reference: optional CSV of published points (``hwsim/data/float_paper_reference.csv`` ships some).
        cost: the frontier's cost axis, one of :data:`hwsim.report.join.COST_AXES`.
        checkpoint, attack: which measured rows are compared (:func:`hwsim.report.join.select_points`).
        cost_fn: cost function (default ``hwsim.cost.model_cost``); tests inject a fake.
        command: the regenerating command to print in report.md (default: rebuilt from the arguments).

    Raises:
        HwsimError: unknown cost axis, a run without eval.csv, a reference CSV without its required columns or
            with a bad value, ``out`` being an existing file or a directory that may not be replaced (nothing
            is changed).
    """
    check_cost_axis(cost)
    check_output_dir(out, keep=runs)  # before the costs are computed: a refusal costs nothing
    given, out = out, Path(out)
    if hw is None:
        from hwsim.hardware import get_preset

        hw = get_preset("asic65")
    if cost in ENERGY_FIELDS and hasattr(hw, "require_energy"):
        hw.require_energy()
    command = command or _default_command(runs, out, hw, reference, cost)

    table = join_table(runs, hw=hw, reference=reference, cost_fn=cost_fn)
    sanity = read_sanity(runs)
    selected = select_points(table, checkpoint=checkpoint, attack=attack)
    table, frontier = _flag_frontiers(table, selected, cost)
    selected = table.loc[selected.index]
    refs = table[table["origin"] == "reference"]
    shown = pd.concat([selected, refs])
    attack_used = selected["attack_label"].iloc[0] if not selected.empty else "(none)"
    checkpoint_used = (checkpoint or "best where a run has it, else last") if not selected.empty else "(none)"

    with staged_dir(given, keep=runs) as tmp:
        from hwsim.report import plots  # matplotlib only when a report is written

        fig_dir = tmp / "figures"
        plots.plot_frontier(selected, fig_dir / "frontier", cost=cost)
        figures = {caption: f"figures/{stem}.png" for stem, caption in FIGURES.items()}
        energy_front = _energy_frontier(selected, cost)
        if energy_front is not None:  # accuracy vs energy beside the chosen cost's frontier (SPEC 3.1)
            plots.plot_frontier(energy_front, fig_dir / "frontier_energy", cost="energy_pj")
            figures = {FIGURES["frontier"]: figures[FIGURES["frontier"]],
                       ENERGY_FIGURE: "figures/frontier_energy.png", **figures}
        plots.plot_tradeoff(shown, fig_dir / "tradeoff")
        plots.plot_accuracy_vs_memory(shown, fig_dir / "accuracy_vs_memory")
        plots.plot_conv_delay(selected, fig_dir / "conv_delay")
        plots.plot_training_time(selected, fig_dir / "training_time")
        plots.plot_storage(selected, fig_dir / "storage")
        table.to_csv(tmp / "points.csv", index=False)
        frontier.to_csv(tmp / "frontier.csv", index=False)
        text = render_report(
            command=command, cost=cost, hardware=hw.as_dict() if hasattr(hw, "as_dict") else vars(hw),
            attack=attack_used, checkpoint=checkpoint_used, frontier=frontier, series=series_costs(selected),
            points=table[table["origin"] == "run"], reference=refs,
            figures=figures, sanity=sanity)
        if not sanity.empty:
            sanity.to_csv(tmp / "sanity.csv", index=False)
        from hwsim.report.training import plot_training_cost, render_training_section, training_cost

        training = training_cost(list(runs))
        if not training.empty:
            training.to_csv(tmp / "training_cost.csv", index=False)
            plot_training_cost(training, fig_dir / "training_cost")
            text = text.rstrip("\n") + "\n\n" + render_training_section(training, "figures/training_cost.png")
        (tmp / "report.md").write_text(text, encoding="utf-8")
        files = tuple(sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()))
    return ReportResult(out=out, files=files, points=table, frontier=frontier, command=command)
