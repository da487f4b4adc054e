"""From a recorder's raw ops to immutable records: FiLM ownership, masks, conditioning, data-flow facts."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from hwsim.delay import film_weights
from hwsim.trace.modules import ModuleStack, film_channels, is_noise_conditioned
from hwsim.trace.ops import OP_CATEGORIES
from hwsim.trace.recorder import Recorder
from hwsim.trace.records import DataFlow, FilmRecord, LayerRecord, Trace


def _mask_channels(mask: torch.Tensor, transposed: bool = False) -> tuple[int, int | None, int | None]:
    """(nonzero weights, input channels kept, output channels kept) of a weight mask; a channel count is
    None where the mask is not constant over each channel of that axis (irregular zeros)."""
    nnz = int(torch.count_nonzero(mask))
    c_out_dim, c_in_dim = (1, 0) if transposed else (0, 1)
    if mask.dim() < 2:
        return nnz, None, None
    if nnz == mask.numel() or nnz == 0:
        keep = nnz > 0
        return nnz, mask.shape[c_in_dim] * keep, mask.shape[c_out_dim] * keep
    return nnz, _structured(mask, c_in_dim), _structured(mask, c_out_dim)


def _pruned_channels(masks: dict[int, tuple], raw_layers: list[dict]) -> dict[int, tuple[int, int, int]]:
    """index -> (nnz, effective C_i, effective C_o) of every masked layer (SPEC 5.2).

    Only channel pruning shrinks channels: where every partly zero mask of the model is constant over each
    input channel (``mask[:, c]`` all zero or all one, as FLOATS-c and ``prune.ln_structured(dim=1)`` make
    it) or over each output channel (``dim=0``), the zero channels are not computed, and a layer whose mask
    is all zero is not computed at all. Otherwise the model's pruning is irregular and never changes
    MACs, positions or channels, even where zeros happen to empty a whole channel or a whole layer: they
    are computed (their count is the ``nnz`` of zero skipping and bitmap storage). One granularity per
    model for emptied layers: an irregular mask that empties a layer cannot be told from a channel mask by its
    own zeros. A partly zero mask is read alone; channels of one weight each (``mask[:, c]`` of a 1 x 1 conv
    with one output) are never read as channel pruning."""
    partial = [v for v in masks.values() if 0 < v[0] < v[3]]
    channel = all(kin is not None or kout is not None for _, kin, kout, _ in partial)
    result = {}
    for index, (nnz, kin, kout, numel) in masks.items():
        raw = raw_layers[index]
        if nnz == 0 and not channel:  # an emptied layer in an irregularly pruned model: computed
            kin = kout = None
        result[index] = (nnz, raw["c_in"] if kin is None else kin, raw["c_out"] if kout is None else kout)
    return result


def _structured(mask: torch.Tensor, dim: int) -> int | None:
    """How many slices along ``dim`` the mask keeps, when each slice is all zero or all nonzero (else None)."""
    per = mask.movedim(dim, 0).reshape(mask.shape[dim], -1) != 0
    if per.shape[1] < 2:  # one weight per channel: its zeros say nothing about the granularity
        return None
    full, empty = per.all(dim=1), ~per.any(dim=1)
    if not bool((full | empty).all()):
        return None
    return int(full.sum())


def _mask_slice(module: nn.Module | None, shape: torch.Size) -> torch.Tensor | None:
    mask = getattr(module, "weight_mask", None)
    if not isinstance(mask, torch.Tensor) or mask.dim() != len(shape):
        return None
    return mask[tuple(slice(0, n) for n in shape)]


def film_owners(tracker: ModuleStack, recorder: Recorder) -> dict[int, int]:
    """id(FiLM) -> index of the layer that owns it: the one that last wrote the tensor entering the FiLM,
    following the deepest chain of weight layers through adds (so a shortcut conv never owns one)."""
    return {id(module): recorder.origin(tensor)[0] if tensor is not None else -1
            for module, tensor in tracker.films_seen}


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


def _film_weights(film: nn.Module) -> int:
    """Eq. 9's F of one FiLM at its active channels: 2 d C_a + 4 C_a^2."""
    return film_weights(int(film.film_dim), film_channels(film))


def _geometry(raw: dict) -> dict:
    """Kernel and positions folded to (kd, kh, kw) and (d_out, h_out, w_out), with the per-axis tuples."""
    if raw["kind"] == "matmul":  # positions (batch, N)
        batch, n = raw["positions"]
        return {"k": 1, "stride": 1, "h_out": n, "w_out": batch}
    if raw["kind"] == "linear":
        return {"k": 1, "stride": 1, "h_out": raw["positions"][0], "w_out": 1}
    kernel, positions = tuple(raw["kernel"]), tuple(raw["positions"])
    kd, kh, kw = ((1, 1, 1) + kernel)[-3:]
    d_out, h_out, w_out = ((1, 1, 1) + positions)[-3:]
    strides = tuple(raw["strides"])
    return {"k": kh if kd == 1 and kh == kw else 0, "kh": kh, "kw": kw, "kd": kd,
            "stride": strides[0] if strides and len(set(strides)) == 1 else 0,
            "d_out": d_out, "h_out": h_out, "w_out": w_out, "kernel": kernel, "strides": strides,
            "padding": tuple(raw["padding"]), "dilation": tuple(raw["dilation"]), "in_size": tuple(raw["in_size"]),
            "out_size": tuple(raw["out_size"]), "transposed": bool(raw["transposed"])}


def build_trace(tracker: ModuleStack, recorder: Recorder, input_size: tuple[int, ...], flow: DataFlow) -> Trace:
    owners = film_owners(tracker, recorder)
    films_of: dict[int, list[nn.Module]] = {}
    film_records = []
    for film, _ in tracker.films_seen:
        owner_index = owners[id(film)]
        owner_name = tracker.name(recorder.layers[owner_index]["module"]) if owner_index >= 0 else None
        if owner_index >= 0:  # several FiLMs fed by one layer (dense concatenations) add their F (SPEC 5.2)
            films_of.setdefault(owner_index, []).append(film)
        own = recorder.film_ops[id(film)]
        film_records.append(FilmRecord(tracker.name(film), int(film.film_dim), film_channels(film),
                                       sum(p.numel() for p in film.parameters()), owner_name,
                                       int(own["mlp_macs"]), int(own["affine"])))

    masks = {}
    for index, raw in enumerate(recorder.layers):
        mask = _mask_slice(raw["module"], raw["weight"]) if raw["kind"] != "matmul" else None
        if mask is not None:
            masks[index] = (*_mask_channels(mask, raw.get("transposed", False)), mask.numel())
    pruned = _pruned_channels(masks, recorder.layers)

    layers, noise_convs, seen_names = [], [], Counter()
    noise_adds = 0
    for index, raw in enumerate(recorder.layers):
        module = raw["module"]
        name = tracker.name(module)
        seen_names[name] += 1
        if seen_names[name] > 1:  # a module called twice (weight sharing, several products): keep both, apart
            name = f"{name}#{seen_names[name]}"
        geometry = _geometry(raw)
        if raw["kind"] == "matmul":
            positions = raw["c_in"] * raw["c_out"]
            layers.append(LayerRecord(
                name=name, kind="matmul", groups=1, c_in=raw["c_in"], c_out=raw["c_out"], params=0,
                nonzero_params=0, weight_nonzero=positions, c_in_eff=raw["c_in"], c_out_eff=raw["c_out"],
                **geometry))
            continue
        weight, bias = raw["weight"], raw["bias"]  # their shapes
        # Pruning is read from the masks (`weight_mask`, as models.* and torch.nn.utils.prune keep it), never
        # from zeros that happen to be in a weight: a dense layer stays dense in the delay model.
        nnz, in_nz, out_nz = pruned.get(index, (weight.numel(), raw["c_in"], raw["c_out"]))
        bias_n = bias.numel() if bias is not None else 0
        noise = raw["kind"] != "matmul" and module is not None and is_noise_conditioned(module)  # conv or linear
        films = films_of.get(index, [])
        film = films[0] if films else None
        conditioning = "film" if films else "noise" if noise else "none"
        if noise:
            noise_convs.append(name)
            noise_adds += weight.numel()
        layers.append(LayerRecord(
            name=name, kind=raw["kind"], groups=raw["groups"], c_in=raw["c_in"], c_out=raw["c_out"],
            params=weight.numel() + bias_n, nonzero_params=nnz + bias_n, weight_nonzero=nnz,
            c_in_eff=in_nz if raw["groups"] == 1 else raw["c_in"],  # (C_i / g for grouped convs: not shrunk)
            c_out_eff=out_nz, conditioning=conditioning,
            film_name="+".join(tracker.name(f) for f in films) if films else None,
            film_dim=int(film.film_dim) if film is not None else 0,
            film_channels=film_channels(film) if film is not None else 0,
            film_weights=sum(_film_weights(f) for f in films),
            masked=index in masks,
            noise_adds=weight.numel() if noise else 0,
            film_mlp_macs=sum(int(recorder.film_ops[id(f)]["mlp_macs"]) for f in films),
            film_affine_ops=sum(int(recorder.film_ops[id(f)]["affine"]) for f in films),
            params_of=tuple(raw.get("params_of", ())), weight_region=raw.get("weight_region", ""),
            bias_region=raw.get("bias_region", ""), **geometry,
        ))
    ops = {category: int(recorder.ops.get(category, 0)) for category in OP_CATEGORIES}
    ops["noise_add"] = noise_adds
    return Trace(tuple(input_size), tuple(layers), tuple(film_records), ops, dict(recorder.unsupported),
                 tuple(noise_convs), flow, dict(recorder.param_reads))
