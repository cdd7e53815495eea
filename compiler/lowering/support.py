"""The operator support table (docs/operators.md), rendered from the registries: for every IR layer kind
(:data:`cimforge.golden.ir.LAYER_KINDS`) the ONNX operators that import to it
(:data:`cimforge.golden.onnx_import.IMPORTS_TO`), its golden operator (:data:`cimforge.golden.runner.LAYER_FUNCTIONS`)
and where it runs (:data:`cimforge.compiler.lowering.LOWERINGS`: a fabric lowering, the host side of a run, or the
golden model only). ``python -m cimforge.compiler.lowering.support --markdown > docs/operators.md``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["operators_markdown", "MARKDOWN_COMMAND", "where_it_runs"]

MARKDOWN_COMMAND = "python -m cimforge.compiler.lowering.support --markdown > docs/operators.md"

_INTRO = """\
Every layer kind of the IR (golden/ir.py), the ONNX operators the importer turns into it, the golden operator
that computes it, and where it runs in a simulation: on the fabric (the lowering that maps it onto an engine),
on the **host** side of a run (no engine; the golden operator computes it from the fabric's output), or in the
**golden only** (the compiler refuses it with a `CompileError` naming the layer and its kind). How the golden
model is judged against onnxruntime: docs/golden.md; adding a kind: docs/adding-an-operation.md.

A graph that ends in host-side layers (a classifier's softmax) runs as
`split = cimforge.compiler.lowering.host.split_host_tail(graph)`: `compile_graph(split.fabric, ...)` compiles
everything before them, and `split.finish(tensors)` applies the tail's golden operators to the fabric's output
tensors (tested against the ISS: equal to the golden model on every tensor)."""

_NOTES = """\
## Which computation each operator reproduces, and what is exact

**QuantizeLinear / DequantizeLinear** of either domain: com.microsoft's (`quantize_static`'s `UseQDQContribOps`,
also its way to int4 weights) are the ONNX operators. Activations are int8 or uint8; int16 is refused by node.

**Softmax.** Two golden computations, one per form, each the one that reproduces onnxruntime's result:

* `QLinearSoftmax` (com.microsoft, the QOperator form) is computed as onnxruntime's CPU kernel does: a table of
  `float32(exp((i - 255 + b) * s_in))` for `i = x - max(x) + 255` (computed in double; `b = max(0, log(FLT_MAX
  / D) - 5) / s_in` keeps the sum of `D` entries finite), a float32 sum in element order, then
  `rint(t * floor(1 / s_out) / sum) + zp_out` saturated to the dtype. This is float arithmetic in the same order
  as the kernel, so it is bit-exact (tests/test_golden_ops_operators.py: 0 LSB on every case, int8 and uint8,
  opset 12's flattened axes and opset 13's single axis). TFLite's integer softmax was not chosen: it is a
  different function of the codes (its own exp and reciprocal approximations) and would differ from
  onnxruntime by 1 LSB on a visible fraction of the outputs, for no hardware gain (no engine runs either).
* `DequantizeLinear -> Softmax -> QuantizeLinear` (QDQ, or a model written so) is the real softmax of the
  dequantized codes in float64, quantized with round half to even. onnxruntime computes the softmax in float32
  with its own exp; the two agree except where a value falls within float32 rounding of a quantisation tie
  (measured: >= 99.9 % identical, max 1 LSB).

**LRN** is only ever between a `DequantizeLinear` and a `QuantizeLinear` (onnxruntime does not quantize it).
With numerics "fabric" (the default) it is the integer form the `LRN` engine computes (golden/lrn.py, docs/lrn.md):
`d = q - zp_in`, the window sum `S` of `d**2` (exact), `y = zp_out + round(d * g(S))` with `g(S) = (s_in /
s_out) (bias + alpha / size s_in**2 S)**-beta` read from a per-layer table of 31-bit fixed-point values at
`S = k 2**t` with integer linear interpolation (built at import in float64, stored in the layer as integers).
Measured against onnxruntime layer by layer: 100 % identical on every LRN layer of AlexNet, ZFNet-512 and
Inception-v1 (both forms), and on random codes of strong LRNs (tests/test_golden_lrn.py, odd sizes: onnxruntime
refuses even ones). With numerics "onnx" it is the ONNX definition in float64 on the dequantized input, then
quantized (golden only).

**Element-wise tables** (`lut`: Sigmoid, Tanh, LeakyRelu, HardSigmoid, HardSwish, Elu, Gelu, ..., `x *
Sigmoid(x)`, a decomposed `x * Clip(x + 3, 0, 6) / 6`, com.microsoft `QLinearSigmoid` / `QLinearLeakyRelu`).
An element-wise float operator whose data is a function of one tensor's codes (a dequantized tensor, another
table's float value, `x` and `Sigmoid(x)` together) and whose other inputs are scalar constants maps each input
code to one value, whatever the rest of the tensor holds; so when its result is quantized the layer is a table
of 256 output codes. The importer evaluates the operators with onnxruntime itself at the 256 codes, each one
as a one-node model with the reference's session options (golden/lut.py), and its QuantizeLinear too: the
table is onnxruntime's own kernel (MLAS's polynomial Sigmoid and Tanh included), exact by construction
(tests/test_golden_lut.py: every code, random scales, int8 and uint8; within 1 LSB of the float64 definitions).
A chain of tables is composed into one table of the chain's first input, and tables nothing reads are
dropped. The `LUT` engine (gen/lut.py) copies the table from the parameter memory into registers (3 words on
the default preset) and then looks up one activation word per cycle, all lanes at once. A table's float value
read by an operator that does not commute with quantisation (an average pool, an add of another tensor) is
quantized into a copy of the model's activation dtype first in numerics "fabric" (one extra rounding, as for
the float chains below); in numerics "onnx" it is a `("table", ...)` leaf of the `float_chain`, exact. Read by
one that commutes with it (MaxPool, GlobalMaxPool, Pad by zero, nearest Resize, Reshape, Flatten), the table is
quantized like that operator's output and the operator runs on the codes: exact. A constant that varies by channel
(PRelu's learned slope of shape `(C, 1, 1)`, `(1, C, 1, 1)` or `(C,)`, a `Sub` or `Div` of a per-channel constant)
makes one table per channel, evaluated by onnxruntime the same way with the codes laid out along the last axis;
the `LUT` engine's `per_channel` mode then loads channel by channel the channel's table and rewrites that
channel's lane of every pixel (a read-modify-write of its word), so it costs `lanes` times the cycles of one
table (`C (H W + table words)`), on a layer that is a small part of a network's work. A constant that varies
along another axis is refused by node name; a product of two different tensors is a `mul` (below).

**Nearest-neighbour resizes** (`resize`: `Resize` in mode `nearest`, the upsampling of U-Net, FPN and YOLO
decoders). A copy of codes, so exact: `y[c, oy, ox] = x[c, rows[oy], cols[ox]]`, with the source row and column
of every output row and column computed by onnxruntime itself (the node, its attributes and constant `scales` or
`sizes`, run once at import on a tensor of pixel indices), so every `coordinate_transformation_mode` and
`nearest_mode` is onnxruntime's own. An output quantisation that differs from the input's makes it a requantising
copy. On the fabric it is `EW` copies (compiler/lowering/resize.py): per output row, one copy per residue class of
the smallest period of the column map (2 for an upsampling by 2, 1 for a downsampling), with the source and
output pixel strides of that class; an upsampling by `f` costs `f` copies of `W` pixels per output row, one word
per cycle each. In external-memory mode a band of output rows stages the source rows from the first to the last
it copies. `linear` and `cubic` resizes interpolate and are refused by node name.

**Products of two tensors** (`mul`: QDQ `Mul`, com.microsoft `QLinearMul`; squeeze-and-excitation's `x *
Sigmoid(conv(GAP(x)))`, a gate of one value per channel `(C, 1, 1)` broadcast over the `(C, H, W)` plane, or
two tensors of one shape). TFLite's integer product: `(a - zp_a) (b - zp_b)` exactly (at most 255 x 255), then
one requantisation by `s_a s_b / s_out`. onnxruntime multiplies in float32, so the two differ only where its
float rounding meets a quantisation tie (the user models of tests/test_user_models.py: 100 % identical). The
`EW` engine runs it in its `mul` mode at one word per cycle; a per-channel gate is read at pixel stride 0 (one
word per channel word for every pixel, `b_stride` 0), and in external-memory mode each row band loads the
whole gate. Other broadcasts (one value per pixel, `(1, H, W)`) are refused by node name.

**Adds of a per-channel tensor** (`add` with a `(C, 1, 1)` second operand: a global-context block's `x +
transform(GAP(x))`, QDQ `Add` or `QLinearAdd`, either operand order) are the residual add's integer scheme with
the per-channel operand read at pixel stride 0, as the gate of a product, whole in every row band.

**Differences of two tensors** (`Sub` of two computed tensors, left in float by onnxruntime: a denoiser's `y -
noise`, a centring `x - GAP(x)`) are `a + (-b)`: `-b` is a `lut` of `b`'s codes into the quantisation of scale
`s_b` and zero point `qmin + qmax - zp_b` (code `qmin + qmax - q`: exact), then the residual `add`.

**Float chains.** onnxruntime leaves LRN and BatchNormalization in float, and the operators after them too
until the next quantized one (AlexNet: `LRN -> MaxPool -> QuantizeLinear`; ShuffleNet in QOperator form:
`BatchNormalization -> Relu -> Reshape -> Transpose -> Reshape -> QuantizeLinear`). A MaxPool, Reshape or
channel shuffle after such a float result is imported by quantizing the float result like the chain's output
and running the operator on the codes: exact, because a max and a permutation commute with a monotonic
quantisation. A float result that reaches an operator that does not commute with quantisation (an add, an
average) is imported in one of two forms, `load_onnx(path, numerics=...)`:

* `numerics="fabric"` (the default, what `cimforge sim` and `cimforge compile` run): the float result is
  quantized first into an int8 tensor `<name>/quantized` whose range covers every value the chain's input codes
  can give (calibration-style scale and zero point, so nothing saturates), and the operator runs on its codes
  with the existing kinds: ResNet-50 and ShuffleNet in QDQ form (`Sum -> Relu -> AveragePool -> Reshape ->
  QuantizeLinear`: an `add` with its ReLU clamp, then an `avgpool`), and in QOperator form
  (`BatchNormalization -> Sum -> Relu -> QuantizeLinear`: each BatchNormalization a depthwise 1x1 `conv2d`,
  then an `add`; where ResNet-50 reads the residual stream's float value again in the next block, it reads its
  quantized copy). That extra rounding is not what onnxruntime computes: measured on one input each
  (`layerwise`), the QDQ tail's pooled tensor is 95.4 % identical (max 1 LSB) in ResNet-50, and the QOperator
  residual sums 70-80 % (max 2 LSB, 12 where a residual stream saturated its int8 copy).
* `numerics="onnx"` (what `cimforge golden`, bench/bench_models.py and the model-set tests judge): every
  operator onnxruntime computes in float32 (BatchNormalization, Sum, Add, Mul, Relu, average pools, between a
  DequantizeLinear and a QuantizeLinear) is one golden-only `float_chain` layer that evaluates the chain in
  float32 in onnxruntime's order and quantizes its end; a float value read again later (the QOperator residual
  stream) is re-evaluated from its quantized leaves, so it is the same float value. A chain read by an
  operator the chain cannot carry (an element-wise table) is quantized into a copy over the range
  its leaves' codes can give, one extra rounding, which the agreement report then shows. Measured: ResNet-50 and
  ShuffleNet then meet the agreement bound in both forms (>= 99.99 % identical, max 1 LSB). The fabric has
  no float engine: an exact fabric form needs an add whose inputs carry a per-channel affine and an average
  over the add's int32 sums (wider than the fabric's int8 tensors).

**Mul / QLinearMul / Add / QLinearAdd
by a per-channel constant** (DenseNet-121's BatchNormalization decomposed into a product and a sum) are the
per-channel affine below, with a scale `a` or a shift `b` only: DenseNet-121 meets the agreement bound in both
forms.

**Average pools in QDQ form** (`DequantizeLinear -> AveragePool / GlobalAveragePool -> QuantizeLinear`) are
computed by onnxruntime in float32 with its MLAS pooling kernels, whose summation order depends on the geometry
(whole-plane windows: four lanes then `(l0 + l2) + (l1 + l3)`; width stride <= 2: column sums then across the
columns; otherwise row-major), and `QuantizeLinear` rounds ties to even. The golden model reproduces that
(`method="float"`, with `load_onnx(numerics="onnx")`): identical to onnxruntime on every element, ties and
float32 near-ties included (tests/test_golden_ops_operators.py, every kernel). The fabric's POOL engine
computes the integer form (`method="integer"`, the default `numerics="fabric"`: window sum and fixed-point
requantisation, exact ties to even by the POOL instruction's `round_even` field, which the importer sets on
every ONNX average pool; a padded pool whose divisor varies at the border runs as one POOL per part of equal
divisor). It equals onnxruntime except where float32 resolves a tie an ulp either way (22.500002 for 22.5),
which no integer rule reproduces: tests/test_model_sets.py FABRIC_GAPS lists the measured cases. The
BatchNormalization affine below likewise targets onnxruntime's float32 evaluation.

**BatchNormalization** left between `DequantizeLinear` and `QuantizeLinear` (not folded into a convolution:
onnxruntime quantizes between the convolution and it, or it follows an add or a concatenation) is the
per-channel affine `a x + b` (`a = scale / sqrt(var + eps)`, `b = B - mean a`) as a depthwise 1x1 `conv2d`
(a diagonal `dense` on a vector), quantized as onnxruntime quantizes convolution weights: per channel symmetric
int8, `w = +-|w|` and `s_w = |a| / |w|` (the weight exact up to float32 rounding of the scale), and an int32
bias at `s_in s_w`. The bias is the one rounded quantity (its step is `s_in s_w / s_out`, about 0.01-0.02
output LSB), so an input code whose real result lies closer than that to a rounding tie could come out 1 LSB
from onnxruntime's float BatchNormalization. Each channel therefore takes, of the magnitudes `|w|` in 64..127
and the bias rounded to nearest or one step either side (all equally valid quantisations), the one whose
integer result equals the quantized real affine on the most of the 256 input codes (single rounding first,
then double); usually that is every code, so the layer is exact. A channel where no choice fits every code
(two near-ties at once) takes magnitude 127 and solves for the scale as well: the multipliers that put every
code's result in its rounding interval form one interval (per bias near the nearest), whose middle becomes the
weight scale, checked in fixed point. The target is onnxruntime's float32 evaluation (`x * new_scale +
new_bias`, `new_scale = scale / sqrt(var + eps)` in float32). Measured: every BatchNormalization, Mul and Add
layer of the MLPerf Tiny models is then exact on every element (the autoencoder, ResNet-8 QOperator and DS-CNN
100 % identical, 0 LSB end to end, in the fabric's numerics).

**Sum** of two inputs is exactly an `add` (TFLite's integer addition). Of `n > 2` inputs it is a chain of
`n - 1` adds whose inner sums are quantized like the output: each link rounds once more, so the result is
within 1 LSB of onnxruntime's float sum but not >= 99.9 % identical (measured 94 % for three inputs), and an
inner sum saturates where the partial sum leaves the output's range. ResNet-50's Sums have two inputs.

**Channel shuffle** (`Reshape (N, g, C/g, H, W) -> Transpose (0, 2, 1, 3, 4) -> Reshape (N, C, H, W)`, in QDQ
or on codes) is a 1x1 `conv2d` whose weights are the permutation matrix (`w[b g + a, a C/g + b] = 1`), weight
scale 1 and bias 0, so the MAC engine runs it with no new RTL. Input and output share the quantisation, so the
requantisation multiplier is exactly 1.0: `QuantizeMultiplier(1.0) = (2**30, 1)` and
`MultiplyByQuantizedMultiplier(x, 2**30, 1) = x` for every accumulator in both rounding forms (`double`:
`SRDHM(2x, 2**30) = x`, no right shift; `single`: `(x 2**30 + 2**29) >> 30 = x`; tested for |x| up to 2**30),
so the codes are copied exactly.

**Concatenations of partial words** (inputs before the last whose channels are not a multiple of the lanes:
4 + 4 channels on 8 lanes). The `EW` engine copies whole words, so the compiler rewrites such a layer
(compiler/concat_placement.py): per input a 1x1 *placement* convolution (a dense layer for vectors) with weight
1 from its channel `c` to output channel `offset + c`, 0 elsewhere, weight scale 1, into the output's
quantisation (multiplier exactly 1.0 for an input of that quantisation, else the concatenation's own
requantisation of it; the other channels hold the output zero point), then `Add`s of the placements in order,
exact because every operand has the output's quantisation (TFLite's addition then makes no rounding) and all but
one summand of each channel are the zero point. Bit-exact (tests/test_compiler_concat_placement.py; on the RTL,
tests/test_user_models.py), at one MAC pass per input and `n - 1` adds instead of `n` copies.

**Concatenations along a spatial axis.** Pixels are stored row after row, so along the height each input is a
run of the output's consecutive pixels: one `EW` copy per input at its pixel offset (requantising as a channel
concatenation does). The same holds along the width of one-row tensors, which is how a YOLO head concatenates
per-scale predictions reshaped to `(N, C, H*W)` (a `(C, L)` tensor is stored as one row), in row bands too. Along
the width of multi-row tensors, or along the height in external-memory mode (bands map output rows to input
rows one to one), the compiler refuses the layer by name.

**Average pools with `ceil_mode` 1.** `ceil_mode` is end padding enough for the last partial window (a window
that would start in it is dropped, as onnxruntime does). Its padded taps add nothing to the window sum; the
divisor follows onnxruntime's kernels, measured on onnxruntime 1.32: with `count_include_pad` 0 the taps inside
the input; with `count_include_pad` 1 the float pool of the QDQ form divides by the taps inside the input and
the explicit pads (`AvgPool.counted_padding`; its sums then come in the generic kernel's row-major order) and
QLinearAveragePool by the whole window. A divisor that varies by position runs as one `POOL` per part of equal
divisor.

**The float pool's summation order.** In numerics `onnx` the golden model sums a QDQ average pool's float32
values in the order of the kernel onnxruntime runs, so that a sum landing on a quantisation tie rounds alike:
MLAS's up to opset 18, the generic kernel's row-major order from opset 19 (the opset that added dilations to
`AveragePool`; measured, onnxruntime 1.32: the MLAS order then differs on half the windows,
`AvgPool.generic_order`).

**Constant folding.** A Reshape, Flatten, Squeeze, Unsqueeze or Transpose of a constant, and a
QuantizeLinear of one (Inception-v1 reshapes its classifier weights in the graph, and onnxruntime then
quantizes them as an activation), are computed at import: exact.

**Squeeze / Unsqueeze** of an activation (`GlobalAveragePool -> Squeeze -> Gemm`, an `Unsqueeze`d classifier
output) are a `reshape`: the same codes, so exact; the batch axis 0 is never removed or inserted. A tensor of
any rank with one axis above 1 is stored as the vector it is.

**Pad** (mode `constant`, by real zero: `0.0` on a float tensor, the zero point on codes; only the H and W axes,
non-negative) is a depthwise 1x1 `conv2d` of weight 1 and weight scale 1 with the Pad's padding: a padded tap
reads the input's zero point and every other element is copied with the multiplier exactly 1.0 (as the channel
shuffle's, below), so it is exact; a Pad of the float graph input (onnxruntime's QOperator form keeps it before
the input's QuantizeLinear) pads the quantized input. Modes `reflect` and `edge` (PyTorch's ReflectionPad2d
and ReplicationPad2d: style transfer, CycleGAN, super-resolution) copy codes: a `resize` gather whose row and
column maps repeat the mirrored or the border rows and columns (`numpy.pad` of the indices), in row bands too.
Mode `wrap` is refused by name.

**A Relu or Clip left in float** (QOperator form with `ActivationSymmetric`: `DequantizeLinear -> Relu ->
QuantizeLinear`, the float result also read by a pool or as the graph output) clamps values its input's codes
hold, so a reader that needs codes reads a `clamp` of those codes in the input's quantisation (exact, for a
bound a whole number of steps from the zero point); its own QuantizeLinear is a requantising table.

**GlobalMaxPool** is a `maxpool` whose window is the whole plane; onnxruntime does not quantize it, so in both
forms it sits between a DequantizeLinear and the next QuantizeLinear (after a Flatten), whose quantisation
differs: the max runs on the input's codes (exact) and a requantising copy (a one-input `concat`) follows.

**ReduceMean / ReduceMax** over the spatial axes (2, 3) of an `(N, C, H, W)` tensor, as PyTorch's
`x.mean((2, 3))` and Keras' global pooling export, are a `GlobalAveragePool` / `GlobalMaxPool`; with `keepdims`
0 a `reshape` to `(C,)` follows. onnxruntime leaves them in float (its QuantizeLinear may come after a Flatten,
which is exact: the pool is quantized like the Flatten's output). Other axes (a mean over the channels) are
refused by name.

**Slice / Split** of the channels, rows or columns (positive steps; not the batch axis) select codes: a
convolution of one-hot weights with weight scale 1, whose requantisation multiplier is exactly 1.0 when the part
keeps the input's quantisation (QOperator's Split, QDQ's Slice and Split; the codes are copied, as the channel
shuffle's) and a requantising copy's `s_in / s_out` otherwise (QOperator's Slice, which onnxruntime runs in float
and quantizes anew). Rows and columns `b : e : s` are a kernel of `H - (n - 1) s` rows whose tap `b` is 1 at
stride `s` (YOLOv5's Focus `x[..., ::2, ::2]` is a depthwise 2x2 stride 2); a channel selection is a dense 1x1
convolution, whose cost is that of any 1x1 layer of its size. A Slice of the float graph input is refused: each
part has its own QuantizeLinear, and the fabric's input one quantisation.

**DepthToSpace / SpaceToDepth** (PixelShuffle, space-to-depth stems) copy codes: DepthToSpace (DCR or CRD) is a
transposed convolution of kernel and stride `blocksize` (as ConvTranspose: a zero pad, a spreading gather and a
convolution) whose one-hot weights take each output pixel's channel; SpaceToDepth a convolution of kernel and
stride `blocksize` whose one-hot weights gather each block into channels. Weight scale 1 keeps the codes.

**Input normalisation.** `Sub`, `Div`, `Add` or `Mul` of the float graph input by a constant (`(x - mean) / std`
written into the model; onnxruntime leaves Sub and Div in float before the input's QuantizeLinear) are the
input's preprocessing: the graph records them (`Graph.input_steps`) and the host applies them in float32, as
onnxruntime does, before quantizing the input, so the fabric's input codes equal onnxruntime's. Such a model takes
real values; integer data (codes) is refused.

**Channels-last models** (TensorFlow / Keras converted by tf2onnx). A `Transpose` of the float graph input that
keeps the batch axis first (NHWC -> NCHW) is an input step too: the user gives data in the model's own NHWC
layout and the host transposes it before quantizing (quantisation is element-wise, so the codes equal
onnxruntime's). The same holds when onnxruntime quantizes the input first and transposes its codes. Keras'
`Flatten` of a channels-last tensor (`Transpose (0, 2, 3, 1) -> Reshape (N, -1)` into a `Gemm` / `MatMul`) moves
no data: the fabric flattens its channels-first tensor and the matrix product's input columns are permuted to
match (`W'[:, index] = W`, the same products). Any other reader of a transposed tensor, or a transposed graph
output, is refused by name.

**ConvTranspose** (QDQ form) is three layers, each exact on codes: a zero-point `Pad` of one row and column at the
bottom and right (a depthwise 1x1 `conv2d`, giving the gather a real-zero source), a `resize` gather that spreads
the rows and columns `stride` apart with that zero row / column between and around them (the transposed padding
`dilation (k - 1) - pad` before and after, `output_padding`, and a crop where the pads exceed it), then a
stride-1 `conv2d` by the kernel transposed per group and flipped. With stride 1 and no crop the convolution's own
padding does it, with no gather. The convolution reads `stride^2` times the input's pixels, most of them zeros:
the cost of the equivalent convolution. onnxruntime's QOperator form leaves ConvTranspose in float with float
weights; it is refused by name (quantize in QDQ form).

**Gemm `alpha` and `beta`.** `alpha A B + beta C` (`alpha > 0`) is a `dense` whose weight scale is `alpha`
times the weights' (the codes stay), with `beta` in the bias (onnxruntime's quantizer already folds `beta`
into C's scale and sets it to 1); `QGemm`'s `alpha` likewise. `transB` 0 or 1; `transA = 1` and `alpha <= 0`
are refused by name.

**Clip / ReLU6.** `Clip(0, 6)` and any Clip with constant bounds fuse into the producer's output clamp,
converted to codes exactly (quantisation is monotonic); on codes (QOperator) they clamp the codes themselves.
A Relu or Clip that cannot fuse is a `clamp` of the codes, or, when its QuantizeLinear has a scale or zero point
of its own, a `lut` (onnxruntime's DequantizeLinear and QuantizeLinear of the 256 codes, the clamp applied to
its output codes); so is a bare `DequantizeLinear -> QuantizeLinear` into another quantisation.

**Weights with zero points** (uint8 weights from `quantize_static(weight_type=QUInt8)`, per tensor or per
channel): weights whose codes minus the zero point fit int8 (symmetric: zero point 0, or 128 for uint8) are
stored as plain int8 weights as before; others keep their zero point (`weight_zero_point`, a uint8 model's
codes and zero points shifted by -128, which leaves every `w - zp` unchanged). The golden convolution and
matrix product compute `bias + sum (x - zp_in) w - zp_w sum (x - zp_in)`: the correction term is the weight
zero point times the window's activation sum, exact in int64. On the fabric (compiler/zero_points.py) the
macros hold int8 weights and `w - zp` spans up to nine bits: the compiler splits it into int8 parts (`d = p_0 +
p_1`, a third part only where a channel reaches +255), copies the input once per part channel by channel with a
1x1 layer of one weight of 1 per output (groups = channels, the input's quantisation, so the multiplier is
exactly 1.0 and every code is copied), and runs the layer as an int8 layer over the copies: `sum (x - zp_in) (p_0
+ p_1) = sum (x - zp_in) d`, bit-exact (tests/test_compiler_zero_points.py; on the RTL, tests/test_user_models.py).
It costs the copy layer and two (three) times the reduction. The direct form, the macros' unsigned-weight mode
with `zp_w * sum (x - zp_in)` subtracted per output, needs every output position's activation sum beside each
channel's accumulator in the MAC engine's write-back, which the engine does not have.

**N-D matrix products** (`QLinearMatMul` / QDQ `MatMul` with a constant 2-D `B` on a `(..., K)` input) are a
`matmul`: a `dense` over leading positions; golden only for now. **ConvInteger / MatMulInteger** give the raw
int32 accumulators (an `int32` tensor, which only these layers produce and no layer reads): exact.

**onnxruntime's mixed-signedness kernels.** On a CPU without AVX-VNNI (the test machine), onnxruntime's
uint8 x int8 kernels (also uint8 weights with zero point 128, and per-channel uint8 weights, which it converts
to int8) add pairs of products with int16 saturation and differ from the exact result by many LSB; its int8 x
uint8 `ConvInteger` / `MatMulInteger` likewise. The tests judge those combinations against an exact float64
evaluation of the same integer model instead (the golden operators match it exactly), and so does
`cimforge golden` for a uint8 x int8 tensor that misses the bound against onnxruntime (docs/golden.md)."""


def where_it_runs(cls) -> str:
    """``"host"``, ``"golden only"`` or the fabric lowering's name (with its instructions) for an IR class."""
    from . import LOWERINGS, host

    low = LOWERINGS[cls]
    if low is host.LOWERING:
        return "host" if cls in host.HOST_SIDE else "golden only"
    ops = ", ".join(f"`{op.name}`" for op in low.opcodes)
    return f"fabric: {low.name}" + (f" ({ops})" if ops else "")


def operators_markdown() -> str:
    """docs/operators.md: the support table per IR kind, the table per ONNX operator, and the notes."""
    from ...golden.ir import LAYER_KINDS
    from ...golden.onnx_import import IMPORTS_TO
    from ...golden.runner import LAYER_FUNCTIONS

    lines = ["# Operator support", "",
             f"<!-- Generated from the registries by `{MARKDOWN_COMMAND}`; do not edit. -->", "", _INTRO, "",
             "| IR kind | IR class | ONNX operators | golden operator | runs on |", "|---|---|---|---|---|"]
    for kind, cls in LAYER_KINDS.items():
        onnx_ops = ", ".join(f"`{op}`" for op, (kinds, _) in IMPORTS_TO.items() if kind in kinds) or "-"
        fn = LAYER_FUNCTIONS[cls]
        lines.append(f"| `{kind}` | `{cls.__name__}` | {onnx_ops} | `{fn.__module__.split('.')[-1]}.{fn.__name__}` "
                     f"| {where_it_runs(cls)} |")
    lines += ["", "## ONNX operators", "", "| ONNX operator | IR kinds | how |", "|---|---|---|"]
    for op, (kinds, how) in sorted(IMPORTS_TO.items()):
        lines.append(f"| `{op}` | {', '.join(f'`{k}`' for k in kinds) or '-'} | {how} |")
    lines += ["", "Any other operator is refused with an `OnnxImportError` naming the node and the operator.", "",
              _NOTES, ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m cimforge.compiler.lowering.support --markdown``: print docs/operators.md."""
    parser = argparse.ArgumentParser(prog="python -m cimforge.compiler.lowering.support")
    parser.add_argument("--markdown", action="store_true", help="print the operator support table")
    args = parser.parse_args(argv)
    if not args.markdown:
        parser.error("nothing to do: give --markdown")
    sys.stdout.write(operators_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
