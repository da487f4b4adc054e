"""The training configuration: one frozen dataclass, filled from defaults, a TOML file and CLI flags.

Defaults follow the FLOAT paper's supplement (and OAT's reference): SGD, lr 0.1, momentum 0.9, weight decay
5e-4, cosine schedule over 200 epochs, batch 128, PGD-7 with eps 8/255; trades and mart take their papers'
PGD-10 with eps 0.031 and step 0.007.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.errors import HwsimError
from hwsim.variants import VARIANT_RECORDS
from hwsim.train.options import DECLARED, AttackDefaults, Option, declared, parse_fraction  # noqa: F401
from hwsim.train.algorithms import ALGORITHMS
from hwsim.train.attacks import oat_step_size
from hwsim.train.bullettrain import BulletTrain
from hwsim.train.data import DATA_SOURCES
from hwsim.train.sparse import SparseLearning

#: field -> :class:`Option`: what every algorithm (``Algorithm.OPTIONS``) and extension (BulletTrain, sparse
#: learning) declares it uses. The defaults below, the range checks and the refusal of an option the chosen
#: algorithm does not use all come from here.
OPTIONS: dict[str, Option] = declared([*ALGORITHMS.values(), BulletTrain, SparseLearning])


def _declared(field: str):
    return OPTIONS[field].default

SCHEDULES = ("cosine", "multistep", "constant", "cyclic")
DEVICES = ("auto", "cpu", "cuda")
# What an algorithm needs of the variant it trains (a field of hwsim.variants.Variant): the knobs it sets.
_ALGORITHM_NEEDS = {"float": "noise", "oat": "film"}
_NEED_WORDS = {"noise": "noise-conditioned weights", "film": "FiLM layers"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (saved as ``config.json`` in the run directory)."""

    model: str = "resnet34"  # a registered model name or "file.py:factory"
    variant: str = "base"  # models.VARIANTS
    algorithm: str = "pgd-at"  # hwsim.train.algorithms.ALGORITHMS
    dataset: str = "cifar10"  # hwsim.train.data.DATA_SOURCES
    data_dir: str | None = None  # root of the dataset files (not needed for mnist / synthetic)
    epochs: int = 200  # FLOAT supplement 1.1
    batch_size: int = 128  # global batch (split across DDP ranks); the paper uses 64 for STL-10
    lr: float = 0.1  # initial SGD learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine annealing to 0 over `epochs`, stepped once per epoch (OAT reference);
    # "cyclic": one-cycle, linear 0 -> lr at 2/5 of the run -> 0, stepped per batch (Fast AT)
    milestones: tuple[int, ...] = (50, 150)  # for schedule = "multistep" (x0.1 at each)
    # the training attack: None takes the algorithm's declared defaults (``ATTACK``, hwsim.train.options)
    # training attack L-inf radius, fraction of 1; None: 0.031 for trades and mart (both papers), 8/255 otherwise
    eps: float | None = None
    # training attack step; None: 0.007 for trades and mart (both papers), OAT's min(1.25 eps, eps + 4/255) / k
    # for oat and float (the FLOAT supplement reproduces OAT's settings), 2/255 otherwise; "oat" in a
    # config/flag selects OAT's step explicitly
    step_size: float | None = None
    # PGD-k for training; None: 10 for trades and mart (both papers), 7 otherwise (FLOAT: PGD-7)
    attack_steps: int | None = None
    # model mode while generating training attacks; None: "train" for fast and free (their references attack
    # in train mode; Free's one forward serves both), "eval" otherwise (OAT reference)
    attack_mode: str | None = None
    # the options of one algorithm or extension: defaults from their declarations (Algorithm.OPTIONS, ...)
    pgd_lambda: float = _declared("pgd_lambda")  # pgd-at: weight of the adversarial loss in Eq. 3 (1)
    noise_lambda: float | None = _declared("noise_lambda")  # pgd-at on a float* variant: noise on at lambda_n
    beta: float = _declared("beta")  # trades, mart: weight of the KL term (6: both papers' CIFAR-10 setting)
    replays: int = _declared("replays")  # free: minibatch replays m (Shafahi et al.: m = 8 on CIFAR-10)
    fast_step: float = _declared("fast_step")  # fast: FGSM step as a multiple of eps (Wong et al.: 1.25)
    early_stop: bool = _declared("early_stop")  # fast: stop at catastrophic overfitting (PGD acc. -20 pts)
    bullettrain: bool = False  # per-sample attack steps (BulletTrain) for the algorithms with BULLETTRAIN
    bt_steps: tuple[int, ...] | None = _declared("bt_steps")  # BulletTrain (N_O, N_B, N_R); None: (0, k, 1)
    bt_p: float = _declared("bt_p")  # BulletTrain: momentum of the F_R estimate (0.9)
    bt_gamma: float = _declared("bt_gamma")  # BulletTrain: scaling of the robust accuracy in F_R (0.8)
    alpha_weight_decay: bool = False  # weight decay on FLOAT's noise scales alpha (off: as in PNI)
    dropout: float | None = None  # None: 0.3 for wrn16_8 / wrn40_2 (OAT reference), 0 otherwise
    oat_lambdas: tuple[float, ...] = _declared("oat_lambdas")  # oat: S_lambda
    film_dim: int = 128  # oat: d of the lambda encoding (OAT default 128)
    bn: str = "dual"  # "dual" (BN_C/BN_A) or "single"
    widths: tuple[float, ...] = (0.5, 1.0)  # slimmable variants
    density: float = 1.0  # floats variants
    prune_rate: float = _declared("prune_rate")  # floats variants: sparse learning's initial p (cosine-decayed)
    seed: int = 0
    val_size: int = 1000  # training images held out for per-epoch CA/RA (capped for small datasets)
    synthetic_size: int = 2000  # images in the synthetic training split
    workers: int = 0  # DataLoader worker processes (data are in memory; 0 is fastest on CPU)
    device: str = "auto"  # auto = cuda if available, else cpu
    amp: bool = True  # mixed precision + channels_last (CUDA only; ignored on CPU)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


#: Options that only some algorithms use (refused elsewhere instead of being silently ignored): read from each
#: algorithm's class (``OPTIONS``; ``BULLETTRAIN`` for the bullettrain switch), whose shipped entries are
#: written in :mod:`hwsim.train.options`.
#: Read at every check, so that an algorithm registered later (``register_algorithm``) is covered too.
def _algorithm_options() -> dict[str, tuple[str, ...]]:
    users = {field: tuple(name for name, cls in ALGORITHMS.items() if any(o.field == field for o in cls.OPTIONS))
             for field in declared(ALGORITHMS.values())}
    users["bullettrain"] = tuple(name for name, cls in ALGORITHMS.items() if cls.BULLETTRAIN)
    return users


def _all_options() -> dict[str, Option]:
    return declared([*ALGORITHMS.values(), BulletTrain, SparseLearning])


_BULLETTRAIN_OPTIONS = tuple(option.field for option in BulletTrain.OPTIONS)
#: Options that only some variants use -> the hwsim.variants.Variant field that says whether one does.
_VARIANT_OPTIONS = {"widths": "slim", "film_dim": "film", "bn": "conditional", "alpha_weight_decay": "noise"}
#: Upper bounds of the counts: generous, finite (a typo of 10**20 steps would run forever).
_COUNT_LIMITS = {"epochs": 100_000, "batch_size": 2**20, "attack_steps": 10_000, "val_size": 10_000_000,
                 "synthetic_size": 1_000_000, "workers": 256}
#: Float options and their allowed ranges: (low, high, low_open, high_open).
#: Bounded well above any published setting: beyond them SGD's float32 arithmetic overflows (lr 1e308 crashed in
#: torch.optim.SGD: it casts lr to float32) or the loss is infinite from the first step (beta 1e308). lr up to
#: 1e30 runs, and a loss it makes infinite stops the run naming the epoch and step.
_FLOAT_RANGES = {"lr": (0.0, 1e30, True, False), "weight_decay": (0.0, 1.0, False, False),
                 "momentum": (0.0, 1.0, False, True)}  # (an algorithm's own options: their declarations)
#: Training images of each data set's train split (synthetic: ``synthetic_size``), for the validation cap.
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "stl10": 5_000, "mnist": 4_000}
#: Data sets that are read from --data-dir (the others are generated or installed with a package).
_FILE_DATASETS = ("cifar10", "cifar100", "svhn", "stl10")
#: The smallest synthetic training split: a fifth of it (at least one image) is held out for validation.
_MIN_SYNTHETIC = 5
#: The per-model dropout default of OAT's reference for the WRNs it trains.
_DROPOUT = {"wrn16_8": 0.3, "wrn40_2": 0.3}


def _coerce(name: str, value: Any) -> Any:
    default = FIELDS[name].default
    if name in ("noise_lambda", "dropout", "step_size"):
        return None if value is None else parse_fraction(value, name)
    if name == "attack_mode":
        if value is not None and not isinstance(value, str):
            raise HwsimError(f"{name} must be a string, got {value!r}")
        return value
    if name == "bt_steps":
        if value is None:
            return None
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        try:
            steps = tuple(int(str(v).strip()) for v in value)
        except (TypeError, ValueError):
            raise HwsimError(f"bt_steps must be three integers N_O,N_B,N_R, got {value!r}") from None
        if len(steps) != 3:
            raise HwsimError(f"bt_steps must be three integers N_O,N_B,N_R, got {value!r}")
        return steps
    if name in ("eps", "lr", "weight_decay", "momentum", "density") or (
            name in DECLARED and DECLARED[name].kind == "number"):  # an algorithm's or extension's number
        return parse_fraction(value, name)
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise HwsimError(f"{name} must be a list, got {value!r}")
        if name == "milestones":
            return tuple(_integer(v, name, value) for v in value)
        try:
            return tuple(float(parse_fraction(v, name)) for v in value)
        except (TypeError, ValueError):
            raise HwsimError(f"{name} must be a list of numbers, got {value!r}") from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise HwsimError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, int) or name == "attack_steps":
        if isinstance(value, bool) or not isinstance(value, int):
            raise HwsimError(f"{name} must be an integer, got {value!r}")
        return value
    if value is not None and not isinstance(value, str):
        raise HwsimError(f"{name} must be a string, got {value!r}")
    return value


def _integer(v: Any, name: str, whole: Any) -> int:
    """An integer element of a list option: 3 or "3"; 1.7, "1.7", True are refused (never truncated)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise HwsimError(f"{name} must be a list of integers (epochs), got {whole!r}")
    try:
        return int(str(v).strip())
    except ValueError:
        raise HwsimError(f"{name} must be a list of integers (epochs), got {whole!r}") from None


def make_config(values: dict[str, Any], source: str = "options", *, given: bool = False) -> TrainConfig:
    """Build and validate a TrainConfig from ``values`` (unknown keys and every bad value in one error).

    ``source`` names where the values came from (a file path) for the message. ``given``: every key of
    ``values`` was given by the user (options, a config file), so an option the variant does not use is
    refused whatever its value; otherwise (a run's saved config) only one that differs from the default. ``step_size = "oat"`` selects
    OAT's step ``min(1.25 eps, eps + 4/255) / attack_steps``.
    """
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise HwsimError(f"{source}: unknown config key(s) {', '.join(unknown)}; valid: {', '.join(FIELDS)}")
    oat_step = values.get("step_size") == "oat"
    clean = {k: _coerce(k, v) for k, v in values.items() if not (k == "step_size" and oat_step)}
    config = TrainConfig(**clean)
    def foreign(key: str) -> bool:  # given by the user (whatever its value), or a saved value off the default
        return key in values and (given or clean[key] != FIELDS[key].default)

    problems = [f"{key} applies only to --algorithm {' or '.join(algos)}, not {config.algorithm}"
                for key, algos in _algorithm_options().items() if config.algorithm not in algos and foreign(key)]
    record = VARIANT_RECORDS.get(config.variant)  # (unknown names are reported by models)
    for key, needs in _VARIANT_OPTIONS.items():
        if record is not None and not getattr(record, needs) and foreign(key):
            users = ", ".join(v.name for v in VARIANT_RECORDS.values() if getattr(v, needs))
            problems.append(f"{key} applies only to variants {users}, not {config.variant!r}")
    if config.schedule != "multistep" and foreign("milestones"):
        problems.append(f"milestones apply only to schedule multistep, not {config.schedule}")
    problems += [f"{key} applies only with bullettrain" for key in _BULLETTRAIN_OPTIONS
                 if not config.bullettrain and foreign(key)]
    if config.dataset not in _FILE_DATASETS and config.data_dir is not None and given and "data_dir" in values:
        problems.append(f"data_dir applies only to the data sets read from files ({', '.join(_FILE_DATASETS)}), "
                        f"not {config.dataset}")
    if config.dataset != "synthetic" and given and "synthetic_size" in values:  # (saved configs hold it all)
        problems.append(f"synthetic_size applies only to dataset synthetic, not {config.dataset}")
    config, capped = _cap_val_size(config, user_given=given and "val_size" in values)
    if capped:
        problems.append(capped)
    if problems:
        raise HwsimError(f"{source}: " + "; ".join(problems))
    config = resolve_defaults(config, oat_step=oat_step)
    problems = validate(config)
    if problems:
        raise HwsimError(f"{source}: " + "; ".join(problems))
    return config


def _cap_val_size(config: TrainConfig, user_given: bool) -> tuple[TrainConfig, str]:
    """Hold out at most a fifth of the training images for validation: the default is lowered to that (and the
    config records the value used), a value the user gave above it is a problem (the message)."""
    total = config.synthetic_size if config.dataset == "synthetic" else TRAIN_IMAGES.get(config.dataset)
    if total is None or not isinstance(config.val_size, int) or total < _MIN_SYNTHETIC:
        return config, ""
    cap = total // 5
    if config.val_size <= cap:
        return config, ""
    if user_given:
        return config, (f"val_size {config.val_size} is more than a fifth of the {total:,} training images of "
                        f"{config.dataset}; give at most {cap:,}")
    return dataclasses.replace(config, val_size=cap), ""


def resolve_defaults(config: TrainConfig, oat_step: bool = False) -> TrainConfig:
    """Fill the defaults that depend on the algorithm or the model (see the field comments)."""
    # the algorithm's declared attack defaults (hwsim.train.options; an unknown name is reported by validate)
    attack = getattr(ALGORITHMS.get(config.algorithm), "ATTACK", AttackDefaults())
    changes: dict[str, Any] = {}
    if config.eps is None:
        changes["eps"] = attack.eps
    if config.attack_steps is None:
        changes["attack_steps"] = attack.steps
    config = dataclasses.replace(config, **changes)
    if oat_step or (config.step_size is None and attack.step_size == "oat"):
        changes["step_size"] = oat_step_size(config.eps, config.attack_steps) if config.attack_steps >= 1 else 0.0
    elif config.step_size is None:
        changes["step_size"] = attack.step_size
    if config.attack_mode is None:
        changes["attack_mode"] = attack.mode
    if config.dropout is None:
        changes["dropout"] = _DROPOUT.get(config.model, 0.0)
    if config.bullettrain and config.bt_steps is None:
        changes["bt_steps"] = (0, config.attack_steps, 1)
    return dataclasses.replace(config, **changes)


def validate(config: TrainConfig) -> list[str]:
    """Every problem in ``config`` (empty when valid). Model names and variants are checked by models."""
    problems = []
    if config.algorithm not in ALGORITHMS:
        problems.append(f"algorithm {config.algorithm!r} unknown; valid: {', '.join(sorted(ALGORITHMS))}")
    record = VARIANT_RECORDS.get(config.variant)  # unknown names are reported by models
    needs = _ALGORITHM_NEEDS.get(config.algorithm)
    if needs and record is not None and not getattr(record, needs):
        fits = ", ".join(v.name for v in VARIANT_RECORDS.values() if getattr(v, needs))
        problems.append(f"algorithm {config.algorithm!r} trains variants with {_NEED_WORDS[needs]} ({fits}), "
                        f"got variant {config.variant!r}")
    if config.dataset not in DATA_SOURCES:
        problems.append(f"dataset {config.dataset!r} unknown; valid: {', '.join(DATA_SOURCES)}")
    if config.schedule not in SCHEDULES:
        problems.append(f"schedule {config.schedule!r} unknown; valid: {', '.join(SCHEDULES)}")
    if config.device not in DEVICES and not config.device.startswith("cuda:"):
        problems.append(f"device {config.device!r} unknown; valid: {', '.join(DEVICES)}, cuda:N")
    if config.attack_mode not in ("eval", "train"):
        problems.append(f"attack_mode {config.attack_mode!r} unknown; valid: eval, train")
    if config.bn not in ("single", "dual"):
        problems.append(f"bn {config.bn!r} unknown; valid: single, dual")
    for name, high in _COUNT_LIMITS.items():
        low = {"workers": 0, "synthetic_size": _MIN_SYNTHETIC}.get(name, 1)
        if not low <= getattr(config, name) <= high:
            problems.append(f"{name} must be an integer in [{low}, {high:,}], got {getattr(config, name)}")
    for name, (low, high, low_open, high_open) in _FLOAT_RANGES.items():
        value = getattr(config, name)
        if not (math.isfinite(value) and (low < value if low_open else low <= value)
                and (value < high if high_open else value <= high)):
            allowed = (f"a finite number {'>' if low_open else '>='} {low:g}" if high == math.inf else
                       f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")
            problems.append(f"{name} must be {allowed}, got {value}")
    problems += [problem for option in _all_options().values()
                 if (problem := option.problem(getattr(config, option.field))) is not None]
    if not 0 <= config.seed < 2**63:
        problems.append(f"seed must be an integer in [0, 2**63 - 1], got {config.seed}")
    if config.bt_steps is not None and not all(0 <= n <= _COUNT_LIMITS["attack_steps"] for n in config.bt_steps):
        problems.append(f"bt_steps must be in [0, {_COUNT_LIMITS['attack_steps']:,}], got {list(config.bt_steps)}")
    elif config.bullettrain and config.bt_steps is not None and not any(config.bt_steps):
        problems.append(f"bt_steps {','.join(map(str, config.bt_steps))} attacks no sample: at least one of N_O, N_B, "
                        "N_R must be >= 1")
    if config.schedule == "multistep" and (
            any(not 1 <= m <= config.epochs for m in config.milestones)
            or list(config.milestones) != sorted(set(config.milestones))):
        problems.append(f"milestones must be increasing epochs in [1, {config.epochs}], got {list(config.milestones)}")
    if config.dropout is not None and not 0 <= config.dropout < 1:
        problems.append(f"dropout must be in [0, 1), got {config.dropout}")
    if config.algorithm == "free" and record is not None and record.slim:
        problems.append("free does not train slimmable variants (its replays own the optimizer steps)")
    if config.algorithm == "float" and config.batch_size < 2:
        problems.append("float needs batch_size >= 2 (half clean, half adversarial)")
    if not 0 <= config.eps <= 1:
        problems.append(f"eps must be in [0, 1] (fraction of 1, e.g. 8/255), got {config.eps}")
    if not 0 <= config.step_size <= 1:
        problems.append(f"step_size must be in [0, 1], got {config.step_size}")
    if OPTIONS["prune_rate"].problem(config.prune_rate) is None and config.prune_rate != FIELDS["prune_rate"].default and record is not None and not record.masked:
        masked = ", ".join(v.name for v in VARIANT_RECORDS.values() if v.masked)
        problems.append(f"prune_rate applies only to masked variants ({masked}), not {config.variant!r}")
    if config.noise_lambda is not None:
        if OPTIONS["noise_lambda"].problem(config.noise_lambda) is not None:
            pass  # reported with the declared ranges above
        elif config.algorithm != "pgd-at" or (record is not None and not record.noise):
            noisy = ", ".join(v.name for v in VARIANT_RECORDS.values() if v.noise)
            problems.append(f"noise_lambda applies only to --algorithm pgd-at on a noise-conditioned variant "
                            f"({noisy}), not {config.algorithm} on {config.variant!r}")
    if len(set(config.oat_lambdas)) != len(config.oat_lambdas):
        problems.append(f"oat_lambdas must be distinct values, got {list(config.oat_lambdas)}")
    if not config.oat_lambdas or any(not 0 <= v <= 1 for v in config.oat_lambdas):
        problems.append(f"oat_lambdas must be values in [0, 1], got {list(config.oat_lambdas)}")
    return problems


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a dict; a malformed file raises HwsimError naming it and the problem."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise HwsimError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HwsimError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise HwsimError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
