"""Stimulus, driver and scoring for the macro, independent of the simulator that runs it.

:func:`actions` yields a reproducible sequence of writes, read-backs and operations (corners first, then random
ones); each operation carries its :class:`Expected` result from the golden model, computed at the moment it is
issued. :func:`check_result` compares what the RTL produced, value and cycle, and raises a
:class:`MismatchError` naming the macro, operation, lane, columns, tile and cycle. :class:`MacroDriver` plays
the actions through any simulator that offers ``tick()`` (to the point after the next rising edge, where outputs
are settled), ``get(port)`` and ``set(port, value)`` on the macro's Verilog port names: cocotb
(:mod:`cimforge.sim.macro_tb`) and Amaranth's simulator (the fast unit tests).
"""

from __future__ import annotations

from collections import deque
import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

import numpy as np

from amaranth.hdl import Shape
from amaranth.lib import wiring

from ..bits import exact_log2
from ..config import WEIGHT_BITS, MacroConfig
from ..gen.isa import pack_word, unpack_word
from ..gen.layouts import BitOp, MacroMode, macro_op_fields, macro_op_layout
from ..gen.macro import CimMacro
from ..golden.macro import LATENCY, MacroModel, int_range, op_cycles

__all__ = ["macro_ports", "MACRO_PORTS", "GEOMETRY_SEED", "N_GEOMETRIES", "random_geometries", "Expected", "MismatchError", "MacroDriver", "actions", "check_result", "mac_op", "bitwise_op"]


@lru_cache(maxsize=None)
def _macro_signature(cfg: MacroConfig) -> wiring.Signature:
    return CimMacro.signature_for(cfg)


def macro_ports(cfg: MacroConfig) -> dict[str, tuple[wiring.Flow, int]]:
    """The macro's Verilog ports other than the clock and reset, derived from its signature: Verilog name
    (members joined by ``__``, as Amaranth names them: ``op__payload``) -> (flow, width)."""
    return {"__".join(map(str, path)): (member.flow, Shape.cast(member.shape).width)
            for path, member in _macro_signature(cfg).members.flatten() if member.is_port}


#: The macro's Verilog ports (the only signals a bench touches): the clock, the reset and its signature's.
MACRO_PORTS = ("clk", "rst", *macro_ports(MacroConfig()))

#: Seed and size of the random geometry set the benches verify.
GEOMETRY_SEED = 20261124
N_GEOMETRIES = 30


def random_geometries(seed: int = GEOMETRY_SEED, n: int = N_GEOMETRIES) -> list[MacroConfig]:
    """``n`` distinct geometries, the extremes first, then random ones."""
    rng = np.random.default_rng(seed)
    cfgs = [MacroConfig(rows=1, pages=1, cols=8), MacroConfig(rows=64, pages=16, cols=128),
            MacroConfig(rows=63, pages=3, cols=8, max_wb=1), MacroConfig(rows=17, pages=16, cols=24, max_ab=3)]
    seen = {dataclasses.astuple(c) for c in cfgs}
    while len(cfgs) < n:
        cfg = MacroConfig(rows=int(rng.integers(1, 65)), pages=int(rng.integers(1, 17)),
                          cols=8 * int(rng.integers(1, 17)), max_wb=int(rng.choice([1, 2, 4, 8, 8, 8])),
                          max_ab=int(rng.choice([8, 8, 8, 1, 2, 5])))
        if dataclasses.astuple(cfg) not in seen:
            seen.add(dataclasses.astuple(cfg))
            cfgs.append(cfg)
    return cfgs


class MismatchError(AssertionError):
    """The RTL disagreed with the golden model; the message says where."""


@dataclass
class Expected:
    """One operation as issued, with the golden model's answer."""

    index: int
    fields: dict[str, Any]
    cycles: int                       #: compute cycles the RTL must take
    skipped: int = 0                  #: activation bit planes skipped
    y: np.ndarray | None = None       #: MAC: expected y[j], j < cols // wb
    wb: int = 8
    signed_result: bool = True
    bits: int = 0                     #: BITWISE: result word
    pops: np.ndarray | None = None    #: BITWISE: popcount per tile
    total: int = 0
    accept_cycle: int = -1            #: set by the driver

    def describe(self) -> str:
        f = self.fields
        if f["mode"] == MacroMode.BITWISE:
            return f"BITWISE {BitOp(f['bop']).name} page={f['page']} row={f['row']}"
        return (f"MAC page={f['page']} wb={1 << f['wb_log2']} ab={f['ab_m1'] + 1} "
                f"w_{'s' if f['w_signed'] else 'u'} x_{'s' if f['x_signed'] else 'u'}{' skip' if f['skip'] else ''}")


def mac_op(cfg: MacroConfig, model: MacroModel, index: int, x: np.ndarray, page: int, wb: int, ab: int,
           w_signed: bool, x_signed: bool, skip: bool) -> Expected:
    """A MAC operation and its expected result under the model's current contents."""
    y = model.mac(x, page, wb, ab, w_signed, x_signed)
    n = op_cycles(ab, x, skip)
    fields = macro_op_fields(cfg, mode=MacroMode.MAC, page=page, wb=wb, ab=ab, w_signed=w_signed,
                             x_signed=x_signed, skip=skip, x=x)
    return Expected(index, fields, cycles=n, skipped=ab - n if skip else 0, y=y, wb=wb,
                    signed_result=w_signed or x_signed)


def bitwise_op(cfg: MacroConfig, model: MacroModel, index: int, page: int, row: int, word: int,
               op: BitOp) -> Expected:
    bits, pops, total = model.bitwise(page, row, word, op.name)
    # wb = ab = 1, unsigned: the fields a BITWISE operation ignores are all zero
    fields = macro_op_fields(cfg, mode=MacroMode.BITWISE, page=page, row=row, wb=1, ab=1, w_signed=False,
                             x_signed=False, bop=op, x=[0] * cfg.rows, word=word)
    return Expected(index, fields, cycles=1, bits=bits, pops=pops, total=total)


def check_result(cfg: MacroConfig, exp: Expected, cycle: int, got: dict[str, int], label: str) -> None:
    """Compare one result (raw port integers ``y``, ``bits``, ``pop``, ``total``) with ``exp``.

    ``cycle`` counts falling edges; the operation was presented at falling edge ``exp.accept_cycle`` and
    accepted at the next rising edge, so its result is due ``cycles + LATENCY + 1`` falling edges later.
    """
    due = exp.accept_cycle + exp.cycles + LATENCY + 1
    where = f"{label}, op #{exp.index} ({exp.describe()}), result at cycle {cycle}"
    if cycle != due:
        raise MismatchError(f"{where}: expected the result at cycle {due} ({exp.cycles} compute cycles + latency "
                            f"{LATENCY} after acceptance at cycle {exp.accept_cycle + 1}), got it at {cycle}")
    members = _macro_signature(cfg).members
    if exp.fields["mode"] == MacroMode.BITWISE:
        pops = unpack_word(members["res_pop"].shape, got["pop"])
        if (got["bits"] & ((1 << cfg.cols) - 1)) != exp.bits:
            diff = (got["bits"] ^ exp.bits) & ((1 << cfg.cols) - 1)
            col = exact_log2(diff & -diff)  # the lowest differing column
            raise MismatchError(f"{where}: result word differs first at column {col} (tile "
                                f"{col // cfg.tile_cols}): got {got['bits']:#x}, expected {exp.bits:#x}")
        if pops != list(exp.pops):
            tile = next(i for i, (a, b) in enumerate(zip(pops, exp.pops)) if a != b)
            raise MismatchError(f"{where}: popcount of tile {tile} is {pops[tile]}, expected {exp.pops[tile]}")
        if got["total"] != exp.total:
            raise MismatchError(f"{where}: total popcount {got['total']}, expected {exp.total}")
        return
    width = cfg.acc_width
    lanes = unpack_word(members["res_y"].shape, got["y"])  # unsigned lanes, signed below if the result is
    n = cfg.cols // exp.wb
    vals = [(v - (1 << width)) if exp.signed_result and v >> (width - 1) else v for v in lanes[:n]]
    bad = [j for j in range(n) if vals[j] != int(exp.y[j])]
    if bad:
        j = bad[0]
        cols = f"{j * exp.wb}..{(j + 1) * exp.wb - 1}"
        raise MismatchError(f"{where}: lane y[{j}] (columns {cols}, tile {j * exp.wb // cfg.tile_cols}) is "
                            f"{vals[j]}, expected {int(exp.y[j])}; {len(bad)} of {n} lanes differ")
    stray = [j for j in range(n, cfg.cols) if lanes[j]]
    if stray:
        raise MismatchError(f"{where}: unused lane {stray[0]} is {lanes[stray[0]]}, expected 0")


def _weights_word(cfg: MacroConfig, wb: int, value: int) -> int:
    """A row word holding ``value`` in every one of its ``cols // wb`` weights."""
    v = value & ((1 << wb) - 1)
    return sum(v << (j * wb) for j in range(cfg.cols // wb))


def _rand_word(rng: np.random.Generator, cols: int) -> int:
    return int("".join("1" if b else "0" for b in rng.integers(0, 2, cols)), 2)


def _random_x(rng: np.random.Generator, rows: int, ab: int, signed: bool) -> np.ndarray:
    """Random activations; often with zero bit planes and zero rows, so that skipping has work to do."""
    u = rng.integers(0, 1 << ab, rows)
    r = rng.random()
    if r < 0.3:
        keep = rng.integers(0, 1 << ab)  # a random subset of planes
        u &= keep
    elif r < 0.4:
        u[rng.random(rows) < 0.7] = 0
    if signed:
        u = np.where(u >= (1 << (ab - 1)), u - (1 << ab), u)
    return u.astype(np.int64)


def actions(cfg: MacroConfig, model: MacroModel, seed: int, n_ops: int) -> Iterator[tuple]:
    """Yield ``("write", page, row, word)``, ``("read", page, row)``, ``("op", Expected)`` and
    ``("idle", cycles)``. The consumer applies writes to ``model`` (and to the DUT) before resuming, so every
    operation's expectation sees exactly the writes issued before it.
    """
    rng = np.random.default_rng(seed)
    index = 0
    wbs = [b for b in WEIGHT_BITS if b <= cfg.max_wb]
    full = (1 << cfg.cols) - 1

    def fill(page: int) -> Iterator[tuple]:
        for row in range(cfg.rows):
            yield ("write", page, row, _rand_word(rng, cfg.cols))

    # fill every page (row 0 of page 0 all zeros, last row of the last page all ones: corner words)
    for page in range(cfg.pages):
        yield from fill(page)
    yield ("write", 0, 0, 0)
    yield ("write", cfg.pages - 1, cfg.rows - 1, full)
    cells = [(p, r) for p in range(cfg.pages) for r in range(cfg.rows)]
    sample = cells if len(cells) <= 64 else [cells[0], cells[-1]] + [cells[i] for i in
                                                                     rng.choice(len(cells), 62, replace=False)]
    for p, r in sample:
        yield ("read", p, r)

    # corners, for every weight precision: most negative weights and activations on all rows, unsigned
    # maxima, all-zero and all-one activation bit planes (with and without skipping)
    q = cfg.pages - 1
    ab = cfg.max_ab
    for wb in wbs:
        lo_w = int_range(wb, True)[0]
        for row in range(cfg.rows):
            yield ("write", q, row, _weights_word(cfg, wb, lo_w))
        lo_x = int_range(ab, True)[0]
        for x, ws, xs, skip in [
            (np.full(cfg.rows, lo_x), True, True, False),            # (-2^(ab-1)) * (-2^(wb-1)), all rows
            (np.full(cfg.rows, lo_x), True, True, True),
            (np.zeros(cfg.rows, np.int64), True, True, True),        # every plane zero: one cycle
            (np.zeros(cfg.rows, np.int64), True, False, False),
            (np.full(cfg.rows, -1), True, True, True),               # every plane all ones: nothing skipped
            (np.full(cfg.rows, (1 << ab) - 1), False, False, False),  # unsigned maxima
            (np.full(cfg.rows, (1 << ab) - 1), True, False, True),
        ]:
            yield ("op", mac_op(cfg, model, index, x, q, wb, ab, ws, xs, skip))
            index += 1
        for row in range(cfg.rows):  # all-ones weights: the largest unsigned and -1 signed
            yield ("write", q, row, full)
        for ws, xs in [(False, False), (True, True), (True, False), (False, True)]:
            x = np.full(cfg.rows, int_range(ab, xs)[1 if not xs else 0])
            yield ("op", mac_op(cfg, model, index, x, q, wb, ab, ws, xs, False))
            index += 1
    yield from fill(q)

    # bitwise operations, every op, including all-zero and all-one operands
    for op in BitOp:
        for word in (0, full, _rand_word(rng, cfg.cols)):
            p, r = int(rng.integers(cfg.pages)), int(rng.integers(cfg.rows))
            yield ("op", bitwise_op(cfg, model, index, p, r, word, op))
            index += 1

    # random operations with writes, bitwise operations and idle gaps interleaved
    for _ in range(n_ops):
        u = rng.random()
        if u < 0.12:
            p, r = int(rng.integers(cfg.pages)), int(rng.integers(cfg.rows))
            yield ("write", p, r, _rand_word(rng, cfg.cols))
        elif u < 0.17:
            op = BitOp(int(rng.integers(len(BitOp))))
            word = _rand_word(rng, cfg.cols)
            yield ("op", bitwise_op(cfg, model, index, int(rng.integers(cfg.pages)), int(rng.integers(cfg.rows)),
                                    word, op))
            index += 1
        elif u < 0.2:
            yield ("idle", int(rng.integers(1, 4)))
        else:
            wb = wbs[int(rng.integers(len(wbs)))]
            ab = int(rng.integers(1, cfg.max_ab + 1))
            ws, xs, skip = (bool(b) for b in rng.integers(0, 2, 3))
            x = _random_x(rng, cfg.rows, ab, xs)
            yield ("op", mac_op(cfg, model, index, x, int(rng.integers(cfg.pages)), wb, ab, ws, xs, skip))
            index += 1
    for p, r in sample[:16]:
        yield ("read", p, r)


#: Cycles an operation may wait for ready or for its result before the bench declares the DUT hung.
HANG_CYCLES = 200


class MacroDriver:
    """Drives one macro (or the selected macro of a farm) and scores its results in order."""

    def __init__(self, io, cfg: MacroConfig, label: str, sel: int | None = None):
        self.io, self.cfg, self.label, self.sel = io, cfg, label, sel
        self.layout = macro_op_layout(cfg)
        self.model = MacroModel(cfg)
        self.cycle = 0
        self.inflight: deque[Expected] = deque()
        self.checked = 0
        self.compute_cycles = 0
        self.skipped_planes = 0

    async def tick(self) -> None:
        """Advance to the next falling edge, score any result that appeared, and count the cycle."""
        await self.io.tick()
        self.cycle += 1
        if self.io.get("res_valid") == 1:
            if not self.inflight:
                raise MismatchError(f"{self.label}: res_valid at cycle {self.cycle} with no operation in flight")
            exp = self.inflight.popleft()
            check_result(self.cfg, exp, self.cycle, self._read_result(), self.label)
            self.checked += 1
        elif self.inflight and self.cycle - self.inflight[0].accept_cycle > HANG_CYCLES:
            e = self.inflight[0]
            raise MismatchError(f"{self.label}: no result {HANG_CYCLES} cycles after op #{e.index} ({e.describe()}) "
                                f"was accepted at cycle {e.accept_cycle}: the macro hung")

    def _read_result(self) -> dict[str, int]:
        return {"y": self.io.get("res_y"), "bits": self.io.get("res_bits"), "pop": self.io.get("res_pop"),
                "total": self.io.get("res_total")}

    async def drain(self) -> None:
        while self.inflight:
            await self.tick()

    async def write(self, page: int, row: int, word: int) -> None:
        io = self.io
        io.set("mem_we", 1), io.set("mem_page", page), io.set("mem_row", row), io.set("mem_wdata", word)
        await self.tick()
        io.set("mem_we", 0)
        self.model.write(page, row, word)

    async def read(self, page: int, row: int) -> None:
        await self.drain()  # the read port is shared with BITWISE operands
        io = self.io
        io.set("mem_re", 1), io.set("mem_page", page), io.set("mem_row", row)
        await self.tick()
        io.set("mem_re", 0)
        await self.tick()
        got = io.get("mem_rdata") & ((1 << self.cfg.cols) - 1)
        exp = self.model.read(page, row)
        if got != exp:
            bad = [c for c in range(self.cfg.cols) if (got ^ exp) >> c & 1]
            raise MismatchError(f"{self.label}: read-back at cycle {self.cycle} of page {page} row {row}: "
                                f"got {got:#x}, wrote {exp:#x}; columns {bad[:8]} differ")

    async def op(self, exp: Expected) -> None:
        io = self.io
        io.set("op__payload", pack_word(self.layout, exp.fields))
        io.set("op__valid", 1)
        waited = 0
        while io.get("op__ready") != 1:
            await self.tick()
            waited += 1
            if waited > HANG_CYCLES:
                raise MismatchError(f"{self.label}: op #{exp.index} ({exp.describe()}) not accepted in "
                                    f"{HANG_CYCLES} cycles (cycle {self.cycle}): the macro hung")
        exp.accept_cycle = self.cycle  # accepted at the coming rising edge
        self.inflight.append(exp)
        self.compute_cycles += exp.cycles
        self.skipped_planes += exp.skipped
        await self.tick()
        io.set("op__valid", 0)

    async def run(self, plan: dict) -> None:
        if self.sel is not None:
            self.io.set("sel", self.sel)
        for kind, *args in actions(self.cfg, self.model, plan["seed"], plan["n_ops"]):
            if kind == "write":
                page = args[0]
                # never overwrite a page an operation in flight still reads
                while any(e.fields["page"] == page for e in self.inflight):
                    await self.tick()
                await self.write(*args)
            elif kind == "read":
                await self.read(*args)
            elif kind == "op":
                await self.op(args[0])
            elif kind == "idle":
                for _ in range(args[0]):
                    await self.tick()
        await self.drain()
        for _ in range(LATENCY + 2):  # nothing may follow the last result
            await self.tick()


class AmaranthIO:
    """The driver's port access over Amaranth's simulator (``add_testbench`` context): a tick is a rising edge,
    after which outputs are settled; Verilog port names map to the component's members (``op__payload`` ->
    ``op.payload``)."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut
        self._ports: dict[str, object] = {}

    def _port(self, name: str):
        port = self._ports.get(name)
        if port is None:
            port = self.dut
            for part in name.split("__"):
                port = getattr(port, part)
            port = self._ports[name] = port.as_value() if hasattr(port, "as_value") else port
        return port

    async def tick(self) -> None:
        await self.ctx.tick()

    def get(self, name: str) -> int:
        return int(self.ctx.get(self._port(name)))

    def set(self, name: str, value: int) -> None:
        self.ctx.set(self._port(name), value)
