"""The layer graph the partitioner works on: weighted layers, the zero-cost layers carried for unknown ops, and
the data-flow edges between weighted layers.

The papers (HyPar, AccPar) describe a layer by three matrices: the input feature map ``F_l`` (batch x input
channels, times the input map size), the kernel ``W_l`` (input channels x output channels, times the kernel size)
and the output ``F_{l+1}`` (batch x output channels, times the output map size). A :class:`Layer` stores exactly
those dimensions, per sample; the batch is a parameter of the cost models.

Edges connect a producing weighted layer to a consuming one (through any number of activations, pooling,
reshapes, concatenations and merges). An edge carries the *share* of the consumer's input tensor that it
delivers (1 on a chain, a channel fraction behind a Concat) and a kind: ``"inter"`` for ordinary data flow
(AccPar's inter-layer term) or ``"block"`` for a ResNet identity shortcut (AccPar's shortcut term, keyed by the
block's first layer and the layer that consumes the merged tensor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

__all__ = [
    "PartitionError", "UnknownOpWarning", "Layer", "Edge", "Network", "sequential", "chain",
]


class PartitionError(ValueError):
    """A model or request the partitioner cannot handle; the message names the node, tensor or value."""


class UnknownOpWarning(UserWarning):
    """Ops the partitioner does not know were carried as zero-cost layers (the message names them)."""


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) == 1:
        return (v[0], 1)
    if len(v) == 2:
        return v  # type: ignore[return-value]
    # 3-D (or higher) spatial extents are folded into (product, 1): the cost models only use areas.
    return (math.prod(v), 1)


@dataclass(frozen=True)
class Layer:
    """One layer of the graph, per sample.

    Parameters
    ----------
    name : str
        Unique name (the ONNX node name, or one made from the op and its output).
    op : str
        Op type it came from (``Conv``, ``Gemm``, ``QLinearConv``, or an unknown op's type).
    kind : str
        ``"conv"`` or ``"fc"`` (weighted layers, partitioned) or ``"other"`` (an unknown op carried at zero
        cost).
    in_ch, out_ch : int
        Input and output channels (features for ``fc``).
    in_hw, out_hw : tuple of int
        Input and output map sizes (1 x 1 for ``fc``; an ``fc`` over a sequence keeps its length here).
    kernel, stride : tuple of int
        Kernel and stride (``conv``).
    groups : int
        Convolution groups; the kernel is ``out_ch x in_ch/groups x kernel``.
    flat_hw : tuple of int
        For an ``fc`` whose input is a flattened ``C x h x w`` map: ``(h, w)`` (used when scaling a topology).
    source : object, optional
        The object the layer was made from (a :mod:`cimforge.golden.ir` layer), handed to the fabric's cycle
        model; not compared.
    """

    name: str
    op: str
    kind: str
    in_ch: int = 1
    out_ch: int = 1
    in_hw: tuple[int, int] = (1, 1)
    out_hw: tuple[int, int] = (1, 1)
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    groups: int = 1
    flat_hw: tuple[int, int] = (1, 1)
    source: object = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("conv", "fc", "other"):
            raise PartitionError(f"layer {self.name!r}: kind {self.kind!r} is not one of conv, fc, other")
        object.__setattr__(self, "in_hw", _pair(self.in_hw))
        object.__setattr__(self, "out_hw", _pair(self.out_hw))
        object.__setattr__(self, "kernel", _pair(self.kernel))
        object.__setattr__(self, "stride", _pair(self.stride))
        object.__setattr__(self, "flat_hw", _pair(self.flat_hw))
        if self.weighted:
            for f in ("in_ch", "out_ch", "groups"):
                v = getattr(self, f)
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise PartitionError(f"layer {self.name!r}: {f} = {v!r}, expected a positive integer")
            if self.in_ch % self.groups or self.out_ch % self.groups:
                raise PartitionError(f"layer {self.name!r}: groups = {self.groups} must divide in_ch = "
                                     f"{self.in_ch} and out_ch = {self.out_ch}")
            for f in ("in_hw", "out_hw", "kernel"):
                if min(getattr(self, f)) < 1:
                    raise PartitionError(f"layer {self.name!r}: {f} = {getattr(self, f)}, expected positive sizes")

    # ---------------------------------------------------------------------------------------------------
    @property
    def weighted(self) -> bool:
        return self.kind in ("conv", "fc")

    @property
    def ifmap(self) -> int:
        """Input map area ``Hi * Wi``."""
        return self.in_hw[0] * self.in_hw[1]

    @property
    def ofmap(self) -> int:
        """Output map area ``Ho * Wo``."""
        return self.out_hw[0] * self.out_hw[1]

    @property
    def ksize(self) -> int:
        """Kernel area ``kh * kw``."""
        return self.kernel[0] * self.kernel[1]

    @property
    def weight_elems(self) -> int:
        """Kernel elements: ``in_ch / groups * out_ch * kh * kw``."""
        return self.in_ch // self.groups * self.out_ch * self.ksize if self.weighted else 0

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample (forward)."""
        return self.weight_elems * self.ofmap

    @property
    def gemm(self) -> tuple[int, int, int]:
        """The layer as ``groups`` matrix products, per sample: ``(M, K, N)`` = (output positions, reduction
        length ``in_ch/groups * kh * kw``, outputs per group ``out_ch/groups``)."""
        return (self.ofmap, self.in_ch // self.groups * self.ksize, self.out_ch // self.groups)

    def describe(self) -> str:
        """A short shape string: ``3x224x224 -> 96x54x54 k11 s4`` (conv), ``9216 -> 4096`` (fc)."""
        if self.kind == "conv":
            g = f" g{self.groups}" if self.groups > 1 else ""
            return (f"{self.in_ch}x{self.in_hw[0]}x{self.in_hw[1]} -> {self.out_ch}x{self.out_hw[0]}x"
                    f"{self.out_hw[1]} k{self.kernel[0]}" + (f"x{self.kernel[1]}" if self.kernel[1] != self.kernel[0] else "")
                    + (f" s{self.stride[0]}" if self.stride[0] > 1 else "") + g)
        if self.kind == "fc":
            seq = f" (x{self.ofmap})" if self.ofmap > 1 else ""
            return f"{self.in_ch} -> {self.out_ch}{seq}"
        return "(zero cost)"


@dataclass(frozen=True)
class Edge:
    """Data flow from weighted layer ``src`` to weighted layer ``dst`` (indices into :attr:`Network.layers`).

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
class Network:
    """A topology ready for partitioning.

    Parameters
    ----------
    name : str
        Display name.
    layers : tuple of Layer
        Weighted layers and carried zero-cost layers, in topological order.
    edges : tuple of Edge
        Data flow between weighted layers.
    input_shape : tuple of int
        Per-sample input shape (``C, H, W``), for reports.
    source : str
        Where it came from (a file path or ``"builtin"``).
    """

    name: str
    layers: tuple[Layer, ...]
    edges: tuple[Edge, ...] = ()
    input_shape: tuple[int, ...] = ()
    source: str = "builtin"
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "edges", tuple(self.edges))
        names = [l.name for l in self.layers]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise PartitionError(f"network {self.name!r}: duplicate layer names {dup}")
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
    def weighted(self) -> tuple[Layer, ...]:
        """The weighted layers, in order (the partitioner's variables)."""
        return tuple(l for l in self.layers if l.weighted)

    @property
    def carried(self) -> tuple[Layer, ...]:
        """Unknown ops carried at zero cost."""
        return tuple(l for l in self.layers if not l.weighted)

    def var_edges(self) -> list[tuple[int, int, float, str]]:
        """Edges as ``(src, dst, share, kind)`` over weighted-layer positions (0..L-1)."""
        ix = self._index
        return [(ix[e.src], ix[e.dst], e.share, e.kind) for e in self.edges]

    def scaled(self, channel_div: int = 1, spatial_div: int = 1, name: str | None = None) -> "Network":
        """The same topology with channels divided by ``channel_div`` and maps by ``spatial_div`` (ceilings, at
        least 1; the network's input channels and groups are kept when they would not divide). Used to fit a
        real topology to a small fabric."""
        if channel_div < 1 or spatial_div < 1:
            raise PartitionError(f"scaled: divisors must be >= 1, got {channel_div}, {spatial_div}")
        def ch(c: int) -> int:
            return max(1, -(-c // channel_div))

        def hw(p: tuple[int, int]) -> tuple[int, int]:
            return (max(1, -(-p[0] // spatial_div)), max(1, -(-p[1] // spatial_div)))

        first = self.weighted[0]
        out = []
        for l in self.layers:
            if not l.weighted:
                out.append(l)
                continue
            in_ch, flat = (l.in_ch if l is first else ch(l.in_ch)), l.flat_hw
            if l.kind == "fc" and l.flat_hw != (1, 1):
                flat = hw(l.flat_hw)
                in_ch = ch(l.in_ch // (l.flat_hw[0] * l.flat_hw[1])) * flat[0] * flat[1]
            out_ch = ch(l.out_ch)
            # Depthwise stays depthwise; other grouped layers keep the largest group count that still divides.
            groups = min(in_ch, out_ch) if l.groups == l.in_ch == l.out_ch else l.groups
            while in_ch % groups or out_ch % groups:
                groups -= 1
            conv = l.kind == "conv"
            out.append(replace(l, in_ch=in_ch, out_ch=out_ch, groups=groups, flat_hw=flat,
                               in_hw=hw(l.in_hw) if conv else l.in_hw, out_hw=hw(l.out_hw) if conv else l.out_hw))
        return replace(self, name=name or f"{self.name}/c{channel_div}s{spatial_div}", layers=tuple(out))


# ---------------------------------------------------------------------------------------------------------
def chain(name: str, layers: Iterable[Layer], blocks: Iterable[tuple[int, int]] = (),
          input_shape: tuple[int, ...] = ()) -> Network:
    """A chain of declared layers (each feeds the next), with optional shortcut ``blocks`` given as
    ``(first_layer_of_block, consumer_of_merged_output)`` pairs of weighted-layer positions."""
    layers = tuple(layers)
    edges = [Edge(i, i + 1) for i in range(len(layers) - 1)]
    edges += [Edge(a, c, 1.0, "block") for a, c in blocks]
    return Network(name, layers, tuple(edges), input_shape)


def sequential(name: str, input_shape: tuple[int, int, int], specs: Iterable[tuple]) -> Network:
    """Build a chain from simple specs, computing shapes like ONNX does.

    Specs: ``("conv", out_ch, k, stride=1, pad=0, groups=1)``, ``("pool", k, stride=k)`` (max or average: the
    same shapes), ``("fc", out_features)``, and shape-preserving ``("relu",)``. A ``fc`` after a map flattens it.

    Examples
    --------
    The digits CNN of ``models/``: ``sequential("digits", (1, 8, 8), [("conv", 8, 3, 1, 1), ("relu",),
    ("pool", 2), ("conv", 16, 3, 1, 1), ("relu",), ("pool", 2), ("fc", 10)])``.
    """
    c, h, w = input_shape
    flat = None
    layers: list[Layer] = []
    for n, spec in enumerate(specs):
        op, *args = spec
        if op == "conv":
            out_ch, k, *rest = args
            s, p, g = (list(rest) + [1, 0, 1][len(rest):])[:3]
            ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if ho < 1 or wo < 1:
                raise PartitionError(f"sequential {name!r}: spec {n} {spec} gives an empty map from {h}x{w}")
            layers.append(Layer(f"conv{len(layers)}", "Conv", "conv", c, out_ch, (h, w), (ho, wo), (k, k), (s, s), g))
            c, h, w = out_ch, ho, wo
        elif op == "pool":
            k, *rest = args
            s = rest[0] if rest else k
            h, w = (h - k) // s + 1, (w - k) // s + 1
        elif op == "fc":
            (out_f,) = args
            flat = (h, w)
            layers.append(Layer(f"fc{len(layers)}", "Gemm", "fc", c * h * w, out_f, flat_hw=flat))
            c, h, w = out_f, 1, 1
        elif op == "relu":
            pass
        else:
            raise PartitionError(f"sequential {name!r}: unknown spec {spec!r}; allowed conv, pool, fc, relu")
    return chain(name, layers, input_shape=tuple(input_shape))
