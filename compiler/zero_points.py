"""Weights with a zero point on the fabric, exactly: the reduction split over copies of its input.

A layer with weight zero points (uint8 weights from ``quantize_static(weight_type=QUInt8)``) accumulates
``bias + sum (x - zp_in) * d`` with ``d = w - zp_w``, which spans up to -255..255: nine bits, one more than the
macros' signed 8-bit weights. The direct form (the macros' unsigned mode for ``w``, then ``zp_w * sum (x -
zp_in)`` subtracted per output) needs each output position's activation sum beside every output channel's
accumulator in the MAC engine's write-back, a term across lanes the engine does not have. This pass uses the
datapath as it is instead: ``d`` is split into ``m`` int8 parts (``d = p_0 + ... + p_{m-1}``, ``m = 2`` unless a
channel reaches +255), the input is copied ``m`` times channel by channel (``[x_0, x_0, x_1, x_1, ...]``) by a
1x1 convolution of one weight of 1 per output (groups = channels, weight scale 1, the input's quantisation: the
requantisation multiplier is exactly 1.0, so every code is copied exactly; a dense layer's input vector is
copied as the (C, H, W) tensor it flattens, or as ``(F, 1, 1)``), and the layer becomes a plain int8
layer over the copies whose weight for copy ``i`` of channel ``c`` is ``p_i``: ``sum_c sum_i (x_c - zp_in)
p_i = sum_c (x_c - zp_in) d``, the same accumulator bit for bit. The cost: ``m`` times the reduction, and the
copy layer (a depthwise pass, one activation word of outputs per input word).

:func:`expand_weight_zero_points` rewrites a graph for the compiler (as :func:`cimforge.compiler.fusion.fuse_graph`
does): the copies are tensors of the program only (``<input>/copies_<layer>``), which the checks that compare
every tensor against the golden model of the original graph leave out; every original tensor keeps its name
and its codes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..golden.ir import Conv2d, Dense, Graph, Layer, Reshape, TensorInfo

__all__ = ["expand_weight_zero_points", "split_parts", "copy_tensors"]


def split_parts(d: np.ndarray) -> list[np.ndarray]:
    """``d`` (integers, any shape) as the fewest int8 arrays that sum to it, each part clipped to -128..127 in
    turn (two for -256..254, three up to +381)."""
    d = np.asarray(d, np.int64)
    m = max(1, -(-int(d.max(initial=0)) // 127), -(-int(-d.min(initial=0)) // 128))
    parts, rest = [], d.copy()
    for _ in range(m):
        p = np.clip(rest, -128, 127)
        parts.append(p.astype(np.int8))
        rest = rest - p
    assert not rest.any()
    return parts


def _copies(name: str, x: TensorInfo, m: int) -> tuple[Conv2d, TensorInfo]:
    """The layer copying the (C, H, W) tensor ``x`` ``m`` times channel by channel, and the copies' tensor."""
    c = x.shape[0]
    copies = x.renamed(f"{x.name}/copies_{name}", (m * c, *x.shape[1:]))
    return Conv2d(name=f"{name}/copies", inputs=(x,), output=copies, weight=np.ones((m * c, 1, 1, 1), np.int8),
                  weight_scale=1.0, groups=c), copies


def _dense_input(name: str, layer: Dense, m: int, producer: Layer | None) -> tuple[list[Layer], TensorInfo, tuple]:
    """The layers giving a dense layer the copies of its input vector, the copies' vector, and how the vector's
    features group: ``(C, rest)``, feature ``c * rest + r`` of the input being feature ``(c * m + i) * rest + r`` of
    copy ``i``. A flatten of a (C, H, W) tensor is copied as that tensor (its stored words are the planes');
    another vector as ``(F, 1, 1)``."""
    x = layer.input
    if isinstance(producer, Reshape) and len(producer.input.shape) in (2, 3):
        planes, view = producer.input, []
        if len(planes.shape) == 2:  # a (C, L) tensor (x.view(b, c, -1)) is stored as the (C, 1, L) plane
            flat_planes = planes.renamed(f"{planes.name}/as_planes_{name}", (planes.shape[0], 1, planes.shape[1]))
            view, planes = [Reshape(name=f"{name}/as_planes", inputs=(planes,), output=flat_planes)], flat_planes
        conv, copies = _copies(name, planes, m)
        flat = copies.renamed(f"{copies.name}/flat", (copies.size,))
        return view + [conv, Reshape(name=f"{name}/copies_flat", inputs=(copies,), output=flat)], flat, \
            (planes.shape[0], planes.shape[1] * planes.shape[2])
    planes = x.renamed(f"{x.name}/as_planes_{name}", (x.shape[0], 1, 1))
    conv, copies = _copies(name, planes, m)
    flat = copies.renamed(f"{copies.name}/flat", (copies.size,))
    return [Reshape(name=f"{name}/as_planes", inputs=(x,), output=planes), conv,
            Reshape(name=f"{name}/copies_flat", inputs=(copies,), output=flat)], flat, (x.shape[0], 1)


def _expand(layer: Conv2d | Dense, producer: Layer | None) -> list[Layer]:
    """``layer`` as its input's copies and a layer without weight zero points over them (module docstring)."""
    w = layer.weight.astype(np.int64)
    d = w - layer.weight_zero_point.reshape((-1,) + (1,) * (w.ndim - 1))
    parts = split_parts(d)
    m = len(parts)
    if isinstance(layer, Conv2d):
        conv, x2 = _copies(layer.name, layer.input, m)
        copies = [conv]
        # copy i of (group-local) input channel c is input channel c * m + i of the new layer
        weight = np.stack(parts, axis=2).reshape(w.shape[0], w.shape[1] * m, *w.shape[2:])
    else:
        copies, x2, (c, rest) = _dense_input(layer.name, layer, m, producer)
        # feature c * rest + r, copy i -> (c * m + i) * rest + r
        weight = np.stack([p.reshape(w.shape[0], c, rest) for p in parts], axis=2).reshape(w.shape[0], -1)
    return copies + [replace(layer, inputs=(x2,), weight=weight.astype(np.int8), weight_zero_point=0)]


def expand_weight_zero_points(graph: Graph) -> Graph:
    """``graph`` with every convolution and dense layer that has weight zero points expanded into the copies of
    its input and an int8 layer over them (exact; the module docstring); other graphs unchanged."""
    if not any(isinstance(layer, (Conv2d, Dense)) and layer.has_weight_zero_point for layer in graph.layers):
        return graph
    producers = {layer.output.name: layer for layer in graph.layers}
    layers: list[Layer] = []
    for layer in graph.layers:
        if isinstance(layer, (Conv2d, Dense)) and layer.has_weight_zero_point:
            if isinstance(layer, Dense) and (type(layer) is not Dense or len(layer.input.shape) != 1):
                layers.append(layer)  # an N-D MatMul: golden only, refused by its own lowering
                continue
            layers.extend(_expand(layer, producers.get(layer.input.name)))
        else:
            layers.append(layer)
    return replace(graph, layers=tuple(layers))


def copy_tensors(graph: Graph) -> set[str]:
    """The tensors of an expanded graph that the original does not have (the inputs' copies)."""
    return {layer.output.name for layer in graph.layers
            if layer.name.endswith(("/copies", "/as_planes", "/copies_flat"))}
