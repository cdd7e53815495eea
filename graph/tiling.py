"""Block tiling of an adjacency matrix for the macros: macro-sized blocks, empty ones skipped, block orders.

A block is a ``rows x cols`` tile of the macro (one page). Two orientations, by the macro mode that reads it:

* ``"pull"`` (BITWISE mode: BFS; and the add-min relaxation of SSSP/CC): macro row ``r`` = destination
  ``bi * rows + r``, bit column ``c`` = source ``bj * cols + c``; an AND of the row with the frontier word of
  the block's sources and its popcount say whether the destination is reached.
* ``"push"`` (MAC mode with one-bit weights: PageRank's SpMV): macro row ``r`` = source ``bi * rows + r``
  (the activation applied to that row), column ``c`` = destination ``bj * cols + c`` (one result lane each).

In both, a block's *source segment* is the range of sources it reads and its *destination segment* the
range it writes. Blocks without an arc are never stored nor visited. :func:`order` gives the streaming order;
:func:`vector_traffic` measures why one order is better than another (docs/graph.md section 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .io import GraphData

__all__ = ["Block", "Tiling", "tile", "order", "ORDERS", "vector_traffic", "choose_order", "rcm_permutation"]


@dataclass(frozen=True, eq=False)
class Block:
    """One non-empty block.

    Attributes
    ----------
    bi, bj : int
        Block row and column (the macro's row and column dimensions).
    arcs : np.ndarray
        Indices of the graph's arcs that fall in the block.
    r, c : np.ndarray
        Each arc's macro row and bit column inside the block.
    """

    bi: int
    bj: int
    arcs: np.ndarray
    r: np.ndarray
    c: np.ndarray

    def bits(self, rows: int, cols: int) -> np.ndarray:
        """The block's page image, ``rows x cols`` bits (uint8)."""
        b = np.zeros((rows, cols), dtype=np.uint8)
        b[self.r, self.c] = 1
        return b

    def used_rows(self) -> np.ndarray:
        """Macro rows holding at least one arc (sorted)."""
        return np.unique(self.r)


@dataclass(frozen=True, eq=False)
class Tiling:
    """The non-empty blocks of one graph in one orientation.

    Attributes
    ----------
    graph : GraphData
    rows, cols : int
        Block shape (the macro's).
    orient : str
        ``"pull"`` or ``"push"`` (module docstring).
    blocks : tuple of Block
        Non-empty blocks, row-major.
    grid : tuple of int
        Blocks along the row and column dimensions (``ceil(n / rows)``, ``ceil(n / cols)``).
    """

    graph: GraphData
    rows: int
    cols: int
    orient: str
    blocks: tuple
    grid: tuple

    @property
    def total(self) -> int:
        """Blocks of the whole matrix, empty ones included."""
        return self.grid[0] * self.grid[1]

    @property
    def skipped(self) -> int:
        """Empty blocks (never stored, never processed)."""
        return self.total - len(self.blocks)

    def source_segment(self, b: Block) -> tuple[int, int]:
        """The first and one-past-last source vertex a block reads."""
        size = self.cols if self.orient == "pull" else self.rows
        lo = (b.bj if self.orient == "pull" else b.bi) * size
        return lo, min(lo + size, self.graph.n)

    def dest_segment(self, b: Block) -> tuple[int, int]:
        """The first and one-past-last destination vertex a block writes."""
        size = self.rows if self.orient == "pull" else self.cols
        lo = (b.bi if self.orient == "pull" else b.bj) * size
        return lo, min(lo + size, self.graph.n)

    def source_index(self, b: Block) -> int:
        """The block's source segment number."""
        return b.bj if self.orient == "pull" else b.bi

    def dest_index(self, b: Block) -> int:
        """The block's destination segment number."""
        return b.bi if self.orient == "pull" else b.bj


def tile(graph: GraphData, rows: int, cols: int, orient: str = "pull", symmetric: bool = False) -> Tiling:
    """Cut the adjacency matrix into ``rows x cols`` blocks in orientation ``orient``; with ``symmetric``
    (connected components of a directed graph) every arc is also stored reversed."""
    if orient not in ("pull", "push"):
        raise ValueError(f"orient {orient!r}: allowed 'pull', 'push'")
    src, dst = graph.src, graph.dst
    idx = np.arange(graph.arcs)
    if symmetric and graph.directed:
        src, dst, idx = np.concatenate([src, dst]), np.concatenate([dst, src]), np.concatenate([idx, idx])
    row_v, col_v = (dst, src) if orient == "pull" else (src, dst)
    bi, bj = row_v // rows, col_v // cols
    grid = (-(-graph.n // rows), -(-graph.n // cols))
    key = bi * grid[1] + bj
    order_ = np.argsort(key, kind="stable")
    key_s = key[order_]
    starts = np.flatnonzero(np.r_[True, key_s[1:] != key_s[:-1]]) if len(key_s) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(key_s)]
    blocks = []
    for s, e in zip(starts, ends):
        sel = order_[s:e]
        k = int(key_s[s])
        blocks.append(Block(k // grid[1], k % grid[1], idx[sel], row_v[sel] % rows, col_v[sel] % cols))
    return Tiling(graph, rows, cols, orient, tuple(blocks), grid)


def _by_source(t: Tiling, b: Block):
    return (t.source_index(b), t.dest_index(b))


def _by_dest(t: Tiling, b: Block):
    return (t.dest_index(b), t.source_index(b))


#: Streaming orders: ``"source"`` is GraphR's column-major order (block columns are source segments in its
#: notation), ``"dest"`` the row-major one.
ORDERS = {"source": _by_source, "dest": _by_dest}


def order(t: Tiling, kind: str = "source", blocks=None) -> list:
    """The blocks (default: all non-empty ones) in streaming order ``kind`` (:data:`ORDERS`)."""
    if kind not in ORDERS:
        raise ValueError(f"order {kind!r}: allowed {', '.join(ORDERS)}")
    key = ORDERS[kind]
    return sorted(t.blocks if blocks is None else blocks, key=lambda b: key(t, b))


def vector_traffic(t: Tiling, blocks: list) -> dict:
    """Vector words moved when streaming ``blocks`` in the given order: a source segment's word is read when
    it differs from the previous block's, a destination accumulator is written back and the next one read
    when the destination segment changes (``2`` words per switch)."""
    src_reads = dst_moves = 0
    prev_s = prev_d = None
    for b in blocks:
        s, d = t.source_index(b), t.dest_index(b)
        src_reads += s != prev_s
        dst_moves += 2 * (d != prev_d)
        prev_s, prev_d = s, d
    return {"source_reads": src_reads, "dest_moves": dst_moves, "words": src_reads + dst_moves}


def choose_order(t: Tiling, blocks=None) -> tuple[str, dict]:
    """The order of :data:`ORDERS` that moves the fewest vector words on ``blocks``, and every order's
    :func:`vector_traffic` (ties go to GraphR's ``"source"`` order)."""
    figures = {k: vector_traffic(t, order(t, k, blocks)) for k in ORDERS}
    best = min(ORDERS, key=lambda k: (figures[k]["words"], k != "source"))
    return best, figures


def rcm_permutation(graph: GraphData) -> np.ndarray:
    """A vertex renumbering that clusters arcs near the diagonal (reverse Cuthill-McKee on the symmetrised
    adjacency, scipy.sparse.csgraph): ``perm[v]`` is vertex ``v``'s new number. Fewer non-empty blocks, so
    fewer blocks loaded and processed (docs/graph.md section 3 has the figures)."""
    from scipy.sparse.csgraph import reverse_cuthill_mckee
    a = graph.adjacency()
    order_ = reverse_cuthill_mckee((a + a.T).tocsr(), symmetric_mode=True)
    perm = np.empty(graph.n, dtype=np.int64)
    perm[order_] = np.arange(graph.n)
    return perm
