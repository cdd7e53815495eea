"""Concatenations of tensors that are not whole activation words, exactly, on the existing engines.

The ``EW`` engine copies whole words (``lanes`` channels), so a concatenation whose inputs before the last do
not fill whole words (4 + 4 channels on 8 lanes) cannot be copied into place: the second input would start in
the middle of a word. :func:`place_unaligned_concats` rewrites such a layer for the compiler (as
:func:`cimforge.compiler.fusion.fuse_graph` does) into:

* per input, a *placement* layer onto the output's channels: a 1x1 convolution (a dense layer for vectors) whose
  weight is 1 from input channel ``c`` to output channel ``offset + c`` and 0 elsewhere, weight scale 1, bias 0,
  into the output's quantisation. Its requantisation multiplier is ``s_in / s_out``: exactly 1.0 for an input of
  the output's quantisation (every code copied), otherwise the concatenation's own requantisation of that input
  (the same real multiplier, the same rounding and clamp); the other channels hold the output zero point;
* ``Add`` layers summing the placements in order. Every tensor has the output's quantisation, so TFLite's
  addition is exact there (input multipliers 1/2 on values shifted left by 20, output multiplier ``2**-19``: no
  rounding), and in every channel all but one of the summands are the zero point: each sum is a partial
  concatenation, the last one the concatenation itself, bit for bit.

The cost: one MAC pass per input over all output channels, and ``n - 1`` element-wise adds, where the aligned
form is ``n`` copies; only layers the aligned form cannot run are rewritten. The placements and partial sums
are tensors of the program only (``<concat>/place_<i>``, ``<concat>/sum_<i>``), which the checks against the
golden model of the original graph leave out.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..golden.ir import Add, Concat, Conv2d, Dense, Graph, Layer

__all__ = ["place_unaligned_concats", "unaligned"]


def unaligned(layer: Layer, lanes: int) -> bool:
    """A channel concatenation with an input before the last that is not whole words of ``lanes`` channels."""
    return isinstance(layer, Concat) and layer.axis == 0 and any(t.shape[0] % lanes for t in layer.inputs[:-1])


def _placements(layer: Concat) -> list[Layer]:
    out, c_out = layer.output, layer.output.shape[0]
    parts, off = [], 0
    for i, t in enumerate(layer.inputs):
        c = t.shape[0]
        dst = out.renamed(f"{layer.name}/place_{i}")
        vector = len(t.shape) == 1
        w = np.zeros((c_out, c) + (() if vector else (1, 1)), np.int8)
        w[off + np.arange(c), np.arange(c)] = 1
        cls = Dense if vector else Conv2d
        parts.append(cls(name=f"{layer.name}/place_{i}", inputs=(t,), output=dst, weight=w, weight_scale=1.0))
        off += c
    layers: list[Layer] = list(parts)
    acc = parts[0].output
    for i, p in enumerate(parts[1:], start=1):
        dst = out if i == len(parts) - 1 else out.renamed(f"{layer.name}/sum_{i}")
        layers.append(Add(name=layer.name if i == len(parts) - 1 else f"{layer.name}/sum_{i}", inputs=(acc, p.output),
                          output=dst))
        acc = dst
    return layers


def place_unaligned_concats(graph: Graph, lanes: int) -> Graph:
    """``graph`` with every :func:`unaligned` concatenation rewritten into placements and adds (module
    docstring); other graphs unchanged. A one-input concatenation (a requantising copy) is never unaligned."""
    if not any(unaligned(layer, lanes) for layer in graph.layers):
        return graph
    layers: list[Layer] = []
    for layer in graph.layers:
        layers.extend(_placements(layer) if unaligned(layer, lanes) else [layer])
    return replace(graph, layers=tuple(layers))
