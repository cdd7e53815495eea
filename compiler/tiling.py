"""Tiling of a weighted layer onto macros: the convolution geometry the gather units walk, the reduction (K)
tiles and their descriptors, the output-channel (N) tiles, and the page images of every (K, N) tile.

Conventions shared with the RTL (:mod:`cimforge.gen.gather`, :mod:`cimforge.gen.isa`):

* Activation tensors live pixel by pixel (row-major ``H, W``), each pixel ``CW = ceil(C / lanes)`` words of
  ``lanes`` int8 codes (channel ``c`` in word ``c // lanes``, lane ``c % lanes``).
* The reduction index of a convolution is walked tap by tap (``ky`` then ``kx``), channels inside a tap. A K
  tile is a contiguous stretch of that walk: whole taps when ``cin <= rows``, else one channel chunk (a
  multiple of ``lanes``) of one tap. Element ``e`` of a tile of ``T`` elements sits at row ``rows - T + e``.
* N tile ``n`` holds output channels ``n*lanes .. n*lanes + lanes - 1`` in the lanes of a macro word (8-bit
  weights, lane ``j`` in bits ``8j .. 8j+7``).
* A Dense layer is a convolution whose kernel covers its input: ``(C, H, W)`` before a flatten, or ``1 x 1``
  pixels of ``F`` channels for a vector.
* Taps that are zero in every filter at the end of the walk (structured, filter-shape sparsity as SSL learns
  it) are not walked: the reduction is the kept taps only, so a 3x3 kernel without its last tap on 8 channels
  is one 64-row tile instead of two. ``ConvGeom.K`` and ``ConvGeom.macs`` count the kept taps.
* A **row-packed** input (a one-channel graph input at most ``lanes`` pixels wide, see :func:`rowpack_ok`) is
  stored one image row per word, lane ``x`` = pixel ``x``. Its convolution is walked a kernel row per word:
  each step selects the ``kw`` lanes under the window (padding lanes get the zero point), so an ``8 x 8``
  kernel on one channel takes 8 gather steps, not 64. K tiles are then whole kernel rows.
* A **grouped** convolution (depthwise included) runs as dense convolutions over **super-groups**: the fewest
  consecutive groups whose input and output channels are both whole activation words (``m`` groups, ``m`` the
  smallest with ``m * Cin/groups`` and ``m * Cout/groups`` multiples of ``lanes``; one word of ``lanes``
  channels for a depthwise convolution; the last super-group takes what is left of a tensor whose channels are
  not whole words). A super-group's weights are its groups' filters block-diagonally (zero where an output
  channel's group does not read an input channel); ``ConvGeom.reads`` keeps the channels an output really
  reads, so ``ConvGeom.macs`` counts real MACs, not the zeros (docs/grouped-conv.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from math import gcd, lcm

import numpy as np

from ..config import CimConfig, ConfigError
from ..gen.isa import lanes, pack_lanes_array
from ..golden.ir import Conv2d, Dense, Layer

__all__ = ["ConvGeom", "KTile", "geometry", "group_geometries", "super_groups", "k_tiles", "tile_steps", "page_words",
           "rowpack_ok", "CompileError", "beyond_range"]


class CompileError(ValueError):
    """A model, tensor or option the compiler cannot map; the message names the layer or tensor, what is wrong
    and what is allowed. A part the compiler added to a user's layer, quoted in the message (``'Conv_3/copies'``),
    is named as :func:`layer_label` does, whichever message names it."""

    def __init__(self, message: str):
        super().__init__(_QUOTED_PART.sub(lambda m: layer_label(m[1]), str(message)))


#: A layer the compiler's graph rewrites add to a user's layer, named ``<layer>/<part>``: the channel placements
#: and partial sums of an unaligned concatenation (concat_placement.py), the input copies and views of a weight
#: zero point's correction (zero_points.py).
_ADDED_PART = re.compile(r"^(?P<layer>.+)/(?P<part>place_\d+|sum_\d+|copies|as_planes|copies_flat)$")
_QUOTED_PART = re.compile(r"'([^'\s]+/(?:place_\d+|sum_\d+|copies|as_planes|copies_flat))'")


def layer_label(name: str) -> str:
    """How an error names the layer ``name``: ``'conv4'``, or, for a part the compiler added to a user's layer,
    ``'Concat_13' (its part 'sum_1', added by the compiler)``, so that the user finds it in the model."""
    m = _ADDED_PART.match(name)
    return repr(name) if m is None else f"{m['layer']!r} (its part {m['part']!r}, added by the compiler)"


def beyond_range(cfg: CimConfig, block: str, name: str, value: int) -> str:
    """What to add to an error that asks for ``block.name >= value``: ``", beyond the configuration's range
    (...)"`` when no configuration allows that value (the size a model needs may be more than any fabric of
    this generator has, e.g. a parameter memory, which no DMA reaches); else the preset with the most, when it
    has enough and is not the one asked, ``" (preset 'imagenet' has 17408)"``; else nothing."""
    from ..presets import PRESETS
    try:
        replace(cfg, **{block: replace(getattr(cfg, block), **{name: value})})
    except ConfigError as e:
        return f", beyond the configuration's range ({e.allowed})"
    have = {p: getattr(getattr(c, block), name) for p, c in PRESETS.items()}
    most = max(have.values())
    big = [p for p, v in have.items() if v == most and p != cfg.name]
    return f" (preset {big[0]!r} has {most})" if big and most >= value else ""


@dataclass(frozen=True, eq=False)
class ConvGeom:
    """A weighted layer as the fabric sees it: a convolution over a stored ``(H, W, C)`` tensor.

    ``weight[co, c, ky, kx]`` is the int8 weight of output channel ``co`` for channel ``c`` of tap ``(ky, kx)``.
    """

    name: str
    cin: int
    h: int
    w: int
    cout: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    dh: int = 1
    dw: int = 1
    pt: int = 0
    pl: int = 0
    oh: int = 1
    ow: int = 1
    weight: np.ndarray = field(default=None, repr=False)
    #: The input is row-packed (one word per image row); see the module notes.
    rowpack: bool = False
    #: Input channels each output channel reads per tap: ``Cin/groups`` of a grouped convolution's
    #: super-group (its weights are zero elsewhere), None for a dense one (all ``cin``).
    reads: int | None = None

    @cached_property
    def taps(self) -> int:
        """Taps walked: the kernel's, less the trailing taps that are zero in every filter."""
        n = self.kh * self.kw
        if self.weight is None:
            return n
        nz = np.flatnonzero(np.any(np.asarray(self.weight).reshape(self.cout, self.cin, n) != 0, axis=(0, 1)))
        return int(nz[-1]) + 1 if nz.size else 1

    @property
    def K(self) -> int:
        """Reduction length the fabric computes (kept taps x channels)."""
        return self.cin * self.taps

    @property
    def walk_cin(self) -> int:
        """Elements per gather step group as the walk sees them: the channels of a tap, or for a row-packed
        input the ``kw`` pixels of a kernel row (the walk is then ``kh`` rows of one such tap)."""
        return self.kw if self.rowpack else self.cin

    @property
    def npos(self) -> int:
        return self.oh * self.ow

    @property
    def real_k(self) -> int:
        """Reduction elements an output channel really uses per position: ``K`` less the zeros of a
        super-group's block-diagonal weights."""
        return self.taps * (self.cin if self.reads is None else self.reads)

    @property
    def macs(self) -> int:
        """MACs of the layer (kept taps, real weights: a super-group's zeros are not counted)."""
        return self.npos * self.real_k * self.cout


def super_groups(layer: Layer, lanes_: int) -> list[tuple[int, int, int, int]]:
    """The super-groups of a convolution: ``[(in_ch0, in_ch1, out_ch0, out_ch1), ...]`` channel ranges, each
    the fewest consecutive groups whose input and output channels start on a word and fill whole words (the
    last one takes the rest of the tensor). One range covering everything for ``groups = 1``; one per group
    for groups of whole words."""
    g = layer.groups
    cin_g, cout_g = layer.in_channels // g, layer.out_channels // g
    m = min(g, lcm(lanes_ // gcd(lanes_, cin_g), lanes_ // gcd(lanes_, cout_g)))
    return [(i * cin_g, min(i + m, g) * cin_g, i * cout_g, min(i + m, g) * cout_g) for i in range(0, g, m)]


def group_geometries(layer: Layer, lanes_: int | None = None, rowpack: bool = False
                     ) -> list[tuple[ConvGeom, int, int]]:
    """A convolution as one :class:`ConvGeom` per super-group (see the module notes), with the word offsets of
    its input and output channels: ``[(geom, in_word, out_word), ...]``. Groups of whole words are their own
    super-groups; ``lanes_`` None treats every group as whole (one geometry per group, word offsets in
    channels)."""
    g = layer.groups
    cin_g, cout_g = layer.in_channels // g, layer.out_channels // g
    _, h, w = layer.input.shape
    _, oh, ow = layer.output.shape
    kh, kw = layer.kernel
    pt, pl, _, _ = layer.padding
    wt = np.asarray(layer.weight, dtype=np.int64)
    L = lanes_ or 1
    out = []
    for i0, i1, o0, o1 in super_groups(layer, L):
        if i1 - i0 == cin_g:  # one group: its filters as they are
            sub = wt[o0:o1]
        else:  # several groups: block-diagonal, output channel co reads the cin_g channels of its group
            sub = np.zeros((o1 - o0, i1 - i0, kh, kw), dtype=np.int64)
            for co in range(o0, o1):
                c0 = (co // cout_g) * cin_g - i0
                sub[co - o0, c0:c0 + cin_g] = wt[co]
        geo = ConvGeom(layer.name, i1 - i0, h, w, o1 - o0, kh, kw, *layer.stride, *layer.dilation, pt, pl, oh, ow,
                       sub, rowpack, reads=cin_g if g > 1 else None)
        out.append((geo, i0 // L, o0 // L))
    return out


def rowpack_ok(layer: Layer, L: int, rows: int) -> bool:
    """Whether ``layer`` can read its input row-packed: a convolution (groups 1) of a one-channel input at most
    ``L`` pixels wide, with a kernel at most ``L`` wide and at most ``rows`` (one kernel row per tile at least),
    horizontal dilation 1. The compiler row-packs a graph input whose readers all qualify."""
    return (isinstance(layer, Conv2d) and layer.groups == 1 and layer.input.shape[0] == 1
            and layer.input.shape[2] <= L and layer.kernel[1] <= min(L, rows) and layer.dilation[1] == 1)


def geometry(layer: Layer, source_shape: tuple[int, ...] | None = None, rowpack: bool = False) -> ConvGeom:
    """The :class:`ConvGeom` of a Conv2d or Dense layer.

    Parameters
    ----------
    source_shape : tuple, optional
        For a Dense layer, the ``(C, H, W)`` shape of the tensor its input was flattened from (the input is
        then read in place); None for a vector input.
    rowpack : bool
        The convolution's input is stored row-packed (:func:`rowpack_ok` must hold).

    Raises
    ------
    CompileError
        Grouped convolutions (see :func:`group_geometries`) or other layer kinds.
    """
    if isinstance(layer, Conv2d):
        if layer.groups != 1:
            raise CompileError(f"conv2d layer {layer.name!r}: groups = {layer.groups}: allowed 1 (a grouped "
                               f"convolution is one geometry per super-group: group_geometries)")
        return group_geometries(layer, rowpack=rowpack)[0][0]
    if isinstance(layer, Dense):
        wt = np.asarray(layer.weight, dtype=np.int64)
        if source_shape is None or len(source_shape) == 1:
            f = layer.in_features
            return ConvGeom(layer.name, f, 1, 1, layer.out_features, 1, 1, weight=wt.reshape(-1, f, 1, 1))
        c, h, w = source_shape
        return ConvGeom(layer.name, c, h, w, layer.out_features, h, w, weight=wt.reshape(-1, c, h, w))
    raise CompileError(f"layer {layer.name!r} of kind {layer.kind}: not a weighted layer")


@dataclass(frozen=True)
class KTile:
    """One reduction tile: the walk from tap ``(ky0, kx0)`` channel ``c0`` over ``elems`` elements.

    ``elements`` lists ``(c, ky, kx)`` of each element in walk order.
    """

    ky0: int
    kx0: int
    c0: int
    elems: int
    elements: tuple[tuple[int, int, int], ...]


def k_tiles(g: ConvGeom, cfg: CimConfig) -> list[KTile]:
    """Split the reduction of ``g`` into tiles of at most ``rows`` elements, balanced in size."""
    rows, L = cfg.macro.rows, lanes(cfg)
    taps = [(ky, kx) for ky in range(g.kh) for kx in range(g.kw)][:g.taps]
    tiles = []
    if g.rowpack:  # whole kernel rows per tile
        krows = -(-len(taps) // g.kw)
        n = -(-krows // (rows // g.kw))
        per = -(-krows // n)
        for r0 in range(0, krows, per):
            chunk = taps[r0 * g.kw:(r0 + per) * g.kw]
            tiles.append(KTile(r0, 0, 0, len(chunk), tuple((0, ky, kx) for ky, kx in chunk)))
    elif g.cin <= rows:
        per = rows // g.cin
        n = -(-len(taps) // per)
        per = -(-len(taps) // n)  # same count, balanced
        for t in range(0, len(taps), per):
            chunk = taps[t:t + per]
            elements = tuple((c, ky, kx) for ky, kx in chunk for c in range(g.cin))
            tiles.append(KTile(chunk[0][0], chunk[0][1], 0, len(elements), elements))
    else:
        step = (rows // L) * L
        if step == 0:
            raise CompileError(f"layer {g.name!r}: {g.cin} input channels need macro rows >= lanes ({L}), "
                               f"have rows = {rows}")
        parts = -(-g.cin // step)
        size = -(-(-(-g.cin // parts)) // L) * L  # balanced chunk, a multiple of the lanes
        for ky, kx in taps:
            for c0 in range(0, g.cin, size):
                c1 = min(g.cin, c0 + size)
                tiles.append(KTile(ky, kx, c0, c1 - c0, tuple((c, ky, kx) for c in range(c0, c1))))
    return tiles


def tile_steps(tile: KTile, g: ConvGeom, L: int) -> int:
    """Gather cycles of a tile: one word (at most ``L`` channels of one tap, or one kernel row of a row-packed
    input) per cycle."""
    cin = g.walk_cin
    steps, c, rem = 0, tile.c0, tile.elems
    while rem:
        n = min(L, cin - c, rem)
        steps += 1
        rem -= n
        c = 0 if c + n == cin else c + n
    return steps


def page_words(g: ConvGeom, tile: KTile, n_tile: int, cfg: CimConfig) -> list[int]:
    """The macro words (rows ``rows - elems`` .. ``rows - 1`` of a page) of K tile ``tile`` and N tile
    ``n_tile``: lane ``j`` of row ``rows - elems + e`` is the weight of output channel ``n_tile*lanes + j``
    for walk element ``e``."""
    L = lanes(cfg)
    c, ky, kx = (np.array(v, dtype=np.intp) for v in zip(*tile.elements))
    w = np.asarray(g.weight)[n_tile * L:(n_tile + 1) * L][:, c, ky, kx].T  # (elems, <= L)
    w = np.concatenate([w, np.zeros((w.shape[0], L - w.shape[1]), w.dtype)], axis=1)
    return [int(word) for word in pack_lanes_array(w)]
