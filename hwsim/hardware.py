"""Hardware configuration of the Von-Neumann ASIC that the delay model (SPEC 3) runs on.

A :class:`HardwareConfig` is a frozen value. Every way of making one goes through its constructor, which
validates all fields at once and reports every problem in one :class:`~hwsim.errors.HwsimError`. Every numeric
field has a range (:data:`FIELD_BOUNDS`) whose upper end keeps the delay arithmetic exact: int64 counts, finite
float64 times. Presets are TOML data files (``hwsim/presets/*.toml``) read by the same loader as user files,
which must set every hardware field (:data:`REQUIRED_FIELDS`; nothing is filled in silently) and may not exceed
:data:`MAX_TOML_BYTES`; sweeps derive new configurations with :func:`dataclasses.replace` (validated again).

>>> hw = get_preset("asic65")
>>> (hw.b_io, hw.b_w, hw.n_bank, hw.n_mult, hw.t_read_ns, hw.t_mult_ns)
(16, 8, 4, 175, 9.0, 4.0)
>>> apply_overrides(hw, ["n_mult=256"]).n_mult
256
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from hwsim.errors import HwsimError

SPARSE_STORAGE = ("dense", "bitmap")

#: Allowed range of every numeric field, inclusive. The upper bounds keep the delay arithmetic exact: with
#: b_w <= 64 and a layer of at most 2**40 weights (:data:`hwsim.delay.MAX_LAYER_WEIGHTS`) every read count
#: fits int64 many times over, b_io * n_bank <= 2**32, and a count of up to 2**63 times a time of at most
#: 1e9 ns (one second per read or multiply pass) is a finite float64. The lower bound of the times (1e-6 ns,
#: a femtosecond) keeps ratios of delays (``norm_delay``) away from subnormal floats.
FIELD_BOUNDS: dict[str, tuple[int | float, int | float]] = {
    "b_io": (1, 2**16),
    "b_w": (1, 64),
    "n_bank": (1, 2**16),
    "n_mult": (1, 2**32),
    "t_read_ns": (1e-6, 1e9),
    "t_mult_ns": (1e-6, 1e9),
}
INT_FIELDS = ("b_io", "b_w", "n_bank", "n_mult")
TIME_FIELDS = ("t_read_ns", "t_mult_ns")
#: The fields a hardware TOML file must set (the storage options default to dense storage, no zero skipping).
REQUIRED_FIELDS = INT_FIELDS + TIME_FIELDS
#: Hardware TOML files larger than this are refused before they are read (a preset is a few hundred bytes).
MAX_TOML_BYTES = 64 * 1024


def _range_text(name: str) -> str:
    lo, hi = FIELD_BOUNDS[name]
    if name in INT_FIELDS:
        return f"an integer in [{lo}, {hi}]"
    return f"a number in [{lo:g}, {hi:g}]"


# Units and allowed ranges, used both by validation and by `hwsim hw show`.
FIELD_DOCS: dict[str, tuple[str, str]] = {
    "b_io": ("bits per bank per read", _range_text("b_io")),
    "b_w": ("bits per stored weight", _range_text("b_w")),
    "n_bank": ("memory banks read in parallel", _range_text("n_bank")),
    "n_mult": ("parallel multipliers", _range_text("n_mult")),
    "t_read_ns": ("ns per memory read", _range_text("t_read_ns")),
    "t_mult_ns": ("ns per multiply pass", _range_text("t_mult_ns")),
    "sparse_storage": ("how pruned weights are stored", "one of dense, bitmap"),
    "zero_skip": ("multipliers skip pruned (zero) weights", "true or false"),
}


@dataclass(frozen=True)
class HardwareConfig:
    """A conventional Von-Neumann ASIC: weights stream from banked memory into a multiplier array.

    Memory reads and multiplies are sequential (FLOAT paper, discussion of Eq. 7-9). Defaults are the ``asic65`` preset.
    """

    b_io: int = 16  # memory IO bandwidth: bits delivered by one bank in one read
    b_w: int = 8  # bits per stored weight
    n_bank: int = 4  # memory banks read in parallel
    n_mult: int = 175  # multipliers working in parallel
    t_read_ns: float = 9.0  # ns for one (parallel) memory read
    t_mult_ns: float = 4.0  # ns for one pass of the multiplier array
    sparse_storage: str = "dense"  # "bitmap": irregularly pruned weights stored as nnz values + 1-bit map
    zero_skip: bool = False  # multipliers skip zero weights (multiply term uses nnz in place of W)
    name: str = "custom"  # preset name, or the file it came from
    description: str = ""  # where the constants come from

    def __post_init__(self) -> None:
        problems = validation_problems(self)
        if problems:
            raise HwsimError(f"invalid hardware configuration ({self.name}): " + "; ".join(problems))

    def as_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(name: str, value: object) -> bool:
    lo, hi = FIELD_BOUNDS[name]
    if name in INT_FIELDS:
        return _is_int(value) and lo <= value <= hi
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return lo <= value <= hi  # exact for ints of any size; False for nan; inf is above every bound


def field_problem(name: str, value: object) -> str | None:
    """What is wrong with ``value`` for the numeric field ``name`` (naming the field, the value and the allowed
    range), or None when it is allowed."""
    return None if _in_range(name, value) else f"{name}={_short(value)} must be {FIELD_DOCS[name][1]}"


def validation_problems(hw: HardwareConfig) -> list[str]:
    """Every problem with ``hw``'s field values, each naming the field, its value and the allowed range."""
    problems = [problem for name in INT_FIELDS + TIME_FIELDS
                if (problem := field_problem(name, getattr(hw, name))) is not None]
    if hw.sparse_storage not in SPARSE_STORAGE:
        problems.append(f"sparse_storage={_short(hw.sparse_storage)} must be {FIELD_DOCS['sparse_storage'][1]}")
    if not isinstance(hw.zero_skip, bool):
        problems.append(f"zero_skip={_short(hw.zero_skip)} must be {FIELD_DOCS['zero_skip'][1]}")
    return problems


def _short(value: object, limit: int = 40) -> str:
    """``repr(value)``, shortened in the middle when long (a 5,000-digit number stays one readable line)."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4,300-digit str() limit
        return f"<an integer of {value.bit_length()} bits>"  # type: ignore[attr-defined]
    return text if len(text) <= limit else f"{text[:18]}...{text[-18:]} ({len(text)} characters)"


HARDWARE_FIELDS = tuple(f.name for f in fields(HardwareConfig) if f.name not in ("name", "description"))


# ----------------------------------------------------------------------------------------------- presets
def _preset_dir() -> resources.abc.Traversable:
    return resources.files("hwsim") / "presets"


def list_presets() -> list[str]:
    """Names of the built-in presets (the ``hwsim/presets/*.toml`` files)."""
    return sorted(p.name[: -len(".toml")] for p in _preset_dir().iterdir() if p.name.endswith(".toml"))


def get_preset(name: str) -> HardwareConfig:
    """The built-in preset ``name``; an unknown name raises an error listing the valid ones."""
    presets = list_presets()
    if name not in presets:
        raise HwsimError(f"unknown hardware preset {name!r}; valid presets: {', '.join(presets)}")
    text = (_preset_dir() / f"{name}.toml").read_text(encoding="utf-8")
    return _from_toml_text(text, source=f"preset {name}", default_name=name)


def load_toml(path: str | Path) -> HardwareConfig:
    """A user preset from a TOML file with the :class:`HardwareConfig` field names as top-level keys.

    The file must set every field of :data:`REQUIRED_FIELDS` (nothing is filled in silently from a built-in
    preset); ``sparse_storage`` and ``zero_skip`` default to dense storage and no zero skipping. A file
    larger than :data:`MAX_TOML_BYTES` is refused before it is parsed.
    """
    path = Path(path)
    if not path.exists():
        raise HwsimError(f"hardware file {str(path)!r} does not exist")
    if not path.is_file():
        raise HwsimError(f"hardware file {str(path)!r} is not a regular file")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_TOML_BYTES + 1)  # never more, whatever the file's size
        if len(raw) > MAX_TOML_BYTES:
            raise HwsimError(f"hardware file {str(path)!r} is larger than the {MAX_TOML_BYTES // 1024} KiB "
                             "allowed for a hardware preset")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HwsimError(f"cannot read hardware file {str(path)!r}: {exc}") from None
    return _from_toml_text(text, source=str(path), default_name=path.stem, required=REQUIRED_FIELDS)


def _from_toml_text(text: str, *, source: str, default_name: str,
                    required: Iterable[str] = REQUIRED_FIELDS) -> HardwareConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HwsimError(f"malformed TOML in {source}: {' '.join(str(exc).split())}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer over Python's digit limit, deep nesting
        detail = str(exc).splitlines()[0].split("; use sys.")[0] if str(exc) else type(exc).__name__
        raise HwsimError(f"malformed TOML in {source}: {detail}") from None
    missing = [name for name in required if name not in data]
    note = (f"it does not set {', '.join(missing)}: a hardware file must set every one of "
            f"{', '.join(REQUIRED_FIELDS)} (sparse_storage and zero_skip default to dense and false; "
            "`hwsim hw show asic65 --format json` lists a complete preset)")
    try:
        hw = from_mapping(data, source=source, default_name=default_name)
    except HwsimError as exc:
        raise HwsimError(f"{exc}; {note}" if missing else str(exc)) from None
    if missing:
        raise HwsimError(f"{source}: {note}")
    return hw


def from_mapping(data: Mapping[str, Any], *, source: str = "mapping", default_name: str = "custom") -> HardwareConfig:
    """A configuration from a mapping of field names to values; unknown keys are errors.

    Fields the mapping leaves out take the :class:`HardwareConfig` defaults (the ``asic65`` values); the
    TOML loaders require every hardware field instead (see :func:`load_toml`).
    """
    valid = {f.name for f in fields(HardwareConfig)}
    unknown = sorted(k if k.isidentifier() else repr(k) for k in map(str, set(data) - valid))
    if unknown:
        raise HwsimError(
            f"unknown key(s) {', '.join(unknown)} in {source}; valid keys: {', '.join(sorted(valid))}"
        )
    values = {"name": default_name, **data}
    try:
        return HardwareConfig(**values)
    except HwsimError as exc:
        raise HwsimError(f"{source}: {exc}") from None


def load_hardware(spec: str | None = None, overrides: Iterable[str] = ()) -> HardwareConfig:
    """Resolve ``--hw`` and ``--set`` overrides.

    ``spec`` is a path ending in ``.toml``, an existing file of any name, or else a built-in preset name
    (default ``asic65``).
    """
    if spec is None:
        spec = "asic65"
    if not spec.strip():
        raise HwsimError(f"--hw is empty; give a preset name ({', '.join(list_presets())}) or a TOML file")
    path = Path(spec)
    if spec.endswith(".toml") or path.is_file() or (path.exists() and spec not in list_presets()):
        hw = load_toml(spec)
    else:
        hw = get_preset(spec)
    return apply_overrides(hw, overrides)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``KEY=VALUE`` override into a field name and a value of the field's type."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise HwsimError(f"malformed override {text!r}; expected KEY=VALUE, e.g. n_mult=256")
    if key not in HARDWARE_FIELDS:
        raise HwsimError(f"unknown hardware field {key!r} in --set; valid fields: {', '.join(HARDWARE_FIELDS)}")
    if key in INT_FIELDS:
        try:
            return key, int(raw)
        except ValueError:  # not an integer, or more digits than Python converts
            raise HwsimError(f"{key}={_short(raw)} must be {FIELD_DOCS[key][1]}") from None
    if key in TIME_FIELDS:
        try:
            return key, float(raw)
        except ValueError:
            raise HwsimError(f"{key}={_short(raw)} must be {FIELD_DOCS[key][1]}") from None
    if key == "zero_skip":
        return key, parse_bool(raw, key)
    return key, raw


#: Spellings of a boolean accepted by ``--set`` (case-insensitive).
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def parse_bool(text: str, name: str) -> bool:
    """``true/yes/on/1`` -> True, ``false/no/off/0`` -> False (any case); anything else names the choices.

    >>> parse_bool("YES", "zero_skip"), parse_bool("off", "zero_skip")
    (True, False)
    """
    lowered = text.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise HwsimError(f"{name}={_short(text)} must be true or false (one of {', '.join(TRUE_WORDS + FALSE_WORDS)})")


def apply_overrides(hw: HardwareConfig, overrides: Iterable[str]) -> HardwareConfig:
    """``hw`` with each ``KEY=VALUE`` override applied (validated once, all problems together)."""
    changes = dict(parse_override(item) for item in overrides)
    if not changes:
        return hw
    return dataclasses.replace(hw, **changes)


#: Most values one ``--grid`` axis may list or a ``START:STOP:STEP`` range may expand to.
MAX_GRID_VALUES = 100_000


def parse_grid_axis(text: str) -> tuple[str, list[int | float]]:
    """One sweep axis: ``FIELD=V1,V2,...`` or ``FIELD=START:STOP:STEP`` (STOP included) -> (field, values).

    Integer fields take integers, the times take numbers; a range needs ``STEP > 0`` and ``START <= STOP``
    and may not expand to more than :data:`MAX_GRID_VALUES` values (checked before it is expanded). The
    values themselves are validated against :data:`FIELD_BOUNDS` by :func:`hwsim.delay.hardware_grid`.

    >>> parse_grid_axis("n_mult=64:256:64")
    ('n_mult', [64, 128, 192, 256])
    >>> parse_grid_axis("t_read_ns=1:2:0.5")
    ('t_read_ns', [1.0, 1.5, 2.0])
    """
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    form = "FIELD=V1,V2,... or FIELD=START:STOP:STEP"
    if not sep or not key or not raw:
        raise HwsimError(f"malformed --grid {text!r}; expected {form}")
    if key not in INT_FIELDS + TIME_FIELDS:
        raise HwsimError(f"--grid field {key!r} cannot be swept; valid fields: {', '.join(INT_FIELDS + TIME_FIELDS)}")
    cast = int if key in INT_FIELDS else float
    kind = "integers" if cast is int else "numbers"
    parts = raw.split(":") if ":" in raw else raw.split(",")
    try:
        numbers = [cast(p.strip()) for p in parts]
    except ValueError:
        raise HwsimError(f"malformed --grid {_short(text)}: values of {key} must be {kind} ({form})") from None
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        raise HwsimError(f"malformed --grid {_short(text)}: values of {key} must be finite numbers")
    if ":" not in raw:
        if len(numbers) > MAX_GRID_VALUES:
            raise HwsimError(f"--grid {key} lists {len(numbers)} values; at most {MAX_GRID_VALUES} per axis")
        return key, numbers
    if len(numbers) != 3:
        raise HwsimError(f"malformed --grid {_short(text)}: a range is START:STOP:STEP (three {kind})")
    start, stop, step = numbers
    if step <= 0:
        raise HwsimError(f"--grid {_short(text)}: STEP={step} must be > 0")
    if start > stop:
        raise HwsimError(f"--grid {_short(text)}: START={start} is above STOP={stop}, so the range is empty; "
                         f"write {key}={stop}:{start}:{step}")
    if cast is int:
        count = (stop - start) // step + 1
    else:
        count = math.floor((stop - start) / step * (1 + 1e-12)) + 1  # 1:2:0.1 includes 2 despite rounding
    if count > MAX_GRID_VALUES:
        raise HwsimError(f"--grid {_short(text)} expands to {count} values; at most {MAX_GRID_VALUES} per axis")
    if cast is int:
        return key, [start + i * step for i in range(count)]
    return key, [float(f"{start + i * step:.12g}") for i in range(count)]  # 1.7, not 1.7000000000000002


#: Most hardware configurations one sweep evaluates (the product of its axes' lengths): 1e7 with ``--pareto``
#: answers in seconds in about 0.7 GiB (separable totals, benchmarks/bench_sweep.py); beyond it memory grows.
MAX_GRID_CONFIGS = 10_000_000


def check_grid_size(axes: Mapping[str, Sequence[Any]]) -> int:
    """The number of configurations of the product of ``axes``; more than :data:`MAX_GRID_CONFIGS` is an error.

    >>> check_grid_size({"n_mult": [64, 128], "n_bank": [1, 2, 4]})
    6
    """
    size = math.prod(len(values) for values in axes.values())
    if size > MAX_GRID_CONFIGS:
        shape = " x ".join(f"{len(v)} {k}" for k, v in axes.items())
        raise HwsimError(f"--grid spans {size} configurations ({shape}); at most {MAX_GRID_CONFIGS}")
    return size


def parse_grid(texts: Iterable[str]) -> dict[str, list[int | float]]:
    """Every ``--grid`` axis (:func:`parse_grid_axis`) as ``{field: values}``; a field given twice and a grid
    over :data:`MAX_GRID_CONFIGS` configurations are errors (:func:`check_grid_size`).

    >>> parse_grid(["n_mult=64,128", "n_bank=1:4:1"])
    {'n_mult': [64, 128], 'n_bank': [1, 2, 3, 4]}
    """
    axes: dict[str, list[int | float]] = {}
    for text in texts:
        key, values = parse_grid_axis(text)
        if key in axes:
            raise HwsimError(f"--grid {key} is given twice; list all its values in one --grid, e.g. "
                             f"{key}=V1,V2,...")
        axes[key] = values
    check_grid_size(axes)
    return axes
