"""Cost of a model, variant and knob setting: counts, memory and Eq. 7-9 delay, from one trace.

This is the library behind ``hwsim count``, ``hwsim delay``, ``hwsim compare`` and the report's cost columns:

>>> from hwsim.cost import model_cost
>>> c = model_cost("resnet34", "oat")       # the paper's cost convention: FiLM d = 1, single BN
>>> c.params, c.macs
(31403978, 1159402496)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwsim.delay import DelayReport, LayerShape, NormalizedDelay, model_delay, normalized_delay
from hwsim.errors import HwsimError
from hwsim.hardware import HardwareConfig, get_preset

if TYPE_CHECKING:  # torch is imported only where a model is built or traced (hwsim.shapecache reads records)
    from hwsim.count import CountReport
    from hwsim.trace import Trace

#: Defaults of the cost commands: the FLOAT paper's cost convention (FiLM d = 1, one BN per layer), so that
#: `hwsim count resnet34 --variant oat` reports the paper's 31.4M. Trained models carry their own settings.
COST_FILM_DIM = 1
COST_BN = "single"


@dataclass(frozen=True)
class ModelSetting:
    """Which network to cost: architecture (or user factory), variant and knob setting."""

    model: str
    variant: str = "base"
    dataset: str = "cifar10"  # a preset, or "custom": geometry from input_size, 10 classes
    input_size: tuple[int, ...] | None = None  # (C, H, W), (C, L) or (C, D, H, W); None: the dataset's
    film_dim: int = COST_FILM_DIM
    bn: str = COST_BN
    widths: tuple[float, ...] = (0.5, 1.0)
    width: float | None = None  # None: the widest
    density: float = 1.0
    lambda_n: float = 0.0
    masks: str | None = None  # a checkpoint whose weight_mask buffers replace the masks drawn at build time

    def resolved_input_size(self) -> tuple[int, int, int]:
        if self.input_size is not None:
            return self.input_size
        from models import get_dataset

        if self.dataset == "custom":
            raise HwsimError("dataset 'custom' needs an input size (C, H, W)")

        data = get_dataset(self.dataset)
        return (data.in_channels, data.input_size, data.input_size)


@dataclass(frozen=True)
class Analysis:
    """Counts and delays of one setting under one hardware configuration."""

    setting: ModelSetting
    hardware: HardwareConfig
    input_size: tuple[int, int, int]
    trace: Trace
    counts: CountReport
    delay: DelayReport
    base_delay: DelayReport  # the same traced shapes, dense and plain (Eq. 7 everywhere)

    @property
    def norm_delay(self) -> float:
        """Total delay over the plain network's (1.0 for a model without conv or linear layers)."""
        base = self.base_delay.delay_ns
        return self.delay.delay_ns / base if base else 1.0

    @property
    def normalized(self) -> NormalizedDelay:
        """Per conditional conv layer ``t_V / t`` against the same layer plain (paper Fig. 7c)."""
        return normalized_delay(self.delay.layers, self.base_delay.layers)


def build_model(setting: ModelSetting, seed: int = 0):
    """The torch model for ``setting`` with its knobs set.

    Weights are drawn under a fixed seed (the caller's RNG state is left as it was), so that the masks of
    pruned variants, which rank the initial weights, and so their costs, are the same in every run. Where no
    mask ranks them (an unpruned zoo variant, or masks read from a checkpoint) the weights are not drawn at
    all (:func:`models.create.skip_weight_init`): a cost trace reads shapes, never values. A user factory
    runs as written (its forward may depend on its weights).
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build_model(setting)


def _build_model(setting: ModelSetting):
    from models import create_model, get_variant, set_knobs

    record = get_variant(setting.variant)
    if setting.width is not None and not record.slim and setting.width != 1.0:
        raise HwsimError(f"width {setting.width:g} applies only to slimmable variants (*-slim), "
                         f"not {setting.variant!r}")
    trained_masks = setting.masks is not None  # they replace every mask: drawing fresh ones would be wasted
    model = create_model(setting.model, setting.variant, dataset=setting.dataset, film_dim=setting.film_dim,
                         bn=setting.bn, widths=setting.widths, density=1.0 if trained_masks else setting.density,
                         input_size=setting.input_size,
                         init_weights=(record.masked and not trained_masks) or ":" in setting.model)
    set_knobs(model, lambda_n=setting.lambda_n, width=setting.width if record.slim else None)
    if setting.masks is not None:
        load_masks(model, setting.masks)
    return model


def load_masks(model, checkpoint: str) -> None:
    """Put the ``weight_mask`` buffers of a trained checkpoint into ``model``: a pruned run is costed with
    the masks it trained with, not those a fresh build draws from its initial weights."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # a user's file: OSError, RuntimeError (not a zip), UnpicklingError, EOFError, ...
        reason = (f"not a file of tensors torch loads with weights_only=True ({type(exc).__name__})"
                  if "weights_only" in str(exc) else str(exc).splitlines()[0])
        raise HwsimError(f"cannot read masks from checkpoint {checkpoint!r}: {reason}") from None
    trained = state.get("config") if isinstance(state, dict) else None
    if isinstance(trained, dict):  # an hwsim checkpoint says what it was trained as (another model: see below)
        _check_trained_as(checkpoint, trained, model.hwsim_info)
    weights = state.get("model", state) if isinstance(state, dict) else None
    masks = {k: v for k, v in (weights or {}).items() if k.endswith("weight_mask")}
    own = {k for k in model.state_dict() if k.endswith("weight_mask")}
    if set(masks) != own:
        raise HwsimError(f"checkpoint {checkpoint!r} holds {len(masks)} weight masks, the model has {len(own)}; "
                         "it was not trained as this model and variant")
    model.load_state_dict(masks, strict=False)


def _check_trained_as(checkpoint: str, trained: dict, info: dict) -> None:
    """Refuse masks trained as another variant, or for another input (dataset geometry), than the network
    they are costed on: the mask names can match while the network, and so its cost, differs."""
    from hwsim.train.data import DATA_SOURCES

    if trained.get("variant", info["variant"]) != info["variant"]:
        raise HwsimError(f"checkpoint {checkpoint!r} holds the masks of a {trained['variant']!r} run; cost it as "
                         f"--variant {trained['variant']}, not {info['variant']}")
    dataset = trained.get("dataset")
    source = DATA_SOURCES.get(dataset)
    built_for = source.model_dataset if source is not None else dataset
    if dataset is not None and built_for != info["dataset"]:
        raise HwsimError(f"checkpoint {checkpoint!r} was trained on {dataset} (a {built_for} network), not costed "
                         f"as {info['dataset']}: pass --dataset {built_for}")


def plain_shapes(trace: Trace) -> list[LayerShape]:
    """The traced layers as the plain dense network would run them (Eq. 7, all channels, no masks)."""
    return [LayerShape(name=r.name, kind=r.kind, k=r.k, kh=r.kh, kw=r.kw, kd=r.kd, c_in=r.c_in, c_out=r.c_out,
                       d_out=r.d_out, h_out=r.h_out, w_out=r.w_out, groups=r.groups,
                       formula="matmul" if r.kind == "matmul" else "eq7") for r in trace.layers]


#: Inputs of more pixels than this are traced on the meta device, where activations take no memory, so that
#: peak memory does not grow with the input (ResNet34 at 512x512: 5.6 GB with real tensors, 0.4 GB on meta).
#: Below it real tensors are cheaper: the first meta op of a process costs about 1.6 s of imports.
META_PIXELS = 128 * 128


def trace_batch1(model, input_size: tuple[int, int, int]) -> Trace:
    """:func:`hwsim.trace.trace_model` on one intra-op thread (a batch-1 trace only loses to a second thread
    on a loaded machine), on the meta device for large inputs (real tensors if the model cannot run there)."""
    import torch

    from hwsim.trace import trace_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if math.prod(input_size[1:]) > META_PIXELS:
            try:
                return trace_model(model, input_size, device="meta")
            except (HwsimError, NotImplementedError):  # data-dependent ops (.item(), nonzero) need real data
                pass
        return trace_model(model, input_size)
    finally:
        torch.set_num_threads(threads)


def analyze(setting: ModelSetting, hw: HardwareConfig | None = None, *, include_bn: bool = False,
            build: Callable[[ModelSetting], Any] = build_model) -> Analysis:
    """Trace ``setting`` once and compute its counts, delay and plain-network delay under ``hw``.

    ``build``: how the model is made (default :func:`build_model`; :func:`compare` shares builds)."""
    from hwsim.count import count

    hw = hw or get_preset("asic65")
    model = build(setting)
    input_size = setting.resolved_input_size()
    trace = trace_batch1(model, input_size)
    counts = count(model, trace, hw, include_bn=include_bn)
    return Analysis(setting, hw, input_size, trace, counts, model_delay(trace.shapes(), hw),
                    model_delay(plain_shapes(trace), hw))


@dataclass(frozen=True)
class CostSummary:
    """One row of cost: what the report joins with accuracy."""

    params: int  # active parameters (see hwsim.count)
    nonzero_params: int
    memory_bytes: int  # weight params x b_w / 8, BN and alpha excluded
    macs: int  # conv + linear MACs
    delay_ns: float
    base_delay_ns: float  # the same network plain (Eq. 7) and dense, at the same width
    norm_delay: float  # delay_ns / base_delay_ns
    conv_norm_delay_min: float  # per conditional conv t_V / t (1.0 when none)
    conv_norm_delay_mean: float
    conv_norm_delay_max: float


def summarize(analysis: Analysis) -> CostSummary:
    stats = analysis.normalized
    counts = analysis.counts
    return CostSummary(
        params=counts.params.active,
        nonzero_params=counts.params.nonzero,
        memory_bytes=counts.memory_bytes,
        macs=counts.macs,
        delay_ns=analysis.delay.delay_ns,
        base_delay_ns=analysis.base_delay.delay_ns,
        norm_delay=analysis.norm_delay,
        conv_norm_delay_min=stats.min,
        conv_norm_delay_mean=stats.mean,
        conv_norm_delay_max=stats.max,
    )


def model_cost(model: str, variant: str = "base", *, dataset: str = "cifar10", film_dim: int | None = None,
               bn: str | None = None, width: float | None = None, density: float | None = None,
               hw: HardwareConfig | None = None, widths: Sequence[float] | None = None,
               input_size: tuple[int, ...] | None = None, masks: str | None = None) -> CostSummary:
    """Cost of ``model`` as ``variant`` at a knob setting under ``hw`` (default ``asic65``).

    Options the variant does not use are refused (SPEC 4.1), never ignored: ``width`` and ``widths`` on a
    variant that is not slimmable, ``density`` on one without masks, ``film_dim`` without FiLM, ``bn`` on
    ``base``. Left out, they take the cost commands' defaults (widest width of ``widths`` = (0.5, 1.0),
    density 1, FiLM d = 1, single BN). ``masks``: a training checkpoint whose pruning masks to cost (pruned
    variants), see :func:`load_masks`.
    """
    from hwsim.variants import check_options
    from models import get_variant

    given = {"width": width, "widths": widths, "density": density, "film_dim": film_dim, "bn": bn}
    check_options(variant, {name: f"{name}=" for name, value in given.items() if value is not None})
    setting = ModelSetting(model, variant, dataset, input_size, COST_FILM_DIM if film_dim is None else film_dim,
                           bn or COST_BN, tuple(widths) if widths is not None else (0.5, 1.0),
                           width if get_variant(variant).slim else None, 1.0 if density is None else density,
                           masks=masks)
    return summarize(analyze(setting, hw))


class SharedBuilds:
    """Models for a run of settings of one network, each built once per variant family.

    Pruned variants that differ only in how their masks are ranked (floats-i and floats-c: the same noisy
    masked network, the same seeded weights) share one build: the next one re-prunes it with its own
    granularity, which is what a fresh build would do after drawing the same weights again. The other
    variants have networks of their own and are built as :func:`build_model` builds them (unpruned zoo
    variants without drawing weights). Only the last pruned build is kept.
    """

    def __init__(self) -> None:
        self._kept: tuple[tuple, Any] | None = None

    def __call__(self, setting: ModelSetting):
        from models import get_variant, prune_

        record = get_variant(setting.variant)
        if not record.masked or setting.masks is not None:
            return build_model(setting)
        family = (dataclasses.replace(setting, variant=""), record.noise, record.film, record.slim)
        if self._kept is not None and self._kept[0] == family:
            model = self._kept[1]
            prune_(model, setting.density, record.granularity)
            model.hwsim_info.update(variant=setting.variant, granularity=record.granularity)
            return model
        model = build_model(setting)
        self._kept = (family, model)
        return model


def compare(setting: ModelSetting, variants: Sequence[str], hw: HardwareConfig | None = None,
            *, include_bn: bool = False, only_applicable: bool = False,
            using=None, left_out: dict[str, str] | None = None) -> list[tuple[ModelSetting, Analysis]]:
    """Analyse every variant of ``setting.model`` at the same knob setting (width and density apply to the
    variants they mean something for). ``only_applicable``: leave out the variants the model refuses
    (:class:`~hwsim.variants.VariantNotApplicable`, e.g. ``oat`` on a model without BN, or any
    :class:`HwsimError` building or tracing that variant) instead of failing the whole comparison;
    ``left_out`` (a dict) then receives each such variant with the model's reason. ``using``: the analyse
    function (default :func:`analyze`; the CLI passes the cached one)."""
    from hwsim.variants import get_variant

    results = []
    build = SharedBuilds()
    for variant in variants:
        record = get_variant(variant)
        one = dataclasses.replace(setting, variant=variant, width=setting.width if record.slim else None,
                                  density=setting.density if record.masked else 1.0)
        try:
            results.append((one, (using or analyze)(one, hw, include_bn=include_bn, build=build)))
        except HwsimError as exc:  # VariantNotApplicable, or a refusal while tracing the transformed model
            if not only_applicable:
                raise
            if left_out is not None:
                left_out[variant] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return results
