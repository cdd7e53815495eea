"""cocotb test of a graph algorithm on the generated fabric in a closed loop (:func:`cimforge.graph.fabric.host_loop`).

The job comes as a pickle in ``CIMFORGE_GRAPH_JOB`` (written by :func:`cimforge.graph.fabric.run_on_fabric`):
the compiled plan, the source, the algorithm's options and the host map. The host loop runs here, inside the
simulator's Python, between runs: the simulator does not advance while the host reads the fabric's words and
builds the next round, so the fabric's cycles hold none of the host's work. Memories are written and read by
backdoor (:class:`cimforge.sim.fabric_tb.Host`), runs are started with a write of CSR ``CTRL`` over the
Wishbone port and awaited with one trigger (``done``, ``error`` or a timeout), so the simulator runs freely in
between. The loop's record goes back as a pickle.
"""

from __future__ import annotations

import os
import pickle

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer

from ..sim.fabric_tb import PERIOD_NS, Host
from .fabric import host_loop


class RtlDevice:
    """:func:`~cimforge.graph.fabric.host_loop`'s device on the simulated fabric."""

    def __init__(self, dut, job: dict):
        self.dut, self.job = dut, job
        self.host = Host(dut, job)
        self.csr = job["csr"]

    async def run(self, gp, timeout: int):
        """Write the run's program, weight rows and activation words, start it, wait for ``END``; its
        ``CYCLES`` and the retire stamps of its trace."""
        h = self.host
        await h.write_mem("imem", 0, gp.code)
        await h.write_mem("wmem", 0, gp.wmem)
        mem = h.mems.amem
        for a, w in gp.writes.items():
            mem[a].value = w
        await h.bus.write(h.addr("csr", self.csr["START_PC"]), 0)
        await h.bus.write(h.addr("csr", self.csr["CTRL"]), 1)
        timer = Timer(timeout * PERIOD_NS, unit="ns")
        fired = await First(RisingEdge(self.dut.done), RisingEdge(self.dut.error), timer)
        if fired is timer:
            pc = await h.csr("PC")
            raise RuntimeError(f"no END within {timeout} cycles: {gp.describe(pc)}")
        if unpack_error(await h.csr("STATUS")):
            raise RuntimeError(f"the controller stopped with an error at {gp.describe(await h.csr('PC'))}")
        cycles = await h.csr("CYCLES")
        n = await h.csr("TRACE_COUNT")
        trace = h.mems.trace
        return cycles, [int(trace[i].value) & 0xFFFFFFFF for i in range(n)]

    async def read(self, base: int, count: int) -> list[int]:
        mem = self.host.mems.amem
        return [int(mem[base + i].value) for i in range(count)]


def unpack_error(status: int) -> bool:
    from ..gen.isa import status_layout, unpack_word
    return bool(unpack_word(status_layout(), status)["error"])


@cocotb.test()
async def graph_closed_loop(dut):
    """Reset, run the host loop, write its record (scored by the caller)."""
    with open(os.environ["CIMFORGE_GRAPH_JOB"], "rb") as fh:
        job = pickle.load(fh)
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    dev = RtlDevice(dut, job)
    dev.host.bus.idle()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    assert await dev.host.csr("ID") == job["magic"], "ID register mismatch: is this the fabric?"
    rec = await host_loop(job["plan"], dev, job["source"], **job["options"])
    with open(job["results"], "wb") as fh:
        pickle.dump(rec, fh)
