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

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.delay import _GRID_FIELDS, GridTotals, HardwareGrid, LayerShape, model_totals_grid, take_flat
from hwsim.errors import HwsimError

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
    totals: GridTotals = field(init=False)
    plain: GridTotals = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "totals", model_totals_grid(self.layers, self.grid))
        object.__setattr__(self, "plain", model_totals_grid(self.plain_layers, self.grid))

    def __len__(self) -> int:
        return len(self.grid)

    def columns(self, flat: np.ndarray, *, hw_size: bool = False) -> dict[str, np.ndarray]:
        """The row values at flat grid indices: the swept fields, ``delay_ns``, ``plain_delay_ns`` and
        ``norm_delay`` (and ``hw_size`` = n_mult x n_bank when asked)."""
        coords = np.unravel_index(np.asarray(flat, dtype=np.int64), self.grid.shape)
        out = {name: take_flat(getattr(self.grid, name), coords) for name in self.axes}
        total, plain = self.totals.delay_ns(flat), self.plain.delay_ns(flat)
        out.update(delay_ns=total, plain_delay_ns=plain, norm_delay=total / plain)
        if hw_size:
            out["hw_size"] = take_flat(self.grid.n_mult, coords) * take_flat(self.grid.n_bank, coords)
        return out

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
    header = [*sweep.axes, "delay_ns", "plain_delay_ns", "norm_delay", *(["hw_size"] if hw_size else [])]
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
