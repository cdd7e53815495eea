"""Verilog emission whose size and time follow the logic, not the memory bits: all-zero initial contents elided.

Amaranth 0.5's RTLIL backend writes every memory's initial contents as a ``$meminit_v2`` cell of
``depth * width`` constant bits, even when they are all zero, and Yosys's ``write_verilog`` turns it into one
``initial`` assignment per word. Generation time, generator memory, Verilog size and Verilator build time then
grow with the memories' depth: a 64 K-word activation buffer is 65 536 assignments (bench/bench_gen_scale.py
measures it). :func:`elide_zero_init` leaves such contents out while a design is converted, so a memory is one
array declaration whatever its depth. A memory with non-zero contents keeps them.

What changes: the memories of the Verilog start undefined, like SRAM macros. Verilator starts them at zero
(its default ``+verilator+rand+reset+0``), so its simulations are unchanged; Icarus starts them at ``x``, which
a word read before anything wrote it then carries (for instance the unused images of a batch, whose outputs
nobody reads back). Hardware has no initial memory contents either.
"""

from __future__ import annotations

from contextlib import contextmanager

from amaranth.back import rtlil

__all__ = ["elide_zero_init"]


@contextmanager
def elide_zero_init():
    """While active, memories whose initial contents are all zero are converted without them (module
    docstring). Re-entrant; restores the backend on exit."""
    emitter = rtlil.ModuleEmitter
    original = emitter.emit_memory

    def emit_memory(self, cell_idx, cell):
        if any(cell.init):
            original(self, cell_idx, cell)

    emitter.emit_memory = emit_memory
    try:
        yield
    finally:
        emitter.emit_memory = original
