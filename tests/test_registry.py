"""Every operation has an entry in every table: each instruction of the ISA table (``isa.INSTRUCTIONS``) an
engine that executes it (``gen.fabric.ENGINES``, or none for the controller's own), an ISS executor
(``compiler.iss.EXECUTORS``) and a cycle rule (``compiler.cost.INSTR_CYCLES``); each concrete layer class of
the IR (found by walking ``golden.ir.Layer``'s subclasses) a golden operator (``golden.runner.LAYER_FUNCTIONS``)
and a lowering (``compiler.lowering.LOWERINGS``). No table holds an entry for something that does not exist.
An operation added halfway fails here in seconds; the second half of the file removes one entry from each
table in turn and shows the check notices."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cimforge.compiler import cost, iss, lowering
from cimforge.compiler.compile import compile_graph
from cimforge.compiler.tiling import CompileError
from cimforge.gen import fabric, isa
from cimforge.golden import ir, runner
from cimforge.presets import get_preset
from cimforge.sim.random_layers import random_vector_graph


def concrete_layer_classes() -> list[type]:
    """The IR's layer classes that can be instantiated: subclasses of ``Layer`` (at any depth) that name their
    own ``kind`` (the shared bases ``_Weighted`` and ``_Window`` do not)."""
    out, todo = [], list(ir.Layer.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if "kind" in vars(cls) and cls.__module__ == ir.__name__:
            out.append(cls)
    return sorted(set(out), key=lambda c: c.__name__)


def _opcode_tables() -> tuple[tuple[str, dict], ...]:
    """The tables keyed by opcode, looked up now (a test may replace one)."""
    return ("compiler.iss.EXECUTORS", iss.EXECUTORS), ("compiler.cost.INSTR_CYCLES", cost.INSTR_CYCLES)


def missing_entries() -> list[str]:
    """What the tables lack or hold in excess, one line each (empty when every operation is complete)."""
    problems = []
    ops = [spec.op for spec in isa.INSTRUCTIONS]
    for spec in isa.INSTRUCTIONS:
        if spec.engine is not None:
            engine = fabric.ENGINES.get(spec.engine)
            if engine is None:
                problems.append(f"{spec.name}: no engine {spec.engine!r} in gen.fabric.ENGINES")
            elif engine.name != spec.engine or not hasattr(engine, "TIMING"):
                problems.append(f"{spec.name}: ENGINES[{spec.engine!r}] is {engine.__name__} named {engine.name!r}"
                                f" (needs its name and TIMING)")
        for what, table in _opcode_tables():
            if spec.op not in table:
                problems.append(f"{spec.name}: no entry in {what}")
    for what, table in _opcode_tables():
        problems += [f"{what}: entry for {op!r}, not in isa.INSTRUCTIONS" for op in table if op not in ops]
    used = {spec.engine for spec in isa.INSTRUCTIONS}
    problems += [f"gen.fabric.ENGINES: {name!r} executes no instruction of isa.INSTRUCTIONS"
                 for name in fabric.ENGINES if name not in used]
    classes = concrete_layer_classes()
    for cls in classes:
        if cls not in runner.LAYER_FUNCTIONS:
            problems.append(f"{cls.__name__}: no golden operator in golden.runner.LAYER_FUNCTIONS")
        if cls not in lowering.LOWERINGS:
            problems.append(f"{cls.__name__}: no lowering in compiler.lowering.LOWERINGS")
    for table, what in ((runner.LAYER_FUNCTIONS, "golden.runner.LAYER_FUNCTIONS"),
                        (lowering.LOWERINGS, "compiler.lowering.LOWERINGS")):
        problems += [f"{what}: entry for {cls.__name__}, not a concrete layer class of golden.ir"
                     for cls in table if cls not in classes]
    for cls, low in lowering.LOWERINGS.items():
        problems += [f"{cls.__name__}: lowering {low.name!r} emits {op!r}, not in isa.INSTRUCTIONS"
                     for op in low.opcodes if op not in ops]
    return problems


def test_every_operation_has_every_entry():
    assert missing_entries() == []


def test_the_walk_finds_the_layer_classes():
    """The subclass walk sees every class the IR exports as a layer, and not the shared bases."""
    names = {c.__name__ for c in concrete_layer_classes()}
    assert {"Conv2d", "Dense", "MaxPool", "AvgPool", "GlobalAvgPool", "Add", "Concat", "Reshape", "Clamp"} <= names
    assert not names & {"Layer", "_Weighted", "_Window"}
    assert {c.kind for c in concrete_layer_classes()} <= set(ir.LAYER_KINDS)


# -- one entry removed from each table: the check fails, naming it ------------------------------------------

REMOVALS = {
    "engine": (lambda: fabric.ENGINES, "pool", r"POOL: no engine 'pool' in gen.fabric.ENGINES"),
    "executor": (lambda: iss.EXECUTORS, isa.Opcode.EW, r"EW: no entry in compiler.iss.EXECUTORS"),
    "cycles": (lambda: cost.INSTR_CYCLES, isa.Opcode.MAC, r"MAC: no entry in compiler.cost.INSTR_CYCLES"),
    "golden": (lambda: runner.LAYER_FUNCTIONS, ir.Concat, r"Concat: no golden operator"),
    "lowering": (lambda: lowering.LOWERINGS, ir.GlobalAvgPool, r"GlobalAvgPool: no lowering"),
}


@pytest.mark.parametrize("table", list(REMOVALS))
def test_a_removed_entry_fails_the_check(table, monkeypatch):
    get, key, message = REMOVALS[table]
    monkeypatch.delitem(get(), key)
    problems = missing_entries()
    assert len(problems) == 1 and re.match(message, problems[0]), problems


def test_a_removed_instruction_fails_the_check(monkeypatch):
    """An instruction dropped from the ISA table leaves its executor, cycle rule and engine dangling."""
    monkeypatch.setattr(isa, "INSTRUCTIONS", tuple(s for s in isa.INSTRUCTIONS if s.op != isa.Opcode.POOL))
    problems = missing_entries()
    assert "compiler.iss.EXECUTORS: entry for" in problems[0] and "POOL" in problems[0]
    assert any("compiler.cost.INSTR_CYCLES: entry for" in p and "POOL" in p for p in problems)
    assert any("'pool' executes no instruction" in p for p in problems)


def test_a_new_layer_class_without_entries_fails_the_check(monkeypatch):
    """A layer class added to the IR alone has neither a golden operator nor a lowering."""
    class Softmax(ir.Layer):
        kind = "softmax"
    monkeypatch.setattr(Softmax, "__module__", ir.__name__)
    problems = missing_entries()
    assert problems == ["Softmax: no golden operator in golden.runner.LAYER_FUNCTIONS",
                        "Softmax: no lowering in compiler.lowering.LOWERINGS"]


def test_a_layer_without_lowering_is_refused_by_name(monkeypatch):
    """Compiling or costing a kind with no lowering is a CompileError naming the layer and its kind."""
    g = random_vector_graph("concat", np.random.default_rng(7))
    monkeypatch.delitem(lowering.LOWERINGS, ir.Concat)
    with pytest.raises(CompileError, match=r"layer 'cat': kind concat is not supported by the fabric"):
        compile_graph(g, get_preset("default"))
    with pytest.raises(CompileError, match=r"layer 'cat': kind concat is not supported by the fabric"):
        cost.layer_cost(g.layers[0], get_preset("default"))


def test_an_instruction_without_executor_stops_the_iss(monkeypatch):
    g = random_vector_graph("clamp", np.random.default_rng(3))
    prog = compile_graph(g, get_preset("default"))
    monkeypatch.delitem(iss.EXECUTORS, isa.Opcode.EW)
    x = np.zeros((1, *g.inputs[0].shape), g.inputs[0].dtype)
    pc = next(info.pc for info in prog.instrs if info.op == "EW")
    with pytest.raises(RuntimeError, match=rf"unknown opcode {isa.Opcode.EW.value} at pc {pc}$"):
        iss.run_program(prog, {"x": x})
