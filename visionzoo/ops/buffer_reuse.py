"""Inference without a second buffer: a layer that follows a convolution or a linear layer may write its
result into that layer's fresh output instead of allocating a tensor of the same size.

On the CPU, under glibc malloc's default settings, much of a forward pass's activation memory is handed back
to the system between calls and page-faulted in again on the next one; one allocation less per layer usually
means fewer of those faults. Measured in one process against the same model without reuse, in eval mode without
autograd: ResNet-50 0.87-0.93x the time at batch 8 (BatchNorm), ViT-B/16 0.91-0.94x, ConvNeXt-T 0.86-0.89x,
Swin-T 0.96x (GELU). With malloc told to keep freed memory the kernels' time is what is left, and that is
within about 2% either way: the gain is in the page faults, and their count depends on the order of
allocations, so it is not a gain for every model (``benchmarks/eager.py`` counts them per call). The results
are bit-identical: the same kernels run, only the destination changes.

It is done only where nothing can observe the difference:

- the layer is a plain ``nn.BatchNorm2d`` in eval mode with running statistics, a plain ``nn.GELU``, or a
  layer with a ``forward_in_place(fresh)`` method (such as ``SqueezeExcitation``) defined by the same class
  as its ``forward`` (a subclass that overrides ``forward`` alone keeps it);
- autograd is off (``torch.no_grad`` or ``torch.inference_mode``), the tensor is an ordinary CPU tensor, and
  neither TorchScript tracing nor ``torch.compile`` is recording;
- no forward hook could have kept the tensor: none on the producer or inside it, none on the layer, none
  global;
- the caller guarantees that the tensor is held by nobody else (see :func:`apply_reusing`).

Everywhere else the layer is simply called.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module

__all__ = ["ReusingSequential", "add_reusing", "apply_reusing", "pair_forward"]

# Layers whose output is always a new tensor that nobody else holds once they return it. A container whose class
# sets ``returns_fresh_output = True`` (a Conv-Norm-Activation block) counts as one when it starts with one.
_PRODUCERS = (nn.Conv2d, nn.Linear)


def _is_producer(module: nn.Module | None) -> bool:
    if isinstance(module, _PRODUCERS):
        return True
    if not getattr(type(module), "returns_fresh_output", False):
        return False
    first = next(iter(module._modules.values()), None)  # type: ignore[union-attr]
    return isinstance(first, _PRODUCERS)


_is_compiling: Callable[[], bool] = getattr(torch.compiler, "is_compiling", None) or (lambda: False)


def _unobserved(layer: nn.Module, producer: nn.Module | None) -> bool:
    """No forward hook could have kept ``fresh`` or could see it change, and no tracer or compiler is recording."""
    if layer._forward_hooks or layer._forward_pre_hooks or _module._global_forward_pre_hooks:
        return False
    if _is_compiling() or torch.jit.is_tracing():
        return False
    return not _output_observed(producer)


@functools.cache
def _has_in_place_forward(kind: type) -> bool:
    """Whether ``kind.forward_in_place`` computes what ``kind.forward`` does: the nearest class of its MRO that
    defines either defines both (the quantizable Squeeze-Excitation overrides ``forward`` only)."""
    for klass in kind.__mro__:
        defines = [name in vars(klass) for name in ("forward", "forward_in_place")]
        if any(defines):
            return all(defines)
    return False


def _output_observed(producer: nn.Module | None) -> bool:
    """Whether a forward hook may hold what ``producer`` returned: a global one, or one on ``producer`` or inside
    it (a container's output may be the very tensor one of its layers returned, as in-place activations do)."""
    return bool(_module._global_forward_hooks) or (producer is not None and _hooked_inside(producer))


def _hooked_inside(module: nn.Module) -> bool:
    if module._forward_hooks:
        return True
    for child in module._modules.values():
        if child is not None and _hooked_inside(child):
            return True
    return False


def _batch_norm_into(norm: nn.BatchNorm2d, x: Tensor) -> Tensor | None:
    """Eval-mode batch norm written into ``x``, or None where only ``norm(x)`` itself may run."""
    mean, var = norm.running_mean, norm.running_var
    if norm.training or mean is None or var is None or x.dim() != 4 or x.dtype != var.dtype:
        return None  # batch statistics, or an input that norm(x) rejects or converts: its own call decides
    empty = x.new_empty(0)  # the kernel's saved statistics, left empty in eval mode
    torch.native_batch_norm(x, norm.weight, norm.bias, mean, var, False, 0.0, norm.eps, out=(x, empty, empty))
    return x


def apply_reusing(layer: nn.Module, fresh: Tensor, producer: nn.Module | None = None) -> Tensor:
    """``layer(fresh)``, computed in ``fresh``'s memory where that is safe (see the module docstring).

    Args:
        layer: any module; only a plain eval-mode ``nn.BatchNorm2d``, an ``nn.GELU`` or a layer whose class
            defines ``forward_in_place`` next to its ``forward`` is ever run in place.
        fresh: a tensor that only the caller holds, such as the output a convolution just returned or the
            result of ``torch.cat``; never an argument that the caller received.
        producer: the module that returned ``fresh``, if any: a forward hook on it may have kept the tensor,
            which rules reuse out.
    """
    if torch.is_grad_enabled() or type(fresh) is not Tensor or not fresh.is_cpu:
        return layer(fresh)
    kind = type(layer)
    if kind is nn.BatchNorm2d:
        if _unobserved(layer, producer):
            out = _batch_norm_into(layer, fresh)  # type: ignore[arg-type]
            if out is not None:
                return out
    elif kind is nn.GELU:
        if fresh.is_floating_point() and _unobserved(layer, producer):
            return torch.ops.aten.gelu_(fresh, approximate=layer.approximate)
    elif hasattr(kind, "forward_in_place") and _unobserved(layer, producer) and _has_in_place_forward(kind):
        # The cached check comes after _unobserved, which is False while torch.compile traces this function.
        return layer.forward_in_place(fresh)
    return layer(fresh)


def add_reusing(fresh: Tensor, other: Tensor, producer: nn.Module) -> Tensor:
    """``fresh + other``, added into ``fresh`` (which ``producer`` just returned) unless a forward hook may hold it.

    Also with autograd on: the sum's backward needs neither input, and should ``producer``'s last operation
    have saved its output for its own backward, autograd refuses the in-place add with an error (RegNet's branch
    ends in a BatchNorm, which saves its input)."""
    if type(fresh) is not Tensor or _output_observed(producer):
        return fresh + other
    fresh += other
    return fresh


def pair_forward(first: nn.Module, second: nn.Module, x: Tensor) -> Tensor:
    """``second(first(x))``, with ``second`` writing into ``first``'s output when ``first`` is a convolution, a
    linear layer or a Conv-Norm-Activation block (whose output nothing else holds) and the conditions of
    :func:`apply_reusing` hold."""
    out = first(x)
    return apply_reusing(second, out, first) if _is_producer(first) else second(out)


class ReusingSequential(nn.Sequential):
    """``nn.Sequential`` whose layers after a ``Conv2d``, a ``Linear`` or a Conv-Norm-Activation block may write
    into its output (see :func:`apply_reusing`). Same children, same state_dict keys, same results."""

    def forward(self, input: Tensor) -> Tensor:
        previous: nn.Module | None = None
        for layer in self:
            input = apply_reusing(layer, input, previous) if _is_producer(previous) else layer(input)
            previous = layer
        return input
