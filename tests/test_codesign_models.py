"""The co-designed digits CNNs of issue 14 (models/ssl_bsq_models.py) on the fabric: the SSL- and BSQ-trained
models compacted and compiled at per-layer precision, bit-exact (instruction-set model here, RTL in the slow
cases), with at least 2x fewer cycles than the dense int8 baseline of the same topology and at most 1 point of
accuracy lost on the 450 held-out digits; a model with three (weight bits, activation bits) pairs and
onnxruntime's int4-weight model bit-exact with the cost model exact."""

from __future__ import annotations

import numpy as np
import pytest

from cimforge.codesign import flow
from cimforge.codesign.importing import load_model
from cimforge.golden.datasets import MODELS_DIR, load_digits_split
from cimforge.golden.runner import run_graph
from cimforge.presets import get_preset

DEFAULT = get_preset("default")
BASELINE = "ssl_dense_cnn_qdq"
CODESIGNED = ("ssl_cnn_qdq", "bsq_cnn_qdq")
INT4 = "bsq_int4_ort_qdq"


def _compiled(name: str, compaction: bool = True) -> flow.Compiled:
    return flow.compile_codesign(load_model(MODELS_DIR / f"{name}.onnx"), DEFAULT, compaction=compaction)


def _accuracy(c: flow.Compiled) -> float:
    s = load_digits_split()
    out = run_graph(c.graph, c.input_codes(s.x_test))[c.graph.outputs[0]]
    return float((out.reshape(len(out), -1).argmax(axis=1) == s.y_test).mean())


def _cycles(c: flow.Compiled) -> float:
    return sum(r.cycles for r in flow.layer_table(c))


@pytest.fixture(scope="module")
def baseline():
    c = _compiled(BASELINE)
    return c, _cycles(c), _accuracy(c), flow.energy_figures(c)["energy_per_inference_nj"]


@pytest.mark.parametrize("name", CODESIGNED)
def test_codesigned_model_iss(name, baseline):
    """Bit-exact on the ISS, its graph outputs equal the uncompacted model's, >= 2x fewer predicted cycles,
    <= 1 point of accuracy lost."""
    c = _compiled(name)
    s = load_digits_split()
    got, gold = flow.run_iss(c, s.x_test[:c.batch])
    assert all(np.array_equal(got[k], gold[k]) for k in gold)
    orig = load_model(MODELS_DIR / f"{name}.onnx")
    want = run_graph(orig.graph, orig.input_codes(s.x_test[:c.batch]))[orig.graph.outputs[0]]
    assert np.array_equal(got[c.graph.outputs[0]], want)
    b, b_cycles, b_acc, b_energy = baseline
    cycles, acc = _cycles(c), _accuracy(c)
    energy = flow.energy_figures(c)["energy_per_inference_nj"]
    print(flow.format_table(name, flow.layer_table(c)))
    print(f"{name}: {cycles:.1f} cycles/image vs {b_cycles:.1f} ({b_cycles / cycles:.2f}x), accuracy "
          f"{100 * acc:.2f}% vs {100 * b_acc:.2f}%, energy {energy:.3f} vs {b_energy:.3f} nJ/image "
          f"({b_energy / energy:.2f}x)")
    assert b_cycles >= 2 * cycles
    assert acc >= b_acc - 0.01


def test_three_precision_pairs_and_int4_model_iss():
    """The BSQ model has >= 3 distinct (weight bits, activation bits) pairs; it and the onnxruntime int4-weight
    model (4-bit weights on every layer) run bit-exact on the ISS."""
    c = _compiled("bsq_cnn_qdq")
    pairs = {p.pair for p in c.precisions.values()}
    print("bsq pairs", sorted(pairs))
    assert len(pairs) >= 3
    c4 = _compiled(INT4, compaction=False)
    assert {p.wb for p in c4.precisions.values()} == {4}
    s = load_digits_split()
    got, gold = flow.run_iss(c4, s.x_test[:c4.batch])
    assert all(np.array_equal(got[k], gold[k]) for k in gold)


@pytest.mark.slow
@pytest.mark.cocotb
def test_codesigned_models_rtl():
    """On the RTL (Verilator, default fabric): the dense int8 baseline, the SSL and BSQ models and the int4 model
    over one run of 22 held-out digits each: every tensor bit-exact, every instruction's retire cycle equal to the
    cost model's, the SSL and BSQ models >= 2x fewer measured cycles than the baseline; energy ratios printed."""
    s = load_digits_split()
    measured = {}
    for name in (BASELINE, *CODESIGNED, INT4):
        c = _compiled(name, compaction=name != INT4)
        x = s.x_test[:c.batch]
        res = flow.run_rtl(c, x)
        assert res["exact"] and res["outputs_equal"], name
        assert res["cycle_exact"], name
        per_image = res["cycles"] / len(x)
        energy = flow.energy_figures(c)["energy_per_inference_nj"]
        measured[name] = (per_image, energy)
        mean = [np.mean([rows[i].measured for rows in res["rows"]]) for i in range(len(res["rows"][0]))]
        print(f"{name}: {per_image:.1f} RTL cycles/image (layers {[round(float(m), 1) for m in mean]}), "
              f"{energy:.3f} nJ/image estimated")
    b_cycles, b_energy = measured[BASELINE]
    for name in CODESIGNED:
        cycles, energy = measured[name]
        print(f"{name}: {b_cycles / cycles:.2f}x fewer RTL cycles, {b_energy / energy:.2f}x less energy than "
              f"{BASELINE}")
        assert b_cycles >= 2 * cycles, name
