"""Checkpoints that ``torch.load(path, weights_only=True)`` can read, written atomically (:func:`write_atomic`,
which the evaluation's tables use too).

A checkpoint is a dict of tensors and plain containers: model / optimiser / scheduler / grad-scaler state,
the RNG states of torch (CPU and CUDA), numpy and python ``random`` (converted to tensors and lists), the
number of completed epochs and the best validation metric so far.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwsim.errors import HwsimError
from hwsim.files import replacing

FORMAT = 2  # 2: the step protocol's hook states ('hooks') are saved
READABLE = (1, 2)  # format 1 (before the step protocol) still loads: its algorithms kept no state


def rng_state() -> dict[str, Any]:
    """All RNG states as tensors / plain lists (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then ``os.replace`` it onto ``path``: readers see the
    old file or the new one, never a half-written one. If ``write`` fails, ``path`` is left as it was and the
    temporary file is removed."""
    with replacing(path) as tmp:
        write(tmp)


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` with :func:`write_atomic`."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load(path: Path, other: str | None = None) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or unreadable file raises HwsimError naming the
    file (and ``other``, the option to try instead, when given).

    The message never repeats torch's hint to load with ``weights_only=False``: a checkpoint that is not
    plain tensors and containers is not one of ours, and unpickling it could run arbitrary code.
    """
    hint = f"; try {other}" if other else ""
    if not path.is_file():
        raise HwsimError(f"checkpoint {path} does not exist{hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError / UnpicklingError / EOFError for bad files
        reason = type(exc).__name__ if "weights_only" in str(exc) else str(exc).splitlines()[0]
        raise HwsimError(f"checkpoint {path} cannot be read ({reason}){hint}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") not in READABLE:
        raise HwsimError(f"checkpoint {path} is not an hwsim checkpoint (format {FORMAT})")
    return ckpt
