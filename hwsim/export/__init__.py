"""Export a model at a variant and knob setting to the hardware tools (SPEC 3.3).

>>> FORMATS
('scalesim', 'onnx', 'zigzag')

* ``scalesim``: SCALE-Sim v3's topology, config and layout (:mod:`hwsim.export.scalesim`), from the layer
  records of the cost commands (the shape cache where it holds them: no torch);
* ``onnx``: the transformed network as an ONNX graph (:mod:`hwsim.export.onnx`; needs torch and ``onnx``);
* ``zigzag``: ZigZag's workload, hardware and mapping (:mod:`hwsim.export.zigzag`), from the layer records.

Everything is written into a new directory at once (:func:`hwsim.files.staged_dir`): on any failure nothing
is left half-written and an existing directory hwsim did not write is never replaced.
"""

from __future__ import annotations

import re
from pathlib import Path

from hwsim.errors import HwsimError

FORMATS = ("scalesim", "onnx", "zigzag")


def stem_of(setting) -> str:
    """The file stem of an export: ``resnet18_oat``; a user model ``path/net.py:make`` gives ``net_make``."""
    model = setting.model
    if ":" in model:
        where, factory = model.rsplit(":", 1)
        model = f"{Path(where).stem}_{factory}"
    return re.sub(r"[^A-Za-z0-9_\-]", "_", f"{model}_{setting.variant}")


def export(setting, fmt: str, out: str | Path, hw=None) -> list[Path]:
    """Write ``setting`` (a :class:`hwsim.cost.ModelSetting`) in format ``fmt`` into the directory ``out``;
    returns the files written. ``hw``: the hardware a ``scalesim`` or ``zigzag`` export maps to (default
    ``asic65``; ZigZag needs its energy fields); ``onnx`` takes none (a graph has no hardware)."""
    from hwsim.files import DIR_MARKER, staged_dir

    if fmt not in FORMATS:
        raise HwsimError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "onnx" and hw is not None:
        raise HwsimError("--hw and --set do not apply to --format onnx (a graph has no hardware)")
    stem = stem_of(setting)
    if fmt in ("scalesim", "zigzag"):
        from hwsim.export.scalesim import write_scalesim
        from hwsim.export.zigzag import write_zigzag
        from hwsim.hardware import get_preset
        from hwsim.shapecache import analyze

        hw = hw or get_preset("asic65")
        if fmt == "zigzag":
            hw.require_energy()  # before anything is traced or written
        records = analyze(setting).trace.layers  # records do not depend on the hardware
        with staged_dir(out) as tmp:
            (write_scalesim if fmt == "scalesim" else write_zigzag)(records, hw, tmp, stem)
            names = sorted(p.name for p in tmp.iterdir() if p.name != DIR_MARKER)
    else:
        from hwsim.cost import build_model
        from hwsim.export.onnx import export_onnx

        model = build_model(setting)
        with staged_dir(out) as tmp:
            export_onnx(model, setting.resolved_input_size(), tmp / f"{stem}.onnx")
            names = sorted(p.name for p in tmp.iterdir() if p.name != DIR_MARKER)
    return [Path(out) / name for name in names]
