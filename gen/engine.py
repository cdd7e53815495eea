"""What every engine of the fabric shares: the engine signature and its timing as data.

An engine executes one kind of instruction (:data:`cimforge.gen.isa.INSTRUCTIONS`, each spec names its engine).
The controller starts it with a one-cycle ``start`` while ``args`` holds the instruction's arguments (stable until
``done``); the engine raises ``busy`` while it works and pulses ``done`` in its last cycle. The weight loader is
the exception: it takes a command stream (``LOAD`` only queues) and reports ``busy`` for ``SYNC``.

Each engine class carries ``TIMING``, a frozen dataclass of its cycle constants derived from the RTL's own
parameters (pipeline depths, memory and macro latencies), which the cost model
(:mod:`cimforge.compiler.cost`) reads instead of restating them. Cycle numbers count from the instruction's
EXEC cycle (the cycle the controller asserts ``start``), the trace stamps an instruction in its ``done`` cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MacTiming", "VectorTiming", "LoaderTiming", "ControllerTiming", "engine_members",
           "control_signature", "connect_control"]


@dataclass(frozen=True)
class MacTiming:
    """Fixed delays of the ``MAC`` engine (:class:`cimforge.gen.mac_engine.MacEngine`).

    Attributes
    ----------
    setup : int
        Cycles between EXEC and the first of the ``b`` position steps of the pass set-up (``start`` is
        registered into ``running``): a pass's first gather starts at ``EXEC + setup + b``.
    result : int
        An operation's results are in the accumulators ``ab + result`` cycles after its issue: the macro's
        ``LATENCY`` plus the accumulator register.
    tail : int
        Cycles from the last results to ``done`` when the last output group is the first one serialized:
        the copy to the serializer, the group sum register, the requantiser's ``MBQM_LATENCY`` stages and the
        write.
    serializer_extra : int
        When the serializer's ``b * no`` groups take longer than the tail: cycles from the last results to
        ``done`` beyond one per group.
    """

    setup: int
    result: int
    tail: int
    serializer_extra: int


@dataclass(frozen=True)
class VectorTiming:
    """Timing of a streaming vector engine (``POOL``, ``EW``): ``per_item`` cycles per window tap or word, plus
    ``extra`` cycles from EXEC to ``done`` inclusive (the start register, the pipeline, the done cycle)."""

    extra: int
    per_item: int = 1


@dataclass(frozen=True)
class LoaderTiming:
    """Timing of the weight loader (:class:`cimforge.gen.loader.WeightLoader`).

    Attributes
    ----------
    overhead : int
        Cycles of a command beyond one per row before the loader is idle: the queue pop and the weight
        memory's read latency before the last write.
    per_command : int
        Cycles per command beyond one per row when commands run back to back (the pop cycle): a command of
        ``count`` rows occupies the loader ``count + per_command`` cycles.
    """

    overhead: int
    per_command: int = 1


@dataclass(frozen=True)
class ControllerTiming:
    """Cycles before an instruction executes (:class:`cimforge.gen.controller.Controller`).

    Attributes
    ----------
    start : int
        The first instruction of a run: fetch and decode.
    short : int
        After a one-cycle instruction (a ``LOAD`` with room in the queue, a ``SYNC`` with nothing to wait for):
        decode, the prefetch had no time to read the next word.
    prefetched : int
        After an instruction that took more than one cycle: the next word was prefetched.
    """

    start: int
    short: int
    prefetched: int


def engine_members(args: data.Layout) -> dict:
    """The shared engine members, as a signature dict to extend with the engine's memory ports:
    ``start: In(1)``, ``args: In(args)``, ``busy: Out(1)``, ``done: Out(1)``."""
    return {"start": In(1), "args": In(args), "busy": Out(1), "done": Out(1)}


def control_signature(args: data.Layout) -> wiring.Signature:
    """The shared engine members from the controller's side (``start`` and ``args`` out, ``busy`` and ``done``
    in): :func:`engine_members` flipped."""
    return wiring.Signature(engine_members(args)).flip()


def connect_control(m, control, engine) -> None:
    """Wire a controller's engine port (:func:`control_signature`) to the shared members of ``engine``."""
    m.d.comb += [engine.start.eq(control.start), engine.args.eq(control.args),
                 control.busy.eq(engine.busy), control.done.eq(engine.done)]
