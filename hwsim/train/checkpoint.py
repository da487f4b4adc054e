"""Checkpoints that ``torch.load(path, weights_only=True)`` can read, written atomically (:func:`write_atomic`,
which the evaluation's tables use too).

A checkpoint is a dict of tensors and plain containers: model / optimiser / scheduler / grad-scaler state,
the RNG states of torch (CPU and CUDA), numpy and python ``random`` (converted to tensors and lists), the
number of completed epochs and the best validation metric so far.

Every checkpoint carries ``"sha256"``, the SHA-256 of its own contents (:func:`content_digest`: every tensor's
dtype, shape and bytes and every other value, walked in a fixed order), so that bytes that rot on disk are
caught on load (:func:`load`, :func:`read_tensors`) instead of scoring or training from garbage weights. The
digest lives inside the file, so a checkpoint and its checksum are replaced together by one rename and a
copied checkpoint carries its own. Checkpoints of formats 1 and 2 (before checksums) load unverified.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwsim.errors import HwsimError
from hwsim.files import replacing

FORMAT = 3  # 2: the step protocol's hook states ('hooks') are saved; 3: "sha256" of the contents
READABLE = (1, 2, 3)  # format 1 (before the step protocol) still loads: its algorithms kept no state
DIGEST_KEY = "sha256"


def content_digest(obj: Any) -> str:
    """SHA-256 (hex) of a checkpoint's contents: dict keys in sorted order, each tensor's dtype, shape and
    bytes, every other value by type and ``repr``. The same contents give the same digest however they were
    stored; one changed bit in any tensor or value changes it."""
    digest = hashlib.sha256()
    _feed(digest, obj)
    return digest.hexdigest()


def _feed(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        flat = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{flat.dtype}{tuple(obj.shape)}:".encode())
        if flat.numel():
            digest.update(memoryview(flat.view(torch.uint8).numpy()))
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)}:".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _feed(digest, key)
            _feed(digest, obj[key])
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__[0]}{len(obj)}:".encode())
        for item in obj:
            _feed(digest, item)
    else:
        text = repr(obj).encode()
        digest.update(f"{type(obj).__name__}{len(text)}:".encode() + text)


class ChecksumError(HwsimError):
    """A checkpoint whose contents do not match the checksum stored in it (bit rot, a damaged copy)."""


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


class WriteError(HwsimError, OSError):
    """A file hwsim writes could not be written (a full disk, no permission); the previous one is kept. An
    OSError too, for callers that catch the error of the write itself."""


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then ``os.replace`` it onto ``path``: readers see the
    old file or the new one, never a half-written one. If ``write`` fails, ``path`` is left as it was and the
    temporary file is removed; a failure to write (OSError: a full disk, no permission) raises
    :class:`WriteError` naming the file and the cause."""
    try:
        with replacing(path) as tmp:
            write(tmp)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {_write_reason(exc)}{_kept(path)}") from None


def _kept(path: Path) -> str:
    return " (the previous one is kept)" if Path(path).exists() else ""


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` ``obj``, with its :func:`content_digest` under ``"sha256"``, to ``path`` with
    :func:`write_atomic`. A write that fails (a full disk) raises HwsimError naming the file; the previous
    ``path`` is kept and nothing is left beside it."""
    stamped = {**{k: v for k, v in obj.items() if k != DIGEST_KEY}}
    stamped[DIGEST_KEY] = content_digest(stamped)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(stamped, handle)
            handle.flush()
            os.fsync(handle.fileno())

    try:
        with replacing(path) as tmp:
            write(tmp)
    except (OSError, RuntimeError) as exc:  # torch reports a failed write of its zip writer as RuntimeError
        raise WriteError(f"cannot write checkpoint {path}: {_write_reason(exc)}{_kept(path)}") from None


def _write_reason(exc: BaseException) -> str:
    """The cause of a failed write in words: errno's text (ENOSPC: "No space left on device")."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def verify(ckpt: dict[str, Any], path: Path | str, hint: str = "") -> None:
    """Raise :class:`ChecksumError` naming ``path`` when ``ckpt`` carries a checksum its contents do not match
    (a checkpoint without one, written before format 3 or by another program, passes)."""
    stored = ckpt.get(DIGEST_KEY)
    if stored is None:
        return
    if stored != content_digest({k: v for k, v in ckpt.items() if k != DIGEST_KEY}):
        raise ChecksumError(f"checkpoint {path} is damaged: its contents do not match the checksum stored in it "
                            f"(bit rot or a broken copy){hint or _best_hint(Path(path))}")


def _best_hint(path: Path) -> str:
    """How to go on from a damaged ``RUN/checkpoints/last.pt``: its run's best.pt, when there is one."""
    if path.name != "last.pt" or path.parent.name != "checkpoints" or not (path.parent / "best.pt").is_file():
        return ""
    run = path.parent.parent
    return (f"; continue from best.pt with: hwsim train --resume {run} --resume-from best "
            f"(hwsim eval {run} --checkpoint best scores it)")


def load(path: Path, other: str | None = None) -> dict[str, Any]:
    """Load an hwsim checkpoint with ``weights_only=True`` and verify its checksum; a missing, unreadable or
    damaged file raises HwsimError naming the file (and ``other``, the option to try instead, when given).

    The message never repeats torch's hint to load with ``weights_only=False``: a checkpoint that is not
    plain tensors and containers is not one of ours, and unpickling it could run arbitrary code.
    """
    hint = f"; try {other}" if other else ""
    path = Path(path)
    if not path.is_file():
        raise HwsimError(f"checkpoint {path} does not exist{hint}")
    ckpt = _torch_load(path, f"checkpoint {path} cannot be read", hint)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in READABLE:
        raise HwsimError(f"checkpoint {path} is not an hwsim checkpoint (format {FORMAT})")
    verify(ckpt, path, hint)
    return ckpt


def read_tensors(path: str | Path, what: str) -> Any:
    """What ``torch.load(path, weights_only=True)`` returns (an hwsim checkpoint or any file of tensors, e.g. a
    user's state dict), with an hwsim checkpoint's checksum verified: the one way a checkpoint a user names
    (``--masks``, a report's runs) is read. ``what`` starts the message of a file that cannot be read or is
    damaged (e.g. ``"cannot read masks from checkpoint 'x.pt'"``)."""
    path = Path(path)
    state = _torch_load(path, what, "")
    if isinstance(state, dict):
        verify(state, path)
    return state


def _torch_load(path: Path, what: str, hint: str) -> Any:
    try:
        if path.stat().st_size == 0:
            raise HwsimError(f"{what} (the file is empty, 0 bytes){hint}")
        return torch.load(path, map_location="cpu", weights_only=True)
    except HwsimError:
        raise
    except Exception as exc:  # OSError, RuntimeError (not a zip), UnpicklingError, EOFError, IndexError, ...
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = (f"not a file of tensors torch loads with weights_only=True ({type(exc).__name__})"
                  if "weights_only" in str(exc) else text)
        raise HwsimError(f"{what} ({reason}){hint}") from None
