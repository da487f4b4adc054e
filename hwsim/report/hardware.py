"""reports/hardware: the variants on the paper's ASIC and on a systolic array (delay and energy, SRAM and DRAM
weights), and hwsim against SCALE-Sim 3.0.0 (cycles, filter reads) and ZigZag 3.9 (MAC and read energy).

Regenerate the committed report with::

    python -m hwsim.report.hardware --out reports/hardware

Costs are hwsim's (:func:`hwsim.shapecache.analyze`: Eq. 7-9 on ``asic65`` and ``asic65-dram``, SCALE-Sim v3's
closed form on ``systolic32``, energies of SPEC 3.1). The SCALE-Sim side is the stored
``tests/data/scalesim/compute_reports.csv`` (made by ``tests/data/scalesim/regenerate.py``) and the ZigZag side
``tests/data/zigzag/resnet18_asic65.csv``: read, never recomputed here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hwsim.errors import HwsimError
from hwsim.files import check_output_dir, staged_dir
from hwsim.report.markdown import markdown_table

COMMAND = "python -m hwsim.report.hardware --out reports/hardware"
ROOT = Path(__file__).resolve().parent.parent.parent
SCALESIM = ROOT / "tests" / "data" / "scalesim" / "compute_reports.csv"
ZIGZAG = ROOT / "tests" / "data" / "zigzag" / "resnet18_asic65.csv"
#: (label, variant, knobs) of the comparison: the compare command's defaults (pruned at density 0.5; slim at
#: width 0.5), FiLM d = 1 and single BN (the paper's cost convention).
VARIANTS = (("base", "base", {}), ("FLOAT", "float", {}), ("OAT", "oat", {}),
            ("FLOATS-c (d 0.5)", "floats-c", {"density": 0.5}), ("FLOATS-i (d 0.5)", "floats-i", {"density": 0.5}),
            ("FLOAT-slim (w 0.5)", "float-slim", {"width": 0.5}), ("OAT-slim (w 0.5)", "oat-slim", {"width": 0.5}))
#: (label, preset, overrides) of the machines.
MACHINES = (("asic65 (SRAM)", "asic65", ()), ("asic65-dram", "asic65-dram", ()),
            ("systolic32 ws", "systolic32", ()), ("systolic32 ws + 32 vector lanes", "systolic32", ("vector_lanes=32",)))
MODEL = "resnet34"


def variant_costs(model: str = MODEL) -> pd.DataFrame:
    """Delay and energy of every variant of ``model`` (CIFAR-10) on every machine, with norm_delay and
    norm_energy against the plain network at the same width on the same machine."""
    from hwsim.cost import ModelSetting
    from hwsim.hardware import load_hardware
    from hwsim.shapecache import analyze

    rows = []
    for machine, preset, overrides in MACHINES:
        hw = load_hardware(preset, overrides)
        for label, variant, knobs in VARIANTS:
            setting = ModelSetting(model, variant, **knobs)
            a = analyze(setting, hw)
            energy = a.energy.totals
            rows.append({"machine": machine, "variant": label, "delay_ns": a.delay.delay_ns,
                         "norm_delay": a.norm_delay, "cycles": a.delay.cycles, "energy_uj": energy["energy_pj"] / 1e6,
                         "norm_energy": a.norm_energy, "read_uj": energy["read_pj"] / 1e6,
                         "mac_uj": energy["mac_pj"] / 1e6, "noise_uj": energy["noise_pj"] / 1e6,
                         "film_uj": energy["film_pj"] / 1e6})
    return pd.DataFrame(rows)


def film_overhead(model: str = "resnet18") -> pd.DataFrame:
    """Per OAT layer of ``model``: t_OAT / t_base on asic65 (Eq. 9) and on systolic32 (SCALE-Sim's mapping and
    with 32 vector lanes)."""
    from hwsim.cost import ModelSetting
    from hwsim.hardware import load_hardware
    from hwsim.shapecache import analyze

    out: dict[str, dict[str, float]] = {}
    for machine, preset, overrides in (MACHINES[0], MACHINES[2], MACHINES[3]):
        a = analyze(ModelSetting(model, "oat"), load_hardware(preset, overrides))
        for layer, plain in zip(a.delay.layers, a.base_delay.layers, strict=True):
            if layer.layer.formula == "eq9":
                out.setdefault(layer.layer.name, {})[machine] = layer.delay_ns / plain.delay_ns
    return pd.DataFrame([{"layer": name, **values} for name, values in out.items()])


def scalesim_comparison(path: Path = SCALESIM) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per layer, totals): ResNet18 base / FLOAT / OAT on every stored array and dataflow, hwsim's cycles per
    layer against the sum of SCALE-Sim's over the layer's rows, and in ws hwsim's weight reads (each weight
    once) against SCALE-Sim's filter SRAM reads."""
    from hwsim import systolic
    from hwsim.cost import ModelSetting
    from hwsim.export.gemm import as_record, model_gemms
    from hwsim.export.scalesim import topology_rows
    from hwsim.shapecache import analyze

    table = pd.read_csv(path)
    geometry = ["ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "num_filter", "stride"]
    rows = []
    for variant in ("base", "float", "oat"):
        records = [as_record(r) for r in analyze(ModelSetting("resnet18", variant)).trace.layers]
        exported = topology_rows(model_gemms(records))
        for (array, dataflow), runs in table.groupby(["array", "dataflow"]):
            r, c = (int(v) for v in array.split("x"))
            measured = {tuple(row[g] for g in geometry): row for _, row in runs.iterrows()}
            sums: dict[str, list[int]] = {}
            missing = set()
            for row in exported:
                hit = measured.get(row.cells()[1:])
                if hit is None:  # a row SCALE-Sim did not run (input-stationary, see regenerate.py)
                    missing.add(row.gemm.layer)
                    continue
                acc = sums.setdefault(row.gemm.layer, [0, 0])
                acc[0] += int(hit["cycles"])
                acc[1] += int(hit["filter_reads"])
            for record in records:
                if record.name in missing:
                    continue
                shape = record.shape()
                rows.append({"variant": variant, "array": array, "dataflow": dataflow, "layer": record.name,
                             "hwsim_cycles": systolic.layer_cycles(shape, r, c, dataflow),
                             "scalesim_cycles": sums[record.name][0],
                             "hwsim_weight_reads": sum(g.count * g.n * g.k for g in systolic.layer_gemms(shape)),
                             "scalesim_filter_reads": sums[record.name][1]})
    layers = pd.DataFrame(rows)
    totals = (layers.groupby(["variant", "array", "dataflow"], sort=False)
              .agg(layers=("layer", "size"), hwsim_cycles=("hwsim_cycles", "sum"),
                   scalesim_cycles=("scalesim_cycles", "sum"),
                   layers_equal=("layer", lambda s: int((layers.loc[s.index, "hwsim_cycles"]
                                                         == layers.loc[s.index, "scalesim_cycles"]).sum())))
              .reset_index())
    return layers, totals


def zigzag_comparison(path: Path = ZIGZAG) -> pd.DataFrame:
    """ZigZag 3.9 on layers of ResNet18 OAT as exported for asic65, against hwsim's counts of the same GEMMs:
    MAC energy (MACs x (e_mult + e_acc)), weight-read energy (reads(W) x e_read) and multiplier passes
    (ceil(W / n_mult) H_o W_o, Eq. 7's multiply term) against ZigZag's ideal cycles (MACs / n_mult)."""
    from hwsim.cost import ModelSetting
    from hwsim.delay import OpEnergies
    from hwsim.export.gemm import model_gemms
    from hwsim.hardware import get_preset
    from hwsim.shapecache import analyze

    hw = get_preset("asic65")
    e = OpEnergies.of(hw)
    gemms = {}
    for g in model_gemms(analyze(ModelSetting("resnet18", "oat")).trace.layers):
        gemms[g.layer if g.part in ("conv", "linear") else f"{g.layer}.{g.part}"] = g
    zz = pd.read_csv(path)
    zz = zz[zz["layer"] != "total"]
    rows = []
    for _, row in zz.iterrows():
        g = gemms[row["layer"]]
        weights, macs = g.n * g.k, g.m * g.n * g.k
        reads = -(-weights * hw.b_w // (hw.b_io * hw.n_bank))
        # Eq. 7's multiply term for the conv and linear layers; Eq. 9 charges a FiLM's MLP ceil(F / n_mult) for
        # both GEMMs together and its affine nothing, so the FiLM rows have no pass count of their own
        passes = -(-weights // hw.n_mult) * g.m if g.part in ("conv", "linear") else None
        rows.append({"layer": row["layer"], "hwsim_mac_pj": macs * (e.mult + e.acc),
                     "zigzag_mac_pj": float(row["mac_energy_pj"]), "hwsim_read_pj": reads * e.read,
                     "zigzag_read_pj": float(row["weight_read_energy_pj"]),
                     "read_ratio": float(row["weight_read_energy_pj"]) / (reads * e.read),
                     "hwsim_mult_passes": passes, "zigzag_ideal_cycles": int(row["ideal_cycle"]),
                     "passes_ratio": passes / int(row["ideal_cycle"]) if passes is not None else None})
    return pd.DataFrame(rows).astype({"hwsim_mult_passes": "Int64"})


def _pyplot():
    """pyplot on the Agg backend (set by :mod:`hwsim.report.plots`, imported only when a figure is drawn) and
    the report's colour cycle."""
    from hwsim.report.plots import OKABE_ITO, plt

    return plt, OKABE_ITO


def _save(plt, fig, stem: Path) -> None:
    fig.tight_layout()
    fig.savefig(f"{stem}.png", dpi=110)
    plt.close(fig)


def _plot_variants(costs: pd.DataFrame, stem: Path) -> None:
    plt, OKABE_ITO = _pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    labels = [v[0] for v in VARIANTS]
    width = 0.8 / len(MACHINES)
    for ax, column, title in ((axes[0], "norm_delay", "delay / base (same machine)"),
                              (axes[1], "norm_energy", "energy / base (same machine)")):
        for i, (machine, _, _) in enumerate(MACHINES):
            values = [costs[(costs.machine == machine) & (costs.variant == v)][column].iloc[0] for v in labels]
            ax.bar([x + (i - (len(MACHINES) - 1) / 2) * width for x in range(len(labels))], values, width,
                   label=machine, color=OKABE_ITO[i])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(labels)), labels, rotation=25, ha="right", fontsize=8)
        ax.set_title(f"{MODEL} CIFAR-10: {title}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_ylim(0, max(axes[1].get_ylim()[1], 1.9))  # room for the legend above the tallest bar
    axes[1].legend(fontsize=8, loc="upper left", ncol=2)
    _save(plt, fig, stem)


def _plot_energy_split(costs: pd.DataFrame, stem: Path) -> None:
    plt, OKABE_ITO = _pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=False)
    labels = [v[0] for v in VARIANTS]
    parts = (("read_uj", "weight reads"), ("mac_uj", "MACs"), ("noise_uj", "FLOAT noise"), ("film_uj", "FiLM"))
    for ax, machine in zip(axes, ("asic65 (SRAM)", "asic65-dram"), strict=True):
        sub = costs[costs.machine == machine].set_index("variant").loc[labels]
        bottom = [0.0] * len(labels)
        for i, (column, name) in enumerate(parts):
            ax.bar(range(len(labels)), sub[column], 0.6, bottom=bottom, label=name, color=OKABE_ITO[i])
            bottom = [b + v for b, v in zip(bottom, sub[column], strict=True)]
        ax.set_xticks(range(len(labels)), labels, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel("energy per inference (uJ)")
        where = "SRAM, 274 pJ per read step" if "SRAM" in machine else "DRAM, 1950 pJ per read step"
        ax.set_title(f"{MODEL} CIFAR-10 on {machine.split()[0]}: weights in {where}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    _save(plt, fig, stem)


def _plot_scalesim(layers: pd.DataFrame, stem: Path) -> None:
    plt, OKABE_ITO = _pyplot()

    fig, ax = plt.subplots(figsize=(6, 5.2))
    for i, dataflow in enumerate(("ws", "os", "is")):
        sub = layers[layers.dataflow == dataflow]
        ax.scatter(sub.scalesim_cycles, sub.hwsim_cycles, s=14, color=OKABE_ITO[i], marker="os^"[i],
                   label=f"{dataflow} ({len(sub)} layer costs)", alpha=0.8)
    lo, hi = layers.scalesim_cycles.min(), layers.scalesim_cycles.max()
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="equal")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("SCALE-Sim 3.0.0 compute cycles (sum over the layer's rows)")
    ax.set_ylabel("hwsim systolic cycles (closed form)")
    ax.set_title("ResNet18 base/FLOAT/OAT layers, 8x8, 25x7, 32x32 arrays", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _save(plt, fig, stem)


def _plot_film(film: pd.DataFrame, stem: Path) -> None:
    plt, OKABE_ITO = _pyplot()

    fig, ax = plt.subplots(figsize=(10, 4.2))
    machines = [c for c in film.columns if c != "layer"]
    width = 0.8 / len(machines)
    for i, machine in enumerate(machines):
        ax.bar([x + (i - (len(machines) - 1) / 2) * width for x in range(len(film))], film[machine], width,
               label=machine, color=OKABE_ITO[i])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(film)), film.layer, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("t_OAT / t_base of the layer (log)")
    ax.set_title("resnet18 OAT (d = 1): a conv with its FiLM against the plain conv, per layer", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(plt, fig, stem)


def _readme(costs, film, totals, layers, zz) -> str:
    plain = zz[zz.passes_ratio.notna()]
    ws = layers[(layers.array == "32x32") & (layers.dataflow == "ws") & (layers.variant == "oat")]
    equal = int((layers.hwsim_cycles == layers.scalesim_cycles).sum())
    reads = layers[layers.dataflow == "ws"]
    reads_equal = int((reads.hwsim_weight_reads == reads.scalesim_filter_reads).sum())
    asic = costs[costs.machine == "asic65 (SRAM)"].set_index("variant")
    array = costs[costs.machine == "systolic32 ws"].set_index("variant")
    return f"""# Hardware report: the variants on the paper's ASIC and on a systolic array; hwsim against SCALE-Sim and ZigZag

Regenerate (a test fails when this directory is out of date):

```sh
{COMMAND}
```

Machines (`hwsim hw show NAME`): `asic65`, the FLOAT paper's Von-Neumann ASIC (Eq. 7-9; weights in SRAM,
274 pJ per read step); `asic65-dram`, the same with the weights in DRAM (1950 pJ per read step); `systolic32`,
a 32 x 32 weight-stationary array at asic65's 4 ns clock, costed by SCALE-Sim v3's compute cycles (stall-free,
no memory time), with the FiLM affine on one PE as SCALE-Sim maps it, and with `--set vector_lanes=32` (a
32-lane vector unit beside the array). Energies: SPEC 3.1 (Horowitz 45 nm x 1.9, CACTI 7); no activation
traffic is charged on either machine. Variants: FiLM d = 1, single BN; pruned at density 0.5, slim at width
0.5; each normalised by the plain network at the same width on the same machine.

## {MODEL} (CIFAR-10) on four machines (`variants.csv`)

{markdown_table(costs, ["machine", "variant", "delay_ns", "norm_delay", "energy_uj", "norm_energy", "read_uj", "mac_uj", "noise_uj", "film_uj"])}

![normalised delay and energy](variants.png)

![energy split, SRAM vs DRAM weights](energy_split.png)

What changes with the machine: on the ASIC OAT costs x{asic.loc['OAT', 'norm_delay']:.3f} of the plain
network's delay (Eq. 9 charges a FiLM only its F / n_mult multiplier passes and its weight reads); on the
32 x 32 array x{array.loc['OAT', 'norm_delay']:.3f}, because the FiLM affine (C H_o W_o elementwise products)
runs on one PE, while FLOAT stays near 1 on both (x{asic.loc['FLOAT', 'norm_delay']:.4f} and
x{array.loc['FLOAT', 'norm_delay']:.4f}). Energy follows the reads on the ASIC: with DRAM weights the reads
dominate and OAT's 47% more weights cost nearly as much more energy.

## FiLM overhead per layer (`film_overhead.csv`)

![FiLM overhead per layer](film_overhead.png)

{markdown_table(film, list(film.columns))}

## hwsim against SCALE-Sim 3.0.0 (`scalesim_layers.csv`, `scalesim_totals.csv`)

ResNet18 (CIFAR) as `hwsim export --format scalesim` writes it, base / FLOAT / OAT, on 8 x 8, 25 x 7 and
32 x 32 arrays in ws, os and is: hwsim's cycles per layer against the sum of SCALE-Sim's over the layer's
topology rows (the conv, and for OAT its three FiLM GEMMs). Equal in {equal} of {len(layers)} layer costs;
in ws, hwsim's weight reads (each weight once) equal SCALE-Sim's filter SRAM reads in {reads_equal} of
{len(reads)}. SCALE-Sim's numbers: `tests/data/scalesim/compute_reports.csv` (its whole simulator on every
distinct base and OAT row and two FLOAT rows at 32 x 32 ws and on three layers of every other configuration,
never a stall cycle; its compute model alone on every distinct row of every configuration, input-stationary
within a time budget; the two agree wherever both ran).

![hwsim vs SCALE-Sim](scalesim.png)

{markdown_table(totals, list(totals.columns))}

`layers`: the layers all of whose rows SCALE-Sim ran (21 each, except input-stationary on the 8 x 8 and
25 x 7 arrays and OAT's FiLM affines in is, where SCALE-Sim 3.0.0 builds its schedule in time quadratic in
the folds: hours for ResNet18's large layers); `hwsim_cycles`, `scalesim_cycles`: their sums.

OAT at 32 x 32 ws, layer by layer:

{markdown_table(ws, ["layer", "hwsim_cycles", "scalesim_cycles", "hwsim_weight_reads", "scalesim_filter_reads"])}

## hwsim against ZigZag 3.9 (`zigzag.csv`)

Layers of ResNet18 OAT as `hwsim export --format zigzag` writes them for asic65 (a 25 x 7 multiplier array,
one weight memory of 64-bit accesses at 274 pJ, 0.57 pJ per MAC, free activation memories), run by ZigZag
(`tests/data/zigzag/resnet18_asic65.csv`, made by `tests/data/zigzag/regenerate.py`). MAC energy: equal
(to 1e-6 pJ) in {int((zz.hwsim_mac_pj.round(6) == zz.zigzag_mac_pj.round(6)).sum())} of {len(zz)} layers, the
same constant times the same MACs. Weight reads: ZigZag's are {plain.read_ratio.min():.3f}x to {plain.read_ratio.max():.3f}x
hwsim's ceil(W b_w / 64) for the convs and linears (it reads tiles padded to its mapping on the 25 x 7 array).
Multiplier passes of the convs and linears (Eq. 7's ceil(W / n_mult) H_o W_o) against ZigZag's ideal cycles
(MACs / n_mult): {plain.passes_ratio.min():.4f}x to {plain.passes_ratio.max():.4f}x.
Note that hwsim prices the FiLM affine at e_mult + e_add (SPEC 3.1) where a GEMM row in ZigZag pays
e_mult + e_acc.

{markdown_table(zz, list(zz.columns))}
"""


def write_hardware_report(out: str | Path) -> list[str]:
    """Write README.md, the CSVs and the figures into ``out`` (all at once, :func:`hwsim.files.staged_dir`)."""
    check_output_dir(out)
    costs = variant_costs()
    film = film_overhead()
    layers, totals = scalesim_comparison()
    zz = zigzag_comparison()
    with staged_dir(out) as tmp:
        zz.to_csv(tmp / "zigzag.csv", index=False, float_format="%.10g")
        costs.to_csv(tmp / "variants.csv", index=False, float_format="%.10g")
        film.to_csv(tmp / "film_overhead.csv", index=False, float_format="%.10g")
        layers.to_csv(tmp / "scalesim_layers.csv", index=False)
        totals.to_csv(tmp / "scalesim_totals.csv", index=False)
        _plot_variants(costs, tmp / "variants")
        _plot_energy_split(costs, tmp / "energy_split")
        _plot_scalesim(layers, tmp / "scalesim")
        _plot_film(film, tmp / "film_overhead")
        (tmp / "README.md").write_text(_readme(costs, film, totals, layers, zz), encoding="utf-8")
        files = sorted(p.name for p in tmp.iterdir())
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hwsim.report.hardware", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="reports/hardware", help="output directory (default: reports/hardware)")
    args = parser.parse_args(argv)
    try:
        files = write_hardware_report(args.out)
    except HwsimError as exc:
        print(f"hwsim: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
