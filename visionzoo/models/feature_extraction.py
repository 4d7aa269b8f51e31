"""Intermediate features of any model by node name, through ``torch.fx``.

The model is traced twice, in train mode and in eval mode (dropout, auxiliary heads and batch statistics can make
the two graphs differ). Every traced operation gets a name that reads like a module path: the qualified name of
the module whose forward ran it, a dot, and the operation (``layer1.0.add``); a leaf module is named by its own
path (``layer1.0.conv1``). A name used again in the same place gets ``_1``, ``_2``, ... appended, and a trailing
``_<digits>`` that a name already carries is dropped first, so that a module called ``ln_1`` and the second call
of ``relu`` follow the same counting. These names are the reference's, so a list of return nodes written for
one works for the other.

``create_feature_extractor`` rewrites both graphs to return the requested nodes as a dict and drops everything
that does not lead to them; the result is a ``torch.fx.GraphModule`` whose state_dict keys are the model's own.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from torch import fx, nn

from .. import ops
from ..inference import DROP_IN_LAYERS

__all__ = ["create_feature_extractor", "get_graph_node_names"]

ReturnNodes = Sequence[str] | Mapping[str, str]

# fx numbers repeated names globally (``add_7``); ours count per place, so fx's suffix is taken off first.
_TRAILING_INDEX = re.compile(r"(.+)_[0-9]+$")


def _default_leaf_modules() -> list[type[nn.Module]]:
    # The shared layers (Conv2dNormActivation, SqueezeExcitation, StochasticDepth, Permute, MLP, the feature
    # pyramid, RoI pooling) stay single nodes, as the reference keeps its own ops package's layers.
    # Layers that optimize_for_inference swapped in count as the torch.nn layers they replaced.
    shared = [obj for obj in vars(ops).values() if isinstance(obj, type) and issubclass(obj, nn.Module)]
    return [*shared, *DROP_IN_LAYERS]


def _tracer_options(tracer_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``tracer_kwargs`` with the default leaf modules and autowrapped modules added to what the caller gave."""
    options = dict(tracer_kwargs or {})
    options["autowrap_modules"] = tuple(dict.fromkeys((*options.get("autowrap_modules", ()), math, ops)))
    options["leaf_modules"] = list(dict.fromkeys((*options.get("leaf_modules", ()), *_default_leaf_modules())))
    return options


class _NodeNamingTracer(fx.Tracer):
    """A tracer that names every node it creates by module path and operation (see the module docstring).

    Args:
        leaf_modules: module classes (and their subclasses) not to trace into.
        **kwargs: for ``torch.fx.Tracer`` (``autowrap_modules``, ``autowrap_functions``, ...).
    """

    def __init__(self, leaf_modules: Sequence[type[nn.Module]] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.leaf_types = tuple(leaf_modules)
        self.node_names: dict[fx.Node, str] = {}
        self._uses: dict[str, int] = {}
        # (qualified name, class) of the innermost module whose forward raised while tracing.
        self.failed_in: tuple[str, type[nn.Module]] | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaf_types) or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = (self.path_of_module(m), type(m))
            raise

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **options: Any) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **options)
        node = proxy.node
        # fx keeps the path of the module being called in ``scope``: a leaf module is named by it alone.
        place = self.scope.module_path
        name = place if node.op == "call_module" else f"{place}.{node.name}" if place else node.name
        base = _TRAILING_INDEX.sub(r"\1", name)
        uses = self._uses.get(base, 0)
        self._uses[base] = uses + 1
        self.node_names[node] = f"{base}_{uses}" if uses else base
        return proxy


def _trace(model: nn.Module, tracer_kwargs: dict[str, Any], concrete_args: dict[str, Any] | None) -> _NodeNamingTracer:
    """Trace ``model`` in its current mode; a failure names the module where it happened and what to do."""
    tracer = _NodeNamingTracer(**tracer_kwargs)
    try:
        tracer.trace(model, concrete_args=concrete_args)
    except Exception as error:
        if tracer.failed_in is None:
            where = f"the forward of {type(model).__name__} itself"
            hint = "wrap the untraceable function with tracer_kwargs={'autowrap_functions': [fn]}"
        else:
            path, cls = tracer.failed_in
            where = f"module '{path}' ({cls.__module__}.{cls.__qualname__})"
            hint = (
                f"make it a leaf module with tracer_kwargs={{'leaf_modules': [{cls.__qualname__}]}}, or wrap the "
                "untraceable function with tracer_kwargs={'autowrap_functions': [fn]}"
            )
        mode = "train" if model.training else "eval"
        raise RuntimeError(
            f"torch.fx could not trace {type(model).__name__} in {mode} mode: it failed in {where} "
            f"({type(error).__name__}: {error}). To get past it, {hint}; concrete_args can fix non-tensor inputs."
        ) from error
    return tracer


def _warn_if_modes_differ(train_names: list[str], eval_names: list[str]) -> None:
    if train_names == eval_names:
        return
    if _is_subsequence(eval_names, train_names):
        how = "the eval-mode graph's nodes are a subsequence of the train-mode graph's"
    elif _is_subsequence(train_names, eval_names):
        how = "the train-mode graph's nodes are a subsequence of the eval-mode graph's"
    else:
        how = "the train-mode and eval-mode graphs have different nodes"
    warnings.warn(
        f"{how}; you may need to give train_return_nodes and eval_return_nodes separately "
        "(suppress_diff_warning=True silences this)",
        stacklevel=3,
    )


def _is_subsequence(short: list[str], long: list[str]) -> bool:
    remaining = iter(long)
    return all(any(item == other for other in remaining) for item in short)


def get_graph_node_names(
    model: nn.Module,
    tracer_kwargs: dict[str, Any] | None = None,
    suppress_diff_warning: bool = False,
    concrete_args: dict[str, Any] | None = None,
) -> tuple[list[str], list[str]]:
    """The node names of ``model``'s graph in execution order, traced in train mode and in eval mode.

    These are the names :func:`create_feature_extractor` accepts (a prefix made of whole path components selects
    the last node inside it). The model's own mode is restored afterwards.

    Args:
        model: the model to trace.
        tracer_kwargs: for ``torch.fx.Tracer``, plus ``leaf_modules`` (module classes not to trace into). The
            layers of ``visionzoo.ops`` are always leaves, and ``math`` and ``visionzoo.ops`` functions are
            always wrapped, in addition to what is given here.
        suppress_diff_warning: do not warn when the train and eval graphs differ.
        concrete_args: arguments of ``forward`` to fix rather than trace (``torch.fx.Tracer.trace``).

    Returns:
        ``(train_nodes, eval_nodes)``.

    Raises:
        RuntimeError: the model cannot be traced (the message names the module and what to try).
    """
    options = _tracer_options(tracer_kwargs)
    was_training = model.training
    try:
        train_names = list(_trace(model.train(), options, concrete_args).node_names.values())
        eval_names = list(_trace(model.eval(), options, concrete_args).node_names.values())
    finally:
        model.train(was_training)
    if not suppress_diff_warning:
        _warn_if_modes_differ(train_names, eval_names)
    return train_names, eval_names


def _as_output_names(nodes: ReturnNodes, argument: str) -> dict[str, str]:
    if isinstance(nodes, Mapping):
        result = {str(node): str(output) for node, output in nodes.items()}
    elif isinstance(nodes, Sequence) and not isinstance(nodes, str):
        result = {str(node): str(node) for node in nodes}
    else:
        raise TypeError(f"{argument} must be a list of node names or a dict {{node: output name}}, got {nodes!r}")
    if not result:
        raise ValueError(f"{argument} is empty: name at least one node (see get_graph_node_names)")
    return result


def _selects(query: str, name: str) -> bool:
    """Whether ``query`` is ``name`` or a prefix of it made of whole path components."""
    return name == query or name.startswith(query + ".")


def _graph_returning(tracer: _NodeNamingTracer, wanted: dict[str, str], mode: str) -> fx.Graph:
    """The traced graph rewritten to return ``{output name: node}`` for ``wanted`` (``{query: output name}``)."""
    graph = tracer.graph
    named = [(node, tracer.node_names[node]) for node in graph.nodes if node in tracer.node_names]
    chosen: dict[str, fx.Node] = {}
    for query, output in wanted.items():
        matches = [node for node, name in named if _selects(query, name)]
        if not matches:
            names = [name for _, name in named]
            close = difflib.get_close_matches(query, names, n=5, cutoff=0.5)
            raise ValueError(
                f"node {query!r} is not in the {mode}-mode graph of the model"
                + (f"; close names: {', '.join(close)}" if close else "")
                + ". get_graph_node_names(model) lists them all; if the train and eval graphs differ, give "
                "train_return_nodes and eval_return_nodes separately"
            )
        # A prefix such as "layer2" stands for the last node inside it: the block's output.
        chosen[output] = matches[-1]
    position = {node: index for index, node in enumerate(graph.nodes)}
    outputs = dict(sorted(chosen.items(), key=lambda item: position[item[1]]))
    for node in [node for node in graph.nodes if node.op == "output"]:
        graph.erase_node(node)
    graph.output(outputs)
    # Dead-code elimination asks the module that owns the graph which calls are pure: give the graph one.
    fx.GraphModule(tracer.root, graph)
    graph.eliminate_dead_code()
    graph.lint()
    return graph


def _targets(*graphs: fx.Graph) -> list[str]:
    """The qualified names the graphs read (submodules they call, parameters and buffers they fetch), in order."""
    found = [node.target for graph in graphs for node in graph.nodes if node.op in ("call_module", "get_attr")]
    return list(dict.fromkeys(found))


def _copy_attribute(source: nn.Module, destination: nn.Module, target: str) -> None:
    """Put ``source``'s attribute ``target`` (a dotted path) at the same path in ``destination``, creating empty
    containers on the way; a module, parameter or buffer is shared, not copied."""
    *parents, name = target.split(".")
    for part in parents:
        source = getattr(source, part)
        existing = getattr(destination, part, None)
        if existing is source:  # the whole parent is there already
            return
        if existing is None:
            existing = nn.Module()
            destination.add_module(part, existing)
        destination = existing
    value = getattr(source, name)
    if name in source._buffers:
        destination.register_buffer(name, value, persistent=name not in source._non_persistent_buffers_set)
    else:
        setattr(destination, name, value)


class FeatureExtractor(fx.GraphModule):
    """A ``GraphModule`` with one graph for train mode and one for eval mode, switched by ``train()``/``eval()``.

    It holds only the submodules, parameters and buffers its graphs use, under their names in the original model.
    Made by :func:`create_feature_extractor`.
    """

    def __init__(self, root: nn.Module, train_graph: fx.Graph, eval_graph: fx.Graph, class_name: str) -> None:
        super().__init__(root, train_graph, class_name)  # takes what the train graph uses
        for target in _targets(eval_graph):
            _copy_attribute(root, self, target)
        self.train_graph = train_graph
        self.eval_graph = eval_graph

    def train(self, mode: bool = True) -> FeatureExtractor:
        graph = self.train_graph if mode else self.eval_graph
        if self.graph is not graph:  # setting ``graph`` regenerates the forward's code: only on a real switch
            self.graph = graph
        return super().train(mode)

    def __deepcopy__(self, memo: dict[int, Any]) -> FeatureExtractor:
        used = nn.Module()
        for target in _targets(self.train_graph, self.eval_graph):
            _copy_attribute(self, used, target)
        clone = FeatureExtractor(
            copy.deepcopy(used, memo),
            copy.deepcopy(self.train_graph, memo),
            copy.deepcopy(self.eval_graph, memo),
            type(self).__name__,
        )
        return clone.train(self.training)


def create_feature_extractor(
    model: nn.Module,
    return_nodes: ReturnNodes | None = None,
    train_return_nodes: ReturnNodes | None = None,
    eval_return_nodes: ReturnNodes | None = None,
    tracer_kwargs: dict[str, Any] | None = None,
    suppress_diff_warning: bool = False,
    concrete_args: dict[str, Any] | None = None,
) -> fx.GraphModule:
    """A module that runs ``model`` up to the requested nodes and returns their values as a dict.

    Node names are those of :func:`get_graph_node_names`; a name may be cut short at a dot to mean the last node
    inside that module (``"layer2"`` is the output of ResNet's second stage). Nodes that the requested ones do not
    depend on are removed with their parameters; the remaining state_dict keys are the model's own, so a
    checkpoint of the model loads with ``strict=False``.

    Args:
        model: the model to extract features from.
        return_nodes: a list of node names (each its own output name) or a dict ``{node name: output name}``,
            for both modes.
        train_return_nodes: the same, for train mode only; requires ``eval_return_nodes`` and no ``return_nodes``.
        eval_return_nodes: the same, for eval mode only; requires ``train_return_nodes``.
        tracer_kwargs: see :func:`get_graph_node_names`.
        suppress_diff_warning: do not warn when the train and eval graphs differ.
        concrete_args: arguments of ``forward`` to fix rather than trace.

    Returns:
        A ``torch.fx.GraphModule`` in the model's mode; ``train()`` and ``eval()`` switch its graph.

    Raises:
        ValueError: neither or both forms of return nodes were given, or a node name is not in the graph (the
            message lists close names).
        RuntimeError: the model cannot be traced (the message names the module and what to try).

    Example:
        >>> extractor = create_feature_extractor(resnet50(), {"layer2": "c3", "layer4": "c5"})
        >>> {k: v.shape[1] for k, v in extractor(torch.rand(1, 3, 224, 224)).items()}
        {'c3': 512, 'c5': 2048}
    """
    per_mode = train_return_nodes is not None or eval_return_nodes is not None
    if return_nodes is None and not per_mode:
        raise ValueError("give return_nodes, or train_return_nodes and eval_return_nodes together")
    if return_nodes is not None and per_mode:
        raise ValueError("give either return_nodes or train_return_nodes and eval_return_nodes, not both")
    if per_mode and (train_return_nodes is None or eval_return_nodes is None):
        missing = "eval_return_nodes" if eval_return_nodes is None else "train_return_nodes"
        raise ValueError(f"train_return_nodes and eval_return_nodes go together: {missing} is missing")
    wanted = {
        "train": _as_output_names(
            train_return_nodes if per_mode else return_nodes, "train_return_nodes" if per_mode else "return_nodes"
        ),
        "eval": _as_output_names(
            eval_return_nodes if per_mode else return_nodes, "eval_return_nodes" if per_mode else "return_nodes"
        ),
    }

    options = _tracer_options(tracer_kwargs)
    was_training = model.training
    tracers: dict[str, _NodeNamingTracer] = {}
    graphs: dict[str, fx.Graph] = {}
    try:
        for mode in ("train", "eval"):
            model.train(mode == "train")
            tracers[mode] = _trace(model, options, concrete_args)
            graphs[mode] = _graph_returning(tracers[mode], wanted[mode], mode)
    finally:
        model.train(was_training)
    if not suppress_diff_warning:
        _warn_if_modes_differ(list(tracers["train"].node_names.values()), list(tracers["eval"].node_names.values()))
    extractor = FeatureExtractor(model, graphs["train"], graphs["eval"], type(model).__name__)
    return extractor.train(was_training)
