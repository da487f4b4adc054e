"""``create_model``: the one public constructor, and ``load_factory`` for user models.

``VARIANTS`` and the per-variant records live in :mod:`hwsim.variants`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from torch import nn

from hwsim.errors import HwsimError
from models.datasets import CUSTOM, custom_dataset, get_dataset
from models.knobs import S_LAMBDA, KnobState
from models.layers import LayerFactory
from models.pruning import prune_
from models.registry import get_builder
from models.surgery import apply_variant
from hwsim.variants import get_variant, users_of

BN_CHOICES = ("single", "dual")


#: Largest FiLM encoding size d. OAT uses 128; the encoding is the QR factorisation of a random d x d matrix
#: (O(d^3) time and 8 d^2 bytes: seconds and 134 MB at 4096, 34 GB at 65536), and every FiLM's MLP holds
#: d x 2C weights.
MAX_FILM_DIM = 4096


def _check_film_dim(film_dim: object, lambdas: tuple[float, ...] = S_LAMBDA) -> int:
    if isinstance(film_dim, bool) or not isinstance(film_dim, int) or not (
            film_dim == 1 or len(lambdas) <= film_dim <= MAX_FILM_DIM):
        raise HwsimError(f"film_dim must be 1 (raw lambda) or an integer in [{len(lambdas)}, {MAX_FILM_DIM}] "
                         f"(orthogonal rows for the {len(lambdas)} lambdas in S_lambda), got {film_dim!r}")
    return film_dim


def _check_lambdas(lambdas: object) -> tuple[float, ...]:
    """S_lambda: distinct numbers in [0, 1], in the given order (the order fixes the encoding rows)."""
    try:
        values = tuple(float(v) for v in lambdas)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise HwsimError(f"lambdas (S_lambda) must be a sequence of numbers in [0, 1], got {lambdas!r}") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values) or len(set(values)) != len(values):
        raise HwsimError(f"lambdas (S_lambda) must be distinct numbers in [0, 1], got {lambdas!r}")
    return values


def _check_widths(widths: object) -> tuple[float, ...]:
    """S_f of a slimmable variant: at least two distinct numbers in (0, 1], returned sorted. (With one width the
    layers are built plain, not switchable; a repeated width would name one BN twice.)"""
    try:
        values = [float(w) for w in widths]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise HwsimError(f"widths must be a sequence of numbers in (0, 1], got {widths!r}") from None
    if not values or any(not 0.0 < w <= 1.0 for w in values):
        raise HwsimError(f"widths must be numbers in (0, 1], got {widths!r}")
    if len(set(values)) != len(values):
        raise HwsimError(f"widths must be distinct, got {', '.join(f'{w:g}' for w in values)}")
    if len(values) < 2:
        raise HwsimError(f"a slimmable variant needs at least two widths, got {values[0]:g} (for one network at "
                         "one width, cost or train the variant without -slim)")
    return tuple(sorted(values))


def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise HwsimError(f"{name} must lie in (0, 1], got {value!r}")
    return float(value)


def create_model(name: str, variant: str = "base", *, dataset: str = "cifar10", film_dim: int = 128,
                 bn: str = "dual", widths: tuple[float, ...] = (0.5, 1.0), density: float = 1.0,
                 channel_density: float | None = None, dropout: float = 0.0,
                 input_size: tuple[int, int, int] | None = None,
                 lambdas: tuple[float, ...] = S_LAMBDA, init_weights: bool = True) -> nn.Module:
    """Build ``name`` as ``variant`` for ``dataset``; inputs are images in [0, 1], shape (B, C, H, W).

    ``name`` is a registered architecture or a user factory (``path/to/file.py:factory`` or
    ``package.module:factory``); a user model gets its variant by module surgery on the instance the
    factory returns (:func:`models.surgery.apply_variant`, SPEC 4.1), traced on ``input_size`` (C, H, W;
    default: the dataset's); ``dataset="custom"`` takes its geometry from ``input_size`` (10 classes).
    ``film_dim`` (oat*): FiLM encoding size d. ``lambdas`` (oat*): the S_lambda the model is trained and
    evaluated at (default OAT's set); with d > 1 each FiLM stores one orthogonal row per value and lambda_n
    must be one of them. ``bn`` (conditional variants):
    "dual" (BN_C/BN_A) or "single". ``widths`` (*-slim): slimming factors S_f. ``density`` (floats-*):
    global fraction of prunable conv weights kept. ``channel_density`` is reserved and must stay None
    (masks are set from ``density``; channel counts are a result, see ``models.pruning``). ``dropout``
    (zoo models only): before the classifier (ResNet, small CNN) or inside each block (WRN), in [0, 1).

    ``init_weights=False`` leaves the weights as allocated, uninitialised (:func:`skip_weight_init`): for a
    model that is only traced and counted, never run for its values. Pruned variants (density < 1) rank
    their initial weights, so they refuse it.

    The model carries ``hwsim_knobs`` (its one :class:`KnobState`) and ``hwsim_info`` (the resolved
    config). Knobs start at lambda_n = 0, lambda_th = 0, width = max(widths).
    """
    record = get_variant(variant)
    if dataset == CUSTOM:
        if input_size is None:
            raise HwsimError(f"dataset {CUSTOM!r} needs an input_size (C, H, W)")
        data = custom_dataset(input_size[0], input_size[1])
    else:
        data = get_dataset(dataset)
    if bn not in BN_CHOICES:
        raise HwsimError(f"bn must be one of {', '.join(BN_CHOICES)}, got {bn!r}")
    lambdas = _check_lambdas(lambdas)
    film_dim = _check_film_dim(film_dim, lambdas)
    density = _check_fraction("density", density)
    if channel_density is not None:
        raise HwsimError(f"channel_density is not supported (got {channel_density!r}); use density with "
                         "variant floats-c")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise HwsimError(f"dropout must lie in [0, 1), got {dropout!r}")
    width_set = _check_widths(widths) if record.slim else (1.0,)
    if density < 1.0 and not record.masked:
        raise HwsimError(f"density {density:g} applies only to pruned variants "
                         f"({', '.join(users_of('density'))}), not {variant!r}")
    if not init_weights and record.masked and density < 1.0:
        raise HwsimError(f"variant {variant!r} ranks its initial weights to draw its masks: it cannot be built "
                         "without initialising them")
    user = ":" in name
    if user and dropout:
        raise HwsimError(f"dropout applies only to the built-in models, not to the user model {name!r}")
    size = input_size or (data.in_channels, data.input_size, data.input_size)
    info = {"name": name, "variant": variant, "dataset": data.name, "film_dim": film_dim if record.film else 0,
            "bn": bn if record.conditional else "single", "widths": width_set, "density": density,
            "granularity": record.granularity, "dropout": float(dropout), "input_size": data.input_size,
            "in_channels": data.in_channels, "num_classes": data.num_classes}
    if input_size is not None:
        info["input_shape"] = tuple(input_size)

    state = KnobState(widths=width_set, film_dim=info["film_dim"], lambda_set=lambdas)
    dual = record.conditional and bn == "dual"
    with contextlib.nullcontext() if init_weights else skip_weight_init():
        if user:
            model = apply_variant(load_factory(name)(), record, state, size, dual=dual, film_dim=info["film_dim"])
        else:
            layers = LayerFactory(state, noise=record.noise, masked=record.masked, dual=dual,
                                  film_dim=film_dim if record.film else 0)
            model = get_builder(name)(layers, data, dropout=float(dropout))
    if record.masked and density < 1.0:  # masks start as ones
        prune_(model, density, record.granularity)
    model.hwsim_knobs = state
    model.hwsim_info = info
    return model


#: The random initialisers of ``torch.nn.init`` (the constant ones cost nothing and are left alone).
_RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                 "xavier_normal_", "orthogonal_", "sparse_")


@contextlib.contextmanager
def skip_weight_init() -> Iterator[None]:
    """Modules constructed inside keep their parameters as ``torch.empty`` allocated them.

    Every torch layer and ours draws its weights through ``torch.nn.init`` (looked up at call time), so the
    random initialisers are replaced by no-ops for the duration, the way Hugging Face's ``no_init_weights``
    does it; ``torch.device("meta")`` + ``to_empty`` does the same but its first use in a process costs
    about 0.5 s of imports, more than the draws it saves on a ResNet. Not thread-safe: the patch is global.
    Large parameters come from fresh zero pages, so skipping their draw also keeps them out of resident memory.
    """
    import torch.nn.init as init

    saved = {name: getattr(init, name) for name in _RANDOM_INITS}
    for name in _RANDOM_INITS:
        setattr(init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(init, name, function)


class OsExit(SystemExit):
    """os._exit called by a model factory (hwsim's own process: it must return a model, not end the process)."""


@contextlib.contextmanager
def user_code() -> Iterator[None]:
    """Run a user's model file or factory inside hwsim's process: its stdout goes to stderr (hwsim's stdout carries
    results, e.g. ``--format json``), Python's and the file descriptor's alike, and ``os._exit`` raises
    :class:`OsExit` instead of ending hwsim without a word. What cannot be caught in-process (a signal that kills
    it, a crash inside compiled code) still ends hwsim."""
    import os

    def refuse_exit(code: int = 0) -> None:
        raise OsExit(f"os._exit({code}) called inside hwsim's process (a factory must return a model)")

    sys.stdout.flush()
    try:
        saved_fd = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no file descriptors 1 / 2 (an embedding host): Python's stdout is still redirected
        saved_fd = None
    real_exit, os._exit = os._exit, refuse_exit
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        os._exit = real_exit
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


def load_factory(spec: str) -> Callable[[], nn.Module]:
    """Resolve ``"path/to/file.py:factory"`` or ``"pkg.module:factory"`` to a checked zero-argument factory.

    The returned callable raises :class:`HwsimError` if the factory raises or returns a non-``nn.Module``.
    Malformed specs, missing files/modules and missing attributes raise :class:`HwsimError` here.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(p.strip() for p in spec.split(":")):
        raise HwsimError(f"malformed model factory {spec!r}; expected 'path/to/file.py:factory' or "
                         "'pkg.module:factory'")
    where, attr = (p.strip() for p in spec.split(":"))
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if path.is_dir():
            raise HwsimError(f"model factory file {where!r} is a directory; give a Python file: FILE.py:{attr}")
        if not path.is_file():
            raise HwsimError(f"model factory file {where!r} does not exist")
        mod_name = f"hwsim_user_model_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        if module_spec is None or module_spec.loader is None:
            raise HwsimError(f"cannot import model factory file {where!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            with user_code():
                module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # user code: any failure (a sys.exit too) is a user error
            sys.modules.pop(mod_name, None)
            raise HwsimError(f"importing {where!r} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(where)
        except (Exception, SystemExit) as exc:
            raise HwsimError(f"cannot import module {where!r}: {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise HwsimError(f"{where!r} has no attribute {attr!r}")
    if not callable(factory):
        raise HwsimError(f"{spec!r} is not callable")

    def checked() -> nn.Module:
        try:
            with user_code():
                model = factory()
        except (Exception, SystemExit) as exc:
            raise HwsimError(f"model factory {spec!r} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(model, nn.Module):
            raise HwsimError(f"model factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
        return model

    return checked
