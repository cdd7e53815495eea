"""Compaction: a graph-to-graph transformation that leaves structured zeros out of the macros.

SSL-style group sparsity (whole filters, whole input channels, filter shapes) makes parts of a weighted layer's
lowered ``K x N`` matrix zero in every filter. :func:`compact` rewrites the layer IR so that what is left is a
smaller dense layer with the same outputs, bit for bit; the compiler then tiles fewer reduction rows (fewer
K tiles, gather steps, pages) and fewer columns (fewer N tiles, passes, output words). Three rewrites, applied
until none applies:

* **Dead channels** (channel-wise groups): input channel ``c`` of a tensor whose readers all have zero weights
  for it is not computed at all: the producer's filter ``c`` goes (its columns), every reader's input channel
  ``c`` goes (its rows), and the channels behind it are re-indexed.
* **Constant channels** (filter-wise groups): an all-zero filter of a producer outputs the constant
  ``v = clamp(zp_out + MBQM(bias))`` at every position (in both rounding forms, else it is kept). Its readers'
  accumulators then get ``(v - zp_in) * w`` from every in-image tap: zero when ``v`` is the reader's input zero
  point, and otherwise a constant that is folded into the reader's bias when the reader has no padding (a
  Dense layer, an unpadded convolution). Where neither holds the filter is kept (exact beats small).
* **Kernel cropping** (shape-wise groups at tap granularity): kernel rows (columns) that are zero in every
  filter are dropped when the rest is an arithmetic progression of rows (columns): leading and trailing zero
  rows come off the padding, evenly spaced kept rows become a dilation (a 3x3 kernel keeping rows 0 and 2 is a
  2x3 kernel of dilation 2). Cropping needs the padding it removes (``pad_top >= first_kept * dilation``) and
  the same output size. A one-channel input keeps horizontal dilation 1 (the compiler row-packs it).

Taps that are zero in every filter but fit none of these (an interior tap of an irregular pattern, single
(channel, tap) elements) stay, walked as exact zero weights: the gather walks whole words of one tap, so
leaving them out needs a gather that selects lanes; taps at the end of the walk are skipped by the tiling
(:mod:`cimforge.compiler.tiling`).

Channel removal passes through channel-wise layers (max pooling, clamps) and flattens read by Dense layers;
tensors that are graph outputs, read by other kinds (adds, concatenations, average pools) or produced by a
graph input keep their channels. A tensor keeps at least one channel.

:class:`Compaction` holds the new graph and per layer what was kept (:class:`LayerCompaction`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..golden.ir import Clamp, Conv2d, Dense, Graph, Layer, MaxPool, Reshape, TensorInfo, conv_output_size
from ..golden.requant import ROUNDING_MODES, requantize

__all__ = ["compact", "Compaction", "LayerCompaction"]


@dataclass
class LayerCompaction:
    """What compaction kept of one weighted layer.

    Attributes
    ----------
    name : str
    rows, kept_rows : int
        Reduction rows of one filter (``Cin/groups x kh x kw``) before and after.
    cols, kept_cols : int
        Filters (output channels) before and after.
    kernel, kept_kernel : (int, int)
    dilation, kept_dilation : (int, int)
    removed_inputs : list of int
        Input channels left out (indices of the original input tensor).
    removed_filters : list of int
        Filters left out (original output channel indices).
    folded : int
        Removed input channels whose constant contribution went into the bias.
    """

    name: str
    rows: int
    cols: int
    kernel: tuple[int, int]
    dilation: tuple[int, int]
    kept_rows: int = 0
    kept_cols: int = 0
    kept_kernel: tuple[int, int] = (1, 1)
    kept_dilation: tuple[int, int] = (1, 1)
    removed_inputs: list[int] = field(default_factory=list)
    removed_filters: list[int] = field(default_factory=list)
    folded: int = 0


@dataclass
class Compaction:
    """The result of :func:`compact`: the compacted graph (same inputs and outputs, same output codes) and per
    weighted layer what it kept."""

    graph: Graph
    layers: dict[str, LayerCompaction]

    @property
    def changed(self) -> bool:
        return any(lc.kept_rows < lc.rows or lc.kept_cols < lc.cols for lc in self.layers.values())


def _shape_info(layer: Layer) -> tuple[int, int, tuple[int, int], tuple[int, int]]:
    if isinstance(layer, Conv2d):
        kh, kw = layer.kernel
        return layer.in_channels // layer.groups * kh * kw, layer.out_channels, (kh, kw), layer.dilation
    return layer.in_features, layer.out_features, (1, 1), (1, 1)


def compact(graph: Graph) -> Compaction:
    """Compact ``graph`` (see the module notes); the result computes the same graph outputs bit for bit in both
    rounding forms.

    Parameters
    ----------
    graph : Graph

    Returns
    -------
    Compaction
    """
    report: dict[str, LayerCompaction] = {}
    for layer in graph.weighted_layers:
        rows, cols, kernel, dil = _shape_info(layer)
        report[layer.name] = LayerCompaction(layer.name, rows, cols, kernel, dil)
    # original channel index of each current channel, per tensor (removals re-index)
    origin: dict[str, list[int]] = {name: list(range(t.shape[0])) for name, t in graph.tensors.items()}
    g = graph
    while True:
        cropped = _crop_kernels(g)
        if cropped is not None:
            g = cropped
            continue
        step = _remove_one_channel_set(g, origin, report)
        if step is None:
            break
        g = step
    for layer in g.weighted_layers:
        lc = report[layer.name]
        lc.kept_rows, lc.kept_cols, lc.kept_kernel, lc.kept_dilation = _shape_info(layer)
    return Compaction(g, report)


# -- rebuilding ------------------------------------------------------------------------------------------------


def _rebuild(graph: Graph, tensors: dict[str, TensorInfo], overrides: dict[str, dict]) -> Graph:
    """``graph`` with tensors replaced by name and layer fields overridden by layer name."""
    inputs = tuple(tensors.get(t.name, t) for t in graph.inputs)
    layers = []
    for layer in graph.layers:
        kw = dict(overrides.get(layer.name, {}))
        kw["inputs"] = tuple(tensors.get(t.name, t) for t in layer.inputs)
        kw["output"] = tensors.get(layer.output.name, layer.output)
        layers.append(replace(layer, **kw))
    return replace(graph, inputs=inputs, layers=tuple(layers))


# -- kernel cropping -------------------------------------------------------------------------------------------


def _progression(kept: list[int], n: int, pad_lo: int, pad_hi: int, size: int, dil: int, stride: int,
                 allow_dilation: bool) -> tuple[int, int, int, int] | None:
    """The smallest arithmetic progression ``first, first + d, ...`` of ``count`` kernel indices covering
    ``kept`` that the padding allows, as ``(first, d, pad_lo', pad_hi')``, or None when nothing is saved."""
    out = conv_output_size(size, n, stride, pad_lo, pad_hi, dil)
    best = None
    steps = range(1, n) if allow_dilation else (1,)
    for d in steps:
        for first in range(kept[0] + 1):
            if any((k - first) % d for k in kept):
                continue
            count = (kept[-1] - first) // d + 1
            lo = pad_lo - first * dil
            if lo < 0 or count >= n:
                continue
            for hi in range(pad_hi + 1):  # the least bottom/right padding giving the same output size
                if conv_output_size(size, count, stride, lo, hi, dil * d) == out:
                    cand = (count, d, first, hi)
                    if best is None or cand < best:
                        best = cand
                    break
    if best is None:
        return None
    count, d, first, hi = best
    return first, d, pad_lo - first * dil, hi


def _crop_kernels(graph: Graph) -> Graph | None:
    """The graph with the first croppable convolution cropped, or None."""
    for layer in graph.layers:
        if not isinstance(layer, Conv2d):
            continue
        w = np.asarray(layer.weight)
        kh, kw = layer.kernel
        if kh * kw == 1:
            continue
        rows_nz = [ky for ky in range(kh) if np.any(w[:, :, ky, :])]
        cols_nz = [kx for kx in range(kw) if np.any(w[:, :, :, kx])]
        if not rows_nz:  # an all-zero layer: keep one tap (constant outputs are the channel pass's business)
            continue
        pt, pl, pb, pr = layer.padding
        (_, h, wd), (sh, sw), (dh, dw) = layer.input.shape, layer.stride, layer.dilation
        ry = _progression(rows_nz, kh, pt, pb, h, dh, sh, True)
        rx = _progression(cols_nz, kw, pl, pr, wd, dw, sw, layer.in_channels > 1)
        if ry is None and rx is None:
            continue
        fy, ddy, pt2, pb2 = ry if ry is not None else (0, 1, pt, pb)
        fx, ddx, pl2, pr2 = rx if rx is not None else (0, 1, pl, pr)
        ky = np.arange(fy, rows_nz[-1] + 1, ddy) if ry is not None else np.arange(kh)
        kx = np.arange(fx, cols_nz[-1] + 1, ddx) if rx is not None else np.arange(kw)
        new_w = w[:, :, ky][:, :, :, kx]
        return _rebuild(graph, {}, {layer.name: {"weight": new_w, "padding": (pt2, pl2, pb2, pr2),
                                                 "dilation": (dh * ddy, dw * ddx)}})
    return None


# -- channel removal -------------------------------------------------------------------------------------------


def _constant_value(layer: Layer, c: int) -> int | None:
    """The output code of filter ``c`` of ``layer`` when its weights are all zero (None otherwise, or when the
    two rounding forms disagree on it)."""
    if np.any(np.asarray(layer.weight)[c]):
        return None
    acc = np.array([int(layer.bias[c])], dtype=np.int64)  # sum (x - zp_in) * 0 = 0: the bias alone
    vals = {int(requantize(acc, layer.requant.multiplier[c:c + 1], layer.requant.shift[c:c + 1],
                           layer.output.zero_point, layer.act_min, layer.act_max, rounding=r)[0])
            for r in ROUNDING_MODES}
    return vals.pop() if len(vals) == 1 else None


@dataclass
class _Edit:
    """Pending changes of one channel removal: tensors' new shapes, layers' new fields."""

    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    overrides: dict[str, dict] = field(default_factory=dict)
    folded: dict[str, int] = field(default_factory=dict)


def _reader_edits(graph: Graph, tensor: str, keep: np.ndarray, value: int | None, edit: _Edit) -> bool:
    """Record the edits removing the channels ``~keep`` of ``tensor`` from every reader; False when some reader
    cannot drop them exactly. ``value``: the constant code of the removed channels (one channel), or None."""
    if tensor in graph.outputs:
        return False
    readers = graph.consumers(tensor)
    if not readers:
        return False
    for r in readers:
        if isinstance(r, Conv2d) and r.groups == 1 or isinstance(r, Dense) and not r.over_positions:
            if not _weighted_edit(r, keep, value, edit):
                return False
        elif isinstance(r, (MaxPool, Clamp)):
            out_value = None
            if value is not None:
                x = np.full((1, *r.input.shape), r.input.zero_point, dtype=r.input.np_dtype)
                x[0, ~keep] = value
                from ..golden.runner import run_layer  # the golden operator decides what a constant becomes
                y = run_layer(r, x)[0, ~keep]
                if np.unique(y).size != 1:
                    return False
                out_value = int(y.flat[0])
            t = r.output
            edit.tensors[t.name] = replace(t, shape=(int(keep.sum()), *t.shape[1:]))
            if not _reader_edits(graph, t.name, keep, out_value, edit):
                return False
        elif isinstance(r, Reshape) and len(r.input.shape) == 3 and len(r.output.shape) == 1:
            c, h, w_ = r.input.shape
            fkeep = np.repeat(keep, h * w_)
            t = r.output
            edit.tensors[t.name] = replace(t, shape=(int(fkeep.sum()),))
            if t.name in graph.outputs or not all(isinstance(x, Dense) and not x.over_positions
                                                  for x in graph.consumers(t.name)):
                return False
            for x in graph.consumers(t.name):
                if not _weighted_edit(x, fkeep, value, edit):
                    return False
        else:
            return False
    return True


def _weighted_edit(r: Layer, keep: np.ndarray, value: int | None, edit: _Edit) -> bool:
    """A Conv2d (groups 1) or Dense reader drops input channels (features) ``~keep``; a constant channel's
    contribution ``(value - zp_in) * w`` goes into its bias, which needs every tap inside the input (no padding)
    unless ``value`` is the zero point."""
    w = np.asarray(r.weight).astype(np.int64)
    gone = w[:, ~keep]
    bias = np.asarray(r.bias).astype(np.int64)
    if np.any(gone):
        if value is None:
            return False
        delta = value - r.input.zero_point
        if delta and isinstance(r, Conv2d) and any(r.padding):
            return False  # border positions see fewer in-image taps: not one constant
        if delta:
            bias = bias + delta * gone.reshape(gone.shape[0], -1).sum(axis=1)
            edit.folded[r.name] = edit.folded.get(r.name, 0) + 1
    if bias.min() < -2 ** 31 or bias.max() > 2 ** 31 - 1:
        return False
    edit.overrides[r.name] = {"weight": w[:, keep].astype(np.int8), "bias": bias.astype(np.int32)}
    return True


def _remove_one_channel_set(graph: Graph, origin: dict[str, list[int]],
                            report: dict[str, LayerCompaction]) -> Graph | None:
    """Remove the dead channels of the first tensor that has some (all at once), else the first removable
    constant channel; None when no channel can go."""
    for producer in graph.layers:
        if not (isinstance(producer, Conv2d) and producer.groups == 1 or isinstance(producer, Dense)
                and not producer.over_positions):
            continue
        t = producer.output
        n = t.shape[0]
        if n < 2:
            continue
        # dead channels: no reader needs them (value None: any non-zero reader weight refuses)
        dead = np.zeros(n, dtype=bool)
        for c in range(n):
            keep = np.ones(n, dtype=bool)
            keep[c] = False
            dead[c] = _reader_edits(graph, t.name, keep, None, _Edit())
        candidates = [~dead] if dead.any() and not dead.all() else []
        if dead.all():  # keep one channel
            keep = np.zeros(n, dtype=bool)
            keep[0] = True
            candidates.append(keep)
        for c in range(n):  # constant channels, one at a time
            if not dead[c] and _constant_value(producer, c) is not None:
                keep = np.ones(n, dtype=bool)
                keep[c] = False
                candidates.append(keep)
        for keep in candidates:
            gone = np.flatnonzero(~keep)
            value = _constant_value(producer, int(gone[0])) if len(gone) == 1 else None
            edit = _Edit()
            if not _reader_edits(graph, t.name, keep, value, edit):
                continue
            edit.tensors[t.name] = replace(t, shape=(int(keep.sum()), *t.shape[1:]))
            w = np.asarray(producer.weight)
            ws, wz = np.asarray(producer.weight_scale), np.asarray(producer.weight_zero_point)
            edit.overrides[producer.name] = {
                **edit.overrides.get(producer.name, {}), "weight": w[keep], "bias": np.asarray(producer.bias)[keep],
                "weight_scale": ws[keep] if ws.size > 1 else ws, "weight_zero_point": wz[keep] if wz.size > 1 else wz}
            report[producer.name].removed_filters += [origin[t.name][i] for i in gone]
            for name, lc_name in _readers_of_channels(graph, t.name):
                report[lc_name].removed_inputs += [origin[name][i] for i in np.flatnonzero(~_keep_for(name, t.name,
                                                                                                      keep, graph))]
            for name, folded in edit.folded.items():
                report[name].folded += folded
            _reindex(origin, graph, t.name, keep)
            return _rebuild(graph, edit.tensors, edit.overrides)
    return None


def _readers_of_channels(graph: Graph, tensor: str) -> list[tuple[str, str]]:
    """``(tensor read, weighted reader)`` pairs behind ``tensor`` through channel-wise layers and flattens."""
    out = []
    for r in graph.consumers(tensor):
        if isinstance(r, (Conv2d, Dense)):
            out.append((tensor, r.name))
        elif isinstance(r, (MaxPool, Clamp, Reshape)):
            out += _readers_of_channels(graph, r.output.name)
    return out


def _keep_for(name: str, root: str, keep: np.ndarray, graph: Graph) -> np.ndarray:
    """The keep mask of tensor ``name`` (behind ``root``): per feature for a flattened tensor."""
    n = graph.tensors[name].shape[0]
    return keep if n == keep.size else np.repeat(keep, n // keep.size)


def _reindex(origin: dict[str, list[int]], graph: Graph, tensor: str, keep: np.ndarray) -> None:
    """Keep the original indices of the surviving channels of ``tensor`` and the tensors behind it."""
    todo = [tensor]
    while todo:
        name = todo.pop()
        k = _keep_for(name, tensor, keep, graph)
        origin[name] = [o for o, kk in zip(origin[name], k) if kk]
        todo += [r.output.name for r in graph.consumers(name) if isinstance(r, (MaxPool, Clamp, Reshape))]
