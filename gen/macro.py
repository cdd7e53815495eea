"""The digital SRAM compute-in-memory macro (docs/architecture.md section 3), as Amaranth components.

Structure (why: generation time and Verilog size must follow the unique logic, not the bit count)::

    CimMacro                       plane sequencer (control), output lane compaction, bitwise popcount total
      ColumnTile x (cols/max_wb)   elaborated once, instantiated by name through a VerilogLibrary
        TileStorage                the bit cells: pages x rows words of max_wb bits, write port, read muxes
        TileCompute                AND of the activation bit plane with the page, per-column adder trees,
                                   per-wb combine of column sums into weight sums (two's complement MSB)
        TileAccum                  shift-add accumulators, one per lane

Timing: an operation is accepted on a rising edge where ``op.valid & op.ready``; it then takes n compute cycles
(n = ab, or with ``skip`` the number of activation bit planes that are non-zero in some row, at least 1; a BITWISE
operation takes 1); ``res_valid`` is high for one cycle, :data:`LATENCY` edges after the last compute cycle.
``op.ready`` is high when idle and in the last compute cycle, so operations stream back to back, one per n cycles.
Planes are processed LSB first and shifted into place, so a skipped plane costs nothing and needs no fix-up.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..bits import count_bits, exact_log2
from ..config import MacroConfig, WEIGHT_BITS
from ..golden.macro import LATENCY
from .layouts import BitOp, MacroMode, macro_op_layout, macro_result_layout
from .library import VerilogLibrary, instantiate

__all__ = ["CimMacro", "ColumnTile", "TileStorage", "TileCompute", "TileAccum", "LATENCY", "popcount",
           "sum_tree", "column_counts"]


def sum_tree(m: Module, terms: list, name: str, shape=None):
    """A balanced adder tree over ``terms``; each node is a Signal so that Amaranth's netlist grows with the
    number of adders, not with the expression tree's paths. Nodes are one bit wider than their widest input,
    or all of ``shape`` when given (e.g. ``signed(32)``: wrapping arithmetic)."""
    terms = list(terms)
    level = 0
    while len(terms) > 1:
        nxt = []
        for i in range(0, len(terms) - 1, 2):
            width = shape if shape is not None else max(len(terms[i]), len(terms[i + 1])) + 1
            s = Signal(width, name=f"{name}_l{level}_{i // 2}")
            m.d.comb += s.eq(terms[i] + terms[i + 1])
            nxt.append(s)
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
        level += 1
    return terms[0] if terms else Const(0, 1)


def popcount(m: Module, bits, name: str):
    """Number of ones in ``bits`` (a balanced adder tree)."""
    return sum_tree(m, [bits[i] for i in range(len(bits))], name)


def column_counts(m: Module, words: list, width: int, name: str) -> list:
    """Ones per column of ``words`` (each ``width`` bits), as bit planes: bit b of plane k is bit k of the count
    of column b. A carry-save reduction (Wallace style): three words of one weight become a sum word of that
    weight and a carry word of the next, until one word of each weight remains; every full adder is
    word-wide, i.e. ``width`` independent full adders, one per column."""
    levels = {0: list(words)}
    planes = []
    k = n = 0
    while levels.get(k):
        ws = levels[k]
        while len(ws) > 1:
            a, b = ws.pop(), ws.pop()
            s = Signal(width, name=f"{name}_s{k}_{n}")
            cy = Signal(width, name=f"{name}_c{k}_{n}")
            if ws:  # full adder
                c = ws.pop()
                m.d.comb += [s.eq(a ^ b ^ c), cy.eq((a & b) | (a & c) | (b & c))]
            else:   # half adder
                m.d.comb += [s.eq(a ^ b), cy.eq(a & b)]
            n += 1
            ws.insert(0, s)  # sums queue behind the remaining inputs: a balanced tree
            levels.setdefault(k + 1, []).append(cy)
        planes.append(ws[0])
        k += 1
    return planes


class TileStorage(wiring.Component):
    """Bit cells of one column tile: ``pages x rows`` words of ``width`` bits.

    Members
    -------
    we, wpage, wrow, wdata : In
        Write port; the word is stored at the next rising edge.
    cpage : In
        Page read in full for computation.
    cwords : Out(ArrayLayout(width, rows))
        Row words of page ``cpage`` (combinational).
    rpage, rrow : In
        Single-word read address.
    rdata : Out(width)
        Word at (rpage, rrow) (combinational; registered by the user).
    """

    def __init__(self, rows: int, pages: int, width: int, page_width: int, row_width: int):
        self.rows, self.pages, self.width = rows, pages, width
        super().__init__({
            "we": In(1), "wpage": In(page_width), "wrow": In(row_width), "wdata": In(width),
            "cpage": In(page_width), "cwords": Out(data.ArrayLayout(width, rows)),
            "rpage": In(page_width), "rrow": In(row_width), "rdata": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        # One memory of pages x rows words (SRAM cells have no reset): the simulator updates one word per write
        # instead of every cell's enable, and reads a page's rows by index.
        rows = self.rows
        m.submodules.cells = cells = memory.Memory(shape=unsigned(self.width), depth=self.pages * rows, init=[])

        def addr(page, row):
            return page * rows + row
        wp = cells.write_port()
        # a write outside the geometry (possible when pages or rows are not powers of two) stores nothing
        m.d.comb += [wp.addr.eq(addr(self.wpage, self.wrow)), wp.data.eq(self.wdata),
                     wp.en.eq(self.we & (self.wpage < self.pages) & (self.wrow < rows))]
        for r in range(rows):
            rp = cells.read_port(domain="comb")
            m.d.comb += [rp.addr.eq(addr(self.cpage, r)), self.cwords[r].eq(rp.data)]
        rp = cells.read_port(domain="comb")
        m.d.comb += [rp.addr.eq(addr(self.rpage, self.rrow)), self.rdata.eq(rp.data)]
        return m


class TileCompute(wiring.Component):
    """In-array AND, per-column adder trees and the per-wb combine of one column tile (combinational).

    For each column b: ``pc[b] = popcount(x_plane & column b of the page)``, computed for all columns at once
    by :func:`column_counts`. Lane k at precision wb is
    ``sum_i pc[k*wb+i] << i``, minus ``pc[k*wb+wb-1] << wb`` when weights are signed (two's complement MSB),
    negated when this is the sign plane of signed activations.

    Members
    -------
    words : In(ArrayLayout(width, rows))
    x_plane : In(rows)
        One activation bit plane.
    wb_log2 : In(2)
    w_signed, neg : In(1)
    lanes : Out(ArrayLayout(signed(pw), width))
        Signed partial sums, lane k valid for k < width // wb.
    """

    def __init__(self, rows: int, width: int):
        self.rows, self.width = rows, width
        self.pw = count_bits(rows) + width + 1
        super().__init__({
            "words": In(data.ArrayLayout(width, rows)), "x_plane": In(rows),
            "wb_log2": In(2), "w_signed": In(1), "neg": In(1),
            "lanes": Out(data.ArrayLayout(signed(self.pw), width)),
        })

    def elaborate(self, platform):
        m = Module()
        rows, width = self.rows, self.width
        # AND each row's word with its activation bit, then count the ones of every column at once: a
        # carry-save reduction whose full adders are word-wide (one per column, in parallel). It is the same
        # adder tree as a per-column popcount, written so a simulator evaluates words, not single bits.
        words = self.words.as_value()
        masked = []
        for r in range(rows):
            w = Signal(width, name=f"and_r{r}")
            m.d.comb += w.eq(words[r * width:(r + 1) * width] & self.x_plane[r].replicate(width))
            masked.append(w)
        planes = column_counts(m, masked, width, "csa")
        pc = []
        for b in range(width):
            s = Signal(count_bits(rows), name=f"pc{b}")
            m.d.comb += s.eq(Cat(p[b] for p in planes))
            pc.append(s)
        # unsigned weight sums for each precision, built pairwise from the narrower ones
        sums = {1: pc}
        wb = 2
        while wb <= width:
            half = sums[wb // 2]
            level = []
            for k in range(width // wb):
                s = Signal(count_bits(rows) + wb, name=f"u{wb}_{k}")
                m.d.comb += s.eq(half[2 * k] + (half[2 * k + 1] << (wb // 2)))
                level.append(s)
            sums[wb] = level
            wb *= 2
        for k in range(width):
            lane = Signal(signed(self.pw), name=f"lane{k}")
            with m.Switch(self.wb_log2):
                for wb in WEIGHT_BITS:
                    if wb > width:
                        continue
                    with m.Case(exact_log2(wb)):
                        if k < width // wb:
                            msb = pc[k * wb + wb - 1]
                            m.d.comb += lane.eq(sums[wb][k] - Mux(self.w_signed, msb << wb, 0))
                        else:
                            m.d.comb += lane.eq(0)
                with m.Default():
                    m.d.comb += lane.eq(0)
            m.d.comb += self.lanes[k].eq(Mux(self.neg, -lane, lane))
        return m


class TileAccum(wiring.Component):
    """Shift-add accumulators of one column tile: ``acc <= (first ? 0 : acc) + (partial << t)`` when ``en``.

    Members
    -------
    partial : In(ArrayLayout(signed(pw), width))
    en, first : In(1)
    t : In(3)
        Bit plane of this partial sum.
    acc : Out(ArrayLayout(acc_width, width))
        Modulo 2^acc_width, which the result width makes exact.
    """

    def __init__(self, width: int, pw: int, acc_width: int, max_ab: int):
        self.width, self.pw, self.acc_width, self.max_ab = width, pw, acc_width, max_ab
        super().__init__({
            "partial": In(data.ArrayLayout(signed(pw), width)), "en": In(1), "first": In(1), "t": In(3),
            "acc": Out(data.ArrayLayout(acc_width, width)),
        })

    def elaborate(self, platform):
        m = Module()
        t = Signal(range(max(2, self.max_ab)), name="t_clamped")
        m.d.comb += t.eq(self.t)
        for k in range(self.width):
            acc = Signal(signed(self.acc_width), name=f"acc{k}", reset_less=True)
            shifted = Signal(signed(self.acc_width), name=f"shifted{k}")
            m.d.comb += shifted.eq(self.partial[k] << t)
            with m.If(self.en):
                m.d.sync += acc.eq(Mux(self.first, 0, acc) + shifted)
            m.d.comb += self.acc[k].eq(acc)
        return m


class ColumnTile(wiring.Component):
    """``width`` (= max_wb) columns of the macro: storage, compute, accumulators and the bitwise path.

    Members
    -------
    we, wpage, wrow, wdata : In
        Write port.
    ren, rpage, rrow : In
        Read enable and address (memory read-back and BITWISE operand row).
    rdata : Out(width)
        Word read at (rpage, rrow) in the last cycle with ``ren`` (registered).
    cpage, x_plane, wb_log2, w_signed, neg : In
        Compute stage inputs; the partial sums are registered.
    acc_en, acc_first, acc_t : In
        Accumulate stage controls (one cycle after compute).
    acc : Out(ArrayLayout(acc_width, width))
    bword : In(width), bop : In(BitOp), ben : In(1)
        BITWISE operand and operation, applied to the registered read word ``rdata`` when ``ben``.
    bits : Out(width), pop : Out
        Registered BITWISE result and its popcount.
    """

    def __init__(self, cfg: MacroConfig):
        self.cfg = cfg
        w = cfg.tile_cols
        self.pw = count_bits(cfg.rows) + w + 1
        super().__init__({
            "we": In(1), "wpage": In(cfg.page_width), "wrow": In(cfg.row_width), "wdata": In(w),
            "ren": In(1), "rpage": In(cfg.page_width), "rrow": In(cfg.row_width), "rdata": Out(w),
            "cpage": In(cfg.page_width), "x_plane": In(cfg.rows), "wb_log2": In(2), "w_signed": In(1),
            "neg": In(1),
            "acc_en": In(1), "acc_first": In(1), "acc_t": In(3),
            "acc": Out(data.ArrayLayout(cfg.acc_width, w)),
            "bword": In(w), "bop": In(BitOp), "ben": In(1), "bits": Out(w), "pop": Out(count_bits(w)),
        })

    @staticmethod
    def module_name(cfg: MacroConfig) -> str:
        """A module name that encodes every parameter the tile's logic depends on."""
        return f"cim_tile_r{cfg.rows}_p{cfg.pages}_w{cfg.max_wb}_a{cfg.max_ab}"

    def elaborate(self, platform):
        m = Module()
        cfg, w = self.cfg, self.cfg.tile_cols
        m.submodules.storage = st = TileStorage(cfg.rows, cfg.pages, w, cfg.page_width, cfg.row_width)
        m.submodules.compute = cu = TileCompute(cfg.rows, w)
        m.submodules.accum = ac = TileAccum(w, self.pw, cfg.acc_width, cfg.max_ab)
        m.d.comb += [
            st.we.eq(self.we), st.wpage.eq(self.wpage), st.wrow.eq(self.wrow), st.wdata.eq(self.wdata),
            st.cpage.eq(self.cpage), st.rpage.eq(self.rpage), st.rrow.eq(self.rrow),
            cu.words.eq(st.cwords), cu.x_plane.eq(self.x_plane), cu.wb_log2.eq(self.wb_log2),
            cu.w_signed.eq(self.w_signed), cu.neg.eq(self.neg),
            ac.en.eq(self.acc_en), ac.first.eq(self.acc_first), ac.t.eq(self.acc_t),
            self.acc.eq(ac.acc),
        ]
        # pipeline register between the adder trees and the shift-add
        partial = Signal.like(cu.lanes, name="partial_q", reset_less=True)
        m.d.sync += partial.eq(cu.lanes)
        m.d.comb += ac.partial.eq(partial)
        # read-back, then the bitwise operation on the registered word (second stage, like the MAC path)
        rdata = Signal(w, reset_less=True)
        with m.If(self.ren):
            m.d.sync += rdata.eq(st.rdata)
        m.d.comb += self.rdata.eq(rdata)
        bits = Signal(w, reset_less=True)
        with m.If(self.ben), m.Switch(self.bop):
            with m.Case(BitOp.AND):
                m.d.sync += bits.eq(self.bword & rdata)
            with m.Case(BitOp.OR):
                m.d.sync += bits.eq(self.bword | rdata)
            with m.Case(BitOp.XOR):
                m.d.sync += bits.eq(self.bword ^ rdata)
            with m.Case(BitOp.NOR):
                m.d.sync += bits.eq(~(self.bword | rdata))
            with m.Case(BitOp.XNOR):
                m.d.sync += bits.eq(~(self.bword ^ rdata))
            with m.Default():
                m.d.sync += bits.eq(0)
        m.d.comb += [self.bits.eq(bits), self.pop.eq(popcount(m, bits, "bpop"))]
        return m


class CimMacro(wiring.Component):
    """One CIM macro: ``rows x pages x cols`` bit cells computing exact signed/unsigned dot products.

    Parameters
    ----------
    cfg : MacroConfig
    library : VerilogLibrary, optional
        When given, column tiles are converted once into the library and instantiated by name (for Verilog
        emission); otherwise they are inline submodules (for Amaranth simulation).

    Members
    -------
    op : In(stream.Signature(macro_op_layout(cfg)))
        Operations; see :func:`cimforge.gen.layouts.macro_op_layout`.
    mem_we, mem_re, mem_page, mem_row, mem_wdata : In
        SRAM port: write ``mem_wdata`` at (page, row), or read it back.
    mem_rdata : Out(cols)
        The word read, valid the cycle after ``mem_re``.
    res_valid : Out(1)
        One-cycle pulse: the results below belong to the operation just completed.
    res_y : Out(macro_result_layout(cfg))
        MAC result, lane j = y[j] for j < cols // wb (two's complement modulo 2^acc_width; unsigned when both
        operands are), other lanes zero.
    res_bits : Out(cols), res_pop : Out(ArrayLayout(n, cols // max_wb)), res_total : Out
        BITWISE result word, popcount per column tile, total popcount.
    busy : Out(1)
    """

    def __init__(self, cfg: MacroConfig, library: VerilogLibrary | None = None):
        self.cfg = cfg
        self.library = library
        super().__init__(self.signature_for(cfg))

    @staticmethod
    def signature_for(cfg: MacroConfig) -> wiring.Signature:
        """The macro's ports for ``cfg`` (the members above), from which benches and drivers derive theirs:
        the Verilog port of member ``path`` is ``"__".join(path)``."""
        return wiring.Signature({
            "op": In(stream.Signature(macro_op_layout(cfg))),
            "mem_we": In(1), "mem_re": In(1), "mem_page": In(cfg.page_width), "mem_row": In(cfg.row_width),
            "mem_wdata": In(cfg.cols), "mem_rdata": Out(cfg.cols),
            "res_valid": Out(1), "res_y": Out(macro_result_layout(cfg)),
            "res_bits": Out(cfg.cols), "res_pop": Out(data.ArrayLayout(count_bits(cfg.tile_cols), cfg.n_tiles)),
            "res_total": Out(count_bits(cfg.cols)),
            "busy": Out(1),
        })

    def _tiles(self, m: Module) -> list:
        cfg = self.cfg
        if self.library is None:
            tiles = [ColumnTile(cfg) for _ in range(cfg.n_tiles)]
            for i, t in enumerate(tiles):
                m.submodules[f"tile{i}"] = t
            return tiles
        name, template = self.library.module(ColumnTile.module_name(cfg), lambda: ColumnTile(cfg))
        tiles = []
        for i in range(cfg.n_tiles):
            iface = template.signature.create(path=(f"tile{i}",))
            m.submodules[f"tile{i}"] = instantiate(name, template, iface)
            tiles.append(iface)
        return tiles

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        w = cfg.tile_cols
        tiles = self._tiles(m)
        op = self.op.payload

        # --- sequencer: the operation register and the plane mask --------------------------------------
        busy = Signal()
        mode = Signal(MacroMode)
        page = Signal(cfg.page_width)
        wb_l2 = Signal(2)
        w_signed = Signal()
        x_signed = Signal()
        ab_m1 = Signal(3)
        bop = Signal(BitOp)
        word = Signal(cfg.cols)
        planes = Signal(data.ArrayLayout(cfg.rows, cfg.max_ab))  # x transposed: planes[t][r] = bit t of x[r]
        remaining = Signal(cfg.max_ab)  # planes still to process, LSB first

        # planes of the incoming operation that are non-zero in some row, limited to its ab
        in_planes = [Signal(cfg.rows, name=f"in_plane{t}") for t in range(cfg.max_ab)]
        x_raw = op.x.as_value()  # slicing the raw bits is much cheaper than indexing the view per element
        for t in range(cfg.max_ab):
            m.d.comb += in_planes[t].eq(Cat(x_raw[r * cfg.max_ab + t] for r in range(cfg.rows)))
        ab_mask = Signal(cfg.max_ab)
        m.d.comb += ab_mask.eq(Array(Const((1 << min(a + 1, cfg.max_ab)) - 1, cfg.max_ab) for a in range(8))[op.ab_m1])
        nonzero = Signal(cfg.max_ab)
        m.d.comb += nonzero.eq(Cat(p.any() for p in in_planes) & ab_mask)
        first_mask = Signal(cfg.max_ab)
        with m.If(op.mode == MacroMode.BITWISE):
            m.d.comb += first_mask.eq(1)
        with m.Elif(op.skip):
            m.d.comb += first_mask.eq(Mux(nonzero.any(), nonzero, 1))
        with m.Else():
            m.d.comb += first_mask.eq(ab_mask)

        # the lowest remaining plane is processed this cycle
        t_now = Signal(3)
        for t in reversed(range(cfg.max_ab)):
            with m.If(remaining[t]):
                m.d.comb += t_now.eq(t)
        rest = Signal(cfg.max_ab)
        m.d.comb += rest.eq(remaining & ~(Const(1, cfg.max_ab) << t_now))
        last = Signal()
        m.d.comb += last.eq(busy & (rest == 0))
        m.d.comb += [self.op.ready.eq(~busy | last), self.busy.eq(busy)]

        accept = Signal()
        m.d.comb += accept.eq(self.op.valid & self.op.ready)
        with m.If(accept):
            m.d.sync += [
                busy.eq(1), mode.eq(op.mode), page.eq(op.page), wb_l2.eq(op.wb_log2), w_signed.eq(op.w_signed),
                x_signed.eq(op.x_signed), ab_m1.eq(op.ab_m1), bop.eq(op.bop), word.eq(op.word),
                remaining.eq(first_mask),
            ]
            m.d.sync += [planes[t].eq(in_planes[t]) for t in range(cfg.max_ab)]
        with m.Elif(busy):
            m.d.sync += remaining.eq(rest)
            with m.If(last):
                m.d.sync += busy.eq(0)

        computing = Signal()
        m.d.comb += computing.eq(busy & (mode == MacroMode.MAC))
        x_plane = Signal(cfg.rows)
        m.d.comb += x_plane.eq(Array(planes[t] for t in range(cfg.max_ab))[t_now])
        neg = Signal()
        m.d.comb += neg.eq(x_signed & (t_now == ab_m1))

        # --- pipeline: stage 1 (partial sums registered in the tiles), stage 2 (accumulated) -------------
        s1_valid, s1_first, s1_last, s1_mac = Signal(), Signal(), Signal(), Signal()
        s1_t = Signal(3)
        s1_wb = Signal(2)
        s1_word = Signal(cfg.cols)
        s1_bop = Signal(BitOp)
        first = Signal(init=1)  # next compute cycle starts a new operation
        with m.If(busy):
            m.d.sync += first.eq(last)
        m.d.sync += [s1_valid.eq(busy), s1_first.eq(first), s1_last.eq(last), s1_t.eq(t_now),
                     s1_mac.eq(computing), s1_wb.eq(wb_l2), s1_word.eq(word), s1_bop.eq(bop)]
        res_valid = Signal()
        res_wb = Signal(2)
        m.d.sync += res_valid.eq(s1_valid & s1_last)
        with m.If(s1_valid & s1_last):
            m.d.sync += res_wb.eq(s1_wb)
        m.d.comb += self.res_valid.eq(res_valid)

        # the memory port and the BITWISE operand row share the read address: a BITWISE operation wins, so a
        # read-back must not be issued in a BITWISE operation's compute cycle
        rpage = Signal(cfg.page_width)
        rrow = Signal(cfg.row_width)
        brow = Signal(cfg.row_width)
        with m.If(accept):
            m.d.sync += brow.eq(op.row)
        bitwise_now = Signal()
        m.d.comb += bitwise_now.eq(busy & (mode == MacroMode.BITWISE))
        m.d.comb += [rpage.eq(Mux(bitwise_now, page, self.mem_page)), rrow.eq(Mux(bitwise_now, brow, self.mem_row))]

        for i, tile in enumerate(tiles):
            lo = i * w
            m.d.comb += [
                tile.we.eq(self.mem_we), tile.wpage.eq(self.mem_page), tile.wrow.eq(self.mem_row),
                tile.wdata.eq(self.mem_wdata[lo:lo + w]),
                tile.ren.eq(self.mem_re | bitwise_now), tile.rpage.eq(rpage), tile.rrow.eq(rrow),
                tile.cpage.eq(page), tile.x_plane.eq(x_plane), tile.wb_log2.eq(wb_l2),
                tile.w_signed.eq(w_signed), tile.neg.eq(neg),
                tile.acc_en.eq(s1_valid & s1_mac), tile.acc_first.eq(s1_first), tile.acc_t.eq(s1_t),
                tile.bword.eq(s1_word[lo:lo + w]), tile.bop.eq(s1_bop), tile.ben.eq(s1_valid & ~s1_mac),
                self.mem_rdata[lo:lo + w].eq(tile.rdata),
                self.res_bits[lo:lo + w].eq(tile.bits),
                self.res_pop[i].eq(tile.pop),
            ]
        m.d.comb += self.res_total.eq(sum_tree(m, [t.pop for t in tiles], "total"))

        # --- output lanes: y[j] sits in lane j whatever wb is --------------------------------------------
        for j in range(cfg.cols):
            with m.Switch(res_wb):
                for wb in WEIGHT_BITS:
                    if wb > cfg.max_wb:
                        continue
                    per_tile = w // wb
                    with m.Case(exact_log2(wb)):
                        if j < cfg.cols // wb:
                            m.d.comb += self.res_y[j].eq(tiles[j // per_tile].acc[j % per_tile])
        return m
