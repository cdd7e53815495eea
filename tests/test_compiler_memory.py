"""External-memory mode of the compiler (cimforge.compiler.memory): tensors in the external memory, layers in
row bands staged through the activation memory by DMA, weights streamed from the external memory through the
weight memory. The instruction-set model must equal the golden model on every tensor; the predicted timing must
show no DMA racing an engine on the same words (the ISS moves a tile at once, so it cannot see one).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from cimforge.compiler.compile import compile_graph
from cimforge.compiler.cost import program_timing
from cimforge.compiler.iss import run_program
from cimforge.compiler.memory import check_hazards, sync_stalls
from cimforge.compiler.tiling import CompileError
from cimforge.gen.isa import Opcode, encode
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset
from cimforge.sim.cosim import load_digits_model
from cimforge.sim.random_layers import random_conv_graph, random_grouped_conv_graph

SEED = 11


def _fabric(cfg, **fields):
    return replace(cfg, fabric=replace(cfg.fabric, **fields))


def _inputs(g, rng, n=1):
    return {t.name: rng.integers(t.qmin, t.qmax + 1, (n, *t.shape)).astype(t.dtype) for t in g.inputs}


def _check(g, cfg, xs, **options):
    """Compile external, run the ISS, compare every tensor; returns the program."""
    prog = compile_graph(g, cfg, memory="external", **options)
    assert prog.external
    got, _ = run_program(prog, xs)
    gold = run_graph(g, xs, rounding=cfg.fabric.rounding)
    for name in gold:
        assert np.array_equal(got[name], gold[name]), f"tensor {name!r} differs"
    assert check_hazards(prog) == []
    return prog


@pytest.mark.parametrize("case", range(12))
def test_random_conv_in_bands_equals_golden(case):
    """Random convolutions (strides, dilations, padding, pruned taps, grouped and depthwise) with the smallest
    staging memory: 64 words, or, when not even one output row band fits, the size the error names (which must
    then fit)."""
    rng = np.random.default_rng(SEED + case)
    print(f"seed {SEED + case}")
    cfg = _fabric(get_preset("default"), act_depth=64, ext_latency=int(rng.integers(1, 40)),
                  ext_interval=int(rng.integers(1, 3)))
    g = random_grouped_conv_graph(rng, kmax=3) if case % 3 == 2 else random_conv_graph(rng, cfg, kmax=3)
    try:
        compile_graph(g, cfg, memory="external")
    except CompileError as e:
        msg = str(e)
        assert "fabric.act_depth = 64: allowed fabric.act_depth >= " in msg, msg
        cfg = _fabric(cfg, act_depth=int(msg.rsplit(">= ", 1)[1]))
    prog = _check(g, cfg, _inputs(g, rng, 2), batch=2)
    assert sum(1 for i in prog.instrs if i.op == "DSYNC") >= 2


def test_residual_network_in_tight_staging_memory():
    """The digits ResNet (residual adds, pooling) with 64 activation words: bands of one or two rows, no room
    to double-buffer some layers (then a DSYNC before each load), every tensor exact."""
    g = load_digits_model("digits_resnet_qdq")
    cfg = _fabric(get_preset("default"), act_depth=64)
    rng = np.random.default_rng(SEED)
    prog = _check(g, cfg, _inputs(g, rng, 2), batch=2)
    bands = {layer.name: len(layer_bands_of(prog, cfg, g, layer)) for layer in g.layers if layer.kind == "conv2d"}
    assert max(bands.values()) >= 4, bands


def layer_bands_of(prog, cfg, g, layer):
    return sorted({(i.text) for i in prog.instrs if i.layer == layer.name and i.op == "DMA" and "out" in i.text})


def test_weights_from_external_memory():
    """Weights beyond fabric.weight_depth: page images come by DMA into two halves of the weight memory."""
    g = load_digits_model("digits_cnn_qop")
    cfg = _fabric(get_preset("default"), weight_depth=128)
    rng = np.random.default_rng(SEED)
    prog = _check(g, cfg, _inputs(g, rng, 1))
    assert prog.wmem == [] and prog.ext_init
    wdma = [i for i in prog.instrs if i.op == "DMA" and i.text.startswith("weights")]
    assert len(wdma) >= len(prog.ext_init) // 64


def test_auto_chooses_external_only_when_needed():
    g = load_digits_model("digits_cnn_qop")
    assert not compile_graph(g, get_preset("default")).external
    assert compile_graph(g, _fabric(get_preset("default"), act_depth=128)).external  # its tensors need 130
    assert compile_graph(g, _fabric(get_preset("default"), weight_depth=256)).external  # its weights 320
    with pytest.raises(CompileError, match="memory = 'disk': allowed auto, onchip, liveness, external"):
        compile_graph(g, get_preset("default"), memory="disk")


def test_a_layer_that_cannot_fit_names_the_smallest_buffer():
    """A 3x3 convolution over 40 channels of 30 pixels a row: one output row band needs its 3 input rows and
    the output row; the error names the layer, the buffer and that size, and that size compiles."""
    from cimforge.golden import ir
    from cimforge.sim.random_layers import random_tensor
    rng = np.random.default_rng(SEED)
    x, y = random_tensor("x", (40, 6, 30), rng), random_tensor("y", (8, 6, 30), rng)
    conv = ir.Conv2d(name="wide", inputs=(x,), output=y, weight=rng.integers(-128, 128, (8, 40, 3, 3)).astype(np.int8),
                     bias=np.zeros(8, np.int32), weight_scale=0.005, padding=(1, 1, 1, 1))
    g = ir.Graph("g", (x,), (conv,), ("y",))
    need = 3 * 30 * 5 + 30 * 1  # 3 input rows of 5 words a pixel, one output row of 1 word a pixel
    with pytest.raises(CompileError, match=rf"layer 'wide': one output row band .* needs {need} activation words, "
                                           rf"fabric.act_depth = 256: allowed fabric.act_depth >= {need}"):
        compile_graph(g, _fabric(get_preset("default"), act_depth=256), memory="external")
    _check(g, _fabric(get_preset("default"), act_depth=need), _inputs(g, rng))


def _tall_pool_graph(kind: str, rng):
    """A pool over 40 channels of 12 x 10 pixels (600 activation words) whose every output row reads all 12
    input rows: a global average, an average with a 12 x 3 window whose divisor varies at the border columns
    (padding not counted), a 12 x 2 max with stride 2."""
    from cimforge.golden import ir
    from cimforge.sim.random_layers import random_tensor
    x = random_tensor("x", (40, 12, 10), rng)
    if kind == "gap":
        return ir.Graph("g", (x,), (ir.GlobalAvgPool(name="pool", inputs=(x,), output=random_tensor(
            "y", (40, 1, 1), rng, x.dtype)),), ("y",))
    if kind == "avg_border":
        y = random_tensor("y", (40, 1, 10), rng, x.dtype)
        layer = ir.AvgPool(name="pool", inputs=(x,), output=y, kernel=(12, 3), stride=(1, 1), padding=(0, 1, 0, 1),
                           round_even=True)
    else:
        y = ir.TensorInfo("y", (40, 1, 5), x.dtype, x.scale, x.zero_point)
        layer = ir.MaxPool(name="pool", inputs=(x,), output=y, kernel=(12, 2), stride=(1, 2))
    return ir.Graph("g", (x,), (layer,), ("y",))


@pytest.mark.parametrize("kind", ["gap", "avg_border", "max"])
def test_pools_too_big_for_a_row_band_run_in_channel_tiles(kind):
    """A pool of which not even one output row band fits the activation memory (its 12 input rows are 600
    words, the memory 256) runs channel tile by channel tile: each tile's words of every pixel come in and go
    out as 2-D ``DMA``s (one row per pixel, ``cw`` words apart in the external memory); the ISS equals the golden
    model, no DMA hazard (the RTL: tests/test_user_models.py, ``banded``). Not even one word of every pixel in 64
    words: the error names the layer and that size (one word per pixel: 120 + the output's)."""
    rng = np.random.default_rng([SEED, 5])
    print(f"seed [{SEED}, 5]")
    g = _tall_pool_graph(kind, rng)
    xs = _inputs(g, rng, 2)
    xs["x"][0, :, 0, 0], xs["x"][1] = g.inputs[0].qmin, g.inputs[0].qmax  # the most negative, all largest
    prog = _check(g, _fabric(get_preset("default"), act_depth=256), xs, batch=2)
    from cimforge.gen.isa import decode_op
    dmas = [decode_op(prog.cfg, w)[1] for w in prog.code if decode_op(prog.cfg, w)[0] == Opcode.DMA.value]
    loads = [a for a in dmas if not a["store"] and a["rows"] > 1]
    assert loads and all(a["len"] < 5 and a["ext_stride"] == 5 and a["rows"] == 120 for a in loads), loads
    assert sum(a["len"] for a in loads) == 2 * 5  # every channel word of both images, once
    out_words = g.layers[0].output.shape[1] * g.layers[0].output.shape[2]
    need = 120 + out_words
    with pytest.raises(CompileError, match=rf"layer 'pool': .*one channel word of every pixel.* needs {need} "
                                           rf"activation words, fabric.act_depth = 64: allowed fabric.act_depth >= "
                                           rf"{need}"):
        compile_graph(g, _fabric(get_preset("default"), act_depth=64), memory="external")


def _wide_graph(rng):
    """A 3x3 convolution over 40 channels of 30 pixels a row (1080 activation words, 480 a one-row band)."""
    from cimforge.golden import ir
    from cimforge.sim.random_layers import random_tensor
    x, y = random_tensor("x", (40, 6, 30), rng), random_tensor("y", (8, 6, 30), rng)
    conv = ir.Conv2d(name="wide", inputs=(x,), output=y, weight=rng.integers(-128, 128, (8, 40, 3, 3)).astype(np.int8),
                     bias=np.zeros(8, np.int32), weight_scale=0.005, padding=(1, 1, 1, 1))
    return ir.Graph("g", (x,), (conv,), ("y",))


@pytest.mark.parametrize("memory", ["auto", "external", "onchip", "liveness"])
def test_too_big_names_the_buffer_and_the_size_that_fits_in_every_mode(memory):
    """A model too big for the activation memory in every memory mode: one line naming the layer (or the
    tensor), the buffer and the smallest size that fits, never "allowed batch <= 0"; that size compiles, and
    the program equals the golden model on the ISS."""
    rng = np.random.default_rng(SEED)
    g = _wide_graph(rng)
    band = 3 * 30 * 5 + 30  # tiling modes: one output row band, its 3 input rows and the output row
    whole = 30 * 6 * 5 + 30 * 6  # on chip: every tensor of the image (input and output both live)
    want = {"auto": (band, r"layer 'wide': one output row band"), "external": (band, r"layer 'wide': one output row band"),
            "onchip": (whole, r"the largest: input 'x', 900 words an image"),
            "liveness": (whole, r"the most when layer 'wide' writes its output")}
    need, named = want[memory]
    with pytest.raises(CompileError) as info:
        compile_graph(g, _fabric(get_preset("default"), act_depth=256), memory=memory)
    text = str(info.value)
    print(text)
    assert "\n" not in text and "batch <= 0" not in text
    assert re.search(named, text) and f"fabric.act_depth = 256: allowed fabric.act_depth >= {need}" in text
    prog = compile_graph(g, _fabric(get_preset("default"), act_depth=need), memory=memory)
    xs = _inputs(g, rng)
    got, _ = run_program(prog, xs)
    assert np.array_equal(got["y"], run_graph(g, xs)["y"])
    assert check_hazards(prog) == []


def test_weights_and_parameters_too_big_name_the_layer():
    """The weight memory in external mode (a page image must fit half of it), the parameter memory (never
    streamed) and the pages (a reduction is never spilled) name the layer and the smallest size."""
    rng = np.random.default_rng(SEED)
    g = _wide_graph(rng)
    cfg = get_preset("default")
    with pytest.raises(CompileError, match=r"^layer 'wide': a page image of 40 words does not fit half of the weight "
                                           r"memory \(fabric.weight_depth = 64\): allowed fabric.weight_depth >= 80$"):
        compile_graph(g, _fabric(cfg, weight_depth=64), memory="external")
    _check(g, _fabric(cfg, weight_depth=80), _inputs(g, rng))  # one tap's 40 rows a page image
    digits = load_digits_model("digits_cnn_qop")
    need = len(compile_graph(digits, cfg).pmem)
    with pytest.raises(CompileError, match=rf"parameter memory too small for graph .*: needs {need} words \(layer "
                                           rf"'[^']+' is the first past it\), fabric.param_depth = 4: allowed "
                                           rf"fabric.param_depth >= {need}"):
        compile_graph(digits, _fabric(cfg, param_depth=4))
    # a reduction longer than the pages of every macro hold (VGG-19's fc6 on the imagenet preset): the pages
    from cimforge.golden import ir
    from cimforge.sim.random_layers import random_tensor
    x, y = random_tensor("x", (2100,), rng), random_tensor("y", (8,), rng)
    fc = ir.Dense(name="fc", inputs=(x,), output=y, weight=rng.integers(-128, 128, (8, 2100)).astype(np.int8),
                  bias=np.zeros(8, np.int32), weight_scale=0.005)
    g = ir.Graph("g", (x,), (fc,), ("y",))
    with pytest.raises(CompileError, match=r"^layer 'fc': a reduction of 2100 elements is 33 tiles of 64 rows, 9 pages "
                                           r"per macro split over all 4 macros; macro.pages = 8: allowed macro.pages >= 9"):
        compile_graph(g, cfg)
    nine = replace(cfg, macro=replace(cfg.macro, pages=9))
    xs = _inputs(g, rng)
    got, _ = run_program(compile_graph(g, nine), xs)
    assert np.array_equal(got["y"], run_graph(g, xs)["y"])


def test_4096_channel_dense_layers_equal_golden():
    """AlexNet's, ZFNet-512's and VGG-19's classifier widths on the imagenet preset: a dense layer of 4096 outputs
    (512 words per output pixel; resident, one pass of all 512 N tiles) and one of 4096 inputs, on chip and in
    external mode: the ISS equals the golden model, no DMA hazard, and the MAC fields hold the widths (isa.CW,
    CH, CNT)."""
    from cimforge.gen.isa import decode_op
    from cimforge.golden import ir
    from cimforge.sim.random_layers import random_tensor
    rng = np.random.default_rng(SEED)
    x, h, y = random_tensor("x", (64,), rng), random_tensor("h", (4096,), rng), random_tensor("y", (8,), rng)
    fc1 = ir.Dense(name="fc1", inputs=(x,), output=h, weight=rng.integers(-128, 128, (4096, 64)).astype(np.int8),
                   bias=rng.integers(-2000, 2000, 4096).astype(np.int32), weight_scale=0.004, act_min=0)
    fc2 = ir.Dense(name="fc2", inputs=(h,), output=y, weight=rng.integers(-128, 128, (8, 4096)).astype(np.int8),
                   bias=np.zeros(8, np.int32), weight_scale=0.0005)
    cfg = get_preset("imagenet")
    fields = lambda p, f: max(a[f] for op, a in (decode_op(cfg, w) for w in p.code) if op == Opcode.MAC.value)  # noqa: E731
    one = ir.Graph("fc4096", (x,), (fc1,), ("h",))  # 32 pages of 16 macros: every N tile resident at once
    xs = _inputs(one, rng)
    prog = compile_graph(one, cfg)
    assert not prog.external and fields(prog, "nt") == 512 and fields(prog, "out_cw") == 512
    got, _ = run_program(prog, xs)
    assert np.array_equal(got["h"], run_graph(one, xs, rounding=cfg.fabric.rounding)["h"])
    prog = _check(ir.Graph("wide_fc", (x,), (fc1, fc2), ("y",)), cfg, xs)
    assert fields(prog, "cin") == 4096 and fields(prog, "out_cw") == 512


def test_external_memory_too_small_names_the_layer():
    """Tensors and weights beyond fabric.ext_depth: the error names the first layer whose weights are past it
    and the smallest depth, which then compiles and runs exactly (VGG-19 on the imagenet preset: 20 055 768
    words of 2**24)."""
    from cimforge.golden import ir
    from cimforge.sim.random_layers import random_tensor
    rng = np.random.default_rng(SEED)
    x, h, y = random_tensor("x", (64,), rng), random_tensor("h", (64,), rng), random_tensor("y", (512,), rng)
    fc1 = ir.Dense(name="fc1", inputs=(x,), output=h, weight=rng.integers(-128, 128, (64, 64)).astype(np.int8),
                   bias=np.zeros(64, np.int32), weight_scale=0.002)
    fc2 = ir.Dense(name="fc2", inputs=(h,), output=y, weight=rng.integers(-128, 128, (512, 64)).astype(np.int8),
                   bias=np.zeros(512, np.int32), weight_scale=0.002)
    g = ir.Graph("g", (x,), (fc1, fc2), ("y",))  # 80 tensor words, 512 + 4096 weight words
    cfg = _fabric(get_preset("default"), ext_depth=1024)
    with pytest.raises(CompileError, match=r"^external memory too small for graph 'g': tensors and weights need "
                                           r"(\d+) words \(layer 'fc2''s weights are the first past it\), "
                                           r"fabric.ext_depth = 1024: allowed fabric.ext_depth >= \1 "
                                           r"\(preset 'imagenet' has 33554432\)$") as e:
        compile_graph(g, cfg, memory="external")
    need = int(str(e.value).split(">= ", 1)[1].split()[0])
    _check(g, _fabric(cfg, ext_depth=need), _inputs(g, rng))


def test_sizes_beyond_the_configuration_say_so():
    """A size an error asks for that no configuration allows (more parameter words than 32 768, more external
    words than 2**26) says so, with the range; a valid one (DenseNet-121's 17 089 parameter words, VGG-19's
    20 055 768 external words, 25 pages) adds nothing on the largest preset, and names it on a smaller one."""
    from cimforge.compiler.tiling import beyond_range
    cfg = get_preset("imagenet")
    assert beyond_range(cfg, "fabric", "param_depth", 40000) == (", beyond the configuration's range (an integer "
                                                                 "in 4..32768)")
    assert beyond_range(cfg, "fabric", "ext_depth", (1 << 26) + 1).startswith(", beyond the configuration's range")
    assert beyond_range(cfg, "fabric", "param_depth", 17089) == beyond_range(cfg, "macro", "pages", 25) == ""
    assert beyond_range(cfg, "fabric", "ext_depth", 20055768) == ""
    # on a smaller preset, the presets that have the size
    assert beyond_range(get_preset("default"), "fabric", "param_depth", 17089) == " (preset 'imagenet' has 17408)"


def test_hazard_check_sees_a_missing_dsync():
    """Dropping the DSYNC that waits for an input band lets the band's compute read words the DMA is still
    writing: the check names both instructions."""
    g = load_digits_model("digits_cnn_qop")
    cfg = _fabric(get_preset("default"), act_depth=64)
    prog = compile_graph(g, cfg, memory="external")
    assert check_hazards(prog) == []
    pc = next(i.pc for i in prog.instrs if i.op == "DSYNC" and i.text == "input band in")
    nop = encode(cfg, Opcode.SYNC)  # same length, waits for nothing the DMA does
    bad = replace(prog, code=prog.code[:pc] + [nop] + prog.code[pc + 1:])
    hz = check_hazards(bad)
    assert hz and "DMA into activation words" in hz[0], hz


def test_stalls_are_the_dsync_waits():
    g = load_digits_model("digits_cnn_qop")
    prog = compile_graph(g, _fabric(get_preset("default"), act_depth=64), memory="external")
    stamps = program_timing(prog)
    st = sync_stalls(prog, stamps)
    waits = {prog.instrs[pc].op for pc, (_, w) in enumerate(st) if w}
    assert waits <= {"DSYNC", "SYNC"} and "DSYNC" in waits
    for pc, (e, w) in enumerate(st):
        assert stamps[pc] >= e and (w == 0 or stamps[pc] - e == w)


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "autoencoder" else pytest.mark.slow)
                                  for n in ("autoencoder", "resnet8", "ds_cnn", "mobilenet_v1_025")])
def test_tiny_set_on_the_iss(name):
    """Each MLPerf Tiny model in external mode on the default fabric (its parameter, descriptor and program
    memories widened as in tests/test_tiny_set_rtl.py): the ISS equals the golden model on every tensor, no DMA
    races an engine, and the schedule overlaps: less than half the cycles wait on the external memory."""
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.golden import model_sets as ms
    from cimforge.golden.cli import to_codes
    from cimforge.golden.onnx_import import load_onnx
    from test_tiny_set_rtl import TINY_FABRIC
    g = split_host_tail(load_onnx(str(ms.build(name, seed=0)))).fabric
    xs = {g.inputs[0].name: to_codes(g, ms.sample_inputs(name, 1, seed=0), option="inputs")}
    prog = compile_graph(g, TINY_FABRIC)
    assert prog.external
    got, _ = run_program(prog, xs)
    gold = run_graph(g, xs, rounding=TINY_FABRIC.fabric.rounding)
    for t in got:  # every tensor the program writes: all but those a fused epilogue keeps internal
        assert np.array_equal(got[t], gold[t]), f"{name}: tensor {t!r} differs"
    stamps = program_timing(prog)
    assert check_hazards(prog, stamps) == []
    waits = sum(w for pc, (_, w) in enumerate(sync_stalls(prog, stamps)) if prog.instrs[pc].op == "DSYNC")
    print(f"{name}: {stamps[-1] + 1} cycles, {waits} waiting on the external memory")
    assert waits < stamps[-1] / 2 or name == "autoencoder"  # its weights are used once: transfer-bound


def test_liveness_reuses_words_after_the_last_reader():
    """memory='liveness': on chip, a tensor's words reused once its last reader has run. The digits ResNet
    needs fewer words than with every tensor kept; the kept tensors (the outputs among them) equal the golden
    model, for a batch of images; too small a memory names the size that fits."""
    g = load_digits_model("digits_resnet_qdq")
    cfg = get_preset("default")
    rng = np.random.default_rng(SEED)
    keep_all = compile_graph(g, cfg, batch=3, memory="onchip")
    live = compile_graph(g, cfg, batch=3, memory="liveness")
    used = lambda p: max(pl.base + pl.words for pl in p.tensors.values())  # noqa: E731
    assert used(live) < used(keep_all) and not live.external
    assert set(g.outputs) <= live.kept and live.kept < set(g.tensors)
    xs = _inputs(g, rng, 3)
    got, _ = run_program(live, xs)
    gold = run_graph(g, xs, rounding=cfg.fabric.rounding)
    assert set(got) == live.kept
    for name in got:
        assert np.array_equal(got[name], gold[name]), name
    need = used(live)
    with pytest.raises(CompileError, match=rf"need {need} words with liveness reuse \(the most when layer '[^']+' "
                                           rf"writes its output\), fabric.act_depth = 64: allowed "
                                           rf"fabric.act_depth >= {need}"):
        compile_graph(g, _fabric(cfg, act_depth=64), batch=3, memory="liveness")
    with pytest.raises(CompileError, match=r"merge_images=True; without --per-image-passes"):
        compile_graph(g, cfg, memory="liveness", merge_images=False)


def test_prefetch_leaves_room_for_the_outputs_before_its_unit():
    """A prefetched input band stays pinned while the units before its own (which load nothing) place their
    outputs; placed at the bottom of the free space it once left only a hole too small for the next output
    once the current unit's input was freed (QOperator ResNet-8 with uint8 weights and activations, batch 2:
    "no staging room for 1024 words"). Every tensor exact on the ISS, no DMA racing an engine."""
    from cimforge.compiler.lowering.host import split_host_tail
    from cimforge.golden import model_sets as ms
    from cimforge.golden.onnx_import import load_onnx
    g = split_host_tail(load_onnx(ms.build("resnet8", "qop", False, activations="uint8", weights="uint8"))).fabric
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    xs = _inputs(g, rng, 2)
    prog = compile_graph(g, get_preset("default"), batch=2)
    assert prog.external
    got, _ = run_program(prog, xs)
    gold = run_graph(g, xs, rounding=prog.cfg.fabric.rounding)
    compared = [name for name in gold if name in got]
    assert set(g.outputs) <= set(compared) and len(compared) > len(g.layers) // 2, compared
    for name in compared:
        assert np.array_equal(got[name], gold[name]), f"tensor {name!r} differs"
    assert check_hazards(prog) == []
