"""The external memory model (gen/extmem.py) alone in Amaranth's simulator, driven by a minimal AXI4 master:
its documented timing (read beats at ``t + latency + k * interval``, write beats accepted from ``t + 1`` every
``interval`` cycles, the response ``latency`` cycles after the last beat), ``wstrb``, back-pressure on R, and
backdoor access."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from amaranth.sim import Simulator

from cimforge.gen.axi import axi4_signature
from cimforge.gen.extmem import ExtMemory


def simulate(ext: ExtMemory, bench) -> None:
    sim = Simulator(ext)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("latency,interval", [(1, 1), (4, 1), (3, 3)])
def test_read_burst_timing_and_data(latency, interval):
    ext = ExtMemory(64, 32, latency, interval, init=[1000 + i for i in range(64)])
    got = []

    async def bench(ctx):
        axi = ext.axi
        ctx.set(axi.arvalid, 1)
        ctx.set(axi.araddr, 5 * 4)
        ctx.set(axi.arlen, 3)
        ctx.set(axi.rready, 1)
        assert ctx.get(axi.arready)
        await ctx.tick()  # handshake in cycle 0
        ctx.set(axi.arvalid, 0)
        for cycle in range(1, 40):
            if ctx.get(axi.rvalid):
                got.append((cycle, ctx.get(axi.rdata), ctx.get(axi.rlast)))
            await ctx.tick()
    simulate(ext, bench)
    assert got == [(latency + k * interval, 1005 + k, int(k == 3)) for k in range(4)]


def test_read_beat_held_without_rready():
    ext = ExtMemory(16, 32, 2, 1, init=list(range(16)))
    seen = []

    async def bench(ctx):
        axi = ext.axi
        ctx.set(axi.arvalid, 1)
        ctx.set(axi.arlen, 1)
        await ctx.tick()
        ctx.set(axi.arvalid, 0)
        for cycle in range(1, 12):
            ctx.set(axi.rready, cycle >= 6)
            if ctx.get(axi.rvalid) and cycle >= 6:
                seen.append((cycle, ctx.get(axi.rdata)))
            await ctx.tick()
    simulate(ext, bench)
    assert seen == [(6, 0), (7, 1)]


@pytest.mark.parametrize("latency,interval", [(1, 1), (5, 2)])
def test_write_burst_timing_strobes_and_backdoor(latency, interval):
    ext = ExtMemory(32, 32, latency, interval, init=[0x11111111] * 32)
    accepted, resp = [], []

    async def bench(ctx):
        axi = ext.axi
        ctx.set(axi.awvalid, 1)
        ctx.set(axi.awaddr, 8 * 4)
        ctx.set(axi.awlen, 2)
        ctx.set(axi.bready, 1)
        await ctx.tick()  # handshake in cycle 0
        ctx.set(axi.awvalid, 0)
        k = 0
        for cycle in range(1, 40):
            if k < 3:
                ctx.set(axi.wvalid, 1)
                ctx.set(axi.wdata, 0xA0A0A0A0 + k)
                ctx.set(axi.wstrb, 0b0011 if k == 1 else 0b1111)
                ctx.set(axi.wlast, k == 2)
            else:
                ctx.set(axi.wvalid, 0)
            if k < 3 and ctx.get(axi.wready):
                accepted.append(cycle)
                k += 1
            if ctx.get(axi.bvalid):
                resp.append(cycle)
            await ctx.tick()
        assert [ctx.get(ext.mem.data[i]) for i in range(7, 12)] == [
            0x11111111, 0xA0A0A0A0, 0x1111A0A1, 0xA0A0A0A2, 0x11111111]
    simulate(ext, bench)
    assert accepted == [1 + k * interval for k in range(3)]
    assert resp == [accepted[-1] + latency]


def test_signature_checks_the_data_width():
    assert axi4_signature(64).members["wstrb"].shape == 8 and axi4_signature(64).members["wdata"].shape == 64
    with pytest.raises(ValueError, match="AXI data width 48"):
        axi4_signature(48)
    with pytest.raises(ValueError, match="latency 0"):
        ExtMemory(16, 32, 0, 1)


# -- the Verilog storage cell and its file backdoor (what the cocotb benches drive) --------------------------------

STORE_TB = """
module tb;
  reg clk = 0;
  always #5 clk = ~clk;
  reg [5:0] raddr = 0, waddr = 0;
  reg [31:0] wdata = 0;
  reg [3:0] wen = 0;
  wire [31:0] rdata;
  t_ext_store s(.clk(clk), .raddr(raddr), .rdata(rdata), .waddr(waddr), .wdata(wdata), .wen(wen));
  initial begin
    @(negedge clk);
    raddr = 3;
    #1 $display("init %h", rdata);
    s.bd_load = 1;
    @(negedge clk);
    s.bd_load = 0;
    waddr = 9; wdata = 32'hA0A0A0A0; wen = 4'b0011;
    @(negedge clk);
    wen = 0;
    raddr = 4;
    #1 $display("loaded %h", rdata);
    s.bd_lo = 2; s.bd_hi = 12; s.bd_dump = 1;
    @(negedge clk);
    s.bd_dump = 0;
    $finish;
  end
endmodule
"""


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_verilog_store_loads_and_dumps_files(tmp_path):
    """The cell of ``ExtMemory(..., library=...)`` in Icarus: initial contents, a sparse ``$readmemh`` load (only
    the ``@address`` runs of the file change), a byte-strobed bus write after it, and a ``$writememh`` dump of a
    range, read back with the runner's parser."""
    from amaranth.back import verilog

    from cimforge.gen.library import VerilogLibrary
    from cimforge.sim.fabric_runner import _hex_file, _read_hex_dump

    init = [0x11111111] * 64
    init[3] = 0xCAFE
    lib = VerilogLibrary(prefix="t_")
    text = verilog.convert(ExtMemory(64, 32, 1, 1, init=init, library=lib), name="t_ext", emit_src=False)
    (tmp_path / "design.v").write_text(lib.verilog() + text + STORE_TB)
    src = _hex_file(tmp_path, {4: 0xDEADBEEF, 5: 1, 9: 0x12345678})
    out = tmp_path / "out.hex"
    subprocess.run(["iverilog", "-o", str(tmp_path / "sim"), "-s", "tb", str(tmp_path / "design.v")], check=True)
    run = subprocess.run(["vvp", "-n", str(tmp_path / "sim"), f"+cimforge_ext_in={src}", f"+cimforge_ext_out={out}"],
                         check=True, capture_output=True, text=True)
    assert "init 0000cafe" in run.stdout and "loaded deadbeef" in run.stdout
    want = {a: init[a] for a in range(2, 13)} | {4: 0xDEADBEEF, 5: 1, 9: 0x1234A0A0}
    assert _read_hex_dump(out, 2, 11) == want


def test_hex_dump_parser_names_bad_words(tmp_path):
    """An undefined word in a dump (Icarus's ``x``) and a short dump are errors naming the address."""
    from cimforge.sim.fabric_runner import FabricError, _read_hex_dump

    dump = tmp_path / "d.hex"
    dump.write_text("// 0x00000010\n00000001\nxxxxxxxx\n")
    with pytest.raises(FabricError, match="word 0x11 is undefined"):
        _read_hex_dump(dump, 0x10, 2)
    with pytest.raises(FabricError, match="2 words read .* expected 3"):
        _read_hex_dump(dump, 0x10, 3)


def test_external_programs_are_refused_on_icarus():
    """A program in external-memory mode is refused on Icarus by name before any build (it does not finish
    there), instead of waiting for the timeout."""
    import numpy as np

    from cimforge.compiler.compile import compile_graph
    from cimforge.errors import UserError
    from cimforge.presets import get_preset
    from cimforge.sim.fabric_runner import run_fabric
    from cimforge.sim.random_layers import random_conv_graph

    cfg = get_preset("tiny")
    g = random_conv_graph(np.random.default_rng(5), cfg, cin=3, kmax=2)
    prog = compile_graph(g, cfg, memory="external")
    t = g.inputs[0]
    with pytest.raises(UserError, match="sim='icarus': .* external memory .* allowed sim='verilator'"):
        run_fabric(cfg, prog, [{t.name: np.zeros((1, *t.shape), t.dtype)}], sim="icarus")
