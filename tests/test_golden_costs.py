"""Golden costs of every zoo model x variant x preset: active and nonzero params, memory, MACs and delay.

The numbers live in ``tests/golden_costs.json`` and are compared exactly. After an intended change of a
counting or delay convention, regenerate them and review the diff of the JSON file before committing::

    HWSIM_REGEN_GOLDEN=1 python -m pytest tests/test_golden_costs.py

Regeneration rewrites the entries of the tests it runs (``-k`` narrows it) and keeps the others; after removing
or renaming a model, variant or preset, delete the file first so that no stale entry stays.

Settings: the dataset's default input, paper cost convention (FiLM d = 1, single BN), floats-* at density 0.5,
*-slim at width 0.5 of {0.5, 1.0}. Presets: ``asic65``, ``examples/hw_6bit.toml`` (b_io / b_w not an integer)
and ``examples/hw_bitmap.toml`` (asic65 with bitmap storage and zero skipping, so pruned variants differ).
A model is traced once per session and costed under all three presets (the ``zoo_traced`` fixture). The small models
run in the quick suite; the large ones are marked ``slow``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hwsim.cost import ModelSetting
from hwsim.count import count
from hwsim.delay import model_delay
from hwsim.hardware import get_preset, load_toml
from models import VARIANTS, list_models

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).with_name("golden_costs.json")
REGENERATE = os.environ.get("HWSIM_REGEN_GOLDEN") == "1"
PRESETS = {
    "asic65": lambda: get_preset("asic65"),
    "hw_6bit": lambda: load_toml(ROOT / "examples" / "hw_6bit.toml"),
    "bitmap": lambda: load_toml(ROOT / "examples" / "hw_bitmap.toml"),
}
QUICK_MODELS = {"small_cnn", "wrn40_2", "vit_tiny"}  # under a second for all their variants; the rest are `slow`


def setting(model: str, variant: str) -> ModelSetting:
    return ModelSetting(model, variant, density=0.5 if variant.startswith("floats") else 1.0,
                        width=0.5 if variant.endswith("-slim") else None)


def costs(net, trace, hw) -> dict[str, int | float]:
    report = count(net, trace, hw)
    delay = model_delay(trace.shapes(), hw)
    return {"params": report.params.active, "params_nonzero": report.params.nonzero,
            "memory_bytes": report.memory_bytes, "macs": report.macs, "delay_ns": delay.delay_ns}


def _cases():
    for model in list_models():
        marks = () if model in QUICK_MODELS else (pytest.mark.slow,)
        for variant in VARIANTS:
            for preset in PRESETS:
                yield pytest.param(model, variant, preset, marks=marks, id=f"{model}-{variant}-{preset}")


@pytest.mark.parametrize(("model", "variant", "preset"), list(_cases()))
def test_golden_costs(zoo_traced, model, variant, preset):
    key = f"{model}/{variant}/{preset}"
    net, trace = zoo_traced(setting(model, variant))
    got = costs(net, trace, PRESETS[preset]())
    if REGENERATE:
        table = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        table[key] = got
        lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(table.items())]  # one line per entry
        GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n")
        return
    table = json.loads(GOLDEN.read_text())
    assert key in table, f"no golden costs for {key}: regenerate them (see this module's docstring)"
    assert got == table[key]


def test_golden_file_has_no_stale_entries():
    """Every entry belongs to a registered model, variant and preset (a renamed one would hide here)."""
    expected = {f"{m}/{v}/{p}" for m in list_models() for v in VARIANTS for p in PRESETS}
    assert set(json.loads(GOLDEN.read_text())) == expected


def test_presets_differ_where_they_should():
    """The three presets exercise different terms: 6-bit weights shrink memory, bitmap storage charges the map."""
    table = json.loads(GOLDEN.read_text())
    base, pruned = table["small_cnn/base/asic65"], table["small_cnn/floats-i/asic65"]
    assert table["small_cnn/base/hw_6bit"]["memory_bytes"] < base["memory_bytes"]
    assert table["small_cnn/base/bitmap"] == base  # dense layers: the storage options change nothing
    bitmap = table["small_cnn/floats-i/bitmap"]
    assert bitmap["memory_bytes"] < pruned["memory_bytes"] and bitmap["delay_ns"] < pruned["delay_ns"]
