"""Hardware configuration of the Von-Neumann ASIC that the delay model (SPEC 3) runs on.

A :class:`HardwareConfig` is a frozen value. Every way of making one goes through its constructor, which
validates all fields at once and reports every problem in one :class:`~hwsim.errors.HwsimError`. Presets are
TOML data files (``hwsim/presets/*.toml``) read by the same loader as user files; sweeps derive new
configurations with :func:`dataclasses.replace` (validated again).

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from hwsim.errors import HwsimError

SPARSE_STORAGE = ("dense", "bitmap")

# Units and allowed ranges, used both by validation and by `hwsim hw show`.
FIELD_DOCS: dict[str, tuple[str, str]] = {
    "b_io": ("bits per bank per read", "an integer >= 1"),
    "b_w": ("bits per stored weight", "an integer >= 1"),
    "n_bank": ("memory banks read in parallel", "an integer >= 1"),
    "n_mult": ("parallel multipliers", "an integer >= 1"),
    "t_read_ns": ("ns per memory read", "a finite number > 0"),
    "t_mult_ns": ("ns per multiply pass", "a finite number > 0"),
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


def validation_problems(hw: HardwareConfig) -> list[str]:
    """Every problem with ``hw``'s field values, each naming the field, its value and the allowed range."""
    problems = []
    for name in ("b_io", "b_w", "n_bank", "n_mult"):
        value = getattr(hw, name)
        if not _is_int(value) or value < 1:
            problems.append(f"{name}={value!r} must be {FIELD_DOCS[name][1]}")
    for name in ("t_read_ns", "t_mult_ns"):
        value = getattr(hw, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value <= 0:
            problems.append(f"{name}={value!r} must be {FIELD_DOCS[name][1]}")
    if hw.sparse_storage not in SPARSE_STORAGE:
        problems.append(f"sparse_storage={hw.sparse_storage!r} must be {FIELD_DOCS['sparse_storage'][1]}")
    if not isinstance(hw.zero_skip, bool):
        problems.append(f"zero_skip={hw.zero_skip!r} must be {FIELD_DOCS['zero_skip'][1]}")
    return problems


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
    """A user preset from a TOML file with the :class:`HardwareConfig` field names as top-level keys."""
    path = Path(path)
    if not path.is_file():
        raise HwsimError(f"hardware file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HwsimError(f"cannot read hardware file {str(path)!r}: {exc}") from None
    return _from_toml_text(text, source=str(path), default_name=path.stem)


def _from_toml_text(text: str, *, source: str, default_name: str) -> HardwareConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HwsimError(f"malformed TOML in {source}: {exc}") from None
    return from_mapping(data, source=source, default_name=default_name)


def from_mapping(data: Mapping[str, Any], *, source: str = "mapping", default_name: str = "custom") -> HardwareConfig:
    """A configuration from a mapping of field names to values; unknown keys are errors."""
    valid = {f.name for f in fields(HardwareConfig)}
    unknown = sorted(set(data) - valid)
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
    """Resolve ``--hw`` (preset name or path to a ``.toml`` file; default ``asic65``) and ``--set`` overrides."""
    spec = spec or "asic65"
    if spec.endswith(".toml") or Path(spec).is_file():
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
    if key in ("b_io", "b_w", "n_bank", "n_mult"):
        try:
            return key, int(raw)
        except ValueError:
            raise HwsimError(f"{key}={raw!r} must be {FIELD_DOCS[key][1]}") from None
    if key in ("t_read_ns", "t_mult_ns"):
        try:
            return key, float(raw)
        except ValueError:
            raise HwsimError(f"{key}={raw!r} must be {FIELD_DOCS[key][1]}") from None
    if key == "zero_skip":
        lowered = raw.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise HwsimError(f"zero_skip={raw!r} must be {FIELD_DOCS['zero_skip'][1]}")
        return key, lowered in ("true", "1", "yes")
    return key, raw


def apply_overrides(hw: HardwareConfig, overrides: Iterable[str]) -> HardwareConfig:
    """``hw`` with each ``KEY=VALUE`` override applied (validated once, all problems together)."""
    changes = dict(parse_override(item) for item in overrides)
    if not changes:
        return hw
    return dataclasses.replace(hw, **changes)
