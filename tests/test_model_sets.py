"""The model sets (cimforge.golden.model_sets): every model builds, deterministically, runs in onnxruntime, has
random weights, and the tiny set imports and agrees with onnxruntime layer by layer.

Agreement cases that do not meet the bound today are marked xfail with the measured cause (KNOWN_GAPS for the
"onnx" numerics and double rounding, FABRIC_GAPS for the default "fabric" numerics), so that a regression
elsewhere fails and the gaps stay listed; a model the importer refuses xfails with the importer's own message.
bench/bench_models.py prints the whole table.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from cimforge.golden import model_sets as ms

FORMS = [("qdq", True), ("qdq", False), ("qop", True), ("qop", False)]
FORM_IDS = ["qdq-pc", "qdq-pt", "qop-pc", "qop-pt"]
SEED = 0


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module (the builds are shared by its tests): ``CIMFORGE_MODELS_CACHE`` when set (a CI
    that keeps that directory between runs skips the builds, most of the ImageNet tests' time; entries are keyed by
    every option and the builder version, and digest-checked), else a fresh directory."""
    import os
    if os.environ.get("CIMFORGE_MODELS_CACHE"):
        return ms.cache_dir()
    return tmp_path_factory.mktemp("models")


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights(path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def _run_ort(path, x: np.ndarray) -> np.ndarray:
    """onnxruntime on ``x``, one sample at a time when the model fixes its batch."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = s.get_inputs()[0]
    if isinstance(feed.shape[0], int):
        return np.concatenate([s.run(None, {feed.name: x[i:i + 1]})[0] for i in range(len(x))])
    return s.run(None, {feed.name: x})[0]


def _check_random_weights(path, quantized: bool) -> None:
    """Every weight tensor (more than one element, not a shape) holds more than one value, and so does every
    bias; float weights are not the onnx package's 0.02 fill."""
    w = _weights(path)
    checked = 0
    for name, a in w.items():
        if a.size <= 1 or a.dtype == np.int64 or name.endswith("zero_point"):
            continue  # shapes, axes; zero points are 0 for symmetric int8 weights
        if quantized and a.dtype == np.float32:
            continue  # scales of per-tensor quantization etc.
        distinct = np.unique(a).size
        assert distinct > 1, f"{path.name}: initializer {name!r} {a.shape} is constant ({a.ravel()[0]})"
        checked += 1
    assert checked >= 2, f"{path.name}: only {checked} weight tensors found"


# -- the lists --------------------------------------------------------------------------------------------------

def test_sets_list_every_model_once():
    assert ms.TINY_SET == ("resnet8", "ds_cnn", "mobilenet_v1_025", "autoencoder")
    assert set(ms.IMAGENET_SET) == {*ms.LIGHT_FILES, "mobilenet_v2"}
    assert set(ms.TINY_SET) | set(ms.IMAGENET_SET) == set(ms.MODELS)
    for name in ms.LIGHT_FILES:
        assert (ms.light_dir() / ms.LIGHT_FILES[name]).is_file(), name


def test_bad_names_are_refused_with_the_allowed_values(cache):
    with pytest.raises(ValueError, match="allowed resnet8"):
        ms.build("resnet9", cache=cache)
    with pytest.raises(ValueError, match="allowed qdq, qop"):
        ms.build("resnet8", fmt="qlinear", cache=cache)
    with pytest.raises(ValueError, match="allowed int8, uint8"):
        ms.build("resnet8", activations="int4", cache=cache)


def test_data_is_seeded_and_calibration_differs_from_samples():
    a, b = ms.sample_inputs("resnet8", 3, seed=5), ms.sample_inputs("resnet8", 3, seed=5)
    assert a.shape == (3, 3, 32, 32) and a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, ms.sample_inputs("resnet8", 3, seed=6))
    assert not np.array_equal(a, ms.calibration_data("resnet8", 3, seed=5))
    assert ms.calibration_data("autoencoder").shape == (ms.MODELS["autoencoder"].calibration_samples, 640)


# -- the cache --------------------------------------------------------------------------------------------------

def test_cache_key_depends_on_every_option():
    base = dict(form="qdq", per_channel=True, seed=0)
    keys = {ms.cache_key("resnet8", **base), ms.cache_key("ds_cnn", **base),
            ms.cache_key("resnet8", **{**base, "form": "qop"}), ms.cache_key("resnet8", **{**base, "seed": 1}),
            ms.cache_key("resnet8", **{**base, "per_channel": False})}
    assert len(keys) == 5


def test_cache_dir_from_argument_environment_or_default(monkeypatch, tmp_path):
    monkeypatch.delenv("CIMFORGE_MODELS_CACHE", raising=False)
    assert ms.cache_dir().parts[-2:] == ("build", "models")
    monkeypatch.setenv("CIMFORGE_MODELS_CACHE", str(tmp_path / "env"))
    assert ms.cache_dir() == tmp_path / "env"
    assert ms.cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_corrupt_entry_is_rebuilt_and_an_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    path = ms.build("ds_cnn", "qop", False, cache=tmp_path)
    good = path.read_bytes()
    assert ms.build("ds_cnn", "qop", False, cache=tmp_path) == path  # cached: same file
    path.write_bytes(good[: len(good) // 2])  # truncated, as by a crash of something else
    assert ms.build("ds_cnn", "qop", False, cache=tmp_path).read_bytes() == good

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ms, "_quantize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ms.build("ds_cnn", "qop", True, cache=tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in left if n.startswith("ds_cnn-qop-pc") or n.endswith(".tmp")], left


def test_entries_are_ordinary_files_and_stale_temporaries_go(tmp_path):
    import os
    import time
    stem = ms.build("ds_cnn", "qdq", False, cache=tmp_path).stem
    killed = tmp_path / f"{stem}.abc123.tmp"  # what a build killed by a signal leaves
    killed.write_bytes(b"")
    os.utime(killed, (time.time() - 7200, time.time() - 7200))
    (tmp_path / f"{stem}.onnx.sha256").write_text("0\n")  # digest mismatch: rebuilt
    path = ms.build("ds_cnn", "qdq", False, cache=tmp_path)
    assert not killed.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_new_builder_version_replaces_the_old_entry(tmp_path, monkeypatch):
    old = ms.build("ds_cnn", "qop", False, cache=tmp_path)
    monkeypatch.setattr(ms, "BUILDER_VERSION", ms.BUILDER_VERSION + 1)
    new = ms.build("ds_cnn", "qop", False, cache=tmp_path)
    assert new != old and new.is_file() and not old.exists()
    assert not old.with_name(old.name + ".sha256").exists()


# -- the tiny set -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ms.TINY_SET)
def test_tiny_model_is_deterministic_random_and_runs(name, cache, tmp_path):
    print(f"seed {SEED}")
    f = ms.float_model(name, SEED, cache)
    assert f.read_bytes() == ms.float_proto(name, SEED).SerializeToString()
    _check_random_weights(f, quantized=False)
    x = ms.sample_inputs(name, 2, SEED)
    y = _run_ort(f, x)
    assert np.isfinite(y).all() and y.shape[0] == 2
    assert not np.allclose(y[0], y[1]), "two inputs, one output: the weights do not reach the output"
    for fmt, pc in (("qdq", True), ("qop", False)):
        q = ms.build(name, fmt, pc, SEED, cache=cache)
        again = ms.build(name, fmt, pc, SEED, cache=tmp_path)  # a fresh build elsewhere: byte-identical
        assert again != q and _sha(again) == _sha(q), f"{name} {fmt}: two builds differ"
        _check_random_weights(q, quantized=True)
        yq = _run_ort(q, x)
        assert yq.shape == y.shape and np.isfinite(yq).all()


def test_another_seed_gives_other_weights(cache):
    a, b = _weights(ms.float_model("resnet8", 0, cache)), _weights(ms.float_model("resnet8", 1, cache))
    assert a.keys() == b.keys()
    assert not np.array_equal(a["conv1.weight"], b["conv1.weight"])


@pytest.mark.parametrize("name", ms.TINY_SET)
def test_tiny_topology_follows_the_reference(name, cache):
    """Layer counts of the MLPerf Tiny reference models (mlcommons/tiny benchmark/training)."""
    import onnx
    g = onnx.load(str(ms.float_model(name, SEED, cache))).graph
    ops = [n.op_type for n in g.node]
    convs = [n for n in g.node if n.op_type == "Conv"]
    depthwise = [n for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    expected = {"resnet8": (9, 0, 1, 7, 3), "ds_cnn": (9, 4, 1, 9, 0), "mobilenet_v1_025": (27, 13, 1, 27, 0),
                "autoencoder": (0, 0, 10, 9, 0)}[name]
    assert (len(convs), len(depthwise), ops.count("Gemm"), ops.count("BatchNormalization"),
            ops.count("Add")) == expected


#: Agreement cases below the bound today, (model or "*", format or "*", rounding) -> the measured cause
#: (bench/bench_models.py prints the figures; docs/golden.md explains double rounding), judged on the import with
#: numerics="onnx" (onnxruntime's float parts in float32; docs/operators.md).
KNOWN_GAPS = {
    ("*", "*", "double"): "double rounding differs on about 2**-(right+1) of every requantised output "
                          "(0.1-0.8% of each convolution, 3-10% of the final average pools)",
}

#: The default numerics (numerics="fabric", what the fabric computes) below the bound today, (model, form id) ->
#: the measured cause. Two causes remain, neither one the POOL engine's rounding field can remove:
#: * an average pool's exact ties (equal input and output scales, a window sum that is an odd multiple of half
#:   the divisor): the POOL engine rounds them to even (round_even), onnxruntime's float32 pool lands just above
#:   or below the tie by float32 rounding of the products and sums (the "onnx" numerics reproduces that order),
#:   so a tie goes either way; only a float32 pool engine would follow it;
#: * a float chain onnxruntime leaves in float32 across an add (ResNet-50 and ShuffleNet: Sum -> Relu ->
#:   AveragePool in QDQ form, BatchNormalization -> Sum -> Relu and the residual stream in QOperator form): the
#:   fabric quantizes the float sum into an int8 copy before the next operator, one extra rounding of about an
#:   output LSB; an exact form needs an add with per-channel affine inputs and int32 (or wider than int8)
#:   intermediate tensors, i.e. new hardware.
FLOAT_TIES = "average-pool ties that onnxruntime's float32 pool resolves by float32 rounding"
FLOAT_CHAIN = "the float chain's extra int8 rounding (the add's float sum quantized before the next operator)"
FABRIC_GAPS = {
    ("resnet8", "qdq-pt"): FLOAT_TIES,
    ("inception_v1", "qdq-pc"): FLOAT_TIES, ("inception_v1", "qdq-pt"): FLOAT_TIES,
    ("densenet121", "qdq-pc"): FLOAT_TIES, ("densenet121", "qdq-pt"): FLOAT_TIES,
    **{("resnet50", f): FLOAT_CHAIN for f in FORM_IDS}, **{("shufflenet", f): FLOAT_CHAIN for f in FORM_IDS},
}


def _form_id(form) -> str:
    return f"{form[0]}-{'pc' if form[1] else 'pt'}"


def _known_gap(name: str, fmt: str, rounding: str) -> str | None:
    for key in ((name, fmt, rounding), (name, "*", rounding), ("*", fmt, rounding), ("*", "*", rounding)):
        if key in KNOWN_GAPS:
            return KNOWN_GAPS[key]
    return None


_REFERENCE: dict = {}


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("name", ms.TINY_SET)
def test_tiny_model_agrees_in_the_fabric_numerics(name, form, cache):
    """The import the fabric runs (the default, numerics="fabric": integer average pools with ties to even,
    BatchNormalization as a depthwise convolution), single rounding: what the RTL computes, judged by
    onnxruntime layer by layer (slow: 103 s for the 16 cases, mostly the BatchNormalization weight search of the
    fabric's form); FABRIC_GAPS xfail with the measured figure."""
    from cimforge.golden.cli import onnx_feeds, to_codes
    from cimforge.golden.compare import AGREEMENT_MIN, MAX_LSB, compare_tensors, layerwise, ort_tensors
    from cimforge.golden.onnx_import import load_onnx

    path = ms.build(name, *form, SEED, cache=cache)
    graph = load_onnx(path)
    print(f"{name} {path.name}: seed {SEED}, inputs seed {SEED + 1}")
    x = ms.sample_inputs(name, 4, SEED + 1)
    a = compare_tensors(layerwise(graph, ref := ort_tensors(path, graph, onnx_feeds(graph, x, to_codes(graph, x))),
                                  "single"), ref)
    print(a.format(per_tensor=True))
    assert a.max_diff <= MAX_LSB
    gap = FABRIC_GAPS.get((name, _form_id(form)))
    if not a.ok(AGREEMENT_MIN, MAX_LSB) and gap:
        pytest.xfail(f"{gap} (worst tensor {100 * a.worst_fraction:.3f}%)")
    assert a.ok(AGREEMENT_MIN, MAX_LSB), f"{name}: worst tensor {100 * a.worst_fraction:.3f}%"


@pytest.mark.parametrize("rounding", ["single", "double"])
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("name", ms.TINY_SET)
def test_tiny_model_agrees_with_onnxruntime(name, form, rounding, cache):
    from cimforge.golden.cli import onnx_feeds, to_codes
    from cimforge.golden.compare import AGREEMENT_MIN, MAX_LSB, compare_tensors, layerwise, ort_tensors
    from cimforge.golden.onnx_import import OnnxImportError, load_onnx

    path = ms.build(name, *form, SEED, cache=cache)
    try:
        graph = load_onnx(path, numerics="onnx")
    except OnnxImportError as e:
        pytest.xfail(str(e))
    print(f"{name} {path.name}: seed {SEED}, inputs seed {SEED + 1}")
    if path not in _REFERENCE:  # onnxruntime's tensors, shared by the two roundings
        x = ms.sample_inputs(name, 4, SEED + 1)
        _REFERENCE[path] = ort_tensors(path, graph, onnx_feeds(graph, x, to_codes(graph, x)))
    ref = _REFERENCE[path]
    a = compare_tensors(layerwise(graph, ref, rounding), ref)
    print(a.format(per_tensor=True))
    assert a.max_diff <= MAX_LSB, f"{name}: a layer differs by {a.max_diff} LSB from onnxruntime"
    gap = _known_gap(name, form[0], rounding)
    if not a.ok(AGREEMENT_MIN, MAX_LSB) and gap:
        worst = min(a.tensors, key=lambda t: t.fraction)
        pytest.xfail(f"{gap} (worst tensor {worst.name}: {100 * worst.fraction:.3f}%)")
    assert a.ok(AGREEMENT_MIN, MAX_LSB), f"{name} ({rounding}): worst tensor {100 * a.worst_fraction:.3f}%"


# -- the ImageNet set (slow: 224x224 models, VGG-19 is 548 MB in float) ----------------------------------------

#: ImageNet models also rebuilt elsewhere to check the build is byte-identical (the builder is the tiny set's,
#: checked there on every model; these two go through the onnx package's files and are the cheapest to quantize).
REBUILT = ("squeezenet", "shufflenet")


@pytest.mark.slow
@pytest.mark.parametrize("name", ms.IMAGENET_SET)
def test_imagenet_model_is_deterministic_random_and_runs(name, cache, tmp_path):
    """The float model runs; the QDQ per-channel build has random weights (its onnxruntime run is the agreement
    test's, on the same cached build); REBUILT models build byte-identically twice."""
    print(f"seed {SEED}")
    f = ms.float_model(name, SEED, cache)
    assert _sha(f) == hashlib.sha256(ms.float_proto(name, SEED).SerializeToString()).hexdigest()
    _check_random_weights(f, quantized=False)
    if name in ms.LIGHT_FILES:
        import onnx
        assert not [n for n in onnx.load(str(f)).graph.node if n.op_type == "ConstantOfShape"]
    x = ms.sample_inputs(name, 1, SEED)
    assert np.isfinite(_run_ort(f, x)).all()
    q = ms.build(name, "qdq", True, SEED, cache=cache)
    if name in REBUILT:
        assert _sha(ms.build(name, "qdq", True, SEED, cache=tmp_path)) == _sha(q), f"{name}: two builds differ"
    _check_random_weights(q, quantized=True)


#: Models whose import has operators beyond convolution and pooling (float chains, decomposed BatchNormalization,
#: channel shuffle, LRN) in both forms (QDQ per-channel, QOperator per-tensor); the plain CNNs in QDQ per-channel
#: only, the build test_imagenet_model_is_deterministic_random_and_runs makes (CI time: VGG-19 alone is 3 min).
IMAGENET_CASES = [(n, f) for n in ms.IMAGENET_SET for f in (("qdq", True), ("qop", False))
                  if f[0] == "qdq" or n in ("resnet50", "shufflenet", "densenet121", "inception_v1")]


@pytest.mark.slow
@pytest.mark.parametrize("name,form", IMAGENET_CASES, ids=[f"{n}-{_form_id(f)}" for n, f in IMAGENET_CASES])
def test_imagenet_model_agrees_with_onnxruntime(name, form, cache):
    """One input per model, single rounding (the default), layer by layer, one onnxruntime run of every tensor
    judged in both import numerics: "onnx" (onnxruntime's float parts in float32) meets the bound on every case;
    the default, "fabric" (what the fabric computes), meets it except FABRIC_GAPS, which xfail with the measured
    figure. End to end (the default numerics' golden model run from the input) the top-1 class is onnxruntime's;
    the largest difference of any tensor is printed. Measured: 17.9 min for the 22 ImageNet cases of this module
    with every build, on 2 cores shared with two other test runs (the builds are most of it: VGG-19's 236 s);
    the builds are made once (REBUILT only twice) and each case's onnxruntime run serves both numerics."""
    from cimforge.golden.cli import onnx_feeds, to_codes
    from cimforge.golden.compare import AGREEMENT_MIN, MAX_LSB, compare_tensors, layerwise, ort_tensors
    from cimforge.golden.onnx_import import load_onnx
    from cimforge.golden.runner import run_graph

    path = ms.build(name, *form, SEED, cache=cache)
    print(f"{name} {path.name}: seed {SEED}, inputs seed {SEED + 1}")
    x = ms.sample_inputs(name, 1, SEED + 1)
    graphs = {numerics: load_onnx(path, numerics=numerics) for numerics in ("onnx", "fabric")}
    codes = to_codes(graphs["fabric"], x)
    ref = ort_tensors(path, graphs["onnx"], onnx_feeds(graphs["onnx"], x, codes))
    result = {}
    for numerics, graph in graphs.items():
        result[numerics] = a = compare_tensors(layerwise(graph, ref, "single"), ref)
        print(f"{numerics}:\n{a.format(per_tensor=False)}")
    graph = graphs["fabric"]
    golden, out = run_graph(graph, codes, rounding="single"), graph.outputs[0]
    top1 = golden[out].reshape(1, -1).argmax(1) == ref[out].reshape(1, -1).argmax(1)
    print(f"fabric end to end: max {compare_tensors(golden, ref).max_diff} LSB, top-1 {'equal' if top1 else 'differs'}")
    assert top1, f"{name}: top-1 differs"
    a = result["onnx"]
    assert a.ok(AGREEMENT_MIN, MAX_LSB), f"{name} (onnx): worst tensor {100 * a.worst_fraction:.3f}%, max {a.max_diff}"
    a = result["fabric"]
    gap = FABRIC_GAPS.get((name, _form_id(form)))
    if not a.ok(AGREEMENT_MIN, MAX_LSB) and gap:
        worst = min(a.tensors, key=lambda t: t.fraction)
        pytest.xfail(f"{gap} (worst tensor {worst.name}: {100 * worst.fraction:.3f}%, max {a.max_diff} LSB)")
    assert a.ok(AGREEMENT_MIN, MAX_LSB), f"{name}: worst tensor {100 * a.worst_fraction:.3f}%, max {a.max_diff}"
