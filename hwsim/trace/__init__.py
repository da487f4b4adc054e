"""The one adapter between PyTorch and the cost model: trace a model's forward into layer records.

:func:`trace_model` runs one forward pass of batch 1 under a ``TorchDispatchMode`` (every aten op the model
executes) with a module tracker (which module each op runs in) and returns an immutable :class:`Trace`:

* a :class:`LayerRecord` per conv / linear op with the shapes that actually ran (active width, so slimmed
  models are counted as they run), parameter and nonzero counts (masks applied), MACs, and the
  conditioning the delay model needs: ``noise`` when the conv module is marked ``noise_conditioned``,
  ``film`` when the conv owns a FiLM module (a module marked ``film_conditioning``; found from the data
  flow, never from names: a FiLM belongs to the conv that last wrote the tensor entering it, following the
  deepest chain of convs through adds, so a shortcut conv never owns one);
* a ``matmul`` :class:`LayerRecord` per product of two activations (``matmul`` / ``bmm`` / ``einsum`` and
  the two products inside ``scaled_dot_product_attention``); a linear layer over tokens runs at every
  position (``h_out`` = positions);
* element counts of the other ops by category (``--ops all``) and the conditioning ops (noise adds,
  FiLM MLP MACs, FiLM affine ops); views and shape ops are free;
* the ops it does not know, listed with their counts, never silently taken as free;
* the :class:`DataFlow` facts module surgery needs (first conv, projection-shortcut BNs, output layers).

Counters (:mod:`hwsim.count`) and the delay model (:mod:`hwsim.delay`) read only these records. The
package is split along its seams: op tables (:mod:`~hwsim.trace.ops`), records (:mod:`~hwsim.trace.records`),
markers and the module tracker (:mod:`~hwsim.trace.modules`), the dispatch-mode recorder
(:mod:`~hwsim.trace.recorder`) and record building with FiLM ownership (:mod:`~hwsim.trace.build`).

The trace runs on the model's own device with real tensors by default, but convolutions are not
computed: the recorder answers each one with a zero tensor of the output shape PyTorch would give (a test
checks these shapes against real forward passes), so a trace costs no convolution arithmetic and no
oneDNN kernel warm-up. ``device="meta"`` runs on the meta device instead (no compute; worth it for large
inputs), but the first meta op of a process imports ``torch._dynamo`` (about 2 s), more than a whole
CIFAR-size trace costs on a CPU.

Pruning is read from ``weight_mask`` buffers (kept by the FLOATS variants and by ``torch.nn.utils.prune``):
nonzero counts and the channels that survive channel pruning come from the mask, never from zeros that
happen to sit in a dense weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hwsim.errors import HwsimError
from hwsim.trace.build import build_trace, data_flow
from hwsim.trace.modules import tracking
from hwsim.trace.ops import FREE_OPS, OP_CATEGORIES, Attention, Conv, Product, elements, free, free_ops, register_op
from hwsim.trace.recorder import Recorder
from hwsim.trace.records import RECORD_KINDS, DataFlow, FilmRecord, LayerRecord, Trace

__all__ = ["FREE_OPS", "OP_CATEGORIES", "RECORD_KINDS", "Attention", "Conv", "DataFlow", "FilmRecord",
           "LayerRecord", "Product", "Trace", "elements", "free", "free_ops", "register_op", "trace_model"]


def trace_model(model: nn.Module, input_size: Sequence[int], *, device: str | None = None) -> Trace:
    """Trace one forward of ``model`` on a batch of 1 with shape ``(1, *input_size)`` (``input_size`` = C and
    one to three spatial sizes: C, L for a Conv1d model, C, H, W, or C, D, H, W).

    The model is run in eval mode (restored afterwards) under ``torch.inference_mode``, with PyTorch's fused
    transformer fast path turned off (``torch.backends.mha``): in eval mode ``nn.MultiheadAttention`` and
    ``nn.TransformerEncoderLayer`` would otherwise run as one ``aten._native_multi_head_attention`` /
    ``aten._transformer_encoder_layer_fwd`` op, whose projections and products the tracer could not see
    apart; with it off they run their reference path (the same arithmetic, op by op), so an encoder block
    counts the same in train and eval mode. Knobs (lambda, width) are whatever is set on the model: set them
    first with ``models.set_knobs``. A forward that fails raises :class:`HwsimError` naming the module that
    was running.
    """
    input_size = tuple(int(v) for v in input_size)
    if not 2 <= len(input_size) <= 4 or min(input_size) < 1:
        raise HwsimError(f"input size must be C and one to three spatial sizes (C,L / C,H,W / C,D,H,W), "
                         f"positive, got {input_size}")
    was_training = model.training
    fastpath = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with tracking(model) as tracker, torch.inference_mode():
            try:
                if device == "meta":
                    from torch.func import functional_call

                    state = {k: torch.empty_like(v, device="meta")
                             for k, v in (*model.named_parameters(), *model.named_buffers())}
                    names = dict(model.named_parameters())
                    recorder = Recorder(tracker, {id(v): k for k, v in state.items() if k in names})
                    x = torch.zeros((1, *input_size), device="meta")
                    recorder.mark_input(x)
                    with recorder:
                        out = functional_call(model, state, (x,))
                else:
                    recorder = Recorder(tracker, {id(p): name for name, p in model.named_parameters()})
                    first = next(iter(model.parameters()), None)
                    x = torch.rand((1, *input_size), device=first.device if first is not None else "cpu")
                    recorder.mark_input(x)
                    with recorder:
                        out = model(x)
            except HwsimError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                where = tracker.name(tracker.current()) if tracker.stack else ""
                where = where or f"{type(model).__name__}.forward"  # the root module's name is ''
                raise HwsimError(f"tracing {type(model).__name__} on input {input_size} failed in layer "
                                 f"{where!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
            return build_trace(tracker, recorder, input_size, data_flow(tracker, recorder, out))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(was_training)
