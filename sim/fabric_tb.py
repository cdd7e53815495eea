"""cocotb test of the generated fabric: loads a compiled program, runs it, and dumps what the host can see.

The job comes as JSON in ``CIMFORGE_FABRIC_JOB`` (written by :func:`cimforge.sim.fabric_runner.run_fabric`):
memory images, then a list of runs, each with the activation words to write before starting and the address
ranges to read back afterwards. Everything is scored in plain Python afterwards; this module only drives the
DUT, so the per-cycle loop stays inside the simulator:

* the clock is the simulator-side (GPI) clock;
* ``backdoor`` jobs write and read memories through the simulator's handles (no clock cycles), ``bus`` jobs do
  every access through the Wishbone port (:class:`cimforge.sim.wishbone.WishboneMaster`);
* a run is started with a write of CSR ``CTRL`` and awaited with one trigger, ``done`` or a timeout, so the
  simulator runs freely in between. A timeout reads ``PC``/``OPCODE`` and reports them.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer

from .wishbone import WishboneMaster

PERIOD_NS = 10


class Host:
    """The job's view of the DUT: region-aware memory access by bus or backdoor."""

    def __init__(self, dut, job: dict):
        self.dut, self.job = dut, job
        self.bus = WishboneMaster(dut)
        self.hbits = job["hbits"]
        self.regions = job["regions"]
        self.backdoor = job["mode"] == "backdoor"
        # the system top (fabric + external memory model) has the fabric's memories one level down
        self.mems = dut.fabric if job.get("system") else dut

    def addr(self, region: str, word: int, slice_: int = 0) -> int:
        r = self.regions[region]
        return (r["index"] << self.hbits) | (word * r["slices"] + slice_)

    async def write_mem(self, region: str, base: int, words: list[int]) -> None:
        if self.backdoor:
            mem = getattr(self.mems, region)
            for i, w in enumerate(words):
                mem[base + i].value = w
            return
        n = -(-self.regions[region]["width"] // 32)
        for i, w in enumerate(words):
            for s in range(n):
                await self.bus.write(self.addr(region, base + i, s), (w >> (32 * s)) & 0xFFFFFFFF)

    async def read_mem(self, region: str, base: int, count: int) -> list[int]:
        if self.backdoor:
            mem = getattr(self.mems, region)
            return [int(mem[base + i].value) for i in range(count)]
        n = -(-self.regions[region]["width"] // 32)
        out = []
        for i in range(count):
            w = 0
            for s in range(n):
                w |= (await self.bus.read(self.addr(region, base + i, s))) << (32 * s)
            out.append(w)
        return out

    def write_ext(self, runs: list) -> None:
        """External memory words by backdoor (``[[base, [hex words]], ...]``): the model's array. Nothing to
        write on a plain fabric (no external memory model in the design)."""
        if not runs:
            return
        mem = self.dut.extmem.mem
        for base, words in runs:
            for i, w in enumerate(words):
                mem[base + i].value = int(w, 16)

    def read_ext(self, base: int, count: int) -> list[int]:
        mem = self.dut.extmem.mem
        return [int(mem[base + i].value) for i in range(count)]

    async def csr(self, name: str) -> int:
        return await self.bus.read(self.addr("csr", self.job["csr"][name]))


@cocotb.test()
async def run_job(dut):
    """Load, run every batch of the job, dump the results (scored by the caller)."""
    with open(os.environ["CIMFORGE_FABRIC_JOB"]) as fh:
        job = json.load(fh)
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    host = Host(dut, job)
    host.bus.idle()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    t_load = time.perf_counter()
    for region in ("imem", "wmem", "pmem", "dmem"):
        await host.write_mem(region, 0, [int(w, 16) for w in job.get(region, [])])
    assert await host.csr("ID") == job["magic"], "ID register mismatch: is this the fabric?"
    results = {"load_wall": time.perf_counter() - t_load, "runs": []}
    for run in job["runs"]:
        res = {}
        for region, words in run.get("load", {}).items():  # a run may bring its own program
            await host.write_mem(region, 0, [int(w, 16) for w in words])
        t0 = time.perf_counter()
        for base, words in run["writes"]:
            await host.write_mem("amem", base, [int(w, 16) for w in words])
        host.write_ext(run.get("ext_writes", []))
        res["write_wall"] = time.perf_counter() - t0
        await host.bus.write(host.addr("csr", job["csr"]["START_PC"]), 0)
        await host.bus.write(host.addr("csr", job["csr"]["CTRL"]), 1)
        t1 = time.perf_counter()
        timeout = Timer(run["timeout"] * PERIOD_NS, unit="ns")
        fired = await First(RisingEdge(dut.done), RisingEdge(dut.error), timeout)
        res["run_wall"] = time.perf_counter() - t1
        res["timed_out"] = fired is timeout
        if res["timed_out"]:
            dut._log.error(f"no END within {run['timeout']} cycles")
        t2 = time.perf_counter()
        for name in ("STATUS", "PC", "OPCODE", "CYCLES", "LOAD_CYCLES", "TRACE_COUNT"):
            res[name] = await host.csr(name)
        res["macros"] = []
        for m in range(job["n_macros"]):
            base = job["csr"]["MACRO_BASE"] + 4 * m
            res["macros"].append([await host.bus.read(host.addr("csr", base + j)) for j in range(3)])
        n_trace = min(res["TRACE_COUNT"], job["trace_depth"])
        res["trace"] = await host.read_mem("trace", 0, n_trace)
        res["reads"] = []
        for base, count in run["reads"]:
            res["reads"].append([base, [hex(w) for w in await host.read_mem("amem", base, count)]])
        res["ext_reads"] = [[base, [hex(w) for w in host.read_ext(base, count)]] for base, count in
                            run.get("ext_reads", [])]
        res["read_wall"] = time.perf_counter() - t2
        res["bus_accesses"] = host.bus.accesses
        results["runs"].append(res)
        if res["timed_out"]:
            break
    with open(job["results"], "w") as fh:
        json.dump(results, fh)
