"""Partition types and the communication tables of HyPar (HPCA'19) and AccPar (HPCA'20), derived from tensor
layouts so that the same rule also gives the heterogeneous (ratio ``alpha``) costs.

A split of one accelerator group into two sides cuts each layer one of three ways (AccPar's basic types):

======== ====================== ===================== ======================== ===============================
type     splits                 ``F_l`` / ``E_l``     ``F_{l+1}`` / ``E_{l+1}`` intra-layer traffic
======== ====================== ===================== ======================== ===============================
I        batch (data parallel)  rows                  rows                     ``A(dW)``: gradient all-reduce
II       input channels         columns               duplicated (reduced)     ``A(F_{l+1})``: partial sums
III      output channels        duplicated (reduced)  columns                  ``A(E_l)``: error partial sums
======== ====================== ===================== ======================== ===============================

(HyPar's ``dp`` is Type-I and its ``mp`` Type-II.) Moving a tensor of ``S`` elements from one layout to another
costs, per side, ``alpha (1 - alpha) S`` between rows and columns, ``max(alpha, 1 - alpha) S`` from a split to a
duplicate, and nothing from a duplicate (``Matrix::Com_Cost_Matrix`` in linghaosong/AccPar src/accpar.cpp, with
``alpha = 1/2``: 1/4 and 1/2). The inter-layer cost of edge ``p -> c`` moves ``F`` from ``p``'s output layout to
``c``'s input layout and ``E`` back; both tensors have the size of ``c``'s input. At ``alpha = 1/2`` this gives the
papers' table exactly (``Layer::Com_Cost_Inter_Layer``; AccPar, HPCA 2020, and HyPar, HPCA 2019)::

    prev\\this   I             II           III
    I           0             .25(F+E)     .5F
    II          .5E           .5E          0
    III         .25(F+E)      0            .5F

AccPar's shortcut table (``Layer::Com_Cost_Inter_Layer_Block``) is the same rule with the shortcut tensor held in
the layout in which the block's first layer reads it and merged in the layout in which the consuming layer's type
produces its output; equivalently, the inter-layer table with Types II and III exchanged on both sides.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = [
    "PType", "Layout", "IN_LAYOUT", "OUT_LAYOUT", "TYPE_SETS", "convert", "inter_parts", "block_parts",
    "inter_table", "block_table",
]


class PType(IntEnum):
    """AccPar's basic partition types."""

    I = 0    # batch
    II = 1   # input channel (reduction, partial sums)
    III = 2  # output channel

    @property
    def label(self) -> str:
        return ("I", "II", "III")[self]

    @property
    def meaning(self) -> str:
        return ("batch", "input channel", "output channel")[self]


class Layout(IntEnum):
    ROW = 0   # split along the batch
    COL = 1   # split along the channels
    DUP = 2   # duplicated on both sides (after a reduction)


#: Layout of ``F_l`` as a layer of each type reads it (= layout of the ``E_l`` it produces).
IN_LAYOUT = (Layout.ROW, Layout.COL, Layout.DUP)
#: Layout of ``F_{l+1}`` as a layer of each type produces it (= layout of the ``E_{l+1}`` it reads).
OUT_LAYOUT = (Layout.ROW, Layout.DUP, Layout.COL)

#: Strategy families: which types a search may use.
TYPE_SETS = {"hypar": (PType.I, PType.II), "accpar": (PType.I, PType.II, PType.III)}


def convert(src: Layout, dst: Layout, alpha: float = 0.5) -> float:
    """Elements one side receives, per element of the tensor, to turn layout ``src`` into ``dst`` when the split
    gives the sides ``alpha`` and ``1 - alpha`` (the larger of the two sides' amounts)."""
    if src == dst or src == Layout.DUP:
        return 0.0
    if dst == Layout.DUP:
        return max(alpha, 1.0 - alpha)
    return alpha * (1.0 - alpha)


def _parts(src: tuple, dst: tuple, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    f, e = np.zeros((3, 3)), np.zeros((3, 3))
    for a in PType:
        for b in PType:
            f[a, b] = convert(src[a], dst[b], alpha)
            e[a, b] = convert(dst[b], src[a], alpha)
    return f, e


def inter_parts(alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The inter-layer table split into its ``F`` (forward) and ``E`` (backward) coefficients, each a 3 x 3
    array ``[prev type, this type]`` of elements per element of the consumer's input."""
    return _parts(OUT_LAYOUT, IN_LAYOUT, alpha)


def block_parts(alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The shortcut table's ``F`` and ``E`` coefficients, ``[type of the block's first layer, type of the
    consumer of the merged tensor]``."""
    return _parts(IN_LAYOUT, OUT_LAYOUT, alpha)


def inter_table(alpha: float = 0.5) -> np.ndarray:
    """3 x 3 array ``[prev type, this type]``: elements per element of the consumer's input (``F`` forward plus
    ``E`` backward; the two have the same size)."""
    return sum(inter_parts(alpha))


def block_table(alpha: float = 0.5) -> np.ndarray:
    """3 x 3 array ``[type of the block's first layer, type of the consumer of the merged tensor]``."""
    return sum(block_parts(alpha))
