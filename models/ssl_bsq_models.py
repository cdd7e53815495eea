"""Train and export the co-designed digits CNNs of issue 14: SSL structured sparsity and BSQ bit-level sparsity
with per-layer precision, on the digits CNN in its original (not co-designed) topology, and the dense int8
baseline of that topology.

Run from the project root (needs the optional ``train`` extra, i.e. torch; CPU, a few minutes)::

    .venv/bin/python models/ssl_bsq_models.py [--out DIR]

The topology is the first digits CNN's: conv3x3(1->8, pad 1) ReLU maxpool2, conv3x3(8->16, pad 1) ReLU maxpool2,
flatten, FC(64->10): the 3x3 stem reduces over K = 9 rows and the second conv over K = 72 (two 64-row tiles, 16
filters in two column tiles), the shapes that measured 10 % and 45-50 % utilisation.

Phases (all seeded, one thread, deterministic torch algorithms, so a rerun writes the same bytes):

1. **Dense**: trained with batch normalisation, which is then folded into the convolutions (every later phase
   trains the folded convolutions with their biases).
2. **Dense int8 baseline** (``ssl_dense_cnn_qdq.onnx``): the folded model quantized after training, int8
   weights (symmetric, per output channel) and uint8 activations (scales from the calibration split's maxima).
3. **SSL** (``ssl_cnn_qdq.onnx``): the group lasso of Wen et al. (NeurIPS 2016), ``SSL_LAMBDA * sum_g ||w_g||``
   over filter-wise groups (a filter with its bias), channel-wise groups (an input channel of conv2, the FC inputs
   of a conv2 channel) and shape-wise groups (each (channel, tap) column of conv2, each stem tap, whole kernel rows
   and columns), :data:`EPOCHS_SSL` epochs; then the weakest groups are zeroed to the array's budgets
   (:func:`ssl_masks`: conv2 keeps its :data:`CONV2_FILTERS` strongest filters, one 8-lane column tile, and
   loses its weakest kernel row and column, 2 x 2 taps: 4 gather steps), the masks are frozen and the network is
   fine-tuned with quantisation in the loop (int8 weights, the activations of :data:`ACT_BITS`, straight-through
   rounding), :data:`EPOCHS_FINETUNE` epochs.
4. **BSQ** (``bsq_cnn_qdq.onnx``): the SSL network's weights as bit planes (Yang et al., ICLR 2021): each
   layer's integer codes are ``sum_b 2^b (p_b - n_b)`` over continuous planes ``p_b, n_b`` in [0, 2] rounded in
   the forward pass, a group lasso over each layer's planes weighted by the layer's share of weights and bits,
   and every :data:`BSQ_PERIOD` epochs a requantisation: planes re-split exactly from the rounded codes, all-zero
   most significant planes dropped, the least significant plane dropped (the step doubled) while that moves the
   layer's weights by less than :data:`BSQ_LSB_TOL` of their norm. Each layer is then taken down to the widest
   macro weight precision whose magnitude bits do not exceed its planes (:func:`macro_bits`; the planes in
   between are dropped too) and fine-tuned at it (:data:`EPOCHS_BSQ_FINETUNE` epochs).
5. **onnxruntime int4** (``bsq_int4_ort_qdq.onnx``): the dense folded model quantized by onnxruntime with
   ``weight_type=QInt4`` (opset 21 QDQ), the int4-weight model the importer must take.

Activation precision is stated in the models themselves: a uint8 tensor of ``b`` bits is the output of a
``Clip(0, (2^b - 1) * scale)`` before its ``QuantizeLinear`` (the importer fuses it into the producer's output
clamp), and the graph input's ``b`` bits are a ``Clip`` of its codes right after the input's ``QuantizeLinear``
(which :func:`cimforge.codesign.precision.host_input_clamps` moves to the host side of a run). Weights are int8
initializers whose values span the layer's precision.

``ssl_bsq_models.json`` records each model's accuracy (golden integer model) on the 450 held-out digits.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from cimforge.golden.datasets import load_digits_split
from cimforge.models.make_digits_models import _torch  # seeded, one thread, deterministic algorithms

HERE = Path(__file__).resolve().parent

SEED = 0
EPOCHS_DENSE = 60
EPOCHS_SSL = 30
EPOCHS_FINETUNE = 60
EPOCHS_BSQ = 30
EPOCHS_BSQ_FINETUNE = 40
BSQ_PERIOD = 10
BSQ_LSB_TOL = 0.08
SSL_LAMBDA = 1e-2
BSQ_LAMBDA = 5e-3
BSQ_LR = 1e-3
#: Activation precision of the co-designed models: the graph input and each conv's output (uint8 codes).
ACT_BITS = {"input": 3, "conv1": 4, "conv2": 5}
#: The array's budgets SSL prunes to (default preset: 64 rows, 8 output lanes per column tile).
CONV2_FILTERS = 8
CONV1_FILTERS = 8
#: Kernel rows of conv2 dropped (the weakest; a border row is cropped off the padding).
CONV2_ROWS_DROPPED = 1
#: Kernel columns of conv2 dropped (the weakest): 2 x 2 taps of 8 channels, 4 gather steps per operation.
CONV2_COLS_DROPPED = 1


# -- the network ---------------------------------------------------------------------------------------------


def build_dense(nn):
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 10))


def fold(torch, model) -> dict:
    """Batch normalisation folded into the convolutions: ``{w1, b1, w2, b2, wf, bf}`` as float tensors."""
    out = {}
    for i, (ci, bi) in enumerate(((0, 1), (4, 5)), start=1):
        conv, bn = model[ci], model[bi]
        k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        out[f"w{i}"] = (conv.weight * k[:, None, None, None]).detach().clone()
        out[f"b{i}"] = ((conv.bias - bn.running_mean) * k + bn.bias).detach().clone()
    out["wf"], out["bf"] = model[9].weight.detach().clone(), model[9].bias.detach().clone()
    return out


class Quant:
    """What the forward pass quantizes: weight bits per layer (None: float), activation bits and scales."""

    def __init__(self, w_bits=None, a_bits=None, a_scale=None):
        self.w_bits = w_bits or {}
        self.a_bits = a_bits or {}
        self.a_scale = a_scale or {}


def _ste_round(torch, x):
    return x + (torch.round(x) - x).detach()


def weight_codes(torch, w, bits: int):
    """Symmetric per-output-channel codes in ``+-(2^(bits-1) - 1)`` and their scales (1 for a zero filter)."""
    q = 2 ** (bits - 1) - 1
    m = w.detach().abs().reshape(w.shape[0], -1).max(dim=1).values
    s = torch.where(m > 0, m / q, torch.ones_like(m))
    shape = (-1,) + (1,) * (w.dim() - 1)
    return torch.clamp(_ste_round(torch, w / s.reshape(shape)), -q, q), s


def qweight(torch, w, bits):
    if bits is None:
        return w
    codes, s = weight_codes(torch, w, bits)
    return codes * s.reshape((-1,) + (1,) * (w.dim() - 1))


def qact(torch, x, bits, scale):
    """uint8 codes of ``bits`` bits at ``scale`` (zero point 0), straight-through rounding."""
    if bits is None:
        return x
    return torch.clamp(_ste_round(torch, x / scale), 0, 2 ** bits - 1) * scale


def forward(torch, p: dict, x, q: Quant, taps: dict | None = None):
    """The folded network; ``taps`` collects the pre-quantisation activations (calibration)."""
    F = torch.nn.functional
    x = qact(torch, x, q.a_bits.get("input"), q.a_scale.get("input"))
    y = F.relu(F.conv2d(x, qweight(torch, p["w1"], q.w_bits.get("w1")), p["b1"], padding=1))
    if taps is not None:
        taps["conv1"] = y
    y = F.max_pool2d(qact(torch, y, q.a_bits.get("conv1"), q.a_scale.get("conv1")), 2)
    y = F.relu(F.conv2d(y, qweight(torch, p["w2"], q.w_bits.get("w2")), p["b2"], padding=1))
    if taps is not None:
        taps["conv2"] = y
    y = F.max_pool2d(qact(torch, y, q.a_bits.get("conv2"), q.a_scale.get("conv2")), 2)
    y = F.linear(y.flatten(1), qweight(torch, p["wf"], q.w_bits.get("wf")), p["bf"])
    if taps is not None:
        taps["logits"] = y
    return y


def calibrate(torch, p: dict, x, q: Quant) -> dict:
    """Activation scales from the calibration images, tensor after tensor with the earlier ones quantized: the
    input's ``1 / (2^b - 1)`` (images are in [0, 1]), each conv output's 99.9th percentile (its maximum at 8
    bits) over ``2^b - 1``, the logits' maximum magnitude over 127."""
    xt = torch.from_numpy(x)
    bits = {k: q.a_bits.get(k, 8) for k in ("input", "conv1", "conv2")}
    scales = {"input": 1.0 / (2 ** bits["input"] - 1)}
    for k in ("conv1", "conv2", "logits"):
        taps = {}
        known = {j: bits[j] for j in scales}
        with torch.no_grad():
            forward(torch, p, xt, Quant(q.w_bits, known, dict(scales)), taps)
        if k == "logits":
            scales[k] = float(taps[k].abs().max()) / 127
        else:
            t = taps[k].flatten()
            top = float(t.max()) if bits[k] == 8 else float(torch.quantile(t[t > 0], 0.999))
            scales[k] = top / (2 ** bits[k] - 1)
    return scales


def train(torch, params, loss_extra, x, y, epochs: int, lr: float, masks: dict | None = None, hook=None):
    """Adam with a cosine schedule, batch 32, seeded shuffling; ``masks`` keep pruned weights at zero."""
    g = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(params.values() if isinstance(params, dict) else params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    ce = torch.nn.CrossEntropyLoss()
    for epoch in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 32):
            b = perm[i:i + 32]
            opt.zero_grad()
            loss = ce(loss_extra["forward"](xt[b]), yt[b]) + loss_extra["reg"]()
            loss.backward()
            opt.step()
            if masks:
                with torch.no_grad():
                    for k, m in masks.items():
                        params[k].mul_(m)
        sched.step()
        if hook is not None:
            hook(epoch)


# -- SSL -----------------------------------------------------------------------------------------------------


def ssl_penalty(torch, p: dict) -> "torch.Tensor":
    """The group lasso ``sum_g ||w_g||_2`` over SSL's groups: filter-wise (a filter with its bias), channel-wise
    (an input channel of conv2; the FC inputs of one conv2 channel), shape-wise (each (channel, tap) column of
    conv2, each tap of the stem) and whole kernel rows and columns (the shapes the compiler crops)."""
    w1, b1, w2, b2, wf = p["w1"], p["b1"], p["w2"], p["b2"], p["wf"]

    def lasso(x, dims):
        return torch.sqrt((x ** 2).sum(dim=dims) + 1e-12).sum()

    r = torch.sqrt((w1 ** 2).sum((1, 2, 3)) + b1 ** 2 + 1e-12).sum()
    r = r + torch.sqrt((w2 ** 2).sum((1, 2, 3)) + b2 ** 2 + 1e-12).sum()
    r = r + lasso(w2, (0, 2, 3)) + lasso(wf.reshape(wf.shape[0], w2.shape[0], -1), (0, 2))
    r = r + lasso(w2, (0,)) + lasso(w1, (0, 1))
    return r + lasso(w2, (0, 1, 3)) + lasso(w2, (0, 1, 2)) + lasso(w1, (0, 1, 3)) + lasso(w1, (0, 1, 2))


def ssl_masks(torch, p: dict) -> dict:
    """Zero the weakest groups to the array's budgets: conv2 keeps its :data:`CONV2_FILTERS` strongest filters,
    the stem its :data:`CONV1_FILTERS` strongest (conv2's input channels), and a kernel row or column of either
    conv whose norm is under 5 % of the strongest goes (a shape the compiler crops)."""
    def norms(w, dims):
        return torch.sqrt((w.detach() ** 2).sum(dim=dims))

    m = {k: torch.ones_like(p[k]) for k in ("w1", "b1", "w2", "b2", "wf")}
    f2 = norms(torch.cat([p["w2"].reshape(16, -1), p["b2"][:, None]], 1), (1,))
    drop2 = torch.argsort(f2)[:16 - CONV2_FILTERS]
    f1 = norms(torch.cat([p["w1"].reshape(8, -1), p["b1"][:, None]], 1), (1,)) * norms(p["w2"], (0, 2, 3))
    drop1 = torch.argsort(f1)[:8 - CONV1_FILTERS]
    for f in drop2.tolist():
        m["w2"][f] = 0
        m["b2"][f] = 0
        m["wf"][:, 4 * f:4 * f + 4] = 0
    for f in drop1.tolist():
        m["w1"][f] = 0
        m["b1"][f] = 0
        m["w2"][:, f] = 0
    for axis, n_drop in ((2, CONV2_ROWS_DROPPED), (3, CONV2_COLS_DROPPED)):
        for i in torch.argsort(norms(p["w2"].detach() * m["w2"], tuple(d for d in range(4) if d != axis)))[:n_drop]:
            idx = [slice(None)] * 4
            idx[axis] = int(i)
            m["w2"][tuple(idx)] = 0
    for key in ("w1", "w2"):
        w = p[key].detach() * m[key]
        for axis in (2, 3):
            n = norms(w, tuple(d for d in range(4) if d != axis))
            for i in torch.nonzero(n < 0.05 * n.max()).flatten().tolist():
                idx = [slice(None)] * 4
                idx[axis] = i
                m[key][tuple(idx)] = 0
    return m


# -- BSQ -----------------------------------------------------------------------------------------------------


class BitPlanes:
    """A layer's weights as ``n`` positive and negative bit planes and a step: ``w = step * round(sum_b 2^b
    (p_b - n_b))`` (BSQ's parametrisation, planes continuous in [0, 2] while training)."""

    def __init__(self, torch, w, bits: int = 7, mask=None):
        self.torch, self.mask = torch, mask
        m = float(w.detach().abs().max())
        self.step = m / (2 ** bits - 1) if m > 0 else 1.0
        self.split(torch.round(w.detach() / self.step).clamp(-(2 ** bits - 1), 2 ** bits - 1), bits)

    def split(self, codes, bits: int):
        torch = self.torch
        mag, sign = codes.abs().to(torch.int64), codes >= 0
        planes = [((mag >> b) & 1).to(torch.float32) for b in range(bits)]
        self.pos = [torch.nn.Parameter(torch.where(sign, pl, torch.zeros_like(pl))) for pl in planes]
        self.neg = [torch.nn.Parameter(torch.where(sign, torch.zeros_like(pl), pl)) for pl in planes]

    @property
    def bits(self) -> int:
        return len(self.pos)

    def params(self):
        return self.pos + self.neg

    def codes(self):
        torch = self.torch
        s = sum((2 ** b) * (self.pos[b] - self.neg[b]) for b in range(self.bits))
        top = 2 ** self.bits - 1
        c = torch.clamp(_ste_round(torch, s), -top, top)
        return c * self.mask if self.mask is not None else c

    def weight(self):
        return self.codes() * self.step

    def reg(self):
        torch = self.torch
        return sum(torch.sqrt((self.pos[b] ** 2).sum() + (self.neg[b] ** 2).sum() + 1e-12) for b in range(self.bits))

    def clamp_(self):
        with self.torch.no_grad():
            for t in self.params():
                t.clamp_(0, 2)

    def requantize(self):
        """Exact planes from the rounded codes; all-zero top planes dropped; the lowest plane dropped while that
        moves the weights by less than :data:`BSQ_LSB_TOL` of their norm."""
        torch = self.torch
        with torch.no_grad():
            codes = torch.round(sum((2 ** b) * (self.pos[b] - self.neg[b]) for b in range(self.bits)))
            if self.mask is not None:
                codes = codes * self.mask
            bits = max(1, int(codes.abs().max()).bit_length())
            norm = float((codes * self.step).norm()) or 1.0
            while bits > 1:
                half = torch.round(codes / 2)
                if float((half * 2 * self.step - codes * self.step).norm()) > BSQ_LSB_TOL * norm:
                    break
                codes, self.step, bits = half, self.step * 2, max(1, int(half.abs().max()).bit_length())
            self.split(codes, bits)


def macro_bits(magnitude_bits: int) -> int:
    """The macro weight precision a layer of ``magnitude_bits`` planes is taken to: the widest of 2, 4, 8 whose
    symmetric codes (``+-(2^(wb-1) - 1)``) have at most that many magnitude bits (the planes between two macro
    precisions are dropped too, and the fine-tuning recovers them)."""
    return max(b for b in (2, 4, 8) if b - 1 <= max(1, magnitude_bits))


# -- export --------------------------------------------------------------------------------------------------


def export_qdq(path: Path, p: dict, w_codes: dict, w_scales: dict, a_bits: dict, a_scale: dict):
    """A QDQ ONNX model (opset 17) of the folded network with integer weights ``w_codes`` (int8 values in their
    precision), per-channel ``w_scales``, uint8 activations of ``a_bits`` (Clip-stated ranges) at ``a_scale``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def qdq(src, name, scale, dtype=np.uint8, zp=0):
        s, z = const(f"{name}_scale", np.float32(scale)), const(f"{name}_zp", dtype(zp))
        nodes.append(helper.make_node("QuantizeLinear", [src, s, z], [f"{name}_q"], name=f"{name}_Q"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", s, z], [name], name=f"{name}_DQ"))
        return name

    def clip(src, name, bits, scale):
        hi = const(f"{name}_hi", np.float32((2 ** bits - 1) * scale))
        lo = const(f"{name}_lo", np.float32(0))
        nodes.append(helper.make_node("Clip", [src, lo, hi], [name], name=f"{name}_Clip"))
        return name

    def weighted(kind, name, x, in_scale, key, bias_key, **attrs):
        wq = np.asarray(w_codes[key], dtype=np.int8)
        ws = np.asarray(w_scales[key], dtype=np.float32)
        w = const(f"{name}_w_q", wq)
        nodes.append(helper.make_node("DequantizeLinear", [w, const(f"{name}_w_scale", ws),
                                                           const(f"{name}_w_zp", np.zeros(len(ws), np.int8))],
                                      [f"{name}_w"], name=f"{name}_w_DQ", axis=0))
        bs = (np.float32(in_scale) * ws).astype(np.float32)
        bq = np.round(p[bias_key].detach().numpy().astype(np.float64) / bs).astype(np.int32)
        nodes.append(helper.make_node("DequantizeLinear", [const(f"{name}_b_q", bq), const(f"{name}_b_scale", bs),
                                                           const(f"{name}_b_zp", np.zeros(len(bs), np.int32))],
                                      [f"{name}_b"], name=f"{name}_b_DQ", axis=0))
        nodes.append(helper.make_node(kind, [x, f"{name}_w", f"{name}_b"], [f"{name}_out"], name=name, **attrs))
        return f"{name}_out"

    s_in = a_scale["input"]
    x = "image"
    sz = const("image_scale", np.float32(s_in))
    zz = const("image_zp", np.uint8(0))
    nodes.append(helper.make_node("QuantizeLinear", [x, sz, zz], ["image_q"], name="image_Q"))
    xq = "image_q"
    if a_bits.get("input", 8) < 8:
        nodes.append(helper.make_node("Clip", ["image_q", const("image_lo", np.uint8(0)),
                                               const("image_hi", np.uint8(2 ** a_bits["input"] - 1))],
                                      ["image_qc"], name="image_bits"))
        xq = "image_qc"
    nodes.append(helper.make_node("DequantizeLinear", [xq, sz, zz], ["image_dq"], name="image_DQ"))
    t = weighted("Conv", "conv1", "image_dq", s_in, "w1", "b1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    t = clip(t, "conv1_relu", a_bits.get("conv1", 8), a_scale["conv1"])
    t = qdq(t, "conv1_act", a_scale["conv1"])
    nodes.append(helper.make_node("MaxPool", [t], ["pool1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]))
    t = qdq("pool1", "pool1_act", a_scale["conv1"])
    t = weighted("Conv", "conv2", t, a_scale["conv1"], "w2", "b2", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    t = clip(t, "conv2_relu", a_bits.get("conv2", 8), a_scale["conv2"])
    t = qdq(t, "conv2_act", a_scale["conv2"])
    nodes.append(helper.make_node("MaxPool", [t], ["pool2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]))
    t = qdq("pool2", "pool2_act", a_scale["conv2"])
    nodes.append(helper.make_node("Flatten", [t], ["flat"], name="flatten"))
    t = qdq("flat", "flat_act", a_scale["conv2"])
    t = weighted("Gemm", "fc", t, a_scale["conv2"], "wf", "bf", transB=1)
    t = qdq(t, "logits_act", a_scale["logits"], np.int8)
    nodes.append(helper.make_node("Identity", [t], ["logits"], name="logits_out"))
    graph = helper.make_graph(nodes, "digits_cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                                  ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="cimforge")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())


def golden_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the golden integer model of ``path`` (4-bit tensors widened, as the fabric runs it)."""
    from cimforge.codesign.importing import load_model
    from cimforge.golden.runner import run_float

    graph = load_model(path).original
    out = run_float(graph, x)[graph.outputs[0]]
    return float((out.reshape(len(out), -1).argmax(axis=1) == y).mean())


def quantized_codes(torch, p: dict, w_bits: dict) -> tuple[dict, dict]:
    codes, scales = {}, {}
    for k, b in w_bits.items():
        c, s = weight_codes(torch, p[k].detach(), b)
        codes[k] = c.numpy().astype(np.int8)
        scales[k] = s.numpy().astype(np.float32)
    return codes, scales


def ort_int4(float_params: dict, torch, out_path: Path, x_cal: np.ndarray):
    """onnxruntime's QInt4-weight static quantization (opset 21 QDQ) of the folded dense model."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Folded(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.c2 = torch.nn.Conv2d(8, 16, 3, padding=1)
            self.fc = torch.nn.Linear(64, 10)
            with torch.no_grad():
                for mod, w, b in ((self.c1, "w1", "b1"), (self.c2, "w2", "b2"), (self.fc, "wf", "bf")):
                    mod.weight.copy_(float_params[w])
                    mod.bias.copy_(float_params[b])

        def forward(self, x):
            F = torch.nn.functional
            y = F.max_pool2d(F.relu(self.c1(x)), 2)
            y = F.max_pool2d(F.relu(self.c2(y)), 2)
            return self.fc(y.flatten(1))

    batches = iter([{"image": x_cal[i:i + 1]} for i in range(len(x_cal))])
    reader = type("Reader", (CalibrationDataReader,), {"get_next": lambda self: next(batches, None)})()

    import warnings
    with tempfile.TemporaryDirectory() as tmp:
        fpath = Path(tmp) / "float.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Folded().eval(), (torch.zeros(1, 1, 8, 8),), str(fpath), dynamo=False,
                              opset_version=17, input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
        import onnx.version_converter
        onnx.save(onnx.version_converter.convert_version(onnx.load(str(fpath)), 21), str(fpath))
        quantize_static(str(fpath), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt4)
    m = onnx.load(str(out_path))
    onnx.save(m, str(out_path))


def _phase(torch, p: dict, cache: Path | None, name: str, run) -> None:
    """Run a training phase on ``p``, or (development) reuse its result from ``cache``."""
    path = cache / f"{name}.pt" if cache is not None else None
    if path is not None and path.exists():
        with torch.no_grad():
            for k, v in torch.load(path).items():
                p[k].copy_(v)
        return
    run()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach() for k, v in p.items()}, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: beside this script)")
    parser.add_argument("--only", choices=["dense", "ssl", "bsq", "int4"], action="append",
                        help="write only these models (development)")
    parser.add_argument("--cache", type=Path, help="keep trained phases here and reuse them (development)")
    args = parser.parse_args(argv)
    out, only = args.out, set(args.only or ["dense", "ssl", "bsq", "int4"])
    out.mkdir(parents=True, exist_ok=True)
    torch = _torch()
    split = load_digits_split()
    xt, yt, xc = split.x_train, split.y_train, split.x_cal
    report = {"seed": SEED, "act_bits": ACT_BITS, "models": {}}

    # 1. dense, batch norm folded
    torch.manual_seed(SEED)
    model = build_dense(torch.nn)
    train(torch, list(model.parameters()), {"forward": lambda b: model.train()(b), "reg": lambda: 0},
          xt, yt, EPOCHS_DENSE, 3e-3)
    model.eval()
    p = {k: torch.nn.Parameter(v) for k, v in fold(torch, model).items()}

    def record(name, path, **info):
        acc = golden_accuracy(path, split.x_test, split.y_test)
        report["models"][name] = {"file": path.name, "golden_accuracy": acc, **info}
        print(f"{name}: {100 * acc:.2f}% on {len(split.y_test)} held-out digits  {info}")

    # 2. dense int8 baseline
    wb8 = {"w1": 8, "w2": 8, "wf": 8}
    q8 = Quant(w_bits=wb8)
    scales8 = calibrate(torch, p, xc, q8)
    if "dense" in only:
        codes, wsc = quantized_codes(torch, p, wb8)
        path = out / "ssl_dense_cnn_qdq.onnx"
        export_qdq(path, p, codes, wsc, {}, scales8)
        record("ssl_dense_cnn_qdq", path, weight_bits=wb8, act_bits={"input": 8, "conv1": 8, "conv2": 8})
    if "int4" in only:
        path = out / "bsq_int4_ort_qdq.onnx"
        ort_int4(p, torch, path, xc)
        record("bsq_int4_ort_qdq", path, weight_bits={"w1": 4, "w2": 4, "wf": 4},
               act_bits={"input": 8, "conv1": 8, "conv2": 8})
    if not only & {"ssl", "bsq"}:
        (out / "ssl_bsq_models.json").write_text(json.dumps(report, indent=2) + "\n")
        return 0

    # 3. SSL: group lasso, prune to the budgets, masked fine-tuning with quantisation in the loop
    torch.manual_seed(SEED)
    _phase(torch, p, args.cache, "ssl_lasso", lambda: train(
        torch, p, {"forward": lambda b: forward(torch, p, b, Quant()),
                   "reg": lambda: SSL_LAMBDA * ssl_penalty(torch, p)}, xt, yt, EPOCHS_SSL, 1e-3))
    masks = ssl_masks(torch, p)
    with torch.no_grad():
        for k, m in masks.items():
            p[k].mul_(m)
    qa = Quant(w_bits=wb8, a_bits=dict(ACT_BITS))
    qa.a_scale = calibrate(torch, p, xc, qa)
    _phase(torch, p, args.cache, "ssl_finetuned", lambda: train(
        torch, p, {"forward": lambda b: forward(torch, p, b, qa), "reg": lambda: 0}, xt, yt, EPOCHS_FINETUNE, 3e-3,
        masks=masks))
    if "ssl" in only:
        codes, wsc = quantized_codes(torch, p, wb8)
        path = out / "ssl_cnn_qdq.onnx"
        export_qdq(path, p, codes, wsc, ACT_BITS, qa.a_scale)
        record("ssl_cnn_qdq", path, weight_bits=wb8, act_bits=ACT_BITS,
               kept={"conv1_filters": int(masks["b1"].sum()), "conv2_filters": int(masks["b2"].sum())})

    # 4. BSQ on the SSL network: bit planes, plane group lasso, periodic requantisation
    if "bsq" in only:
        torch.manual_seed(SEED)
        planes = {k: BitPlanes(torch, p[k], 7, masks[k]) for k in ("w1", "w2", "wf")}
        total = sum(p[k].numel() for k in planes) * 7

        def bsq_forward(b):
            pp = dict(p)
            for k, bp in planes.items():
                pp[k] = bp.weight()
            return forward(torch, pp, b, Quant(a_bits=dict(ACT_BITS), a_scale=qa.a_scale))

        def bsq_reg():
            return BSQ_LAMBDA * sum(bp.reg() * p[k].numel() * bp.bits / total for k, bp in planes.items())

        def hook(epoch):
            for bp in planes.values():
                bp.clamp_()
            if (epoch + 1) % BSQ_PERIOD == 0:
                for bp in planes.values():
                    bp.requantize()

        for _ in range(EPOCHS_BSQ // BSQ_PERIOD):
            params = [t for bp in planes.values() for t in bp.params()] + [p["b1"], p["b2"], p["bf"]]
            train(torch, params, {"forward": bsq_forward, "reg": bsq_reg}, xt, yt, BSQ_PERIOD, BSQ_LR, hook=hook)
        # the planes each layer kept, down to the macro precision they fit, then quantisation-aware fine-tuning
        # at that precision (the requantisation's last plane drop has had no training to recover from)
        bits = {k: macro_bits(bp.bits) for k, bp in planes.items()}
        with torch.no_grad():
            for k, bp in planes.items():
                p[k].copy_(bp.weight())
        qb = Quant(w_bits=bits, a_bits=dict(ACT_BITS), a_scale=qa.a_scale)
        train(torch, p, {"forward": lambda b: forward(torch, p, b, qb), "reg": lambda: 0}, xt, yt, EPOCHS_BSQ_FINETUNE,
              3e-3, masks=masks)
        codes, wsc = quantized_codes(torch, p, bits)
        path = out / "bsq_cnn_qdq.onnx"
        export_qdq(path, p, codes, wsc, ACT_BITS, qa.a_scale)
        record("bsq_cnn_qdq", path, weight_bits=bits, act_bits=ACT_BITS,
               planes={k: bp.bits for k, bp in planes.items()})
    (out / "ssl_bsq_models.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
