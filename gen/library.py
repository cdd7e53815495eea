"""Hierarchy for generators: elaborate a repeated block once, instantiate it by name many times.

Amaranth converts every instance of a component separately, so a macro of 32 identical column tiles would cost
32 conversions and 32 copies of the same Verilog. :class:`VerilogLibrary` converts a block the first time it is
asked for (keyed by a module name that encodes all its parameters) and hands back an ``Instance`` bound to the
caller's signals; generation time and Verilog size then follow the unique logic, not the bit count.
"""

from __future__ import annotations

from typing import Callable

from amaranth.back import verilog
from amaranth.hdl import ClockSignal, Instance, ResetSignal
from amaranth.lib import wiring
from .meminit import elide_zero_init

__all__ = ["VerilogLibrary", "instantiate"]


class VerilogLibrary:
    """Verilog modules converted once each, in first-use order.

    Parameters
    ----------
    prefix : str
        Prepended to every module name, so that two designs in one simulation cannot collide.
    """

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self._modules: dict[str, str] = {}

    def module(self, name: str, factory: Callable[[], wiring.Component]) -> tuple[str, wiring.Component]:
        """Convert ``factory()`` as module ``prefix + name`` unless already done; return (name, component).

        The returned component is only a description of the ports (its signals are not used in the design).
        """
        full = self.prefix + name
        comp = factory()
        if full not in self._modules:
            with elide_zero_init():  # memories' all-zero contents are not written bit by bit (gen/meminit.py)
                self._modules[full] = verilog.convert(comp, name=full, emit_src=False)
        return full, comp

    def raw(self, name: str, text: str) -> str:
        """Add a hand-written Verilog module (a library cell Amaranth cannot describe, e.g. the clock gate's
        latch) as ``prefix + name`` unless already there; ``text`` holds ``{name}`` where the module's name goes.
        Returns the full name."""
        full = self.prefix + name
        self._modules.setdefault(full, text.format(name=full))
        return full

    @property
    def names(self) -> list[str]:
        return list(self._modules)

    def verilog(self) -> str:
        """All converted modules, in first-use order."""
        return "".join(self._modules.values())


def instantiate(module_name: str, template: wiring.Component, iface: object, domain: str = "sync",
                clk=None) -> Instance:
    """An ``Instance`` of ``module_name`` whose ports (named after ``template``'s signature, Amaranth style:
    path joined with ``__``) connect to the same-named signals of ``iface``, created by
    ``template.signature.create()``; its clock is ``domain``'s, or ``clk`` when given (a gated clock).
    """
    kwargs = {"i_clk": ClockSignal(domain) if clk is None else clk, "i_rst": ResetSignal(domain)}
    for path, member, value in template.signature.flatten(iface):
        name = "__".join(str(p) for p in path)
        if hasattr(value, "as_value"):
            value = value.as_value()
        kwargs[("i_" if member.flow == wiring.In else "o_") + name] = value
    return Instance(module_name, **kwargs)
