"""Sweeps of a model's total delay over hardware grids of any size: chunked rows and the Pareto frontier.

The totals come factorised from :func:`hwsim.delay.model_totals_grid` (reads per ``(b_io, b_w, n_bank)``,
multiplier passes per ``n_mult``), so the work per configuration is one gather and one multiply-add; rows are
produced in chunks of flat grid indices (constant memory, whatever the grid's size) and written as CSV
without one Python object per row.

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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from hwsim.delay import _GRID_FIELDS, GridTotals, HardwareGrid, LayerShape, model_totals_grid, take_flat

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

        Exact and without evaluating the grid: within a block of equal ``(n_bank, n_mult)`` the delay is
        ``a + b`` with ``a = reads t_read`` over the other memory fields and ``b = passes t_mult`` over
        ``t_mult``; rounded addition is monotone, so the block's minimum is ``min a + min b`` and only the
        ``a`` and ``b`` that reach it with the other term at its minimum can be part of a minimal pair.
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
        keep = _front(size.reshape(-1), best.reshape(-1))
        shape = self.grid.shape
        a_shape = (shape[_AXIS["b_io"]], shape[_AXIS["b_w"]], shape[_AXIS["t_read_ns"]])
        found: list[np.ndarray] = []
        sizes: list[np.ndarray] = []
        for block in keep:
            j, k = divmod(int(block), len(mults))
            target = best[j, k]
            ia = np.flatnonzero(a_blocks[j] + b_min[k] == target)
            ib = np.flatnonzero(a_min[j] + b_blocks[k] == target)
            pair = a_blocks[j][ia][:, None] + b_blocks[k][ib][None, :] == target
            pa, pb = np.nonzero(pair)
            io, w, tr = np.unravel_index(ia[pa], a_shape)
            coords = (io, w, np.full_like(io, j), np.full_like(io, k), tr, ib[pb])
            found.append(np.ravel_multi_index(coords, shape))
            sizes.append(np.full(len(found[-1]), size[j, k]))
        if not found:
            return np.zeros(0, dtype=np.int64)
        flat = np.concatenate(found)
        return flat[np.lexsort((flat, np.concatenate(sizes)))]


def _full_dims(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array.reshape((1,) * (len(_GRID_FIELDS) - array.ndim) + array.shape)


def _front(size: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points of (size, delay), both minimised; equal points all kept."""
    order = np.lexsort((delay, size))
    keep, best_smaller = [], np.inf  # least delay among strictly smaller sizes
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and size[order[j]] == size[order[i]]:
            j += 1
        group_min = delay[order[i]]
        if group_min < best_smaller:
            keep.extend(int(o) for o in order[i:j] if delay[o] == group_min)
            best_smaller = group_min
        i = j
    return np.array(keep, dtype=np.int64)


def csv_lines(columns: dict[str, np.ndarray]) -> str:
    """CSV text of column arrays (no header, newline-terminated): integers as integers, floats as Python's
    shortest repr, as ``pandas.DataFrame.to_csv`` writes them."""
    cells = [_strings(values) for values in columns.values()]
    return "".join(line + "\n" for line in map(",".join, zip(*cells, strict=True)))


def _strings(values: np.ndarray) -> list[str]:
    if values.dtype.kind in "iub":
        return list(map(str, values.tolist()))
    whole = (values == np.floor(values)) & (np.abs(values) < 1e16)  # repr() prints these as "123.0"
    if whole.all():
        return [s + ".0" for s in map(str, values.astype(np.int64).tolist())]
    return list(map(float.__repr__, values.tolist()))


def write_csv(sweep: Sweep, write: Callable[[str], object], *, flat: np.ndarray | None = None,
              hw_size: bool = False, progress: Callable[[int, int], None] | None = None) -> None:
    """Stream the sweep (or the rows at ``flat``) as CSV through ``write``, a chunk at a time."""
    chunks = sweep.chunks() if flat is None else (flat[i:i + CHUNK] for i in range(0, len(flat), CHUNK))
    total = len(sweep) if flat is None else len(flat)
    header = [*sweep.axes, "delay_ns", "plain_delay_ns", "norm_delay", *(["hw_size"] if hw_size else [])]
    write(",".join(header) + "\n")
    done = 0
    for index in chunks:
        write(csv_lines(sweep.columns(index, hw_size=hw_size)))
        done += len(index)
        if progress is not None:
            progress(done, total)


def rows(sweep: Sweep, flat: np.ndarray | None = None, *, hw_size: bool = False) -> list[dict]:
    """The rows as dicts (for JSON, tables and Markdown: formats meant for people or small sweeps)."""
    index = np.arange(len(sweep), dtype=np.int64) if flat is None else flat
    cols = {name: values.tolist() for name, values in sweep.columns(index, hw_size=hw_size).items()}
    names = list(cols)
    return [dict(zip(names, values, strict=True)) for values in zip(*cols.values(), strict=True)]
