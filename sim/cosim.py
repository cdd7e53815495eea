"""Whole-network cosimulation: compile a quantized model for a fabric, run input images on the generated RTL,
and score every tensor, the per-layer cycles and the top-1 results against the golden model.

:func:`simulate` takes any model the compiler maps (a :class:`~cimforge.golden.ir.Graph` or a path to a
quantized ONNX file) and input arrays (real values or codes, see :func:`cimforge.golden.cli.to_codes`), with
optional labels. :func:`cosimulate` is the digits layer on top: test images of the committed split.

Used by ``cimforge sim`` (:mod:`cimforge.sim.cli`), bench/bench_sim_speed.py and the tests.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..config import CimConfig
from ..compiler.compile import compile_graph, max_batch, rewrite_for_fabric
from ..compiler.lowering.host import split_host_tail
from ..compiler.program import Program
from ..golden.datasets import MODELS_DIR, load_digits_split
from ..golden.ir import Graph
from ..golden.runner import run_float, run_graph
from .fabric_check import Divergence, LayerRow, first_divergence, layer_rows
from .fabric_runner import FabricRun, run_fabric

__all__ = ["MODELS", "load_digits_model", "load_model", "digits_batch", "Cosim", "simulate", "cosimulate",
           "batch_size"]

#: The committed digits CNNs (models/digits_models.json): the plain CNN (QOperator, per-tensor scales) and the
#: residual one (QDQ, per-channel scales). Their other quantized forms load too.
MODELS = ("digits_cnn_qop", "digits_resnet_qdq")


def load_digits_model(name: str) -> Graph:
    """The quantized digits model ``name`` (one of :data:`MODELS`) as a layer-IR graph.

    Raises
    ------
    ValueError
        Unknown model name.
    """
    from ..golden.onnx_import import load_onnx
    info = json.loads((MODELS_DIR / "digits_models.json").read_text())["models"]
    if name not in info:
        raise ValueError(f"model {name!r}: allowed {', '.join(sorted(info))}")
    return load_onnx(str(MODELS_DIR / f"{name}.onnx"), name=name)


def load_model(model) -> Graph:
    """``model`` as a graph: a :class:`Graph` as it is, else a path to a quantized ONNX file (imported)."""
    if isinstance(model, Graph):
        return model
    from ..golden.onnx_import import load_onnx
    return load_onnx(Path(model))


def digits_batch(graph: Graph, start: int, count: int, rounding: str | None = None):
    """(graph inputs, labels, golden tensors) of test images ``start .. start + count - 1``; ``rounding`` is the
    requantisation form of the fabric being checked (``cfg.fabric.rounding``; default the golden default)."""
    split = load_digits_split()
    x, y = split.x_test[start:start + count], split.y_test[start:start + count]
    gold = run_float(graph, x, rounding=rounding)
    return {t.name: gold[t.name] for t in graph.inputs}, y, gold


def batch_size(graph: Graph, cfg: CimConfig, n_images: int) -> int:
    """Images per run: what the activation memory, the program memory and the trace hold (at most 32); one
    image needs no probe compilation."""
    if n_images == 1:
        return 1
    probe = compile_graph(graph, cfg, batch=1)
    per_image = len(probe.code) - len(probe.prologue) - 1
    room = min((cfg.controller.program_depth - len(probe.prologue) - 1) // per_image,
               (cfg.controller.trace_depth - len(probe.prologue) - 1) // per_image)
    return max(1, min(n_images, max_batch(graph, cfg), room, 32))


def _top1(t: np.ndarray) -> np.ndarray:
    return t.reshape(len(t), -1).argmax(axis=1)


@dataclass
class Cosim:
    """Result of :func:`simulate` / :func:`cosimulate`.

    Attributes
    ----------
    rows : list of list of LayerRow
        Per image, per layer: measured and predicted cycles, bit-exactness.
    labels : numpy.ndarray or None
        The labels given (accuracy is reported only with them).
    golden_pred, rtl_pred : numpy.ndarray
        Top-1 class of the first graph output per image (golden model, RTL).
    divergence : Divergence or None
        Where the RTL first departs from the golden model (None: every tensor of every image bit-exact).
    """

    graph: Graph
    cfg: CimConfig
    program: Program
    n_images: int
    rows: list[list[LayerRow]] = field(default_factory=list)   # per image
    labels: np.ndarray | None = None
    golden_pred: np.ndarray | None = None
    rtl_pred: np.ndarray | None = None
    divergence: Divergence | None = None
    exact_tensors: dict[str, bool] = field(default_factory=dict)
    cycles: int = 0
    run_wall: float = 0.0
    total_wall: float = 0.0
    runs: list[FabricRun] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.divergence is None

    @property
    def accuracy(self) -> tuple[float, float] | None:
        """(golden, RTL) top-1 accuracy on the images run, or None without labels."""
        if self.labels is None:
            return None
        return float((self.golden_pred == self.labels).mean()), float((self.rtl_pred == self.labels).mean())

    @property
    def top1_agreement(self) -> float:
        """Share of images whose RTL top-1 class equals the golden model's."""
        return float((self.golden_pred == self.rtl_pred).mean())

    def mean_rows(self) -> list[LayerRow]:
        """Per-layer rows averaged over images (cycles rounded); exact = all images exact."""
        out = []
        for i, r0 in enumerate(self.rows[0]):
            col = [rows[i] for rows in self.rows]
            out.append(LayerRow(r0.layer, r0.kind, round(np.mean([r.measured for r in col])),
                                round(np.mean([r.predicted for r in col])), r0.ideal,
                                None if all(r.exact is None for r in col)
                                else all(r.exact for r in col if r.exact is not None), r0.occupancy,
                                round(np.mean([r.stall for r in col]))))
        return out


def _input_codes(graph: Graph, inputs) -> dict[str, np.ndarray]:
    """Codes per graph input from what :func:`simulate` accepts (see there)."""
    from ..golden.cli import to_codes
    if isinstance(inputs, Mapping):
        missing = [t.name for t in graph.inputs if t.name not in inputs]
        if missing:
            raise ValueError(f"inputs: missing {missing}; given {sorted(inputs)}")
        return {t.name: np.asarray(inputs[t.name]) for t in graph.inputs}
    return {graph.inputs[0].name: to_codes(graph, inputs, option="inputs")}


def simulate(model, cfg: CimConfig, inputs, *, labels=None, sim: str = "verilator", batch: int | None = None,
             mode: str = "backdoor", parallelism=None, stream=None,
             wmem_patch: Callable[[list[int], Program], list[int]] | None = None,
             batches_per_launch: int | None = None, progress=None, merge_images: bool = True,
             program: Program | None = None) -> Cosim:
    """Compile ``model`` for ``cfg``, run ``inputs`` on the RTL and score them against the golden model.

    Parameters
    ----------
    model : Graph, str or pathlib.Path
        A layer-IR graph, or a quantized ONNX file (imported with :func:`cimforge.golden.onnx_import.load_onnx`).
    cfg : CimConfig
    inputs : numpy.ndarray or mapping of str to numpy.ndarray
        ``(N, *shape)`` in the model's input layout for a single-input model: a float array holds real values
        (quantized as the model's ``QuantizeLinear`` does), an integer array holds codes. A mapping gives the
        codes of every graph input by name.
    labels : array_like, optional
        Class per image: :attr:`Cosim.accuracy` is reported with them.
    sim : {"verilator", "icarus"}
    batch : int, optional
        Images per run (default :func:`batch_size`).
    wmem_patch : callable, optional
        ``(weight memory image, program) -> image`` (fault injection).
    batches_per_launch : int, optional
        Runs per simulator launch (default: all in one launch); ``progress`` (a tqdm bar) advances per launch.
    merge_images : bool
        One ``MAC`` pass per layer over the images of a run (else one per image), see
        :func:`~cimforge.compiler.compile.compile_graph`.
    program : Program, optional
        The model already compiled with these options (``compile_graph(split_host_tail(graph).fabric, cfg,
        batch=B, ...)``): used when ``B`` is the run's batch, which saves compiling it again (minutes for
        ResNet-50); otherwise the model is compiled here.

    Raises
    ------
    ValueError
        No images, or labels of another length.
    CompileError
        The model does not map onto ``cfg`` (the message names the layer and the limit).
    """
    t0 = time.perf_counter()
    graph = load_model(model)
    codes = _input_codes(graph, inputs)
    n_images = len(next(iter(codes.values())))
    if n_images < 1:
        raise ValueError("inputs: no images; allowed at least one")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n_images,):
            raise ValueError(f"labels of shape {labels.shape}: allowed ({n_images},), one per image")
    # a classifier's trailing softmax (and other host-side kinds) runs on the host side of the run: the fabric
    # computes the rest, the host applies the tail's golden operators to the RTL's outputs (docs/operators.md)
    split = split_host_tail(graph)
    batch = batch or batch_size(split.fabric, cfg, n_images)
    if program is not None and program.batch == batch:
        prog = program
    else:
        prog = compile_graph(split.fabric, cfg, batch=batch, parallelism=parallelism, stream=stream,
                             merge_images=merge_images)
    wmem = wmem_patch(list(prog.wmem), prog) if wmem_patch else None
    res = Cosim(graph, cfg, prog, n_images, labels=labels)
    golden_all, got_all = [], []
    chunks = []
    # the layers the compiler added (an input's copies, a concatenation's placements: compile.rewrite_for_fabric)
    # are checked too, against the golden model of the rewritten graph (equal to the original on its tensors)
    rewritten = rewrite_for_fabric(split.fabric, cfg)
    for s in range(0, n_images, batch):
        part = {name: c[s:s + batch] for name, c in codes.items()}
        gold = run_graph(graph, part, rounding=cfg.fabric.rounding)
        if rewritten is not split.fabric:
            extra = run_graph(rewritten, part, rounding=cfg.fabric.rounding)
            gold.update({name: v for name, v in extra.items() if name not in gold})
        chunks.append((part, gold, len(next(iter(part.values()))), s))
    per = batches_per_launch or len(chunks)
    for c0 in range(0, len(chunks), per):
        group = chunks[c0:c0 + per]
        fr = run_fabric(cfg, prog, [g[0] for g in group], sim=sim, mode=mode, wmem=wmem)
        res.runs.append(fr)
        for (_, gold, k, first), run in zip(group, fr.runs):
            got = split.finish(prog.read_tensors(run.words, k), rounding=cfg.fabric.rounding)
            golden_all.append(gold)
            got_all.append(got)
            res.cycles += run.cycles
            res.run_wall += run.run_wall
            if res.divergence is None:
                div = first_divergence(prog, gold, got, run.trace)
                if div is not None:
                    div.image += first
                    res.divergence = div
            for i in range(k):
                exact = {name: bool(np.array_equal(gold[name][i], got[name][i])) for name in gold if name in got}
                res.rows.append(layer_rows(prog, run.trace, image=i, exact=exact))
        if progress is not None:
            progress.update(sum(g[2] for g in group))
    out_name = graph.outputs[0]
    res.golden_pred = np.concatenate([_top1(g[out_name]) for g in golden_all])
    res.rtl_pred = np.concatenate([_top1(g[out_name]) for g in got_all])
    res.exact_tensors = {name: all(np.array_equal(g[name], r[name]) for g, r in zip(golden_all, got_all))
                         for name in golden_all[0] if name in got_all[0]}  # the tensors the run kept
    res.total_wall = time.perf_counter() - t0
    return res


def cosimulate(graph: Graph, cfg: CimConfig, n_images: int, *, start: int = 0, **options) -> Cosim:
    """:func:`simulate` on digits test images ``start .. start + n_images - 1`` (the committed split), with
    their labels; ``options`` as for :func:`simulate`.

    Raises
    ------
    ValueError
        ``n_images < 1`` or images past the 450 of the test split.
    """
    split = load_digits_split()
    n = len(split.y_test)
    if not isinstance(n_images, int) or n_images < 1 or not 0 <= start or start + n_images > n:
        raise ValueError(f"digits test images {start}..{start + n_images - 1}: allowed 0..{n - 1} "
                         f"(n_images >= 1, start >= 0)")
    x, y = split.x_test[start:start + n_images], split.y_test[start:start + n_images]
    res = simulate(graph, cfg, x, labels=y, **options)
    if res.divergence is not None:
        res.divergence.image += start
    return res
