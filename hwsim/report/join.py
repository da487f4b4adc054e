"""Join evaluation tables with hwsim's cost for the exact model, variant and knob setting.

The result is one tidy DataFrame, one row per run x checkpoint x knob setting x attack (plus optional
reference rows of published numbers). Everything a report shows is a column of this table; plots and the
Markdown writer only read it.

Columns added to the contract's ``eval.csv`` columns:

- ``origin``: ``"run"`` for measured rows, ``"reference"`` for published numbers.
- ``run_dir``: the run directory the row came from (empty for reference rows).
- ``network``: the network a row runs, named the paper's way, e.g. ``"FLOAT"``, ``"PGD-AT"``,
  ``"FLOATS-i d=0.1"``, ``"OAT slim w=0.5"``; the model and dataset are appended when the table holds more
  than one model/dataset pair. Cost is a function of the network.
- ``series``: the curve a row belongs to in plots: ``network`` plus ``" λth=0.5"`` for FLOAT-family rows
  evaluated with a nonzero BN-switch threshold (the paper draws each threshold as its own curve, Fig. 5).
- ``run_name``: the last component of the run directory, for tables.
- ``lambda_label``: the lambda a point is labelled with: the training lambda (config ``"pgd_lambda"``) for
  ``pgd-at`` runs, which train one model per lambda, else the inference knob ``lambda_n``.
- ``attack_label``: ``attack`` and ``eps`` in one string, e.g. ``"pgd20 eps=8/255"`` (the trainer's attack
  names carry their step count), with ``" x5 restarts"`` for restarts > 1 and ``" from RUN"`` for a transfer
  attack, so that white-box and transfer RA are never compared on one frontier.
- ``restarts, eot, n_draws, ca_std, ra_std, source``: as in eval.csv (:mod:`hwsim.train.evaluate`); rows of
  an eval.csv written before these columns existed get restarts 1, no source and NaN (unknown) for the rest.
- ``epoch_time_s``: mean training time per epoch over ``metrics.jsonl`` (NaN without it);
  ``norm_epoch_time``: that divided by the fastest run of the same model and dataset (1.0 = fastest).
- Cost columns from :func:`hwsim.cost.model_cost` for (model, variant, dataset, film_dim, bn, width,
  the widths a slim run trained (its config.json), density) under the chosen hardware: ``params, nonzero_params, memory_bytes, macs, delay_ns,
  base_delay_ns, norm_delay, conv_norm_delay_min, conv_norm_delay_mean, conv_norm_delay_max``.
- ``norm_memory``: ``memory_bytes`` over that of the plain network (variant ``base``, width 1.0, density 1.0)
  of the same model and dataset: the paper's Fig. 7(b) storage ratio.
- ``norm_memory_max``: ``memory_bytes`` over the largest ``memory_bytes`` of the same model and dataset in
  the table: the normalisation of the paper's Fig. 1.

Each distinct cost key is computed once per call (models are traced, which takes seconds for a ResNet).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwsim.errors import HwsimError
from hwsim.variants import VARIANT_RECORDS

__all__ = [
    "EVAL_COLUMNS", "EVAL_OPTIONAL", "SANITY_REQUIRED", "read_sanity", "COST_FIELDS", "COST_AXES",
    "REFERENCE_REQUIRED", "REFERENCE_NUMERIC", "CostKey", "read_run", "read_runs", "read_reference", "attach_costs",
    "join", "select_points", "series_costs", "check_cost_axis",
]

#: The columns of a run's eval.csv (the interface contract).
EVAL_COLUMNS: tuple[str, ...] = (
    "run", "checkpoint", "model", "variant", "dataset", "film_dim", "bn", "algorithm", "density", "width",
    "lambda_n", "lambda_th", "attack", "eps", "step_size", "steps", "n_images", "ca", "ra")

#: Columns eval.csv gained with the randomised-defence evaluation, and their values for older files.
EVAL_OPTIONAL: dict[str, Any] = {"restarts": 1, "eot": np.nan, "n_draws": np.nan, "ca_std": np.nan,
                                 "ra_std": np.nan, "source": ""}

#: The columns of a run's sanity.csv that the report needs.
SANITY_REQUIRED: tuple[str, ...] = ("check", "values", "verdict")

#: The fields of hwsim.cost.CostSummary copied into the table, in this order.
COST_FIELDS: tuple[str, ...] = (
    "params", "nonzero_params", "memory_bytes", "macs", "delay_ns", "base_delay_ns", "norm_delay",
    "conv_norm_delay_min", "conv_norm_delay_mean", "conv_norm_delay_max")

#: Every column that can serve as the cost axis of a frontier (lower is better).
COST_AXES: tuple[str, ...] = (*COST_FIELDS, "norm_memory", "norm_memory_max")

#: Columns a reference CSV must have.
REFERENCE_REQUIRED: tuple[str, ...] = ("label", "variant", "ca", "ra", "source")

#: Columns of a reference CSV that hold numbers when present (an empty cell means unknown).
REFERENCE_NUMERIC: tuple[str, ...] = (
    "ca", "ra", "film_dim", "density", "width", "lambda_n", "lambda_th", "eps", "step_size", "steps", "n_images",
    "restarts", "eot", "n_draws", "ca_std", "ra_std", "epoch_time_s", *COST_FIELDS)

#: The numeric columns of a run's eval.csv (each cell empty or a finite number).
EVAL_NUMERIC: tuple[str, ...] = tuple(c for c in REFERENCE_NUMERIC if c in (*EVAL_COLUMNS, *EVAL_OPTIONAL))

_SERIES_NAMES = {name: record.label for name, record in VARIANT_RECORDS.items()}

CostFn = Callable[..., Any]


def _feature(variant: str, field: str) -> bool:
    """A field of the variant's record (False for a name that is not a variant: rows are read, not trusted)."""
    record = VARIANT_RECORDS.get(variant)
    return bool(record is not None and getattr(record, field))


@dataclass(frozen=True)
class CostKey:
    """What a cost depends on: the exact network that runs (knobs lambda_n / lambda_th do not change it)."""

    model: str
    variant: str
    dataset: str
    film_dim: int
    bn: str
    width: float
    density: float
    masks: str = ""  # pruned variants of measured runs: the checkpoint whose masks are costed
    widths: tuple[float, ...] = ()  # slimmable variants: the widths S_f the run trained (): the default

    def base(self) -> CostKey:
        """The plain network of the same model and dataset at full width and density (norm_memory's base)."""
        return CostKey(self.model, "base", self.dataset, 1, "single", 1.0, 1.0)

    def options(self) -> dict[str, Any]:
        """The cost function's options that this key's variant uses (model_cost refuses the others)."""
        options: dict[str, Any] = {}
        if _feature(self.variant, "film"):
            options["film_dim"] = self.film_dim
        if _feature(self.variant, "conditional"):
            options["bn"] = self.bn
        if _feature(self.variant, "slim"):
            options["width"] = self.width
            if self.widths:
                options["widths"] = self.widths
        if _feature(self.variant, "masked"):
            options["density"] = self.density
            if self.masks:
                options["masks"] = self.masks
        return options


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _require_columns(df: pd.DataFrame, required: Iterable[str], path: Path, what: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise HwsimError(f"{what} {path} lacks column(s) {', '.join(missing)}; "
                         f"required: {', '.join(required)}")


def _require_numbers(df: pd.DataFrame, columns: Iterable[str], path: Path, what: str) -> pd.DataFrame:
    """``df`` with ``columns`` (those present) numeric (a column pandas read as text becomes floats); HwsimError
    naming the row and column of the first cell that is neither empty nor a finite number. Rows count from 1
    after the header."""
    df = df.copy()
    for column in columns:
        if column not in df.columns:
            continue
        raw = df[column]
        values = pd.to_numeric(raw, errors="coerce").astype(float)
        bad = (raw.notna() & ~np.isfinite(values)).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise HwsimError(f"{what} {path}, row {row + 1}, column {column}: {_one_line(raw.iloc[row])!r} is not "
                             f"a finite number")
        if not pd.api.types.is_numeric_dtype(raw):
            df[column] = values
    return df


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise HwsimError(f"{what} {path} is not a readable CSV: {_one_line(exc)}") from None


def _mean_epoch_time(path: Path) -> float:
    """Mean ``epoch_time_s`` over the epochs in metrics.jsonl; NaN when the file or the field is absent."""
    if not path.is_file():
        return math.nan
    times = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise HwsimError(f"{path} line {n} is not JSON") from None
        if record.get("epoch_time_s") is not None:
            times.append(float(record["epoch_time_s"]))
    return float(np.mean(times)) if times else math.nan


def read_run(run_dir: str | Path) -> pd.DataFrame:
    """One run directory's ``eval.csv`` with ``run_dir``, ``origin``, ``epoch_time_s`` and ``lambda_label``.

    Reads ``config.json`` (optional) for the training lambda (``pgd_lambda``) of ``pgd-at`` runs and ``metrics.jsonl``
    (optional) for the training time per epoch.

    Raises:
        HwsimError: the directory or its eval.csv is missing, or eval.csv lacks contract columns.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HwsimError(f"run directory {run_dir} does not exist")
    eval_path = run_dir / "eval.csv"
    if not eval_path.is_file():
        raise HwsimError(f"run directory {run_dir} has no eval.csv (evaluate it first: hwsim eval {run_dir})")
    df = _read_csv(eval_path, "evaluation table")
    _require_columns(df, EVAL_COLUMNS, eval_path, "evaluation table")
    df = _require_numbers(df, EVAL_NUMERIC, eval_path, "evaluation table")
    config: dict[str, Any] = {}
    config_path = run_dir / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError:
            raise HwsimError(f"{config_path} is not JSON") from None
    df = df.copy()
    for column, default in EVAL_OPTIONAL.items():
        if column not in df.columns:
            df[column] = default
    df["source"] = ["" if isinstance(v, float) and math.isnan(v) else str(v) for v in df["source"]]
    df["origin"] = "run"
    df["run_dir"] = str(run_dir)
    df["epoch_time_s"] = _mean_epoch_time(run_dir / "metrics.jsonl")
    df["training_tag"] = _training_tag(config)
    if isinstance(config.get("widths"), list):  # the widths a slim run trained: part of its cost key
        df["widths"] = ",".join(f"{float(w):g}" for w in config["widths"])
    train_lambda = config.get("pgd_lambda", config.get("lambda"))
    is_pgd = df["algorithm"].astype(str) == "pgd-at"
    df["lambda_label"] = df["lambda_n"].astype(float)
    if train_lambda is not None:
        df.loc[is_pgd, "lambda_label"] = float(train_lambda)
    return df


def _training_tag(config: Mapping[str, Any]) -> str:
    """What sets a run's training apart within its series name: BulletTrain, a non-default Fast AT step, PGD-AT
    with the noise on (so that such runs are series of their own, not points of the plain one)."""
    tag = ""
    if config.get("noise_lambda") is not None:
        tag += f" noise λn={float(config['noise_lambda']):g}"
    if config.get("algorithm") == "fast" and float(config.get("fast_step", 1.25)) != 1.25:
        tag += f" step {float(config['fast_step']):g}ε"
    if config.get("bullettrain"):
        tag += " +BulletTrain"
    return tag


def read_sanity(runs: Iterable[str | Path]) -> pd.DataFrame:
    """Every run's ``sanity.csv`` (``hwsim eval RUN --sanity``) in one table with a ``run_name`` column; runs
    without one are left out (an empty table when none has it).

    Raises:
        HwsimError: a sanity.csv is unreadable or lacks ``check``, ``values`` or ``verdict``.
    """
    frames = []
    for run in runs:
        path = Path(run) / "sanity.csv"
        if path.is_file():
            df = _read_csv(path, "sanity table")
            _require_columns(df, SANITY_REQUIRED, path, "sanity table")
            frames.append(df.assign(run_name=Path(run).name))
    if not frames:
        return pd.DataFrame(columns=["run_name", *SANITY_REQUIRED])
    return pd.concat(frames, ignore_index=True)


def read_runs(runs: Iterable[str | Path]) -> pd.DataFrame:
    """All runs' rows in one table (see :func:`read_run`). Raises HwsimError when ``runs`` is empty."""
    frames = [read_run(r) for r in runs]
    if not frames:
        raise HwsimError("no run directories given")
    return pd.concat(frames, ignore_index=True)


def read_reference(path: str | Path) -> pd.DataFrame:
    """Published reference points from a CSV.

    Required columns: ``label, variant, ca, ra, source`` (ca/ra in percent). Optional: any contract column
    (``model, dataset, width, density, film_dim, bn, lambda_n, lambda_th, attack, eps, steps`` ...) and any
    cost column (``params, memory_bytes, macs, ...``) as published. Rows with ``model`` and ``dataset`` get
    hwsim's cost for their setting in :func:`join` wherever the CSV leaves a cost column empty.

    Raises:
        HwsimError: the file is missing or unreadable, lacks a required column (names the file and them), or
            has a value that is neither empty nor a finite number in a column of :data:`REFERENCE_NUMERIC`
            (names the file, the row and the column).
    """
    path = Path(path)
    if not path.is_file():
        raise HwsimError(f"reference file {path} does not exist")
    df = _read_csv(path, "reference file")
    _require_columns(df, REFERENCE_REQUIRED, path, "reference file")
    df = _require_numbers(df, REFERENCE_NUMERIC, path, "reference file")
    df["origin"] = "reference"
    df["run_dir"] = ""
    if "run" not in df.columns:
        df["run"] = df["label"]
    lam = df["lambda_n"] if "lambda_n" in df.columns else pd.Series(np.nan, index=df.index)
    df["lambda_label"] = lam.astype(float)
    return df


def _default_cost_fn() -> CostFn:
    from hwsim.cost import model_cost  # imported late: it pulls in torch and the tracer

    return model_cost


def _model_dataset(name: str) -> str:
    """The ``models`` dataset a trainer data source builds its model for ("synthetic" -> "cifar10").

    eval.csv names the data the run trained on; cost depends on the model's input size and classes, which the
    trainer's data source maps to a ``models`` dataset.
    """
    try:
        from hwsim.train.data import DATA_SOURCES
    except ImportError:  # trainer not installed: data sources and model datasets share their names
        return name
    source = DATA_SOURCES.get(name)
    return source.model_dataset if source is not None else name


def _key_of(row: Mapping[str, Any]) -> CostKey | None:
    def val(name: str, default: Any) -> Any:
        v = row.get(name, default)
        return default if v is None or (isinstance(v, float) and math.isnan(v)) else v

    if not isinstance(row.get("model"), str) or not isinstance(row.get("dataset"), str):
        return None
    variant = str(val("variant", "base"))
    masks = ""
    if _feature(variant, "masked") and row.get("run_dir") and isinstance(row.get("checkpoint"), str):
        candidate = Path(row["run_dir"]) / "checkpoints" / f"{row['checkpoint']}.pt"
        masks = str(candidate) if candidate.is_file() else ""
    # film_dim means nothing without FiLM (eval.csv says 0 there); any valid value builds the same network
    film_dim = int(val("film_dim", 1)) if _feature(variant, "film") else 1
    return CostKey(model=row["model"], variant=variant, dataset=_model_dataset(row["dataset"]),
                   film_dim=film_dim, bn=str(val("bn", "single")),
                   width=float(val("width", 1.0)), density=float(val("density", 1.0)), masks=masks,
                   widths=_widths(row.get("widths")) if _feature(variant, "slim") else ())


def _widths(value: Any) -> tuple[float, ...]:
    """A run's trained widths S_f as a key (from its config.json; () where the row does not say)."""
    if isinstance(value, str):
        value = [v for v in value.replace(";", ",").split(",") if v.strip()]
    try:
        return tuple(float(v) for v in value) if value is not None and not isinstance(value, float) else ()
    except (TypeError, ValueError):
        return ()


def attach_costs(df: pd.DataFrame, hw: Any = None, cost_fn: CostFn | None = None) -> pd.DataFrame:
    """Add the cost columns to every row that names a model and dataset; computes each distinct key once.

    Args:
        df: rows with at least ``model, variant, dataset`` (``film_dim, bn, width, density`` default to 1,
            "single", 1.0, 1.0 when absent, the contract's defaults).
        hw: a ``hwsim.hardware.HardwareConfig`` (None: the cost function's default preset).
        cost_fn: called as ``cost_fn(model, variant, dataset=, hw=, **options)`` with the options the variant
            uses (:meth:`CostKey.options`: ``film_dim`` with FiLM, ``bn`` on conditional variants, ``width``
            and the run's trained ``widths`` on slimmable ones, ``density`` and the checkpoint ``masks`` of
            measured runs on pruned ones) and
            returning an object with the :data:`COST_FIELDS` attributes; default ``hwsim.cost.model_cost``.

    Returns:
        A copy of ``df`` with :data:`COST_FIELDS` plus ``norm_memory``, ``norm_memory_max`` and ``cost_note``.
        Values that ``df`` already holds in a cost column (published numbers of reference rows) are kept. A
        reference row (``origin == "reference"``) whose cost raises HwsimError keeps NaN costs and the reason
        in ``cost_note``.

    Raises:
        HwsimError: the cost of a measured row cannot be computed (names the setting and the reason).
    """
    cost_fn = cost_fn or _default_cost_fn()
    cache: dict[CostKey, Any] = {}

    def cost_of(key: CostKey) -> Any:
        if key not in cache:
            try:
                cache[key] = cost_fn(key.model, key.variant, dataset=key.dataset, hw=hw, **key.options())
            except HwsimError as exc:
                cache[key] = exc
        return cache[key]

    out = df.copy()
    records = out.to_dict("records")
    keys = [_key_of(r) for r in records]
    costs = [cost_of(k) if k else None for k in keys]
    notes = []
    for rec, key, cost in zip(records, keys, costs):
        if isinstance(cost, HwsimError):
            # a published point whose setting hwsim cannot cost (e.g. channel pruning of an untrained model
            # that empties a layer) keeps its accuracy and says why its cost is missing; a measured one stops
            if rec.get("origin") != "reference":
                raise HwsimError(f"cost of {key.model} {key.variant} (width {key.width:g}, density "
                                 f"{key.density:g}): {cost}") from None
            notes.append(f"no hwsim cost: {cost}")
        else:
            notes.append("")
    ok = [c if c is not None and not isinstance(c, HwsimError) else None for c in costs]
    computed = {f: [getattr(c, f) if c is not None else np.nan for c in ok] for f in COST_FIELDS}
    base_memory = [getattr(cost_of(k.base()), "memory_bytes", np.nan) if k else np.nan for k in keys]
    for f in COST_FIELDS:
        values = pd.Series(computed[f], index=out.index, dtype=float)
        out[f] = out[f].astype(float).fillna(values) if f in out.columns else values
    out["cost_note"] = notes
    out["norm_memory"] = out["memory_bytes"] / pd.Series(base_memory, index=out.index, dtype=float)
    group_max = out.groupby(["model", "dataset"], dropna=False)["memory_bytes"].transform("max") \
        if "model" in out.columns else out["memory_bytes"]
    out["norm_memory_max"] = out["memory_bytes"] / group_max
    for f in ("params", "nonzero_params", "memory_bytes", "macs"):
        if out[f].notna().all():
            out[f] = out[f].astype("int64")
    return out


def _fmt_eps(eps: float) -> str:
    if not isinstance(eps, (int, float)) or math.isnan(eps):
        return "?"
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-3 else f"{eps:g}"


def _attack_label(row: Mapping[str, Any]) -> str:
    if not isinstance(row.get("attack"), str):
        return ""
    label = f"{row['attack']} eps={_fmt_eps(row.get('eps'))}"
    restarts = row.get("restarts")
    if isinstance(restarts, (int, float)) and not math.isnan(restarts) and restarts > 1:
        label += f" x{int(restarts)} restarts"
    source = row.get("source")
    if isinstance(source, str) and source:
        label += f" from {source}"
    return label


def _series(row: Mapping[str, Any], multi_model: bool) -> str:
    variant = str(row.get("variant", "base"))
    name = _SERIES_NAMES.get(variant, variant)
    algorithm = row.get("algorithm")
    if variant in VARIANT_RECORDS and not _feature(variant, "conditional") and isinstance(algorithm, str) \
            and algorithm != "pgd-at":
        name = algorithm.upper()
    tag = row.get("training_tag")
    if isinstance(tag, str):
        name += tag
    density, width = row.get("density"), row.get("width")
    if _feature(variant, "masked") and isinstance(density, float) and not math.isnan(density) and density < 1.0:
        name += f" d={density:g}"
    if isinstance(width, float) and not math.isnan(width) and width < 1.0:
        name += f" w={width:g}"
    if multi_model:
        name += f" ({row.get('model')}/{row.get('dataset')})"
    return name


def _threshold(row: Mapping[str, Any]) -> str:
    th = row.get("lambda_th")
    if _feature(str(row.get("variant", "")), "noise") and isinstance(th, float) and th > 0:
        return f" λth={th:g}"
    return ""


def _add_labels(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    pairs = out[["model", "dataset"]].dropna().drop_duplicates() if "model" in out.columns else []
    multi = len(pairs) > 1
    records = out.to_dict("records")
    out["network"] = [_series(r, multi) for r in records]
    out["series"] = [n + _threshold(r) for n, r in zip(out["network"], records)]
    out["run_name"] = [Path(str(r)).name if isinstance(r, str) and r else str(r) for r in out["run"]] \
        if "run" in out.columns else ""
    if "attack" in out.columns:
        out["attack_label"] = [_attack_label(r) for r in out.to_dict("records")]
    else:
        out["attack_label"] = ""
    if "epoch_time_s" in out.columns:
        fastest = out.groupby(["model", "dataset"], dropna=False)["epoch_time_s"].transform("min")
        out["norm_epoch_time"] = out["epoch_time_s"] / fastest
    return out


def join(runs: Iterable[str | Path], hw: Any = None, reference: str | Path | None = None,
         cost_fn: CostFn | None = None) -> pd.DataFrame:
    """The report's tidy table: every run's eval.csv rows (+ reference rows) with cost and label columns.

    Args:
        runs: run directories (each with eval.csv; config.json and metrics.jsonl optional).
        hw: hardware for the delay columns (None: the cost function's default, asic65).
        reference: optional CSV of published points (:func:`read_reference`).
        cost_fn: the cost function (default ``hwsim.cost.model_cost``); tests inject a fake.

    Returns:
        One row per run x checkpoint x knob setting x attack, then the reference rows; columns as in the
        module docstring.
    """
    measured = read_runs(runs)
    frames = [measured]
    if reference is not None:
        frames.append(read_reference(reference))
    table = pd.concat(frames, ignore_index=True, sort=False)
    table = attach_costs(table, hw=hw, cost_fn=cost_fn)
    return _add_labels(table)


def check_cost_axis(cost: str) -> str:
    """``cost`` if it is a valid frontier axis (:data:`COST_AXES`), else HwsimError listing the valid ones."""
    if cost not in COST_AXES:
        raise HwsimError(f"unknown cost axis {cost!r}; valid: {', '.join(COST_AXES)}")
    return cost


def select_points(df: pd.DataFrame, checkpoint: str | None = None, attack: str | None = None) -> pd.DataFrame:
    """The measured rows a frontier and the accuracy plots use: one checkpoint per run and one attack.

    Args:
        checkpoint: e.g. ``"best"`` or ``"last"``; None takes ``"best"`` where a run has it, else ``"last"``,
            else the run's first checkpoint in file order.
        attack: an ``attack_label``; None takes the most common one (ties: the first in sorted order), so
            that RA values of different attacks are never compared.

    Raises:
        HwsimError: the named checkpoint or attack is in none of the runs (lists the ones that are).
    """
    runs = df[df["origin"] == "run"]
    if runs.empty:
        return runs
    if attack is None:
        counts = runs["attack_label"].value_counts()
        attack = sorted(counts[counts == counts.max()].index)[0]
    elif attack not in set(runs["attack_label"]):
        raise HwsimError(f"unknown attack {attack!r}; the runs have: {', '.join(sorted(set(runs['attack_label'])))}")
    runs = runs[runs["attack_label"] == attack]
    if checkpoint is not None:
        if checkpoint not in set(runs["checkpoint"]):
            raise HwsimError(f"unknown checkpoint {checkpoint!r}; the runs have: "
                             f"{', '.join(sorted(set(runs['checkpoint'].astype(str))))}")
        return runs[runs["checkpoint"] == checkpoint]
    chosen = {}
    for run_dir, group in runs.groupby("run_dir", sort=False):
        names = list(dict.fromkeys(group["checkpoint"].astype(str)))
        chosen[run_dir] = next((c for c in ("best", "last") if c in names), names[0])
    return runs[[chosen[d] == str(c) for d, c in zip(runs["run_dir"], runs["checkpoint"])]]


def series_costs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per network (measured and reference) with its cost columns and training time per epoch.

    Cost columns do not vary for one network (they do not depend on lambda), so its first row stands for
    it; ``series`` is the network's name here. Ordered as the networks first appear in ``df``. A series
    trained as several runs (PGD-AT: one model per lambda) gets the mean epoch time of its runs, so that the
    clean lambda = 0 run, which needs no attack, does not stand for the family.
    """
    if "network" in df.columns:
        df = df.drop(columns="series").rename(columns={"network": "series"})
    cols = ["series", "model", "dataset", "variant", "width", "density", *COST_AXES,
            "epoch_time_s", "norm_epoch_time"]
    cols = [c for c in cols if c in df.columns]
    out = df.drop_duplicates("series")[cols].reset_index(drop=True)
    if "epoch_time_s" in out.columns and "run_dir" in df.columns:
        per_run = df.drop_duplicates(["series", "run_dir"])
        out["epoch_time_s"] = out["series"].map(per_run.groupby("series", sort=False)["epoch_time_s"].mean())
        if "norm_epoch_time" in out.columns:
            fastest = out.groupby(["model", "dataset"], dropna=False)["epoch_time_s"].transform("min")
            out["norm_epoch_time"] = out["epoch_time_s"] / fastest
    return out
