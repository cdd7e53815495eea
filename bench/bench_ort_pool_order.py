"""How onnxruntime's float32 average pools round, and why the fabric cannot reproduce their ties.

The FLOAT_TIES gap of tests/test_model_sets.py: in QDQ form an average pool runs in float32 between a
DequantizeLinear and a QuantizeLinear (the same scale on both sides), so an output whose exact mean lies half
way between two codes is rounded by whatever float32 error the kernel's sum carried: up, down or to even. The
fabric's integer pool rounds every tie to even, exactly. To agree on the ties the fabric would have to repeat
the kernel's float32 additions in the kernel's order, and this bench measures that order is not the obvious
one: it compares onnxruntime (CPU provider, optimisations off, as the reference runs) with a float32 sum in
row-major window order, then counts, on random int8 codes, how the ties come out.

    .venv/bin/python bench/bench_ort_pool_order.py [--trials 30] [--seed 1]

Measured on the development machine (x86-64, AVX2): the row-major float32 sum differs from onnxruntime's result
on 30 % of 2x2 windows, 0 % of 3x3 windows and 70-97 % of global pools (8x8, 7x7, 56x56), i.e. the kernel
accumulates 2x2 windows and whole planes in another order (vectorised partial sums), which the MLAS library
chooses by kernel shape and by the CPU's vector width; and of the ties of a QDQ 2x2 pool on random codes (24 % of
its outputs) onnxruntime rounds 1893 up and 1845 down, 75.6 % of them to even: the rest follow the float32 error,
which no integer rule of the codes reproduces without the kernel's own order of additions.
"""

from __future__ import annotations

import argparse

import numpy as np


def _session(op: str, kernel, shape, graph_nodes=None, inputs=None, initializers=(), out_type=None):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    attrs = {} if op == "GlobalAveragePool" else {"kernel_shape": kernel, "strides": kernel}
    nodes = graph_nodes or [helper.make_node(op, ["x"], ["y"], **attrs)]
    g = helper.make_graph(nodes, "pool", inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", out_type or TensorProto.FLOAT, None)], list(initializers))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _row_major_mean(w: np.ndarray) -> np.float32:
    acc = np.float32(0)
    for v in w.ravel():
        acc = np.float32(acc + v)
    return np.float32(acc / np.float32(w.size))


def float_order(trials: int, rng) -> None:
    print("float32 pools: onnxruntime vs a row-major float32 sum / count (values spanning 7 decades)")
    for op, k, shape in [("AveragePool", 2, (1, 3, 6, 6)), ("AveragePool", 3, (1, 3, 9, 9)),
                         ("GlobalAveragePool", None, (1, 3, 8, 8)), ("GlobalAveragePool", None, (1, 5, 7, 7)),
                         ("GlobalAveragePool", None, (1, 2, 56, 56))]:
        sess = _session(op, [k, k] if k else None, shape)
        kk = k or shape[2]
        differ = total = 0
        for _ in range(trials):
            x = (rng.standard_normal(shape) * np.float32(10.0) ** rng.integers(-3, 4, shape)).astype(np.float32)
            y = sess.run(None, {"x": x})[0]
            for c in range(shape[1]):
                for oy in range(shape[2] // kk):
                    for ox in range(shape[3] // kk):
                        w = x[0, c, oy * kk:(oy + 1) * kk, ox * kk:(ox + 1) * kk]
                        total += 1
                        differ += _row_major_mean(w) != y[0, c, oy, ox]
        name = f"{op} {kk}x{kk}" if k else f"{op} {shape[2]}x{shape[3]}"
        print(f"  {name:24s} {differ:5d} of {total:5d} outputs differ ({100 * differ / total:5.1f} %)")


def qdq_ties(trials: int, rng) -> None:
    from onnx import TensorProto, helper, numpy_helper

    print("QDQ 2x2 average pool on int8 codes (DequantizeLinear -> AveragePool -> QuantizeLinear, one scale):")
    shape = (1, 8, 16, 16)
    up = down = even = ties = outputs = 0
    for _ in range(trials):
        s = np.float32(rng.uniform(0.005, 0.2))
        inits = [numpy_helper.from_array(s, "s"), numpy_helper.from_array(np.int8(0), "z")]
        nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
                 helper.make_node("AveragePool", ["xf"], ["yf"], kernel_shape=[2, 2], strides=[2, 2]),
                 helper.make_node("QuantizeLinear", ["yf", "s", "z"], ["y"])]
        sess = _session("", None, shape, nodes, [helper.make_tensor_value_info("x", TensorProto.INT8, shape)], inits,
                        TensorProto.INT8)
        x = rng.integers(-128, 128, shape).astype(np.int8)
        y = sess.run(None, {"x": x})[0].astype(np.int64)
        total = x.astype(np.int64).reshape(1, 8, 8, 2, 8, 2).sum(axis=(3, 5))  # 4 * the exact mean
        tie = total % 4 == 2
        lo = (total - 2) // 4  # the code below a tie
        outputs += total.size
        ties += int(tie.sum())
        up += int((tie & (y == lo + 1)).sum())
        down += int((tie & (y == lo)).sum())
        even += int((tie & (y == np.where(lo % 2 == 0, lo, lo + 1))).sum())
    print(f"  {ties} ties in {outputs} outputs ({100 * ties / outputs:.1f} %): onnxruntime rounds {up} up, "
          f"{down} down; {even} ({100 * even / max(1, ties):.1f} %) to even, as the fabric does")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"seed {args.seed}, {args.trials} trials")
    float_order(args.trials, rng)
    qdq_ties(args.trials, rng)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
