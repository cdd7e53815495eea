"""Whole-network cosimulation: compile a digits CNN for a fabric, run test images on the generated RTL, and
score every tensor, the per-layer cycles and the accuracy against the golden model.

Used by ``cimforge sim`` (:mod:`cimforge.sim.cli`), bench/bench_sim_speed.py and the tests.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..config import CimConfig
from ..compiler.compile import compile_graph, max_batch
from ..compiler.program import Program
from ..golden.datasets import MODELS_DIR, load_digits_split
from ..golden.ir import Graph
from ..golden.runner import run_float
from .fabric_check import Divergence, LayerRow, first_divergence, layer_rows
from .fabric_runner import FabricRun, run_fabric

__all__ = ["MODELS", "load_digits_model", "digits_batch", "Cosim", "cosimulate", "batch_size"]

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


def digits_batch(graph: Graph, start: int, count: int, rounding: str | None = None):
    """(graph inputs, labels, golden tensors) of test images ``start .. start + count - 1``; ``rounding`` is the
    requantisation form of the fabric being checked (``cfg.fabric.rounding``; default the golden default)."""
    split = load_digits_split()
    x, y = split.x_test[start:start + count], split.y_test[start:start + count]
    gold = run_float(graph, x, rounding=rounding)
    return {t.name: gold[t.name] for t in graph.inputs}, y, gold


def batch_size(graph: Graph, cfg: CimConfig, n_images: int) -> int:
    """Images per run: what the activation memory, the program memory and the trace hold (at most 32)."""
    probe = compile_graph(graph, cfg, batch=1)
    per_image = len(probe.code) - len(probe.prologue) - 1
    room = min((cfg.controller.program_depth - len(probe.prologue) - 1) // per_image,
               (cfg.controller.trace_depth - len(probe.prologue) - 1) // per_image)
    return max(1, min(n_images, max_batch(graph, cfg), room, 32))


@dataclass
class Cosim:
    """Result of :func:`cosimulate`."""

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
    def accuracy(self) -> tuple[float, float]:
        """(golden, RTL) accuracy on the images run."""
        return float((self.golden_pred == self.labels).mean()), float((self.rtl_pred == self.labels).mean())

    def mean_rows(self) -> list[LayerRow]:
        """Per-layer rows averaged over images (cycles rounded); exact = all images exact."""
        out = []
        for i, r0 in enumerate(self.rows[0]):
            col = [rows[i] for rows in self.rows]
            out.append(LayerRow(r0.layer, r0.kind, round(np.mean([r.measured for r in col])),
                                round(np.mean([r.predicted for r in col])), r0.ideal,
                                all(r.exact for r in col if r.exact is not None), r0.occupancy))
        return out


def cosimulate(graph: Graph, cfg: CimConfig, n_images: int, *, sim: str = "verilator", start: int = 0,
               batch: int | None = None, mode: str = "backdoor", parallelism=None, stream=None,
               wmem_patch: Callable[[list[int], Program], list[int]] | None = None,
               batches_per_launch: int | None = None, progress=None, merge_images: bool = True) -> Cosim:
    """Compile ``graph`` for ``cfg`` and run ``n_images`` test images on the RTL.

    Parameters
    ----------
    batch : int, optional
        Images per run (default :func:`batch_size`).
    wmem_patch : callable, optional
        ``(weight memory image, program) -> image`` (fault injection).
    batches_per_launch : int, optional
        Runs per simulator launch (default: all in one launch); ``progress`` (a tqdm bar) advances per launch.
    merge_images : bool
        One ``MAC`` pass per layer over the images of a run (else one per image), see
        :func:`~cimforge.compiler.compile.compile_graph`.
    """
    t0 = time.perf_counter()
    batch = batch or batch_size(graph, cfg, n_images)
    prog = compile_graph(graph, cfg, batch=batch, parallelism=parallelism, stream=stream, merge_images=merge_images)
    wmem = wmem_patch(list(prog.wmem), prog) if wmem_patch else None
    res = Cosim(graph, cfg, prog, n_images)
    golden_all, got_all, labels = [], [], []
    chunks = []
    for s in range(start, start + n_images, batch):
        k = min(batch, start + n_images - s)
        inputs, y, gold = digits_batch(graph, s, k, rounding=cfg.fabric.rounding)
        chunks.append((inputs, y, gold, k))
    per = batches_per_launch or len(chunks)
    for c0 in range(0, len(chunks), per):
        group = chunks[c0:c0 + per]
        fr = run_fabric(cfg, prog, [g[0] for g in group], sim=sim, mode=mode, wmem=wmem)
        res.runs.append(fr)
        for (inputs, y, gold, k), run in zip(group, fr.runs):
            got = prog.read_tensors(run.words, k)
            golden_all.append(gold)
            got_all.append(got)
            labels.append(y)
            res.cycles += run.cycles
            res.run_wall += run.run_wall
            if res.divergence is None:
                div = first_divergence(prog, gold, got, run.trace)
                if div is not None:
                    div.image += len(np.concatenate(labels)) - k + start
                    res.divergence = div
            for i in range(k):
                exact = {name: bool(np.array_equal(gold[name][i], got[name][i])) for name in gold}
                res.rows.append(layer_rows(prog, run.trace, image=i, exact=exact))
        if progress is not None:
            progress.update(sum(g[3] for g in group))
    out_name = graph.outputs[0]
    res.labels = np.concatenate(labels)
    res.golden_pred = np.concatenate([g[out_name].reshape(len(g[out_name]), -1).argmax(axis=1) for g in golden_all])
    res.rtl_pred = np.concatenate([g[out_name].reshape(len(g[out_name]), -1).argmax(axis=1) for g in got_all])
    res.exact_tensors = {name: all(np.array_equal(g[name], r[name]) for g, r in zip(golden_all, got_all))
                         for name in golden_all[0]}
    res.total_wall = time.perf_counter() - t0
    return res
