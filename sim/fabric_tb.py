"""cocotb test of the generated fabric: loads a compiled program, runs it, and dumps what the host can see.

The job comes as JSON in ``CIMFORGE_FABRIC_JOB`` (written by :func:`cimforge.sim.fabric_runner.run_fabric`):
memory images, then a list of runs, each with the activation words to write before starting and the address
ranges to read back afterwards. Everything is scored in plain Python afterwards; this module only drives the
DUT, so the per-cycle loop stays inside the simulator:

* the clock is the simulator-side (GPI) clock;
* ``backdoor`` jobs write and read memories through the simulator's handles (no clock cycles), ``bus`` jobs do
  every access through the Wishbone port (:class:`cimforge.sim.wishbone.WishboneMaster`);
* the external memory model of a system top is loaded from and dumped to hex files by the model's own
  ``$readmemh``/``$writememh`` (the job's ``ext_backdoor``: :data:`cimforge.gen.extmem.EXT_BACKDOOR`), one
  cycle per file, in either mode;
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

    def _store(self):
        h = self.dut
        for part in self.job["ext_backdoor"]["path"]:
            h = getattr(h, part)
        return h

    async def _pulse(self, reg: str) -> None:
        """One cycle of the backdoor register ``reg`` high: the model acts on that rising edge."""
        sig = getattr(self._store(), self.job["ext_backdoor"][reg])
        sig.value = 1
        await RisingEdge(self.dut.clk)
        sig.value = 0
        await RisingEdge(self.dut.clk)

    async def load_ext(self, files: list[str]) -> None:
        """Load hex files (``@address`` lines and words) into the external memory model, in order: each is made
        the model's input file (``job["ext_in"]``, a symbolic link) and read by its ``$readmemh``."""
        for f in files:
            tmp = self.job["ext_in"] + ".tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(f, tmp)
            os.replace(tmp, self.job["ext_in"])
            await self._pulse("load")

    async def dump_ext(self, base: int, count: int, path: str) -> None:
        """Words ``base .. base + count - 1`` of the external memory model into the hex file ``path``."""
        store, names = self._store(), self.job["ext_backdoor"]
        getattr(store, names["lo"]).value = base
        getattr(store, names["hi"]).value = base + count - 1
        await self._pulse("dump")
        os.replace(self.job["ext_out"], path)

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
        await host.load_ext(run.get("ext_loads", []))
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
        res["ext_dumps"] = []
        for base, count in run.get("ext_reads", []):
            path = f"{job['results']}.ext{len(results['runs'])}-{len(res['ext_dumps'])}.hex"
            await host.dump_ext(base, count, path)
            res["ext_dumps"].append([base, count, path])
        res["read_wall"] = time.perf_counter() - t2
        res["bus_accesses"] = host.bus.accesses
        results["runs"].append(res)
        if res["timed_out"]:
            break
    with open(job["results"], "w") as fh:
        json.dump(results, fh)
