"""Data-flow edges between weighted layers, from any graph of nodes over named tensors (ONNX or the layer IR).

Each node has a role: ``weighted`` (a partitioned layer), ``unary`` (zero-cost, data passes through its first
input: activations, pooling, reshapes, quantize/dequantize), ``merge`` (element-wise op of two or more activations:
residual adds), ``concat`` (inputs side by side along channels) or ``carried`` (an unknown op carried as a
zero-cost layer; data passes through all its inputs).

A weighted layer's input is traced back to the weighted layers that produce it:

* through ``unary`` and ``carried`` nodes unchanged;
* through a ``concat``, each input with its channel share;
* at a ``merge``, per input branch: if the branch forks off a tensor that a weighted layer also reads (walking
  back through unary nodes), it is an identity shortcut and gives a ``block`` edge from that layer (AccPar's
  shortcut term, keyed by the block's first layer); if it ends in a weighted layer, an ordinary ``inter`` edge;
  otherwise the trace goes on through it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

from .network import Edge

__all__ = ["Node", "trace_edges"]


@dataclass
class Node:
    """A node of the source graph.

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


def trace_edges(nodes: Sequence[Node], layer_of: dict[str, int]) -> tuple[Edge, ...]:
    """Edges between weighted layers. ``layer_of`` maps the name of each weighted and carried node to its index
    in the network's layer list (topological order)."""
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
