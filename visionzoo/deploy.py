"""Deployment: a model as a ``torch.export`` program or an ONNX file, and a check that either still computes what
the eager model does.

- :func:`export_program` traces a model (in eval mode) with ``torch.export.export`` into an
  ``ExportedProgram``; with ``dynamic=True`` the batch dimension and, where the architecture allows it, the
  spatial (and temporal) ones stay symbolic (``torch.export.Dim.AUTO``: a model that needs a fixed size, such as
  ViT, keeps that size and the rest stays free).
- :func:`export_onnx` writes an ONNX file through ``torch.onnx.export(..., dynamo=True)``.
- :func:`check_program` and :func:`check_onnx` run the exported form and the eager model on the same input and
  raise an ``AssertionError`` when they differ beyond the tolerance; they return the largest absolute deviation.

Classification (the quantized models' float path too), segmentation, video and optical flow models export;
detection is not covered yet. ONNX needs the ``deploy`` extra (``pip install visionzoo[deploy]``: onnx,
onnxscript, onnxruntime), imported only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .ops._library import NAMESPACE

__all__ = ["export_program", "export_onnx", "check_program", "check_onnx", "Example", "DETECTION_COMPILE_CONFIG"]

# ``torch._dynamo.config`` settings under which ``torch.compile`` traces a detector into one graph: the number of
# boxes each step keeps depends on the data (``torch.nonzero``, our NMS), which dynamo otherwise leaves to eager
# code between graphs. Use ``with torch._dynamo.config.patch(DETECTION_COMPILE_CONFIG): compiled(images)``.
DETECTION_COMPILE_CONFIG = {"capture_dynamic_output_shape_ops": True}

# One tensor, or the positional inputs of a model that takes several (RAFT: two frames); a detector's one
# input is a list of (C, H, W) images, so its example is a tuple holding that list: ``([image],)``.
Example = torch.Tensor | Sequence[torch.Tensor | list[torch.Tensor]]
# Dimensions left free by dynamic=True, by input rank: batch, then height and width (and time for clips); a
# detector's images keep their number (the list's length) and free their height and width.
_FREE_DIMS = {3: (1, 2), 4: (0, 2, 3), 5: (0, 2, 3, 4)}
Arg = torch.Tensor | list[torch.Tensor]


def _is_image_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, torch.Tensor) for v in value)


def _as_args(example: Example) -> tuple[Arg, ...]:
    if isinstance(example, torch.Tensor):
        return (example,)
    args = tuple(example) if isinstance(example, Sequence) and not isinstance(example, str) else ()
    if not args or not all(isinstance(a, torch.Tensor) or _is_image_list(a) for a in args):
        raise TypeError(
            "example must be a tensor or a sequence of tensors (a detector's: a tuple holding a list of images), "
            f"got {example!r:.80}"
        )
    return args


def _trace_args(args: tuple[Arg, ...], dynamic: bool) -> tuple[Arg, ...]:
    # torch.export specialises a dimension of size 1, so a dynamic batch is traced with two samples.
    if dynamic:
        return tuple(
            a.expand(2, *a.shape[1:]).contiguous() if isinstance(a, torch.Tensor) and a.ndim and a.shape[0] == 1 else a
            for a in args
        )
    return args


def _free(tensor: torch.Tensor) -> dict[int, Any]:
    return {dim: torch.export.Dim.AUTO for dim in _FREE_DIMS.get(tensor.ndim, (0,))}


def _dynamic_shapes(args: tuple[Arg, ...]) -> tuple[Any, ...]:
    return tuple(_free(a) if isinstance(a, torch.Tensor) else [_free(image) for image in a] for a in args)


def export_program(
    model: nn.Module, example: Example, dynamic: bool = False, **kwargs: Any
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` in eval mode (non-strict tracing).

    Args:
        model: the model; it is put in eval mode.
        example: an input of the size to export for (a tensor, or a sequence of tensors for models that take
            several).
        dynamic: keep the batch size (and height, width, and time where the model allows) symbolic.
        **kwargs: constant keyword arguments of the forward (RAFT's ``num_flow_updates``), baked into the program.

    Returns:
        The exported program; call ``program.module()(*example)``.
    """
    args = _trace_args(_as_args(example), dynamic)
    model.eval()
    return torch.export.export(
        model, args, kwargs or None, dynamic_shapes=_dynamic_shapes(args) if dynamic else None, strict=False
    )


def _deploy_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(f"ONNX export needs the optional package {name!r}: pip install visionzoo[deploy]") from error


def export_onnx(
    model: nn.Module, example: Example, path: str | Path, dynamic: bool = False, optimize: bool = True
) -> Path:
    """Write ``model`` (eval mode) to the ONNX file ``path`` through ``torch.onnx.export(..., dynamo=True)``.

    Args:
        model: the model; it is put in eval mode.
        example: an input of the size to export for.
        path: the ``.onnx`` file to write (its folder must exist).
        dynamic: keep the batch size (and the spatial sizes where the model allows) symbolic.
        optimize: let onnxscript fold constants and fuse nodes (a smaller, faster file; the export takes longer).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ImportError: onnx or onnxscript is missing (the message says how to install them).
        ValueError: the model uses a custom operator without an ONNX form (visionzoo's own all have one).
    """
    for name in ("onnx", "onnxscript"):
        _deploy_module(name)
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"The folder of the ONNX file {str(path)!r} does not exist")
    exported = export_program(model, example, dynamic)
    from ._onnx_ops import translations as onnx_translations

    translations = onnx_translations()
    untranslated = sorted(
        {
            str(node.target).split(".")[1]
            for node in exported.graph.nodes
            if node.op == "call_function"
            and str(node.target).startswith(f"{NAMESPACE}.")
            and node.target not in translations
        }
    )
    if untranslated:
        raise ValueError(
            f"{type(model).__name__} uses {', '.join(untranslated)}, which has no ONNX form; export it with "
            "--format pt2 (torch.export) instead"
        )
    program = torch.onnx.export(
        exported,
        dynamo=True,
        custom_translation_table=translations,
        external_data=False,
        optimize=optimize,
        verbose=False,
    )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path))
    return path


def _flatten(output: Any) -> list[torch.Tensor]:
    """The tensors of a (nested) model output in a fixed order: list/tuple items, then dict values by insertion."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _flatten(item)]
    raise TypeError(f"Cannot compare a model output of type {type(output).__name__}")


def _max_deviation(
    expected: list[torch.Tensor], actual: list[torch.Tensor], atol: float, rtol: float, what: str
) -> float:
    if len(expected) != len(actual):
        raise AssertionError(f"{what} returns {len(actual)} tensors, the eager model {len(expected)}")
    worst = 0.0
    for i, (e, a) in enumerate(zip(expected, actual)):
        a = a.to(e.device)
        if a.shape != e.shape:
            raise AssertionError(f"{what} output {i} has shape {tuple(a.shape)}, eager {tuple(e.shape)}")
        deviation = (a.double() - e.double()).abs()
        if deviation.numel():
            worst = max(worst, deviation.max().item())
        if not torch.allclose(a.to(e.dtype), e, atol=atol, rtol=rtol):
            raise AssertionError(
                f"{what} output {i} differs from eager by up to {deviation.max().item():.3g} (atol={atol}, rtol={rtol})"
            )
    return worst


def _eager(model: nn.Module, args: tuple[Arg, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return _flatten(model(*args, **kwargs))


def check_program(
    model: nn.Module,
    program: torch.export.ExportedProgram,
    example: Example,
    *,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    **kwargs: Any,
) -> float:
    """Assert that ``program`` computes what ``model`` (eval mode) computes on ``example``.

    Args:
        kwargs: the forward's keyword arguments the program was exported with (the same values).

    Returns:
        The largest absolute deviation over all output tensors.

    Raises:
        AssertionError: a different number of outputs, a shape, or values beyond ``atol``/``rtol``.
    """
    args = _as_args(example)
    with torch.no_grad():
        actual = _flatten(program.module()(*args, **kwargs))
    return _max_deviation(_eager(model, args, kwargs), actual, atol, rtol, "The exported program")


def check_onnx(
    model: nn.Module,
    path: str | Path,
    example: Example,
    *,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    **kwargs: Any,
) -> float:
    """Assert that the ONNX file ``path``, run by ONNX Runtime on CPU, computes what ``model`` computes.

    Returns:
        The largest absolute deviation over all output tensors.

    Raises:
        AssertionError: as :func:`check_program`.
        ImportError: onnxruntime is missing.
    """
    ort = _deploy_module("onnxruntime")
    args = _as_args(example)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: not the constant folder's notes on each CastLike node
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    tensors = [t for a in args for t in ([a] if isinstance(a, torch.Tensor) else a)]
    if len(names) != len(tensors):
        raise ValueError(f"The ONNX file takes {len(names)} inputs, the example has {len(tensors)} tensors")
    feeds = {name: t.detach().cpu().numpy() for name, t in zip(names, tensors)}
    actual = [torch.from_numpy(o) for o in session.run(None, feeds)]
    return _max_deviation(_eager(model, args, kwargs), actual, atol, rtol, "The ONNX model")
