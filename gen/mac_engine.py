"""The ``MAC`` pass engine: gathers, issues macro operations in lockstep, accumulates partial sums across
reduction rounds and across the macros of a K-split, requantises and writes the output words back.

A pass visits ``ceil(npos / b)`` position rounds; each round runs ``nr`` output-channel rounds of ``kr``
reduction rounds, one *slot* each. In a slot every enabled macro ``m`` (its role from the
pass's role table, latched by its gather unit) computes reduction tile ``kr_index * ki + kk`` of output-channel tile
``nr_index * no + nn`` at position ``round * b + bi``, all from the same page index, if those exist.

Slot pipeline::

    gather (per unit, run-ahead of one slot) -> issue (all active macros at once, when each has its vector and
    is ready) -> results after ab + LATENCY cycles -> per-macro accumulators (cleared on the first reduction
    round) -> on the last round, a copy to the serializer -> one output group (lanes channels of one
    position) per cycle: sum over the K-split macros -> + bias -> MultiplyByQuantizedMultiplier -> + zero
    point, clamp -> [epilogue] -> activation memory write.

The optional epilogue (``epi``) is a per-channel affine on the clamped codes ``q`` of the pass, exactly a
depthwise 1x1 convolution of them (the BatchNormalization that onnxruntime leaves after a quantized
convolution): ``clamp(epi_zp_out + MBQM(q * w + bias), epi_min, epi_max)``, ``bias`` with that layer's input
zero point folded in, read from its own parameter words through a second parameter read port; it adds
:data:`EPILOGUE_LATENCY` cycles to the write-back and only its result is written.

The serializer takes ``groups = b * no`` cycles per final slot; final slots are issued at least ``groups``
cycles apart, so its copy register is free again before the next final results arrive.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import CimConfig
from ..golden.macro import LATENCY
from .engine import MacTiming, engine_members
from .gather import GatherUnit
from .isa import CNT, addr_width, lanes, mac_layout, param_layout
from .layouts import MacroMode, macro_op_layout, macro_result_layout
from .macro import sum_tree
from .requant import MBQM_LATENCY, Mbqm, clamp_code

__all__ = ["MacEngine", "MAC_TIMING", "MacEpilogueTiming", "EPILOGUE_LATENCY"]

#: Cycles the epilogue adds to the write-back of an output group: the register of the clamped codes (the
#: affine's product and sum follow it combinationally) and the epilogue's own requantiser.
EPILOGUE_LATENCY = 1 + MBQM_LATENCY


@dataclass(frozen=True)
class MacEpilogueTiming(MacTiming):
    """:class:`~cimforge.gen.engine.MacTiming` and the epilogue's latency.

    Attributes
    ----------
    epilogue : int
        Cycles the write-back of an output group takes longer with the epilogue (``epi``) on
        (:data:`EPILOGUE_LATENCY`).
    """

    epilogue: int = 0


#: Fixed delays of the engine, read by the cost model: the start register; the macro's latency plus the
#: accumulator register; the serializer copy, the group-sum register, the requantiser and the write; the
#: serializer's last group and ``done``; the epilogue's extra write-back latency.
MAC_TIMING = MacEpilogueTiming(setup=1, result=LATENCY + 1, tail=2 + MBQM_LATENCY + 1, serializer_extra=2,
                               epilogue=EPILOGUE_LATENCY)

TAG_DEPTH = 4


class MacEngine(wiring.Component):
    """Executes ``MAC`` instructions on ``cfg.fabric.n_macros`` macros.

    Attributes
    ----------
    name : str
        ``"mac"``, the :class:`~cimforge.gen.isa.InstrSpec` engine name.
    TIMING : MacTiming

    Members
    -------
    start : In(1)
        Begin the pass described by ``args`` (held stable until ``done``).
    busy, done : Out(1)
        ``done`` pulses in the pass's last cycle.
    op : Out(stream.Signature(macro_op_layout)).array(n)
        Operations to the macros.
    res_valid, res_y : In, array(n)
        The macros' results.
    act_rd : In(memory.ReadPort.Signature(addr_width, 8 * lanes)).array(n)
        The gather units' activation memory read ports (synchronous).
    desc_rd : In(memory.ReadPort.Signature(addr_width, desc_layout)).array(n)
        The gather units' descriptor memory read ports (asynchronous).
    param_rd : In(memory.ReadPort.Signature(addr_width, param_layout))
        Parameter memory read port (synchronous).
    epi_rd : In(memory.ReadPort.Signature(addr_width, param_layout))
        The epilogue's parameter memory read port (synchronous); only with ``fabric.mac_epilogue``.
    act_w : In(memory.WritePort.Signature(addr_width, 8 * lanes))
        Activation memory write port (output words).
    unit_en : Out(n)
        Macros taking part in the running pass (for the stall counters).
    """

    name = "mac"
    TIMING = MAC_TIMING

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        n = cfg.fabric.n_macros
        self.units = [GatherUnit(cfg, i) for i in range(n)]
        unit = self.units[0].signature.members
        super().__init__({
            **engine_members(mac_layout(cfg)),
            "op": Out(stream.Signature(macro_op_layout(cfg.macro))).array(n),
            "res_valid": In(1).array(n), "res_y": In(macro_result_layout(cfg.macro)).array(n),
            "act_rd": unit["act_rd"].array(n), "desc_rd": unit["desc_rd"].array(n),
            "param_rd": In(memory.ReadPort.Signature(addr_width=mac_layout(cfg)["param_base"].shape.width,
                                                     shape=param_layout(cfg))),
            **({"epi_rd": In(memory.ReadPort.Signature(addr_width=mac_layout(cfg)["param_base"].shape.width,
                                                       shape=param_layout(cfg)))} if cfg.fabric.mac_epilogue else {}),
            "act_w": In(memory.WritePort.Signature(addr_width=addr_width(cfg), shape=8 * lanes(cfg))),
            "unit_en": Out(n),
        })
        for port in self.desc_rd:  # asynchronous: no enable (see GatherUnit)
            port.en = Const(1)

    def elaborate(self, platform):
        m = Module()
        cfg, a = self.cfg, self.args
        n, L = cfg.fabric.n_macros, lanes(cfg)
        units = self.units
        for i, u in enumerate(units):
            m.submodules[f"gather{i}"] = u
            m.d.comb += u.args.eq(a)
            wiring.connect(m, wiring.flipped(self.act_rd[i]), u.act_rd)
            wiring.connect(m, wiring.flipped(self.desc_rd[i]), u.desc_rd)
        roles = [(u.bi, u.kk, u.nn, u.en) for u in units]
        b = a.b

        running = Signal()
        setup = Signal()
        setup_cnt = Signal(8)
        m.d.comb += self.busy.eq(running)
        m.d.comb += self.unit_en.eq(Cat(r[3] & running for r in roles))

        # --- gather sequencer ------------------------------------------------------------------------------
        g_p0 = Signal(16)
        # tile counters as wide as the instruction's tile counts (``CNT`` bits): VGG-19's first dense layer has
        # 392 reduction tiles, 25 rounds of 16 (8-bit counters wrapped kbase past 255: wrong inputs, bit-exact
        # cycles)
        g_nr = Signal(CNT)
        g_kr = Signal(CNT)
        g_kbase = Signal(CNT)   # g_kr * ki
        g_nbase = Signal(CNT)   # g_nr * no
        g_done = Signal()
        all_idle = Signal()
        any_stall = Signal()
        m.d.comb += [all_idle.eq(Cat(u.idle_next for u in units).all()),
                     any_stall.eq(Cat(u.stall for u in units).any())]
        go = Signal()
        m.d.comb += go.eq(running & ~setup & ~g_done & all_idle & ~any_stall)
        g_round_end = Signal()
        m.d.comb += g_round_end.eq((g_kr == a.kr - 1) & (g_nr == a.nr - 1))
        for i, (u, (bi, kk, nn, en)) in enumerate(zip(units, roles)):
            act = Signal(name=f"g_act{i}")
            m.d.comb += act.eq(en & u.pos_valid & ((g_kbase + kk) < a.kt) & ((g_nbase + nn) < a.nt))
            m.d.comb += [u.go.eq(go), u.tile_active.eq(act), u.g_kbase.eq(g_kbase),
                         u.pos_bstep.eq(go & g_round_end)]
        with m.If(go):
            _advance(m, a, g_kr, g_kbase, g_nr, g_nbase, g_p0, g_done)

        # --- issue ---------------------------------------------------------------------------------------
        tag_layout = data.StructLayout({"first": 1, "last": 1, "act": n, "p0": 16, "n0": CNT})
        m.submodules.tags = tags = fifo.SyncFIFO(width=tag_layout.size, depth=TAG_DEPTH)
        i_p0 = Signal(16)
        i_nr = Signal(CNT)
        i_kr = Signal(CNT)
        i_kbase = Signal(CNT)
        i_nbase = Signal(CNT)
        i_page = Signal(cfg.macro.page_width)
        i_done = Signal()
        acts = []
        oks = []
        for i, (u, (bi, kk, nn, en)) in enumerate(zip(units, roles)):
            act = Signal(name=f"i_act{i}")
            m.d.comb += act.eq(en & ((i_p0 + bi) < a.npos) & ((i_kbase + kk) < a.kt) & ((i_nbase + nn) < a.nt))
            ok = Signal(name=f"i_ok{i}")
            m.d.comb += ok.eq(~act | (u.full & self.op[i].ready))
            acts.append(act)
            oks.append(ok)
        # a final slot (last reduction round) issues at least `groups` cycles after the previous one, so that
        # the serializer has written the previous slot's groups when its results arrive
        since_final = Signal(8)
        final = Signal()
        m.d.comb += final.eq(i_kr == a.kr - 1)
        spaced = Signal()
        m.d.comb += spaced.eq(since_final + 1 >= a.groups)
        issue = Signal()
        m.d.comb += issue.eq(running & ~setup & ~i_done & Cat(oks).all() & tags.w_rdy & (~final | spaced))
        with m.If(issue & final):
            m.d.sync += since_final.eq(0)
        with m.Elif(since_final != 0xFF):
            m.d.sync += since_final.eq(since_final + 1)
        for i, u in enumerate(units):
            op = self.op[i]
            m.d.comb += [
                op.valid.eq(issue & acts[i]), u.take.eq(issue & acts[i]),
                op.payload.mode.eq(MacroMode.MAC), op.payload.page.eq(i_page),
                op.payload.wb_log2.eq(a.wb_log2), op.payload.ab_m1.eq(a.ab_m1),
                op.payload.w_signed.eq(a.w_signed), op.payload.x_signed.eq(a.x_signed),
                op.payload.x.as_value().eq(u.x.as_value()),
            ]
        tag_in = Signal(tag_layout)
        m.d.comb += [
            tag_in.first.eq(i_kr == 0), tag_in.last.eq(i_kr == a.kr - 1), tag_in.act.eq(Cat(acts)),
            tag_in.p0.eq(i_p0), tag_in.n0.eq(i_nbase),
            tags.w_data.eq(tag_in), tags.w_en.eq(issue),
        ]
        with m.If(issue):
            m.d.sync += i_page.eq(Mux((i_kr == a.kr - 1) & (i_nr == a.nr - 1), a.page_base, i_page + 1))
            _advance(m, a, i_kr, i_kbase, i_nr, i_nbase, i_p0, i_done)

        # --- results: per-macro accumulators --------------------------------------------------------------
        res_any = Signal()
        m.d.comb += res_any.eq(Cat(self.res_valid).any())
        tag = Signal(tag_layout)
        m.d.comb += [tag.eq(tags.r_data), tags.r_en.eq(res_any)]
        res_signed = Signal()
        m.d.comb += res_signed.eq(a.w_signed | a.x_signed)
        acc = [[Signal(signed(32), name=f"acc{i}_{l}", reset_less=True) for l in range(L)] for i in range(n)]
        ser = [[Signal(signed(32), name=f"ser{i}_{l}", reset_less=True) for l in range(L)] for i in range(n)]
        ser_cnt = Signal(8)
        g_bi = Signal(8)   # the group being serialized: position group and N part
        g_nn = Signal(8)
        ser_p0 = Signal(16)
        ser_n0 = Signal(CNT)
        for i in range(n):
            for l in range(L):
                r = self.res_y[i][l]
                ext = Signal(signed(32), name=f"ext{i}_{l}")
                m.d.comb += ext.eq(Mux(res_signed, r.as_signed(), r.as_unsigned()))
                new = Signal(signed(32), name=f"new{i}_{l}")
                m.d.comb += new.eq(Mux(tag.first, 0, acc[i][l]) + Mux(tag.act[i], ext, 0))
                with m.If(res_any):
                    m.d.sync += acc[i][l].eq(new)
                    with m.If(tag.last):
                        m.d.sync += ser[i][l].eq(new)
        with m.If(res_any & tag.last):
            m.d.sync += [ser_cnt.eq(a.groups), g_bi.eq(0), g_nn.eq(0), ser_p0.eq(tag.p0), ser_n0.eq(tag.n0)]

        # --- serializer: one output group per cycle -------------------------------------------------------
        ser_on = Signal()
        m.d.comb += ser_on.eq(ser_cnt != 0)
        with m.If(ser_on & ~(res_any & tag.last)):
            m.d.sync += ser_cnt.eq(ser_cnt - 1)
            with m.If(g_nn == a.no - 1):
                m.d.sync += [g_nn.eq(0), g_bi.eq(g_bi + 1)]
            with m.Else():
                m.d.sync += g_nn.eq(g_nn + 1)
        sels = []
        for i, (bi, kk, nn, en) in enumerate(roles):
            sel = Signal(name=f"sel{i}")
            m.d.comb += sel.eq(en & (bi == g_bi) & (nn == g_nn))
            sels.append(sel)
        q0_valid = Signal()
        q0_sum = [Signal(signed(32), name=f"q0_sum{l}", reset_less=True) for l in range(L)]
        q0_addr = Signal(addr_width(cfg), reset_less=True)
        q0_n = Signal(CNT, reset_less=True)   # the group's output-channel tile (the epilogue's parameter word)
        for l in range(L):
            terms = []
            for i in range(n):
                t = Signal(signed(32), name=f"term{i}_{l}")
                m.d.comb += t.eq(Mux(sels[i], ser[i][l], 0))
                terms.append(t)
            # 32-bit two's complement nodes: wrapping, like the int32 accumulators
            total = sum_tree(m, terms, f"gsum{l}", shape=signed(32))
            m.d.sync += q0_sum[l].eq(total)
        g_p = Signal(16)
        g_n = Signal(CNT)
        m.d.comb += [g_p.eq(ser_p0 + g_bi), g_n.eq(ser_n0 + g_nn)]
        m.d.sync += [q0_valid.eq(ser_on & (g_p < a.npos) & (g_n < a.nt)),
                     q0_addr.eq(a.out_base + g_p * a.out_cw + g_n), q0_n.eq(g_n)]
        m.d.comb += [self.param_rd.addr.eq(a.param_base + g_n), self.param_rd.en.eq(1)]

        # --- requantise and write back --------------------------------------------------------------------
        m.submodules.mbqm = mq = Mbqm(L, rounding=self.cfg.fabric.rounding)
        m.d.comb += mq.i_valid.eq(q0_valid)
        for l in range(L):
            p = self.param_rd.data[l]
            m.d.comb += [mq.x[l].eq(q0_sum[l] + p.bias), mq.mult[l].eq(p.mult), mq.shift[l].eq(p.shift)]
        addr_pipe = [q0_addr]
        for k in range(MBQM_LATENCY + EPILOGUE_LATENCY):
            s = Signal(addr_width(cfg), name=f"addr_pipe{k}", reset_less=True)
            m.d.sync += s.eq(addr_pipe[-1])
            addr_pipe.append(s)
        n_pipe = [q0_n]  # the epilogue's word is read as the codes are registered, ready with them
        for k in range(MBQM_LATENCY):
            s = Signal(CNT, name=f"n_pipe{k}", reset_less=True)
            m.d.sync += s.eq(n_pipe[-1])
            n_pipe.append(s)
        codes = [clamp_code(m, mq.y[l], a.zp_out, a.act_min, a.act_max, f"code{l}") for l in range(L)]

        if not cfg.fabric.mac_epilogue:  # no epilogue built: the codes are written (MAC.epi is never set)
            m.d.comb += [self.act_w.en.eq(mq.o_valid), self.act_w.addr.eq(addr_pipe[MBQM_LATENCY]),
                         self.act_w.data.eq(Cat(c[:8] for c in codes))]
            post_busy = Signal()
            m.d.comb += post_busy.eq(q0_valid | mq.busy)
        else:
            post_busy = self._epilogue(m, codes, mq, n_pipe, addr_pipe, q0_valid)

        # --- pass control -----------------------------------------------------------------------------------
        finished = Signal()
        m.d.comb += finished.eq(running & ~setup & g_done & i_done & ~tags.r_rdy & ~ser_on & ~post_busy)
        m.d.comb += self.done.eq(finished)
        with m.If(self.start & ~running):
            m.d.sync += [running.eq(1), setup.eq(1), setup_cnt.eq(0), since_final.eq(0xFF),
                         g_p0.eq(0), g_nr.eq(0), g_kr.eq(0), g_kbase.eq(0), g_nbase.eq(0), g_done.eq(0),
                         i_p0.eq(0), i_nr.eq(0), i_kr.eq(0), i_kbase.eq(0), i_nbase.eq(0),
                         i_page.eq(a.page_base), i_done.eq(0)]
        for u in units:
            m.d.comb += u.pos_init.eq(self.start & ~running)
        with m.If(setup):
            with m.If(setup_cnt + 1 < b):
                m.d.sync += setup_cnt.eq(setup_cnt + 1)
            with m.Else():
                m.d.sync += setup.eq(0)
        for u, (bi, kk, nn, en) in zip(units, roles):
            m.d.comb += u.pos_step.eq(setup & (setup_cnt + 1 < b) & (bi > setup_cnt))
        with m.If(finished):
            m.d.sync += running.eq(0)
        return m



    def _epilogue(self, m: Module, codes: list, mq, n_pipe: list, addr_pipe: list, q0_valid) -> Signal:
        """The epilogue (``MAC.epi``): a per-channel affine of the pass's clamped codes, requantised again, and the
        activation memory write of either those codes or the epilogue's; returns the write-back's busy."""
        a, L = self.args, lanes(self.cfg)
        e_valid = Signal()
        e_q = [Signal(signed(10), name=f"e_q{l}", reset_less=True) for l in range(L)]
        m.d.sync += [e_valid.eq(mq.o_valid & a.epi)] + [e_q[l].eq(codes[l]) for l in range(L)]
        m.d.comb += [self.epi_rd.addr.eq(a.epi_base + n_pipe[-1]), self.epi_rd.en.eq(1)]
        m.submodules.epi_mbqm = eq = Mbqm(L, rounding=self.cfg.fabric.rounding)
        m.d.comb += eq.i_valid.eq(e_valid)
        for l in range(L):
            p = self.epi_rd.data[l]
            # the int32 accumulator of the depthwise 1x1 layer: its bias (zero point folded) plus the code
            # times the weight (|q * w| < 2**15; the compiler checks the bias fits int32)
            acc = Signal(signed(32), name=f"e_acc{l}")
            m.d.comb += acc.eq(e_q[l] * p.w + p.bias)
            m.d.comb += [eq.x[l].eq(acc), eq.mult[l].eq(p.mult), eq.shift[l].eq(p.shift)]
        e_codes = [clamp_code(m, eq.y[l], a.epi_zp_out, a.epi_min, a.epi_max, f"e_code{l}") for l in range(L)]
        with m.If(a.epi):
            m.d.comb += [self.act_w.en.eq(eq.o_valid), self.act_w.addr.eq(addr_pipe[-1]),
                         self.act_w.data.eq(Cat(c[:8] for c in e_codes))]
        with m.Else():
            m.d.comb += [self.act_w.en.eq(mq.o_valid), self.act_w.addr.eq(addr_pipe[MBQM_LATENCY]),
                         self.act_w.data.eq(Cat(c[:8] for c in codes))]
        post_busy = Signal()
        m.d.comb += post_busy.eq(q0_valid | mq.busy | e_valid | eq.busy)
        return post_busy


def _advance(m: Module, a, kr, kbase, nr, nbase, p0, done) -> None:
    """Step a (position round, N round, K round) slot counter, keeping ``kbase = kr * ki`` and
    ``nbase = nr * no``; ``done`` when the last position round ends."""
    with m.If(kr == a.kr - 1):
        m.d.sync += [kr.eq(0), kbase.eq(0)]
        with m.If(nr == a.nr - 1):
            m.d.sync += [nr.eq(0), nbase.eq(0), p0.eq(p0 + a.b)]
            with m.If(p0 + a.b >= a.npos):
                m.d.sync += done.eq(1)
        with m.Else():
            m.d.sync += [nr.eq(nr + 1), nbase.eq(nbase + a.no)]
    with m.Else():
        m.d.sync += [kr.eq(kr + 1), kbase.eq(kbase + a.ki)]
