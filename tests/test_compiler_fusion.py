"""The fusion of a depthwise 1x1 layer (an unfoldable BatchNormalization) into the ``MAC`` pass of the
convolution it reads (:mod:`cimforge.compiler.fusion`, the engine's epilogue): which layers fuse, and the
instruction-set model equal to the golden model on every tensor the program writes, with and without fusion,
on chip and in external mode, with the cost model's retire cycles and no DMA hazard. Seeds fixed and printed.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.fusion import FusedConv2d, fuse_graph, internal_tensors
from cimforge.compiler.iss import run_program
from cimforge.compiler.memory import check_hazards
from cimforge.gen.isa import Opcode, decode_op
from cimforge.golden import ir
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset
from cimforge.sim.random_layers import random_conv_graph, random_tensor

DEFAULT = get_preset("default")
SEED = 7100


def conv_bn_graph(rng, cfg, *, corner: bool = True, kmax: int = 3) -> ir.Graph:
    """A random convolution ``x -> y`` (layer ``conv``) and a depthwise 1x1 layer ``y -> z`` (``bn``): the
    convolution's clamp narrowed so that many of its codes sit on the bounds; with ``corner`` the first
    channels' weights are -128, 127 and 0 and the next two channels' multipliers 0 (a real multiplier below
    2**-32) and the largest (saturated to (2**31 - 1, 30))."""
    conv = random_conv_graph(rng, cfg, kmax=kmax).layers[0]
    y = conv.output
    lo = int(rng.integers(y.qmin, y.zero_point + 1))
    conv = ir.with_clamp(conv, lo, min(y.qmax, lo + int(rng.integers(2, 60))))
    c = y.shape[0]
    z = random_tensor("z", y.shape, rng)
    w = rng.integers(-128, 128, (c, 1, 1, 1)).astype(np.int8)
    ws = rng.uniform(0.001, 0.05, c)
    if corner:
        w.flat[:3] = [-128, 127, 0][:c]
        if c > 3:
            ws[3] = 1e-12 * z.scale / y.scale
        if c > 4:
            ws[4] = 1e12
    bn = ir.Conv2d(name="bn", inputs=(y,), output=z, weight=w, groups=c, weight_scale=ws,
                   bias=rng.integers(-20000, 20000, c).astype(np.int32))
    if rng.random() < 0.5:
        bn = ir.with_clamp(bn, z.zero_point, z.qmax)
    return ir.Graph("conv_bn", conv.inputs, (conv, bn), ("z",))


def _inputs(g, rng, n):
    t = g.inputs[0]
    x = rng.integers(t.qmin, t.qmax + 1, (n, *t.shape))
    x.flat[0], x.flat[-1] = t.qmin, t.qmax
    return {t.name: x.astype(t.dtype)}


def _check(g, cfg, xs, **options):
    """Compile, run the ISS, compare every tensor it writes with the golden model; returns the program."""
    prog = compile_graph(g, cfg, **options)
    got, _ = run_program(prog, xs)
    gold = run_graph(g, xs, rounding=cfg.fabric.rounding)
    internal = internal_tensors(prog.graph)
    kept = set(gold) if prog.kept is None else prog.kept  # memory="liveness": what no later tensor overwrites
    assert set(got) == (set(gold) - set(internal)) & kept, "the program writes every tensor but the fused ones"
    assert set(g.outputs) <= set(got)
    for name in got:
        assert np.array_equal(got[name], gold[name]), f"tensor {name!r} differs"
    if prog.external:
        assert check_hazards(prog) == []
    return prog


def test_a_conv_and_its_depthwise_1x1_fuse():
    rng = np.random.default_rng(SEED)
    g = conv_bn_graph(rng, DEFAULT)
    f = fuse_graph(g)
    [layer] = f.layers
    assert isinstance(layer, FusedConv2d) and layer.name == "conv" and layer.epilogue is g.layers[1]
    assert layer.output is g.layers[1].output and layer.mid is g.layers[0].output
    assert layer.requant is not None and np.array_equal(layer.requant.multiplier, g.layers[0].requant.multiplier)
    assert internal_tensors(f) == {"y": "conv"}
    assert fuse_graph(ir.Graph("g", g.inputs, g.layers, ("y", "z"))).layers == g.layers  # y is an output
    prog = compile_graph(g, DEFAULT)
    macs = [decode_op(DEFAULT, w)[1] for w in prog.code if decode_op(DEFAULT, w)[0] == Opcode.MAC.value]
    assert macs and all(a["epi"] == 1 for a in macs)
    assert [i.layer for i in prog.instrs if i.op == "MAC"] == ["conv"] * len(macs)
    off = compile_graph(g, DEFAULT, fuse=False)
    assert sum(i.op == "MAC" for i in off.instrs) == len(macs) + 1
    assert prog.graph is not g and off.graph is g


def test_what_does_not_fuse():
    """Two readers, a strided or padded 1x1, a 1x1 that mixes channels, and a depthwise layer's own reader."""
    rng = np.random.default_rng(SEED + 1)
    g = conv_bn_graph(rng, DEFAULT)
    conv, bn = g.layers
    y, z = conv.output, bn.output
    other = replace(bn, name="other", output=z.renamed("z2"))
    assert not internal_tensors(fuse_graph(ir.Graph("two", g.inputs, (conv, bn, other), ("z", "z2"))))
    c, h, w = y.shape
    for name, changes in (("strided", {"stride": (2, 2)}), ("padded", {"padding": (1, 0, 0, 0)})):
        oh, ow = (-(-h // 2), -(-w // 2)) if name == "strided" else (h + 1, w)
        layer = ir.Conv2d(**{**_fields(bn), **changes, "output": z.renamed("zz", (c, oh, ow))})
        assert not internal_tensors(fuse_graph(ir.Graph(name, g.inputs, (conv, layer), ("zz",)))), name
    mix = ir.Conv2d(name="mix", inputs=(y,), output=z, weight=np.ones((c, c, 1, 1), np.int8), weight_scale=0.01)
    assert not internal_tensors(fuse_graph(ir.Graph("mix", g.inputs, (conv, mix), ("z",))))
    bn2 = replace(bn, name="bn2", inputs=(z,), output=z.renamed("z3"))
    chain = fuse_graph(ir.Graph("chain", g.inputs, (conv, bn, bn2), ("z3",)))
    assert internal_tensors(chain) == {"y": "conv"} and [la.name for la in chain.layers] == ["conv", "bn2"]


def _fields(layer) -> dict:
    return {f.name: getattr(layer, f.name) for f in fields(ir.Conv2d) if f.init}


@pytest.mark.parametrize("case", range(8))
def test_fused_iss_equals_golden(case):
    """Random conv + depthwise 1x1 pairs (corner weights and multipliers, clamps), two images, with and
    without fusion, on chip and in external mode (every third case, 64 staging words or the size the error
    names), on macros of 8 and 16 lanes."""
    seed = SEED + 10 + case
    rng = np.random.default_rng(seed)
    cfg = DEFAULT if case % 2 == 0 else replace(DEFAULT, macro=replace(DEFAULT.macro, cols=128))
    g = conv_bn_graph(rng, cfg, corner=case != 7)
    conv = g.layers[0]
    print(f"seed {seed}: {conv.input.shape} k{conv.kernel} s{conv.stride} p{conv.padding} -> {conv.output.shape}, "
          f"clamp {conv.act_min}..{conv.act_max}, lanes {cfg.macro.cols // 8}")
    xs = _inputs(g, rng, 2)
    memory = "external" if case % 3 == 2 else "auto"
    if memory == "external":
        cfg = replace(cfg, fabric=replace(cfg.fabric, act_depth=64))
        try:
            compile_graph(g, cfg, memory="external")
        except Exception as e:  # a band too big for 64 words: the size the error names
            cfg = replace(cfg, fabric=replace(cfg.fabric, act_depth=int(str(e).rsplit(">= ", 1)[1])))
    fused = _check(g, cfg, xs, batch=2, memory=memory)
    plain = _check(g, cfg, xs, batch=2, memory=memory, fuse=False)
    assert len(internal_tensors(fused.graph)) == 1 and not internal_tensors(plain.graph)
    assert fused.external == plain.external == (memory == "external")


def test_a_mismatch_in_a_fused_output_names_the_fused_pass():
    """A wrong code in a fused pass's output is reported at the fused layer (the convolution's name) with its
    tile, macros, pages and instruction, as any convolution's; the internal tensor is not compared."""
    from cimforge.sim.fabric_check import first_divergence
    rng = np.random.default_rng(SEED + 3)
    g = conv_bn_graph(rng, DEFAULT)
    xs = _inputs(g, rng, 1)
    prog = compile_graph(g, DEFAULT)
    got, _ = run_program(prog, xs)
    gold = run_graph(g, xs)
    assert first_divergence(prog, gold, got) is None
    got["z"] = got["z"].copy()
    got["z"].flat[-1] ^= 1
    div = first_divergence(prog, gold, got)
    c, y, x = (int(v) for v in np.unravel_index(got["z"][0].size - 1, got["z"][0].shape))
    assert (div.layer, div.tensor, div.index) == ("conv", "z", (c, y, x)), str(div)
    assert "output-channel tile" in div.detail and "macro(s)" in div.detail and "instruction pc" in div.detail


def test_fused_in_liveness_mode():
    """Fused passes in an activation memory allocated by liveness: the kept tensors equal the golden model's."""
    rng = np.random.default_rng(SEED + 2)
    g = conv_bn_graph(rng, DEFAULT)
    prog = _check(g, DEFAULT, _inputs(g, rng, 3), batch=3, memory="liveness")
    assert prog.kept is not None and "y" not in prog.kept and internal_tensors(prog.graph) == {"y": "conv"}


@pytest.mark.slow  # about 20 s: ResNet-8 compiled twice and run on the ISS
def test_resnet8_fused_on_the_iss():
    """ResNet-8 of the tiny set on the default preset (external mode): all seven BatchNormalizations fuse into
    their convolutions; ISS = golden on every tensor written, no DMA hazard; fewer cycles."""
    from cimforge.compiler.cost import program_timing
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.golden import model_sets as ms
    from cimforge.golden.cli import to_codes
    from cimforge.golden.onnx_import import load_onnx
    g = split_host_tail(load_onnx(str(ms.build("resnet8", seed=0)))).fabric
    xs = {g.inputs[0].name: to_codes(g, ms.sample_inputs("resnet8", 1, seed=0), option="inputs")}
    fused = _check(g, DEFAULT, xs)
    assert fused.external and len(internal_tensors(fused.graph)) == 7
    cycles = program_timing(fused)[-1] + 1
    plain = compile_graph(g, DEFAULT, fuse=False)
    before = program_timing(plain)[-1] + 1
    print(f"resnet8: {before} cycles unfused, {cycles} fused, {len(plain.code)} -> {len(fused.code)} instructions")
    assert cycles < 0.85 * before


def test_layer_cost_of_a_fused_layer():
    """``layer_cost`` of a fused layer: the convolution's passes, each with the epilogue's longer write-back."""
    from cimforge.compiler.cost import layer_cost
    from cimforge.gen.mac_engine import MAC_TIMING
    rng = np.random.default_rng(SEED + 4)
    g = conv_bn_graph(rng, DEFAULT)
    conv, fused = g.layers[0], fuse_graph(g).layers[0]
    a, b = layer_cost(conv, DEFAULT), layer_cost(fused, DEFAULT)
    assert b.compute_cycles - a.compute_cycles in range(1, MAC_TIMING.epilogue * len(b.passes) + 1)
    assert (b.ideal_cycles, b.pages, b.macros) == (a.ideal_cycles, a.pages, a.macros)


@pytest.mark.slow  # about 10 s: ResNet-8 compiled twice through the command line
def test_compile_command_fuses_unless_told_not_to(tmp_path, capsys):
    """``cimforge compile`` fuses by default; ``--no-fuse`` gives the separate depthwise passes: more
    instructions, more predicted cycles, the BatchNormalizations' layers in cycles.json."""
    import json

    from cimforge.cli import main
    from cimforge.golden import model_sets as ms
    model = str(ms.build("resnet8", seed=0))
    runs = {}
    for name, extra in (("fused", []), ("plain", ["--no-fuse"])):
        assert main(["compile", model, "--preset", "default", "--out", str(tmp_path / name), *extra]) == 0
        runs[name] = json.loads((tmp_path / name / "cycles.json").read_text())
    out = capsys.readouterr().out
    print(out)
    fused, plain = ({row["layer"] for row in runs[k]["layers"]} for k in ("fused", "plain"))
    assert fused < plain and len(plain - fused) == 7, sorted(plain - fused)
    assert runs["fused"]["run_cycles"] < 0.85 * runs["plain"]["run_cycles"]


# -- a fabric built without the epilogue (fabric.mac_epilogue = false) ------------------------------------------

NO_EPILOGUE = replace(DEFAULT, fabric=replace(DEFAULT.fabric, mac_epilogue=False))


def test_without_the_epilogue_nothing_fuses_and_the_iss_is_exact():
    seed = SEED + 300
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    g = conv_bn_graph(rng, NO_EPILOGUE)
    prog = _check(g, NO_EPILOGUE, _inputs(g, rng, 2), batch=2)
    assert not internal_tensors(prog.graph)  # the depthwise layer runs as a pass of its own
    assert not any(decode_op(NO_EPILOGUE, w)[1].get("epi") for w in prog.code if decode_op(NO_EPILOGUE, w)[1])


def test_without_the_epilogue_the_verilog_has_no_second_requantiser():
    """The MAC engine's epilogue (its requantiser ``epi_mbqm`` and parameter read port) is left out."""
    from cimforge.gen.emit import design_verilog
    _, with_epi = design_verilog(DEFAULT)
    _, without = design_verilog(NO_EPILOGUE)
    assert "epi_mbqm" in with_epi and "epi_mbqm" not in without
    print(f"Verilog {len(with_epi)} -> {len(without)} bytes")
    assert len(without) < len(with_epi)


@pytest.mark.slow  # about a minute: the first Verilator build of the fabric without the epilogue
@pytest.mark.cocotb
def test_without_the_epilogue_on_the_rtl():
    """Random conv + depthwise 1x1 pairs on the fabric built without the epilogue, in Verilator: bit-exact on
    every tensor, every layer's cycles as predicted."""
    from cimforge.sim.cosim import simulate
    seed = SEED + 301
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    g = conv_bn_graph(rng, NO_EPILOGUE)
    res = simulate(g, NO_EPILOGUE, _inputs(g, rng, 2)["x"])
    assert res.exact, str(res.divergence)
    assert all(r.measured == r.predicted for r in res.mean_rows())
