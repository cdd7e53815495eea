"""The graph compiler: blocks placed in macro pages, one program per round, its execution and its cycles.

An algorithm runs as synchronous rounds (:mod:`cimforge.graph.golden`); the host builds each round's program
from what changed in the previous round, so a round touches only the non-empty blocks whose source segment
holds an active vertex (BFS: the frontier; SSSP/CC: the vertices changed last round; PageRank: every block).

Per processed block the round program has one block instruction (docs/graph.md section 4):

* ``GBFS`` (BFS, the BITWISE mode; :mod:`cimforge.gen.graph_engine`): one macro operation
  ``AND(frontier word, stored row r)`` per destination row ``r`` that holds an arc and whose destination is not
  visited yet (the visited mask), back to back one per cycle; a destination is reached when the popcount is
  non-zero; the reached bits are OR-ed into the destination segment's next-frontier word (activation word
  ``grid[1] + dest segment``; the frontier of source segment ``j`` is word ``j``).
* ``GSPMV`` (PageRank, the MAC mode at one-bit weights; :mod:`cimforge.gen.graph_spmv`):
  :data:`~cimforge.graph.golden.SLICES` unsigned 8-bit operations of the block's contributions, shift-added per
  destination lane and added into the destinations' sums (:func:`spmv_layout`).
* ``GRELAX`` (SSSP, CC; :mod:`cimforge.gen.graph_relax`): one arc per cycle, ``new[v] = min(new[v], old[u] +
  w)`` (CC: ``w = 0``), the arcs as activation words (:func:`relax_layout`).

Blocks are resident (loaded once by a prologue of ``LOAD``s and a ``SYNC``) when they fit the pages of all
macros, else streamed through a ring of pages: each block's ``LOAD`` is queued before the previous block's
instruction and a ``SYNC`` precedes each block instruction. Cycles follow the controller and loader rules of
:mod:`cimforge.compiler.cost` (the same ``INSTR_CYCLES`` entries for ``LOAD``, ``SYNC``, ``END``) and the
block instructions' entries there (their engines' timing, measured on the RTL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ..config import CimConfig
from ..errors import UserError
from ..gen.controller import CONTROLLER_TIMING
from ..gen.graph_engine import GBFS_TIMING, gbfs_cycles, gbfs_fields
from ..gen.graph_relax import RELAX_VALUE_BITS, relax_arc_layout, relax_value_bits
from ..gen.graph_spmv import SPMV_AB, SPMV_SLICES, slice_words
from ..gen.isa import LANE_BITS, lanes
from ..gen.isa import Opcode
from . import golden
from .io import GraphData
from .tiling import Tiling, choose_order, order, tile

__all__ = ["GraphPlan", "compile_graph", "BlockTiming", "BLOCK_TIMING", "GraphRun", "execute", "ORIENT", "split_runs",
           "run_capacity", "round_cycles"]

#: Orientation of the blocks each algorithm reads (:mod:`cimforge.graph.tiling`).
ORIENT = {"bfs": "pull", "sssp": "pull", "cc": "pull", "pagerank": "push"}


@dataclass(frozen=True)
class BlockTiming:
    """Cycles of the block instructions, EXEC to done inclusive: ``per_item`` per row operation, macro
    operation or arc, plus ``extra``.

    Every block instruction is an instruction of the ISA whose cycles are
    :data:`cimforge.compiler.cost.INSTR_CYCLES`'s (its engine's timing, measured on the RTL); these are what
    the utilisation counts: a BITWISE operation 1 compute cycle, a MAC operation ``ab = 8``.
    """

    gbfs_extra: int = GBFS_TIMING.extra
    gspmv_per_op: int = SPMV_AB


BLOCK_TIMING = BlockTiming()


@dataclass
class GraphPlan:
    """A compiled graph: blocks, their order and their places.

    Attributes
    ----------
    cfg : CimConfig
    algo : str
    tiling : Tiling
    blocks : list
        Non-empty blocks in streaming order.
    order_name : str
        The chosen order (:data:`cimforge.graph.tiling.ORDERS`) and ``order_figures`` every order's vector
        traffic on this graph (why it was chosen).
    resident : bool
        Every block has a page of its own (else pages are a ring).
    place : list of (int, int)
        Per block (streaming order): macro and page (resident) or ring slot.
    """

    cfg: CimConfig
    algo: str
    tiling: Tiling
    blocks: list
    order_name: str
    order_figures: dict
    resident: bool
    place: list

    @property
    def graph(self) -> GraphData:
        return self.tiling.graph

    @property
    def source_segments(self) -> np.ndarray:
        """Per block, its source segment."""
        return np.array([self.tiling.source_index(b) for b in self.blocks], dtype=np.int64)

    @property
    def arc_counts(self) -> np.ndarray:
        """Per block, its arcs."""
        return np.array([len(b.arcs) for b in self.blocks], dtype=np.int64)

    @property
    def bfs_rows(self) -> tuple:
        """Every block's used rows as arrays (block, macro row, destination vertex), computed once."""
        if not hasattr(self, "_bfs_rows"):
            t = self.tiling
            blk = np.concatenate([np.full(len(b.used_rows()), i) for i, b in enumerate(self.blocks)] + [[]])
            row = np.concatenate([b.used_rows() for b in self.blocks] + [[]]).astype(np.int64)
            blk = blk.astype(np.int64)
            dst = np.array([t.dest_segment(b)[0] for b in self.blocks], dtype=np.int64)[blk] + row
            self._bfs_rows = (blk, row, dst)
        return self._bfs_rows

    @property
    def ranges(self) -> list:
        """Per block, the row ranges its ``LOAD`` s copy (:func:`load_ranges`), computed once."""
        if not hasattr(self, "_ranges"):
            self._ranges = [load_ranges(b) for b in self.blocks]
        return self._ranges


def compile_graph(graph: GraphData, algo: str, cfg: CimConfig, block_order: str | None = None) -> GraphPlan:
    """Tile ``graph`` for ``algo`` on ``cfg``'s macros, order the blocks (``block_order`` or the one that
    moves the fewest vector words) and place them in pages."""
    if algo not in ORIENT:
        raise UserError(f"algorithm {algo!r}: allowed {', '.join(ORIENT)}")
    m = cfg.macro
    t = tile(graph, m.rows, m.cols, ORIENT[algo], symmetric=(algo == "cc"))
    best, figures = choose_order(t)
    # PageRank: destination-major, so that a destination segment's blocks follow each other and add into the
    # SpMV engine's column sums, written back once per segment (GSPMV's flush)
    name = block_order or ("dest" if algo == "pagerank" else best)
    blocks = order(t, name)
    n_mac, pages = cfg.fabric.n_macros, m.pages
    if algo in RELAX:
        _check_relax(graph, algo, cfg)
        # arc words after the two value arrays; resident when every block's arcs fit at once
        counts = [len(b.arcs) for b in blocks]
        resident = 2 * graph.n + sum(counts) <= cfg.fabric.act_depth
        place = list(2 * graph.n + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)) if counts else []
        return GraphPlan(cfg, algo, t, blocks, name, figures, resident, [int(p) for p in place])
    if algo == "pagerank":
        _check_spmv(graph, cfg, t)
    resident = len(blocks) <= n_mac * pages
    if resident:
        place = [(i % n_mac, i // n_mac) for i in range(len(blocks))]
    else:  # a ring: block k in slot k mod (macros * pages)
        place = [(i % n_mac, (i // n_mac) % pages) for i in range(len(blocks))]
    return GraphPlan(cfg, algo, t, blocks, name, figures, resident, place)


#: The algorithms whose blocks run on the relaxation engine (``GRELAX``): no pages, arcs in activation words.
RELAX = ("sssp", "cc")


def relax_layout(cfg: CimConfig, n: int) -> dict:
    """Where a relaxation round keeps its words: ``old`` values at 0, ``new`` at ``n``, arcs from ``2n``."""
    return {"old": 0, "new": n, "arcs": 2 * n}


def _check_relax(graph: GraphData, algo: str, cfg: CimConfig) -> None:
    """SSSP and CC need 32-bit values and a whole arc per activation word, both value arrays in the activation
    memory and (SSSP) every weight in the arc word's weight field."""
    word = LANE_BITS * lanes(cfg)
    lay = relax_arc_layout(cfg)
    need = 2 * lay["src"].shape.width + RELAX_VALUE_BITS
    if relax_value_bits(cfg) < RELAX_VALUE_BITS or need > word:
        raise UserError(f"{algo} on '{cfg.name}': its {word}-bit activation words hold no GRELAX arc (needs "
                        f"{need} bits: two vertex indices and a {RELAX_VALUE_BITS}-bit weight); allowed: a "
                        f"configuration with lanes >= {-(-need // LANE_BITS)} (presets default, isscc22)")
    if 2 * graph.n + 1 > cfg.fabric.act_depth:
        raise UserError(f"{algo}: {graph.n} vertices need {2 * graph.n} activation words for their values, "
                        f"fabric.act_depth is {cfg.fabric.act_depth} (allowed: at most "
                        f"{(cfg.fabric.act_depth - 1) // 2} vertices)")
    wmax = (1 << lay["weight"].shape.width) - 1
    if algo == "sssp" and graph.arcs and int(graph.weight.max()) > wmax:
        i = int(np.argmax(graph.weight))
        raise UserError(f"sssp: edge ({graph.ids[graph.src[i]]!r}, {graph.ids[graph.dst[i]]!r}) weight "
                        f"{int(graph.weight[i])} does not fit the {lay['weight'].shape.width}-bit arc weight "
                        f"(allowed 0..{wmax})")


def spmv_layout(cfg: CimConfig, tiling: Tiling) -> dict:
    """Where a PageRank iteration keeps its words: the contributions' slice words from 0 (source segment ``j``
    from ``j * SLICES * slice_words``), the destinations' sums from ``y`` (vertex ``v`` at ``y + v``)."""
    x_words = tiling.grid[0] * SPMV_SLICES * slice_words(cfg)
    return {"x": 0, "y": x_words, "words": x_words + tiling.grid[1] * tiling.cols}


def _check_spmv(graph: GraphData, cfg: CimConfig, t: Tiling) -> None:
    """PageRank needs 8-bit activation slices, sums of up to 40 bits in an activation word, and its words in the
    activation memory."""
    word = LANE_BITS * lanes(cfg)
    if cfg.macro.max_ab < SPMV_AB or word < 40:
        raise UserError(f"pagerank on '{cfg.name}': needs macro.max_ab >= {SPMV_AB} and activation words of at "
                        f"least 40 bits (has max_ab {cfg.macro.max_ab}, {word}-bit words); allowed: a "
                        f"configuration with lanes >= 5 (presets default, isscc22)")
    need = spmv_layout(cfg, t)["words"]
    if need > cfg.fabric.act_depth:
        raise UserError(f"pagerank: {graph.n} vertices need {need} activation words (contribution slices and "
                        f"sums), fabric.act_depth is {cfg.fabric.act_depth}")


def _spmv_args(plan: "GraphPlan", idx: int, slices: int = SPMV_SLICES) -> dict:
    """A block's ``GSPMV`` arguments (macro and page: its place; a ring moves them): its source rows (the rows
    its page images hold), ``slices`` non-zero contribution slices of its source segment; ``flush`` is set
    by :func:`_program` on the last block of each destination segment in a run."""
    t, b = plan.tiling, plan.blocks[idx]
    lay = spmv_layout(plan.cfg, t)
    mac, page = plan.place[idx]
    return {"macro": mac, "page": page, "x": lay["x"] + t.source_index(b) * SPMV_SLICES * slice_words(plan.cfg),
            "y": lay["y"] + t.dest_segment(b)[0], "rows": _row_mask(b.used_rows()), "slices_m1": slices - 1,
            "flush": 1}


def _row_mask(rows) -> int:
    return int(sum(1 << int(r) for r in rows))


def segment_slices(plan: "GraphPlan", contrib: np.ndarray) -> np.ndarray:
    """Per source segment, the 8-bit slices its contributions need (1..4): the host's choice of
    ``GSPMV``'s ``slices_m1`` (higher slices would multiply zeros)."""
    rows, n_seg = plan.cfg.macro.rows, plan.tiling.grid[0]
    pad = np.zeros(n_seg * rows, dtype=np.int64)
    pad[:len(contrib)] = contrib
    top = pad.reshape(n_seg, rows).max(axis=1)
    return 1 + sum((top >= (1 << (8 * k))).astype(np.int64) for k in range(1, SPMV_SLICES))


def _relax_args(plan: "GraphPlan", idx: int) -> dict:
    """A block's ``GRELAX`` arguments with its resident arc words (a streamed run moves ``arcs``)."""
    lay = relax_layout(plan.cfg, plan.graph.n)
    return {"arcs": plan.place[idx], "count": len(plan.blocks[idx].arcs), "old": lay["old"], "new": lay["new"]}


@dataclass
class GraphRun:
    """What executing a plan gave.

    Attributes
    ----------
    result : golden.GraphResult
        Values and rounds, as the golden model defines them.
    cycles : int
        Predicted cycles of every round's program (prologue included), ``round_cycles`` per round.
    processed, skipped_empty, skipped_inactive : int
        Block instructions executed, summed over rounds; blocks never stored (empty) times rounds; non-empty
        blocks not visited in a round because no vertex of their source segment was active.
    macro_ops : int
        Macro operations (BITWISE or MAC) executed; ``macro_cycles`` their compute cycles (1 per BITWISE
        operation, ``ab = 8`` per MAC operation).
    programs : list
        Each round's instruction list ``(opcode name, args)``.
    """

    result: golden.GraphResult
    cycles: int
    round_cycles: list
    processed: int
    skipped_empty: int
    skipped_inactive: int
    macro_ops: int
    macro_cycles: int
    relax_arcs: int
    programs: list = field(default_factory=list)


def _block_arcs(plan: GraphPlan, b):
    """Source and destination vertices and weights of a block's arcs."""
    g, t = plan.graph, plan.tiling
    s_lo, _ = t.source_segment(b)
    d_lo, _ = t.dest_segment(b)
    src_local, dst_local = (b.c, b.r) if t.orient == "pull" else (b.r, b.c)
    w = g.weight[b.arcs] if plan.algo == "sssp" else np.zeros(len(b.arcs), dtype=np.int64)
    return s_lo + src_local, d_lo + dst_local, w


def round_cycles(plan: GraphPlan, program: list) -> int:
    """Cycles of one round's program, from its first fetch to the last ``END``'s retire inclusive, by the
    controller's rules and the ``LOAD``/``SYNC``/``END`` rules of :data:`cimforge.compiler.cost.INSTR_CYCLES`.
    A round may be several runs (each ending with ``END``, the host starting the next): their cycles add up."""
    from ..compiler.cost import INSTR_CYCLES, Timeline
    total = 0
    for run in split_runs(program):
        tl = Timeline(SimpleNamespace(cfg=plan.cfg))
        t, overhead, done = 0, CONTROLLER_TIMING.start, 0
        for kind, args in run:
            e = t + overhead
            # loads popped and finished by now cannot delay this instruction: kept out, the queue stays short
            tl.queue = [q for q in tl.queue if q[0] > e or q[1] > e]
            done = INSTR_CYCLES[Opcode[kind]](tl, e, args, 0)
            t = done + 1
            overhead = CONTROLLER_TIMING.prefetched if done > e else CONTROLLER_TIMING.short
        total += done + 1
    return total


def split_runs(program: list) -> list:
    """A round's instruction list cut after each ``END``: the runs the host starts one after the other."""
    runs, cur = [], []
    for item in program:
        cur.append(item)
        if item[0] == "END":
            runs.append(cur)
            cur = []
    return runs + ([cur] if cur else [])


def run_capacity(cfg: CimConfig) -> tuple[int, int]:
    """(weight words, instructions) one run may hold: its blocks' page images (the rows its ``LOAD``s copy)
    must fit the weight memory (the host writes it before the run) and its instructions the program and trace
    memories."""
    return cfg.fabric.weight_depth, min(cfg.controller.program_depth, cfg.controller.trace_depth)


#: Used rows of a block at most this many rows apart are copied by one ``LOAD``: a row in between costs the
#: loader one cycle, a ``LOAD`` of its own two controller cycles and one loader cycle.
LOAD_GAP = 2


def load_ranges(b) -> list:
    """The ``(row0, count)`` row ranges of a block's page that its ``LOAD``s copy: the rows holding an arc
    (the only ones ``GBFS`` reads and the only ones ``GSPMV``'s row mask lets through), ranges closer than
    :data:`LOAD_GAP` merged. The other rows of the page keep whatever an earlier block left there."""
    out: list = []
    for r in b.used_rows().tolist():
        if out and r - (out[-1][0] + out[-1][1]) <= LOAD_GAP:
            out[-1][1] = r + 1 - out[-1][0]
        else:
            out.append([r, 1])
    return [tuple(x) for x in out]


def _loads(plan: GraphPlan, k: int, slot: tuple, src: int) -> list:
    """The ``LOAD`` s of block ``k``'s used rows (:func:`load_ranges`) from weight word ``src`` on (the host
    puts those rows of the block's page image there, in order) into ``slot`` (macro, page); ``block`` says
    which block (not an instruction field)."""
    mac, page = slot
    out = []
    for row0, count in plan.ranges[k]:
        out.append(("LOAD", {"src": src, "count": count, "mask": 1 << mac, "page": page, "row0": row0,
                             "block": k}))
        src += count
    return out


def _words(plan: GraphPlan, k: int) -> int:
    return sum(c for _, c in plan.ranges[k])


def _set_flush(items: list) -> list:
    """``GSPMV``: ``flush`` on the last block of each run of blocks with the same destination segment (the
    engine's column sums carry over to the next block otherwise)."""
    out, nxt_y = [], None
    for kind, args in reversed(items):
        if kind == "GSPMV":
            args, nxt_y = {**args, "flush": int(nxt_y != args["y"])}, args["y"]
        out.append((kind, args))
    return out[::-1]


def _program(plan: GraphPlan, items: list) -> list:
    """A round's program around its block instructions ``items`` (``(block index, kind, args)``), one or more
    runs. Resident blocks: the instructions (in runs of at most the program memory's depth). A ring: the
    round's ``j``-th block goes to slot ``j`` mod (macros x pages), so the page a block instruction reads is
    never the one the next block's ``LOAD`` s (queued before it) write; a run holds as many blocks as the
    weight memory holds their used rows."""
    wcap, instr_cap = run_capacity(plan.cfg)
    prog = []
    if plan.algo in RELAX and not plan.resident:
        # runs of as many blocks as the activation memory holds arcs beside the values, arcs from 2n on
        # (a block with more arcs than that is relaxed in pieces: ``first`` is the piece's first arc)
        room = plan.cfg.fabric.act_depth - 2 * plan.graph.n
        run, used = [], 0
        for k, kind, args in items:
            for first in range(0, max(1, args["count"]), room):
                count = min(room, args["count"] - first)
                if run and (used + count > room or len(run) + 1 >= instr_cap):
                    prog += run + [("END", None)]
                    run, used = [], 0
                run.append((kind, {**args, "arcs": 2 * plan.graph.n + used, "count": count, "first": first}))
                used += count
        return prog + run + [("END", None)]
    if plan.resident or plan.algo in RELAX:
        per = instr_cap - 1
        for lo in range(0, len(items), per):
            prog += _set_flush([(kind, args) for _, kind, args in items[lo:lo + per]]) + [("END", None)]
        return prog or [("END", None)]
    n_mac, pages = plan.cfg.fabric.n_macros, plan.cfg.macro.pages
    groups, cur, words, instrs = [], [], 0, 1
    for item in items:
        w, n = _words(plan, item[0]), len(plan.ranges[item[0]]) + 2
        if cur and (words + w > wcap or instrs + n + 1 > instr_cap):
            groups.append(cur)
            cur, words, instrs = [], 0, 1
        cur.append(item)
        words, instrs = words + w, instrs + n
    groups += [cur] if cur else []
    lo = 0
    for group in groups:
        slots = [((lo + j) % n_mac, ((lo + j) // n_mac) % pages) for j in range(len(group))]
        src = [0]
        for k, _, _ in group:
            src.append(src[-1] + _words(plan, k))
        run = []
        for j, (k, kind, args) in enumerate(group):
            if j == 0:
                run += _loads(plan, k, slots[0], 0) + [("SYNC", None)]
            if j + 1 < len(group):
                run += _loads(plan, group[j + 1][0], slots[j + 1], src[j + 1])
            run.append((kind, {**args, "macro": slots[j][0], "page": slots[j][1]} if "page" in args else args))
            if j + 1 < len(group):
                run.append(("SYNC", None))
        prog += _set_flush(run) + [("END", None)]
        lo += len(group)
    return prog or [("END", None)]


def _prologue(plan: GraphPlan) -> list:
    """Resident blocks: their ``LOAD`` s and a ``SYNC``, in runs of as many blocks as the weight memory holds
    (the relaxation engine's arcs are activation words: no prologue)."""
    if not plan.resident or not plan.blocks or plan.algo in RELAX:
        return []
    wcap, instr_cap = run_capacity(plan.cfg)
    prog, run, words = [], [], 0
    for k in range(len(plan.blocks)):
        w = _words(plan, k)
        if run and (words + w > wcap or len(run) + len(plan.ranges[k]) + 2 > instr_cap):
            prog += run + [("SYNC", None), ("END", None)]
            run, words = [], 0
        run += _loads(plan, k, plan.place[k], words)
        words += w
    return prog + run + [("SYNC", None), ("END", None)]


class _Pages:
    """Each block's page image (rows x cols bits), as the macros hold it: the block instructions read the
    stored bits, not the graph."""

    def __init__(self, plan: GraphPlan):
        m = plan.cfg.macro
        self.bits = [b.bits(m.rows, m.cols) for b in plan.blocks]


#: Above this many non-empty blocks :func:`execute` takes the golden model's rounds instead of executing each
#: block image in Python (bit-exact on every graph tested below it, tests/test_graph_compile.py).
BLOCK_EXEC_LIMIT = 2000


def execute(plan: GraphPlan, source: int | None = None, *, alpha: float = 0.85, tol: float = 1e-6,
            max_iter: int = 200, per_block: bool | None = None) -> GraphRun:
    """Run ``plan``'s algorithm round by round on the block images, as the fabric executes its programs, and
    predict every round's cycles. The values equal :func:`cimforge.graph.golden.run_golden`'s bit for bit
    (tests/test_graph_compile.py). With ``per_block`` False (default above :data:`BLOCK_EXEC_LIMIT` blocks)
    the values and each round's active vertices are the golden model's and only the programs and their cycles
    are built from the blocks (:func:`_programs_from_golden`)."""
    if per_block is None:
        per_block = len(plan.blocks) <= BLOCK_EXEC_LIMIT
    if not per_block:
        return _programs_from_golden(plan, source, alpha=alpha, tol=tol, max_iter=max_iter)
    g, t = plan.graph, plan.tiling
    algo = plan.algo
    if algo in ("bfs", "sssp"):
        if source is None:
            raise UserError(f"{algo}: needs --source (a vertex)")
        source = golden._check_vertex(g, source)
    if algo == "sssp":
        golden._check_weights(g)
    pages = _Pages(plan)
    stats = dict(processed=0, inactive=0, ops=0, arcs=0)
    programs, cycles = [], []
    pro = _prologue(plan)
    if pro:
        programs.append(pro)
        cycles.append(round_cycles(plan, pro))
    step = {"bfs": _bfs_rounds, "sssp": _relax_rounds, "cc": _relax_rounds, "pagerank": _pagerank_rounds}[algo]
    res = step(plan, pages, source, stats, programs, cycles, alpha=alpha, tol=tol, max_iter=max_iter)
    rounds = res.rounds
    per_op = BLOCK_TIMING.gspmv_per_op if algo == "pagerank" else 1
    return GraphRun(res, sum(cycles), cycles, stats["processed"], t.skipped * rounds, stats["inactive"],
                    stats["ops"], stats["ops"] * per_op, stats["arcs"], programs)


def _segment_active(t: Tiling, active: np.ndarray, b) -> bool:
    lo, hi = t.source_segment(b)
    return bool(active[lo:hi].any())


def _bfs_rounds(plan, pages, source, stats, programs, cycles, **_):
    g, t = plan.graph, plan.tiling
    n, rows, cols = g.n, plan.cfg.macro.rows, plan.cfg.macro.cols
    level, frontier, visited = golden.bfs_start(n, source)
    active_log, k = [], 0
    while frontier.any():
        active_log.append(frontier.copy())
        reach = np.zeros(n, dtype=bool)
        items = []
        for idx, b in enumerate(plan.blocks):
            if not _segment_active(t, frontier, b):
                stats["inactive"] += 1
                continue
            d_lo, d_hi = t.dest_segment(b)
            s_lo, s_hi = t.source_segment(b)
            page = pages.bits[idx]
            used = page.any(axis=1)
            unvisited = np.zeros(rows, dtype=bool)
            unvisited[:d_hi - d_lo] = ~visited[d_lo:d_hi]
            issue = np.flatnonzero(used & unvisited)
            if not len(issue):
                stats["inactive"] += 1
                continue
            word = np.zeros(cols, dtype=np.int64)
            word[:s_hi - s_lo] = frontier[s_lo:s_hi]
            # one BITWISE AND per issued row; reached when its popcount is non-zero
            hit = (page[issue].astype(np.int64) & word).sum(axis=1) > 0
            reach[d_lo + issue[hit]] = True
            mask = int(sum(1 << int(r) for r in issue))
            mac, pg = plan.place[idx]
            items.append((idx, "GBFS", {**gbfs_fields(plan.cfg, macro=mac, page=pg, rows=mask,
                                                      src=t.source_index(b), dst=t.grid[1] + t.dest_index(b)),
                                        "block": idx}))
            stats["processed"] += 1
            stats["ops"] += len(issue)
        prog = _program(plan, items)
        programs.append(prog)
        cycles.append(round_cycles(plan, prog))
        frontier = reach & ~visited
        visited |= frontier
        k += 1
        level[frontier] = k
    return golden.GraphResult("bfs", level, len(active_log), active_log)


def _relax_rounds(plan, pages, source, stats, programs, cycles, **_):
    g, t, algo = plan.graph, plan.tiling, plan.algo
    values, changed = golden.relax_start(algo, g.n, source)
    arcs = [_block_arcs(plan, b) for b in plan.blocks]
    active_log, states = [], []
    while True:
        active_log.append(changed.copy())
        states.append(values)
        new = values.copy()
        items = []
        for idx, b in enumerate(plan.blocks):
            if not _segment_active(t, changed, b):
                stats["inactive"] += 1
                continue
            s, d, w = arcs[idx]
            np.minimum.at(new, d, np.minimum(values[s] + w, golden.INF))
            items.append((idx, "GRELAX", {**_relax_args(plan, idx), "block": idx}))
            stats["processed"] += 1
            stats["arcs"] += len(s)
        prog = _program(plan, items)
        programs.append(prog)
        cycles.append(round_cycles(plan, prog))
        changed = new != values
        values = new
        if not changed.any():
            return golden.GraphResult(algo, values, len(active_log), active_log, states)


def _pagerank_rounds(plan, pages, source, stats, programs, cycles, *, alpha, tol, max_iter):
    g, t = plan.graph, plan.tiling
    rows, cols = plan.cfg.macro.rows, plan.cfg.macro.cols
    n = g.n
    outdeg = g.out_degree()
    rank = np.full(n, (1 << golden.FRAC_BITS) // n, dtype=np.int64)
    limit = golden.pagerank_limit(n, tol)
    active_log, states = [], []
    for _ in range(max_iter):
        active_log.append(np.ones(n, dtype=bool))
        states.append(rank)
        c = golden.contributions(rank, outdeg)
        sl = segment_slices(plan, c)
        y = np.zeros(n, dtype=np.int64)
        items = []
        for idx, b in enumerate(plan.blocks):
            s_lo, s_hi = t.source_segment(b)
            d_lo, d_hi = t.dest_segment(b)
            x = np.zeros(rows, dtype=np.int64)
            x[:s_hi - s_lo] = c[s_lo:s_hi]
            w = pages.bits[idx].astype(np.int64)
            x[np.setdiff1d(np.arange(rows), b.used_rows())] = 0  # GSPMV's row mask
            acc = np.zeros(cols, dtype=np.int64)
            n_sl = int(sl[t.source_index(b)])
            for k in range(n_sl):  # unsigned 8-bit slices, MAC mode, one-bit weights
                acc += ((x >> (8 * k)) & 0xFF) @ w << (8 * k)
            y[d_lo:d_hi] += acc[:d_hi - d_lo]
            items.append((idx, "GSPMV", {**_spmv_args(plan, idx, n_sl), "block": idx}))
            stats["processed"] += 1
            stats["ops"] += n_sl
        prog = _program(plan, items)
        programs.append(prog)
        cycles.append(round_cycles(plan, prog))
        new = golden.pagerank_update(y, rank, outdeg, alpha)
        err = int(np.abs(new - rank).sum())
        rank = new
        if err < limit:
            break
    return golden.GraphResult("pagerank", rank, len(active_log), active_log, states)


def _programs_from_golden(plan: GraphPlan, source, *, alpha, tol, max_iter) -> GraphRun:
    """The round programs and cycles of :func:`execute` from the golden model's rounds (vectorised over
    blocks: the same processed blocks, row masks and arc counts as the per-block execution)."""
    g, algo = plan.graph, plan.algo
    if algo == "pagerank":
        res = golden.pagerank(g, alpha=alpha, tol=tol, max_iter=max_iter)
    else:
        res = golden.run_golden(algo, g, source)
    programs = []
    pro = _prologue(plan)
    cycles = [round_cycles(plan, pro)] if pro else []
    if pro:
        programs.append(pro)
    stats = dict(processed=0, inactive=0, ops=0, arcs=0)
    last = None
    outdeg = g.out_degree() if algo == "pagerank" else None
    for k, active in enumerate(res.active):
        if algo == "bfs":
            items = round_items(plan, active, unvisited=(res.values == -1) | (res.values > k), stats=stats)
        elif algo == "pagerank":
            items = round_items(plan, active, contrib=golden.contributions(res.states[k], outdeg), stats=stats)
        else:
            items = round_items(plan, active, stats=stats)
        prog = _program(plan, items)
        programs.append(prog)
        if algo == "pagerank" and last is not None and prog == last[0]:
            cycles.append(last[1])  # the same program as the previous iteration
        else:
            last = (prog, round_cycles(plan, prog))
            cycles.append(last[1])
    per_op = BLOCK_TIMING.gspmv_per_op if algo == "pagerank" else 1
    return GraphRun(res, sum(cycles), cycles, stats["processed"], plan.tiling.skipped * res.rounds,
                    stats["inactive"], stats["ops"], stats["ops"] * per_op, stats["arcs"], programs)


def round_items(plan: GraphPlan, active: np.ndarray, *, unvisited: np.ndarray | None = None,
                contrib: np.ndarray | None = None, stats: dict | None = None) -> list:
    """One round's block instructions ``(block index, kind, args)`` from the host's state, vectorised over
    blocks: what the host decides between rounds (docs/graph.md section 4). ``active``: the round's active
    vertices (BFS: the frontier; SSSP/CC: changed in the last round; PageRank: all); ``unvisited`` (BFS): the
    vertices not yet visited, the rows ``GBFS`` may issue; ``contrib`` (PageRank): the contributions, which
    decide each source segment's slices. ``stats`` (processed, inactive, ops, arcs) is added to."""
    g, t, algo, cfg = plan.graph, plan.tiling, plan.algo, plan.cfg
    nb = len(plan.blocks)
    cols = t.cols if t.orient == "pull" else t.rows
    n_seg = t.grid[1] if t.orient == "pull" else t.grid[0]
    src_seg = plan.source_segments
    pad = np.zeros(n_seg * cols, dtype=bool)
    pad[:g.n] = active
    seg_on = pad.reshape(n_seg, cols).any(axis=1)[src_seg]
    stats = stats if stats is not None else dict(processed=0, inactive=0, ops=0, arcs=0)
    items = []
    if algo == "bfs":
        blk, row, dst = plan.bfs_rows
        take = seg_on[blk] & unvisited[dst]
        masks = np.zeros(nb, dtype=np.uint64)
        np.bitwise_or.at(masks, blk[take], np.left_shift(np.uint64(1), row[take].astype(np.uint64)))
        for i in np.flatnonzero(masks):
            mac, pg = plan.place[i]
            b = plan.blocks[i]
            items.append((int(i), "GBFS", {**gbfs_fields(cfg, macro=mac, page=pg, rows=int(masks[i]),
                                                          src=t.source_index(b), dst=t.grid[1] + t.dest_index(b)),
                                           "block": int(i)}))
        stats["ops"] += int(take.sum())
    elif algo == "pagerank":
        sl = segment_slices(plan, contrib)
        items = [(i, "GSPMV", {**_spmv_args(plan, i, int(sl[src_seg[i]])), "block": i}) for i in range(nb)]
        stats["ops"] += int(sl[src_seg].sum())
    else:
        for i in np.flatnonzero(seg_on):
            items.append((int(i), "GRELAX", {**_relax_args(plan, int(i)), "block": int(i)}))
        stats["arcs"] += int(plan.arc_counts[seg_on].sum())
    stats["processed"] += len(items)
    stats["inactive"] += nb - len(items)
    return items
