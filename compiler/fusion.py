"""Fusion of a per-channel affine into the ``MAC`` pass that produces its input.

onnxruntime's ``quantize_static`` quantizes a convolution's output before its BatchNormalization, so the
importer cannot fold the normalisation into the convolution bit-exactly and keeps it as a depthwise 1x1
convolution (one int8 weight, an int32 bias and a requantisation per channel). On the fabric such a layer is a
pass of its own at 1/64 of the array, whose input and output go out to the external memory and back. The
``MAC`` engine's epilogue (:mod:`cimforge.gen.mac_engine`, ``MAC.epi``) computes it in the write-back of the
pass that produces its input instead: the pass's own requantised code ``q1`` (clamp included) becomes
``acc2 = bias2 + (q1 - zp1) * w2`` and ``q2 = clamp(zp2 + MBQM(acc2, M2, shift2), min2, max2)``, exactly the
golden depthwise layer's accumulator and requantisation, and only ``q2`` is written.

:func:`fuse_graph` rewrites a graph for the compiler: each :class:`~cimforge.golden.ir.Conv2d` whose output is
read only by such a layer (and is not a graph output) becomes one :class:`FusedConv2d`, whose ``output`` is the
depthwise layer's; the fused-away tensor (``mid``) is never written, so the program's tensors and the checks
that compare every tensor leave it out (:func:`internal_tensors`). The golden model does not change: it runs
the original graph, and the fused pass's output equals its depthwise layer's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

from ..golden.ir import Conv2d, Graph, Layer, TensorInfo

__all__ = ["FusedConv2d", "fuse_graph", "fusable_epilogue", "internal_tensors"]


@dataclass(frozen=True, eq=False, kw_only=True)
class FusedConv2d(Conv2d):
    """A convolution and the depthwise 1x1 layer that reads its output, run as one ``MAC`` pass.

    Every field is the convolution's own (weights, bias, requantisation, clamp: checked and derived against its
    own output tensor, :attr:`mid`) except ``output``, which is the epilogue's: the tensor the pass writes.

    Parameters
    ----------
    epilogue : Conv2d
        The depthwise 1x1 layer (:func:`fusable_epilogue`) that reads the convolution's output.

    Members
    -------
    mid : TensorInfo
        The convolution's own output: the codes the epilogue reads, never written.
    """

    epilogue: Conv2d
    mid: TensorInfo = field(init=False, repr=False)

    kind: ClassVar[str] = "conv2d"
    #: Compiled by the convolution's lowering (:func:`cimforge.compiler.lowering.lowering_for`), which runs the
    #: epilogue when the layer is a FusedConv2d.
    lowered_as: ClassVar[type] = Conv2d

    def __post_init__(self):
        super().__post_init__()  # validated and requantised against the convolution's own output
        object.__setattr__(self, "mid", self.output)
        object.__setattr__(self, "output", self.epilogue.output)

    @classmethod
    def of(cls, conv: Conv2d, epilogue: Conv2d) -> "FusedConv2d":
        """The fusion of ``conv`` and the depthwise 1x1 layer ``epilogue`` that reads its output."""
        return cls(**{f.name: getattr(conv, f.name) for f in fields(Conv2d) if f.init}, epilogue=epilogue)


def fusable_epilogue(graph: Graph, layer: Layer) -> Conv2d | None:
    """The layer the ``MAC`` epilogue can take over from ``layer``, or None.

    ``layer`` must be a plain :class:`~cimforge.golden.ir.Conv2d` whose output is no graph output and has one
    reader; that reader must be a depthwise 1x1 convolution (groups = channels, stride 1, no padding, dilation
    1) with symmetric weights, i.e. a per-channel affine of the codes.
    """
    if type(layer) is not Conv2d or layer.output.name in graph.outputs:
        return None
    readers = graph.consumers(layer.output.name)
    if len(readers) != 1:
        return None
    bn = readers[0]
    if type(bn) is not Conv2d or not _is_channel_affine(bn):
        return None
    return bn


def _is_channel_affine(layer: Conv2d) -> bool:
    c = layer.in_channels
    return (layer.groups == c == layer.out_channels and layer.kernel == (1, 1) and layer.stride == (1, 1)
            and layer.padding == (0, 0, 0, 0) and layer.dilation == (1, 1) and not layer.has_weight_zero_point)


def fuse_graph(graph: Graph) -> Graph:
    """``graph`` with every convolution that has a :func:`fusable_epilogue` and that epilogue as one
    :class:`FusedConv2d` (at the convolution's place, which keeps the order topological); ``graph`` itself
    when nothing fuses."""
    fused: dict[str, Conv2d] = {}
    gone: set[str] = set()
    for layer in graph.layers:
        if layer.name in gone:  # an epilogue does not fuse its own reader
            continue
        bn = fusable_epilogue(graph, layer)
        if bn is not None:
            fused[layer.name] = bn
            gone.add(bn.name)
    if not fused:
        return graph
    layers = [FusedConv2d.of(layer, fused[layer.name]) if layer.name in fused else layer
              for layer in graph.layers if layer.name not in gone]
    return replace(graph, layers=tuple(layers))


def internal_tensors(graph: Graph) -> dict[str, str]:
    """Tensor -> fused layer, for the tensors a compiled ``graph`` (:func:`fuse_graph`'s) never writes: the
    outputs of the convolutions whose epilogue took over their only reader."""
    return {layer.mid.name: layer.name for layer in graph.layers if isinstance(layer, FusedConv2d)}
