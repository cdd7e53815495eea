"""A small Wishbone B4 classic bus driver for cocotb 2 (cocotbext-axi and friends still target cocotb 1.x).

Signals are driven and sampled at falling edges, so there is no race with the design's rising-edge registers:
a request set up at a falling edge is seen at the next rising edge; the slave's registered ``ack`` is sampled at
the falling edge after it. One access takes two cycles with the fabric's slave.
"""

from __future__ import annotations

from cocotb.triggers import FallingEdge

__all__ = ["WishboneMaster", "BusError"]


class BusError(RuntimeError):
    """No ``ack`` within the driver's patience."""


class WishboneMaster:
    """Drives ``<prefix>cyc, stb, we, adr, dat_w, sel`` and samples ``dat_r, ack`` of ``dut``.

    Parameters
    ----------
    dut : cocotb handle
    prefix : str
        Port name prefix (Amaranth flattens ``wb.cyc`` to ``wb__cyc``).
    max_wait : int
        Cycles to wait for ``ack`` before raising :class:`BusError`.
    """

    def __init__(self, dut, prefix: str = "wb__", max_wait: int = 16):
        self.dut = dut
        self.clk = dut.clk
        self.s = {name: getattr(dut, prefix + name) for name in ("cyc", "stb", "we", "adr", "dat_w", "sel", "dat_r",
                                                                  "ack")}
        self.max_wait = max_wait
        self.accesses = 0

    def idle(self) -> None:
        for name in ("cyc", "stb", "we"):
            self.s[name].value = 0

    async def _access(self, addr: int, data: int | None) -> int:
        s = self.s
        await FallingEdge(self.clk)
        s["adr"].value = addr
        s["we"].value = int(data is not None)
        s["dat_w"].value = data or 0
        s["sel"].value = 0xF
        s["cyc"].value = 1
        s["stb"].value = 1
        for _ in range(self.max_wait):
            await FallingEdge(self.clk)
            if int(s["ack"].value):
                value = int(s["dat_r"].value)
                s["cyc"].value = 0
                s["stb"].value = 0
                s["we"].value = 0
                self.accesses += 1
                return value
        raise BusError(f"no Wishbone ack within {self.max_wait} cycles for {'write' if data is not None else 'read'} "
                       f"at word address {addr:#x}")

    async def write(self, addr: int, data: int) -> None:
        await self._access(addr, data & 0xFFFFFFFF)

    async def read(self, addr: int) -> int:
        return await self._access(addr, None)
