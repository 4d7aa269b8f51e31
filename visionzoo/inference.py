"""Inference-only rewrites of a model: BatchNorm folding, channels-last layout and ``torch.compile``.

``optimize_for_inference`` is the public entry point (``visionzoo.models`` re-exports it). Everything here works
on the module tree the model already has: a BatchNorm that normalises a convolution's only output becomes part
of that convolution, and the BatchNorm is replaced by ``nn.Identity``, so the model keeps its class, its
attributes and its forward. It applies to any ``nn.Module``, not only to the models of this package.
``torch._dynamo`` is imported only when compiling, so importing ``visionzoo.models`` stays cheap.
"""

from __future__ import annotations

import copy
import functools
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .ops.misc import FrozenBatchNorm2d

__all__ = ["optimize_for_inference", "InferenceModel", "fold_conv_bn", "route_linear_through_onednn"]

# A network with this many 2-D convolutions is convolution-bound enough for the NHWC layout (what oneDNN and
# cuDNN prefer) to pay; transformers with a single patch-embedding convolution stay NCHW.
_CHANNELS_LAST_MIN_CONVS = 8
# How close the optimised model's outputs must stay to the eager model's (checked on ``example_input``).
_ATOL = 1e-3
# Timed on ``example_input``, the compiled model is dropped for the folded eager one only when that takes at most
# this share of its time: near a tie, timing noise would decide.
_EAGER_IF_FASTER_THAN = 0.95


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
        best = _best_seconds(calls, rounds=3)
    return best["onednn"] < 0.8 * best["blas"]  # a clear margin: where both are at peak, keep the ordinary path


def _best_seconds(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """The shortest wall time of each call over ``rounds`` rounds, each round calling every one once in turn."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def route_linear_through_onednn(model: nn.Module) -> int:
    """Replace every plain ``nn.Linear`` of ``model`` by :class:`_OneDNNLinear` (sharing its tensors), in place.

    Returns:
        The number of layers replaced.
    """
    names = [name for name, m in model.named_modules() if type(m) is nn.Linear and name]
    for name in names:
        _replace(model, name, _OneDNNLinear.from_linear(model.get_submodule(name)))
    return len(names)


def _prefers_channels_last(model: nn.Module) -> bool:
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) >= _CHANNELS_LAST_MIN_CONVS


def _to_channels_last(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() == 4 and value.is_floating_point():
        return value.contiguous(memory_format=torch.channels_last)
    return value


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


def _compile_with_freezing(module: nn.Module) -> Any:
    """``torch.compile`` with Inductor's freezing, which turns the parameters into constants (folding them
    further and pre-packing convolution and linear weights for oneDNN). Freezing applies to graphs compiled
    with autograd off, as ``InferenceModel.forward`` runs them. It is a global Inductor setting read while a
    graph compiles (on a call), and ``torch.compile(options=...)`` does not reach that point, so each call
    sets it for its own duration. ``dynamic=False`` specialises on each input shape: the fastest kernels for a
    fixed batch size.
    """
    from torch._inductor import config as inductor_config

    compiled = torch.compile(module, dynamic=False)

    def run(*args: Any, **kwargs: Any) -> Any:
        with inductor_config.patch(freezing=True):
            return compiled(*args, **kwargs)

    return run


class InferenceModel(nn.Module):
    """The result of :func:`optimize_for_inference`: call it like the original model.

    Runs without autograd. ``module`` is the folded eager model (in channels-last layout when
    ``channels_last``); ``compiled`` says whether calls go through ``torch.compile``; ``folded`` counts the
    conv-BatchNorm pairs folded, ``onednn_linear_layers`` the linear layers routed through oneDNN;
    ``compile_seconds`` is the first-call time measured on ``example_input``; ``seconds_per_call`` holds the
    best times of the compiled and the eager model on it when :func:`optimize_for_inference` compared them.
    """

    def __init__(
        self, module: nn.Module, *, channels_last: bool, compile: bool, folded: int, onednn_linear_layers: int = 0
    ) -> None:
        super().__init__()
        self.module = module
        self.channels_last = channels_last
        self.folded = folded
        self.onednn_linear_layers = onednn_linear_layers
        self.compile_seconds: float | None = None
        self.seconds_per_call: dict[str, float] | None = None
        self.compiled = False
        self._verified_first_call = not compile
        # Kept out of the module tree: the compiled wrapper shares the parameters of ``module``.
        self.__dict__["_runner"] = module
        if compile:
            self.__dict__["_runner"] = _compile_with_freezing(module)
            self.compiled = True

    def _in_layout(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(_to_channels_last(a) for a in args) if self.channels_last else args

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        args = self._in_layout(args)
        with torch.no_grad():
            if self._verified_first_call:
                return self._runner(*args, **kwargs)
            return self._first_compiled_call(args, kwargs)

    def _first_compiled_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Compile on the first call; if this machine cannot compile, warn once and keep running eagerly."""
        try:
            result = self._runner(*args, **kwargs)
        except _compile_failures() as error:
            cause = getattr(error, "inner_exception", None) or error
            first_line = (str(cause).strip().splitlines() or [""])[0]
            warnings.warn(
                f"torch.compile failed on this machine ({type(cause).__name__}: {first_line}); the model runs "
                "eagerly with the other optimisations. Pass compile=False to skip compiling.",
                RuntimeWarning,
                stacklevel=5,  # past forward and nn.Module's call machinery, to the caller
            )
            self.__dict__["_runner"] = self.module
            self.compiled = False
            result = self.module(*args, **kwargs)
        self._verified_first_call = True
        return result

    def _keep_faster(self, args: tuple[Any, ...], rounds: int = 2) -> None:
        """Time the compiled model against the folded eager one on ``args`` (best of ``rounds`` alternating
        calls, after one eager warm-up call) and run eagerly from now on if that is clearly faster."""
        args = self._in_layout(args)
        compiled, eager = self._runner, self.module
        with torch.no_grad():
            eager(*args)  # warm-up (the compiled model warmed up when it compiled)
            best = _best_seconds({"compiled": lambda: compiled(*args), "eager": lambda: eager(*args)}, rounds)
        self.seconds_per_call = best
        if best["eager"] <= _EAGER_IF_FASTER_THAN * best["compiled"]:
            self.__dict__["_runner"] = self.module
            self.compiled = False


def _compile_supported() -> bool:
    if not hasattr(torch, "compile"):
        return False
    from torch._dynamo import is_dynamo_supported

    return bool(is_dynamo_supported())


def _max_difference(expected: Any, actual: Any) -> float:
    if isinstance(expected, torch.Tensor):
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


def optimize_for_inference(
    model: nn.Module,
    example_input: torch.Tensor | tuple[Any, ...] | None = None,
    compile: bool = True,
    *,
    channels_last: bool | None = None,
    onednn_linear: bool | None = None,
    inplace: bool = False,
    keep_faster: bool = True,
) -> InferenceModel:
    """Return a faster, inference-only version of ``model`` with the same call signature.

    Steps: eval mode and no autograd; every BatchNorm that only follows a ``Conv2d`` folded into it
    (:func:`fold_conv_bn`); linear layers computed by oneDNN where that is faster than the BLAS library; the
    channels-last layout for convolutional networks; ``torch.compile`` with
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
        keep_faster: with ``compile`` and ``example_input``, time the compiled model against the optimised
            eager one on ``example_input`` (three eager and two compiled calls) and keep the eager one if it
            takes at most 95% of the compiled time (``compiled`` then reads False; ``seconds_per_call`` has
            both times). Compiling does not speed up every network: DenseNet-121 at batch 8 took 220 ms a call
            compiled and 190 ms without compiling on a 2-core CPU.

    Returns:
        An :class:`InferenceModel`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        RuntimeError: on ``example_input``, the optimised outputs differ from the eager ones by more than 1e-3
            (relative to the largest output where that exceeds 1).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize_for_inference expects an nn.Module, got {type(model).__name__}")
    if isinstance(model, InferenceModel):
        raise TypeError("This model is already optimised; pass the original model instead")
    if example_input is not None and not isinstance(example_input, (torch.Tensor, tuple)):
        raise TypeError(f"example_input must be a tensor or a tuple of arguments, got {type(example_input).__name__}")
    args = (example_input,) if isinstance(example_input, torch.Tensor) else example_input

    module = model if inplace else copy.deepcopy(model)
    module.eval().requires_grad_(False)
    expected = None
    if args is not None:
        with torch.no_grad():
            expected = module(*args)

    folded = fold_conv_bn(module)
    on_cpu = all(p.device.type == "cpu" for p in module.parameters())
    if onednn_linear is None:
        onednn_linear = on_cpu and _onednn_beats_blas()
    linear_layers = route_linear_through_onednn(module) if onednn_linear else 0
    use_channels_last = _prefers_channels_last(module) if channels_last is None else channels_last
    if use_channels_last:
        module = module.to(memory_format=torch.channels_last)
    if compile and not _compile_supported():
        warnings.warn("torch.compile is not supported here; optimising without it", RuntimeWarning, stacklevel=2)
        compile = False
    optimised = InferenceModel(
        module, channels_last=use_channels_last, compile=compile, folded=folded, onednn_linear_layers=linear_layers
    )

    if args is not None:
        start = time.perf_counter()
        actual = optimised(*args)
        if optimised.compiled:
            optimised.compile_seconds = time.perf_counter() - start
        difference = _max_difference(expected, actual)
        # Absolute for outputs of ordinary magnitude (logits), relative for huge ones (randomly initialised
        # deep networks), where float32 rounding alone exceeds any fixed absolute bound.
        allowed = _ATOL * max(1.0, _max_magnitude(expected))
        if difference > allowed:
            raise RuntimeError(
                f"optimize_for_inference changed {type(model).__name__}'s outputs by up to {difference:.3g} "
                f"(more than {allowed:.3g}); please report this. Optimising with compile=False or "
                "channels_last=False may avoid it."
            )
        if optimised.compiled and keep_faster:
            optimised._keep_faster(args)
    return optimised
