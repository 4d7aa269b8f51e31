"""Inference-only rewrites of a model: BatchNorm folding, channels-last layout, bfloat16 and ``torch.compile``.

``optimize_for_inference`` is the public entry point (``visionzoo.models`` re-exports it). Everything here works
on the module tree the model already has: a BatchNorm that normalises a convolution's only output becomes part
of that convolution, and the BatchNorm is replaced by ``nn.Identity``, so the model keeps its class, its
attributes and its forward. It applies to any ``nn.Module``, not only to the models of this package.
``torch._dynamo`` is imported only when compiling, so importing ``visionzoo.models`` stays cheap.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from . import allocator
from .ops.misc import FrozenBatchNorm2d

__all__ = [
    "optimize_for_inference",
    "InferenceModel",
    "fold_conv_bn",
    "route_linear_through_onednn",
    "has_native_bfloat16",
    "compiled_dir",
]

# A network with this many 2-D convolutions is convolution-bound enough for the NHWC layout (what oneDNN and
# cuDNN prefer) to pay; transformers with a single patch-embedding convolution stay NCHW.
_CHANNELS_LAST_MIN_CONVS = 8
# How close the optimised model's outputs must stay to the eager model's (checked on ``example_input``).
_ATOL = 1e-3
# Timed on ``example_input``, the compiled model is dropped for the folded eager one only when that takes at most
# this share of its time: near a tie, timing noise would decide.
_EAGER_IF_FASTER_THAN = 0.95
# In bfloat16, the share of positions of a dense output (segmentation logits, N x C x H x W) whose top-1 class may
# differ from float32's: pixels on a boundary between two classes are near-ties that rounding flips.
_DENSE_TOP1_TOLERANCE = 0.01
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# CPU features (names as ``torch.cpu.get_capabilities()`` and /proc/cpuinfo spell them) that multiply bfloat16
# matrices natively: Intel AMX, and the AVX-512 bf16 dot-product instructions (Intel Cooper Lake on, AMD Zen 4 on).
_BF16_CPU_FEATURES = ("amx_bf16", "avx512_bf16")


class _LeafTracer(torch.fx.Tracer):
    """A tracer that also keeps ``FrozenBatchNorm2d`` as one call, so it can be folded like ``BatchNorm2d``."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, FrozenBatchNorm2d) or super().is_leaf_module(m, module_qualified_name)


def _is_plain_conv2d(module: nn.Module) -> bool:
    # Subclasses that change forward (quantised, weight-standardised, ...) compute something else.
    return isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward


def _is_foldable_norm(module: nn.Module) -> bool:
    if isinstance(module, FrozenBatchNorm2d):
        return True
    # Without running statistics a BatchNorm normalises with batch statistics even in eval mode.
    return (
        type(module) is nn.BatchNorm2d
        and module.track_running_stats
        and module.running_mean is not None
        and module.running_var is not None
    )


def _fold_into(conv: nn.Conv2d, norm: nn.Module) -> None:
    """Rewrite ``conv`` in place so that it computes ``norm(conv(x))`` for the norm's eval-mode statistics."""
    if norm.weight is None:  # affine=False
        gamma = torch.ones_like(norm.running_var)
        beta = torch.zeros_like(norm.running_mean)
    else:
        gamma, beta = norm.weight, norm.bias
    with torch.no_grad():
        scale = gamma / torch.sqrt(norm.running_var + norm.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
        weight = conv.weight * scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype)
        new_bias = ((bias - norm.running_mean) * scale + beta).to(conv.weight.dtype)
    conv.weight = nn.Parameter(weight.detach(), requires_grad=False)
    conv.bias = nn.Parameter(new_bias.detach(), requires_grad=False)


def _replace(root: nn.Module, qualified_name: str, new: nn.Module) -> None:
    parent_name, _, leaf = qualified_name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, new)


def _pairs_from_graph(root: nn.Module, graph: torch.fx.Graph) -> list[tuple[str, str]]:
    """(conv, norm) names where the traced graph shows the norm as the conv's one and only consumer."""
    calls: dict[int, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            key = id(root.get_submodule(node.target))
            calls[key] = calls.get(key, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if not isinstance(source, torch.fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        norm, conv = root.get_submodule(node.target), root.get_submodule(source.target)
        if (
            _is_foldable_norm(norm)
            and _is_plain_conv2d(conv)
            and conv.out_channels == norm.running_mean.numel()
            and calls[id(norm)] == calls[id(conv)] == 1
        ):
            pairs.append((source.target, node.target))
    return pairs


def _pairs_in_sequential(module: nn.Sequential, prefix: str) -> list[tuple[str, str]]:
    # In an unmodified Sequential each child's output feeds only the next child.
    children = list(module.named_children())
    return [
        (f"{prefix}{a_name}", f"{prefix}{b_name}")
        for (a_name, a), (b_name, b) in zip(children, children[1:])
        if _is_plain_conv2d(a) and _is_foldable_norm(b) and a.out_channels == b.running_mean.numel()
    ]


def _find_pairs(module: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """Trace ``module`` to find foldable pairs; where tracing fails, look inside its children instead."""
    try:
        with torch.no_grad():  # tracing with autograd off skips gradient-checkpointing branches (DenseNet)
            graph = _LeafTracer().trace(module)
    except Exception:  # data-dependent control flow and friends: fall back to the structure
        pairs = []
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            pairs += _pairs_in_sequential(module, prefix)
        for name, child in module.named_children():
            pairs += _find_pairs(child, f"{prefix}{name}.")
        return pairs
    return [(f"{prefix}{c}", f"{prefix}{n}") for c, n in _pairs_from_graph(module, graph)]


def fold_conv_bn(model: nn.Module) -> int:
    """Fold every BatchNorm that only normalises a ``Conv2d``'s output into that convolution, in place.

    The convolution's weight and bias absorb the BatchNorm's eval-mode affine transform and the BatchNorm is
    replaced by ``nn.Identity``. Pairs are found by tracing the model with ``torch.fx`` (so named pairs such as
    ``conv1``/``bn1`` in a residual block are found as well as ``Conv2dNormActivation``); parts that cannot be
    traced are searched child by child, and consecutive children of plain ``nn.Sequential`` containers are
    folded without tracing.

    Returns:
        The number of folded pairs.

    Raises:
        ValueError: the model is in training mode (folding uses the running statistics).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fold_conv_bn expects an nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError(
            "fold_conv_bn needs a model in eval mode (call model.eval() first): it folds the running statistics"
        )
    pairs = _find_pairs(model)
    for conv_name, norm_name in pairs:
        _fold_into(model.get_submodule(conv_name), model.get_submodule(norm_name))
        _replace(model, norm_name, nn.Identity())
    return len(pairs)


class _OneDNNLinear(nn.Linear):
    """``nn.Linear`` computed as a 1x1 convolution over a channels-last view of its input, which oneDNN runs.

    Where the BLAS library behind ``F.linear`` takes a slow code path (MKL on AMD processors reaches about half
    the machine's fp32 peak), oneDNN's GEMM is up to twice as fast; under ``torch.compile`` the convolution
    also gets pre-packed weights and fused bias. The views in and out cost nothing, and ``weight`` keeps its
    usual 2-D shape, so code that reads it directly (``nn.MultiheadAttention`` reads ``out_proj.weight``) still
    works, as does the state_dict.
    """

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> _OneDNNLinear:
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new.weight, new.bias = linear.weight, linear.bias  # shared, not copied
        return new

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        rows = input.reshape(-1, self.in_features)
        if rows.shape[0] == 0:
            return F.linear(input, self.weight, self.bias)
        # (M, K) rows seen as a (1, K, M, 1) channels-last image: the same memory, no copy.
        image = rows.view(1, rows.shape[0], 1, self.in_features).permute(0, 3, 1, 2)
        kernel = self.weight.view(self.out_features, self.in_features, 1, 1)
        out = F.conv2d(image, kernel, self.bias)
        return out.permute(0, 2, 3, 1).reshape(*input.shape[:-1], self.out_features)


# Layers that stand in for a torch.nn layer with the same interface: torch.fx feature extraction keeps each as one
# node named like the layer it replaced, so an optimised model has the plain model's node names.
DROP_IN_LAYERS: tuple[type[nn.Module], ...] = (_OneDNNLinear,)


@functools.cache
def _onednn_beats_blas() -> bool:
    """Whether oneDNN multiplies fp32 matrices clearly faster than ``F.linear`` on this CPU (measured once)."""
    if not torch.backends.mkldnn.is_available():
        return False
    a, w = torch.randn(1024, 1024), torch.randn(1024, 1024)
    image, kernel = a.view(1, 1024, 1, 1024).permute(0, 3, 1, 2), w.view(1024, 1024, 1, 1)
    calls = {"blas": lambda: F.linear(a, w), "onednn": lambda: F.conv2d(image, kernel)}
    with torch.no_grad():
        for call in calls.values():
            call()  # warm-up
        times = _timed_rounds(calls, rounds=5)
    # A clear margin, in the best and the middle round alike (one lucky round on a busy machine does not
    # decide): where both are at peak, keep the ordinary path.
    return _clearly_faster(times, "onednn", "blas", 0.8)


def _timed_rounds(
    calls: dict[str, Callable[[], Any]], rounds: int, budget_seconds: float = 0.0, max_rounds: int = 0
) -> dict[str, list[float]]:
    """Wall times of each call, round after round, each round calling every one once in turn: ``rounds``
    rounds, then more while they fit in ``budget_seconds`` (up to ``max_rounds`` in all)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    begin = time.perf_counter()
    done = 0
    while done < rounds or (done < max_rounds and time.perf_counter() - begin < budget_seconds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
        done += 1
    return times


def _clearly_faster(times: dict[str, list[float]], fast: str, slow: str, share: float) -> bool:
    """Whether ``fast`` took at most ``share`` of ``slow``'s time in its best round and in its median one."""
    return all(summary(times[fast]) <= share * summary(times[slow]) for summary in (min, statistics.median))


def _is_plain_linear(module: nn.Module) -> bool:
    """An ``nn.Linear`` computed by ``nn.Linear.forward`` (subclasses such as ``nn.MultiheadAttention``'s
    ``out_proj`` included), not one of :class:`_OneDNNLinear` or another layer with a forward of its own."""
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def route_linear_through_onednn(model: nn.Module) -> int:
    """Replace every plain ``nn.Linear`` of ``model`` (subclasses that keep its forward included) by
    :class:`_OneDNNLinear` (sharing its tensors), in place.

    Returns:
        The number of layers replaced.
    """
    names = [name for name, m in model.named_modules() if _is_plain_linear(m) and name]
    for name in names:
        _replace(model, name, _OneDNNLinear.from_linear(model.get_submodule(name)))
    return len(names)


def _prefers_channels_last(model: nn.Module) -> bool:
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) >= _CHANNELS_LAST_MIN_CONVS


def _to_channels_last(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() == 4 and value.is_floating_point():
        return value.contiguous(memory_format=torch.channels_last)
    return value


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message (compilers' messages go on for pages), empty if it has none."""
    return (str(error).strip().splitlines() or [""])[0]


def _compile_failures() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this torch build or machine cannot compile", as opposed to a bad input."""
    from torch._dynamo.exc import BackendCompilerFailed

    failures: list[type[BaseException]] = [BackendCompilerFailed]
    try:
        from torch._inductor.exc import InductorError

        failures.append(InductorError)
    except ImportError:  # older torch
        pass
    return tuple(failures)


def _compile_with_freezing(module: nn.Module, freezing: bool = True, cpp_wrapper: bool = False) -> Any:
    """``torch.compile`` with Inductor's freezing, which turns the parameters into constants (folding them
    further and pre-packing convolution and linear weights for oneDNN). Freezing applies to graphs compiled
    with autograd off, as ``InferenceModel.forward`` runs them. It is a global Inductor setting read while a
    graph compiles (on a call), and ``torch.compile(options=...)`` does not reach that point, so each call
    sets it for its own duration. ``dynamic=False`` specialises on each input shape: the fastest kernels for a
    fixed batch size. ``cpp_wrapper`` has Inductor call the graph's kernels from generated C++ rather than from
    Python, which spares the interpreter's time between them: mobilenet_v3_large at batch 8 took 28.1 ms a call
    instead of 30.3 on a 2-core Xeon, for a longer compile.
    """
    from torch._inductor import config as inductor_config

    compiled = torch.compile(module, dynamic=False)

    def run(*args: Any, **kwargs: Any) -> Any:
        # Detectors keep a data-dependent number of boxes (torch.nonzero, NMS): dynamo traces those into the
        # graph too (one graph per detector) instead of breaking it there. Other models have no such operations.
        with (
            inductor_config.patch(freezing=freezing, cpp_wrapper=cpp_wrapper),
            torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True),
        ):
            return compiled(*args, **kwargs)

    return run


def _cpu_features() -> set[str]:
    """The CPU's instruction-set features: torch's cpuinfo-based report, else the flags of /proc/cpuinfo."""
    get_capabilities = getattr(getattr(torch, "cpu", None), "get_capabilities", None)
    if get_capabilities is not None:
        try:
            return {name for name, present in get_capabilities().items() if present is True}
        except Exception:  # cpuinfo could not read this CPU
            pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def has_native_bfloat16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware, which is when ``dtype="auto"`` picks bfloat16.

    On a CPU: it has Intel AMX-BF16 or the AVX-512 BF16 instructions (``amx_bf16`` / ``avx512_bf16`` among the
    features ``torch.cpu.get_capabilities()`` reports, read with the cpuinfo library; where torch lacks that
    function, the flags line of ``/proc/cpuinfo``), and oneDNN, which runs the convolutions and matrix products,
    is available. Elsewhere bfloat16 still runs, through conversions to float32 and back, usually slower than
    float32. On CUDA: ``torch.cuda.is_bf16_supported()``. Other devices: False.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return torch.backends.mkldnn.is_available() and any(f in _cpu_features() for f in _BF16_CPU_FEATURES)


def _resolve_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    """torch.float32 or torch.bfloat16 for a ``dtype`` argument (a dtype, its name, or "auto")."""
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    if isinstance(dtype, str) and dtype == "auto":
        return torch.bfloat16 if has_native_bfloat16(device) else torch.float32
    if dtype in (torch.float32, torch.bfloat16):
        return dtype
    raise ValueError(
        f"dtype must be torch.float32, torch.bfloat16 or 'auto' (or the names 'float32', 'bfloat16'), got {dtype!r}"
    )


def _to_float32(value: Any) -> Any:
    """Floating tensors in ``value`` (nested in dicts, lists and tuples) converted to float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return type(value)((k, _to_float32(v)) for k, v in value.items())
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # named tuple (GoogLeNet, Inception outputs)
        return type(value)(*(_to_float32(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    return value


def _float32_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A forward pre-hook: a normalisation layer gets its input in float32, so it normalises in float32."""
    return tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


_NORMALISATIONS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, FrozenBatchNorm2d)


class _BFloat16(nn.Module):
    """Runs ``module`` under ``torch.autocast`` in bfloat16 and returns float32 outputs.

    Autocast runs convolutions, linear layers and matrix products in bfloat16 (with their weights converted: under
    Inductor's freezing, once, when compiling) and leaves the other operations in the precision of their inputs.
    Normalisation layers (BatchNorm left unfolded, LayerNorm, GroupNorm) get float32 inputs through forward
    pre-hooks, so they normalise in float32, and what follows them (often a residual stream) stays float32 until
    the next matrix product. Softmax in bfloat16 accumulates in float32 in PyTorch's CPU kernels and Inductor's.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.device_type = next((p.device.type for p in module.parameters()), "cpu")
        for layer in module.modules():
            if isinstance(layer, _NORMALISATIONS) and not getattr(layer, "_float32_inputs", False):
                layer.register_forward_pre_hook(_float32_inputs)
                layer._float32_inputs = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            result = self.module(*args, **kwargs)
        return _to_float32(result)


class InferenceModel(nn.Module):
    """The result of :func:`optimize_for_inference`: call it like the original model.

    Runs without autograd. ``module`` is the folded eager model (in channels-last layout when
    ``channels_last``); ``compiled`` says whether calls run compiled code (``torch.compile``, or AOTInductor);
    ``folded`` counts the conv-BatchNorm pairs folded, ``onednn_linear_layers`` the linear layers routed through
    oneDNN; ``compile_seconds`` is the time compiling took on ``example_input`` (both compiles where the
    ahead-of-time program raced the in-process graph); ``seconds_per_call`` holds the best times on it of the
    runners :func:`optimize_for_inference` compared (``compiled``: the in-process graph, ``ahead_of_time``,
    ``eager``).
    ``frozen`` says whether the compiled graphs use Inductor's freezing (weights as constants, pre-packed), and
    ``cpp_wrapper`` whether generated C++ calls their kernels (else Python).
    ``ahead_of_time`` says whether inputs of ``example_input``'s shapes run through an AOTInductor program
    (compiled ahead of time: no guards and no Python between its kernels) rather than the in-process graph;
    ``package`` is where that program is kept on disk (None when it is not, or there is none) and
    ``reused_package`` whether it was loaded rather than built.
    ``keeps_freed_memory`` says whether the process's ``malloc`` was set to keep freed memory for the next call.
    ``dtype`` is the precision of the computation (torch.float32, or torch.bfloat16: outputs are still float32)
    and ``max_deviation`` the largest absolute difference from the float32 eager model's outputs on
    ``example_input`` (None without one).
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        channels_last: bool,
        compile: bool,
        folded: int,
        onednn_linear_layers: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.module = module
        self.channels_last = channels_last
        self.folded = folded
        self.onednn_linear_layers = onednn_linear_layers
        self.dtype = dtype
        self.compile_seconds: float | None = None
        self.seconds_per_call: dict[str, float] | None = None
        self.timing_rounds = 0
        self.max_deviation: float | None = None
        self.package: str | None = None
        self.reused_package = False
        self.ahead_of_time = False
        self.compiled = False
        self.keeps_freed_memory = False
        self.cpp_wrapper = False
        self.frozen = compile
        self._verified_first_call = not compile
        # Kept out of the module tree: the runners share the parameters of ``module``.
        self.__dict__["_eager"] = _BFloat16(module) if dtype == torch.bfloat16 else module
        self.__dict__["_runner"] = self._eager
        if compile:
            self.__dict__["_runner"] = _compile_with_freezing(self._eager, cpp_wrapper=True)
            self.compiled = self.cpp_wrapper = True

    def _in_layout(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(_to_channels_last(a) for a in args) if self.channels_last else args

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        args = self._in_layout(args)
        with torch.no_grad():
            package = self.__dict__.get("_package")
            if package is not None and not kwargs and _signature(args) == package[1]:
                return package[0](*args)
            if self._verified_first_call:
                return self._runner(*args, **kwargs)
            return self._first_compiled_call(args, kwargs)

    def _first_compiled_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Compile on the first call; where that fails, compile again with Python calling the kernels
        (``cpp_wrapper`` False), then without Inductor's freezing (``frozen`` False: in torch 2.14 freezing fails on
        Faster R-CNN's graph, with its unbacked sizes); if this machine cannot compile at all, warn once and keep
        running eagerly."""
        fallbacks = [{"freezing": True, "cpp_wrapper": False}, {"freezing": False, "cpp_wrapper": False}]
        try:
            while True:
                try:
                    result = self._runner(*args, **kwargs)
                    break
                except _compile_failures():
                    if not fallbacks:
                        raise
                    settings = fallbacks.pop(0)
                    self.__dict__["_runner"] = _compile_with_freezing(self._eager, **settings)
                    self.frozen, self.cpp_wrapper = settings["freezing"], settings["cpp_wrapper"]
            self.__dict__["_in_process_compiled"] = True
        except _compile_failures() as error:
            cause = getattr(error, "inner_exception", None) or error
            warnings.warn(
                f"torch.compile failed on this machine ({type(cause).__name__}: {_first_line(cause)}); the model "
                "runs eagerly with the other optimisations. Pass compile=False to skip compiling.",
                RuntimeWarning,
                stacklevel=5,  # past forward and nn.Module's call machinery, to the caller
            )
            self.__dict__["_runner"] = self._eager
            self.compiled = self.frozen = self.cpp_wrapper = False
            result = self._eager(*args, **kwargs)
        self._verified_first_call = True
        return result

    def _keep_faster(self, args: tuple[Any, ...]) -> None:
        """Time the compiled runners (the in-process graph, and the ahead-of-time program where there is one)
        against the folded eager model on ``args``: alternating calls after one eager warm-up call, three rounds,
        then more for up to a second, at most ten. The compiled runner with the lower median time stays; the
        eager model replaces both if it is clearly faster than that one, at most 95% of its time both in the best
        round and in the median one, so that a busy machine's noise in one round does not throw compiling away."""
        args = self._in_layout(args)
        package = self.__dict__.get("_package")
        calls: dict[str, Callable[[], Any]] = {}
        if self.__dict__.get("_in_process_compiled"):
            calls["compiled"] = functools.partial(self._runner, *args)
        if package is not None:
            calls["ahead_of_time"] = functools.partial(package[0], *args)
        calls["eager"] = functools.partial(self._eager, *args)
        with torch.no_grad():
            self._eager(*args)  # warm-up (the compiled runners warmed up when they compiled)
            times = _timed_rounds(calls, rounds=3, budget_seconds=1.0, max_rounds=10)
        self.seconds_per_call = {name: min(values) for name, values in times.items()}
        self.timing_rounds = len(times["eager"])
        best = min((name for name in times if name != "eager"), key=lambda name: statistics.median(times[name]))
        if _clearly_faster(times, "eager", best, _EAGER_IF_FASTER_THAN):
            self.__dict__["_runner"] = self._eager
            self._drop_program()
            self.compiled = self.frozen = self.cpp_wrapper = False
        elif best == "compiled":
            self._drop_program()

    def _drop_program(self) -> None:
        """Stop running inputs through the ahead-of-time program (the caller deletes a package file)."""
        self.__dict__["_package"] = None
        self.ahead_of_time = False


ENV_COMPILED_DIR = "VISIONZOO_COMPILED_DIR"
# Part of every package's key: bump it when what goes into a package changes.
_PACKAGE_FORMAT = 2


def compiled_dir() -> Path:
    """Where :func:`optimize_for_inference` keeps AOTInductor packages (``package=True``).

    ``$VISIONZOO_COMPILED_DIR`` when set, else ``visionzoo_compiled`` next to the checkpoint cache
    (``$TORCH_HOME/hub/visionzoo_compiled``). Packages are named by their key; deleting any of them is safe.
    """
    from .hub.locate import get_dir

    value = os.environ.get(ENV_COMPILED_DIR)
    return Path(os.path.expanduser(value)) if value else get_dir().parent / "visionzoo_compiled"


def _signature(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """What a package is specialised on: each argument's shape, dtype, device and layout."""
    return tuple(
        (tuple(a.shape), a.dtype, a.device.type, a.dim() == 4 and a.is_contiguous(memory_format=torch.channels_last))
        if isinstance(a, torch.Tensor)
        else repr(a)
        for a in args
    )


def _package_key(model: nn.Module, args: tuple[Any, ...], settings: dict[str, Any]) -> str:
    """A digest of the model (class, structure, every tensor of its state), the inputs' signature, the
    optimisation settings, the torch version and the CPU (its name and instruction-set features)."""
    digest = hashlib.sha256()
    cpu = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    header = (
        _PACKAGE_FORMAT,
        torch.__version__,
        sorted((str(k), str(v)) for k, v in cpu.items()),
        f"{type(model).__module__}.{type(model).__qualname__}",
        repr(model),
        _signature(args),
        sorted(settings.items()),
    )
    digest.update(repr(header).encode())
    for name, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor):  # packed parameters of quantized layers, extra state
            digest.update(f"{name}:{tensor!r}".encode())
            continue
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        if tensor.is_quantized:
            digest.update(
                f"{tensor.q_scale()}:{tensor.q_zero_point()}".encode()
                if tensor.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric)
                else repr(tensor).encode()
            )
            tensor = tensor.int_repr()
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()[:32]


def _load_or_build_package(runner: nn.Module, args: tuple[Any, ...], path: Path) -> tuple[Any, bool]:
    """The AOTInductor package at ``path`` loaded, building it first (export, compile, atomic rename) when
    missing; and whether it was there already."""
    from torch._inductor import aoti_compile_and_package, aoti_load_package

    reused = path.exists()
    if not reused:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}-{os.urandom(4).hex()}.partial.pt2")
        try:
            # Autograd off for both steps: Inductor applies freezing (constant weights, pre-packed for oneDNN,
            # fused activations) only to graphs compiled without it.
            with torch.no_grad():
                program = torch.export.export(runner, args)
                aoti_compile_and_package(program, package_path=str(partial), inductor_configs={"freezing": True})
            os.replace(partial, path)  # atomic: another process sees the whole package or none
        finally:
            partial.unlink(missing_ok=True)
    return aoti_load_package(str(path)), reused


def _attach_package(optimised: InferenceModel, args: tuple[Any, ...], path: Path | None, warn: bool = True) -> bool:
    """Run ``optimised`` through an AOTInductor program for inputs like ``args``: the package at ``path`` (built
    now if missing), or with ``path`` None one built in a temporary directory and kept in memory only. Where
    exporting or compiling ahead of time fails, warn (unless ``warn`` is False) and return False: the model keeps
    compiling in this process instead."""
    try:
        if path is None:
            with tempfile.TemporaryDirectory(prefix="visionzoo-aoti-") as folder:
                loaded, reused = _load_or_build_package(optimised._eager, args, Path(folder) / "program.pt2")
        else:
            loaded, reused = _load_or_build_package(optimised._eager, args, path)
    except Exception as error:  # export or AOTInductor cannot handle this model
        if warn:
            warnings.warn(
                f"no AOTInductor package for {type(optimised.module).__name__} ({type(error).__name__}: "
                f"{_first_line(error)}); compiling in this process instead",
                RuntimeWarning,
                stacklevel=3,
            )
        return False
    optimised.__dict__["_package"] = (loaded, _signature(args))
    optimised.ahead_of_time = True
    if path is not None:
        optimised.package, optimised.reused_package = str(path), reused
    return True


def _compile_supported() -> bool:
    if not hasattr(torch, "compile"):
        return False
    from torch._dynamo import is_dynamo_supported

    return bool(is_dynamo_supported())


def _max_difference(expected: Any, actual: Any) -> float:
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
            return float("inf")  # a different number of detections, say: not the same output
        return (expected.float() - actual.float()).abs().max().item() if expected.numel() else 0.0
    if isinstance(expected, dict):
        return max((_max_difference(expected[k], actual[k]) for k in expected), default=0.0)
    if isinstance(expected, (list, tuple)):
        return max((_max_difference(e, a) for e, a in zip(expected, actual)), default=0.0)
    return 0.0


def _max_magnitude(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return value.abs().max().item() if value.numel() else 0.0
    if isinstance(value, dict):
        return max((_max_magnitude(v) for v in value.values()), default=0.0)
    if isinstance(value, (list, tuple)):
        return max((_max_magnitude(v) for v in value), default=0.0)
    return 0.0


def _top1_changes(expected: Any, actual: Any) -> list[str]:
    """Where the top-1 class (argmax over dim 1) of ``actual`` disagrees with ``expected``'s beyond tolerance.

    Checked: a floating output tensor with at least two dimensions, or such tensors as values of a dict output
    (segmentation's ``out`` and ``aux``). A 2-D output (N x classes) must agree on every row; a dense one
    (N x C x H x W) on all but ``_DENSE_TOP1_TOLERANCE`` of its positions.
    """
    if isinstance(expected, dict):
        return [f"[{k!r}]{c}" for k in expected for c in _top1_changes(expected[k], actual[k])]
    if not isinstance(expected, torch.Tensor) or not expected.is_floating_point() or expected.dim() < 2:
        return []
    differ = expected.argmax(dim=1) != actual.argmax(dim=1)
    changed, total = int(differ.sum()), differ.numel()
    if expected.dim() == 2:
        return [f" top-1 differs for {changed} of {total} samples"] if changed else []
    if changed <= _DENSE_TOP1_TOLERANCE * total:
        return []
    return [f" top-1 differs at {changed} of {total} positions ({changed / total:.1%}; at most 1% may)"]


def _check_bfloat16(model: nn.Module, expected: Any, actual: Any, deviation: float) -> list[str]:
    changes = _top1_changes(expected, actual)
    if changes:
        return [
            f"bfloat16 changes {type(model).__name__}'s top-1 on example_input (float32 eager against "
            f"bfloat16: output{'; output'.join(changes)}; largest deviation {deviation:.3g})"
        ]
    return []


def _output_problem(model: nn.Module, expected: Any, actual: Any, dtype: torch.dtype) -> str | None:
    """Why the optimised outputs ``actual`` are not acceptable against the eager ``expected`` (None if they are):
    in bfloat16 a changed top-1, in float32 a difference beyond 1e-3 (relative to the largest output where that
    exceeds 1: randomly initialised deep networks have huge outputs, where float32 rounding alone exceeds any
    fixed absolute bound)."""
    difference = _max_difference(expected, actual)
    if dtype == torch.bfloat16:
        problems = _check_bfloat16(model, expected, actual, difference)
        return f"{problems[0]}; pass dtype=torch.float32 for this model" if problems else None
    allowed = _ATOL * max(1.0, _max_magnitude(expected))
    if difference > allowed:
        return (
            f"optimize_for_inference changed {type(model).__name__}'s outputs by up to {difference:.3g} "
            f"(more than {allowed:.3g}); please report this. Optimising with compile=False or "
            "channels_last=False may avoid it."
        )
    return None


def optimize_for_inference(
    model: nn.Module,
    example_input: torch.Tensor | tuple[Any, ...] | None = None,
    compile: bool = True,
    *,
    channels_last: bool | None = None,
    onednn_linear: bool | None = None,
    inplace: bool = False,
    keep_faster: bool = True,
    dtype: torch.dtype | str = torch.float32,
    package: bool = False,
    keep_freed_memory: bool = True,
    ahead_of_time: bool | None = None,
) -> InferenceModel:
    """Return a faster, inference-only version of ``model`` with the same call signature.

    Steps: eval mode and no autograd; every BatchNorm that only follows a ``Conv2d`` folded into it
    (:func:`fold_conv_bn`); linear layers computed by oneDNN where that is faster than the BLAS library; the
    channels-last layout for convolutional networks; freed memory kept for the next call (``keep_freed_memory``);
    ``torch.compile`` with
    Inductor and its weight freezing when ``compile`` is true and the platform supports it (if compiling
    fails on the first call, a ``RuntimeWarning`` says so and the model runs eagerly). The compiled model
    specialises on input shapes: each new shape compiles once more. Compiled code is cached on disk by torch
    (``TORCHINDUCTOR_CACHE_DIR``), so another process optimising the same model compiles faster.

    Args:
        model: the model to optimise, on the device it will run on. It is copied unless ``inplace``.
        example_input: a typical input (a tensor, or a tuple of positional arguments). When given, the model
            is compiled now rather than on the first call (``compile_seconds`` records how long it took), its
            outputs are checked against the eager model's, and (see ``keep_faster``) its speed is measured.
        compile: use ``torch.compile``; False gives an optimised eager model.
        channels_last: force the memory layout; None decides from the architecture (networks with at least
            eight 2-D convolutions).
        onednn_linear: run ``nn.Linear`` layers through oneDNN as 1x1 convolutions; None does so on CPUs where
            a short measurement (once per process) finds oneDNN clearly faster than ``F.linear``.
        inplace: modify ``model`` itself instead of a copy (saves memory for large models).
        keep_faster: with ``compile`` and ``example_input``, time the compiled runners (the in-process graph, and
            the ahead-of-time program of ``ahead_of_time``) against the optimised eager model on
            ``example_input`` (alternating calls: three rounds, more while they fit in one second, at most ten;
            ``timing_rounds``). The faster compiled runner (lower median) stays, unless the eager model takes at
            most 95% of its time in both its best and its median round: then the eager one is kept
            (``compiled`` reads False). ``seconds_per_call`` has each one's best time. Compiling does not speed
            up every network: DenseNet-121 at batch 8 took 220 ms a call compiled and 190 ms without compiling
            on a 2-core CPU.
        ahead_of_time: how inputs of ``example_input``'s shapes run when compiled. None (the default): with
            ``keep_faster``, the model also compiles ahead of time with AOTInductor (``torch.export``, then
            ``aoti_compile_and_package`` with freezing, in a temporary directory; about as long again as the
            in-process compile), and the timing keeps the faster of the two (``ahead_of_time`` says which).
            An ahead-of-time program has no guards and no Python between kernels, and its linear layers use
            oneDNN where the in-process graph uses MKL: on a 2-core AMD EPYC (Zen 5), vit_b_16 at batch 8 took
            675 ms a call ahead of time against 915 ms in-process, mobilenet_v3_large 15.0 against 15.8 ms;
            on a 2-core Intel Xeon the in-process graph was the faster for resnet50 and vit_b_16. Where
            exporting fails, the in-process graph stays. Where the program wins, the in-process graph that
            raced it stays in torch.compile's cache, with a second copy of the frozen weights. True: the
            ahead-of-time program without the race (a warning where it cannot be built). False: in-process
            only. Other shapes always compile in process on their first call. With ``package`` the program
            is kept on disk instead.
        dtype: the precision of the computation. ``torch.float32`` (or "float32"): outputs stay within 1e-3 of
            the eager model's. ``torch.bfloat16`` (or "bfloat16"): convolutions, linear layers and matrix
            products in bfloat16 under ``torch.autocast``, normalisation layers in float32, outputs returned in
            float32; needs ``example_input``, on which ``max_deviation`` records the largest difference from
            the float32 model and the top-1 class (argmax over dim 1) must agree with float32's: for a 2-D output
            (classification logits) in every row, for a dense output (N x C x H x W, such as segmentation's
            ``out`` and ``aux`` in its dict) at all but 1% of the pixels, else a ``RuntimeError`` gives the
            numbers. Other outputs (detections, 1-D tensors) have no top-1 check. "auto": bfloat16 where the
            device multiplies bfloat16 in hardware (:func:`has_native_bfloat16`: AMX or AVX-512 BF16 on a CPU)
            and the top-1 check passes (else float32, with a ``RuntimeWarning``), float32 elsewhere.
        package: keep the compiled model for ``example_input``'s shapes as an AOTInductor package in
            :func:`compiled_dir` (``torch.export``, then ``aoti_compile_and_package`` with freezing; written to
            a temporary name and renamed, so concurrent processes never see half a package), keyed by the
            model (class, structure, every weight), the input shapes, ``dtype``, the other settings, the torch
            version and the CPU; a later process optimising the same model loads it (``reused_package``)
            instead of compiling, in about a second, and skips the ``keep_faster`` timing: a package is kept
            only when the compiled model won it (or ``keep_faster`` was False). Inputs of other shapes compile
            in-process as usual. Needs ``compile`` and ``example_input``. Without it, torch's own caches still
            make a second process's compile several times faster, but not free: the oneDNN weights that
            freezing pre-packs keep Inductor's graph cache out.
        keep_freed_memory: for a model on the CPU, make this process's ``malloc`` keep the memory a call frees
            for the next call (:func:`visionzoo.allocator.keep_freed_memory`; glibc only;
            ``keeps_freed_memory`` says whether it took). A model allocates its activations anew on every call;
            with glibc's defaults they go back to the system in between, and the next call page-faults every
            4 KiB of them in again (ONNX Runtime and OpenVINO keep theirs in arenas). On a 2-core Xeon,
            mobilenet_v3_large compiled at batch 8 took 28.5 ms a call with it and 40 ms without. The setting
            belongs to the whole process and keeps it at the peak memory of its largest call; False leaves the
            process as it is.

    Returns:
        An :class:`InferenceModel`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``dtype`` is not one of the above; bfloat16, ``package`` or ``ahead_of_time=True`` is asked
            for without ``example_input`` (the last two also need ``compile``); ``package`` with
            ``ahead_of_time=False``.
        RuntimeError: on ``example_input``, the optimised float32 outputs differ from the eager ones by more
            than 1e-3 (relative to the largest output where that exceeds 1), or bfloat16 changes the top-1.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize_for_inference expects an nn.Module, got {type(model).__name__}")
    if isinstance(model, InferenceModel):
        raise TypeError("This model is already optimised; pass the original model instead")
    if example_input is not None and not isinstance(example_input, (torch.Tensor, tuple)):
        raise TypeError(f"example_input must be a tensor or a tuple of arguments, got {type(example_input).__name__}")
    args = (example_input,) if isinstance(example_input, torch.Tensor) else example_input
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    chosen_dtype = _resolve_dtype(dtype, device)
    if chosen_dtype == torch.bfloat16 and args is None:
        raise ValueError(
            f"dtype={dtype!r} (bfloat16 here) needs example_input: the bfloat16 model's top-1 is checked against "
            "float32's on it"
        )
    if package and (args is None or not compile):
        raise ValueError("package=True needs example_input and compile=True: a package is a compiled model")
    if ahead_of_time and (args is None or not compile):
        raise ValueError("ahead_of_time=True needs example_input and compile=True: it compiles for its shapes")
    if package and ahead_of_time is False:
        raise ValueError("package=True keeps an ahead-of-time program on disk: it cannot go with ahead_of_time=False")
    # Of the model as given: with inplace=True it is folded below.
    model_key = _package_key(model, args, {"dtype": str(chosen_dtype)}) if package else None

    module = model if inplace else copy.deepcopy(model)
    module.eval().requires_grad_(False)
    expected = None
    if args is not None:
        with torch.no_grad():
            expected = module(*args)

    folded = fold_conv_bn(module)
    on_cpu = all(p.device.type == "cpu" for p in module.parameters())
    # Through the module, where tests record the call instead of changing their own process.
    kept_freed_memory = allocator.keep_freed_memory() if keep_freed_memory and on_cpu else False
    if onednn_linear is None:
        onednn_linear = on_cpu and _onednn_beats_blas()
    linear_layers = route_linear_through_onednn(module) if onednn_linear else 0
    use_channels_last = _prefers_channels_last(module) if channels_last is None else channels_last
    if use_channels_last:
        module = module.to(memory_format=torch.channels_last)
    if compile and not _compile_supported():
        warnings.warn("torch.compile is not supported here; optimising without it", RuntimeWarning, stacklevel=2)
        compile = False
    if chosen_dtype == torch.bfloat16:
        # Checked eagerly first, which is cheap: a refusal should not wait for a compile.
        runner = _BFloat16(module)
        with torch.no_grad():
            trial = runner(*(tuple(_to_channels_last(a) for a in args) if use_channels_last else args))
        problems = _check_bfloat16(model, expected, trial, _max_difference(expected, trial))
        if problems and dtype == "auto":
            warnings.warn(f"{problems[0]}: dtype='auto' keeps float32", RuntimeWarning, stacklevel=2)
            chosen_dtype = torch.float32
        elif problems:
            raise RuntimeError(f"{problems[0]}; pass dtype=torch.float32 (or 'auto') for this model")
    optimised = InferenceModel(
        module,
        channels_last=use_channels_last,
        compile=compile,
        folded=folded,
        onednn_linear_layers=linear_layers,
        dtype=chosen_dtype,
    )
    optimised.keeps_freed_memory = kept_freed_memory

    if args is not None:
        start = time.perf_counter()
        if optimised.compiled and (model_key is not None or ahead_of_time):
            path = None
            if model_key is not None:
                settings = f"{model_key}/{use_channels_last}/{linear_layers}/{folded}"
                path = compiled_dir() / f"{hashlib.sha256(settings.encode()).hexdigest()[:32]}.pt2"
            _attach_package(optimised, optimised._in_layout(args), path)
        actual = optimised(*args)
        if optimised.compiled:
            optimised.compile_seconds = time.perf_counter() - start
        optimised.max_deviation = _max_difference(expected, actual)
        problem = _output_problem(model, expected, actual, chosen_dtype)
        if problem:
            raise RuntimeError(problem)
        # Where the model compiled in this process and will be timed, an ahead-of-time program races it too,
        # kept only if its outputs pass the same check.
        ahead_deviation = None
        if optimised.compiled and keep_faster and ahead_of_time is None and model_key is None:
            if _attach_package(optimised, optimised._in_layout(args), None, warn=False):
                ahead = optimised(*args)
                ahead_deviation = _max_difference(expected, ahead)
                if _output_problem(model, expected, ahead, chosen_dtype):
                    optimised._drop_program()
            optimised.compile_seconds = time.perf_counter() - start
        # A package is kept only where the compiled model won (or was asked for): a reused one has been timed.
        if optimised.compiled and keep_faster and not optimised.reused_package:
            optimised._keep_faster(args)
            if not optimised.ahead_of_time and optimised.package is not None:
                Path(optimised.package).unlink(missing_ok=True)
                optimised.package = None
        if optimised.ahead_of_time and ahead_deviation is not None:
            optimised.max_deviation = ahead_deviation  # the runner that stays
    return optimised
