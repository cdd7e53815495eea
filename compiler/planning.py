"""Planning of a weighted layer's ``MAC`` passes for a given split: which reduction tiles a pass walks, how many
gather steps each takes, how the output-channel tiles are grouped into passes that fit the pages, and how many
pages a plan occupies. Costing the plan (cycles) is :mod:`cimforge.compiler.cost`'s; tiling the layer
(geometry, tiles, page images) is :mod:`cimforge.compiler.tiling`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..bits import ceil_log2
from ..config import CimConfig
from ..gen.isa import lanes
from ..golden.ir import Conv2d, Layer
from .tiling import CompileError, ConvGeom, KTile, geometry, group_geometries, k_tiles, rowpack_ok, tile_steps

if TYPE_CHECKING:  # cost.py imports this module; Parallelism is only named in annotations here
    from .cost import Parallelism

__all__ = ["MacPlan", "mac_plan", "layer_geometries", "n_tiles"]


def n_tiles(g: ConvGeom, cfg: CimConfig) -> int:
    """Output-channel (N) tiles of ``g``: one per ``lanes`` output channels."""
    return -(-g.cout // lanes(cfg))


@dataclass(frozen=True)
class MacPlan:
    """The passes of one weighted layer (or one group of a grouped convolution) for one split.

    Attributes
    ----------
    tiles : list of KTile
        The reduction tiles, in walk order.
    steps : list of int
        Gather cycles of each tile.
    passes : list of (int, int)
        ``(n_base, nt)`` of each pass: its first output-channel tile and how many it computes.
    par : Parallelism
    """

    tiles: list[KTile]
    steps: list[int]
    passes: list[tuple[int, int]]
    par: Parallelism

    @property
    def k_rounds(self) -> int:
        """Reduction rounds per position: the K tiles each macro of the K-split holds."""
        return -(-len(self.tiles) // self.par.in_ch)

    def pages(self, nt: int) -> int:
        """Pages per macro of a pass over ``nt`` output-channel tiles."""
        return self.k_rounds * -(-nt // self.par.out_ch)

    @property
    def first_pass_pages(self) -> int:
        """Pages per macro of the plan's first (largest) pass."""
        return self.pages(self.passes[0][1])

    @property
    def total_pages(self) -> int:
        """Pages per macro of every pass of the plan (what residency needs)."""
        return self.first_pass_pages * len(self.passes)


def mac_plan(g: ConvGeom, cfg: CimConfig, par: Parallelism, pages_avail: int | None = None) -> MacPlan:
    """Reduction tiles, their gather steps and the N-split into passes of ``g`` for ``par``.

    Parameters
    ----------
    pages_avail : int, optional
        Pages a pass may use per macro (default ``macro.pages``; streamed weights double-buffer in half).

    Raises
    ------
    CompileError
        The reduction does not fit the pages of the K-split (no partial-sum spill), or the split is invalid.
    """
    L = lanes(cfg)
    tiles = k_tiles(g, cfg)
    steps = [tile_steps(t, g, L) for t in tiles]
    kt, nt = len(tiles), n_tiles(g, cfg)
    pages = cfg.macro.pages if pages_avail is None else pages_avail
    kr = -(-kt // par.in_ch)
    if kr > pages:
        need = 1 << ceil_log2(-(-kt // pages))
        raise CompileError(f"layer {g.name!r}: reduction of {g.K} elements needs {kt} tiles of <= {cfg.macro.rows} "
                           f"rows, {kr} pages per macro with in_ch = {par.in_ch}; macro.pages = {pages}: allowed "
                           f"in_ch >= {need} (partial sums are not spilled to memory)")
    if par.macros > cfg.fabric.n_macros:
        raise CompileError(f"layer {g.name!r}: {par} uses {par.macros} macros, fabric.n_macros = {cfg.fabric.n_macros}")
    if par.batch * par.out_ch > 255:
        raise CompileError(f"layer {g.name!r}: {par}: batch * out_ch = {par.batch * par.out_ch} output groups per "
                           f"operation: allowed <= 255")
    nr_total = -(-nt // par.out_ch)
    nr_per = max(1, pages // kr)
    passes = []
    for nr0 in range(0, nr_total, nr_per):
        n_base = nr0 * par.out_ch
        passes.append((n_base, min(nt, (nr0 + nr_per) * par.out_ch) - n_base))
    return MacPlan(tiles, steps, passes, par)


def layer_geometries(layer: Layer, cfg: CimConfig, *, rowpack: bool | None = None,
                     source_shape: tuple[int, ...] | None = None) -> list[tuple[ConvGeom, int, int]]:
    """The :class:`ConvGeom` of each group of a weighted layer with the group's input and output word offsets:
    ``[(geom, in_word, out_word), ...]`` (one entry for a Dense layer or an ungrouped convolution).

    Parameters
    ----------
    rowpack : bool, optional
        A convolution's input is stored row-packed; None: as the compiler stores a graph input
        (:func:`~cimforge.compiler.tiling.rowpack_ok`, what a layer costed alone assumes).
    source_shape : tuple, optional
        A Dense layer's stored input ``(C, H, W)`` when it reads a flattened tensor in place.
    """
    if isinstance(layer, Conv2d):
        L = lanes(cfg)
        rp = rowpack_ok(layer, L, cfg.macro.rows) if rowpack is None else rowpack
        return group_geometries(layer, L, rowpack=rp)
    return [(geometry(layer, source_shape), 0, 0)]
