"""Layer shapes and edges from the project's layer IR (:mod:`cimforge.golden.ir`).

IR layers carry per-sample shapes (``(C, H, W)`` or ``(F,)``), as the partitioner does. Each weighted layer keeps
a reference to its IR layer (:attr:`.network.Layer.source`) so that the fabric's cycle model can be asked about
the very object the compiler maps.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any

from .graph_edges import Node, trace_edges
from .network import Layer, Network, PartitionError, UnknownOpWarning

__all__ = ["from_ir"]

_UNARY_KINDS = {"maxpool", "avgpool", "global_avgpool", "reshape", "clamp"}


def from_ir(graph: Any, name: str | None = None) -> Network:
    """A :class:`~.network.Network` from a :class:`cimforge.golden.ir.Graph`.

    Raises
    ------
    PartitionError
        ``graph`` is not an IR graph.

    Warns
    -----
    UnknownOpWarning
        Layer kinds the partitioner does not know, carried as zero-cost layers.
    """
    if not hasattr(graph, "layers") or not hasattr(graph, "inputs"):
        raise PartitionError(f"from_ir: expected a cimforge.golden.ir.Graph, got {type(graph).__name__}")
    layers: list[Layer] = []
    layer_of: dict[str, int] = {}
    nodes: list[Node] = []
    unknown: dict[str, list[str]] = defaultdict(list)
    for l in graph.layers:
        ins = [t.name for t in l.inputs]
        outs = [l.output.name]
        if l.kind == "conv2d":
            c, h, w = l.input.shape
            co, ho, wo = l.output.shape
            layer_of[l.name] = len(layers)
            layers.append(Layer(l.name, "Conv", "conv", int(c), int(co), (h, w), (ho, wo), tuple(l.kernel),
                                tuple(l.stride), int(l.groups), source=l))
            role = "weighted"
        elif l.kind == "dense":
            flat = _flat_hw(graph, l.input.name, l.in_features)
            layer_of[l.name] = len(layers)
            layers.append(Layer(l.name, "Gemm", "fc", int(l.in_features), int(l.out_features), flat_hw=flat,
                                source=l))
            role = "weighted"
        elif l.kind in _UNARY_KINDS:
            role = "unary"
        elif l.kind == "add":
            role = "merge"
        elif l.kind == "concat":
            role = "concat"
        else:
            unknown[l.kind].append(l.name)
            layer_of[l.name] = len(layers)
            layers.append(Layer(l.name, l.kind, "other"))
            role = "carried"
        shares = [float(t.shape[0]) for t in l.inputs] if role == "concat" else []
        nodes.append(Node(l.name, role, ins, outs, shares))
    if unknown:
        from .onnx_import import _unknown_message

        warnings.warn(UnknownOpWarning(_unknown_message(name or graph.name, unknown)), stacklevel=2)
    in_shape = tuple(graph.inputs[0].shape) if graph.inputs else ()
    return Network(name or graph.name, tuple(layers), trace_edges(nodes, layer_of), in_shape, "ir")


def _flat_hw(graph: Any, tensor: str, features: int) -> tuple[int, int]:
    """``(h, w)`` of the ``C x h x w`` map a Dense input was flattened from, else ``(1, 1)``."""
    seen = 0
    while seen < 8:
        p = graph.producer(tensor)
        if p is None or p.kind != "reshape":
            return (1, 1)
        src = p.input.shape
        if len(src) == 3 and src[0] * src[1] * src[2] == features:
            return (int(src[1]), int(src[2]))
        tensor, seen = p.input.name, seen + 1
    return (1, 1)
