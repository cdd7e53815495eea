"""The fabric's instruction set and packed memory words, defined once for the RTL, the compiler and the benches.

Every word the controller reads (instructions, tile descriptors, per-channel parameters) is an Amaranth
``data`` layout built here from the configuration; the RTL uses the layouts as signal shapes and the compiler
packs with :func:`encode` / :func:`pack_word`, which read the very same layouts' field offsets (and give the
bits ``Layout.const`` gives, checking every value first): :func:`pack_word` is the one packer of every word.
The host address map (:func:`host_map`) lives here too, so the bus driver, the image writer and the RTL
decoder agree on it. docs/fabric.md describes what each instruction does and how long it takes.

Instructions (one word each, ``op`` then a union of per-opcode arguments) are listed once, in
:data:`INSTRUCTIONS`; docs/isa.md is generated from that table and the fields' docs
(:data:`MARKDOWN_COMMAND`). The trace word (:func:`trace_layout`), the
``STATUS`` register (:func:`status_layout`) and the packing of 8-bit activation lanes (:func:`pack_lanes`) are
defined here as well, for the RTL, the runner, the ISS and the compiler alike.
"""

from __future__ import annotations

import enum as py_enum
import inspect
import re
import sys
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, enum

from ..bits import ceil_log2, index_bits
from ..config import INT8_BITS, CimConfig

__all__ = ["Opcode", "PoolMode", "InstrSpec", "INSTRUCTIONS", "instr_spec", "lanes", "addr_width", "instr_layout",
           "mac_layout", "pool_layout", "ew_layout", "load_layout", "dma_layout", "gbfs_layout", "grelax_layout",
           "gspmv_layout", "lrn_layout", "lrn_table_layout", "LRN_SIZE_MAX", "lut_layout", "lut_table_layout",
           "lut_table_words", "desc_layout",
           "role_layout", "instr_fields", "LAYER_COMPUTE",
           "param_layout", "trace_layout", "status_layout", "encode", "decode_op", "pack_word", "unpack_word",
           "LANE_BITS", "pack_lanes", "unpack_lanes", "pack_lanes_array", "unpack_lanes_array", "host_map",
           "HostRegion", "CSR", "MAGIC", "Field", "isa_markdown", "MARKDOWN_COMMAND"]

#: Value of the read-only ID register (``"CIMF"``).
MAGIC = 0x43494D46


class Opcode(enum.Enum, shape=unsigned(4)):
    """Instruction opcodes. Any other value halts the controller with an error."""

    END = 0
    LOAD = 1
    SYNC = 2
    MAC = 3
    POOL = 4
    EW = 5
    DMA = 6
    DSYNC = 7
    GBFS = 8
    GRELAX = 9
    GSPMV = 10
    LRN = 11
    LUT = 12


class PoolMode(enum.Enum, shape=unsigned(1)):
    MAX = 0
    AVG = 1


def lanes(cfg: CimConfig) -> int:
    """Activation lanes per word: the outputs of one macro operation at full weight precision
    (``cols // max_wb``); an activation word, an output group and a parameter word all have this many lanes."""
    return cfg.macro.cols // cfg.macro.max_wb


def addr_width(cfg: CimConfig) -> int:
    """Activation memory address bits."""
    return index_bits(cfg.fabric.act_depth)


# Field widths that do not depend on the configuration.
DIM = 9        # heights, widths, kernel sizes
CW = 10        # words per pixel and pixel strides (VGG-19, AlexNet: 4096 channels = 512 words)
CH = 13        # channel counts and offsets (VGG-19, AlexNet: 4096 input channels of a dense layer)
SMALL = 4      # strides, dilations, paddings
POS = 16       # output positions per pass
CNT = 10       # tile counts (VGG-19, AlexNet: 4096 output channels = 512 N tiles)
QZ = 10        # signed zero points and clamp bounds (int8 and uint8 codes)
PAR = 7        # a parallelism factor (1..64)


class Field(NamedTuple):
    """One field of a documented layout: its name, its shape and what it means (docs/isa.md shows the doc)."""

    name: str
    shape: Any
    doc: str


def _documented(fields_of: Callable[..., list[tuple]]) -> Callable[..., data.StructLayout]:
    """Make ``fields_of(*args) -> [(name, shape, doc), ...]`` a cached layout function (same arguments,
    returning the ``StructLayout`` of those fields in that order) whose ``.fields(*args)`` returns the
    :class:`Field` tuples: each field's doc sits beside its shape, and the docs are generated from both."""
    @lru_cache(maxsize=None)
    def fields(*args) -> tuple[Field, ...]:
        return tuple(Field(*f) for f in fields_of(*args))

    @lru_cache(maxsize=None)
    @wraps(fields_of)
    def layout(*args) -> data.StructLayout:
        return data.StructLayout({f.name: f.shape for f in fields(*args)})

    layout.fields = fields
    return layout


@_documented
def mac_layout(cfg: CimConfig) -> data.StructLayout:
    """Arguments of ``MAC``: one pass over every output position of a convolution (a Dense layer is a
    convolution whose kernel covers the input). Addresses count activation words; ``CW`` is ``in_cw``.

    Several images in one pass (their tensors ``S_in`` words apart): output positions run over every image,
    ``npos = images * oh * ow``, ``oh`` counting the output rows of one image; when a row wrap passes an
    image's last row the address steps ``img_delta`` more and the window returns to the top image row.

    Row-packed input (``rowpack``; one word per image row, lane ``x`` = pixel ``x``, at most ``lanes`` wide):
    the walk is ``kh`` steps of one "tap" of ``cin = kw`` elements (``kw`` field 1), addresses move by rows
    only (``pos_ux = 0``, ``pos_wrap = sh``, ``ky_inc = dh``, ``pos0`` the row ``-pt``), and each step takes
    the lanes ``ix .. ix + cin - 1`` of its word, ``zp_in`` outside ``0 .. in_w - 1``
    (:mod:`cimforge.compiler.tiling`).

    Macro ``m = (bi*ki + kk)*no + nn`` serves position group ``bi``, K part ``kk`` and N part ``nn`` (its
    :func:`role_layout` word in the role table); its tile (k, n) sits in page
    ``page_base + nr_index * kr + kr_index``.
    """
    aw = addr_width(cfg) + 2
    return [
        ("in_h", unsigned(DIM), "input height (rows of one image)"),
        ("in_w", unsigned(DIM), "input width"),
        ("in_cw", unsigned(CW), "words per input pixel (``CW``: channels padded to whole words)"),
        ("cin", unsigned(CH), "input channels gathered per tap (``kw`` when row-packed)"),
        ("kh", unsigned(DIM), "kernel height"),
        ("kw", unsigned(DIM), "kernel width (1 when row-packed)"),
        ("dh", unsigned(SMALL), "vertical dilation"),
        ("dw", unsigned(SMALL), "horizontal dilation"),
        ("sh", unsigned(SMALL), "vertical stride"),
        ("sw", unsigned(SMALL), "horizontal stride"),
        ("pt", unsigned(SMALL), "top padding (the bottom one follows from the output size)"),
        ("pl", unsigned(SMALL), "left padding (the right one follows from the output size)"),
        ("ow", unsigned(DIM), "output width"),
        ("oh", unsigned(DIM), "output height of one image"),
        ("npos", unsigned(POS), "output positions of the pass (``images * oh * ow``)"),
        ("pos0", signed(aw), "address of tap (0, 0) of position 0: ``in_base - (pt*in_w + pl)*CW``, may be "
                             "negative"),
        ("kx_inc", signed(aw), "address step to the next tap in a kernel row"),
        ("ky_inc", signed(aw), "address step to the first tap of the next kernel row"),
        ("pos_ux", signed(aw), "address step to the next position in an output row (``sw*CW``)"),
        ("pos_wrap", signed(aw), "extra address step when an output row wraps (``(sh*in_w - ow*sw)*CW``)"),
        ("pos_bstep", signed(aw), "address step of ``b`` positions (``bq`` rows and ``br`` columns, before "
                                  "wrapping)"),
        ("bq", unsigned(DIM), "output rows in a step of ``b`` positions (within an image)"),
        ("br", unsigned(DIM), "output columns in a step of ``b`` positions (beyond ``bq`` whole rows)"),
        ("img_delta", signed(aw), "extra address step when a row wrap passes an image's last output row "
                                  "(``S_in - oh*sh*in_w*CW``)"),
        ("img_bstep", signed(aw), "address step of the whole images a step of ``b`` positions spans"),
        ("desc_base", unsigned(index_bits(cfg.fabric.desc_depth)), "first tile descriptor of the pass "
                                                                     "(:func:`desc_layout` words)"),
        ("kt", unsigned(CNT), "reduction (K) tiles"),
        ("nt", unsigned(CNT), "output-channel (N) tiles"),
        ("kr", unsigned(CNT), "K rounds per position (``ceil(kt / ki)``)"),
        ("nr", unsigned(CNT), "N rounds per position (``ceil(nt / no)``)"),
        ("b", unsigned(PAR), "position groups of the split (positions run in parallel)"),
        ("ki", unsigned(PAR), "K parts of the split (partial sums added)"),
        ("no", unsigned(PAR), "N parts of the split (output channels in parallel)"),
        ("groups", unsigned(PAR + 1), "``b * no``: result groups the serializer writes per final slot"),
        ("role_base", unsigned(index_bits(cfg.fabric.desc_depth)), "the role table: one :func:`role_layout` "
                                                                     "word per macro"),
        ("page_base", unsigned(cfg.macro.page_width), "macro page of the pass's first tile"),
        ("out_base", unsigned(addr_width(cfg)), "address of the output tensor"),
        ("out_cw", unsigned(CW), "words per output pixel"),
        ("param_base", unsigned(index_bits(cfg.fabric.param_depth)), "first parameter word (bias, multiplier, "
                                                                       "shift per lane: :func:`param_layout`)"),
        ("zp_in", unsigned(8), "the code gathered for a padded tap (the input zero point)"),
        ("zp_out", signed(QZ), "output zero point"),
        ("act_min", signed(QZ), "lower clamp bound of the output codes"),
        ("act_max", signed(QZ), "upper clamp bound of the output codes"),
        ("ab_m1", unsigned(3), "activation precision minus one (bit-serial cycles per macro operation - 1)"),
        ("wb_log2", unsigned(2), "log2 of the weight precision (1, 2, 4, 8 bits -> 0..3)"),
        ("x_signed", unsigned(1), "activations are int8 (else uint8)"),
        ("w_signed", unsigned(1), "weights are signed"),
        ("rowpack", unsigned(1), "the input is row-packed (one word per image row)"),
        ("epi", unsigned(1), "epilogue on: each requantised code ``q`` goes on through a per-channel affine, "
                             "``clamp(epi_zp_out + MBQM(q * w + bias))`` with the lanes' (bias, multiplier, shift, "
                             "weight) of parameter word ``epi_base + n`` (a fused depthwise 1x1 convolution, "
                             "docs/fabric.md), and only that result is written"),
        ("epi_base", unsigned(index_bits(cfg.fabric.param_depth)), "first parameter word of the epilogue"),
        ("epi_zp_out", signed(QZ), "output zero point of the epilogue"),
        ("epi_min", signed(QZ), "lower clamp bound of the epilogue's codes"),
        ("epi_max", signed(QZ), "upper clamp bound of the epilogue's codes"),
    ]


@_documented
def pool_layout(cfg: CimConfig) -> data.StructLayout:
    """Arguments of ``POOL``: for each output position and channel word, reduce the window's taps (padded
    taps are skipped) by max, or by a sum of ``x - zp_in`` followed by requantisation (``mult, shift``).
    Addresses: ``in_base + (iy*in_w + ix)*cw + word``, ``out_base + (oy*ow + ox)*cw + word``."""
    aw = addr_width(cfg)
    return [
        ("mode", PoolMode, "``MAX`` (0) or ``AVG`` (1)"),
        ("x_signed", unsigned(1), "codes are int8 (else uint8)"),
        ("in_base", unsigned(aw), "address of the input tensor"),
        ("in_h", unsigned(DIM), "input height"),
        ("in_w", unsigned(DIM), "input width"),
        ("cw", unsigned(CW), "words per pixel (input and output)"),
        ("kh", unsigned(DIM), "window height"),
        ("kw", unsigned(DIM), "window width"),
        ("sh", unsigned(SMALL), "vertical stride"),
        ("sw", unsigned(SMALL), "horizontal stride"),
        ("dh", unsigned(SMALL), "vertical dilation"),
        ("dw", unsigned(SMALL), "horizontal dilation"),
        ("pt", unsigned(SMALL), "top padding"),
        ("pl", unsigned(SMALL), "left padding"),
        ("oh", unsigned(DIM), "output height"),
        ("ow", unsigned(DIM), "output width"),
        ("out_base", unsigned(aw), "address of the output tensor"),
        ("zp_in", signed(QZ), "input zero point (``AVG``)"),
        ("mult", signed(32), "requantisation multiplier of the window sum (``AVG``)"),
        ("shift", signed(6), "requantisation shift, positive left (``AVG``)"),
        ("zp_out", signed(QZ), "output zero point (``AVG``)"),
        ("act_min", signed(QZ), "lower clamp bound (``AVG``)"),
        ("act_max", signed(QZ), "upper clamp bound (``AVG``)"),
        ("round_even", unsigned(1), "exact ties of the requantised average round to even, as onnxruntime's "
                                    "``QuantizeLinear`` (else as the design's rounding form; ``AVG``)"),
    ]


@_documented
def ew_layout(cfg: CimConfig) -> data.StructLayout:
    """Arguments of ``EW``: for ``npos`` pixels and ``cw`` words each::

        va = a - zp_a;  vb = has_b ? b - zp_b : 0
        if rq_in:  va = MBQM(va << ls, mult_a, shift_a);  vb = MBQM(vb << ls, mult_b, shift_b)
        s = mul ? va * vb : va + vb;  if rq_out: s = MBQM(s, mult_o, shift_o)
        out = clamp(zp_out + s, act_min, act_max)

    (MBQM: MultiplyByQuantizedMultiplier.) ``Add`` uses every stage, ``Mul`` the product and ``rq_out``,
    ``Clamp`` none, a requantising copy ``rq_out`` only. Pixel ``p`` word ``w`` of each operand sits at
    ``base + p*stride + w`` (``b_stride`` 0: one word per channel word for every pixel, a per-channel ``b``)."""
    aw = addr_width(cfg)
    return [
        ("a_base", unsigned(aw), "address of operand ``a``"),
        ("b_base", unsigned(aw), "address of operand ``b``"),
        ("out_base", unsigned(aw), "address of the output"),
        ("npos", unsigned(POS), "pixels"),
        ("cw", unsigned(CW), "words per pixel"),
        ("a_stride", unsigned(CW), "words from one pixel of ``a`` to the next"),
        ("b_stride", unsigned(CW), "words from one pixel of ``b`` to the next"),
        ("out_stride", unsigned(CW), "words from one output pixel to the next"),
        ("x_signed", unsigned(1), "codes are int8 (else uint8)"),
        ("has_b", unsigned(1), "there is a second operand"),
        ("rq_in", unsigned(1), "requantise each operand (``mult_a``/``mult_b``) before the sum"),
        ("rq_out", unsigned(1), "requantise the sum (``mult_o``)"),
        ("mul", unsigned(1), "the product ``va * vb`` instead of the sum (``rq_in`` clear)"),
        ("ls", unsigned(5), "left shift of the operands before ``rq_in`` (TFLite's ``left_shift``)"),
        ("zp_a", signed(QZ), "zero point of ``a``"),
        ("zp_b", signed(QZ), "zero point of ``b``"),
        ("mult_a", signed(32), "multiplier of ``a``"),
        ("shift_a", signed(6), "shift of ``a``, positive left"),
        ("mult_b", signed(32), "multiplier of ``b``"),
        ("shift_b", signed(6), "shift of ``b``, positive left"),
        ("mult_o", signed(32), "multiplier of the sum"),
        ("shift_o", signed(6), "shift of the sum, positive left"),
        ("zp_out", signed(QZ), "output zero point"),
        ("act_min", signed(QZ), "lower clamp bound"),
        ("act_max", signed(QZ), "upper clamp bound"),
    ]


@_documented
def load_layout(cfg: CimConfig) -> data.StructLayout:
    """Arguments of ``LOAD``: ``count`` rows from weight word ``src`` on into (``page``, ``row0``) onwards of
    every macro whose bit is set in ``mask`` (rows wrap into the next page)."""
    return [
        ("src", unsigned(index_bits(cfg.fabric.weight_depth)), "first weight-memory word"),
        ("count", unsigned(16), "rows to copy"),
        ("mask", unsigned(cfg.fabric.n_macros), "the macros that receive the rows, one bit per macro"),
        ("page", unsigned(cfg.macro.page_width), "first macro page"),
        ("row0", unsigned(cfg.macro.row_width), "first row in that page"),
    ]


@_documented
def gbfs_layout(cfg: CimConfig) -> data.StructLayout:
    """Arguments of ``GBFS``: for each set bit ``r`` of ``rows``, one BITWISE operation
    ``AND(amem[src], W[macro][page][r])`` (the block's destination row ``r`` against the frontier bits of its
    sources); ``amem[dst] |= reached``, bit ``r`` set when that operation's popcount is non-zero
    (:mod:`cimforge.gen.graph_engine`, docs/graph.md)."""
    aw = addr_width(cfg)
    return [
        ("macro", unsigned(index_bits(cfg.fabric.n_macros)), "the macro holding the block"),
        ("page", unsigned(cfg.macro.page_width), "its page"),
        ("rows", unsigned(cfg.macro.rows), "the destination rows to expand, one bit per macro row"),
        ("src", unsigned(aw), "activation word of the frontier bits of the block's sources (bit ``c``: source "
                              "``c``)"),
        ("dst", unsigned(aw), "activation word of the reached bits of its destinations (bit ``r``: row ``r``)"),
    ]


@_documented
def grelax_layout(cfg: CimConfig) -> data.StructLayout:
    """Arguments of ``GRELAX``: for each of ``count`` arc words from ``arcs`` (source ``u``, destination ``v``,
    weight ``w``), ``amem[new + v] = min(amem[new + v], sat(amem[old + u] + w))``, one arc per cycle
    (:mod:`cimforge.gen.graph_relax`, docs/graph.md)."""
    aw = addr_width(cfg)
    return [
        ("arcs", unsigned(aw), "activation word of the block's first arc"),
        ("count", unsigned(aw + 1), "arcs to relax"),
        ("old", unsigned(aw), "activation word of vertex 0's value of the previous round (read only)"),
        ("new", unsigned(aw), "activation word of vertex 0's value of this round (read, minimum written)"),
    ]


@_documented
def gspmv_layout(cfg: CimConfig) -> data.StructLayout:
    """Arguments of ``GSPMV``: the block in ``page`` of ``macro`` (row = source, bit column = destination)
    times the sources' contributions, ``slices_m1 + 1`` unsigned 8-bit slices from activation word ``x`` on
    (one MAC operation each, ``wb = 1``, ``ab = 8``; rows outside ``rows`` take activation 0), shift-added
    into the engine's column sums; with ``flush`` the sums are added into the words ``y .. y + cols - 1`` and
    cleared (:mod:`cimforge.gen.graph_spmv`, docs/graph.md)."""
    aw = addr_width(cfg)
    return [
        ("macro", unsigned(index_bits(cfg.fabric.n_macros)), "the macro holding the block"),
        ("page", unsigned(cfg.macro.page_width), "its page"),
        ("x", unsigned(aw), "activation word of the first slice word of the block's source contributions"),
        ("y", unsigned(aw), "activation word of the block's first destination sum (one per word)"),
        ("rows", unsigned(cfg.macro.rows), "the block's source rows, one bit per macro row (the others, which "
                                           "may hold another block's bits, multiply activation 0)"),
        ("slices_m1", unsigned(2), "slices minus one: the contributions' non-zero 8-bit slices (1..4)"),
        ("flush", unsigned(1), "add the column sums into ``y ..`` and clear them (else keep them for the next "
                               "block of the same destination segment)"),
    ]


#: The largest ``LRN`` window (the engine's delay line of channel values).
LRN_SIZE_MAX = 15


@_documented
def lrn_layout(cfg: CimConfig) -> data.StructLayout:
    """Arguments of ``LRN``: for each of ``npos`` pixels (pixel ``p`` word ``w`` at ``base + p*cw + w``), one
    channel per cycle: ``d = x - zp_in``, the window sum ``S`` of ``d**2`` over channels ``c - (size-1)//2 ..
    c + size//2``, ``g = G[k] + ((D[k]*f + 2**(shift-1)) >> shift)`` with ``k, f = S >> shift, S mod
    2**shift`` from the table at ``table_base`` (:func:`lrn_table_layout` words), ``out = clamp(zp_out + ((d*g +
    2**(frac-1)) >> frac))``; lanes past ``channels`` in a pixel's last word are written 0
    (:mod:`cimforge.golden.lrn`, docs/lrn.md)."""
    aw = addr_width(cfg)
    return [
        ("in_base", unsigned(aw), "address of the input tensor"),
        ("out_base", unsigned(aw), "address of the output tensor"),
        ("npos", unsigned(POS), "pixels"),
        ("cw", unsigned(CW), "words per pixel (input and output)"),
        ("channels", unsigned(CH), "channels"),
        ("size", unsigned(SMALL), f"window size (1..{LRN_SIZE_MAX})"),
        ("x_signed", unsigned(1), "codes are int8 (else uint8)"),
        ("zp_in", signed(QZ), "input zero point"),
        ("zp_out", signed(QZ), "output zero point"),
        ("act_min", signed(QZ), "lower clamp bound"),
        ("act_max", signed(QZ), "upper clamp bound"),
        ("table_base", unsigned(index_bits(cfg.fabric.param_depth)), "first parameter word of the table"),
        ("shift", unsigned(5), "log2 of the table's segment width"),
        ("frac", unsigned(6), "fraction bits of the table's values"),
    ]


@lru_cache(maxsize=None)
def lrn_table_layout(cfg: CimConfig) -> data.ArrayLayout:
    """A parameter word of an ``LRN`` table: entries ``(g, dg)`` (value and step to the next entry's value,
    int32 each), the largest power of two of them the word holds (so that the engine finds entry ``k`` in word
    ``k // n``, slot ``k % n``, by slicing ``k``)."""
    entry = data.StructLayout({"g": signed(32), "dg": signed(32)})
    return data.ArrayLayout(entry, 1 << ((param_layout(cfg).size // 64).bit_length() - 1))


@_documented
def lut_layout(cfg: CimConfig) -> data.StructLayout:
    """Arguments of ``LUT``: the 256-entry table at ``table_base`` (:func:`lut_table_layout` words, entry ``b``
    the output code of an input code whose byte is ``b``) is loaded into the engine, then each of the ``npos *
    cw`` words of the input (pixel ``p`` word ``w`` at ``in_base + p*cw + w``) is looked up lane by lane, one
    word per cycle, into the same place of the output; lanes past ``channels`` in a pixel's last word are
    written 0 (docs/operators.md).

    With ``per_channel`` each channel ``c`` has its own table, at ``table_base + c * lut_table_words``: channel by
    channel, the engine loads ``c``'s table, then looks up lane ``c % lanes`` of word ``c // lanes`` of every
    pixel, read from the input for a word's first channel and from the output for the others, and writes the
    word back with its other lanes as read (so ``channels * (npos + lut_table_words)`` cycles)."""
    aw = addr_width(cfg)
    return [
        ("in_base", unsigned(aw), "address of the input tensor"),
        ("out_base", unsigned(aw), "address of the output tensor"),
        ("npos", unsigned(POS), "pixels"),
        ("cw", unsigned(CW), "words per pixel (input and output)"),
        ("channels", unsigned(CH), "channels"),
        ("table_base", unsigned(index_bits(cfg.fabric.param_depth)), "first parameter word of the table"),
        ("per_channel", unsigned(1), "one table per channel, channel by channel (else one table for all)"),
    ]


@lru_cache(maxsize=None)
def lut_table_layout(cfg: CimConfig) -> data.ArrayLayout:
    """A parameter word of a ``LUT`` table: as many 8-bit output codes as the word holds; entry ``b`` is word
    ``b // n``, slot ``b % n`` (:func:`lut_table_words` words per table)."""
    return data.ArrayLayout(unsigned(8), param_layout(cfg).size // 8)


def lut_table_words(cfg: CimConfig) -> int:
    """Parameter words of one ``LUT`` table (256 entries)."""
    return -(-256 // lut_table_layout(cfg).length)


@_documented
def dma_layout(cfg: CimConfig) -> data.StructLayout:
    """Arguments of ``DMA``: move a 2-D tile of ``rows`` rows of ``len`` words between the external memory and
    an on-chip memory, row ``r`` word ``i`` at external word ``ext + r*ext_stride + i`` and on-chip word
    ``addr + r*stride + i``. Each row is a sequence of AXI4 ``INCR`` bursts split at 256 beats and at 4 KB
    boundaries (docs/memory.md gives the exact cycles)."""
    f = cfg.fabric
    ext, onchip = index_bits(f.ext_depth), index_bits(max(f.act_depth, f.weight_depth))
    return [
        ("store", unsigned(1), "0: external memory to on-chip memory (load), 1: on-chip to external (store)"),
        ("wmem", unsigned(1), "the on-chip memory: 0 the activation memory, 1 the weight memory"),
        ("ext", unsigned(ext), "first external word (one bus beat)"),
        ("addr", unsigned(onchip), "first on-chip word"),
        ("rows", unsigned(POS), "rows of the tile"),
        ("len", unsigned(POS), "words per row"),
        ("ext_stride", unsigned(ext), "external words from one row's start to the next"),
        ("stride", unsigned(onchip), "on-chip words from one row's start to the next"),
    ]


@dataclass(frozen=True)
class InstrSpec:
    """One instruction of the ISA: the single place that ties an opcode to its arguments and its engine.

    Attributes
    ----------
    op : Opcode
    name : str
        Mnemonic (``"MAC"``); ``name.lower()`` is the key of the arguments in ``instr_layout(cfg).args``.
    layout : callable or None
        ``layout(cfg)`` is the arguments' layout; None for an instruction without arguments.
    engine : str or None
        The engine that executes it (``"loader"``, ``"mac"``, ``"pool"``, ``"ew"``, ``"dma"``), None for the
        controller's own instructions.
    doc : str
        One line on what the instruction does (docs/isa.md is generated from it).
    """

    op: Opcode
    name: str
    layout: Callable[[CimConfig], data.Layout] | None
    engine: str | None
    doc: str


#: The instruction set, in opcode order: the encoder, the decoder, the RTL's decode, the ISS and the cost
#: model's dispatch and docs/isa.md all derive from this table.
INSTRUCTIONS: tuple[InstrSpec, ...] = (
    InstrSpec(Opcode.END, "END", None, None, "Stop; the controller raises ``done``."),
    InstrSpec(Opcode.LOAD, "LOAD", load_layout, "loader",
              "Queue a weight load: ``count`` rows from the weight memory at ``src`` into page ``page`` (rows "
              "``row0``... wrapping to the next page) of every macro in ``mask``; runs beside later instructions."),
    InstrSpec(Opcode.SYNC, "SYNC", None, None, "Wait until every queued weight load has finished."),
    InstrSpec(Opcode.MAC, "MAC", mac_layout, "mac",
              "One pass of a convolution or fully connected layer over all output positions: im2col gathering, "
              "macro operations, partial-sum accumulation, requantisation, write-back."),
    InstrSpec(Opcode.POOL, "POOL", pool_layout, "pool",
              "Max or average pooling window pass (average: window sum then requantisation)."),
    InstrSpec(Opcode.EW, "EW", ew_layout, "ew",
              "Element-wise pass: residual add (TFLite integer scheme), clamp, requantising copy."),
    InstrSpec(Opcode.DMA, "DMA", dma_layout, "dma",
              "Queue a 2-D tile transfer between the external memory (AXI4) and the activation or weight "
              "memory; runs beside later instructions (docs/memory.md)."),
    InstrSpec(Opcode.DSYNC, "DSYNC", None, None, "Wait until every queued ``DMA`` transfer has finished."),
    InstrSpec(Opcode.GBFS, "GBFS", gbfs_layout, "graph",
              "BFS frontier expansion over one adjacency block: a BITWISE AND of the frontier word with each "
              "selected row of a macro page, reached destinations OR-ed into an activation word (docs/graph.md)."),
    InstrSpec(Opcode.GRELAX, "GRELAX", grelax_layout, "relax",
              "Bellman-Ford / label-propagation relaxation over one block's arcs: per arc, the minimum of the "
              "destination's value and the source's previous value plus the weight (docs/graph.md)."),
    InstrSpec(Opcode.GSPMV, "GSPMV", gspmv_layout, "spmv",
              "PageRank's SpMV over one adjacency block in the macros' MAC mode: up to four 8-bit slices of the "
              "sources' contributions times one-bit weights, shift-added into column sums kept across blocks and "
              "added into the destinations' words on ``flush`` (docs/graph.md)."),
    InstrSpec(Opcode.LRN, "LRN", lrn_layout, "lrn",
              "Local response normalisation across channels: one channel per cycle, a running window sum of "
              "squares, an interpolated table of the normaliser (docs/lrn.md)."),
    InstrSpec(Opcode.LUT, "LUT", lut_layout, "lut",
              "Element-wise table: a 256-entry table of output codes loaded from the parameter memory, then one "
              "word per cycle looked up lane by lane (Sigmoid, Tanh, HardSwish, LeakyRelu, ...; "
              "docs/operators.md)."),
)

_BY_OP = {spec.op.value: spec for spec in INSTRUCTIONS}
assert [s.op for s in INSTRUCTIONS] == list(Opcode), "INSTRUCTIONS must list every Opcode once, in order"


#: The instructions a network layer's compute is made of (their engines read and write the activation memory):
#: the per-layer reports (:func:`cimforge.sim.fabric_check.layer_rows`) and the hazard check of the staging
#: regions (:func:`cimforge.compiler.memory.check_hazards`) count these.
LAYER_COMPUTE = ("MAC", "POOL", "EW", "LRN", "LUT")


def instr_spec(op: Opcode | int) -> InstrSpec:
    """The :class:`InstrSpec` of an opcode (an :class:`Opcode` or its integer value).

    Raises
    ------
    ValueError
        ``op`` is no opcode; the message lists the allowed ones.
    """
    value = op.value if isinstance(op, Opcode) else op
    spec = _BY_OP.get(value) if isinstance(value, int) and not isinstance(value, bool) else None
    if spec is None:
        allowed = ", ".join(f"{s.name}={s.op.value}" for s in INSTRUCTIONS)
        raise ValueError(f"opcode {op!r}: allowed {allowed}")
    return spec


@lru_cache(maxsize=None)
def instr_layout(cfg: CimConfig) -> data.StructLayout:
    """One instruction: the opcode and the arguments of every opcode overlaid (union members named
    ``spec.name.lower()``)."""
    return data.StructLayout({
        "op": Opcode,
        "args": data.UnionLayout({s.name.lower(): s.layout(cfg) for s in INSTRUCTIONS if s.layout is not None}),
    })


@lru_cache(maxsize=None)
def desc_layout(cfg: CimConfig) -> data.StructLayout:
    """A reduction tile of a ``MAC`` pass: where its gather starts and how many elements it has.

    The gather walks taps ``(ky, kx)`` row-major from ``(ky0, kx0)``, channels from ``c0`` (first tap) or 0
    (later taps) up to ``cin``, ``elems`` elements in all, a word (at most ``lanes`` channels) per cycle.
    ``dy0 = ky0*dh``, ``dx0 = kx0*dw`` (pixel offsets of the first tap) and ``off0`` (its address offset from
    the position's tap (0, 0), channel word ``c0 // lanes`` included) are precomputed.
    """
    return data.StructLayout({
        "ky0": unsigned(DIM), "kx0": unsigned(DIM), "dy0": unsigned(DIM + SMALL), "dx0": unsigned(DIM + SMALL),
        "c0": unsigned(CH), "elems": unsigned(index_bits(cfg.macro.rows + 1)), "off0": signed(addr_width(cfg) + 2),
    })


@lru_cache(maxsize=None)
def role_layout(cfg: CimConfig) -> data.StructLayout:
    """What one macro does in a ``MAC`` pass (a descriptor-memory word of the pass's role table): position
    group ``bi``, K part ``kk``, N part ``nn``, and whether it takes part at all (``en``)."""
    return data.StructLayout({"bi": unsigned(PAR), "kk": unsigned(PAR), "nn": unsigned(PAR), "en": unsigned(1)})


@lru_cache(maxsize=None)
def param_layout(cfg: CimConfig) -> data.ArrayLayout:
    """Per-lane requantisation parameters of one output channel word: int32 bias (zero-point folded),
    multiplier ``M`` and TFLite ``shift`` (positive: left); ``w`` is the int8 weight of a ``MAC`` epilogue's
    per-channel affine (0 elsewhere)."""
    lane = data.StructLayout({"bias": signed(32), "mult": signed(32), "shift": signed(8), "w": signed(8),
                              "_pad": unsigned(16)})
    return data.ArrayLayout(lane, lanes(cfg))


@_documented
def trace_layout() -> data.StructLayout:
    """A trace entry: the cycle counter when the instruction at ``pc`` retired, and its opcode."""
    return [
        ("cycle", unsigned(32), "value of ``CYCLES`` when the instruction retired"),
        ("pc", unsigned(16), "address of the instruction"),
        ("op", unsigned(4), "its opcode"),
        ("_pad", unsigned(12), "zero"),
    ]


@_documented
def status_layout() -> data.StructLayout:
    """The ``STATUS`` register (the rest of the 32-bit word reads 0)."""
    return [
        ("busy", unsigned(1), "a program runs"),
        ("done", unsigned(1), "the program reached ``END``"),
        ("error", unsigned(1), "it stopped at an unknown opcode (``PC``/``OPCODE`` say where)"),
        ("loader_busy", unsigned(1), "weight loads are queued or running"),
    ]


# -- activation lanes --------------------------------------------------------------------------------------

#: Bits of one activation lane (an int8 or uint8 code) in an activation word; lane ``j`` is bits
#: ``8j .. 8j+7``.
LANE_BITS = INT8_BITS
_LANE_MASK = (1 << LANE_BITS) - 1


def pack_lanes(values: Sequence[int]) -> int:
    """An activation word from its lane codes (int8 or uint8; lane 0 in bits 0..7).

    Raises
    ------
    ValueError
        A code outside -128..255; the message names the lane.
    """
    word = 0
    for j, v in enumerate(values):
        v = int(v)
        if not -128 <= v <= 255:
            raise ValueError(f"lane {j} = {v}: allowed -128..255 (an int8 or uint8 code)")
        word |= (v & _LANE_MASK) << (LANE_BITS * j)
    return word


def unpack_lanes(word: int, n: int, signed: bool) -> list[int]:
    """The ``n`` lane codes of an activation word, as int8 (``signed``) or uint8 values."""
    out = [(int(word) >> (LANE_BITS * j)) & _LANE_MASK for j in range(n)]
    return [v - 256 if v > 127 else v for v in out] if signed else out


def pack_lanes_array(codes: np.ndarray) -> np.ndarray:
    """:func:`pack_lanes` over an array: the last axis holds the lanes.

    Returns
    -------
    numpy.ndarray
        ``codes.shape[:-1]``, dtype ``object`` (Python ints, so words wider than 64 bits stay exact).

    Raises
    ------
    ValueError
        A code outside -128..255.
    """
    codes = np.asarray(codes)
    if codes.size and (codes.min() < -128 or codes.max() > 255):
        bad = codes[(codes < -128) | (codes > 255)].flat[0]
        raise ValueError(f"lane code {int(bad)}: allowed -128..255 (an int8 or uint8 code)")
    n = codes.shape[-1]
    u8 = (codes.astype(np.int64) & _LANE_MASK).astype(np.uint8)
    # Eight lanes make one little-endian uint64; wider words join those chunks as Python ints.
    pad = (-n) % 8
    if pad:
        u8 = np.concatenate([u8, np.zeros(u8.shape[:-1] + (pad,), np.uint8)], axis=-1)
    chunks = np.ascontiguousarray(u8).view("<u8").astype(object)
    words = chunks[..., 0]
    for k in range(1, chunks.shape[-1]):
        words = words | (chunks[..., k] << (64 * k))
    return np.asarray(words, dtype=object).reshape(codes.shape[:-1])


def unpack_lanes_array(words, n: int, signed: bool) -> np.ndarray:
    """:func:`unpack_lanes` over an array of words: ``shape(words) + (n,)``, dtype int64."""
    words = np.asarray(words, dtype=object)
    n_chunks = -(-n // 8)
    chunks = np.stack([((words >> (64 * k)) & ((1 << 64) - 1)).astype(np.uint64) for k in range(n_chunks)],
                      axis=-1) if words.size else np.zeros(words.shape + (n_chunks,), np.uint64)
    u8 = np.ascontiguousarray(chunks.astype("<u8")).view(np.uint8)[..., :n]
    return (u8.view(np.int8) if signed else u8).astype(np.int64)


# -- packing -----------------------------------------------------------------------------------------------


def pack_word(layout: data.Layout, value: Mapping[str, Any] | Sequence | int) -> int:
    """Pack a (nested) mapping or sequence into an integer by ``layout``: the one packer for every word.

    Gives the bits ``layout.const(value)`` gives (fields assigned in the order given, missing fields zero,
    signed fields take negative ints, enum fields their members), but checks every value first and packs
    from the layout's own field offsets, which is fast enough for the benches' hot loops. A nested layout may
    also be given as its raw bits (an int).

    Raises
    ------
    ValueError
        A value does not fit its field, or a field is not in the layout; the message names the field (dotted
        path), the value and the range.
    """
    return _pack(layout, value, "")


def unpack_word(layout: data.Layout, word: int) -> Any:
    """The inverse of :func:`pack_word`: a dict of Python ints (signed fields signed, nested structs as dicts,
    arrays as lists; enum fields as their integer values)."""
    return _unpack(layout, int(word))


def _unpack(layout: data.Layout, v: int) -> Any:
    # the cached field plan, not the Amaranth layout: the cost model and the ISS decode every instruction of a
    # program (89 K for ResNet-50), and walking the layout's objects cost 2 ms per word
    plan = _plan(layout)
    if plan[0] == "array":
        _, (_, width, is_signed, sub), length, stride = plan
        return [_field(sub, (v >> (i * stride)) & ((1 << width) - 1), width, is_signed) for i in range(length)]
    return {name: _field(sub, (v >> offset) & ((1 << width) - 1), width, is_signed)
            for name, (offset, width, is_signed, sub) in plan[1].items()}


def _field(sub, v: int, width: int, is_signed: bool):
    if sub is not None:
        return _unpack(sub, v)
    return v - (1 << width) if is_signed and v >> (width - 1) else v


@lru_cache(maxsize=None)
def _shape(shape) -> tuple[int, bool]:
    cast = Shape.cast(shape) if not isinstance(shape, data.Layout) else shape.as_shape()
    return cast.width, cast.signed


def _width(shape) -> int:
    return _shape(shape)[0]


def _is_signed(shape) -> bool:
    return _shape(shape)[1]


@lru_cache(maxsize=None)
def _plan(layout: data.Layout) -> tuple:
    """The field offsets of a layout, read once: ``("struct", {name: field})`` or ``("array", field, length,
    stride)``, a field being (offset, width, signed, nested layout or None)."""
    def entry(field):
        sub = field.shape if isinstance(field.shape, data.Layout) else None
        return (field.offset, *_shape(field.shape), sub)
    if isinstance(layout, data.ArrayLayout):
        return "array", entry(layout[0]), layout.length, _width(layout.elem_shape)
    return "struct", {name: entry(field) for name, field in layout}


def _pack(layout: data.Layout, value, path: str) -> int:
    plan = _plan(layout)
    if plan[0] == "array":
        if not isinstance(value, (Sequence, np.ndarray)) or isinstance(value, (str, bytes)):
            raise ValueError(f"field {path or '<word>'} = {value!r}: a sequence for {layout!r}")
        _, (_, width, is_signed, sub), length, stride = plan
        if len(value) > length:
            raise ValueError(f"field {path or '<word>'}: {len(value)} elements, allowed at most {length}")
        word = 0
        if sub is None:  # the hot case (a macro operation's activations): check and pack inline
            lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if is_signed else (0, (1 << width) - 1)
            mask = (1 << width) - 1
            for i, v in enumerate(value):
                v = v if type(v) is int else int(v.value if isinstance(v, py_enum.Enum) else v)
                if v < lo or v > hi:
                    _scalar(v, width, is_signed, path, i)  # raises the error naming the element
                word |= (v & mask) << (i * stride)
            return word
        for i, v in enumerate(value):
            bits = _scalar(v, width, is_signed, path, i) if isinstance(v, (int, np.integer)) \
                else _pack(sub, v, f"{path}[{i}]")
            word |= bits << (i * stride)
        return word
    if not isinstance(value, Mapping):
        raise ValueError(f"field {path or '<word>'} = {value!r}: a mapping of fields for {layout!r}")
    fields = plan[1]
    word = 0
    for key, v in value.items():
        try:
            offset, width, is_signed, sub = fields[key]
        except KeyError:
            raise ValueError(f"no field {_name(path, key)} in the layout; allowed: {', '.join(fields)}") from None
        bits = _pack(sub, v, _name(path, key)) if sub is not None and not isinstance(v, (int, np.integer)) \
            else _scalar(v, width, is_signed, path, key)
        mask = ((1 << width) - 1) << offset
        word = (word & ~mask) | (bits << offset)  # later fields win, as in ``Layout.const`` (unions)
    return word


def _name(path: str, key) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)


def _scalar(v, width: int, is_signed: bool, path: str, key) -> int:
    """A field value as its ``width`` bits, after checking that it fits (the name is built only for errors)."""
    if isinstance(v, py_enum.Enum):
        v = v.value
    try:
        v = int(v)
    except (TypeError, ValueError):
        raise ValueError(f"field {_name(path, key)} = {v!r}: an integer or an enum member") from None
    if is_signed:
        if not -(1 << (width - 1)) <= v < (1 << (width - 1)):
            raise ValueError(f"field {_name(path, key)} = {v}: allowed {-(1 << (width - 1))}.."
                             f"{(1 << (width - 1)) - 1} (signed {width} bits)")
        return v & ((1 << width) - 1)
    if v < 0 or v >> width:
        raise ValueError(f"field {_name(path, key)} = {v}: allowed 0..{(1 << width) - 1} (unsigned {width} bits)")
    return v


def encode(cfg: CimConfig, op: Opcode, **args: Any) -> int:
    """An instruction word: ``encode(cfg, Opcode.MAC, in_h=8, ...)``.

    Packs from the instruction's field offsets, computed once per configuration and opcode (:func:`instr_fields`):
    the graph programs of a 10,000-vertex graph are over a million instructions. Any value that does not fit,
    or a field the instruction does not have, goes through :func:`pack_word`, whose error names it.

    Raises
    ------
    ValueError
        Arguments given to an instruction without any, or a value that does not fit its field.
    """
    word, fields = _encoder(cfg, op)
    for name, v in args.items():
        f = fields.get(name)
        if f is None or type(v) is not int:
            return _encode_checked(cfg, op, args)
        offset, width, is_signed = f
        if is_signed:
            if not -(1 << (width - 1)) <= v < 1 << (width - 1):
                return _encode_checked(cfg, op, args)
            v &= (1 << width) - 1
        elif v < 0 or v >> width:
            return _encode_checked(cfg, op, args)
        word |= v << offset
    return word


def _encode_checked(cfg: CimConfig, op: Opcode, args: dict) -> int:
    """:func:`encode` through the general packer: enum and numpy values, and the errors."""
    spec = instr_spec(op)
    if spec.layout is None:
        if args:
            raise ValueError(f"{spec.name} takes no arguments, got {sorted(args)}")
        return pack_word(instr_layout(cfg), {"op": spec.op})
    return pack_word(instr_layout(cfg), {"op": spec.op, "args": {spec.name.lower(): args}})


_FIELDS: dict[int, tuple] = {}


def instr_fields(cfg: CimConfig, op: Opcode) -> dict[str, tuple[int, int, bool]]:
    """The argument fields of opcode ``op`` in an instruction word of ``cfg``: name -> (bit offset in the word,
    width, signed); empty for an instruction without arguments."""
    return _encoder(cfg, op)[1]


def _encoder(cfg: CimConfig, op: Opcode) -> tuple[int, dict[str, tuple[int, int, bool]]]:
    # cached by the configuration's identity: hashing a configuration costs more than packing a word
    hit = _FIELDS.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        lay = instr_layout(cfg)
        off = lay["args"].offset
        table = {}
        for spec in INSTRUCTIONS:
            table[spec.op] = (spec.op.value << lay["op"].offset, {} if spec.layout is None else {
                name: (o + off, w, sig) for name, (o, w, sig, sub) in _plan(spec.layout(cfg))[1].items()
                if sub is None})
        hit = _FIELDS[id(cfg)] = (cfg, table)
    return hit[1][Opcode(op)]


def decode_op(cfg: CimConfig, word: int) -> tuple[int, dict[str, int] | None]:
    """(opcode value, arguments) of an instruction word (arguments None for END/SYNC/unknown opcodes)."""
    lay = instr_layout(cfg)
    op = word & ((1 << lay["op"].width) - 1)
    spec = _BY_OP.get(op)
    if spec is None or spec.layout is None:
        return op, None
    return op, unpack_word(spec.layout(cfg), word >> lay["args"].offset)


# -- host interface ----------------------------------------------------------------------------------------

#: Control and status registers (32-bit word offsets in the CSR region).
CSR = {
    "ID": 0,          # RO  MAGIC
    "CTRL": 1,        # WO  bit 0: start at START_PC (clears counters and trace)
    "STATUS": 2,      # RO  status_layout(): busy, done, error (unknown opcode), loader busy
    "PC": 3,          # RO  program counter of the instruction being executed (or that stopped)
    "START_PC": 4,    # RW
    "CYCLES": 5,      # RO  cycles since start, frozen at done
    "LOAD_CYCLES": 6,  # RO  cycles the weight loader was writing
    "TRACE_COUNT": 7,  # RO  instructions retired since start (trace entries written, saturating at the depth)
    "OPCODE": 8,      # RO  opcode of the instruction at PC
    "LANES": 9,       # RO  activation lanes per word
    "N_MACROS": 10,   # RO
    "MACRO_BASE": 16,  # RO  per macro m: busy, stall, weight-load cycles at MACRO_BASE + 4*m + (0, 1, 2)
}


class HostRegion:
    """One memory (or the CSR block) in the host address space.

    Attributes
    ----------
    name : str
    index : int
        Region number (the top address bits).
    depth, width : int
        Words and bits per word of the memory.
    slices : int
        32-bit bus words per memory word, rounded up to a power of two (word ``i``, slice ``j`` at bus word
        offset ``i * slices + j``; slice 0 holds bits 0..31).
    writable : bool
    """

    def __init__(self, name: str, index: int, depth: int, width: int, writable: bool = True):
        self.name, self.index, self.depth, self.width, self.writable = name, index, depth, width, writable
        n = max(1, -(-width // 32))
        self.slices = 1 << ceil_log2(n)

    @property
    def span(self) -> int:
        return self.depth * self.slices

    def __repr__(self) -> str:
        return f"HostRegion({self.name}, index={self.index}, depth={self.depth}, width={self.width})"


@lru_cache(maxsize=None)
def host_map(cfg: CimConfig) -> tuple[int, dict[str, HostRegion]]:
    """(offset bits, regions by name): bus word address = ``region.index << offset_bits | offset``."""
    f, c = cfg.fabric, cfg.controller
    regions = [
        HostRegion("csr", 0, CSR["MACRO_BASE"] + 4 * f.n_macros, 32),
        HostRegion("imem", 1, c.program_depth, instr_layout(cfg).size),
        HostRegion("amem", 2, f.act_depth, 8 * lanes(cfg)),
        HostRegion("wmem", 3, f.weight_depth, cfg.macro.cols),
        HostRegion("pmem", 4, f.param_depth, param_layout(cfg).size),
        HostRegion("dmem", 5, f.desc_depth, desc_layout(cfg).size),
        HostRegion("trace", 6, c.trace_depth, 64, writable=False),
    ]
    bits = max(index_bits(r.span) for r in regions)
    return bits, {r.name: r for r in regions}


# -- generated documentation -------------------------------------------------------------------------------

#: The command that writes docs/isa.md (tests/test_isa.py checks that the committed file is what it prints).
MARKDOWN_COMMAND = "python -m cimforge.gen.isa --markdown > docs/isa.md"


def _md(text: str) -> str:
    """reStructuredText markup of a docstring as Markdown: roles and double backticks to code spans."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", inspect.cleandoc(text))
    return re.sub(r"::$", ":", text.replace("``", "`"), flags=re.M)


def _kind(shape) -> str:
    if isinstance(shape, type) and issubclass(shape, py_enum.Enum):
        return f"{shape.__name__} ({', '.join(f'{m.name}={m.value}' for m in shape)})"
    return "signed" if _is_signed(shape) else "unsigned"


def _field_table(per_cfg: list[tuple[Field, ...]], names: list[str]) -> list[str]:
    """A Markdown table of fields: for one configuration each field's bit range, for several the widths
    (every configuration's when they differ)."""
    head = "Bits" if len(names) == 1 else f"Width ({' / '.join(names)})"
    rows = [f"| Field | Type | {head} | Meaning |", "|---|---|---|---|"]
    offset = 0
    for fields in zip(*per_cfg):
        widths = [_width(f.shape) for f in fields]
        if len(names) == 1:
            bits = f"{offset}" if widths[0] == 1 else f"{offset}..{offset + widths[0] - 1}"
            offset += widths[0]
        else:
            bits = str(widths[0]) if len(set(widths)) == 1 else " / ".join(map(str, widths))
        f = fields[0]
        rows.append(f"| `{f.name}` | {_kind(f.shape)} | {bits} | {_md(f.doc)} |")
    return rows


def isa_markdown() -> str:
    """docs/isa.md: the instruction set as Markdown, generated from :data:`INSTRUCTIONS` and the field tables
    of the argument, ``STATUS`` and trace layouts, with every width for each preset configuration."""
    from ..presets import PRESETS
    names, cfgs = list(PRESETS), list(PRESETS.values())
    per = " / ".join(names)
    word = " / ".join(str(instr_layout(c).size) for c in cfgs)
    out = [
        "# Instruction set", "",
        f"<!-- Generated from cimforge.gen.isa.INSTRUCTIONS by `{MARKDOWN_COMMAND}`; do not edit. -->", "",
        "A program is a sequence of instruction words in the instruction memory. An instruction word holds the "
        f"opcode `op` in bits 0..{instr_layout(cfgs[0])['op'].width - 1}, then the arguments of that opcode "
        f"(those of every opcode overlaid); it is {word} bits wide ({per}). Widths that depend on the "
        f"configuration are given for each preset ({per}). docs/fabric.md describes what the instructions "
        "cost; an unknown opcode stops the controller with `STATUS.error`.", "",
        "| Opcode | Name | Engine | Argument bits | What it does |", "|---|---|---|---|---|",
    ]
    for spec in INSTRUCTIONS:
        bits = " / ".join(str(spec.layout(c).size) for c in cfgs) if spec.layout else "-"
        out.append(f"| {spec.op.value} | `{spec.name}` | {spec.engine or 'controller'} | {bits} | {_md(spec.doc)} |")
    for spec in INSTRUCTIONS:
        if spec.layout is None:
            continue
        out += ["", f"## `{spec.name}` (opcode {spec.op.value}, {spec.engine} engine)", "", _md(spec.layout.__doc__),
                "", *_field_table([spec.layout.fields(c) for c in cfgs], names)]
    for title, layout in ((f"`STATUS` register (CSR {CSR['STATUS']})", status_layout), ("Trace entry", trace_layout)):
        out += ["", f"## {title}", "", _md(layout.__doc__), "", *_field_table([layout.fields()], [""])]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cimforge.gen.isa --markdown``: print docs/isa.md."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m cimforge.gen.isa", description=main.__doc__)
    parser.add_argument("--markdown", action="store_true", help="print the ISA reference (docs/isa.md)")
    args = parser.parse_args(argv)
    if not args.markdown:
        parser.print_help()
        return 2
    sys.stdout.write(isa_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
