"""From a recorder's raw ops to immutable records: FiLM ownership, masks, conditioning, data-flow facts."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from hwsim.errors import HwsimError
from hwsim.trace.modules import ModuleStack, film_channels, is_noise_conditioned
from hwsim.trace.ops import OP_CATEGORIES
from hwsim.trace.recorder import Recorder
from hwsim.trace.records import DataFlow, FilmRecord, LayerRecord, Trace


def _nonzero_channels(weight: torch.Tensor) -> tuple[int, int, int]:
    """(nonzero weights, input channels with a nonzero weight, output channels with a nonzero weight)."""
    nnz = int(torch.count_nonzero(weight))
    if nnz == weight.numel():  # dense: every channel has a nonzero weight (the common case, one pass)
        return nnz, weight.shape[1] if weight.dim() > 1 else 1, weight.shape[0]
    nz = weight != 0
    dims_out = tuple(range(1, weight.dim()))
    dims_in = (0, *range(2, weight.dim()))
    return nnz, int(nz.any(dim=dims_in).sum()), int(nz.any(dim=dims_out).sum())


def _mask_slice(module: nn.Module | None, shape: torch.Size) -> torch.Tensor | None:
    mask = getattr(module, "weight_mask", None)
    if not isinstance(mask, torch.Tensor) or mask.dim() != len(shape):
        return None
    return mask[tuple(slice(0, n) for n in shape)]


def film_owners(tracker: ModuleStack, recorder: Recorder) -> dict[int, int]:
    """id(FiLM) -> index of the layer that owns it: the one that last wrote the tensor entering the FiLM,
    following the deepest chain of weight layers through adds (so a shortcut conv never owns one)."""
    return {id(module): recorder.origin(tensor)[0] for module, tensor in tracker.films_seen}


def data_flow(tracker: ModuleStack, recorder: Recorder, outputs) -> DataFlow:
    """The :class:`DataFlow` facts of a finished forward whose result was ``outputs``."""
    layer_name = lambda i: tracker.name(recorder.layers[i]["module"])  # noqa: E731
    writers = {recorder.origin(t)[0] for t in tree_leaves(outputs) if isinstance(t, torch.Tensor)}
    return DataFlow(
        first_conv=layer_name(recorder.first_conv) if recorder.first_conv is not None else None,
        shortcut_norms=tuple(tracker.name(m) for m in recorder.shortcut_norms),
        output_layers=tuple(sorted(layer_name(i) for i in writers if i >= 0)),
        computed_weights=tuple(tracker.name(m) for m in recorder.computed_weights),
    )


def build_trace(tracker: ModuleStack, recorder: Recorder, input_size: tuple[int, ...], flow: DataFlow) -> Trace:
    owners = film_owners(tracker, recorder)
    film_of: dict[int, nn.Module] = {}
    film_records = []
    for film, _ in tracker.films_seen:
        owner_index = owners[id(film)]
        owner_name = tracker.name(recorder.layers[owner_index]["module"]) if owner_index >= 0 else None
        if owner_index >= 0:
            if owner_index in film_of:
                raise HwsimError(f"two FiLM modules ({tracker.name(film_of[owner_index])}, {tracker.name(film)}) "
                                 f"belong to the same layer {owner_name}; Eq. 9 charges one FiLM per conv")
            film_of[owner_index] = film
        own = recorder.film_ops[id(film)]
        film_records.append(FilmRecord(tracker.name(film), int(film.film_dim), film_channels(film),
                                       sum(p.numel() for p in film.parameters()), owner_name,
                                       int(own["mlp_macs"]), int(own["affine"])))

    layers, noise_convs, seen_names = [], [], Counter()
    noise_adds = 0
    for index, raw in enumerate(recorder.layers):
        module = raw["module"]
        name = tracker.name(module)
        seen_names[name] += 1
        if seen_names[name] > 1:  # a module called twice (weight sharing, several products): keep both, apart
            name = f"{name}#{seen_names[name]}"
        if raw["kind"] == "matmul":
            positions = raw["c_in"] * raw["c_out"]
            layers.append(LayerRecord(
                name=name, kind="matmul", k=1, stride=1, groups=1, c_in=raw["c_in"], c_out=raw["c_out"],
                h_out=raw["h_out"], w_out=raw["w_out"], params=0, nonzero_params=0, weight_nonzero=positions,
                c_in_eff=raw["c_in"], c_out_eff=raw["c_out"]))
            continue
        weight, bias = raw["weight"], raw["bias"]  # their shapes
        # Pruning is read from the masks (`weight_mask`, as models.* and torch.nn.utils.prune keep it), never
        # from zeros that happen to be in a weight: a dense layer stays dense in the delay model.
        mask = _mask_slice(module, weight)
        if mask is not None:
            nnz, in_nz, out_nz = _nonzero_channels(mask)
        else:
            nnz, in_nz, out_nz = weight.numel(), raw["c_in"], raw["c_out"]
        bias_n = bias.numel() if bias is not None else 0
        noise = raw["kind"] != "matmul" and module is not None and is_noise_conditioned(module)  # conv or linear
        film = film_of.get(index)
        conditioning = "film" if film is not None else "noise" if noise else "none"
        if noise:
            noise_convs.append(name)
            noise_adds += weight.numel()
        layers.append(LayerRecord(
            name=name, kind=raw["kind"], k=raw["k"], stride=raw["stride"], groups=raw["groups"],
            c_in=raw["c_in"], c_out=raw["c_out"], h_out=raw["h_out"], w_out=raw["w_out"],
            params=weight.numel() + bias_n, nonzero_params=nnz + bias_n, weight_nonzero=nnz,
            c_in_eff=in_nz if raw["groups"] == 1 else raw["c_in"],  # (C_i / g for grouped convs: not shrunk)
            c_out_eff=out_nz, conditioning=conditioning,
            film_name=tracker.name(film) if film is not None else None,
            film_dim=int(film.film_dim) if film is not None else 0,
            film_channels=film_channels(film) if film is not None else 0,
            masked=mask is not None,
            noise_adds=weight.numel() if noise else 0,
            film_mlp_macs=int(recorder.film_ops[id(film)]["mlp_macs"]) if film is not None else 0,
            film_affine_ops=int(recorder.film_ops[id(film)]["affine"]) if film is not None else 0,
        ))
    ops = {category: int(recorder.ops.get(category, 0)) for category in OP_CATEGORIES}
    ops["noise_add"] = noise_adds
    return Trace(tuple(input_size), tuple(layers), tuple(film_records), ops, dict(recorder.unsupported),
                 tuple(noise_convs), flow)
