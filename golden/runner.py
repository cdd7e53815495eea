"""Run an IR graph, or one layer, on the golden integer operators.

Stable API for the compiler and the RTL benches:

* :func:`run_layer` ``(layer, *inputs) -> codes``: one layer on batches of codes ``(N, *shape)``.
* :func:`run_graph` ``(graph, inputs) -> {tensor name: codes}``: every tensor of the graph (inputs, each
  intermediate and the outputs), keyed by the IR tensor names.
* :func:`run_float` ``(graph, x) -> {tensor name: codes}``: the same from real-valued model inputs, quantized at
  the graph's edge exactly as the model's ``QuantizeLinear`` does.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from . import ops
from .ir import (LRN, Lut, Add, AvgPool, Clamp, Concat, Conv2d, ConvInteger, Dense, FloatChain, GlobalAvgPool, Graph,
                 IRError, Layer, MatMul, MatMulInteger, MaxPool, Mul, Reshape, Resize, Softmax)

__all__ = ["run_layer", "run_graph", "run_float", "LAYER_FUNCTIONS"]

#: layer class -> golden operator
LAYER_FUNCTIONS: dict[type[Layer], Callable[..., np.ndarray]] = {
    Conv2d: ops.conv2d, Dense: ops.dense, MaxPool: ops.max_pool, AvgPool: ops.avg_pool,
    GlobalAvgPool: ops.global_avg_pool, Add: ops.add, Mul: ops.mul, Concat: ops.concat, Reshape: ops.reshape, Clamp: ops.clamp,
    Softmax: ops.softmax, LRN: ops.lrn, Lut: ops.lut, Resize: ops.resize, MatMul: ops.dense, ConvInteger: ops.conv_integer, MatMulInteger: ops.matmul_integer,
    FloatChain: ops.float_chain,
}


def run_layer(layer: Layer, *inputs, rounding: str | None = None) -> np.ndarray:
    """Output codes of one layer for batches of input codes, one array per ``layer.inputs`` entry.

    ``rounding`` selects the requantisation rounding (:data:`cimforge.golden.requant.ROUNDING_MODES`); the
    default is the architecture's (:data:`cimforge.golden.requant.DEFAULT_ROUNDING`)."""
    if len(inputs) != len(layer.inputs):
        raise IRError(f"{layer.kind} layer {layer.name!r}: {len(inputs)} input arrays given, "
                      f"expected {len(layer.inputs)} ({[t.name for t in layer.inputs]})")
    try:
        fn = LAYER_FUNCTIONS[type(layer)]
    except KeyError:
        raise IRError(f"layer {layer.name!r}: no golden operator for {type(layer).__name__}") from None
    return fn(layer, *inputs, rounding=rounding)


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray] | np.ndarray,
              rounding: str | None = None) -> dict[str, np.ndarray]:
    """Run every layer of ``graph`` in order.

    Parameters
    ----------
    graph : Graph
    inputs : mapping of str to numpy.ndarray, or numpy.ndarray
        Codes per graph input, ``(N, *shape)``; a bare array when the graph has one input.
    rounding : str, optional
        Requantisation rounding, see :func:`run_layer`.

    Returns
    -------
    dict of str to numpy.ndarray
        Every tensor (graph inputs first, then each layer's output in order) as codes ``(N, *shape)``.
    """
    if not isinstance(inputs, Mapping):
        if len(graph.inputs) != 1:
            raise IRError(f"graph {graph.name!r} has {len(graph.inputs)} inputs: pass a dict by name")
        inputs = {graph.inputs[0].name: inputs}
    missing = [t.name for t in graph.inputs if t.name not in inputs]
    if missing:
        raise IRError(f"graph {graph.name!r}: missing input(s) {missing}; given {sorted(inputs)}")
    values: dict[str, np.ndarray] = {}
    for t in graph.inputs:
        x = np.asarray(inputs[t.name])
        if x.shape[1:] != t.shape:
            raise IRError(f"graph {graph.name!r}: input {t.name!r} has shape {x.shape}, expected (N, {t.shape})")
        values[t.name] = x
    for layer in graph.layers:
        values[layer.output.name] = run_layer(layer, *(values[t.name] for t in layer.inputs), rounding=rounding)
    return values


def run_float(graph: Graph, x: Mapping[str, np.ndarray] | np.ndarray,
              rounding: str | None = None) -> dict[str, np.ndarray]:
    """:func:`run_graph` from real-valued inputs, keyed by the float model input names (or a bare array for a
    single input); quantized with each graph input's scale and zero point."""
    if not graph.float_inputs:
        raise IRError(f"graph {graph.name!r} takes quantized inputs; use run_graph")
    if not isinstance(x, Mapping):
        if len(graph.float_inputs) != 1:
            raise IRError(f"graph {graph.name!r} has {len(graph.float_inputs)} float inputs: pass a dict by name")
        x = {next(iter(graph.float_inputs)): x}
    codes = {}
    for fname, qname in graph.float_inputs.items():
        if fname not in x:
            raise IRError(f"graph {graph.name!r}: missing float input {fname!r}; given {sorted(x)}")
        codes[qname] = ops.quantize(x[fname], graph.tensors[qname])
    return run_graph(graph, codes, rounding=rounding)
