"""The generated fabric RTL running the digits CNNs end to end under cocotb, against the golden model.

Default cases (one Verilator build of the default fabric, shared): a few images of each CNN with every tensor
compared and the cost model within 5% of the measured cycles on every layer; an injected weight fault named
down to layer, tile, macro and element; a hung program and an illegal instruction named by the timeout/error;
one whole inference through the Wishbone bus alone. Slow cases: 200 images per CNN with equal accuracy, fabrics
of 1, 2 and 4 macros and a second macro geometry, Icarus.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import Parallelism
from cimforge.config import INT8_BITS
from cimforge.gen.isa import INSTRUCTIONS, Opcode, decode_op, encode
from cimforge.presets import get_preset
from cimforge.sim.cosim import MODELS, cosimulate, digits_batch, load_digits_model
from cimforge.sim.fabric_check import expected_counters, first_divergence
from cimforge.sim.fabric_runner import FabricError, SimTimeout, run_fabric
from cimforge.sim.tools import has_icarus

pytestmark = pytest.mark.cocotb

DEFAULT = get_preset("default")
TOLERANCE = 0.05


def _assert_cosim(res, label: str) -> None:
    assert res.exact, f"{label}: {res.divergence}"
    golden_acc, rtl_acc = res.accuracy
    assert rtl_acc == golden_acc, f"{label}: accuracy {rtl_acc} vs golden {golden_acc}"
    worst = max((row for rows in res.rows for row in rows), key=lambda r: abs(r.error))
    assert abs(worst.error) <= TOLERANCE, (f"{label}: cost model off by {100 * worst.error:+.1f}% on layer "
                                           f"{worst.layer} ({worst.predicted} predicted, {worst.measured} measured)")
    for row in res.mean_rows():
        util = f"{100 * row.utilisation:5.1f}%" if row.utilisation is not None else "   - "
        print(f"{label} {row.layer:40s} {row.measured:6d} measured {row.predicted:6d} predicted {util}")


@pytest.mark.parametrize("merge", [True, False], ids=["merged", "per_image"])
@pytest.mark.parametrize("model", MODELS)
def test_cnn_default_fabric(model, merge):
    """8 images, one run: bit-exact, cost model exact, and every conv layer at >= 70 % utilisation with one
    pass per image, >= 90 % with one pass over the run's images (docs/architecture.md section 6)."""
    res = cosimulate(load_digits_model(model), DEFAULT, 8, merge_images=merge)
    _assert_cosim(res, f"{model} ({'merged' if merge else 'per image'})")
    floor = 0.9 if merge else 0.7
    convs = [row for row in res.mean_rows() if row.kind == "conv2d"]
    assert convs and all(row.utilisation >= floor for row in convs), \
        [(row.layer, round(row.utilisation, 3)) for row in convs]


@pytest.mark.parametrize("model", MODELS)
def test_performance_counters(model):
    """Total, loader and per-macro busy/stall/weight-write counters equal what the program implies."""
    g = load_digits_model(model)
    prog = compile_graph(g, DEFAULT, batch=3)
    inputs, _, _ = digits_batch(g, 0, 3)
    run = run_fabric(DEFAULT, prog, [inputs]).runs[0]
    exp = expected_counters(prog, inputs)
    print(f"{model}: cycles {run.cycles}, loader {run.load_cycles}, macros [busy, stall, weight] {run.macros}")
    assert run.cycles == exp["cycles"]
    assert run.load_cycles == exp["load_cycles"]
    assert run.macros == exp["macros"]


def _flip(word_index: int, bit: int):
    def patch(wmem, prog):
        wmem[word_index] ^= 1 << bit
        return wmem
    return patch


def test_fault_is_located():
    """One flipped weight bit of the second convolution: the report names layer, tile, macro and element."""
    g = load_digits_model("digits_cnn_qop")
    prog = compile_graph(g, DEFAULT, batch=2)
    layer = "/4/Conv_quant"
    src = next(decode_op(DEFAULT, prog.code[i.pc])[1]["src"] for i in prog.instrs
               if i.op == "LOAD" and i.layer == layer)
    res = cosimulate(g, DEFAULT, 2, batch=2, wmem_patch=_flip(src + 20, INT8_BITS * 3 + 6))  # weight 3, bit 6
    div = res.divergence
    assert div is not None, "the fault went unnoticed"
    print(div)
    assert div.layer == layer and div.inputs_match
    assert div.index[0] == 3, "only output channel 3 uses the flipped weight"
    text = str(div)
    mp = next(p for p in prog.passes if p.layer == layer and p.image == 0)
    _, y, x = div.index
    macros = sorted({mp.macro_of(y * mp.geom.ow + x, k, 0) for k in range(len(mp.tiles))})
    assert len(mp.tiles) == 1  # K = 64 (the pruned 3x3 kernel): one row tile
    for part in ("layer '/4/Conv_quant'", "output element (3,", "output-channel tile 0", f"macro(s) {macros}",
                 "reduction tiles 0..0", "executed in cycles"):
        assert part in text, f"{part!r} missing from: {text}"


def test_hang_names_the_instruction():
    g = load_digits_model("digits_cnn_qop")
    prog = compile_graph(g, DEFAULT, batch=1)
    pc = next(i.pc for i in prog.instrs if i.op == "MAC")
    _, args = decode_op(DEFAULT, prog.code[pc])
    code = list(prog.code)
    code[pc] = encode(DEFAULT, Opcode.MAC, **{**args, "npos": 60000})  # a pass that runs ~140 000 cycles
    inputs, _, _ = digits_batch(g, 0, 1)
    with pytest.raises(SimTimeout, match=rf"within 3000 cycles; it was executing pc {pc}: MAC layer "
                                         r"'/0/Conv_quant' image 0"):
        run_fabric(DEFAULT, prog, [inputs], code=code, timeout_cycles=3000)


def test_illegal_instruction_is_reported():
    g = load_digits_model("digits_cnn_qop")
    prog = compile_graph(g, DEFAULT, batch=1)
    pc = next(i.pc for i in prog.instrs if i.op == "POOL")
    code = list(prog.code)
    code[pc] = 0xF  # the largest 4-bit opcode, which no instruction uses
    assert all(spec.op.value != 0xF for spec in INSTRUCTIONS)
    inputs, _, _ = digits_batch(g, 0, 1)
    with pytest.raises(FabricError, match=rf"stopped with an error at pc {pc}: POOL .*opcode register 15"):
        run_fabric(DEFAULT, prog, [inputs], code=code)


def test_inference_through_the_bus_alone():
    """Program, weights, parameters, descriptors, the image and every result go through Wishbone."""
    g = load_digits_model("digits_cnn_qop")
    prog = compile_graph(g, DEFAULT, batch=1)
    inputs, _, gold = digits_batch(g, 3, 1)
    fr = run_fabric(DEFAULT, prog, [inputs], mode="bus")
    got = prog.read_tensors(fr.runs[0].words, 1)
    assert first_divergence(prog, gold, got) is None
    assert fr.runs[0].cycles > 0


# -- slow ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_cnn_200_images(model):
    res = cosimulate(load_digits_model(model), DEFAULT, 200)
    _assert_cosim(res, model)
    print(f"{model}: {res.n_images} images bit-exact, accuracy {res.accuracy[1]:.4f} (golden {res.accuracy[0]:.4f}),"
          f" {res.cycles} cycles in {res.run_wall:.1f} s = {res.cycles / res.run_wall:.0f} cycles/s")


SWEEP = {
    # one macro, with the other requantisation form (gemmlowp's double rounding; the default is single) in the
    # RTL, checked against the golden model's same form: two axes on one Verilator build
    "1macro_double_rounding": replace(DEFAULT, fabric=replace(DEFAULT.fabric, n_macros=1, rounding="double")),
    "2macro": replace(DEFAULT, fabric=replace(DEFAULT.fabric, n_macros=2)),
    "isscc22": get_preset("isscc22"),
}


@pytest.mark.slow
@pytest.mark.parametrize("fabric", list(SWEEP))
def test_fabric_sweep(fabric):
    """The same networks on fabrics of 1 (with double-rounding requantisation, not the default) and 2 macros (4:
    the default cases), and on the ISSCC'22 geometry."""
    cfg = SWEEP[fabric]
    for model in MODELS:
        res = cosimulate(load_digits_model(model), cfg, 6)
        _assert_cosim(res, f"{model}@{fabric}")


@pytest.mark.slow
@pytest.mark.icarus
@pytest.mark.skipif(not has_icarus(), reason="Icarus Verilog (iverilog) not on PATH")
def test_icarus_one_image():
    res = cosimulate(load_digits_model("digits_cnn_qop"), DEFAULT, 1, sim="icarus")
    _assert_cosim(res, "icarus")


def _random_layers_cosim(seed, splits, draw, accept=lambda prog: True, batch=2):
    """One simulator launch over random one-layer graphs ``draw(rng)``, one per split (a layer the split or
    ``accept`` refuses is redrawn), ``batch`` images per run in one pass: bit-exact, and the cost model's cycles
    equal to the trace's on every instruction."""
    from cimforge.compiler.cost import program_timing
    from cimforge.golden.runner import run_graph
    from cimforge.sim.fabric_runner import run_programs

    print(f"seed {seed}")
    items, golds = [], []
    rng = np.random.default_rng(seed)
    while len(items) < len(splits):
        g = draw(rng)
        try:
            prog = compile_graph(g, DEFAULT, batch=batch, parallelism={"conv": splits[len(items)]})
        except Exception as e:  # a split the layer cannot use (too few tiles): draw another layer
            print(f"skip: {e}")
            continue
        if not accept(prog):
            continue
        layer = g.layers[0]
        x = rng.integers(layer.input.qmin, layer.input.qmax + 1, (batch, *layer.input.shape)).astype(layer.input.dtype)
        x[0].flat[0] = layer.input.qmin  # the most negative (int8) or zero (uint8) code in a corner
        golds.append(run_graph(g, x))
        items.append((prog, {"x": x}))
        print(f"{layer.input.shape} k{layer.kernel} s{layer.stride} d{layer.dilation} p{layer.padding} "
              f"-> {layer.output.shape} split {splits[len(items) - 1]}")
    fr = run_programs(DEFAULT, items)
    for (prog, _), gold, run in zip(items, golds, fr.runs):
        got = prog.read_tensors(run.words, batch)
        assert first_divergence(prog, gold, got, run.trace) is None
        assert [t["cycle"] for t in run.trace] == program_timing(prog)


def test_random_layers_and_odd_splits():
    """Random convolutions and dense layers under splits of 1..4 macros (3 included)."""
    from cimforge.sim.random_layers import random_conv_graph
    P = Parallelism
    _random_layers_cosim(77, [P(3, 1, 1), P(1, 3, 1), P(1, 1, 3), P(2, 2, 1), P(1, 2, 2), P(4, 1, 1)],
                         lambda rng: random_conv_graph(rng, DEFAULT))


def test_row_packed_inputs():
    """One-channel inputs stored a row per word (kernels up to 8 x 8, any padding and stride, pruned tails)."""
    from cimforge.sim.random_layers import random_conv_graph
    P = Parallelism
    _random_layers_cosim(88, [P(4, 1, 1), P(2, 1, 2), P(1, 2, 1), P(3, 1, 1), P(1, 1, 1), P(2, 2, 1)],
                         lambda rng: random_conv_graph(rng, DEFAULT, cin=1, kmax=8),
                         accept=lambda prog: prog.tensors[(0, "x")].rowpack, batch=3)
