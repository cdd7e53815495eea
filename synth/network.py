"""Throughput and energy of a network run on the macros, from per-layer activity counts.

The counts (:class:`LayerActivity`) are what the compiler's op counts or the fabric's performance counters will
provide. Until the compiler exists, :func:`activity_from_graph` derives them from the golden layer IR with the
direct weight-stationary mapping, and says so in every result (``counts_source``):

- each weighted layer's GEMM (``M x K`` activations times ``K x N`` weights per group, :class:`GemmView`) is cut
  into weight tiles of ``rows`` x ``cols // wb``; each tile sits in a page; every output position runs one MAC
  operation per tile: ``ops = groups x M x ceil(K / rows) x ceil(N / (cols // wb))`` per sample;
- activations are the raw codes (int8 or uint8; the IR folds the zero point into the bias), ``ab = 8``; with
  zero-plane skipping an operation costs the number of its activation bit planes that are non-zero in some row
  (:func:`cimforge.golden.macro.op_cycles`), measured on the real inputs by the golden runner;
- weights are written once per run (``K x N x wb`` bits per group, read from a buffer);
- the operations spread evenly over the fabric's macros (no stalls, no pipeline fill): an upper bound.

Energy adds the buffer events the macro-level model leaves out: activation bits fetched per operation and weight
bits loaded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import CimConfig
from ..golden.datasets import MODELS_DIR
from .energy import CALIBRATED, TECH, Constants, MacroOp, Technology, cycle_counts, op_energy_fj

__all__ = ["LayerActivity", "network_figures", "activity_from_graph", "chunk_cycles", "digits_figures",
           "DIGITS_MODEL", "PROVISIONAL"]

#: The demo network (models/make_digits_models.py).
DIGITS_MODEL = MODELS_DIR / "digits_cnn_qop.onnx"

PROVISIONAL = ("derived from the golden layer IR with the direct weight-stationary mapping (the compiler's op "
               "counts were not available); zero bit planes measured on the data by the golden runner")


@dataclass(frozen=True)
class LayerActivity:
    """A layer's work on the macros over a whole run (all samples).

    Parameters
    ----------
    name : str
    macs : int
        Useful multiply-accumulates.
    macro_ops : int
        MAC operations issued to macros.
    cycles : int
        Compute cycles of those operations (``ab`` each, fewer with zero-plane skipping).
    ab, wb : int
        Activation and weight precision.
    weight_bits : int
        Weight bits written into the macros.
    weight_tiles : int
        Pages the layer's weights occupy (``rows`` x ``cols`` bits each).
    """

    name: str
    macs: int
    macro_ops: int
    cycles: int
    ab: int
    wb: int
    weight_bits: int
    weight_tiles: int


def _layer_energy_fj(la: LayerActivity, cfg: CimConfig, constants: Constants, tech: Technology) -> dict[str, float]:
    m = cfg.macro
    per_cycle = cycle_counts(m, MacroOp(la.ab, la.wb))
    counts = {k: v * la.cycles for k, v in per_cycle.items()}
    counts["reg"] += la.macro_ops * m.rows * la.ab + la.weight_bits   # plane register loads, cell writes
    counts["buffer"] += la.macro_ops * m.rows * la.ab + la.weight_bits  # activations and weights fetched
    return {k: op_energy_fj({k: n}, constants, tech) for k, n in counts.items() if n}


def network_figures(layers: list[LayerActivity], cfg: CimConfig, *, n_samples: int, counts_source: str,
                    transistors_per_macro: float | None = None, constants: Constants = CALIBRATED,
                    tech: Technology = TECH) -> dict:
    """Per-layer and total figures of a run of ``n_samples`` inferences on the fabric of ``cfg``."""
    m, n_macros = cfg.macro, cfg.fabric.n_macros
    rows, tot_e, tot_macs, tot_cycles, tot_ideal = [], {}, 0, 0, 0.0
    for la in layers:
        e = _layer_energy_fj(la, cfg, constants, tech)
        ideal = la.macs * la.ab * la.wb / (m.rows * m.cols * n_macros)
        rows.append({**asdict(la), "energy_fj": sum(e.values()), "energy_breakdown_fj": e,
                     "ideal_cycles": ideal, "utilisation": ideal / (la.cycles / n_macros) if la.cycles else 0.0})
        for k, v in e.items():
            tot_e[k] = tot_e.get(k, 0.0) + v
        tot_macs += la.macs
        tot_cycles += la.cycles
        tot_ideal += ideal
    energy = sum(tot_e.values())
    seconds = tot_cycles / n_macros * tech.clock_ns * 1e-9
    tiles = sum(la.weight_tiles for la in layers)
    out = {
        "counts_source": counts_source, "n_samples": n_samples, "n_macros": n_macros,
        "weight_tiles": tiles, "weight_tile_capacity": n_macros * m.pages,
        # loaded once per run only if every tile has a page of its own; otherwise reloads are not counted
        "weights_resident": tiles <= n_macros * m.pages,
        "assumptions": "operations spread evenly over the macros, no stalls or pipeline fill (an upper bound); "
                       f"clock {tech.clock_ns} ns; buffers included",
        "layers": rows, "macs": tot_macs, "cycles": tot_cycles, "energy_fj": energy, "energy_breakdown_fj": tot_e,
        "energy_per_inference_nj": energy / n_samples * 1e-6, "energy_per_mac_fj": energy / tot_macs,
        "utilisation": tot_ideal / (tot_cycles / n_macros) if tot_cycles else 0.0,
        "tops": 2 * tot_macs / seconds / 1e12, "tops_per_w": 2 * tot_macs / energy * 1e3,
        "inferences_per_s": n_samples / seconds,
    }
    if transistors_per_macro is not None:
        from .energy import area_mm2

        out["area_mm2"] = area_mm2(transistors_per_macro * n_macros, tech)
        out["tops_per_mm2"] = out["tops"] / out["area_mm2"]
    return out


def _gemm_rows(layer, x: np.ndarray) -> np.ndarray:
    """Activation rows ``(N, groups, M, K)`` that a weighted layer multiplies (raw codes)."""
    from ..golden import ops
    from ..golden.ir import Conv2d

    if isinstance(layer, Conv2d):
        _, ho, wo = layer.output.shape
        return ops.im2col(x, layer.input.zero_point, layer.kernel, layer.stride, layer.padding, layer.dilation,
                          layer.groups, (ho, wo))
    return np.asarray(x, dtype=np.int32).reshape(x.shape[0], 1, 1, -1)


def chunk_cycles(cols: np.ndarray, rows: int, ab: int) -> np.ndarray:
    """Compute cycles with zero-plane skipping of every operation over ``cols`` (``(..., K)`` activation codes):
    the last axis is cut into chunks of ``rows`` (the last one padded with zeros); each chunk is one operation,
    costing its number of bit planes (of ``ab``) non-zero in some row, at least 1, as
    :func:`cimforge.golden.macro.op_cycles` defines. Returns ``(..., ceil(K / rows))``."""
    k = cols.shape[-1]
    n_k = math.ceil(k / rows)
    u = np.pad(np.asarray(cols, dtype=np.int64), [(0, 0)] * (cols.ndim - 1) + [(0, n_k * rows - k)])
    u = (u & ((1 << ab) - 1)).reshape(*cols.shape[:-1], n_k, rows)
    ored = np.bitwise_or.reduce(u, axis=-1)
    planes = sum((ored >> t) & 1 for t in range(ab))
    return np.maximum(planes, 1)


def activity_from_graph(graph, cfg: CimConfig, tensors: dict[str, np.ndarray], *, ab: int = 8, wb: int = 8,
                        skip: bool = True) -> list[LayerActivity]:
    """Provisional activity counts of ``graph``'s weighted layers (see the module docstring).

    Parameters
    ----------
    graph : cimforge.golden.ir.Graph
    cfg : CimConfig
    tensors : dict
        Every tensor's codes for the run, as :func:`cimforge.golden.runner.run_graph` returns them.
    ab, wb : int
        Precision of the operations.
    skip : bool
        Count zero-plane skipping.
    """
    m = cfg.macro
    if wb > m.max_wb or ab > m.max_ab:
        raise ValueError(f"precision ab={ab}, wb={wb}: the macro allows ab <= {m.max_ab}, wb <= {m.max_wb}")
    lanes = m.cols // wb
    out = []
    for layer in graph.weighted_layers:
        g = layer.gemm
        x = tensors[layer.input.name]
        n = x.shape[0]
        n_k, n_n = math.ceil(g.K / m.rows), math.ceil(g.N / lanes)
        cols = _gemm_rows(layer, x)  # (N, groups, M, K)
        if skip:
            cycles = int(chunk_cycles(cols, m.rows, ab).sum()) * n_n
        else:
            cycles = n * g.groups * g.M * n_k * n_n * ab
        out.append(LayerActivity(name=layer.name, macs=g.macs * n, macro_ops=n * g.groups * g.M * n_k * n_n,
                                 cycles=cycles, ab=ab, wb=wb, weight_bits=g.groups * g.K * g.N * wb,
                                 weight_tiles=g.groups * n_k * n_n))
    return out


def digits_figures(cfg: CimConfig, *, transistors_per_macro: float | None = None, skip: bool = True,
                   model: str | Path = DIGITS_MODEL) -> dict:
    """Figures of the digits CNN classifying the held-out digits (450 images) on ``cfg``'s fabric."""
    from ..golden.datasets import load_dataset
    from ..golden.onnx_import import load_onnx
    from ..golden.runner import run_float

    graph = load_onnx(model)
    x, _ = load_dataset("digits")
    tensors = run_float(graph, x)
    layers = activity_from_graph(graph, cfg, tensors, skip=skip)
    res = network_figures(layers, cfg, n_samples=x.shape[0], counts_source=PROVISIONAL,
                          transistors_per_macro=transistors_per_macro)
    return {"model": Path(model).name, "skip_zero_planes": skip, **res}
