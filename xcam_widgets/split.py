"""Run only the part of a network after a layer: `tail(A')` for edited activations A'.

The model is traced with torch.fx, with the layer kept as one leaf node. Every node that depends
on the layer's output forms the tail graph. Values computed before the layer that the tail still
reads (a residual branch, an input size) are evaluated once per call and fed in as constants,
so nothing before the layer runs again per ablation batch. Where tracing fails, whatever the error
(torch.fx raises NameError for a sliced `nn.Sequential`, TraceError for data-dependent control
flow, and many other types), or the traced tail does not reproduce the model's score, a hook-based
fallback replays the whole model with the layer's output replaced: slower, always correct.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .model_state import evaluation_mode

Tail = Callable[[torch.Tensor, int], Any]


class UntraceableError(ValueError):
    """torch.fx could not trace the model, or not cut it at the layer; the message says why."""


class _LayerLeafTracer(fx.Tracer):
    """Keeps `layer` as a single call_module node, whatever it contains."""

    def __init__(self, layer: str):
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, module: nn.Module, qualname: str) -> bool:
        return qualname == self.layer or super().is_leaf_module(module, qualname)


@dataclass(frozen=True)
class TailGraph:
    """The traced tail: a GraphModule taking (A, *frontier) and the nodes that feed the frontier."""

    root: fx.GraphModule
    module: fx.GraphModule
    frontier: tuple[fx.Node, ...]
    layer_node: fx.Node


# Traces per model and layer: tracing resnet50 costs ~20 ms of Python, more than a GPU's whole
# Grad-CAM. A trace, or the reason it failed, is reused while the model's structure (`_structure`)
# is the one it was made from. A failure is kept as its message: an exception's frames would hold
# the model.
_TRACES: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[Hashable, TailGraph | str]]] = weakref.WeakKeyDictionary()


def _structure(model: nn.Module) -> Hashable:
    """What a trace depends on besides parameter values: every submodule's name, identity, class,
    `training` flag (code may branch on it) and any `forward` assigned on the instance. A trace keeps
    its submodules alive, so an id cannot be reused by a replacement while the trace that names it
    is cached."""
    return tuple((name, id(m), type(m), m.training, m.__dict__.get("forward")) for name, m in model.named_modules())


def trace_tail(model: nn.Module, layer: str) -> TailGraph:
    """Trace `model` in eval mode (the graph every use runs) and cut it at `layer` (cached, see
    `_TRACES`). Raises UntraceableError, whatever went wrong inside torch.fx."""
    with evaluation_mode(model):  # the model's lock: no other thread flips its flags mid-trace
        structure = _structure(model)
        per_model = _TRACES.setdefault(model, {})
        cached = per_model.get(layer)
        if cached is None or cached[0] != structure:
            cached = per_model[layer] = (structure, _trace_or_reason(model, layer))
    if isinstance(cached[1], str):
        raise UntraceableError(f"torch.fx cannot trace {type(model).__name__} up to layer {layer!r}: {cached[1]}")
    return cached[1]


def _trace_or_reason(model: nn.Module, layer: str) -> TailGraph | str:
    try:
        return _trace_tail(model, layer)
    except Exception as error:  # noqa: BLE001 - torch.fx raises almost any type on Python it cannot trace
        return f"{type(error).__name__}: {error}"


def _trace_tail(model: nn.Module, layer: str) -> TailGraph:
    tracer = _LayerLeafTracer(layer)
    root = fx.GraphModule(model, tracer.trace(model))
    calls = [n for n in root.graph.nodes if n.op == "call_module" and n.target == layer]
    if len(calls) != 1:
        raise ValueError(f"layer {layer!r} is called {len(calls)} times in the traced graph")
    layer_node = calls[0]
    downstream = {layer_node}
    frontier: dict[fx.Node, None] = {}
    for node in root.graph.nodes:
        if node is layer_node or not any(a in downstream for a in node.all_input_nodes):
            continue
        downstream.add(node)
        for arg in node.all_input_nodes:
            if arg not in downstream:
                frontier[arg] = None
    graph = fx.Graph()
    env = {layer_node: graph.placeholder("activation")}
    for i, node in enumerate(frontier):
        env[node] = graph.placeholder(f"frontier_{i}")
    output_nodes = [n for n in root.graph.nodes if n.op == "output"]
    if not output_nodes or output_nodes[0] not in downstream:
        raise ValueError(f"the model's output does not depend on layer {layer!r}")
    for node in root.graph.nodes:
        if node in downstream and node is not layer_node:
            env[node] = graph.node_copy(node, lambda arg: env[arg])
    return TailGraph(root, fx.GraphModule(root, graph), tuple(frontier), layer_node)


class _FrontierRecorder(fx.Interpreter):
    """Runs the traced model once and keeps the values of the tail's frontier nodes."""

    def __init__(self, tail: TailGraph):
        super().__init__(tail.root)
        self.wanted = set(tail.frontier)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, node: fx.Node) -> Any:
        value = super().run_node(node)
        if node in self.wanted:
            self.values[node] = value
        return value


def _per_image(value: Any, image: int, rows: int, batch: int) -> Any:
    """The frontier value of one image, repeated for `rows` ablated copies."""
    if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == batch:
        return value[image : image + 1].expand(rows, *value.shape[1:])
    return value


def _fx_tail(tail: TailGraph, x: torch.Tensor) -> Tail:
    values = []
    if tail.frontier:  # one forward to record what the tail reads from before the layer
        recorder = _FrontierRecorder(tail)
        with torch.no_grad():
            recorder.run(x)
        values = [recorder.values[n] for n in tail.frontier]
    batch = x.shape[0]

    def run(acts: torch.Tensor, image: int) -> Any:
        rows = acts.shape[0]
        return tail.module(acts, *(_per_image(v, image, rows, batch) for v in values))

    return run


def _hook_tail(model: nn.Module, layer_module: nn.Module, x: torch.Tensor) -> Tail:
    """Fallback: replay the whole model on copies of image `image`, swapping in `acts` at the layer."""

    def run(acts: torch.Tensor, image: int) -> Any:
        handle = layer_module.register_forward_hook(lambda m, i, o: acts)
        try:
            return model(x[image : image + 1].expand(acts.shape[0], *x.shape[1:]))
        finally:
            handle.remove()

    return run


def make_tail(model: nn.Module, layer: str, x: torch.Tensor, check: Callable[[Tail], bool]) -> tuple[Tail, bool]:
    """The tail after `layer` for inputs `x`, and whether it is the fast traced one.

    `check(tail)` must confirm that the tail reproduces the model's scores on the clean
    activations; a traced tail that fails it, or fails to run at all (an untraceable size
    computation, say), is replaced by the fallback.
    """
    layer_module = dict(model.named_modules())[layer]
    try:
        tail = _fx_tail(trace_tail(model, layer), x)
        if check(tail):
            return tail, True
    except Exception:  # noqa: BLE001 - any failure of the traced path: the fallback replays the real model
        pass
    return _hook_tail(model, layer_module, x), False


_FLATTEN = {torch.flatten, torch.squeeze, torch.reshape}
_FLATTEN_METHODS = {"flatten", "view", "reshape", "squeeze"}


def _is_global_avg_pool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        module = modules[str(node.target)]
        return isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1))
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        return node.args[1:2] in ((1,), ((1, 1),))
    if (node.op == "call_method" and node.target == "mean") or (
        node.op == "call_function" and node.target is torch.mean
    ):
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return isinstance(dims, (tuple, list)) and sorted(d % 4 for d in dims) == [2, 3]
    return False


def gap_linear_head(model: nn.Module, layer: str) -> nn.Linear | None:
    """The Linear layer when everything after `layer` is global average pooling, flattening,
    dropout/identity and one Linear: S = W·mean_xy(A) + b. Then ∂S_c/∂A_k is constant over space,
    so Grad-CAM = XGrad-CAM, CAM's weights are W[c], and channel drops have the closed form
    W[c,k]·mean(A_k). None when the head is anything else or cannot be traced."""
    try:
        graph = trace_tail(model, layer)
    except UntraceableError:
        return None
    if graph.frontier:
        return None
    modules = dict(model.named_modules())
    nodes = [n for n in graph.module.graph.nodes if n.op not in ("placeholder", "output")]
    if len(nodes) < 2 or not _is_global_avg_pool(nodes[0], modules):
        return None
    last = nodes[-1]
    head = modules[str(last.target)] if last.op == "call_module" else None
    if not isinstance(head, nn.Linear):
        return None
    for node in nodes[1:-1]:
        harmless = (
            (node.op == "call_module" and isinstance(modules[str(node.target)], (nn.Dropout, nn.Identity, nn.Flatten)))
            or (node.op == "call_function" and node.target in _FLATTEN)
            or (node.op == "call_method" and node.target in _FLATTEN_METHODS)
        )
        if not harmless:
            return None
    output = [n for n in graph.module.graph.nodes if n.op == "output"][0]
    return head if output.args[0] is last else None
