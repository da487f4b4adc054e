"""Hardware configuration of the machines the delay model (SPEC 3) runs on: the FLOAT paper's Von-Neumann
ASIC (``arch = "von-neumann"``, the default) and a systolic array (``arch = "systolic"``, SPEC 3.2), each with
optional energies per action (SPEC 3.1). Fields of the other arch are refused.

A :class:`HardwareConfig` is a frozen value. Every way of making one goes through its constructor, which
validates all fields at once and reports every problem in one :class:`~hwsim.errors.HwsimError`. Every numeric
field has a range (:data:`FIELD_BOUNDS`) whose upper end keeps the delay arithmetic exact: int64 counts, finite
float64 times. Presets are TOML data files (``hwsim/presets/*.toml``) read by the same loader as user files,
which must set every hardware field of their arch (:data:`REQUIRED_FIELDS`, :data:`SYSTOLIC_REQUIRED_FIELDS`;
nothing is filled in silently but the defaults the files are told of) and may not exceed
:data:`MAX_TOML_BYTES`; sweeps derive new configurations with :func:`dataclasses.replace` (validated again).

>>> hw = get_preset("asic65")
>>> (hw.b_io, hw.b_w, hw.n_bank, hw.n_mult, hw.t_read_ns, hw.t_mult_ns)
(16, 8, 4, 175, 9.0, 4.0)
>>> sa = get_preset("systolic32")
>>> (sa.arch, sa.array_rows, sa.array_cols, sa.dataflow, sa.t_cycle_ns, sa.vector_lanes)
('systolic', 32, 32, 'ws', 4.0, 0)
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
#: Machines the delay model knows: the FLOAT paper's streaming multipliers (Eq. 7-9) and a systolic array
#: (SCALE-Sim v3's compute cycles, SPEC 3.2).
ARCHS = ("von-neumann", "systolic")
DATAFLOWS = ("ws", "os", "is")

#: Allowed range of every numeric field, inclusive. The upper bounds keep the delay arithmetic exact: with
#: b_w <= 64 and a layer of at most 2**40 weights (:data:`hwsim.delay.MAX_LAYER_WEIGHTS`) every read count
#: fits int64 many times over, b_io * n_bank <= 2**32, and a count of up to 2**63 times a time of at most
#: 1e9 ns (one second per read or multiply pass) is a finite float64. The lower bound of the times (1e-6 ns,
#: a femtosecond) keeps ratios of delays (``norm_delay``) away from subnormal floats. An array side of at most
#: 2**16 keeps a layer's cycles (at most 2**50 MACs plus 3 x 2**16 cycles of skew per fold) in int64; energies
#: are at most 1e9 pJ (a millijoule per operation), so counts below 2**63 give finite totals.
FIELD_BOUNDS: dict[str, tuple[int | float, int | float]] = {
    "b_io": (1, 2**16),
    "b_w": (1, 64),
    "n_bank": (1, 2**16),
    "n_mult": (1, 2**32),
    "t_read_ns": (1e-6, 1e9),
    "t_mult_ns": (1e-6, 1e9),
    "array_rows": (1, 2**16),
    "array_cols": (1, 2**16),
    "t_cycle_ns": (1e-6, 1e9),
    "vector_lanes": (0, 2**32),
    "e_read_pj": (0.0, 1e9),
    "e_mult_pj": (0.0, 1e9),
    "e_add_pj": (0.0, 1e9),
    "e_acc_pj": (0.0, 1e9),
    "e_rng_pj": (0.0, 1e9),
    "e_bits": (1, 64),
}
#: The Von-Neumann ASIC's integer and time fields (the FLOAT paper's constants).
INT_FIELDS = ("b_io", "b_w", "n_bank", "n_mult")
TIME_FIELDS = ("t_read_ns", "t_mult_ns")
#: The fields a Von-Neumann hardware TOML file must set (the storage options default to dense storage, no zero
#: skipping).
REQUIRED_FIELDS = INT_FIELDS + TIME_FIELDS
#: The fields a systolic hardware TOML file must set (``vector_lanes`` defaults to 0, SCALE-Sim's mapping).
SYSTOLIC_REQUIRED_FIELDS = ("array_rows", "array_cols", "dataflow", "t_cycle_ns", "b_w")
#: Energy fields, optional as a group: a configuration sets all four or none (SPEC 3.1).
ENERGY_FIELDS = ("e_read_pj", "e_mult_pj", "e_add_pj", "e_acc_pj")
#: Energy fields with a default once the group is set: e_rng_pj = 0 (the Gaussian sampler is free unless
#: priced), e_bits = 8 (the width the multiply and add energies are given at).
ENERGY_DEFAULTS: dict[str, int | float] = {"e_rng_pj": 0.0, "e_bits": 8}
_ALL_INTS = INT_FIELDS + ("array_rows", "array_cols", "vector_lanes", "e_bits")
_ALL_FLOATS = TIME_FIELDS + ("t_cycle_ns",) + ENERGY_FIELDS + ("e_rng_pj",)
#: Von-Neumann fields that default to the asic65 values when left out of the Python constructor.
_VN_DEFAULTS: dict[str, int | float] = {"b_io": 16, "n_bank": 4, "n_mult": 175, "t_read_ns": 9.0, "t_mult_ns": 4.0}
#: Fields that only one arch has (any other field applies to both: b_w, storage, the energies; b_io and n_bank
#: describe the weight memory that e_read_pj prices on a systolic array).
ARCH_FIELDS: dict[str, tuple[str, ...]] = {
    "von-neumann": ("n_mult", "t_read_ns", "t_mult_ns", "zero_skip"),
    "systolic": ("array_rows", "array_cols", "dataflow", "t_cycle_ns", "vector_lanes"),
}
#: Hardware TOML files larger than this are refused before they are read (a preset is a few hundred bytes).
MAX_TOML_BYTES = 64 * 1024


def _range_text(name: str) -> str:
    lo, hi = FIELD_BOUNDS[name]
    if name in _ALL_INTS:
        return f"an integer in [{lo}, {hi}]"
    return f"a number in [{lo:g}, {hi:g}]"


# Units and allowed ranges, used both by validation and by `hwsim hw show`.
FIELD_DOCS: dict[str, tuple[str, str]] = {
    "arch": ("machine: streaming multipliers (FLOAT paper) or a systolic array", "one of " + ", ".join(ARCHS)),
    "b_io": ("bits per bank per read", _range_text("b_io")),
    "b_w": ("bits per stored weight", _range_text("b_w")),
    "n_bank": ("memory banks read in parallel", _range_text("n_bank")),
    "n_mult": ("parallel multipliers", _range_text("n_mult")),
    "t_read_ns": ("ns per memory read", _range_text("t_read_ns")),
    "t_mult_ns": ("ns per multiply pass", _range_text("t_mult_ns")),
    "sparse_storage": ("how pruned weights are stored", "one of dense, bitmap"),
    "zero_skip": ("multipliers skip pruned (zero) weights", "true or false"),
    "array_rows": ("rows of processing elements (R)", _range_text("array_rows")),
    "array_cols": ("columns of processing elements (C)", _range_text("array_cols")),
    "dataflow": ("what stays in the PEs: weights, outputs or inputs", "one of " + ", ".join(DATAFLOWS)),
    "t_cycle_ns": ("ns per array cycle", _range_text("t_cycle_ns")),
    "vector_lanes": ("elementwise ops per cycle beside the array (0: on one PE, as SCALE-Sim maps them)",
                     _range_text("vector_lanes")),
    "e_read_pj": ("pJ per read step (n_bank banks x one b_io-bit access)", _range_text("e_read_pj")),
    "e_mult_pj": ("pJ per multiply at e_bits bits", _range_text("e_mult_pj")),
    "e_add_pj": ("pJ per add at e_bits bits", _range_text("e_add_pj")),
    "e_acc_pj": ("pJ per accumulate into the wide accumulator (not scaled)", _range_text("e_acc_pj")),
    "e_rng_pj": ("pJ per Gaussian sample (default 0)", _range_text("e_rng_pj")),
    "e_bits": ("bits the multiply and add energies are given at (default 8)", _range_text("e_bits")),
}


@dataclass(frozen=True)
class HardwareConfig:
    """A machine the delay model runs on: the FLOAT paper's Von-Neumann ASIC (``arch="von-neumann"``, weights
    stream from banked memory into ``n_mult`` multipliers) or a systolic array (``arch="systolic"``).

    Von-Neumann: memory reads and multiplies are sequential (FLOAT paper, discussion of Eq. 7-9); fields left
    out (None) take the ``asic65`` values. Systolic: an ``array_rows x array_cols`` array with a dataflow,
    costed by SCALE-Sim v3's compute cycles (SPEC 3.2); the Von-Neumann-only fields must be left out. The
    energy fields (pJ, SPEC 3.1) are optional as a group. A field of the other arch is refused.
    """

    b_io: int | None = None  # memory IO bandwidth: bits delivered by one bank in one read (asic65: 16)
    b_w: int = 8  # bits per stored weight
    n_bank: int | None = None  # memory banks read in parallel (asic65: 4)
    n_mult: int | None = None  # multipliers working in parallel (asic65: 175; von-neumann only)
    t_read_ns: float | None = None  # ns for one (parallel) memory read (asic65: 9; von-neumann only)
    t_mult_ns: float | None = None  # ns for one pass of the multiplier array (asic65: 4; von-neumann only)
    sparse_storage: str = "dense"  # "bitmap": irregularly pruned weights stored as nnz values + 1-bit map
    zero_skip: bool = False  # multipliers skip zero weights (multiply term uses nnz in place of W)
    name: str = "custom"  # preset name, or the file it came from
    description: str = ""  # where the constants come from
    arch: str = "von-neumann"  # or "systolic"
    array_rows: int | None = None  # systolic: rows of PEs (R)
    array_cols: int | None = None  # systolic: columns of PEs (C)
    dataflow: str | None = None  # systolic: ws, os or is
    t_cycle_ns: float | None = None  # systolic: ns per cycle
    vector_lanes: int | None = None  # systolic: elementwise ops per cycle beside the array (default 0)
    e_read_pj: float | None = None  # pJ per read step (n_bank x b_io bits)
    e_mult_pj: float | None = None  # pJ per multiply at e_bits bits
    e_add_pj: float | None = None  # pJ per add at e_bits bits
    e_acc_pj: float | None = None  # pJ per accumulate (wide accumulator, not scaled)
    e_rng_pj: float | None = None  # pJ per Gaussian sample (default 0 with the energy fields)
    e_bits: int | None = None  # width the multiply and add energies are given at (default 8)

    def __post_init__(self) -> None:
        fill: dict[str, Any] = {}
        if self.arch == "von-neumann":
            fill.update({k: v for k, v in _VN_DEFAULTS.items() if getattr(self, k) is None})
        elif self.arch == "systolic" and self.vector_lanes is None:
            fill["vector_lanes"] = 0
        if all(getattr(self, k) is not None for k in ENERGY_FIELDS):
            fill.update({k: v for k, v in ENERGY_DEFAULTS.items() if getattr(self, k) is None})
        for key, value in fill.items():
            object.__setattr__(self, key, value)
        problems = validation_problems(self)
        if problems:
            raise HwsimError(f"invalid hardware configuration ({self.name}): " + "; ".join(problems))

    @property
    def has_energy(self) -> bool:
        """Whether the energy fields are set (energy can be computed)."""
        return self.e_read_pj is not None

    @property
    def systolic(self) -> bool:
        return self.arch == "systolic"

    def as_dict(self) -> dict[str, Any]:
        """The fields that apply to this configuration's arch (energy fields when set) as a plain dict
        (JSON-ready; ``HardwareConfig(**hw.as_dict()) == hw``)."""
        return {name: value for name, value in dataclasses.asdict(self).items() if _shown(self, name)}

    def require_energy(self) -> None:
        """Raise the one-line error of energy asked of a configuration without energy fields."""
        if not self.has_energy:
            raise HwsimError(f"hardware {self.name!r} has no energy fields: set {', '.join(ENERGY_FIELDS)} "
                             "(e.g. --hw asic65, which has them, or --set e_read_pj=274 ...)")


def _shown(hw: HardwareConfig, name: str) -> bool:
    if name in ("name", "description", "arch"):
        return True
    other = [f for arch, names in ARCH_FIELDS.items() if arch != hw.arch for f in names]
    if name in other:
        return False
    if name in ("b_io", "n_bank"):
        return getattr(hw, name) is not None
    if name in ENERGY_FIELDS or name in ENERGY_DEFAULTS:
        return hw.has_energy
    return True


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(name: str, value: object) -> bool:
    lo, hi = FIELD_BOUNDS[name]
    if name in _ALL_INTS:
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
    if hw.arch not in ARCHS:
        return [f"arch={_short(hw.arch)} must be {FIELD_DOCS['arch'][1]}"]
    problems = []
    own = ("b_io", "b_w", "n_bank", "sparse_storage", *ARCH_FIELDS[hw.arch], *ENERGY_FIELDS, *ENERGY_DEFAULTS)
    for other in (a for a in ARCHS if a != hw.arch):
        for name in ARCH_FIELDS[other]:
            value = getattr(hw, name)
            if value is not None and value is not False:
                problems.append(f"{name} does not apply to arch {hw.arch!r} (its fields: {', '.join(own)})")
    if hw.systolic:
        problems += [f"{name} must be set for arch 'systolic' ({FIELD_DOCS[name][1]})"
                     for name in SYSTOLIC_REQUIRED_FIELDS if getattr(hw, name) is None]
        if hw.dataflow is not None and hw.dataflow not in DATAFLOWS:
            problems.append(f"dataflow={_short(hw.dataflow)} must be {FIELD_DOCS['dataflow'][1]}")
    given = [name for name in ENERGY_FIELDS if getattr(hw, name) is not None]
    if given and len(given) < len(ENERGY_FIELDS):
        missing = [name for name in ENERGY_FIELDS if name not in given]
        problems.append(f"energy fields are all or none: {', '.join(given)} set but not {', '.join(missing)}")
    elif not given:
        problems += [f"{name} needs the energy fields {', '.join(ENERGY_FIELDS)} (set all four or none)"
                     for name in ENERGY_DEFAULTS if getattr(hw, name) is not None]
    elif hw.systolic:
        problems += [f"{name} must be set for energy on arch 'systolic' (e_read_pj prices one read of "
                     f"n_bank x b_io bits)" for name in ("b_io", "n_bank") if getattr(hw, name) is None]
    for name in FIELD_BOUNDS:
        value = getattr(hw, name)
        if value is not None and (problem := field_problem(name, value)) is not None:
            problems.append(problem)
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
    preset), or of :data:`SYSTOLIC_REQUIRED_FIELDS` with ``arch = "systolic"`` (see :func:`required_fields`);
    ``sparse_storage`` and ``zero_skip`` default to dense storage and no zero skipping, the energy fields
    are optional as a group (SPEC 3.1). A file
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
    return _from_toml_text(text, source=str(path), default_name=path.stem)


def required_fields(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields a hardware file with these keys must set: :data:`REQUIRED_FIELDS` for the Von-Neumann ASIC,
    :data:`SYSTOLIC_REQUIRED_FIELDS` for ``arch = "systolic"`` (with ``b_io`` and ``n_bank`` when it sets the
    energy fields: ``e_read_pj`` prices one read of their width)."""
    if data.get("arch") != "systolic":
        return REQUIRED_FIELDS
    energy = any(name in data for name in ENERGY_FIELDS)
    return SYSTOLIC_REQUIRED_FIELDS + (("b_io", "n_bank") if energy else ())


def _from_toml_text(text: str, *, source: str, default_name: str) -> HardwareConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HwsimError(f"malformed TOML in {source}: {' '.join(str(exc).split())}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer over Python's digit limit, deep nesting
        detail = str(exc).splitlines()[0].split("; use sys.")[0] if str(exc) else type(exc).__name__
        raise HwsimError(f"malformed TOML in {source}: {detail}") from None
    required = required_fields(data)
    missing = [name for name in required if name not in data]
    if required is REQUIRED_FIELDS:
        note = (f"it does not set {', '.join(missing)}: a hardware file must set every one of "
                f"{', '.join(REQUIRED_FIELDS)} (sparse_storage and zero_skip default to dense and false; "
                "`hwsim hw show asic65 --format json` lists a complete preset)")
    else:
        note = (f"it does not set {', '.join(missing)}: a systolic hardware file must set every one of "
                f"{', '.join(required)} (vector_lanes defaults to 0; `hwsim hw show systolic32 --format json` "
                "lists a complete preset)")
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
    if key in _ALL_INTS:
        try:
            return key, int(raw)
        except ValueError:  # not an integer, or more digits than Python converts
            raise HwsimError(f"{key}={_short(raw)} must be {FIELD_DOCS[key][1]}") from None
    if key in _ALL_FLOATS:
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


#: Fields a sweep may vary: the Von-Neumann ASIC's, and the systolic array's (each on hardware of its arch).
SWEEP_FIELDS = INT_FIELDS + TIME_FIELDS + ("array_rows", "array_cols", "t_cycle_ns", "vector_lanes")
SYSTOLIC_SWEEP_FIELDS = ("array_rows", "array_cols", "t_cycle_ns", "vector_lanes")

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
    if key not in SWEEP_FIELDS:
        raise HwsimError(f"--grid field {key!r} cannot be swept; valid fields: {', '.join(SWEEP_FIELDS)}")
    cast = int if key in _ALL_INTS else float
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
