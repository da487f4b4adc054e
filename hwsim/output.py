"""Formatting of results for people and programs: tables, CSV, Markdown and JSON.

This module only formats values that library functions computed; it computes no numbers itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FORMATS = ("table", "csv", "json", "markdown")

CONVENTIONS: dict[str, str] = {
    "macs": "multiply-accumulates of conv and linear layers, plus activation x activation products (attention) "
            "in their own group matmul (one MAC = one multiply + one add; FLOPs = 2 x MACs)",
    "params": "parameter count (weights and biases) of the network that runs: active width, all tensors",
    "delay": "analytical ASIC delay in ns, FLOAT paper Eq. 7 (plain), 8 (noise), 9 (FiLM); reads then multiplies; "
             "matmul products have no stored operand (no read term), and no formula charges activation traffic",
    "film_weights": "Eq. 9 charges F = 2 d C + 4 C^2 FiLM weights to the conv that owns the FiLM (biases ignored)",
    "memory": "bytes of stored parameters at b_w bits: conv, linear, FiLM and other (embeddings, LayerNorm); "
              "BN and alpha excluded",
}


def render_rows(rows: Sequence[Mapping[str, Any]], fmt: str, columns: Sequence[str] | None = None) -> str:
    """Rows of a table as an aligned text table, CSV or Markdown (``json``: a JSON list).

    Plain Python (no pandas on the cost commands' path); the output is what ``pandas.DataFrame(rows)`` gives
    through ``to_string(index=False, float_format=...)``, ``to_csv(index=False)`` and ``to_markdown``, cell for
    cell, column types included (a test holds it to pandas): an integer column with a missing value turns into
    a float column, as in the releases that printed tables through pandas.
    """
    rows = list(rows)
    names = list(columns) if columns else list(dict.fromkeys(key for row in rows for key in row))
    table = [_column([row.get(name, _MISSING) for row in rows]) for name in names]
    if fmt == "csv":
        return _render_csv(names, table, len(rows))
    if fmt == "markdown":
        return _render_markdown(names, table, len(rows))
    if fmt == "json":
        return to_json([{name: col.json(i) for name, col in zip(names, table, strict=True)} for i in range(len(rows))])
    return _render_text(names, table, len(rows))


_MISSING = object()  # a key a row does not have (pandas: NaN)


def _is_missing(value: Any) -> bool:
    return value is None or value is _MISSING or (isinstance(value, float) and math.isnan(value))


class _Column:
    """One column's values and the dtype pandas would infer for them: bool, int, float, str or object."""

    def __init__(self, kind: str, values: list[Any], integral: bool = False) -> None:
        self.kind, self.values = kind, values
        self.integral = integral  # a float column only for its missing cells: its numbers are ints

    def text(self, i: int) -> str:  # DataFrame.to_string(float_format=_number)
        v = self.values[i]
        if self.kind == "float":
            return "NaN" if math.isnan(v) else _number(v)
        if v is _MISSING or (isinstance(v, float) and math.isnan(v)):
            return "NaN"
        s = str(v)
        return s.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r") if isinstance(v, str) else s

    def csv(self, i: int) -> str:  # DataFrame.to_csv, with ints kept ints beside blank cells (pandas "Int64")
        v = self.values[i]
        if _is_missing(v):
            return ""
        if self.integral:
            return str(int(v))
        return repr(v) if self.kind == "float" else str(v)

    def markdown(self, i: int) -> Any:  # DataFrame.map(_number on floats).to_markdown(disable_numparse=True)
        v = self.values[i]
        if v is _MISSING or isinstance(v, float):
            return _number(math.nan if v is _MISSING else v)
        return v

    def json(self, i: int) -> Any:  # DataFrame.to_dict(orient="records")
        v = self.values[i]
        return math.nan if v is _MISSING or (self.kind == "float" and v is None) else v

    @property
    def numeric(self) -> bool:
        return self.kind in ("bool", "int", "float")


def _column(values: list[Any]) -> _Column:
    values = [v.item() if hasattr(v, "item") and callable(v.item) else v for v in values]  # numpy scalars
    present = [v for v in values if not _is_missing(v)]
    complete = len(present) == len(values)
    if not present:
        if all(v is None for v in values):
            return _Column("object", values)
        return _Column("float", [math.nan] * len(values))
    if all(isinstance(v, bool) for v in present):
        return _Column("bool" if complete else "object", values)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        integral = all(isinstance(v, int) for v in present)
        if complete and integral:
            return _Column("int", values)
        return _Column("float", [math.nan if _is_missing(v) else float(v) for v in values], integral)
    if all(isinstance(v, str) for v in present):
        return _Column("str", [_MISSING if _is_missing(v) else v for v in values])
    return _Column("object", values)


def _render_text(names: list[str], table: list[_Column], n: int) -> str:
    if n == 0:  # pandas would print "Empty DataFrame / Columns: [...] / Index: []"
        return "(no rows to show)"
    lines: list[list[str]] = [[] for _ in range(n + 1)]
    for name, col in zip(names, table, strict=True):
        cells = [col.text(i) for i in range(n)]
        head = f" {name}" if col.numeric else name  # (pandas leaves room for a sign above numbers)
        width = max(len(head), *(len(c) for c in cells))
        lines[0].append(head.rjust(width))
        for i, cell in enumerate(cells, start=1):
            lines[i].append(cell.rjust(width))
    return "\n".join(" ".join(line) for line in lines)


def _render_csv(names: list[str], table: list[_Column], n: int) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for i in range(n):
        writer.writerow([col.csv(i) for col in table])
    return buffer.getvalue().rstrip("\n")


def _render_markdown(names: list[str], table: list[_Column], n: int) -> str:
    from tabulate import tabulate

    body = [[col.markdown(i) for col in table] for i in range(n)]
    align = ["right" if col.numeric else "left" for col in table]
    return tabulate(body, headers=names, tablefmt="pipe", disable_numparse=True, colalign=align)


def _number(value: float) -> str:
    """Delays (large, exact) in full; ratios and other small fractions to 6 significant digits."""
    return f"{value:.12g}" if abs(value) >= 1000 or float(value).is_integer() else f"{value:.6g}"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return value  # keep floats as floats: 905728.0 stays a number of ns
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def to_json(document: Any) -> str:
    """One JSON document, indented."""
    return json.dumps(_jsonable(document), indent=2)


def emit(text: str, output: str | Path | None) -> None:
    """Print ``text``, or write it to ``output`` (atomically) when a path is given."""
    import click

    if output is None:
        click.echo(text)
        return
    from hwsim.files import written

    with written(output) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------ delay
DELAY_LAYER_FIELDS = ("name", "kind", "k", "c_in", "c_out", "h_out", "w_out", "groups", "params", "macs",
                      "formula", "read_ns", "mult_ns", "delay_ns")
_TABLE_COLUMNS = ("name", "kind", "k", "c_in", "c_out", "h_out", "w_out", "groups", "params", "macs", "formula",
                  "film_dim", "read_ns", "mult_ns", "delay_ns")


def delay_document(
    report,
    *,
    model: str | None,
    variant: str,
    input_size: Sequence[int] | None,
    layer_params: Mapping[str, int] | None = None,
    totals: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document of ``hwsim delay`` (SPEC 8) for a :class:`~hwsim.delay.DelayReport`.

    ``layer_params`` gives each layer's traced parameter count (default: its weights W); ``totals`` adds
    model-level totals (e.g. the whole model's params) over those computed from the layers.
    """
    layers = []
    for d in report.layers:
        shape = d.layer
        layers.append({
            "name": shape.name,
            "kind": shape.kind,
            "k": shape.k,
            "kh": shape.kh,
            "kw": shape.kw,
            "kd": shape.kd,
            "d_out": shape.d_out,
            "c_in": shape.c_in,
            "c_out": shape.c_out,
            "h_out": shape.h_out,
            "w_out": shape.w_out,
            "groups": shape.groups,
            "params": (layer_params or {}).get(shape.name, shape.weights),
            "macs": shape.macs,
            "formula": shape.formula,
            "film_dim": shape.film_dim,
            "film_weights": shape.film_weights,
            "nnz": shape.stored_nnz,
            "reads": d.reads,
            "mult_passes": d.mult_passes,
            "read_ns": d.read_ns,
            "mult_ns": d.mult_ns,
            "delay_ns": d.delay_ns,
        })
    document_totals = {
        "params": sum(layer["params"] for layer in layers),
        "macs": sum(layer["macs"] for layer in layers),
        "reads": report.reads,
        "mult_passes": report.mult_passes,
        "read_ns": report.read_ns,
        "mult_ns": report.mult_ns,
        "delay_ns": report.delay_ns,
    }
    document_totals.update(totals or {})
    return {
        "model": model,
        "variant": variant,
        "input_size": list(input_size) if input_size is not None else None,
        "hardware": report.hardware.as_dict(),
        "conventions": CONVENTIONS,
        "layers": layers,
        "totals": document_totals,
    }


def _cell(layer: Mapping[str, Any], column: str):
    """A layer's value in a table: the kernel as ``kh x kw`` (``kd x kh x kw``) where it is not square."""
    if column == "k" and not layer.get("k") and layer.get("kh"):
        sides = (layer["kd"], layer["kh"], layer["kw"]) if layer.get("kd", 1) > 1 else (layer["kh"], layer["kw"])
        return "x".join(str(v) for v in sides)
    return layer[column]


def render_delay(document: Mapping[str, Any], fmt: str) -> str:
    """``hwsim delay`` output: JSON as is; otherwise the per-layer table followed by the totals."""
    if fmt == "json":
        return to_json(document)
    layer_rows = [{k: _cell(layer, k) for k in _TABLE_COLUMNS} for layer in document["layers"]]
    totals = document["totals"]
    if fmt == "csv":
        total_row = {"name": "TOTAL", "params": totals["params"], "macs": totals["macs"],
                     "read_ns": totals["read_ns"], "mult_ns": totals["mult_ns"], "delay_ns": totals["delay_ns"]}
        return render_rows([*layer_rows, total_row], "csv", _TABLE_COLUMNS)
    hw = document["hardware"]
    what = document["model"] or "layers"
    head = (f"{what} | variant {document['variant']}"
            + (f" | input {'x'.join(map(str, document['input_size']))}" if document["input_size"] else "")
            + f" | hardware {hw['name']} (b_io={hw['b_io']}, b_w={hw['b_w']}, n_bank={hw['n_bank']}, "
            f"n_mult={hw['n_mult']}, t_read={hw['t_read_ns']:g} ns, t_mult={hw['t_mult_ns']:g} ns)")
    flat: dict[str, Any] = {}
    for key, value in totals.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}[{k}]": v for k, v in value.items() if v})
        else:
            flat[key] = value
    total_rows = [{"total": key, "value": value if isinstance(value, str) else _number(value)}
                  for key, value in flat.items()]
    body = render_rows(layer_rows, fmt, _TABLE_COLUMNS)
    tail = render_rows(total_rows, fmt)
    sep = "\n\n"
    if fmt == "markdown":
        return f"**{head}**{sep}{body}{sep}{tail}{sep}Delays in ns; MACs = {CONVENTIONS['macs']}."
    return f"{head}{sep}{body}{sep}{tail}{sep}delays in ns; macs = {CONVENTIONS['macs']}"


# --------------------------------------------------------------------------------------------- analysis
def analysis_document(analysis, *, ops_all: bool = False) -> dict[str, Any]:
    """The JSON document of ``hwsim count`` / ``hwsim delay MODEL`` for a :class:`hwsim.cost.Analysis`."""
    setting, counts, trace = analysis.setting, analysis.counts, analysis.trace
    stats = analysis.normalized
    totals: dict[str, Any] = {
        "params": counts.params.active,
        "params_total": counts.params.total,
        "params_nonzero": counts.params.nonzero,
        "params_by_group": counts.params.active_groups,
        "macs": counts.macs,
        "nonzero_macs": counts.nonzero_macs,
        "memory_bytes": counts.memory_bytes,
        "base_delay_ns": analysis.base_delay.delay_ns,
        "norm_delay": analysis.norm_delay,
        "conv_norm_delay_min": stats.min,
        "conv_norm_delay_mean": stats.mean,
        "conv_norm_delay_max": stats.max,
        "conditional_convs": len(stats.ratios),
    }
    if ops_all:
        totals["ops"] = counts.ops
    document = delay_document(
        analysis.delay, model=setting.model, variant=setting.variant, input_size=analysis.input_size,
        layer_params={r.name: r.params for r in trace.layers}, totals=totals,
    )
    records = {r.name: r for r in trace.layers}
    for layer in document["layers"]:
        record = records[layer["name"]]
        layer.update({"stride": record.stride, "kernel": list(getattr(record, "kernel", ())),
                      "strides": list(getattr(record, "strides", ())), "padding": list(getattr(record, "padding", ())),
                      "dilation": list(getattr(record, "dilation", ())), "in_size": list(getattr(record, "in_size", ())),
                      "out_size": list(getattr(record, "out_size", ())), "transposed": getattr(record, "transposed", False),
                      "nonzero_params": record.nonzero_params,
                      "conditioning": record.conditioning, "film": record.film_name,
                      "c_in_active": record.c_in, "c_out_active": record.c_out,
                      "noise_adds": record.noise_adds, "film_mlp_macs": record.film_mlp_macs,
                      "film_affine_ops": record.film_affine_ops})
    document["ops_all"] = ops_all
    document["setting"] = {"dataset": setting.dataset, "film_dim": setting.film_dim, "bn": setting.bn,
                           "widths": list(setting.widths), "width": setting.width, "density": setting.density,
                           "lambda_n": setting.lambda_n}
    document["films"] = [dict(f.__dict__) for f in trace.films]
    document["unsupported_ops"] = dict(trace.unsupported)
    return document


_COUNT_COLUMNS = ("name", "kind", "k", "stride", "groups", "c_in", "c_out", "h_out", "w_out", "params",
                  "nonzero_params", "macs", "conditioning", "film_dim")
_CONDITIONING_COLUMNS = ("noise_adds", "film_mlp_macs", "film_affine_ops")


def render_analysis(document: Mapping[str, Any], fmt: str, *, command: str) -> str:
    """``hwsim delay MODEL`` (delay columns) or ``hwsim count`` (count columns) as text, CSV or Markdown."""
    if fmt == "json":
        return to_json(document)
    if command == "delay":
        text = render_delay(document, fmt)
    else:
        columns = _COUNT_COLUMNS + (_CONDITIONING_COLUMNS if document.get("ops_all") else ())
        rows = [{k: _cell(layer, k) for k in columns} for layer in document["layers"]]
        text = render_rows(rows, fmt, columns)
        if fmt != "csv":
            totals = {k: v for k, v in document["totals"].items()
                      if k in ("params", "params_total", "params_nonzero", "macs", "nonzero_macs", "memory_bytes")}
            groups = document["totals"]["params_by_group"]
            totals.update({f"params[{k}]": v for k, v in groups.items() if v})
            totals.update({f"ops[{k}]": v for k, v in document["totals"].get("ops", {}).items()})
            text += "\n\n" + render_rows([{"total": k, "value": v} for k, v in totals.items()], fmt)
            head = (f"{document['model']} | variant {document['variant']} | input "
                    f"{'x'.join(map(str, document['input_size']))} | b_w={document['hardware']['b_w']}")
            text = (f"**{head}**" if fmt == "markdown" else head) + "\n\n" + text
            text += f"\n\nmacs = {CONVENTIONS['macs']}; memory = {CONVENTIONS['memory']}"
    if fmt == "csv":
        return text
    t = document["totals"]
    notes = [f"normalised delay vs the same network plain (Eq. 7, dense): total {t['norm_delay']:.4f}; "
             f"per conditional conv (n={t['conditional_convs']}) min {t['conv_norm_delay_min']:.4f} "
             f"mean {t['conv_norm_delay_mean']:.4f} max {t['conv_norm_delay_max']:.4f}"] if command == "delay" else []
    if document["unsupported_ops"]:
        notes.append("unsupported ops (not counted): " + ", ".join(
            f"{op} x{n}" for op, n in document["unsupported_ops"].items()))
    return "\n\n".join([text, *notes])


# ---------------------------------------------------------------------------------------------- compare
def compare_rows(results) -> list[dict[str, Any]]:
    """One row per variant from :func:`hwsim.cost.compare`; delay normalised to the ``base`` row when
    present (else to each variant's own plain network)."""
    base_delay = next((a.delay.delay_ns for s, a in results if s.variant == "base"), None)
    base_memory = next((a.counts.memory_bytes for s, a in results if s.variant == "base"), None)
    rows = []
    for setting, analysis in results:
        stats = analysis.normalized
        reference = base_delay if base_delay is not None else analysis.base_delay.delay_ns
        rows.append({
            "variant": setting.variant,
            "width": setting.width if setting.width is not None else 1.0,
            "density": setting.density,
            "params": analysis.counts.params.active,
            "params_nonzero": analysis.counts.params.nonzero,
            "memory_bytes": analysis.counts.memory_bytes,
            "norm_memory": analysis.counts.memory_bytes / base_memory if base_memory else None,
            "macs": analysis.counts.macs,
            "delay_ns": analysis.delay.delay_ns,
            "norm_delay": analysis.delay.delay_ns / reference if reference else 1.0,
            "conv_norm_min": stats.min,
            "conv_norm_mean": stats.mean,
            "conv_norm_max": stats.max,
        })
    return rows


def render_compare(rows: Sequence[Mapping[str, Any]], fmt: str, *, model: str, hw) -> str:
    if fmt == "json":
        return to_json({"model": model, "hardware": hw.as_dict(), "conventions": CONVENTIONS, "variants": rows})
    text = render_rows(rows, fmt)
    if fmt == "csv":
        return text
    head = (f"{model} | hardware {hw.name} | delay normalised to base; conv_norm_* = per conditional conv "
            "t_V / t (paper Fig. 7c)")
    return (f"**{head}**" if fmt == "markdown" else head) + "\n\n" + text
