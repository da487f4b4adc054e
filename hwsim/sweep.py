"""Sweeps of a model's total delay over hardware grids of any size: chunked rows and the Pareto frontier.

The totals come factorised from :func:`hwsim.delay.model_totals_grid` (reads per ``(b_io, b_w, n_bank)``,
multiplier passes per ``n_mult``), so the work per configuration is one gather and one multiply-add; rows are
produced in chunks of flat grid indices (constant memory, whatever the grid's size) and written as CSV
without one Python object per row, or as Parquet (binary columns: no number is formatted as text).

>>> from hwsim.delay import LayerShape, hardware_grid
>>> from hwsim.hardware import get_preset
>>> conv = LayerShape("conv", "conv", k=3, c_in=64, c_out=64, h_out=32, w_out=32)
>>> grid = hardware_grid(get_preset("asic65"), sparse=True, n_mult=[64, 175, 256], n_bank=[2, 4])
>>> sweep = Sweep(grid, ("n_bank", "n_mult"), [conv], [conv])
>>> best = sweep.columns(sweep.pareto(), hw_size=True)   # 175 x 4 = 700 is slower than 256 x 2 = 512
>>> list(zip(best["n_mult"].tolist(), best["n_bank"].tolist(), best["hw_size"].tolist()))
[(64, 2, 128), (64, 4, 256), (175, 2, 350), (256, 2, 512), (256, 4, 1024)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.delay import (
    _GRID_FIELDS,
    EnergyCounts,
    GridTotals,
    HardwareGrid,
    LayerShape,
    OpEnergies,
    model_totals_grid,
    take_flat,
)
from hwsim.errors import HwsimError
from hwsim.hardware import ARCH_FIELDS, SYSTOLIC_SWEEP_FIELDS, HardwareConfig, field_problem
from hwsim.systolic import gemm_arrays, total_cycles_grid

#: What ``--pareto`` minimises beside the hardware size.
OBJECTIVES = ("delay", "energy")

#: Rows per chunk: about 50 MB of column arrays at most, and a progress step on long sweeps.
CHUNK = 1 << 18

_AXIS = {name: i for i, name in enumerate(_GRID_FIELDS)}


@dataclass(frozen=True)
class Sweep:
    """Total delay of a model (and of its plain network) over an open hardware grid.

    ``axes`` are the swept fields, in the order their columns are printed. Row ``i`` is the configuration at
    flat C-order index ``i`` of ``grid`` (the last field varies fastest).
    """

    grid: HardwareGrid
    axes: tuple[str, ...]
    layers: Sequence[LayerShape]
    plain_layers: Sequence[LayerShape]
    hardware: HardwareConfig | None = None  # the energy fields' source; needed with ``energy``
    energy: bool = False  # add energy_pj, plain_energy_pj and norm_energy (SPEC 3.1)
    totals: GridTotals = field(init=False)
    plain: GridTotals = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "totals", model_totals_grid(self.layers, self.grid))
        object.__setattr__(self, "plain", model_totals_grid(self.plain_layers, self.grid))
        if self.energy:
            if self.hardware is None:
                raise ValueError("energy needs the hardware configuration (Sweep(..., hardware=hw))")
            self.hardware.require_energy()
            object.__setattr__(self, "_energy", self._energy_totals(self.layers, self.totals))
            object.__setattr__(self, "_plain_energy", self._energy_totals(self.plain_layers, self.plain))

    def _energy_totals(self, layers: Sequence[LayerShape], totals: GridTotals) -> np.ndarray:
        """Whole-model energy (pJ) over the grid: it depends on (b_io, b_w, n_bank) only (reads, and the
        multiply and add energies scaled to b_w), so it has the shape of ``totals.reads``. Summed as
        :meth:`EnergyCounts.split` sums a single configuration's (dense layers, as the delay sweep).

        ``e_read_pj`` prices one read step of the base configuration's ``b_io x n_bank`` bits; where the grid
        sweeps b_io or n_bank, a step of another width costs in proportion (the energy per bit read is held
        fixed), so that wider memories are not free. At the base configuration's width the factor is exactly 1."""
        hw = self.hardware
        scale = np.asarray(self.grid.b_w, dtype=np.float64) / hw.e_bits
        width = np.asarray(self.grid.b_io, dtype=np.float64) * np.asarray(self.grid.n_bank, dtype=np.float64)
        per_op = OpEnergies(hw.e_read_pj * (width / (hw.b_io * hw.n_bank)), hw.e_mult_pj * scale * scale,
                            hw.e_add_pj * scale, hw.e_acc_pj, hw.e_rng_pj)
        return EnergyCounts(totals.reads, *_op_counts(layers)).split(per_op)["energy_pj"]

    def __len__(self) -> int:
        return len(self.grid)

    def columns(self, flat: np.ndarray, *, hw_size: bool = False) -> dict[str, np.ndarray]:
        """The row values at flat grid indices: the swept fields, ``delay_ns``, ``plain_delay_ns`` and
        ``norm_delay`` (then ``energy_pj``, ``plain_energy_pj`` and ``norm_energy`` with ``energy``, and
        ``hw_size`` = n_mult x n_bank when asked)."""
        coords = np.unravel_index(np.asarray(flat, dtype=np.int64), self.grid.shape)
        out = {name: take_flat(getattr(self.grid, name), coords) for name in self.axes}
        total, plain = self.totals.delay_ns(flat), self.plain.delay_ns(flat)
        out.update(delay_ns=total, plain_delay_ns=plain, norm_delay=total / plain)
        if self.energy:
            energy, plain_energy = take_flat(self._energy, coords), take_flat(self._plain_energy, coords)
            out.update(energy_pj=energy, plain_energy_pj=plain_energy, norm_energy=energy / plain_energy)
        if hw_size:
            out["hw_size"] = take_flat(self.grid.n_mult, coords) * take_flat(self.grid.n_bank, coords)
        return out

    def pareto_energy(self) -> np.ndarray:
        """Flat indices of the non-dominated configurations of (hardware size n_mult x n_bank, energy), both to
        be small; ties all kept, sorted by size then grid order (as :meth:`pareto`). Energy depends on
        (b_io, b_w, n_bank) only, so a block of equal (n_bank, n_mult) has the least energy of its n_bank
        column, and every configuration of a frontier block that reaches it is on the frontier."""
        energy = _full_dims(self._energy)  # axes b_io, b_w, n_bank, -, -, -
        banks = _full_dims(self.grid.n_bank).reshape(-1)
        mults = _full_dims(self.grid.n_mult).reshape(-1)
        per_bank = np.moveaxis(energy[:, :, :, 0, 0, 0], 2, 0).reshape(len(banks), -1)  # (n_bank, b_io*b_w)
        bank_min = per_bank.min(axis=1)
        size = banks[:, None] * mults[None, :]
        best = np.broadcast_to(bank_min[:, None], size.shape)
        keep = _front(size.reshape(-1), best.reshape(-1))
        shape = self.grid.shape
        io_w = (shape[_AXIS["b_io"]], shape[_AXIS["b_w"]])
        found = []
        for block in keep.tolist():
            j, k = divmod(block, len(mults))
            io, w = np.unravel_index(np.flatnonzero(per_bank[j] == bank_min[j]), io_w)
            tr, tm = np.meshgrid(np.arange(shape[_AXIS["t_read_ns"]]), np.arange(shape[_AXIS["t_mult_ns"]]),
                                 indexing="ij")
            n = len(io) * tr.size
            coords = (np.repeat(io, tr.size), np.repeat(w, tr.size), np.full(n, j), np.full(n, k),
                      np.tile(tr.ravel(), len(io)), np.tile(tm.ravel(), len(io)))
            found.append(np.ravel_multi_index(coords, shape))
        flat = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        return flat[np.lexsort((flat, size.reshape(-1)[_block_of(flat, shape, len(mults))]))]

    def chunks(self, size: int | None = None) -> Iterator[np.ndarray]:
        """Flat indices of every configuration, ``size`` (default :data:`CHUNK`) at a time."""
        size = size or CHUNK
        for start in range(0, len(self), size):
            yield np.arange(start, min(start + size, len(self)), dtype=np.int64)

    def pareto(self) -> np.ndarray:
        """Flat indices of the non-dominated configurations of (hardware size, delay), both to be small.

        Hardware size is the proxy ``n_mult x n_bank`` (multipliers and memory banks, the two arrays that
        grow with area). A configuration is kept when no other has a size and a delay at most its own and
        one of them smaller; ties are all kept. Sorted by size, then grid order.

        Exact, and the grid is evaluated only inside the frontier's blocks: within a block of equal
        ``(n_bank, n_mult)`` the delay is ``a + b`` with ``a = reads t_read`` over the other memory fields and
        ``b = passes t_mult`` over ``t_mult``; rounded addition is monotone, so the block's least delay is
        ``min a + min b``, and the frontier of the blocks' (size, least delay) points is found first.
        """
        a = _full_dims(self.totals.read_ns)  # axes b_io, b_w, n_bank, -, t_read, -
        b = _full_dims(self.totals.mult_ns)  # axes -, -, -, n_mult, -, t_mult
        if a.shape[_AXIS["n_mult"]] != 1 or a.shape[_AXIS["t_mult_ns"]] != 1 or any(
                b.shape[_AXIS[f]] != 1 for f in ("b_io", "b_w", "n_bank", "t_read_ns")):
            raise ValueError("pareto() needs an open grid (hardware_grid(..., sparse=True))")
        banks = _full_dims(self.grid.n_bank).reshape(-1)
        mults = _full_dims(self.grid.n_mult).reshape(-1)
        a_blocks = np.moveaxis(a[:, :, :, 0, :, 0], 2, 0).reshape(len(banks), -1)  # (n_bank, b_io*b_w*t_read)
        b_blocks = b[0, 0, 0, :, 0, :].reshape(len(mults), -1)  # (n_mult, t_mult)
        a_min, b_min = a_blocks.min(axis=1), b_blocks.min(axis=1)
        best = a_min[:, None] + b_min[None, :]  # (n_bank, n_mult): the least delay of each block
        size = banks[:, None] * mults[None, :]
        keep = _front(size.reshape(-1), best.reshape(-1))  # flat (n_bank, n_mult) indices of frontier blocks
        shape = self.grid.shape
        a_shape = (shape[_AXIS["b_io"]], shape[_AXIS["b_w"]], shape[_AXIS["t_read_ns"]])
        per_block = a_blocks.shape[1] * b_blocks.shape[1]
        step = max(1, CHUNK // per_block)
        found = []
        for start in range(0, len(keep), step):  # the frontier's blocks, a chunk at a time
            j, k = np.divmod(keep[start:start + step], len(mults))
            pair = a_blocks[j][:, :, None] + b_blocks[k][:, None, :] == best[j, k][:, None, None]
            block, ia, ib = np.nonzero(pair)
            io, w, tr = np.unravel_index(ia, a_shape)
            found.append(np.ravel_multi_index((io, w, j[block], k[block], tr, ib), shape))
        flat = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        return flat[np.lexsort((flat, size.reshape(-1)[_block_of(flat, shape, len(mults))]))]


def _op_counts(layers: Sequence[LayerShape]) -> tuple[int, int, int, int]:
    """(MACs, noise ops, FiLM MLP MACs, FiLM affine ops) of dense ``layers``: the hardware-independent counts
    of :class:`~hwsim.delay.EnergyCounts`."""
    macs = sum(layer.weights * layer.positions for layer in layers)
    noise = sum(layer.weights for layer in layers if layer.formula == "eq8")
    film = sum(layer.film_weights for layer in layers)
    affine = sum(layer.film_channels * layer.positions for layer in layers if layer.formula == "eq9")
    return macs, noise, film, affine


@dataclass(frozen=True)
class SystolicSweep:
    """Total delay (and energy) of a model and of its plain network over a grid of systolic arrays.

    ``axes`` (a subset of ``array_rows``, ``array_cols``, ``vector_lanes``, ``t_cycle_ns``, each a list of
    values) are swept; the other fields come from ``hardware``. Row ``i`` is the configuration at flat C-order
    index ``i`` of the grid (rows, cols, lanes, t_cycle), the last varying fastest. Whole-model cycles come
    from :func:`hwsim.systolic.total_cycles_grid` (two integer matrix products per dataflow, not one
    evaluation per layer x configuration). Energy does not depend on the swept fields (SPEC 3.2: each weight
    read once and each MAC done once), so it is one number per model.
    """

    hardware: HardwareConfig
    axes: dict[str, list]
    layers: Sequence[LayerShape]
    plain_layers: Sequence[LayerShape]
    energy: bool = False

    FIELDS = ("array_rows", "array_cols", "vector_lanes", "t_cycle_ns")

    def __post_init__(self) -> None:
        hw = self.hardware
        problems = []
        for name, values in self.axes.items():
            if name not in SYSTOLIC_SWEEP_FIELDS:
                why = "does not apply to" if name in ARCH_FIELDS["von-neumann"] else "cannot be swept on"
                problems.append(f"--grid {name} {why} arch {hw.arch!r} (its sweepable fields: "
                                f"{', '.join(SYSTOLIC_SWEEP_FIELDS)})")
                continue
            problems += [p for v in dict.fromkeys(values) if (p := field_problem(name, v)) is not None]
        if problems:
            raise HwsimError("invalid hardware grid: " + "; ".join(dict.fromkeys(problems)))
        lists = {name: np.asarray(self.axes.get(name, [getattr(hw, name)])) for name in self.FIELDS}
        object.__setattr__(self, "_lists", lists)
        object.__setattr__(self, "shape", tuple(len(v) for v in lists.values()))
        args = (lists["array_rows"], lists["array_cols"], hw.dataflow, lists["vector_lanes"])
        object.__setattr__(self, "_cycles", total_cycles_grid(gemm_arrays(self.layers), *args))
        object.__setattr__(self, "_plain_cycles", total_cycles_grid(gemm_arrays(self.plain_layers), *args))
        if self.energy:
            from hwsim.delay import model_energy

            hw.require_energy()
            dense = [dataclasses.replace(layer, nnz=None) for layer in self.layers]
            object.__setattr__(self, "_energy", model_energy(dense, hw).energy_pj)
            object.__setattr__(self, "_plain_energy", model_energy(self.plain_layers, hw).energy_pj)

    def __len__(self) -> int:
        return int(np.prod(self.shape))

    def columns(self, flat: np.ndarray, *, hw_size: bool = False) -> dict[str, np.ndarray]:
        """The row values at flat indices: the swept fields, ``cycles``, ``delay_ns`` (cycles x t_cycle_ns),
        ``plain_delay_ns``, ``norm_delay`` (then the energy columns with ``energy``, and ``hw_size`` = array_rows
        x array_cols when asked)."""
        r, c, lane, t = np.unravel_index(np.asarray(flat, dtype=np.int64), self.shape)
        out = {name: self._lists[name][(r, c, lane, t)[self.FIELDS.index(name)]] for name in self.axes}
        cycles, plain = self._cycles[r, c, lane], self._plain_cycles[r, c, lane]
        t_cycle = self._lists["t_cycle_ns"][t].astype(np.float64)
        delay, plain_delay = cycles * t_cycle, plain * t_cycle
        out.update(cycles=cycles, delay_ns=delay, plain_delay_ns=plain_delay, norm_delay=delay / plain_delay)
        if self.energy:
            n = len(cycles)
            energy, plain_energy = np.full(n, self._energy), np.full(n, self._plain_energy)
            out.update(energy_pj=energy, plain_energy_pj=plain_energy, norm_energy=energy / plain_energy)
        if hw_size:
            out["hw_size"] = self._lists["array_rows"][r].astype(np.int64) * self._lists["array_cols"][c]
        return out

    def chunks(self, size: int | None = None) -> Iterator[np.ndarray]:
        size = size or CHUNK
        for start in range(0, len(self), size):
            yield np.arange(start, min(start + size, len(self)), dtype=np.int64)

    def pareto(self, objective: str = "delay") -> np.ndarray:
        """Flat indices of the non-dominated configurations of (array_rows x array_cols, delay or energy), both
        to be small; ties all kept, sorted by size then grid order. Within a block of equal (rows, cols) the
        least delay is (least cycles over the lanes) x (least t_cycle): a product of non-negative factors is
        monotone in each, so the frontier's blocks are found first, then their configurations that reach it."""
        rows, cols = self._lists["array_rows"].astype(np.int64), self._lists["array_cols"].astype(np.int64)
        t_cycle = self._lists["t_cycle_ns"].astype(np.float64)
        size = rows[:, None] * cols[None, :]
        if objective == "energy":  # energy is one number: the smallest arrays, every configuration of them
            value = np.zeros((self.shape[0], self.shape[1], self.shape[2], self.shape[3]))
        else:
            value = self._cycles[:, :, :, None] * t_cycle[None, None, None, :]
        best = value.reshape(self.shape[0], self.shape[1], -1).min(axis=2)
        keep = _front(size.reshape(-1), best.reshape(-1))
        found = []
        for block in keep.tolist():
            i, j = divmod(block, self.shape[1])
            lane, t = np.nonzero(value[i, j] == best[i, j])
            found.append(np.ravel_multi_index((np.full(len(lane), i), np.full(len(lane), j), lane, t), self.shape))
        flat = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        block_of = np.unravel_index(flat, self.shape)
        return flat[np.lexsort((flat, size[block_of[0], block_of[1]]))]


def _block_of(flat: np.ndarray, shape: tuple[int, ...], n_mults: int) -> np.ndarray:
    """The flat (n_bank, n_mult) block index of flat grid indices."""
    coords = np.unravel_index(flat, shape)
    return coords[_AXIS["n_bank"]] * n_mults + coords[_AXIS["n_mult"]]


def _front(size: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points of (size, delay), both minimised; equal points all kept."""
    order = np.lexsort((delay, size))
    s, d = size[order], delay[order]
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # start of each group of equal size
    group_min = d[first]  # sorted by delay within a size: the first is the least
    best_smaller = np.r_[np.inf, np.minimum.accumulate(group_min)[:-1]]  # least delay at any smaller size
    group = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(s)]))
    keep = (group_min[group] < best_smaller[group]) & (d == group_min[group])
    return order[keep]


def _full_dims(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array.reshape((1,) * (len(_GRID_FIELDS) - array.ndim) + array.shape)


def csv_lines(columns: dict[str, np.ndarray]) -> str:
    """CSV text of column arrays (no header, newline-terminated): integers as integers, floats as Python's
    shortest repr, as ``pandas.DataFrame.to_csv`` writes them. One format call per row, no row objects."""
    fields, values = [], []
    for array in columns.values():
        if array.dtype.kind in "iub":
            fields.append("{}")
            values.append(array.tolist())
        elif np.all((array == np.floor(array)) & (np.abs(array) < 1e16)):  # repr() prints these as "123.0"
            fields.append("{}.0")
            values.append(array.astype(np.int64).tolist())
        else:
            fields.append("{!r}")
            values.append(array.tolist())
    return "".join(map((",".join(fields) + "\n").format, *values))


def write_csv(sweep: Sweep, write: Callable[[str], object], *, flat: np.ndarray | None = None,
              hw_size: bool = False, progress: Callable[[int, int], None] | None = None) -> None:
    """Stream the sweep (or the rows at ``flat``) as CSV through ``write``, a chunk at a time."""
    header = list(sweep.columns(np.zeros(0, dtype=np.int64), hw_size=hw_size))
    write(",".join(header) + "\n")
    for columns in _column_chunks(sweep, flat, hw_size, progress):
        write(csv_lines(columns))


def require_pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or a :class:`HwsimError` naming the extra that installs them (Parquet is
    optional: the cost commands never import pyarrow)."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise HwsimError("--format parquet needs pyarrow: in a checkout of hwsim run pip install -e \".[parquet]\" "
                         "(or pip install \"hwsim[parquet]\")") from None
    return pyarrow, pyarrow.parquet


def write_parquet(sweep: Sweep, path: str | Path, *, flat: np.ndarray | None = None, hw_size: bool = False,
                  metadata: Mapping[str, str] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> None:
    """Write the sweep (or the rows at ``flat``) to the Parquet file ``path``, one row group per chunk.

    The columns are the CSV's, in its order, typed as the grid holds them (int64 or float64; ``hw_size``
    int64); ``metadata`` goes into the schema's key-value metadata. Only the swept fields are
    dictionary-encoded: they take few distinct values, while the delays are nearly all distinct, where building
    a dictionary is wasted work (it doubled the write time of 1e6 rows). zstd: about half snappy's size here
    (5 MiB for 1e6 rows of two fields), for about 0.02 CPU s more per million rows.
    """
    pa, pq = require_pyarrow()
    empty = sweep.columns(np.zeros(0, dtype=np.int64), hw_size=hw_size)
    schema = pa.schema([(name, pa.from_numpy_dtype(array.dtype)) for name, array in empty.items()],
                       metadata=metadata)
    with pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=list(sweep.axes)) as writer:
        for columns in _column_chunks(sweep, flat, hw_size, progress):
            batch = pa.RecordBatch.from_arrays([_arrow(pa, array) for array in columns.values()], schema=schema)
            writer.write_batch(batch, row_group_size=batch.num_rows)


def _arrow(pa: Any, array: np.ndarray) -> Any:
    """A numpy column of fixed-width numbers as an Arrow array, without a copy. ``pyarrow.array`` would do, but
    it imports pandas to ask whether the column is a pandas object: 0.27 s, more than writing 1e6 rows."""
    array = np.ascontiguousarray(array)
    return pa.Array.from_buffers(pa.from_numpy_dtype(array.dtype), len(array), [None, pa.py_buffer(array)])


def _column_chunks(sweep: Sweep, flat: np.ndarray | None, hw_size: bool,
                   progress: Callable[[int, int], None] | None) -> Iterator[dict[str, np.ndarray]]:
    """The columns of every configuration (or of the rows at ``flat``), :data:`CHUNK` rows at a time;
    ``progress(done, total)`` after each chunk is consumed."""
    chunks = sweep.chunks() if flat is None else (flat[i:i + CHUNK] for i in range(0, len(flat), CHUNK))
    total = len(sweep) if flat is None else len(flat)
    done = 0
    for index in chunks:
        yield sweep.columns(index, hw_size=hw_size)
        done += len(index)
        if progress is not None:
            progress(done, total)


def rows(sweep: Sweep, flat: np.ndarray | None = None, *, hw_size: bool = False) -> list[dict]:
    """The rows as dicts (for JSON, tables and Markdown: formats meant for people or small sweeps)."""
    index = np.arange(len(sweep), dtype=np.int64) if flat is None else flat
    cols = {name: values.tolist() for name, values in sweep.columns(index, hw_size=hw_size).items()}
    names = list(cols)
    return [dict(zip(names, values, strict=True)) for values in zip(*cols.values(), strict=True)]
