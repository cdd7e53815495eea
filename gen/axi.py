"""The fabric's AXI4 master port: the signature, the subset the DMA engine uses and the bus geometry.

The fabric reaches its external memory (weights, activations, spilled tensors) through a standard AMBA AXI4
master port, the SoC convention (Gemmini, NVDLA's DBB, the Xilinx and Intel memory controllers), so the
generated accelerator drops into an SoC's interconnect without a bridge; docs/memory.md says why and which
subset. Signal names are the specification's, lower case (``awaddr``, ``wvalid``, ...); the Verilog ports are
``axi__awaddr`` and so on.

The subset: ``INCR`` bursts of at most 256 beats that never cross a 4 KB boundary, full-width beats
(``awsize = arsize = log2(bytes per beat)``, every ``wstrb`` bit set), one outstanding transaction per
direction, ID 0, normal non-secure data accesses (``axprot = 0``), non-cacheable bufferable
(``axcache = 0b0011``), no locks, QoS 0, responses ignored (the memory model always answers ``OKAY``).
The handshake rules are the specification's: a ``valid`` never waits for its ``ready``, and once raised it and
its payload stay until the handshake.
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import CimConfig
from .isa import lanes, LANE_BITS

__all__ = ["axi4_signature", "ext_width", "ext_bytes", "ADDR_BITS", "MAX_BURST", "BOUNDARY_BYTES",
           "BURST_INCR", "CACHE_BUFFERABLE"]

#: Byte address bits of the port (a 4 GB space; the external memory occupies its start).
ADDR_BITS = 32
#: Beats in one AXI4 ``INCR`` burst at most (``axlen`` is 8 bits).
MAX_BURST = 256
#: No burst may cross an address boundary of this many bytes (AXI4, A3.4.1).
BOUNDARY_BYTES = 4096
#: ``axburst`` encoding of an incrementing burst.
BURST_INCR = 0b01
#: ``axcache``: normal non-cacheable bufferable memory.
CACHE_BUFFERABLE = 0b0011


def ext_width(cfg: CimConfig) -> int:
    """Data bits of the AXI port and of one external-memory word: the wider of an activation word and a weight
    word, rounded up to a power of two (AXI data widths are 8..1024 powers of two). One on-chip word moves as
    one beat, in its low bits; the upper bits of a beat are zero when written and ignored when read."""
    widest = max(LANE_BITS * lanes(cfg), cfg.macro.cols, 8)
    return 1 << ceil_log2(widest)


def ext_bytes(cfg: CimConfig) -> int:
    """Bytes per beat (the byte address of external word ``i`` is ``i * ext_bytes(cfg)``)."""
    return ext_width(cfg) // 8


def axi4_signature(data_width: int, addr_width: int = ADDR_BITS, id_width: int = 1) -> wiring.Signature:
    """An AXI4 interface from the master's side (the fabric's port is ``Out(axi4_signature(...))``, a memory
    model's ``In(...)``): the five channels AW, W, B, AR, R with the specification's signal names.

    Parameters
    ----------
    data_width : int
        ``wdata`` / ``rdata`` bits, a power of two in 8..1024 (``wstrb`` has one bit per byte).
    addr_width : int
        Byte address bits.
    id_width : int
        ``axid`` / ``xid`` bits (the fabric drives ID 0).

    Raises
    ------
    ValueError
        ``data_width`` is no power of two in 8..1024.
    """
    if data_width not in tuple(1 << k for k in range(3, 11)):
        raise ValueError(f"AXI data width {data_width}: allowed a power of two in 8..1024")
    def addr_channel(p: str) -> dict:
        return {f"{p}id": Out(id_width), f"{p}addr": Out(addr_width), f"{p}len": Out(8), f"{p}size": Out(3),
                f"{p}burst": Out(2), f"{p}lock": Out(1), f"{p}cache": Out(4), f"{p}prot": Out(3),
                f"{p}qos": Out(4), f"{p}valid": Out(1), f"{p}ready": In(1)}
    return wiring.Signature({
        **addr_channel("aw"),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1), "wvalid": Out(1),
        "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        **addr_channel("ar"),
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1), "rvalid": In(1),
        "rready": Out(1),
    })
