"""ZigZag (KU Leuven, ``zigzag-dse``) input files from hwsim's layer records (SPEC 3.3).

What is written, so that ``python run_zigzag.py`` runs ZigZag 3.9 in the folder (``zigzag.api.
get_hardware_performance_zigzag`` on the three files, minimal energy):

* ``STEM.yaml``, the workload in ZigZag's own format, one layer per GEMM of :mod:`hwsim.export.gemm` (the same
  rows as the SCALE-Sim export): a plain conv as ``Conv`` with its kernel, stride and output size; every other
  GEMM (M, N, K) as the convolution ``K = N``, ``C = K``, ``OY = M``, ``OX = FY = FX = 1`` (linears, activation
  products, a FLOAT layer with its noise row, OAT's ``film_mlp1``, ``film_mlp2`` and ``film_affine``), so that
  one mapping serves all of them. Strides and dilations per axis go into the dimension relations. Deviation from SPEC 3.3 (ONNX for the backbone, yaml for the extras): one yaml
  for everything, written from the records without torch, so that one ZigZag run covers the whole network
  (ZigZag's ONNX path prices the FLOAT and FiLM Mul/Add at zero anyway).
* ``hardware.yaml``: the multipliers as a 2-D array (a Von-Neumann machine's n_mult as the R x C of
  :func:`hwsim.export.scalesim.von_neumann_array`, a systolic array's own), one weight memory of
  ``b_io n_bank`` bits per access at ``e_read_pj`` per access, ``unit_energy = e_mult + e_acc`` (at ``b_w``, as
  :class:`hwsim.delay.OpEnergies` scales them), and free activation memories and registers: hwsim's model
  charges no activation traffic, so the two compare like for like (give them costs to see what it adds).
* ``mapping.yaml``: input channels over the array's rows (D1), output channels over its columns (D2).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hwsim.export.gemm import model_gemms
from hwsim.export.scalesim import array_of

RUNNER = '''"""Run ZigZag on the files hwsim wrote here (pip install zigzag-dse six): per-layer and total energy (pJ),
latency and ideal cycles, minimal-energy mapping."""
from zigzag.api import get_hardware_performance_zigzag
from zigzag.cost_model.cost_model import CostModelEvaluation


def evaluations(x):
    if isinstance(x, CostModelEvaluation):
        yield x
    elif isinstance(x, (list, tuple)):
        for y in x:
            yield from evaluations(y)


energy, latency, cmes = get_hardware_performance_zigzag("{stem}.yaml", "hardware.yaml", "mapping.yaml",
                                                       opt="energy", dump_folder="out",
                                                       loma_show_progress_bar=False)
print("layer,ideal_cycle,latency,mac_energy_pj,weight_read_energy_pj,energy_pj")
for cme in evaluations(cmes):
    w = sum(cme.mem_energy_breakdown[op][-1] for op in cme.mem_energy_breakdown if str(op) == "W")
    print(f"{{cme.layer.name}},{{cme.ideal_cycle}},{{cme.latency_total2}},{{cme.mac_energy}},{{w}},{{cme.energy_total}}")
print(f"total,,{{latency}},,,{{energy}}")
'''


def _yaml(value, indent: int = 0) -> str:
    """The small subset of YAML these files need (no PyYAML dependency): mappings, lists, scalars."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item and not _inline(item):
                lines.append(f"{pad}{key}:\n{_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return "\n".join(lines)
    lines = []
    for item in value:
        if isinstance(item, dict):
            body = _yaml(item, indent + 2).lstrip()
            lines.append(f"{pad}- {body}")
        else:
            lines.append(f"{pad}- {_scalar(item)}")
    return "\n".join(lines)


def _inline(value) -> bool:
    return isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value) and len(value) > 0 \
        and not all(isinstance(v, str) and "," in v for v in value)


def _scalar(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str) and (not value or any(c in value for c in ":#[]{}") or value.strip() != value):
        return '"' + value.replace('"', '\\"') + '"'
    return str(value)


def workload(records: Iterable, b_w: int) -> list[dict]:
    """ZigZag workload layers, one per GEMM, each reading its input from memory (``operand_source`` itself)."""
    layers = []
    for i, g in enumerate(model_gemms(records)):
        name = g.layer if g.part in ("conv", "linear", "matmul") else f"{g.layer}.{g.part}"
        if g.index or g.part == "matmul":
            name += f".{'b' if g.part == 'matmul' else 'g'}{g.index}"
        if g.conv_form:
            sizes = [1, g.n, g.channels, g.h_out, g.w_out, g.kernel_h, g.kernel_w]
            relations = [f"ix={g.stride_w}*ox+{g.dilation_w}*fx", f"iy={g.stride_h}*oy+{g.dilation_h}*fy"]
        else:
            sizes, relations = [1, g.n, g.k, g.m, 1, 1, 1], ["ix=1*ox+1*fx", "iy=1*oy+1*fy"]
        layers.append({
            "id": i, "name": name, "operator_type": "Conv",
            "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
            "dimension_relations": relations,
            "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"], "loop_sizes": sizes,
            "operand_precision": {"W": b_w, "I": b_w, "O": 32, "O_final": b_w},
            "operand_source": {"I": i},
        })
    return layers


def _port(name: str, kind: str, bits: int, allocation: list[str]) -> dict:
    return {"name": name, "type": kind, "bandwidth_min": bits, "bandwidth_max": bits, "allocation": allocation}


def hardware(hw, name: str) -> dict:
    """ZigZag accelerator of ``hw`` (energies required: SPEC 3.1's fields)."""
    from hwsim.delay import OpEnergies

    e = OpEnergies.of(hw)
    rows, cols, _ = array_of(hw)
    word = hw.b_io * hw.n_bank
    free = 10**12  # bits/cycle of the free activation memory: never a bottleneck
    return {
        "name": name,
        "memories": {
            "rf_w": {"size": hw.b_w, "r_cost": 0, "w_cost": 0, "area": 0, "latency": 1, "operands": ["I2"],
                     "ports": [_port("r_port_1", "read", hw.b_w, ["I2, tl"]),
                               _port("w_port_1", "write", hw.b_w, ["I2, fh"])], "served_dimensions": []},
            "rf_o": {"size": 32, "r_cost": 0, "w_cost": 0, "area": 0, "latency": 1, "operands": ["O"],
                     "ports": [_port("r_port_1", "read", 32, ["O, tl"]), _port("r_port_2", "read", 32, ["O, th"]),
                               _port("w_port_1", "write", 32, ["O, fh"]), _port("w_port_2", "write", 32, ["O, fl"])],
                     "served_dimensions": []},
            "weights": {"size": 10**13, "r_cost": e.read, "w_cost": e.read, "area": 0, "latency": 1,
                        "operands": ["I2"], "ports": [_port("rw_port_1", "read_write", word, ["I2, fh", "I2, tl"])],
                        "served_dimensions": ["D1", "D2"]},
            "activations": {"size": 10**13, "r_cost": 0, "w_cost": 0, "area": 0, "latency": 1,
                            "operands": ["I1", "O"],
                            "ports": [_port("rw_port_1", "read_write", free,
                                            ["I1, fh", "I1, tl", "O, fh", "O, tl", "O, fl", "O, th"])],
                            "served_dimensions": ["D1", "D2"]},
        },
        "operational_array": {"input_precision": [hw.b_w, hw.b_w], "unit_energy": e.mult + e.acc, "unit_area": 1,
                              "dimensions": ["D1", "D2"], "sizes": [rows, cols]},
    }


def mapping(hw) -> list[dict]:
    rows, cols, _ = array_of(hw)
    return [{"name": "default", "spatial_mapping": {"D1": [f"C, {rows}"], "D2": [f"K, {cols}"]},
             "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}]


def write_zigzag(records: Iterable, hw, folder: str | Path, stem: str) -> None:
    """Write ``STEM.yaml``, ``hardware.yaml``, ``mapping.yaml``, ``run_zigzag.py`` and ``README.txt``."""
    folder = Path(folder)
    (folder / f"{stem}.yaml").write_text(_yaml(workload(records, hw.b_w)) + "\n", encoding="utf-8")
    (folder / "hardware.yaml").write_text(_yaml(hardware(hw, hw.name)) + "\n", encoding="utf-8")
    (folder / "mapping.yaml").write_text(_yaml(mapping(hw)) + "\n", encoding="utf-8")
    (folder / "run_zigzag.py").write_text(RUNNER.format(stem=stem), encoding="utf-8")
    rows, cols, _ = array_of(hw)
    (folder / "README.txt").write_text(
        f"ZigZag input written by hwsim: {stem}.yaml (one layer per GEMM, as the SCALE-Sim export), "
        f"hardware.yaml (a {rows} x {cols} multiplier array, weights in one memory of {hw.b_io * hw.n_bank}-bit "
        f"accesses at {hw.e_read_pj} pJ, free activation memories) and mapping.yaml.\nRun it here with\n\n"
        "    python run_zigzag.py\n\n(pip install zigzag-dse six; numpy < 2.3 if SCALE-Sim shares the "
        "environment).\n", encoding="utf-8")
