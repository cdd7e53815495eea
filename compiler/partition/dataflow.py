"""The partitioner's reading of a model: the layers it partitions and the data-flow edges between them.

The partitioner works on the project's layer IR (:mod:`cimforge.golden.ir`): a quantized :class:`Graph`, or the
shape-only :class:`ShapeGraph` of a float model (:func:`cimforge.golden.onnx_import.load_onnx_shapes`) or of a
declared topology (:mod:`.zoo`). :func:`dataflow` turns either into a :class:`Dataflow`: the weighted layers
(``conv2d``, ``dense``; the papers' ``F_l``, ``W_l``, ``F_{l+1}`` per sample, the batch is a parameter of the cost
models), the ``other`` layers carried at zero cost, and the edges between weighted layers.

Each layer has a role, from its kind: ``weighted``; ``unary`` (no weights, the data passes through its first input:
activations, pooling, reshapes, quantize/dequantize); ``merge`` (element-wise op of two or more computed tensors:
residual adds); ``concat`` (inputs side by side, each with its share of the channels); ``carried`` (an unknown op;
the data passes through all its inputs).

A weighted layer's input is traced back to the weighted layers that produce it:

* through ``unary`` and ``carried`` layers unchanged;
* through a ``concat``, each input with its channel share;
* at a ``merge``, per input branch: if the branch forks off a tensor that a weighted layer also reads (walking
  back through unary layers), it is an identity shortcut and gives a ``block`` edge from that layer (AccPar's
  shortcut term, keyed by the block's first layer); if it ends in a weighted layer, an ordinary ``inter`` edge;
  otherwise the trace goes on through it.

An edge carries the *share* of the consumer's input tensor that it delivers (1 on a chain, a channel fraction
behind a concat) and its kind: ``"inter"`` (AccPar's inter-layer term) or ``"block"`` (the shortcut term, keyed by
the block's first layer and the layer that consumes the merged tensor).
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

from cimforge.golden.ir import Graph, IRError, LayerShape, ShapeGraph
from cimforge.golden.onnx_import import UnknownOpWarning, unknown_ops_message

__all__ = ["PartitionError", "UnknownOpWarning", "Edge", "Dataflow", "dataflow", "as_view", "ROLES",
           "in_positions", "out_positions", "plane", "Node", "trace_edges"]


class PartitionError(ValueError):
    """A model or request the partitioner cannot handle; the message names the layer, tensor or value."""


#: Role of each layer kind in the data flow (kinds not listed are carried, with an :class:`UnknownOpWarning`).
ROLES = {"conv2d": "weighted", "dense": "weighted", "other": "carried", "concat": "concat", "add": "merge", "mul": "merge",
         "merge": "merge", "maxpool": "unary", "avgpool": "unary", "global_avgpool": "unary", "reshape": "unary",
         "clamp": "unary", "unary": "unary", "softmax": "unary", "lrn": "unary", "lut": "unary", "resize": "unary",
         # golden-only weighted kinds (the compiler maps Conv2d and Dense only): data flows through the first input
         "matmul": "unary", "conv_integer": "unary", "matmul_integer": "unary",
         # golden-only float chains (numerics="onnx"): a Sum of the residual streams merges them
         "float_chain": "merge"}


@dataclass(frozen=True)
class Edge:
    """Data flow from weighted layer ``src`` to weighted layer ``dst`` (indices into :attr:`Dataflow.layers`).

    Parameters
    ----------
    src, dst : int
        Producer and consumer (``src < dst``, topological order).
    share : float
        Fraction of ``dst``'s input tensor this edge delivers (0 < share <= 1).
    kind : str
        ``"inter"`` (AccPar's inter-layer term) or ``"block"`` (AccPar's shortcut term: ``src`` is the first layer
        of a residual block, ``dst`` consumes the block's merged output).
    """

    src: int
    dst: int
    share: float = 1.0
    kind: str = "inter"

    def __post_init__(self) -> None:
        if self.kind not in ("inter", "block"):
            raise PartitionError(f"edge {self.src}->{self.dst}: kind {self.kind!r} is not inter or block")
        if not self.src < self.dst:
            raise PartitionError(f"edge {self.src}->{self.dst}: the producer must come before the consumer")
        if not 0.0 < self.share <= 1.0 + 1e-9:
            raise PartitionError(f"edge {self.src}->{self.dst}: share {self.share} outside (0, 1]")


@dataclass(frozen=True)
class Dataflow:
    """What the partitioner sees of a model.

    Parameters
    ----------
    name : str
    layers : tuple of LayerShape
        The weighted layers and the carried (``other``) ones, in topological order.
    edges : tuple of Edge
        Data flow between weighted layers (indices into ``layers``).
    input_shape : tuple of int
        Per-sample input shape, for reports.
    """

    name: str
    layers: tuple[LayerShape, ...]
    edges: tuple[Edge, ...] = ()
    input_shape: tuple[int, ...] = ()
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "edges", tuple(self.edges))
        if not any(l.weighted for l in self.layers):
            raise PartitionError(f"network {self.name!r}: no weighted (Conv/Gemm/MatMul) layer to partition")
        for e in self.edges:
            for i in (e.src, e.dst):
                if not 0 <= i < len(self.layers) or not self.layers[i].weighted:
                    raise PartitionError(f"network {self.name!r}: edge {e.src}->{e.dst} does not join two "
                                         f"weighted layers")
        # Position of each weighted layer among the weighted ones (the DP's variables).
        self._index.update({li: k for k, li in enumerate(i for i, l in enumerate(self.layers) if l.weighted)})

    @property
    def weighted(self) -> tuple[LayerShape, ...]:
        """The weighted layers, in order (the partitioner's variables)."""
        return tuple(l for l in self.layers if l.weighted)

    @property
    def carried(self) -> tuple[LayerShape, ...]:
        """Unknown ops carried at zero cost."""
        return tuple(l for l in self.layers if not l.weighted)

    def var_edges(self) -> list[tuple[int, int, float, str]]:
        """Edges as ``(src, dst, share, kind)`` over weighted-layer positions (0..L-1)."""
        ix = self._index
        return [(ix[e.src], ix[e.dst], e.share, e.kind) for e in self.edges]


def as_view(model: Any) -> ShapeGraph:
    """``model`` as a :class:`ShapeGraph`: a :class:`Graph`'s shape-only view, a view itself unchanged.

    Raises
    ------
    PartitionError
        ``model`` is neither.
    """
    if isinstance(model, ShapeGraph):
        return model
    if isinstance(model, Graph):
        return _view_of(model)
    raise PartitionError(f"expected a cimforge.golden.ir.Graph or ShapeGraph, got {type(model).__name__}")


@lru_cache(maxsize=64)
def _view_of(graph: Graph) -> ShapeGraph:
    return ShapeGraph.of(graph)


def dataflow(model: Any) -> Dataflow:
    """The :class:`Dataflow` of a :class:`Graph` or :class:`ShapeGraph` (a :class:`Dataflow` is returned as is).

    Warns
    -----
    UnknownOpWarning
        Layer kinds without a role in :data:`ROLES` (carried at zero cost).
    """
    if isinstance(model, Dataflow):
        return model
    flow, unknown = _dataflow(as_view(model))
    if unknown:
        warnings.warn(UnknownOpWarning(unknown_ops_message(flow.name, unknown)), stacklevel=2)
    return flow


@lru_cache(maxsize=64)
def _dataflow(view: ShapeGraph) -> tuple[Dataflow, dict[str, list[str]]]:
    layers: list[LayerShape] = []
    layer_of: dict[str, int] = {}
    nodes: list[Node] = []
    unknown: dict[str, list[str]] = defaultdict(list)
    for l in view.layers:
        role = ROLES.get(l.kind)
        if role is None:
            unknown[l.kind].append(l.name)
            role = "carried"
        if role in ("weighted", "carried"):
            layer_of[l.name] = len(layers)
            layers.append(l)
        shares = [_share(s, l.axis) for s in l.input_shapes] if role == "concat" else []
        nodes.append(Node(l.name, role, list(l.inputs), list(l.outputs), shares))
    try:
        flow = Dataflow(view.name, tuple(layers), trace_edges(nodes, layer_of), tuple(view.input_shape))
    except IRError as e:  # pragma: no cover - views are validated when made
        raise PartitionError(str(e)) from None
    return flow, dict(unknown)


def _share(shape: tuple[int, ...] | None, axis: int) -> float:
    """A concat input's weight: its extent along the concatenation axis (1 when unknown)."""
    if not shape or not -len(shape) <= axis < len(shape):
        return 1.0
    return float(shape[axis])


def in_positions(layer: LayerShape) -> int:
    """Input positions per sample: the input map's area (conv2d), the leading positions of a dense layer."""
    x = layer.input_shape
    return math.prod(x[1:]) if layer.kind == "conv2d" else math.prod(x[:-1])


def out_positions(layer: LayerShape) -> int:
    """Output positions per sample (``M`` of the layer's GEMM view)."""
    return layer.gemm.M


def plane(dims: Sequence[int]) -> tuple[int, int]:
    """A spatial extent as ``(h, w)``: 1-D as ``(n, 1)``, 3-D and more folded into ``(product, 1)`` (the cost
    models use areas only)."""
    return (dims[0], dims[1]) if len(dims) == 2 else (math.prod(dims), 1)


@dataclass
class Node:
    """A layer of the view as the trace sees it: its role and its computed inputs and outputs.

    Parameters
    ----------
    name : str
    role : str
        ``weighted``, ``unary``, ``merge``, ``concat`` or ``carried``.
    inputs : list of str
        Activation (non-constant) input tensors; for ``weighted`` and ``unary`` the first is the data.
    outputs : list of str
    shares : list of float
        For ``concat``: each input's channel count (any positive weights).
    """

    name: str
    role: str
    inputs: list[str]
    outputs: list[str]
    shares: list[float] = field(default_factory=list)


def check_acyclic(nodes: Sequence[Node]) -> None:
    """Raise :class:`PartitionError` naming the nodes of a cycle, if the data flow of ``nodes`` has one (Kahn's
    algorithm over tensor producers: the walks below would otherwise loop forever on a cyclic graph).

    A tensor no node produces is an input; a node is ready once every input of it is.
    """
    producer = {o: n.name for n in nodes for o in n.outputs}
    waiting = {n.name: {producer[i] for i in n.inputs if i in producer} for n in nodes}
    users: dict[str, list[str]] = defaultdict(list)
    for name, deps in waiting.items():
        for d in deps:
            users[d].append(name)
    ready = [name for name, deps in waiting.items() if not deps]
    done = set()
    while ready:
        name = ready.pop()
        done.add(name)
        for u in users[name]:
            waiting[u].discard(name)
            if not waiting[u] and u not in done:
                ready.append(u)
    stuck = [n.name for n in nodes if n.name not in done]
    if stuck:
        raise PartitionError(f"the graph has a cycle through {len(stuck)} node(s) ({', '.join(stuck[:4])}"
                             f"{', ...' if len(stuck) > 4 else ''}): allowed an acyclic data flow")


def trace_edges(nodes: Sequence[Node], layer_of: dict[str, int]) -> tuple[Edge, ...]:
    """Edges between weighted layers. ``layer_of`` maps the name of each weighted and carried node to its index
    in :attr:`Dataflow.layers` (topological order).

    Raises
    ------
    PartitionError
        The data flow has a cycle (:func:`check_acyclic`).
    """
    check_acyclic(nodes)
    producer: dict[str, Node] = {}
    consumers: dict[str, list[Node]] = defaultdict(list)
    for n in nodes:
        for o in n.outputs:
            producer[o] = n
        for i in n.inputs:
            consumers[i].append(n)

    def data_in(n: Node) -> list[str]:
        return n.inputs[:1] if n.role in ("weighted", "unary") else n.inputs

    def first_weighted_consumer(t: str, exclude: Node | None) -> Node | None:
        frontier, seen, found = [t], set(), []
        while frontier:
            x = frontier.pop()
            for c in consumers.get(x, []):
                if c is exclude or c.name in seen:
                    continue
                seen.add(c.name)
                if c.role == "weighted":
                    found.append(c)
                elif c.role in ("unary", "carried"):
                    frontier.extend(c.outputs)
        return min(found, key=lambda c: layer_of[c.name]) if found else None

    def walk_back(t: str, merge: Node) -> list[tuple[str, Node]]:
        walk, user = [(t, merge)], merge
        while t in producer and producer[t].role == "unary" and producer[t].inputs:
            user, t = producer[t], producer[t].inputs[0]
            walk.append((t, user))
        return walk

    memo: dict[str, list[tuple[str, str, float]]] = {}

    def trace(t: str) -> list[tuple[str, str, float]]:
        if t in memo:
            return memo[t]
        memo[t] = []
        n = producer.get(t)
        out: list[tuple[str, str, float]] = []
        if n is None:
            pass
        elif n.role == "weighted":
            out = [("inter", n.name, 1.0)]
        elif n.role == "concat":
            total = sum(n.shares) or 1.0
            for i, w in zip(n.inputs, n.shares):
                out += [(k, s, f * w / total) for k, s, f in trace(i)]
        elif n.role == "merge" and len(n.inputs) >= 2:
            for i in n.inputs:
                walk = walk_back(i, n)
                fork = next((a for a in (first_weighted_consumer(x, u) for x, u in walk) if a is not None), None)
                p = producer.get(walk[-1][0])
                if fork is not None:
                    out.append(("block", fork.name, 1.0))
                elif p is not None and p.role == "weighted":
                    out.append(("inter", p.name, 1.0))
                else:
                    out += trace(walk[-1][0])
        else:
            for i in data_in(n):
                out += trace(i)
        memo[t] = out
        return out

    edges: dict[tuple[int, int, str], float] = defaultdict(float)
    for n in nodes:
        if n.role != "weighted" or not n.inputs:
            continue
        li = layer_of[n.name]
        for kind, src, share in trace(n.inputs[0]):
            si = layer_of[src]
            if si < li:  # a shortcut into the block's own first layer is not a shortcut
                edges[(si, li, kind)] += share
    return tuple(Edge(s, d, min(1.0, w), k) for (s, d, k), w in sorted(edges.items()))
