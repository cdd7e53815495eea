"""The ISA table (gen/isa.py) and the one packer: every opcode listed once, encode/decode derived from the table,
``pack_word`` bit-identical to Amaranth's ``Layout.const`` and checked, activation lanes, STATUS and trace words, and docs/isa.md generated from the table."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.lib import data

from cimforge import get_preset
from cimforge.config import MacroConfig
from cimforge.gen import isa
from cimforge.gen.isa import (INSTRUCTIONS, LANE_BITS, Opcode, decode_op, encode, instr_layout, instr_spec,
                              pack_lanes, pack_lanes_array, pack_word, status_layout, trace_layout, unpack_lanes,
                              unpack_lanes_array, unpack_word)
from cimforge.gen.layouts import BitOp, MacroMode, macro_op_fields, macro_op_layout
from cimforge.presets import PRESETS

SEED = 20261201
ROOT = Path(__file__).resolve().parents[1]


def _random_value(shape, rng):
    """A random in-range value for a layout (a nested dict / list) or a field shape (``rng``: random.Random,
    whose integers have no width limit); the extremes often."""
    if isinstance(shape, (data.StructLayout, data.UnionLayout)):
        fields = list(shape)
        if isinstance(shape, data.UnionLayout):
            fields = [rng.choice(fields)]
        return {name: _random_value(f.shape, rng) for name, f in fields}
    if isinstance(shape, data.ArrayLayout):
        return [_random_value(shape.elem_shape, rng) for _ in range(shape.length)]
    if isinstance(shape, type) and issubclass(shape, isa.py_enum.Enum):
        return rng.choice(list(shape))
    s = Shape.cast(shape)
    lo, hi = (-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1) if s.signed else (0, (1 << s.width) - 1)
    return rng.choice([lo, hi, 0 if lo <= 0 else lo, rng.randint(lo, hi)])


def _layouts(cfg):
    return {"instr": instr_layout(cfg), "desc": isa.desc_layout(cfg), "role": isa.role_layout(cfg),
            "param": isa.param_layout(cfg), "macro_op": macro_op_layout(cfg.macro), "trace": trace_layout(),
            "status": status_layout()}


def test_instructions_list_every_opcode_once():
    assert [s.op for s in INSTRUCTIONS] == list(Opcode)
    assert all(s.name == s.op.name for s in INSTRUCTIONS)
    assert {s.engine for s in INSTRUCTIONS} == {None, "loader", "mac", "pool", "ew", "dma", "graph", "relax", "spmv",
                                                   "lrn", "lut"}
    assert all((s.layout is None) == (s.engine is None) for s in INSTRUCTIONS)
    cfg = get_preset("default")
    assert list(dict(instr_layout(cfg)["args"].shape)) == [s.name.lower() for s in INSTRUCTIONS if s.layout]
    assert all(s.doc.strip() for s in INSTRUCTIONS)


def test_instr_spec_by_opcode_and_value():
    assert instr_spec(Opcode.MAC) is instr_spec(3)
    assert instr_spec(Opcode.LOAD).engine == "loader" and instr_spec(Opcode.SYNC).layout is None
    for bad in (13, 15, -1, "MAC", True, None):
        with pytest.raises(ValueError, match=r"allowed END=0, LOAD=1, SYNC=2, MAC=3, POOL=4, EW=5"):
            instr_spec(bad)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_pack_word_equals_layout_const(preset):
    """The fast packer gives exactly Amaranth's bits for random in-range values of every layout."""
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    for name, layout in _layouts(get_preset(preset)).items():
        for _ in range(30):
            value = _random_value(layout, rng)
            assert pack_word(layout, value) == layout.const(value).as_bits(), (name, value)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_encode_decode_round_trip(preset):
    print(f"seed {SEED}")
    cfg = get_preset(preset)
    rng = random.Random(SEED)
    for spec in INSTRUCTIONS:
        for _ in range(10):
            args = _random_value(spec.layout(cfg), rng) if spec.layout else {}
            word = encode(cfg, spec.op, **args)
            op, got = decode_op(cfg, word)
            assert op == spec.op.value
            if spec.layout is None:
                assert got is None and word == spec.op.value
            else:
                assert got == {k: v.value if isinstance(v, isa.py_enum.Enum) else v for k, v in args.items()}
    assert decode_op(cfg, 15) == (15, None)  # an unknown opcode: the controller stops with an error


@pytest.mark.parametrize("preset", list(PRESETS))
def test_fast_encode_equals_the_layouts_bits(preset):
    """encode's packing from cached field offsets gives Amaranth's bits for the whole instruction word, with
    every field at its minimum and its maximum and at random values; numpy and enum values take the checked
    path and give the same word."""
    print(f"seed {SEED}")
    cfg = get_preset(preset)
    rng = random.Random(SEED)
    lay = instr_layout(cfg)
    for spec in INSTRUCTIONS:
        if spec.layout is None:
            assert encode(cfg, spec.op) == lay.const({"op": spec.op}).as_bits()
            continue
        fields = isa.instr_fields(cfg, spec.op)
        extremes = [{k: (-(1 << (w - 1)) if s else 0) for k, (_, w, s) in fields.items()},
                    {k: ((1 << (w - 1)) - 1 if s else (1 << w) - 1) for k, (_, w, s) in fields.items()}]
        for args in extremes + [_random_value(spec.layout(cfg), rng) for _ in range(10)]:
            args = {k: v.value if isinstance(v, isa.py_enum.Enum) else v for k, v in args.items()}
            want = lay.const({"op": spec.op, "args": {spec.name.lower(): args}}).as_bits()
            assert encode(cfg, spec.op, **args) == want, (spec.name, args)
            as_numpy = {k: np.int64(v) if -(1 << 63) <= v < 1 << 63 else v for k, v in args.items()}
            assert encode(cfg, spec.op, **as_numpy) == want


def test_pack_word_checks_every_field():
    cfg = get_preset("default")
    with pytest.raises(ValueError, match=r"args\.mac\.in_h = 512: allowed 0\.\.511 \(unsigned 9 bits\)"):
        encode(cfg, Opcode.MAC, in_h=512)
    with pytest.raises(ValueError, match=r"args\.pool\.zp_in = -513: allowed -512\.\.511 \(signed 10 bits\)"):
        encode(cfg, Opcode.POOL, zp_in=-513)
    with pytest.raises(ValueError, match=r"no field args\.ew\.bogus .*allowed: a_base, b_base"):
        encode(cfg, Opcode.EW, bogus=1)
    with pytest.raises(ValueError, match="SYNC takes no arguments"):
        encode(cfg, Opcode.SYNC, count=1)
    with pytest.raises(ValueError, match=r"\[3\]\.mult = 2147483648"):
        pack_word(isa.param_layout(cfg), [{}, {}, {}, {"mult": 1 << 31}])
    with pytest.raises(ValueError, match=r"9 elements, allowed at most 8"):
        pack_word(isa.param_layout(cfg), [{}] * 9)
    with pytest.raises(ValueError, match=r"x\[2\] = 256: allowed 0\.\.255"):
        pack_word(macro_op_layout(cfg.macro), {"x": [0, 1, 256]})
    with pytest.raises(ValueError, match=r"x\[0\] = -1"):
        pack_word(macro_op_layout(cfg.macro), {"x": [-1]})  # no silent two's complement of unsigned fields


def test_unpack_word_inverts_pack_word():
    print(f"seed {SEED}")
    cfg = get_preset("isscc22")
    rng = random.Random(SEED)
    for name in ("desc", "role", "param", "trace", "status"):
        layout = _layouts(cfg)[name]
        for _ in range(20):
            value = _random_value(layout, rng)
            assert unpack_word(layout, pack_word(layout, value)) == value


def test_status_and_trace_words():
    st = status_layout()
    assert [(n, f.offset, f.width) for n, f in st] == [("busy", 0, 1), ("done", 1, 1), ("error", 2, 1),
                                                        ("loader_busy", 3, 1)]
    assert unpack_word(st, 0b0110) == {"busy": 0, "done": 1, "error": 1, "loader_busy": 0}
    tr = trace_layout()
    assert tr.size == 64 == isa.host_map(get_preset("default"))[1]["trace"].width
    word = pack_word(tr, {"cycle": 123456, "pc": 7, "op": Opcode.MAC})
    assert word == 123456 | 7 << 32 | 3 << 48
    assert unpack_word(tr, word) == {"cycle": 123456, "pc": 7, "op": 3, "_pad": 0}


def test_pack_lanes():
    assert LANE_BITS == 8
    assert pack_lanes([1, -1, 0x80, 255]) == 0xFF80FF01  # lane 0 in bits 0..7
    assert pack_lanes([]) == 0
    assert unpack_lanes(0xFF80FF01, 5, signed=True) == [1, -1, -128, -1, 0]
    assert unpack_lanes(0xFF80FF01, 4, signed=False) == [1, 255, 128, 255]
    for bad in (256, -129):
        with pytest.raises(ValueError, match=rf"lane 1 = {bad}: allowed -128\.\.255"):
            pack_lanes([0, bad])


@pytest.mark.parametrize("n", [1, 7, 8, 9, 32])
def test_lane_arrays_match_scalar_forms(n):
    """Vectorised forms agree with the scalar ones, words wider than 64 bits included (Python ints)."""
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED + n)
    for signed in (True, False):
        codes = rng.integers(-128, 128, (3, 5, n)) if signed else rng.integers(0, 256, (3, 5, n))
        words = pack_lanes_array(codes)
        assert words.shape == (3, 5) and words.dtype == object
        assert [int(w) for w in words.flat] == [pack_lanes(c) for c in codes.reshape(-1, n)]
        back = unpack_lanes_array(words, n, signed)
        assert back.dtype == np.int64 and np.array_equal(back, codes)
        assert [unpack_lanes(w, n, signed) for w in words.flat] == back.reshape(-1, n).tolist()
    assert pack_lanes_array(np.zeros((0, n), np.int64)).shape == (0,)
    with pytest.raises(ValueError, match="lane code 300"):
        pack_lanes_array(np.full((2, n), 300))


def test_macro_op_fields_checks_and_codes():
    cfg = MacroConfig(rows=4, pages=2, cols=16, max_wb=8, max_ab=5)
    f = macro_op_fields(cfg, page=1, wb=4, ab=3, x=[-4, 3, -1, 0])
    assert f["x"] == [0b11100, 3, 0b11111, 0] and f["wb_log2"] == 2 and f["ab_m1"] == 2
    assert pack_word(macro_op_layout(cfg), f) == macro_op_layout(cfg).const(f).as_bits()
    f = macro_op_fields(cfg, mode=MacroMode.BITWISE, row=3, wb=1, ab=1, w_signed=False, x_signed=False,
                        bop=BitOp.XNOR, word=0xFFFF)
    assert pack_word(macro_op_layout(cfg), f) == macro_op_layout(cfg).const(f).as_bits()
    for kwargs, msg in [({"page": 2}, r"page = 2: allowed 0\.\.1"), ({"row": 4}, r"row = 4: allowed 0\.\.3"),
                        ({"wb": 3}, r"wb = 3: allowed \[1, 2, 4, 8\]"), ({"ab": 6}, r"ab = 6: allowed 1\.\.5"),
                        ({"x": [0] * 5}, "5 activations"), ({"ab": 3, "x": [4]}, r"x\[0\] = 4: allowed -4\.\.3"),
                        ({"ab": 3, "x_signed": False, "x": [-1]}, r"x\[0\] = -1: allowed 0\.\.7")]:
        with pytest.raises(ValueError, match=msg):
            macro_op_fields(cfg, **{"ab": 5, **kwargs})


def test_every_field_is_documented():
    """The field tables carry a doc for every field, and build exactly the layouts the RTL uses."""
    for cfg in (get_preset(p) for p in PRESETS):
        for spec in INSTRUCTIONS:
            if spec.layout is None:
                continue
            fields = spec.layout.fields(cfg)
            assert [f.name for f in fields] == list(dict(spec.layout(cfg))), spec.name
            assert all(f.doc.strip() and "|" not in f.doc for f in fields), spec.name
    assert [f.name for f in status_layout.fields()] == ["busy", "done", "error", "loader_busy"]


def test_docs_isa_md_is_fresh():
    """docs/isa.md is what the ISA table renders (regenerate with the command it names)."""
    committed = (ROOT / "docs" / "isa.md").read_text()
    assert committed == isa.isa_markdown(), f"docs/isa.md is stale: run `{isa.MARKDOWN_COMMAND}`"
    assert isa.MARKDOWN_COMMAND in committed
    for spec in INSTRUCTIONS:
        assert f"| {spec.op.value} | `{spec.name}` |" in committed
