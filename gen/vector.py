"""Vector engines beside the macros: pooling (``POOL``) and element-wise passes (``EW``: residual add, clamp,
requantising copy). Both stream one activation word (``lanes`` channels) per cycle through a fixed pipeline
and write the result words back; their integer arithmetic is exactly the golden model's
(:mod:`cimforge.golden.ops`): max over codes, window sums of ``x - zp`` and TFLite requantisation.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from ..bits import index_bits
from ..config import CimConfig
from .engine import VectorTiming, engine_members
from .isa import DIM, LANE_BITS, POS, PoolMode, addr_width, ew_layout, lanes, pool_layout
from .requant import MBQM_LATENCY, Mbqm, clamp_code

__all__ = ["PoolEngine", "EwEngine", "POOL_TIMING", "EW_TIMING", "table_engine_members"]

# Cycles from a window's last tap address to its memory write (read, reduce, requantise).
_POOL_PIPELINE = 2 + MBQM_LATENCY
# Cycles from a word's read address to its memory write (read, input stage, two requantisations, sum).
_EW_PIPELINE = 3 + 2 * MBQM_LATENCY
#: ``POOL``: one tap per cycle, plus the start register, the pipeline and the done cycle.
POOL_TIMING = VectorTiming(extra=1 + _POOL_PIPELINE + 1, per_item=1)
#: ``EW``: one word per cycle, plus the start register, the pipeline and the done cycle.
EW_TIMING = VectorTiming(extra=1 + _EW_PIPELINE + 1, per_item=1)


def _act_read(cfg: CimConfig) -> In:
    """An engine's activation memory read port (the engine drives address and enable)."""
    return In(memory.ReadPort.Signature(addr_width=addr_width(cfg), shape=LANE_BITS * lanes(cfg)))


def _act_write(cfg: CimConfig) -> In:
    """An engine's activation memory write port (one whole word per write)."""
    return In(memory.WritePort.Signature(addr_width=addr_width(cfg), shape=LANE_BITS * lanes(cfg)))


def table_engine_members(cfg: CimConfig, args, table) -> dict:
    """The members of an engine that reads a table from the parameter memory (``LRN``, ``LUT``): the shared
    engine members for ``args``, an activation read and write port, and a parameter read port of ``table``
    words."""
    return {**engine_members(args), "act_rd": _act_read(cfg), "act_w": _act_write(cfg),
            "param_rd": In(memory.ReadPort.Signature(addr_width=index_bits(cfg.fabric.param_depth), shape=table))}


def _code(m: Module, raw, x_signed, name: str):
    """An 8-bit activation code as a signed 10-bit value (int8 or uint8 by ``x_signed``)."""
    v = Signal(signed(10), name=name)
    m.d.comb += v.eq(Mux(x_signed, raw.as_signed(), raw.as_unsigned()))
    return v


class PoolEngine(wiring.Component):
    """Executes ``POOL``: for each output position, channel word and window tap (row-major), one cycle.

    Members
    -------
    start, args, busy, done
        The shared engine members (:func:`~cimforge.gen.engine.engine_members`).
    act_rd : In(memory.ReadPort.Signature(addr_width, 8 * lanes))
        Activation memory read port (synchronous).
    act_w : In(memory.WritePort.Signature(addr_width, 8 * lanes))
        Activation memory write port.
    """

    name = "pool"
    TIMING = POOL_TIMING

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        super().__init__({**engine_members(pool_layout(cfg)), "act_rd": _act_read(cfg), "act_w": _act_write(cfg)})

    def elaborate(self, platform):
        m = Module()
        a, L, aw = self.args, lanes(self.cfg), addr_width(self.cfg)
        running = Signal()
        oy, ox, w, ky, kx = (Signal(DIM, name=nm) for nm in ("oy", "ox", "w", "ky", "kx"))
        m.d.comb += self.busy.eq(running)

        # stage 0: counters -> tap coordinates and addresses
        iy = Signal(signed(2 * DIM + 6))
        ix = Signal(signed(2 * DIM + 6))
        m.d.comb += [iy.eq(oy * a.sh - a.pt + ky * a.dh), ix.eq(ox * a.sw - a.pl + kx * a.dw)]
        oob = Signal()
        m.d.comb += oob.eq((iy < 0) | (iy >= a.in_h) | (ix < 0) | (ix >= a.in_w))
        m.d.comb += [self.act_rd.addr.eq(a.in_base + (iy * a.in_w + ix) * a.cw + w), self.act_rd.en.eq(1)]
        last_kx = Signal()
        last_ky = Signal()
        last_w = Signal()
        last_ox = Signal()
        last_oy = Signal()
        m.d.comb += [last_kx.eq(kx == a.kw - 1), last_ky.eq(ky == a.kh - 1), last_w.eq(w == a.cw - 1),
                     last_ox.eq(ox == a.ow - 1), last_oy.eq(oy == a.oh - 1)]
        tap = Signal()  # a tap is addressed this cycle
        m.d.comb += tap.eq(running)
        with m.If(tap):
            m.d.sync += kx.eq(kx + 1)
            with m.If(last_kx):
                m.d.sync += [kx.eq(0), ky.eq(ky + 1)]
                with m.If(last_ky):
                    m.d.sync += [ky.eq(0), w.eq(w + 1)]
                    with m.If(last_w):
                        m.d.sync += [w.eq(0), ox.eq(ox + 1)]
                        with m.If(last_ox):
                            m.d.sync += [ox.eq(0), oy.eq(oy + 1)]
                            with m.If(last_oy):
                                m.d.sync += running.eq(0)
        s1_valid, s1_oob, s1_first, s1_last = Signal(), Signal(), Signal(), Signal()
        s1_addr = Signal(aw, reset_less=True)
        m.d.sync += [s1_valid.eq(tap), s1_oob.eq(oob), s1_first.eq((kx == 0) & (ky == 0)),
                     s1_last.eq(last_kx & last_ky),
                     s1_addr.eq(a.out_base + (oy * a.ow + ox) * a.cw + w)]

        # stage 1: reduce the window (max of codes, or sum of x - zp_in; padded taps contribute nothing)
        is_max = Signal()
        m.d.comb += is_max.eq(a.mode == PoolMode.MAX)
        red = [Signal(signed(32), name=f"red{l}", reset_less=True) for l in range(L)]
        nxt = []
        for l in range(L):
            x = _code(m, self.act_rd.data[8 * l:8 * l + 8], a.x_signed, f"x{l}")
            base = Signal(signed(32), name=f"base{l}")
            m.d.comb += base.eq(Mux(s1_first, Mux(is_max, -1024, 0), red[l]))
            v = Signal(signed(32), name=f"v{l}")
            with m.If(s1_oob):
                m.d.comb += v.eq(base)
            with m.Elif(is_max):
                m.d.comb += v.eq(Mux(x > base, x, base))
            with m.Else():
                m.d.comb += v.eq(base + x - a.zp_in)
            with m.If(s1_valid):
                m.d.sync += red[l].eq(v)
            nxt.append(v)
        r_valid = Signal()
        r_addr = Signal(aw, reset_less=True)
        r_val = [Signal(signed(32), name=f"r_val{l}", reset_less=True) for l in range(L)]
        m.d.sync += [r_valid.eq(s1_valid & s1_last), r_addr.eq(s1_addr)]
        m.d.sync += [r_val[l].eq(nxt[l]) for l in range(L)]

        # stage 2: requantise (average) or pass through (max), then clamp and write
        m.submodules.mbqm = mq = Mbqm(L, shift_width=6, rounding=self.cfg.fabric.rounding)
        m.d.comb += mq.i_valid.eq(r_valid)
        for l in range(L):
            m.d.comb += [mq.x[l].eq(r_val[l]), mq.mult[l].eq(a.mult), mq.shift[l].eq(a.shift)]
        tie, down = self._ties(m, r_val)
        pipe_addr, pipe_val = r_addr, r_val
        for k in range(MBQM_LATENCY):
            na = Signal(aw, name=f"pa{k}", reset_less=True)
            nv = [Signal(signed(10), name=f"pv{k}_{l}", reset_less=True) for l in range(L)]
            nt = [Signal(name=f"pt{k}_{l}", reset_less=True) for l in range(L)]
            nd = [Signal(name=f"pd{k}_{l}", reset_less=True) for l in range(L)]
            m.d.sync += [na.eq(pipe_addr)] + [nv[l].eq(pipe_val[l]) for l in range(L)]
            m.d.sync += [nt[l].eq(tie[l]) for l in range(L)] + [nd[l].eq(down[l]) for l in range(L)]
            pipe_addr, pipe_val, tie, down = na, nv, nt, nd
        codes = []
        for l in range(L):
            # an exact tie that the rounding form sent to an odd value goes to the even neighbour
            y = Signal(signed(33), name=f"even{l}")
            m.d.comb += y.eq(Mux(tie[l] & mq.y[l][0], Mux(down[l], mq.y[l] + 1, mq.y[l] - 1), mq.y[l]))
            avg = clamp_code(m, y, a.zp_out, a.act_min, a.act_max, f"avg{l}")
            codes.append(Mux(is_max, pipe_val[l], avg))
        m.d.comb += [self.act_w.en.eq(mq.o_valid), self.act_w.addr.eq(pipe_addr),
                     self.act_w.data.eq(Cat(c[:8] for c in codes))]

        finished = Signal()
        m.d.comb += finished.eq(~running & ~s1_valid & ~r_valid & ~mq.busy)
        started = Signal()
        with m.If(self.start):
            m.d.sync += [running.eq(1), started.eq(1), oy.eq(0), ox.eq(0), w.eq(0), ky.eq(0), kx.eq(0)]
        with m.If(started & finished):
            m.d.sync += started.eq(0)
        m.d.comb += self.done.eq(started & finished)
        return m

    def _ties(self, m: Module, sums) -> tuple[list, list]:
        """Per lane, whether the window sum ``x`` entering the requantisation is an exact tie of it (``round_even``
        set): ``x * mult`` ends in ``1`` followed by ``30 - shift`` zeros, i.e. the trailing zeros of ``x`` are
        ``e = 30 - shift - tz(mult)`` (:func:`cimforge.golden.requant.exact_ties`), one mask compare per lane;
        and whether the form rounds that tie down (double rounding's RoundingDivideByPOT of a negative value)."""
        a = self.args
        tzm = Signal(6)  # trailing zeros of the multiplier (an instruction constant)
        m.d.comb += tzm.eq(32)
        for i in reversed(range(32)):
            with m.If(a.mult[i]):
                m.d.comb += tzm.eq(i)
        e = Signal(signed(8))
        m.d.comb += e.eq(30 - a.shift - tzm)
        armed = Signal()
        m.d.comb += armed.eq(a.round_even & (e >= 0) & (e <= 31) & (a.mult != 0))
        mask, one = Signal(33), Signal(33)
        m.d.comb += [one.eq(Const(1, 33) << e[:5]), mask.eq((one << 1) - 1)]
        double = self.cfg.fabric.rounding == "double"
        tie, down = [], []
        for l, x in enumerate(sums):
            t, d = Signal(name=f"tie{l}"), Signal(name=f"down{l}")
            m.d.comb += [t.eq(armed & ((x.as_unsigned() & mask) == one)),
                         d.eq((a.shift < 0) & (x < 0) if double else 0)]
            tie.append(t)
            down.append(d)
        return tie, down


class EwEngine(wiring.Component):
    """Executes ``EW``: one word per cycle, ``npos * cw`` words (see :func:`cimforge.gen.isa.ew_layout`).

    Members
    -------
    start, args, busy, done
        The shared engine members (:func:`~cimforge.gen.engine.engine_members`).
    a_rd, b_rd : In(memory.ReadPort.Signature(addr_width, 8 * lanes))
        Two activation memory read ports (operands a and b, synchronous).
    act_w : In(memory.WritePort.Signature(addr_width, 8 * lanes))
        Activation memory write port.
    """

    name = "ew"
    TIMING = EW_TIMING

    def __init__(self, cfg: CimConfig):
        self.cfg = cfg
        super().__init__({**engine_members(ew_layout(cfg)), "a_rd": _act_read(cfg), "b_rd": _act_read(cfg),
                          "act_w": _act_write(cfg)})

    def elaborate(self, platform):
        m = Module()
        a, L, aw = self.args, lanes(self.cfg), addr_width(self.cfg)
        running = Signal()
        p = Signal(POS)
        w = Signal(DIM)
        m.d.comb += self.busy.eq(running)
        m.d.comb += [self.a_rd.addr.eq(a.a_base + p * a.a_stride + w), self.b_rd.addr.eq(a.b_base + p * a.b_stride + w),
                     self.a_rd.en.eq(1), self.b_rd.en.eq(1)]
        with m.If(running):
            m.d.sync += w.eq(w + 1)
            with m.If(w == a.cw - 1):
                m.d.sync += [w.eq(0), p.eq(p + 1)]
                with m.If(p == a.npos - 1):
                    m.d.sync += running.eq(0)
        s1_valid = Signal()
        s1_addr = Signal(aw, reset_less=True)
        m.d.sync += [s1_valid.eq(running), s1_addr.eq(a.out_base + p * a.out_stride + w)]

        # stage 1: codes minus zero points, shifted for the input requantisation
        s2_valid = Signal()
        s2_addr = Signal(aw, reset_less=True)
        va = [Signal(signed(32), name=f"va{l}", reset_less=True) for l in range(L)]
        vb = [Signal(signed(32), name=f"vb{l}", reset_less=True) for l in range(L)]
        m.d.sync += [s2_valid.eq(s1_valid), s2_addr.eq(s1_addr)]
        for l in range(L):
            xa = _code(m, self.a_rd.data[8 * l:8 * l + 8], a.x_signed, f"xa{l}")
            xb = _code(m, self.b_rd.data[8 * l:8 * l + 8], a.x_signed, f"xb{l}")
            m.d.sync += [va[l].eq(xa - a.zp_a), vb[l].eq(Mux(a.has_b, xb - a.zp_b, 0))]

        # input requantisation of both operands (2*L lanes), bypassed when rq_in is clear
        m.submodules.mq_in = mi = Mbqm(2 * L, shift_width=6, rounding=self.cfg.fabric.rounding)
        m.d.comb += mi.i_valid.eq(s2_valid)
        for l in range(L):
            m.d.comb += [mi.x[l].eq(va[l] << a.ls), mi.mult[l].eq(a.mult_a), mi.shift[l].eq(a.shift_a),
                         mi.x[L + l].eq(vb[l] << a.ls), mi.mult[L + l].eq(a.mult_b), mi.shift[L + l].eq(a.shift_b)]
        byp = [va, vb]
        addr = s2_addr
        for k in range(MBQM_LATENCY):
            na = Signal(aw, name=f"ea{k}", reset_less=True)
            nb = [[Signal(signed(32), name=f"eb{k}_{j}_{l}", reset_less=True) for l in range(L)] for j in range(2)]
            m.d.sync += na.eq(addr)
            m.d.sync += [nb[j][l].eq(byp[j][l]) for j in range(2) for l in range(L)]
            addr, byp = na, nb
        s3_valid = Signal()
        s3_addr = Signal(aw, reset_less=True)
        ssum = [Signal(signed(32), name=f"ssum{l}", reset_less=True) for l in range(L)]
        m.d.sync += [s3_valid.eq(mi.o_valid), s3_addr.eq(addr)]
        for l in range(L):
            ya = Mux(a.rq_in, mi.y[l], byp[0][l])
            yb = Mux(a.rq_in, mi.y[L + l], byp[1][l])
            # a product of codes minus zero points: 10-bit operands (|x - zp| <= 255) make an exact 20-bit product
            prod = byp[0][l][:10].as_signed() * byp[1][l][:10].as_signed()
            m.d.sync += ssum[l].eq(Mux(a.mul, prod, ya + yb))

        # output requantisation (bypassed when rq_out is clear), zero point, clamp
        m.submodules.mq_out = mo = Mbqm(L, shift_width=6, rounding=self.cfg.fabric.rounding)
        m.d.comb += mo.i_valid.eq(s3_valid)
        for l in range(L):
            m.d.comb += [mo.x[l].eq(ssum[l]), mo.mult[l].eq(a.mult_o), mo.shift[l].eq(a.shift_o)]
        byp2, addr = ssum, s3_addr
        for k in range(MBQM_LATENCY):
            na = Signal(aw, name=f"oa{k}", reset_less=True)
            nb = [Signal(signed(32), name=f"ob{k}_{l}", reset_less=True) for l in range(L)]
            m.d.sync += [na.eq(addr)] + [nb[l].eq(byp2[l]) for l in range(L)]
            addr, byp2 = na, nb
        codes = []
        for l in range(L):
            y = Signal(signed(32), name=f"ey{l}")
            m.d.comb += y.eq(Mux(a.rq_out, mo.y[l], byp2[l]))
            codes.append(clamp_code(m, y, a.zp_out, a.act_min, a.act_max, f"ecode{l}"))
        m.d.comb += [self.act_w.en.eq(mo.o_valid), self.act_w.addr.eq(addr),
                     self.act_w.data.eq(Cat(c[:8] for c in codes))]

        started = Signal()
        finished = Signal()
        m.d.comb += finished.eq(~running & ~s1_valid & ~s2_valid & ~mi.busy & ~s3_valid & ~mo.busy)
        with m.If(self.start):
            m.d.sync += [running.eq(1), started.eq(1), p.eq(0), w.eq(0)]
        with m.If(started & finished):
            m.d.sync += started.eq(0)
        m.d.comb += self.done.eq(started & finished)
        return m
