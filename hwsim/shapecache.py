"""Layer-shape cache (SPEC 5.1): the traced records of a model setting, kept as data.

A trace depends only on the model's code, the variant, the knobs and the input size, never on the hardware;
so ``hwsim count``, ``delay``, ``compare`` and ``sweep`` read the records of a setting they have traced
before (or that ships with hwsim) and compute counts and Eq. 7-9 delays from them without importing torch.

Where entries live:

* ``hwsim/data/shapes/`` (shipped): the zoo's models in every variant at the cost commands' default knobs
  (cifar10, FiLM d = 1, single BN, widest width, density 1 and compare's 0.5), made by
  ``python -m hwsim.shapecache``; a test checks that they equal a fresh trace and that they are current.
* the cache directory, ``$HWSIM_CACHE_DIR`` or else ``$XDG_CACHE_HOME/hwsim`` (default ``~/.cache/hwsim``),
  filled on first use; delete it at any time.

Validity. An entry is keyed by hwsim's version and the complete setting (model, variant, dataset, input size,
every knob), and holds the digest of the sources a trace depends on: hwsim's tracing and counting code, the
model zoo and the torch version; for a user model ``path/to/file.py:factory`` also the hash of the factory's
file and of every module outside the standard library and site-packages that was loaded when it was traced
(its helpers), hashed at trace time once per imported module object (memoised per process; modules without a
source file of their own, such as ``torch.ops``, are skipped). Any of them changed, or missing, means tracing
again; so does any doubt: settings with a mask checkpoint and user models given as ``package.module:factory``
(whose file depends on ``sys.path``) are never cached. Each entry carries a checksum of its own content: a
cache file that cannot be read, or was edited or truncated, is ignored with a :class:`CacheWarning` and
written anew.

Bypass it with ``--no-cache`` on the cost commands or ``HWSIM_NO_CACHE=1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import sysconfig
import warnings
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hwsim.delay import DelayReport, LayerShape, layer_delay
from hwsim.errors import HwsimError

FORMAT = 3  # of the entry files; a change of it invalidates every entry (3: per-axis geometry, params by
# identity, a checksum of the entry's content)
SHIPPED = Path(__file__).resolve().parent / "data" / "shapes"
_ROOT = Path(__file__).resolve().parent.parent  # holds hwsim/ and models/
# hwsim's code that a trace depends on: everything but the CLI, the reports, the trainer and the formatting
# of results (any doubt: in).
_UNTRACED = ("cli", "report", "train", "output.py", "sweep.py")

_enabled: ContextVar[bool] = ContextVar("hwsim_shape_cache", default=True)


class CacheWarning(UserWarning):
    """A cache entry could not be read (it is ignored and written anew)."""


def set_enabled(enabled: bool):
    """Turn the cache on or off in the current context; returns a token for :meth:`ContextVar.reset`."""
    return _enabled.set(enabled)


def enabled() -> bool:
    return _enabled.get() and os.environ.get("HWSIM_NO_CACHE", "") in ("", "0")


def cache_dir() -> Path:
    """Where entries built on first use are kept (see the module docstring)."""
    if os.environ.get("HWSIM_CACHE_DIR"):
        return Path(os.environ["HWSIM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hwsim"


# ------------------------------------------------------------------------------------------------ keys
def _version() -> str:
    from hwsim import __version__

    return __version__


@lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 over hwsim's tracing and counting sources, the model zoo, the torch and Python versions."""
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256()
    files = sorted(p for p in (*(_ROOT / "hwsim").rglob("*.py"), *(_ROOT / "models").rglob("*.py"))
                   if p.relative_to(_ROOT).parts[1] not in _UNTRACED)
    for path in files:
        h.update(path.relative_to(_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "none"
    h.update(f"torch {torch_version}; python {sys.version_info[:2]}; format {FORMAT}".encode())
    return h.hexdigest()


def _user_file(setting) -> Path | None:
    """The factory file of a ``path/to/file.py:factory`` user model (None for zoo models)."""
    where = setting.model.rsplit(":", 1)[0]
    return Path(where).resolve() if ":" in setting.model else None


def cacheable(setting) -> bool:
    """Settings whose trace the cache may stand for (see the module docstring)."""
    if getattr(setting, "masks", None) is not None:
        return False
    if ":" not in setting.model:
        return True
    where = setting.model.rsplit(":", 1)[0]
    return where.endswith(".py") or "/" in where or "\\" in where


def _key(setting, input_size: tuple[int, ...]) -> tuple[str, dict]:
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(setting).items()}
    user = _user_file(setting)
    if user is not None:
        fields["model"] = f"{user}:{setting.model.rsplit(':', 1)[1]}"
    material = {"hwsim": _version(), "setting": fields, "input_size": list(input_size)}
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]
    return digest, material


def _file_hash(path: Path) -> str | None:
    """SHA-256 of a file's bytes (None if unreadable), hashed once per process for each version of the file
    (inode, size, modification and change times): a compare of a user model checks the same helper files for
    every variant."""
    try:
        stat = path.stat()
        when = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if when not in _HASHES:
            _HASHES[when] = hashlib.sha256(path.read_bytes()).hexdigest()
        return _HASHES[when]
    except OSError:
        return None


_HASHES: dict[tuple[str, int, int, int, int], str] = {}


# module name -> (the module object, the hash of its file when hwsim first saw that module object)
_MODULE_HASHES: dict[str, tuple[object, str | None]] = {}


def _module_hash(name: str, module, path: Path) -> str | None:
    """The hash of a loaded user module's file, taken once per module object (per import: a re-import is a
    new object) and memoised for the process: a long-lived process whose file was edited after the module
    was loaded keeps the hash of the code it runs, so its trace is never stored under the new file's hash."""
    known = _MODULE_HASHES.get(name)
    if known is not None and known[0] is module and module is not None:
        return known[1]
    digest = _file_hash(path)
    _MODULE_HASHES[name] = (module, digest)
    return digest


def _user_dependencies(factory_file: Path) -> dict[str, str | None]:
    """Hashes of the factory file and of every loaded user module (outside stdlib, site-packages, hwsim and
    models), taken at trace time. Modules without a source file of their own (``torch.ops`` and
    ``torch.classes`` have relative ``__file__`` values; builtins and namespace packages none) are skipped.
    A None value (a file that cannot be read) means the entry is not stored."""
    skip = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    skip |= {_ROOT / "hwsim", _ROOT / "models", Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    factory_file = factory_file.resolve()
    deps: dict[str, str | None] = {}
    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None)
        if not isinstance(where, str) or not where.endswith(".py") or not os.path.isabs(where):
            continue
        path = Path(where).resolve()
        if not path.is_file() or any(path.is_relative_to(root) for root in skip):
            continue
        deps[str(path)] = _module_hash(name, module, path)
    if str(factory_file) not in deps:  # (not loaded as a module)
        deps[str(factory_file)] = _file_hash(factory_file)
    return deps


def _checksum(data: dict[str, Any]) -> str:
    """SHA-256 of an entry file's content without its checksum (canonical JSON)."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ------------------------------------------------------------------------------------------- entries
def _entry(setting, analysis) -> dict[str, Any]:
    """The hardware-independent part of an :class:`~hwsim.cost.Analysis`, as JSON-able data."""
    from hwsim.cost import plain_shapes

    from hwsim.count import memory_terms

    trace, counts = analysis.trace, analysis.counts
    layers = [dataclasses.asdict(record) for record in trace.layers]
    return {
        "memory_terms": [list(term) for term in memory_terms(trace)],
        "input_size": list(analysis.input_size),
        "layers": layers,
        "films": [dataclasses.asdict(film) for film in trace.films],
        "ops": dict(trace.ops),
        "unsupported": dict(trace.unsupported),
        "noise_convs": list(trace.noise_convs),
        "shapes": [dataclasses.asdict(shape) for shape in trace.shapes()],
        "plain": [dataclasses.asdict(shape) for shape in plain_shapes(trace)],
        "params": dataclasses.asdict(counts.params),
        "macs": counts.macs,
        "nonzero_macs": counts.nonzero_macs,
        "macs_by_kind": dict(counts.macs_by_kind),
        "count_ops": dict(counts.ops),
        "count_unsupported": dict(counts.unsupported),
    }


def memory_bytes(entry: dict[str, Any], hw, *, include_bn: bool = False) -> int:
    """:func:`hwsim.count.memory_bytes` from an entry's records (the same function, on stored terms)."""
    from hwsim.memory import memory_from_terms

    terms = [tuple(term) for term in entry["memory_terms"]]
    return memory_from_terms(terms, entry["params"]["active_groups"], hw, include_bn=include_bn)


def analysis_from_entry(setting, entry: dict[str, Any], hw, *, include_bn: bool = False):
    """An :class:`~hwsim.cost.Analysis` whose trace and counts are read-only records from ``entry``."""
    from hwsim.cost import Analysis

    shapes = [LayerShape(**s) for s in entry["shapes"]]
    plain = [LayerShape(**s) for s in entry["plain"]]
    trace = SimpleNamespace(
        input_size=tuple(entry["input_size"]), layers=tuple(SimpleNamespace(**r) for r in entry["layers"]),
        films=tuple(SimpleNamespace(**f) for f in entry["films"]), ops=entry["ops"],
        unsupported=entry["unsupported"], noise_convs=tuple(entry["noise_convs"]))
    counts = SimpleNamespace(
        trace=trace, params=SimpleNamespace(**entry["params"]), macs=entry["macs"],
        nonzero_macs=entry["nonzero_macs"], macs_by_kind=entry["macs_by_kind"],
        memory_bytes=memory_bytes(entry, hw, include_bn=include_bn),
        ops=entry["count_ops"], unsupported=entry["count_unsupported"])
    return Analysis(setting, hw, tuple(entry["input_size"]), trace, counts, _scalar_delay(shapes, hw),
                    _scalar_delay(plain, hw))


def _scalar_delay(shapes: list[LayerShape], hw):
    """:func:`hwsim.delay.model_delay` on the scalar path (:func:`~hwsim.delay.layer_delay`, exactly equal):
    no numpy import for one configuration of a cached model."""
    return DelayReport(hw, tuple(layer_delay(shape, hw) for shape in shapes))


def _read(path: Path, material: dict) -> dict[str, Any] | None:
    """The entry at ``path`` if it exists, is readable and is valid for ``material``; else None."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        warnings.warn(f"ignoring unreadable shape-cache file {path}: {exc}", CacheWarning, stacklevel=3)
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entry"), dict):
            raise ValueError("not a shape-cache entry of this format")
        if data.get("checksum") != _checksum(data):
            raise ValueError("its checksum does not match its content (edited or damaged)")
        _check(data["entry"])
    except (ValueError, KeyError, TypeError, HwsimError) as exc:  # (UnicodeDecodeError is a ValueError)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        warnings.warn(f"ignoring unreadable shape-cache file {path}: {reason}", CacheWarning, stacklevel=3)
        return None
    if data.get("key") != material or data.get("sources") != source_digest():
        return None  # another hwsim, other sources: stale
    for name, digest in (data.get("user_sources") or {}).items():
        if digest is None or _file_hash(Path(name)) != digest:
            return None  # the user's model or one of its helpers changed (or is gone)
    return data["entry"]


def _check(entry: dict[str, Any]) -> None:
    """Reject an entry that does not have the shape of one (truncated or edited files)."""
    for name in ("layers", "films", "shapes", "plain", "noise_convs", "input_size"):
        if not isinstance(entry[name], list):
            raise ValueError(f"{name} is not a list")
    for name in ("ops", "unsupported", "params", "count_ops", "count_unsupported"):
        if not isinstance(entry[name], dict):
            raise ValueError(f"{name} is not an object")
    for shape in (*entry["shapes"], *entry["plain"]):
        LayerShape(**shape)
    for weights, nnz, bias in entry["memory_terms"]:
        if not all(isinstance(v, int) for v in (weights, bias)) or not (nnz is None or isinstance(nnz, int)):
            raise ValueError("memory terms are not integers")
    if not all(isinstance(entry[n], int) for n in ("macs", "nonzero_macs")):
        raise ValueError("macs are not integers")


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write an entry atomically (:func:`hwsim.files.replacing`): a reader never sees half an entry."""
    from hwsim.files import replacing

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    except OSError:  # a cache that cannot be written is no error: the next run traces again
        pass


def lookup(setting) -> dict[str, Any] | None:
    """The cached entry of ``setting`` (shipped, then the cache directory), or None."""
    if not enabled() or not cacheable(setting):
        return None
    input_size = setting.resolved_input_size()
    key, material = _key(setting, input_size)
    for folder in (SHIPPED, cache_dir()):
        if _user_file(setting) is not None and folder is SHIPPED:
            continue
        entry = _read(folder / f"{key}.json", material)
        if entry is not None:
            return entry
    return None


def store(setting, analysis, folder: Path | None = None, user_sources: dict[str, str | None] | None = None
          ) -> dict[str, Any]:
    """Record ``analysis`` (a fresh trace of ``setting``) in the cache directory (or ``folder``).

    ``user_sources``: for a user model, the hashes of its files taken when it was traced
    (:func:`traced_dependencies`); taken now if not given. An entry with a file in doubt is not written."""
    entry = _entry(setting, analysis)
    if not cacheable(setting):
        return entry
    key, material = _key(setting, tuple(analysis.input_size))
    user = _user_file(setting)
    sources = (user_sources if user_sources is not None else _user_dependencies(user)) if user is not None else {}
    if any(digest is None for digest in sources.values()):
        return entry  # a file that cannot be read: nothing to check a later run against
    data = {"format": FORMAT, "key": material, "sources": source_digest(), "user_sources": sources,
            "entry": entry}
    data["checksum"] = _checksum(data)
    _write((folder or cache_dir()) / f"{key}.json", data)
    return entry


def traced_dependencies(setting) -> dict[str, str | None] | None:
    """The user-source hashes of ``setting`` at this moment (call it right after tracing); None for zoo
    models."""
    user = _user_file(setting)
    return _user_dependencies(user) if user is not None and cacheable(setting) else None


# ------------------------------------------------------------------------------------ the cost commands
def analyze(setting, hw=None, *, include_bn: bool = False, build=None):
    """:func:`hwsim.cost.analyze` through the cache: from the records when the setting was traced before
    (no torch), else a fresh trace that is then recorded. Same counts, delays and document. ``build``: as for
    :func:`hwsim.cost.analyze`, used on a miss."""
    from hwsim.hardware import get_preset

    hw = hw or get_preset("asic65")
    entry = lookup(setting)
    if entry is not None:
        return analysis_from_entry(setting, entry, hw, include_bn=include_bn)
    from hwsim.cost import analyze as traced, build_model

    analysis = traced(setting, hw, include_bn=include_bn, build=build or build_model)
    if enabled():
        store(setting, analysis, user_sources=traced_dependencies(setting))
    return analysis


def model_shapes(setting) -> tuple[list[LayerShape], list[LayerShape]]:
    """The delay model's layer shapes of ``setting`` and of its plain dense network (for sweeps)."""
    entry = lookup(setting)
    if entry is None:  # trace and record (not analyze(): it would look the setting up a second time)
        from hwsim.cost import analyze as traced
        from hwsim.cost import plain_shapes
        from hwsim.hardware import get_preset

        analysis = traced(setting, get_preset("asic65"))
        if enabled():
            store(setting, analysis, user_sources=traced_dependencies(setting))
        return analysis.trace.shapes(), plain_shapes(analysis.trace)
    return [LayerShape(**s) for s in entry["shapes"]], [LayerShape(**s) for s in entry["plain"]]


# -------------------------------------------------------------------------------------- shipped entries
def default_settings() -> list:
    """The settings shipped precomputed: every zoo model x variant at the cost commands' defaults, and the
    pruned variants at ``hwsim compare``'s density 0.5."""
    from hwsim.cost import ModelSetting
    from models import VARIANTS, list_models

    settings = []
    for model in list_models():
        for variant in VARIANTS:
            settings.append(ModelSetting(model, variant))
            if variant.startswith("floats"):
                settings.append(ModelSetting(model, variant, density=0.5))
    return settings


def rebuild_shipped(folder: Path = SHIPPED) -> int:
    """Trace every default setting afresh into ``folder`` (old entries removed); returns how many."""
    from hwsim.cost import analyze as traced

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()
    settings = default_settings()
    for setting in settings:
        store(setting, traced(setting), folder)
    return len(settings)


if __name__ == "__main__":
    print(f"wrote {rebuild_shipped()} entries to {SHIPPED}")
