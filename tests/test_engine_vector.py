"""The vector engines (POOL and EW) alone in Amaranth's simulator, against the instruction-set model.

Random single-layer graphs (max/average/global pooling; residual add, clamp, concatenation), compiled for the
``tiny`` preset; the inputs are random codes with the corners forced in (the most negative and the largest
code). Every instruction's cycles equal the engine's timing data (``per_item`` per tap or word plus ``extra``).
Seeds fixed and printed.
"""

from __future__ import annotations

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.gen.isa import Opcode, decode_op, instr_spec
from cimforge.gen.vector import EW_TIMING, EwEngine, PoolEngine
from cimforge.presets import get_preset
from cimforge.sim.random_layers import random_vector_graph

from engine_bench import EngineBench, iss_model, run_instructions

TINY = get_preset("tiny")


def _inputs(g, rng):
    xs = {}
    for t in g.inputs:
        x = rng.integers(t.qmin, t.qmax + 1, (1, *t.shape))
        x.flat[0], x.flat[-1] = t.qmin, t.qmax  # the most negative and the largest code
        xs[t.name] = x.astype(t.dtype)
    return xs


def _check(kind: str, seed: int, engine: str):
    rng = np.random.default_rng(seed)
    print(f"{kind}, seed {seed}")
    g = random_vector_graph(kind, rng)
    prog = compile_graph(g, TINY, batch=1)
    words = prog.input_words(_inputs(g, rng))
    bench = EngineBench(TINY, [engine], prog, words)
    got, cycles = run_instructions(bench, list(prog.code))
    want = iss_model(prog, words).amem
    assert got == want, f"{kind}: activation memory differs from the ISS at " \
                        f"{[a for a in range(len(got)) if got[a] != want[a]][:8]}"
    assert cycles
    timing = bench.engines[engine].TIMING
    for pc, n in cycles:
        _, a = decode_op(TINY, prog.code[pc])
        items = a["oh"] * a["ow"] * a["cw"] * a["kh"] * a["kw"] if engine == "pool" else a["npos"] * a["cw"]
        assert n == items * timing.per_item + timing.extra, f"pc {pc}: {n} cycles for {items} items"


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["maxpool", "avgpool", "gap"])
def test_pool_engine(kind, seed):
    _check(kind, 3000 + seed, PoolEngine.name)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["add", "clamp", "concat"])
def test_ew_engine(kind, seed):
    _check(kind, 3100 + seed, EwEngine.name)


def test_vector_timing_follows_the_pipelines():
    # the start register, the pipeline (read, reduce or two stages of requantisation, sum) and the done cycle
    assert PoolEngine.TIMING.extra == 8 and EW_TIMING.extra == 13
    assert PoolEngine.TIMING.per_item == EwEngine.TIMING.per_item == 1
    assert {instr_spec(op).engine for op in (Opcode.POOL, Opcode.EW)} == {PoolEngine.name, EwEngine.name}
