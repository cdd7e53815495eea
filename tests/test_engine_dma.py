"""The DMA engine alone in Amaranth's simulator, on the external memory model: 2-D tiles of random sizes,
strides and corner addresses (4 KB boundaries, 256-beat bursts, the last words of each memory) in both
directions; the data checked against the ISS's ``DMA`` executor and every command's end cycle against the cost
model's rule (:func:`cimforge.gen.dma.dma_command_cycles`)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from cimforge.compiler.cost import INSTR_CYCLES, Timeline
from cimforge.compiler.iss import FabricModel
from cimforge.gen.axi import ext_bytes, ext_width
from cimforge.gen.dma import DmaEngine, dma_bursts
from cimforge.gen.extmem import ExtMemory
from cimforge.gen.isa import Opcode, dma_layout, lanes, pack_word
from cimforge.presets import get_preset

SEED = 11


def small(name: str, latency: int, interval: int):
    """A preset with small memories (fast to simulate) and the given external memory timing."""
    cfg = get_preset(name)
    return replace(cfg, fabric=replace(cfg.fabric, act_depth=1024, weight_depth=512, ext_depth=4096,
                                       ext_latency=latency, ext_interval=interval))


def run_dma(cfg, commands: list[dict], ext_init: list[int], amem_init: list[int], wmem_init: list[int]):
    """Queue ``commands`` back to back into a DmaEngine on an ExtMemory; return (ext, amem, wmem) after it is
    idle, the cycle each command was queued and the first cycle the engine was idle after them."""
    m = Module()
    m.submodules.dma = dma = DmaEngine(cfg)
    m.submodules.ext = ext = ExtMemory.for_config(cfg, ext_init)
    f = cfg.fabric
    mems = {"amem": memory.Memory(shape=unsigned(len(dma.amem_r.data)), depth=f.act_depth, init=amem_init),
            "wmem": memory.Memory(shape=unsigned(len(dma.wmem_r.data)), depth=f.weight_depth, init=wmem_init)}
    for name, mem in mems.items():
        m.submodules[name] = mem
        rp, wp = mem.read_port(), mem.write_port()
        user_r, user_w = getattr(dma, f"{name}_r"), getattr(dma, f"{name}_w")
        m.d.comb += [rp.addr.eq(user_r.addr), rp.en.eq(user_r.en), user_r.data.eq(rp.data),
                     wp.addr.eq(user_w.addr), wp.data.eq(user_w.data), wp.en.eq(user_w.en)]
    wiring.connect(m, dma.axi, ext.axi)
    lay = dma_layout(cfg)
    out = {}

    async def bench(ctx):
        cycle, queued = 0, []
        pending = list(commands)
        while True:
            ctx.set(dma.cmd.valid, bool(pending))
            if pending:
                ctx.set(dma.cmd.payload.as_value(), pack_word(lay, pending[0]))
            ready, busy = ctx.get(dma.cmd.ready), ctx.get(dma.busy)
            if not pending and not busy:
                break
            await ctx.tick()
            if pending and ready:
                pending.pop(0)
                queued.append(cycle)
            cycle += 1
            if cycle > 200000:
                raise AssertionError("DMA never went idle")
        out["ext"] = [ctx.get(ext.mem.data[i]) for i in range(f.ext_depth)]
        out["amem"] = [ctx.get(mems["amem"].data[i]) for i in range(f.act_depth)]
        out["wmem"] = [ctx.get(mems["wmem"].data[i]) for i in range(f.weight_depth)]
        out["queued"] = queued
        out["idle"] = cycle
        out["error"] = ctx.get(dma.error)  # the model answers OKAY with ID 0
    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def predicted(cfg, commands: list[dict]) -> tuple[list[int], int]:
    """The cost model's rules (``INSTR_CYCLES[DMA]`` and ``[DSYNC]``) for commands presented back to back, each
    the cycle after its predecessor was queued: (queueing cycle of each, first idle cycle)."""
    tl = Timeline(SimpleNamespace(cfg=cfg))
    queued, e = [], 0
    for cmd in commands:
        queued.append(INSTR_CYCLES[Opcode.DMA](tl, e, cmd, 0))
        e = queued[-1] + 1
    return queued, INSTR_CYCLES[Opcode.DSYNC](tl, e, None, 0)


def random_commands(cfg, rng, n: int) -> list[dict]:
    """Random tiles inside the memories, with a bias to corner addresses (the end of a memory, just before a
    4 KB boundary) and to rows longer than 256 beats."""
    f = cfg.fabric
    per_boundary = 4096 // ext_bytes(cfg)
    cmds = []
    for _ in range(n):
        wmem = int(rng.integers(2))
        depth = f.weight_depth if wmem else f.act_depth
        rows = int(rng.integers(0, 4)) if rng.random() < 0.9 else 0
        length = int(rng.choice([1, 2, 7, 255, 256, 257, 300])) if rng.random() < 0.5 else int(rng.integers(0, 40))
        length = min(length, depth // max(rows, 1))
        stride = length + int(rng.integers(0, 3))
        ext_stride = length + int(rng.integers(0, 50))
        if rows > 1:  # the tile fits both memories
            rows = min(rows, (depth - length) // max(stride, 1) + 1, (f.ext_depth - length) // max(ext_stride, 1) + 1)
        span_on = (rows - 1) * stride + length if rows else 0
        span_ext = (rows - 1) * ext_stride + length if rows else 0
        if rng.random() < 0.3:
            addr = depth - span_on  # ends on the memory's last word
        else:
            addr = int(rng.integers(0, depth - span_on + 1))
        ext = int(rng.integers(0, f.ext_depth - span_ext + 1))
        if rng.random() < 0.4 and span_ext:
            near = (ext // per_boundary + 1) * per_boundary - int(rng.integers(1, 4))  # just before a boundary
            ext = max(0, min(f.ext_depth - span_ext, near))
        addr, ext = min(addr, depth - 1), min(ext, f.ext_depth - 1)  # an empty tile still needs a valid address
        cmds.append({"store": int(rng.integers(2)), "wmem": wmem, "ext": ext, "addr": addr, "rows": rows,
                     "len": length, "ext_stride": ext_stride, "stride": stride})
    return cmds


def test_bursts_split_at_256_beats_and_4k():
    cfg = small("default", 5, 1)
    per = 4096 // ext_bytes(cfg)  # 512 beats of 8 bytes
    assert dma_bursts(cfg, 0, 600) == [256, 256, 88]
    assert dma_bursts(cfg, per - 3, 10) == [3, 7]
    assert dma_bursts(cfg, per - 300, 600) == [256, 44, 256, 44]
    assert dma_bursts(cfg, 0, 0) == []


@pytest.mark.parametrize("preset,latency,interval", [("default", 5, 1), ("default", 1, 3), ("tiny", 17, 2),
                                                     ("isscc22", 2, 1)])
def test_dma_random_tiles(preset, latency, interval):
    """Random commands of both directions and memories, queued back to back: memories = ISS, idle cycle = cost
    rule."""
    cfg = small(preset, latency, interval)
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}, {preset}, latency {latency}, interval {interval}")
    f = cfg.fabric
    act_bits, w_bits = 8 * lanes(cfg), cfg.macro.cols

    def words(n, bits):
        return [int.from_bytes(rng.bytes(bits // 8), "little") for _ in range(n)]
    ext_init, amem_init, wmem_init = (words(f.ext_depth, ext_width(cfg)), words(f.act_depth, act_bits),
                                      words(f.weight_depth, w_bits))
    cmds = random_commands(cfg, rng, 12)  # more than the queue holds: queueing waits for room
    got = run_dma(cfg, cmds, ext_init, amem_init, wmem_init)

    model = FabricModel(cfg)
    model.amem[:] = amem_init
    model.wmem[:] = wmem_init
    model.ext = dict(enumerate(ext_init))
    for c in cmds:
        model._dma(c)
    assert got["amem"] == model.amem
    assert got["wmem"] == model.wmem
    assert got["ext"] == [model.ext.get(i, 0) for i in range(f.ext_depth)]
    assert (got["queued"], got["idle"]) == predicted(cfg, cmds)
    assert got["error"] == 0
